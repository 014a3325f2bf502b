//! Command-line and environment configuration of the `sandbox` binary (pure, unit-tested).
//!
//! Every flag has an environment variable; a flag wins over its variable. Booleans take
//! `true`/`false`.
//!
//! | flag | env | default |
//! |---|---|---|
//! | `--host` | `SANDBOX_HOST` | `127.0.0.1` |
//! | `--fyle-port` | `SANDBOX_FYLE_PORT` | `58081` (cluster data host) |
//! | `--fyle-accounts-port` | `SANDBOX_FYLE_ACCOUNTS_PORT` | `58083` (token + cluster lookup) |
//! | `--qbo-port` | `SANDBOX_QBO_PORT` | `58082` |
//! | `--seed demo\|variety\|empty` | `SANDBOX_SEED` | `empty` |
//! | `--generate N` | `SANDBOX_GENERATE` | `0` |
//! | `--workers N` | `SANDBOX_WORKERS` | `2` |
//! | `--fyle-webhook-secret S` | `SANDBOX_FYLE_WEBHOOK_SECRET` | none (unsigned, like production) |
//! | `--fyle-rate-limit N\|off` | `SANDBOX_FYLE_RATE_LIMIT` | `10` requests/s per IP |
//! | `--fyle-bulk-shared-updated-at B` | `SANDBOX_FYLE_BULK_SHARED_UPDATED_AT` | `true` |
//! | `--fyle-updated-at-resolution micros\|seconds` | `SANDBOX_FYLE_UPDATED_AT_RESOLUTION` | `micros` |
//! | `--fyle-id-tiebreak B` | `SANDBOX_FYLE_ID_TIEBREAK` | `false` |
//! | `--qbo-json-only B` | `SANDBOX_QBO_JSON_ONLY` | `false` (XML unless `Accept: application/json`) |
//! | `--qbo-refresh-ttl-secs N` | `SANDBOX_QBO_REFRESH_TTL_SECS` | `8640000` (100 days) |
//! | `--qbo-refresh-grace-secs N` | `SANDBOX_QBO_REFRESH_GRACE_SECS` | `0` |
//! | `--qbo-country CC` | `SANDBOX_QBO_COUNTRY` | `US` |
//! | `--qbo-home-currency C` | `SANDBOX_QBO_HOME_CURRENCY` | `USD` |
//! | `--qbo-multi-currency B` | `SANDBOX_QBO_MULTI_CURRENCY` | `false` |
//! | `--qbo-tax B` | `SANDBOX_QBO_TAX` | `true` |
//! | `--qbo-webhook-url URL` | `SANDBOX_QBO_WEBHOOK_URL` | none |
//! | `--qbo-verifier-token T` | `SANDBOX_QBO_VERIFIER_TOKEN` | `simulator-verifier-token` |
//! | `--qbo-webhook-format legacy\|cloudevents` | `SANDBOX_QBO_WEBHOOK_FORMAT` | `legacy` |
//! | `--qbo-deactivation delete\|update` | `SANDBOX_QBO_DEACTIVATION` | `delete` |
//! | `--qbo-batch-window-ms N` | `SANDBOX_QBO_BATCH_WINDOW_MS` | `200` |
//! | `--qbo-tz-offset-minutes N` | `SANDBOX_QBO_TZ_OFFSET_MINUTES` | `-420` (company zone `-07:00`) |

use std::time::Duration;

use crate::config::{DeactivationOp, SandboxConfig, Seed, TimestampResolution, WebhookFormat};

/// Usage text.
pub const USAGE: &str = "usage: sandbox [--host H] [--fyle-port P] [--fyle-accounts-port P] [--qbo-port P] \
[--seed demo|variety|empty] [--generate N] [--workers N] [--fyle-webhook-secret S] [--fyle-rate-limit N|off] \
[--fyle-bulk-shared-updated-at true|false] [--fyle-updated-at-resolution micros|seconds] \
[--fyle-id-tiebreak true|false] [--qbo-json-only true|false] [--qbo-refresh-ttl-secs N] \
[--qbo-refresh-grace-secs N] [--qbo-country CC] [--qbo-home-currency C] [--qbo-multi-currency true|false] \
[--qbo-tax true|false] [--qbo-webhook-url URL] [--qbo-verifier-token T] \
[--qbo-webhook-format legacy|cloudevents] [--qbo-deactivation delete|update] [--qbo-batch-window-ms N] \
[--qbo-tz-offset-minutes N]";

const FLAGS: [(&str, &str); 25] = [
    ("--host", "SANDBOX_HOST"),
    ("--fyle-port", "SANDBOX_FYLE_PORT"),
    ("--fyle-accounts-port", "SANDBOX_FYLE_ACCOUNTS_PORT"),
    ("--qbo-port", "SANDBOX_QBO_PORT"),
    ("--seed", "SANDBOX_SEED"),
    ("--generate", "SANDBOX_GENERATE"),
    ("--workers", "SANDBOX_WORKERS"),
    ("--fyle-webhook-secret", "SANDBOX_FYLE_WEBHOOK_SECRET"),
    ("--fyle-rate-limit", "SANDBOX_FYLE_RATE_LIMIT"),
    (
        "--fyle-bulk-shared-updated-at",
        "SANDBOX_FYLE_BULK_SHARED_UPDATED_AT",
    ),
    (
        "--fyle-updated-at-resolution",
        "SANDBOX_FYLE_UPDATED_AT_RESOLUTION",
    ),
    ("--fyle-id-tiebreak", "SANDBOX_FYLE_ID_TIEBREAK"),
    ("--qbo-json-only", "SANDBOX_QBO_JSON_ONLY"),
    ("--qbo-refresh-ttl-secs", "SANDBOX_QBO_REFRESH_TTL_SECS"),
    ("--qbo-refresh-grace-secs", "SANDBOX_QBO_REFRESH_GRACE_SECS"),
    ("--qbo-country", "SANDBOX_QBO_COUNTRY"),
    ("--qbo-home-currency", "SANDBOX_QBO_HOME_CURRENCY"),
    ("--qbo-multi-currency", "SANDBOX_QBO_MULTI_CURRENCY"),
    ("--qbo-tax", "SANDBOX_QBO_TAX"),
    ("--qbo-webhook-url", "SANDBOX_QBO_WEBHOOK_URL"),
    ("--qbo-verifier-token", "SANDBOX_QBO_VERIFIER_TOKEN"),
    ("--qbo-webhook-format", "SANDBOX_QBO_WEBHOOK_FORMAT"),
    ("--qbo-deactivation", "SANDBOX_QBO_DEACTIVATION"),
    ("--qbo-batch-window-ms", "SANDBOX_QBO_BATCH_WINDOW_MS"),
    ("--qbo-tz-offset-minutes", "SANDBOX_QBO_TZ_OFFSET_MINUTES"),
];

fn boolean(flag: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("{flag}: true or false, got {v:?}")),
    }
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: not a number: {v:?}"))
}

/// Builds the configuration from arguments (without the program name) and an environment lookup.
/// `Ok(None)` means `--help` was asked for.
pub fn parse(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<SandboxConfig>, String> {
    let mut values: Vec<(&str, String)> = Vec::new();
    for (flag, var) in FLAGS {
        if let Some(v) = env(var) {
            values.push((flag, v));
        }
    }
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v.to_owned())),
            None => (arg.as_str(), None),
        };
        let Some((known, _)) = FLAGS.iter().find(|(f, _)| *f == flag) else {
            return Err(format!("unknown argument {arg:?}\n{USAGE}"));
        };
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))?,
        };
        values.push((known, value));
    }
    let mut c = SandboxConfig {
        fyle_port: 58081,
        fyle_accounts_port: 58083,
        qbo_port: 58082,
        ..SandboxConfig::default()
    };
    for (flag, v) in values {
        match flag {
            "--host" => c.host = v,
            "--fyle-port" => c.fyle_port = number(flag, &v)?,
            "--fyle-accounts-port" => c.fyle_accounts_port = number(flag, &v)?,
            "--fyle-rate-limit" => {
                c.fyle_rate_limit_per_second = match v.as_str() {
                    "off" | "0" => None,
                    n => Some(number(flag, n)?),
                }
            }
            "--qbo-port" => c.qbo_port = number(flag, &v)?,
            "--seed" => {
                c.seed = match v.as_str() {
                    "demo" => Seed::Demo,
                    "variety" => Seed::Variety,
                    "empty" => Seed::Empty,
                    _ => return Err(format!("--seed: demo, variety or empty, got {v:?}")),
                }
            }
            "--fyle-bulk-shared-updated-at" => {
                c.fyle_mess.bulk_shared_updated_at = boolean(flag, &v)?;
            }
            "--fyle-updated-at-resolution" => {
                c.fyle_mess.updated_at_resolution = match v.as_str() {
                    "micros" => TimestampResolution::Micros,
                    "seconds" => TimestampResolution::Seconds,
                    _ => return Err(format!("{flag}: micros or seconds, got {v:?}")),
                }
            }
            "--fyle-id-tiebreak" => c.fyle_mess.implicit_id_tiebreak = boolean(flag, &v)?,
            "--qbo-json-only" => c.qbo_json_only = boolean(flag, &v)?,
            "--qbo-refresh-ttl-secs" => {
                c.qbo_refresh_ttl = Duration::from_secs(number(flag, &v)?);
            }
            "--qbo-refresh-grace-secs" => {
                c.qbo_refresh_grace = Duration::from_secs(number(flag, &v)?);
            }
            "--qbo-country" => c.qbo_company.country = v,
            "--qbo-home-currency" => c.qbo_company.home_currency = v,
            "--qbo-multi-currency" => c.qbo_company.multi_currency = boolean(flag, &v)?,
            "--qbo-tax" => c.qbo_company.tax_enabled = boolean(flag, &v)?,
            "--qbo-tz-offset-minutes" => c.qbo_tz_offset_minutes = number(flag, &v)?,
            "--generate" => c.generate = number(flag, &v)?,
            "--workers" => c.workers = number(flag, &v)?,
            "--fyle-webhook-secret" => c.fyle_webhook_secret = Some(v),
            "--qbo-webhook-url" => c.qbo_webhook.url = Some(v),
            "--qbo-verifier-token" => c.qbo_webhook.verifier_token = v,
            "--qbo-webhook-format" => {
                c.qbo_webhook.format = match v.as_str() {
                    "legacy" => WebhookFormat::Legacy,
                    "cloudevents" => WebhookFormat::CloudEvents,
                    _ => {
                        return Err(format!(
                            "--qbo-webhook-format: legacy or cloudevents, got {v:?}"
                        ));
                    }
                }
            }
            "--qbo-deactivation" => {
                c.qbo_webhook.deactivation = match v.as_str() {
                    "delete" => DeactivationOp::Delete,
                    "update" => DeactivationOp::Update,
                    _ => return Err(format!("--qbo-deactivation: delete or update, got {v:?}")),
                }
            }
            "--qbo-batch-window-ms" => c.qbo_webhook.batch_window_ms = number(flag, &v)?,
            _ => {}
        }
    }
    Ok(Some(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn defaults_are_the_demo_ports() {
        let c = parse(&[], |_| None).expect("parses").expect("not help");
        assert_eq!(
            (c.fyle_port, c.qbo_port, c.seed),
            (58081, 58082, Seed::Empty)
        );
    }

    #[test]
    fn flags_override_environment() {
        let env = |k: &str| match k {
            "SANDBOX_FYLE_PORT" => Some("1000".to_owned()),
            "SANDBOX_SEED" => Some("demo".to_owned()),
            _ => None,
        };
        let c = parse(
            &args(&[
                "--fyle-port",
                "2000",
                "--generate=5",
                "--qbo-webhook-format",
                "cloudevents",
            ]),
            env,
        )
        .expect("parses")
        .expect("not help");
        assert_eq!(c.fyle_port, 2000);
        assert_eq!(c.seed, Seed::Demo);
        assert_eq!(c.generate, 5);
        assert_eq!(c.qbo_webhook.format, WebhookFormat::CloudEvents);
    }

    #[test]
    fn behaviour_switches_have_flags() {
        let c = parse(&[], |_| None).expect("parses").expect("not help");
        assert_eq!(
            c.fyle_rate_limit_per_second,
            Some(10),
            "rate limit on by default"
        );
        assert!(!c.qbo_json_only);
        let env = |k: &str| (k == "SANDBOX_FYLE_RATE_LIMIT").then(|| "off".to_owned());
        let c = parse(
            &args(&[
                "--qbo-json-only",
                "true",
                "--fyle-updated-at-resolution",
                "seconds",
                "--fyle-id-tiebreak=true",
                "--qbo-refresh-ttl-secs",
                "60",
                "--seed",
                "variety",
                "--qbo-country",
                "GB",
            ]),
            env,
        )
        .expect("parses")
        .expect("not help");
        assert_eq!(c.fyle_rate_limit_per_second, None);
        assert!(c.qbo_json_only && c.fyle_mess.implicit_id_tiebreak);
        assert_eq!(
            c.fyle_mess.updated_at_resolution,
            TimestampResolution::Seconds
        );
        assert_eq!(c.qbo_refresh_ttl, Duration::from_secs(60));
        assert_eq!(
            (c.seed, c.qbo_company.country.as_str()),
            (Seed::Variety, "GB")
        );
        assert!(parse(&args(&["--qbo-tax", "maybe"]), |_| None).is_err());
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(parse(&args(&["--seed", "lots"]), |_| None).is_err());
        assert!(parse(&args(&["--fyle-port"]), |_| None).is_err());
        assert!(parse(&args(&["--colour", "red"]), |_| None).is_err());
        assert!(parse(&args(&["--help"]), |_| None).expect("help").is_none());
    }
}
