//! Command-line and environment configuration of the `sandbox` binary (pure, unit-tested).
//!
//! Every flag has an environment variable; a flag wins over its variable.
//!
//! | flag | env | default |
//! |---|---|---|
//! | `--host` | `SANDBOX_HOST` | `127.0.0.1` |
//! | `--fyle-port` | `SANDBOX_FYLE_PORT` | `58081` |
//! | `--qbo-port` | `SANDBOX_QBO_PORT` | `58082` |
//! | `--seed demo\|empty` | `SANDBOX_SEED` | `empty` |
//! | `--generate N` | `SANDBOX_GENERATE` | `0` |
//! | `--workers N` | `SANDBOX_WORKERS` | `2` |
//! | `--fyle-webhook-secret S` | `SANDBOX_FYLE_WEBHOOK_SECRET` | none (unsigned, like production) |
//! | `--qbo-webhook-url URL` | `SANDBOX_QBO_WEBHOOK_URL` | none |
//! | `--qbo-verifier-token T` | `SANDBOX_QBO_VERIFIER_TOKEN` | `simulator-verifier-token` |
//! | `--qbo-webhook-format legacy\|cloudevents` | `SANDBOX_QBO_WEBHOOK_FORMAT` | `legacy` |
//! | `--qbo-deactivation delete\|update` | `SANDBOX_QBO_DEACTIVATION` | `delete` |
//! | `--qbo-batch-window-ms N` | `SANDBOX_QBO_BATCH_WINDOW_MS` | `200` |

use crate::config::{DeactivationOp, SandboxConfig, Seed, WebhookFormat};

/// Usage text.
pub const USAGE: &str = "usage: sandbox [--host H] [--fyle-port P] [--qbo-port P] [--seed demo|empty] [--generate N] \
[--workers N] [--fyle-webhook-secret S] [--qbo-webhook-url URL] [--qbo-verifier-token T] \
[--qbo-webhook-format legacy|cloudevents] [--qbo-deactivation delete|update] [--qbo-batch-window-ms N]";

const FLAGS: [(&str, &str); 14] = [
    ("--host", "SANDBOX_HOST"),
    ("--fyle-port", "SANDBOX_FYLE_PORT"),
    ("--fyle-accounts-port", "SANDBOX_FYLE_ACCOUNTS_PORT"),
    ("--fyle-rate-limit", "SANDBOX_FYLE_RATE_LIMIT"),
    ("--qbo-port", "SANDBOX_QBO_PORT"),
    ("--seed", "SANDBOX_SEED"),
    ("--generate", "SANDBOX_GENERATE"),
    ("--workers", "SANDBOX_WORKERS"),
    ("--fyle-webhook-secret", "SANDBOX_FYLE_WEBHOOK_SECRET"),
    ("--qbo-webhook-url", "SANDBOX_QBO_WEBHOOK_URL"),
    ("--qbo-verifier-token", "SANDBOX_QBO_VERIFIER_TOKEN"),
    ("--qbo-webhook-format", "SANDBOX_QBO_WEBHOOK_FORMAT"),
    ("--qbo-deactivation", "SANDBOX_QBO_DEACTIVATION"),
    ("--qbo-batch-window-ms", "SANDBOX_QBO_BATCH_WINDOW_MS"),
];

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
                    "empty" => Seed::Empty,
                    _ => return Err(format!("--seed: demo or empty, got {v:?}")),
                }
            }
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
    fn bad_input_is_refused() {
        assert!(parse(&args(&["--seed", "lots"]), |_| None).is_err());
        assert!(parse(&args(&["--fyle-port"]), |_| None).is_err());
        assert!(parse(&args(&["--colour", "red"]), |_| None).is_err());
        assert!(parse(&args(&["--help"]), |_| None).expect("help").is_none());
    }
}
