//! `make bench-fyle-sync`: fyle-sync's pull throughput against a plain `COPY`, the wall time of
//! a pull under Fyle's 10 requests/second, and what each sync mode costs in Fyle API calls.
//!
//! Everything runs in this process against the local stack's PostgreSQL (durable profile, or
//! the bench refuses) and Kafka, with the Fyle sandbox over loopback HTTP:
//!
//! (a) **Pull throughput**, the sandbox's rate limit off and fyle-sync's limiter opened (our own
//!     cost): the sandbox holds `BENCH_FYLE_ROWS` (100,000) generated categories; a forced full
//!     `SyncDimensions(CATEGORY)` into an empty table, then the same with 10% of them renamed —
//!     rows per second each. The baseline, in the same run and database: one `COPY … FROM STDIN`
//!     of the same rows (the values the sync stored) into a table of the same shape (`LIKE
//!     expense_attributes INCLUDING ALL`). This is done in `BENCH_FYLE_ROUNDS` (3) rounds, the
//!     tables emptied before each; before every measured phase the bench waits for fyle-sync's
//!     outbox to drain, then `CHECKPOINT`s (the COPY's just before its clock). Every round is
//!     printed; `ratio` = the median of ours ÷ the median COPY (target ≥ 0.5).
//!     **Rate limited**: the same initial pull from a sandbox enforcing Fyle's 10 requests/second
//!     with fyle-sync's default limiter; its wall time next to the minimum that limit imposes
//!     (the requests the pull made ÷ 10/s; target within 10%).
//! (b) **Webhook → row latency** through ingest, Kafka and fyle-sync, 100 workspaces: an
//!     open-loop sender (a runtime of its own at a lower priority:
//!     `attrsync_e2e::bench::load_generator_runtime`) posts category webhooks (each a new
//!     category, spread over the workspaces) at a fixed rate for `BENCH_FYLE_STEP_S` (10)
//!     seconds while a watcher looks up every 5 ms the rows of `expense_attributes` it still
//!     waits for (by their unique key); a webhook's latency is from its scheduled send time
//!     until the watcher first sees its row. Measured at 200/s (p50/p99, target p99 ≤ 50 ms),
//!     then on a ladder of rates up to the first that breaks p99 ≤ 250 ms, fails a request or
//!     loses a row: the highest rate that held is reported (target ≥ 1,000/s). Each step also
//!     reports its stages: send → ingest's answer, and ingest's inbox commit → fyle-sync's
//!     transaction, cut at the relayed message's Kafka timestamp.
//! (c) **Fyle API calls per workspace-day** for a workspace of the demo org with 20 changes a
//!     day, counted by the sandbox: one full pass of every resource and one incremental round
//!     of every resource (after a change) are run and counted; a day is then webhook mode (one
//!     incremental reconcile per default `reconcile.interval` plus the daily full pass), polling
//!     at the 24-hour rule (one full pass), and polling at the freshness webhook mode achieves (an
//!     incremental round every second). Token refreshes on the accounts host are counted apart
//!     (one an hour in every mode that calls at least hourly).
//!
//! Ends with one JSON line. `BENCH_FYLE_ROWS` shrinks it for quick looks; `BENCH_FYLE_PARTS`
//! (e.g. `b`) runs only some of (a), (b), (c).
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use anyhow::Context as _;
use attrsync_e2e::{
    TestStack,
    bench::{copy_baseline, durable_postgres, env_number, median, percentile, settle},
};
use attrsync_proto::v1::{ConnectFyleRequest, SyncFyleDimensionsRequest};
use attrsync_sandbox::{DEMO_ORG_ID, Sandbox, SandboxConfig, SandboxHandle, Seed, Side};
use diesel_async::{AsyncConnection, AsyncPgConnection};

/// Rows per page fyle-sync asks for (reference §1: `limit=200`).
const PAGE: usize = 200;
/// Fyle's documented limit, requests per second.
const FYLE_RPS: f64 = 10.0;
/// Freshness webhook mode achieves (the "within a second"), for the polling comparison.
const WEBHOOK_FRESHNESS_S: f64 = 1.0;

async fn sandbox(rate_limit: Option<u32>) -> anyhow::Result<SandboxHandle> {
    Ok(Sandbox::start(SandboxConfig {
        seed: Seed::Demo,
        workers: 2,
        fyle_rate_limit_per_second: rate_limit,
        ..SandboxConfig::default()
    })
    .await?)
}

fn refresh_token(sb: &SandboxHandle) -> anyhow::Result<String> {
    Ok(sb
        .credentials()
        .fyle
        .into_iter()
        .find(|c| c.org_id == DEMO_ORG_ID)
        .context("the demo org's credentials")?
        .refresh_token)
}

/// A stack whose fyle-sync talks to `sb` and publishes on topics nobody else in this process
/// reads (what is measured is the pull, not mapping consuming 100,000 change events).
async fn stack_for(
    sb: &SandboxHandle,
    mut extra: Vec<(String, String)>,
) -> anyhow::Result<TestStack> {
    extra.push((
        "FYLE_SYNC__FYLE__ACCOUNTS_URL".into(),
        sb.fyle_accounts_url().to_owned(),
    ));
    extra.push((
        "FYLE_SYNC__KAFKA__TOPIC_PREFIX".into(),
        format!(
            "bench{}.solo.",
            ulid::Ulid::new().to_string().to_lowercase()
        ),
    ));
    // No scheduled rounds: the only calls counted are the ones this bench asks for.
    extra.push(("FYLE_SYNC__RECONCILE__ENABLED".into(), "false".into()));
    TestStack::start_with_env(Vec::new(), extra).await
}

async fn connect(stack: &TestStack, sb: &SandboxHandle) -> anyhow::Result<i64> {
    let workspace_id = stack.create_workspace_for_org(DEMO_ORG_ID).await?;
    stack
        .fyle_sync
        .clone()
        .connect_fyle(ConnectFyleRequest {
            workspace_id,
            refresh_token: Some(refresh_token(sb)?),
            authorization_code: None,
        })
        .await?;
    Ok(workspace_id)
}

/// A forced pull of `resources` (all when empty); (seconds, rows fetched, rows changed).
async fn pull(
    stack: &TestStack,
    workspace_id: i64,
    resources: &[&str],
    incremental: bool,
) -> anyhow::Result<(f64, u32, u32)> {
    let started = Instant::now();
    let report = stack
        .fyle_sync
        .clone()
        .sync_dimensions(SyncFyleDimensionsRequest {
            workspace_id,
            force: true,
            attribute_types: resources.iter().map(|r| (*r).to_owned()).collect(),
            incremental,
        })
        .await?
        .into_inner();
    let seconds = started.elapsed().as_secs_f64();
    for r in &report.resources {
        anyhow::ensure!(r.outcome.starts_with("PULLED"), "{report:?}");
    }
    let rows = report.resources.iter().map(|r| r.rows).sum();
    let changed = report.resources.iter().map(|r| r.changed).sum();
    Ok((seconds, rows, changed))
}

/// Requests the sandbox counted on Fyle's data host (`/platform/…`) and on its accounts host
/// (token and cluster), since its last reset.
fn fyle_requests(sb: &SandboxHandle) -> (u64, u64) {
    let stats = sb.stats();
    let count = |data: bool| {
        stats.count_where(Side::Fyle, |endpoint| {
            endpoint.contains(" /platform/") == data
        })
    };
    (count(true), count(false))
}

fn main() -> anyhow::Result<()> {
    // (b)'s webhooks are sent from a runtime of their own at a lower priority (the senders
    // stand in for Fyle's servers; latency counts from each webhook's scheduled time, so a
    // sender that fell behind shows in it). Built and shut down here, outside async code.
    let senders = attrsync_e2e::bench::load_generator_runtime("bench-sender", 1)?;
    let result = attrsync_e2e::bench::run_on_two_threads(run(senders.handle().clone()));
    senders.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}

fn round(x: f64, places: i32) -> f64 {
    let scale = 10_f64.powi(places);
    (x * scale).round() / scale
}

async fn run(senders: tokio::runtime::Handle) -> anyhow::Result<()> {
    let parts = std::env::var("BENCH_FYLE_PARTS").unwrap_or_else(|_| "abc".into());
    let pg = durable_postgres("make bench-fyle-sync").await?;
    let mut line = serde_json::Map::new();
    line.insert("bench".into(), "fyle_sync".into());
    if parts.contains('a') {
        line.extend(pull_throughput().await?);
    }
    if parts.contains('b') {
        line.extend(webhook_latency(&senders).await?);
    }
    if parts.contains('c') {
        line.extend(calls_per_day().await?);
    }
    line.insert("pg_profile".into(), pg.describe().into());
    println!("{}", serde_json::Value::Object(line));
    Ok(())
}

type Figures = serde_json::Map<String, serde_json::Value>;

/// One round of (a): our two pulls and the COPY after them.
struct Round {
    initial_rate: f64,
    resync_rate: f64,
    copy_rate: f64,
}

/// (a): pull rows/s next to COPY, and a pull under Fyle's limit next to its minimum.
async fn pull_throughput() -> anyhow::Result<Figures> {
    use diesel_async::RunQueryDsl as _;
    let rows = env_number("BENCH_FYLE_ROWS", 100_000);
    let sb = sandbox(None).await?;
    let generated = Instant::now();
    sb.fyle().generate(DEMO_ORG_ID, "categories", rows)?;
    let in_fyle = sb.fyle().count(DEMO_ORG_ID, "categories");
    println!(
        "sandbox: {rows} categories generated in {:.1}s ({in_fyle} in the org)",
        generated.elapsed().as_secs_f64()
    );
    let stack = stack_for(
        &sb,
        vec![
            (
                "FYLE_SYNC__FYLE__REQUESTS_PER_SECOND".into(),
                "1000000".into(),
            ),
            ("FYLE_SYNC__DATABASE__POOL_SIZE".into(), "8".into()),
        ],
    )
    .await?;
    let workspace_id = connect(&stack, &sb).await?;
    let mut db = AsyncPgConnection::establish(&stack.database.url).await?;
    // Every tenth category, spread over the collection, is renamed in each round's re-sync.
    let renamed_ids: Vec<String> = (0..in_fyle)
        .step_by(10)
        .map(|k| (10_000_001 + k).to_string())
        .filter(|id| sb.fyle().get(DEMO_ORG_ID, "categories", id).is_some())
        .collect();
    let rounds = env_number("BENCH_FYLE_ROUNDS", 3).max(1);
    let mut measured: Vec<Round> = Vec::with_capacity(rounds);
    for round in 0..rounds {
        if round > 0 {
            // The next round's initial pull starts from nothing stored again.
            diesel::sql_query("TRUNCATE fyle_sync.expense_attributes, fyle_sync.source_versions")
                .execute(&mut db)
                .await?;
        }
        settle(&mut db, "fyle_sync.outbox").await?;
        let (initial_s, fetched, created) =
            pull(&stack, workspace_id, &["CATEGORY"], false).await?;
        let initial_rate = f64::from(fetched) / initial_s;
        println!(
            "(a) round {round}: initial full sync: {fetched} categories ({created} rows created) in {initial_s:.2}s = {initial_rate:.0} rows/s"
        );
        anyhow::ensure!(
            created == fetched,
            "an initial pull into an empty table creates a row per category ({created} ≠ {fetched})"
        );
        for id in &renamed_ids {
            sb.fyle().rename(
                DEMO_ORG_ID,
                "categories",
                id,
                &format!("Renamed category {id} in round {round}"),
            )?;
        }
        settle(&mut db, "fyle_sync.outbox").await?;
        let (resync_s, refetched, changed) =
            pull(&stack, workspace_id, &["CATEGORY"], false).await?;
        let resync_rate = f64::from(refetched) / resync_s;
        println!(
            "(a) round {round}: re-sync with {} renamed: {refetched} categories, {changed} changed, in {resync_s:.2}s = {resync_rate:.0} rows/s",
            renamed_ids.len()
        );
        anyhow::ensure!(
            changed as usize == renamed_ids.len(),
            "a re-sync changes exactly the renamed rows ({changed} ≠ {})",
            renamed_ids.len()
        );
        settle(&mut db, "fyle_sync.outbox").await?;
        let (copied, copy_rate) = copy_baseline(
            &stack.database.url,
            "fyle_sync.expense_attributes",
            "workspace_id, attribute_type, display_name, value, source_id, active, detail, \
             content_hash, source_updated_at",
            workspace_id,
            true,
        )
        .await?;
        println!(
            "(a) round {round}: baseline: COPY of the same {copied} rows into the same table shape = {copy_rate:.0} rows/s"
        );
        measured.push(Round {
            initial_rate,
            resync_rate,
            copy_rate,
        });
    }
    let initial_rate = median(measured.iter().map(|r| r.initial_rate));
    let resync_rate = median(measured.iter().map(|r| r.resync_rate));
    let copy_rate = median(measured.iter().map(|r| r.copy_rate));
    let changed = renamed_ids.len();
    println!(
        "(a) medians of {rounds} rounds: initial {initial_rate:.0}, re-sync {resync_rate:.0}, COPY {copy_rate:.0} rows/s"
    );
    stack.stop().await;
    sb.stop().await;

    // Under Fyle's limit: the sandbox enforces 10/s, fyle-sync runs its default limiter.
    let limited_sb = sandbox(Some(10)).await?;
    limited_sb
        .fyle()
        .generate(DEMO_ORG_ID, "categories", rows)?;
    let limited = stack_for(&limited_sb, Vec::new()).await?;
    let limited_workspace = connect(&limited, &limited_sb).await?;
    limited_sb.reset_stats();
    let (limited_s, limited_rows, _) =
        pull(&limited, limited_workspace, &["CATEGORY"], false).await?;
    let (limited_requests, _) = fyle_requests(&limited_sb);
    let minimum_s = limited_requests as f64 / FYLE_RPS;
    let throttled = limited_sb.stats().throttled;
    println!(
        "(a) rate limited: {limited_rows} categories in {limited_s:.1}s with {limited_requests} requests \
         (minimum at {FYLE_RPS}/s: {minimum_s:.1}s, ×{:.3}), {throttled} answered 429",
        limited_s / minimum_s
    );
    limited.stop().await;
    limited_sb.stop().await;
    let figures = serde_json::json!({
        "rows": rows,
        "page_rows": PAGE,
        "initial_rows_per_s": initial_rate.round(),
        "resync_rows_per_s": resync_rate.round(),
        "resync_changed": changed,
        "baseline_copy_rows_per_s": copy_rate.round(),
        "initial_ratio": round(initial_rate / copy_rate, 3),
        "resync_ratio": round(resync_rate / copy_rate, 3),
        "rounds": measured
            .iter()
            .map(|r| serde_json::json!({
                "initial_rows_per_s": r.initial_rate.round(),
                "resync_rows_per_s": r.resync_rate.round(),
                "baseline_copy_rows_per_s": r.copy_rate.round(),
            }))
            .collect::<Vec<_>>(),
        "limited_wall_s": round(limited_s, 2),
        "limited_requests": limited_requests,
        "limited_minimum_s": round(minimum_s, 2),
        "limited_over_minimum": round(limited_s / minimum_s, 3),
        "limited_429s": throttled,
    });
    Ok(figures.as_object().cloned().unwrap_or_default())
}

/// A category webhook creating `name` as the sandbox's Fyle sends one.
fn category_created(org: &str, id: &str, name: &str) -> Vec<u8> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    serde_json::to_vec(&serde_json::json!({
        "action": "CREATED", "resource": "CATEGORY",
        "data": {"id": id, "org_id": org, "name": name, "sub_category": null,
                 "display_name": name, "code": null, "is_enabled": true,
                 "system_category": null, "restricted_project_ids": null,
                 "restricted_spender_user_ids": null, "created_at": now, "updated_at": now}
    }))
    .unwrap_or_default()
}

#[derive(diesel::QueryableByName)]
struct SeenRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    source_id: String,
}

#[derive(diesel::QueryableByName)]
struct StageStamps {
    #[diesel(sql_type = diesel::sql_types::Text)]
    source_id: String,
    #[diesel(sql_type = diesel::sql_types::Double)]
    received_ms: f64,
    #[diesel(sql_type = diesel::sql_types::Double)]
    applied_ms: f64,
}

/// The Kafka timestamp (ms since the epoch; the relay's produce time) of each of the `n`
/// webhooks tagged `tag` on the webhook topic, by category id; read from every partition's
/// start until all are found or the topic is quiet for two seconds.
async fn produced_at_ms(
    topic: &str,
    tag: &str,
    n: usize,
) -> anyhow::Result<std::collections::HashMap<String, f64>> {
    use rdkafka::{
        ClientConfig, Message as _, Offset, TopicPartitionList,
        consumer::{Consumer as _, StreamConsumer},
    };
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", attrsync_e2e::kafka_bootstrap())
        .set("group.id", format!("bench-reader-{}", ulid::Ulid::new()))
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), std::time::Duration::from_secs(5))?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut found = std::collections::HashMap::with_capacity(n);
    while found.len() < n {
        let Ok(message) =
            tokio::time::timeout(std::time::Duration::from_secs(2), consumer.recv()).await
        else {
            break;
        };
        let message = message?;
        let (Some(at), Some(bytes)) = (message.timestamp().to_millis(), message.payload()) else {
            continue;
        };
        let Ok(envelope) = attrsync_kafka::envelope::decode(bytes) else {
            continue;
        };
        let Some(attrsync_proto::Payload::FyleAttributeWebhook(hook)) = envelope.payload else {
            continue;
        };
        let data: serde_json::Value = serde_json::from_str(&hook.data_json)?;
        if let Some(id) = data["id"].as_str().filter(|id| id.starts_with(tag)) {
            found.insert(id.to_owned(), at as f64);
        }
    }
    Ok(found)
}

/// What one step of the latency ladder measured.
#[derive(Debug)]
struct Step {
    rate: u32,
    sent: usize,
    failed: usize,
    lost: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// From send to ingest's answer; p50 and p99.
    accept_ms: (f64, f64),
    /// From ingest's inbox commit (`received_at`) to the start of fyle-sync's transaction that
    /// wrote the row (`created_at`): the relay, Kafka and the consumer's queue; p50 and p99.
    accepted_to_applied_ms: (f64, f64),
    /// The same, cut at the Kafka timestamp of the relayed message (when ingest's relay
    /// produced it): inbox commit → produced, and produced → fyle-sync's transaction.
    relay_ms: (f64, f64),
    kafka_to_fyle_tx_ms: (f64, f64),
}

#[derive(diesel::QueryableByName)]
struct StageSplit {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    p50: Option<f64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
    p99: Option<f64>,
}

impl Step {
    fn held(&self, p99_target_ms: f64) -> bool {
        self.failed == 0 && self.lost == 0 && self.p99_ms <= p99_target_ms
    }
}

/// Where a step's webhooks are sent from: the low-priority runtime and its HTTP client.
#[derive(Debug, Clone, Copy)]
struct Senders<'a> {
    runtime: &'a tokio::runtime::Handle,
    http: &'a reqwest::Client,
}

/// Sends `rate` webhooks a second for `seconds` to `targets` (round robin) and watches the rows
/// appear. Source ids are `<tag><index>`, so a row names the webhook that made it.
async fn latency_step(
    senders: Senders<'_>,
    database_url: &str,
    webhook_topic: &str,
    targets: &[(i64, String, String)],
    tag: &str,
    rate: u32,
    seconds: f64,
) -> anyhow::Result<Step> {
    use diesel_async::RunQueryDsl as _;
    let n = (f64::from(rate) * seconds) as usize;
    let interval = std::time::Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut watcher = AsyncPgConnection::establish(database_url).await?;
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t0 = tokio::time::Instant::now() + std::time::Duration::from_millis(50);
    let sender = {
        let (http, failed, tag) = (senders.http.clone(), failed.clone(), tag.to_owned());
        let targets = targets.to_vec();
        senders.runtime.spawn(async move {
            let mut sends = Vec::with_capacity(n);
            for i in 0..n {
                tokio::time::sleep_until(t0 + interval * i as u32).await;
                let (_, org, url) = &targets[i % targets.len()];
                let body = category_created(org, &format!("{tag}{i}"), &format!("Bench {tag}{i}"));
                let (http, url, failed) = (http.clone(), url.clone(), failed.clone());
                sends.push(tokio::spawn(async move {
                    let sent = tokio::time::Instant::now();
                    let outcome = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    let refusal = match outcome {
                        Ok(r) if r.status() == 200 => None,
                        Ok(r) => Some(format!("answered {}", r.status())),
                        Err(e) => Some(format!("{e:#}")),
                    };
                    if let Some(refusal) = refusal
                        && failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0
                    {
                        println!("(b) first failed webhook: {refusal}");
                    }
                    sent.elapsed().as_secs_f64() * 1_000.0
                }));
            }
            let mut accepted_ms = Vec::with_capacity(sends.len());
            for send in sends {
                accepted_ms.extend(send.await.ok());
            }
            accepted_ms.sort_by(f64::total_cmp);
            accepted_ms
        })
    };
    // The watcher asks, every poll, for exactly the rows it still waits for — every webhook
    // already due and not yet seen, by its unique key, one index probe each — so a row is seen
    // at the first poll after its transaction commits, whatever order partitions commit in.
    // The query is prepared once. (Unprepared, as a plain join, it was planned at every poll
    // and scanned the growing table: 0.73 ms a poll, the largest single statement load on the
    // database it measures.) (An earlier watcher
    // read by id and re-read everything once a second, which counted a row committed behind
    // later ids up to a second late.)
    let mut latencies: Vec<f64> = Vec::with_capacity(n);
    let mut waiting: std::collections::BTreeSet<usize> = std::collections::BTreeSet::new();
    let mut next_due = 0;
    let give_up =
        t0 + std::time::Duration::from_secs_f64(seconds) + std::time::Duration::from_secs(30);
    while latencies.len() < n && tokio::time::Instant::now() < give_up {
        let now = tokio::time::Instant::now();
        while next_due < n && t0 + interval * next_due as u32 <= now {
            waiting.insert(next_due);
            next_due += 1;
        }
        if !waiting.is_empty() {
            let (workspaces, source_ids): (Vec<i64>, Vec<String>) = waiting
                .iter()
                .map(|&i| (targets[i % targets.len()].0, format!("{tag}{i}")))
                .unzip();
            let rows: Vec<SeenRow> = attrsync_db::prepared::sql(
                "SELECT e.source_id \
                 FROM unnest($1::bigint[], $2::text[]) AS w(workspace_id, source_id) \
                 CROSS JOIN LATERAL ( \
                     SELECT source_id FROM fyle_sync.expense_attributes \
                     WHERE workspace_id = w.workspace_id AND source_id = w.source_id \
                       AND attribute_type || '' = 'CATEGORY' \
                 ) e",
            )
            .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(&workspaces)
            .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&source_ids)
            .load(&mut watcher)
            .await?;
            let seen_at = tokio::time::Instant::now();
            for row in rows {
                let Some(i) = row
                    .source_id
                    .strip_prefix(tag)
                    .and_then(|i| i.parse::<usize>().ok())
                else {
                    continue;
                };
                if waiting.remove(&i) {
                    let scheduled = t0 + interval * i as u32;
                    latencies
                        .push(seen_at.saturating_duration_since(scheduled).as_secs_f64() * 1_000.0);
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let accepted_ms = sender.await?;
    latencies.sort_by(f64::total_cmp);
    let split: StageSplit = diesel::sql_query(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, \
                percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99 \
         FROM (SELECT extract(epoch FROM e.created_at - i.received_at)::float8 * 1000 AS ms \
               FROM fyle_sync.expense_attributes e \
               JOIN ingest.inbox i ON i.workspace_id = e.workspace_id \
                AND i.body -> 'data' ->> 'id' = e.source_id \
               WHERE e.source_id LIKE $1) step",
    )
    .bind::<diesel::sql_types::Text, _>(format!("{tag}%"))
    .get_result(&mut watcher)
    .await?;
    let produced = produced_at_ms(webhook_topic, tag, n).await?;
    let stamps: Vec<StageStamps> = diesel::sql_query(
        "SELECT e.source_id, extract(epoch FROM i.received_at)::float8 * 1000 AS received_ms, \
                extract(epoch FROM e.created_at)::float8 * 1000 AS applied_ms \
         FROM fyle_sync.expense_attributes e \
         JOIN ingest.inbox i ON i.workspace_id = e.workspace_id \
          AND i.body -> 'data' ->> 'id' = e.source_id \
         WHERE e.source_id LIKE $1",
    )
    .bind::<diesel::sql_types::Text, _>(format!("{tag}%"))
    .load(&mut watcher)
    .await?;
    let (mut relay, mut consume) = (Vec::new(), Vec::new());
    for stamp in &stamps {
        if let Some(&at) = produced.get(&stamp.source_id) {
            relay.push(at - stamp.received_ms);
            consume.push(stamp.applied_ms - at);
        }
    }
    relay.sort_by(f64::total_cmp);
    consume.sort_by(f64::total_cmp);
    let p50_p99 = |v: &[f64]| (round(percentile(v, 50.0), 1), round(percentile(v, 99.0), 1));
    Ok(Step {
        rate,
        sent: n,
        failed: std::sync::atomic::AtomicUsize::load(&failed, std::sync::atomic::Ordering::Relaxed),
        lost: n.saturating_sub(latencies.len()),
        p50_ms: round(percentile(&latencies, 50.0), 1),
        p99_ms: round(percentile(&latencies, 99.0), 1),
        max_ms: round(latencies.last().copied().unwrap_or(f64::NAN), 1),
        accept_ms: (
            round(percentile(&accepted_ms, 50.0), 1),
            round(percentile(&accepted_ms, 99.0), 1),
        ),
        relay_ms: p50_p99(&relay),
        kafka_to_fyle_tx_ms: p50_p99(&consume),
        accepted_to_applied_ms: (
            round(split.p50.unwrap_or(f64::NAN), 1),
            round(split.p99.unwrap_or(f64::NAN), 1),
        ),
    })
}

/// (b): webhook → row latency at 200/s, and the highest rate that keeps p99 ≤ 250 ms.
async fn webhook_latency(senders: &tokio::runtime::Handle) -> anyhow::Result<Figures> {
    const WORKSPACES: usize = 100;
    // `BENCH_FYLE_LADDER` (comma-separated rates) replaces the ladder for a look at one rate.
    let ladder: Vec<u32> = std::env::var("BENCH_FYLE_LADDER")
        .ok()
        .map(|l| l.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![200, 400, 600, 800, 1_000, 1_200, 1_500, 2_000]);
    let seconds = env_number("BENCH_FYLE_STEP_S", 10) as f64;
    // Production's partitions (the test stack's default is one): each service creates the
    // topics it touches first with its own setting, so all three are told.
    let partition_count: u32 = env_number("BENCH_FYLE_PARTITIONS", 3);
    let partitions = partition_count.to_string();
    let stack = TestStack::start_with_env(
        vec![("INGEST__KAFKA__PARTITIONS".into(), partitions.clone())],
        vec![
            ("FYLE_SYNC__KAFKA__PARTITIONS".into(), partitions.clone()),
            ("MAPPING__KAFKA__PARTITIONS".into(), partitions),
        ],
    )
    .await?;
    let mut targets = Vec::with_capacity(WORKSPACES);
    for _ in 0..WORKSPACES {
        let (workspace_id, org) = stack.create_workspace().await?;
        targets.push((workspace_id, org, stack.webhook_url(workspace_id).await?));
    }
    // Idle connections are let go before ingest's keep-alive (actix's 5 s) would close them
    // under a request just sent on one (a webhook then fails with a reset connection).
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    // A short warm-up (connections, prepared statements, consumer assignment).
    let webhook_topic = stack.topic(attrsync_kafka::topics::FYLE_ATTRIBUTE_WEBHOOKS);
    let sent_from = Senders {
        runtime: senders,
        http: &http,
    };
    latency_step(
        sent_from,
        &stack.database.url,
        &webhook_topic,
        &targets,
        "w",
        50,
        2.0,
    )
    .await?;
    let mut steps: Vec<Step> = Vec::new();
    for (k, rate) in ladder.into_iter().enumerate() {
        let step = latency_step(
            sent_from,
            &stack.database.url,
            &webhook_topic,
            &targets,
            &format!("s{k}x"),
            rate,
            seconds,
        )
        .await?;
        println!(
            "(b) {} webhooks/s for {seconds}s: {} sent, {} failed, {} lost; webhook→row p50 {} ms, p99 {} ms, max {} ms; \
             send→accepted p50 {} ms, p99 {} ms; inbox commit→fyle-sync transaction p50 {} ms, p99 {} ms \
             (inbox→Kafka p50 {} ms, p99 {} ms; Kafka→fyle-sync transaction p50 {} ms, p99 {} ms)",
            step.rate,
            step.sent,
            step.failed,
            step.lost,
            step.p50_ms,
            step.p99_ms,
            step.max_ms,
            step.accept_ms.0,
            step.accept_ms.1,
            step.accepted_to_applied_ms.0,
            step.accepted_to_applied_ms.1,
            step.relay_ms.0,
            step.relay_ms.1,
            step.kafka_to_fyle_tx_ms.0,
            step.kafka_to_fyle_tx_ms.1
        );
        let held = step.held(250.0);
        steps.push(step);
        if !held {
            break;
        }
    }
    stack.stop().await;
    let at_200 = steps.first().context("a first step")?;
    let sustained = steps
        .iter()
        .take_while(|s| s.held(250.0))
        .map(|s| s.rate)
        .max()
        .unwrap_or(0);
    println!("(b) highest rate with p99 ≤ 250 ms: {sustained}/s");
    let figures = serde_json::json!({
        "latency_workspaces": WORKSPACES,
        "latency_partitions": partition_count,
        "latency_sender_nice": attrsync_e2e::bench::LOAD_GENERATOR_NICE,
        "latency_at_200_p50_ms": at_200.p50_ms,
        "latency_at_200_p99_ms": at_200.p99_ms,
        "latency_at_200_lost": at_200.lost,
        "sustained_rate_p99_le_250ms": sustained,
        "latency_ladder": steps.iter().map(|s| serde_json::json!({
            "rate": s.rate, "p50_ms": s.p50_ms, "p99_ms": s.p99_ms, "max_ms": s.max_ms,
            "failed": s.failed, "lost": s.lost,
            "accept_p50_ms": s.accept_ms.0,
            "accept_p99_ms": s.accept_ms.1,
            "inbox_to_fyle_tx_p50_ms": s.accepted_to_applied_ms.0,
            "inbox_to_fyle_tx_p99_ms": s.accepted_to_applied_ms.1,
            "inbox_to_kafka_p50_ms": s.relay_ms.0,
            "inbox_to_kafka_p99_ms": s.relay_ms.1,
            "kafka_to_fyle_tx_p50_ms": s.kafka_to_fyle_tx_ms.0,
            "kafka_to_fyle_tx_p99_ms": s.kafka_to_fyle_tx_ms.1,
        })).collect::<Vec<_>>(),
    });
    Ok(figures.as_object().cloned().unwrap_or_default())
}

/// (c): Fyle API calls per workspace-day in each sync mode, counted by the sandbox.
async fn calls_per_day() -> anyhow::Result<Figures> {
    let demo_sb = sandbox(Some(10)).await?;
    let demo = stack_for(&demo_sb, Vec::new()).await?;
    let demo_workspace = connect(&demo, &demo_sb).await?;
    demo_sb.reset_stats();
    pull(&demo, demo_workspace, &[], false).await?;
    let (full_pass, _) = fyle_requests(&demo_sb);
    let category = demo_sb
        .fyle()
        .create(
            DEMO_ORG_ID,
            "categories",
            serde_json::json!({"name": "Bench change", "is_enabled": true}),
        )
        .context("a changed category")?;
    anyhow::ensure!(category.get("id").is_some(), "{category}");
    demo_sb.reset_stats();
    let (_, _, round_changed) = pull(&demo, demo_workspace, &[], true).await?;
    anyhow::ensure!(round_changed >= 1, "the incremental round found the change");
    let (incremental_round, _) = fyle_requests(&demo_sb);
    let interval_s =
        <fyle_sync::Config as attrsync_config::ServiceConfig>::from_env_pairs(Vec::new())?
            .reconcile
            .interval
            .as_secs_f64();
    let day = 86_400.0;
    let webhook_mode = (day / interval_s) * incremental_round as f64 + full_pass as f64;
    let polling_daily = full_pass as f64;
    let polling_fresh = (day / WEBHOOK_FRESHNESS_S) * incremental_round as f64;
    println!(
        "(c) one full pass of every resource = {full_pass} data requests, one incremental round = \
         {incremental_round}; per workspace-day with 20 changes: webhook mode (reconcile every \
         {interval_s:.0}s + daily full pass) {webhook_mode:.0}, polling at the 24-hour rule \
         {polling_daily:.0}, polling every {WEBHOOK_FRESHNESS_S}s (webhook freshness) \
         {polling_fresh:.0}; plus up to 24 token refreshes a day in each mode that calls hourly"
    );
    demo.stop().await;
    demo_sb.stop().await;
    let figures = serde_json::json!({
        "calls_full_pass": full_pass,
        "calls_incremental_round": incremental_round,
        "calls_per_day_webhook_mode": webhook_mode.round(),
        "calls_per_day_polling_24h": polling_daily.round(),
        "calls_per_day_polling_at_webhook_freshness": polling_fresh.round(),
    });
    Ok(figures.as_object().cloned().unwrap_or_default())
}
