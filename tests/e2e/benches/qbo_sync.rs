//! `make bench-qbo-sync`: qbo-sync's pull throughput against a plain `COPY`, and what a burst
//! of QBO webhooks costs in Intuit's budget.
//!
//! Everything runs in this process against the local stack's PostgreSQL (durable profile, or
//! the bench refuses) and Kafka, with the sandbox's QBO over loopback HTTP:
//!
//! (a) **Pull throughput**, throttle off (our own cost): the sandbox holds `BENCH_QBO_ROWS`
//!     (100,000) generated customers; a forced full `SyncDimensions(Customer)` into an empty
//!     table, then the same with 10% of them renamed — rows per second each. The baseline, in the
//!     same run and database: one `COPY … FROM STDIN` of the same rows (the values the sync
//!     stored) into a table of the same shape (`LIKE destination_attributes INCLUDING ALL`:
//!     same columns, defaults, unique key and indexes). This is done in `BENCH_QBO_ROUNDS` (3)
//!     rounds (the table emptied before each), every measured phase starting once the previous
//!     one's change events have left the outbox and right after a `CHECKPOINT` (the COPY's
//!     just before its clock), so none pays for the previous one's work; each round is printed,
//!     and `ratio` = the median of ours ÷ the median of COPY's (target ≥ 0.5) — on two shared
//!     cores one COPY moved by a third between runs, more than the change it is judged against.
//! (b) **A burst of webhooks**, throttle on (QBO's 500/minute, 10 in flight): 1,000 customers
//!     of a 2,000-customer company renamed in the sandbox, whose signed webhooks go to ingest → Kafka → qbo-sync (default
//!     pacing); measured: time from the first rename until every new name is stored, QBO
//!     data requests per change (target ≤ 0.05), and 429s served (target 0).
//!
//! Ends with one JSON line. `BENCH_QBO_ROWS` and `BENCH_QBO_BURST` shrink it for quick looks.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use anyhow::Context as _;
use attrsync_e2e::{
    TestStack,
    bench::{copy_baseline, durable_postgres, env_number, median, settle},
    qbo::QboSyncHandle,
};
use attrsync_proto::v1::{ConnectQboRequest, SyncQboDimensionsRequest};
use attrsync_sandbox::{
    QboWebhookConfig, Sandbox, SandboxConfig, SandboxHandle, Seed, Side,
    qbo::throttle::ThrottleConfig,
};
use diesel::{
    QueryableByName,
    sql_types::{BigInt, Text},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;

const REALM: &str = "9130357766900456";
const BURST_REALM: &str = "4620816365261100002";

fn unthrottled() -> ThrottleConfig {
    ThrottleConfig {
        per_window: u32::MAX,
        window_ms: 1_000,
        concurrent: u32::MAX,
    }
}

async fn connect(sb: &SandboxHandle, qbo: &QboSyncHandle, workspace_id: i64) -> anyhow::Result<()> {
    connect_realm(sb, qbo, workspace_id, REALM).await
}

async fn connect_realm(
    sb: &SandboxHandle,
    qbo: &QboSyncHandle,
    workspace_id: i64,
    realm: &str,
) -> anyhow::Result<()> {
    qbo.client
        .clone()
        .connect_qbo(ConnectQboRequest {
            workspace_id,
            realm_id: realm.into(),
            authorization_code: None,
            refresh_token: sb.qbo().refresh_token(realm),
        })
        .await?;
    Ok(())
}

/// A forced full pull of customers; (seconds, rows fetched, rows changed).
async fn pull_customers(qbo: &QboSyncHandle, workspace_id: i64) -> anyhow::Result<(f64, u32, u32)> {
    let started = Instant::now();
    let report = qbo
        .client
        .clone()
        .sync_dimensions(SyncQboDimensionsRequest {
            workspace_id,
            force: true,
            attribute_types: vec!["Customer".into()],
            incremental: false,
        })
        .await?
        .into_inner();
    let seconds = started.elapsed().as_secs_f64();
    let pull = <[_]>::first(&report.entities).context("a report for Customer")?;
    anyhow::ensure!(pull.outcome == "PULLED_FULL", "{report:?}");
    Ok((seconds, pull.fetched, pull.changed))
}

/// One round of (a): an initial pull, a re-sync and the COPY, each in rows per second.
struct Round {
    initial_rate: f64,
    resync_rate: f64,
    resync_changed: u32,
    copy_rate: f64,
}

/// Renames every tenth stored customer in the sandbox (a new name, SyncToken and
/// LastUpdatedTime, as QBO would show it); returns how many.
async fn rename_a_tenth(
    sb: &SandboxHandle,
    db: &mut AsyncPgConnection,
    workspace_id: i64,
    round: usize,
) -> anyhow::Result<usize> {
    let ids: Vec<Id> = diesel::sql_query(format!(
        "SELECT destination_id FROM qbo_sync.destination_attributes \
         WHERE workspace_id = {workspace_id} AND attribute_type = 'CUSTOMER' AND active \
         ORDER BY id"
    ))
    .load(db)
    .await?;
    // Changed in the sandbox's store directly (as its generator writes): its admin rename
    // re-derives every sub-customer's name by scanning the realm, which at 100,000 customers
    // would make preparing the bench take longer than the bench. QBO's view is the same: a new
    // name, SyncToken and LastUpdatedTime.
    let stamp = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::west_opt(7 * 3600).context("offset")?)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let mut renamed = 0;
    for id in ids.iter().step_by(10).map(|i| i.destination_id.as_str()) {
        let mut customer = sb
            .qbo()
            .get(REALM, "Customer", id)
            .context("a generated customer")?;
        let name = format!("Renamed customer {id} in round {round}");
        customer["DisplayName"] = json!(name);
        customer["FullyQualifiedName"] = json!(name);
        let token: u64 = customer["SyncToken"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        customer["SyncToken"] = json!((token + 1).to_string());
        customer["MetaData"]["LastUpdatedTime"] = json!(stamp);
        attrsync_sandbox::QboControl::load(&sb.qbo(), REALM, "Customer", customer)?;
        renamed += 1;
    }
    Ok(renamed)
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = Text)]
    destination_id: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn qbo_data_requests(sb: &SandboxHandle) -> u64 {
    sb.stats()
        .count_where(Side::Qbo, |endpoint| endpoint.contains("/v3/company/"))
}

fn main() -> anyhow::Result<()> {
    attrsync_e2e::bench::run_on_two_threads(run())
}

async fn run() -> anyhow::Result<()> {
    let rows = env_number("BENCH_QBO_ROWS", 100_000);
    let burst = env_number("BENCH_QBO_BURST", 1_000);
    let pg = durable_postgres("make bench-qbo-sync").await?;

    let sb = Sandbox::start(SandboxConfig {
        seed: Seed::Demo,
        workers: 2,
        ..SandboxConfig::default()
    })
    .await?;
    sb.set_qbo_throttle(unthrottled());
    let generated = Instant::now();
    sb.qbo().generate(REALM, "Customer", rows)?;
    println!(
        "sandbox: {rows} customers generated in {:.1}s",
        generated.elapsed().as_secs_f64()
    );

    // --- (a) pull throughput, throttle off.
    let stack = TestStack::start().await?;
    let qbo = stack
        .start_qbo_sync(
            sb.qbo_url(),
            vec![
                (
                    "QBO_SYNC__QBO__REQUESTS_PER_MINUTE".into(),
                    "10000000".into(),
                ),
                ("QBO_SYNC__QBO__MAX_CONCURRENT".into(), "10".into()),
                ("QBO_SYNC__DATABASE__POOL_SIZE".into(), "8".into()),
                // The bench's 100,000 customers are past the incumbent's 30,000 limit (#30).
                ("QBO_SYNC__SIZE_LIMIT__MAX_ACTIVE".into(), "10000000".into()),
                // Topics of its own: what is measured is qbo-sync's pull, not mapping and
                // import-to-fyle (in this same process) consuming 100,000 change events. It
                // learns the workspace from mapping over gRPC instead of its projection.
                (
                    "QBO_SYNC__KAFKA__TOPIC_PREFIX".into(),
                    format!("{}solo.", stack.topic_prefix),
                ),
            ],
        )
        .await?;
    let (workspace_id, _) = stack.create_workspace_with_realm(Some(REALM)).await?;
    connect(&sb, &qbo, workspace_id).await?;
    let mut db = AsyncPgConnection::establish(&stack.database.url).await?;
    let rounds = env_number("BENCH_QBO_ROUNDS", 3).max(1);
    let mut measured: Vec<Round> = Vec::with_capacity(rounds);
    for round in 0..rounds {
        if round > 0 {
            // The next round's initial pull starts from an empty table again.
            diesel::sql_query("TRUNCATE qbo_sync.destination_attributes")
                .execute(&mut db)
                .await?;
        }
        settle(&mut db, "qbo_sync.outbox").await?;
        let (initial_s, fetched, created) = pull_customers(&qbo, workspace_id).await?;
        let initial_rate = f64::from(fetched) / initial_s;
        println!(
            "(a) round {round}: initial full sync: {fetched} customers ({created} rows created) in {initial_s:.2}s = {initial_rate:.0} rows/s"
        );
        anyhow::ensure!(
            created == fetched,
            "an initial pull into an empty table creates a row per customer ({created} ≠ {fetched})"
        );
        let renamed = rename_a_tenth(&sb, &mut db, workspace_id, round).await?;
        settle(&mut db, "qbo_sync.outbox").await?;
        let (resync_s, refetched, changed) = pull_customers(&qbo, workspace_id).await?;
        let resync_rate = f64::from(refetched) / resync_s;
        println!(
            "(a) round {round}: re-sync with {renamed} renamed: {refetched} customers, {changed} changed, in {resync_s:.2}s = {resync_rate:.0} rows/s"
        );
        anyhow::ensure!(
            changed as usize == renamed,
            "a re-sync changes exactly the renamed rows ({changed} ≠ {renamed})"
        );
        settle(&mut db, "qbo_sync.outbox").await?;
        let (copied, copy_rate) = copy_baseline(
            &stack.database.url,
            "qbo_sync.destination_attributes",
            "workspace_id, attribute_type, display_name, qbo_entity, destination_id, value, code, \
             active, detail, content_hash, qbo_updated_at, sync_token",
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
            resync_changed: changed,
            copy_rate,
        });
    }
    let initial_rate = median(measured.iter().map(|r| r.initial_rate));
    let resync_rate = median(measured.iter().map(|r| r.resync_rate));
    let copy_rate = median(measured.iter().map(|r| r.copy_rate));
    let changed = measured.last().map_or(0, |r| r.resync_changed);
    println!(
        "(a) medians of {rounds} rounds: initial {initial_rate:.0}, re-sync {resync_rate:.0}, COPY {copy_rate:.0} rows/s"
    );

    // --- (b) a burst of webhooks, throttle on, default pacing, a stack of its own.
    let burst_stack = TestStack::start().await?;
    let paced = burst_stack.start_qbo_sync(sb.qbo_url(), Vec::new()).await?;
    // A company of its own with 2,000 customers: the burst's renames go through the sandbox's
    // real write path (webhooks), whose cost grows with the company's size.
    sb.qbo().add_realm(BURST_REALM);
    sb.qbo().generate(BURST_REALM, "Customer", 2_000)?;
    let (burst_workspace, _) = burst_stack
        .create_workspace_with_realm(Some(BURST_REALM))
        .await?;
    connect_realm(&sb, &paced, burst_workspace, BURST_REALM).await?;
    sb.set_qbo_throttle(ThrottleConfig::qbo());
    sb.set_qbo_webhook(QboWebhookConfig {
        url: Some(format!("{}/webhooks/qbo", burst_stack.ingest_url)),
        ..QboWebhookConfig::default()
    });
    sb.reset_stats();
    // The sandbox's generator numbers entities from 1,000,000.
    let burst_ids: Vec<String> = (1_000_000..=1_002_000u64)
        .map(|n| n.to_string())
        .filter(|id| {
            sb.qbo()
                .get(BURST_REALM, "Customer", id)
                .is_some_and(|c| c["Active"] == json!(true))
        })
        .take(burst)
        .collect();
    anyhow::ensure!(
        burst_ids.len() == burst,
        "{} active customers to rename",
        burst_ids.len()
    );
    let started = Instant::now();
    for id in &burst_ids {
        sb.qbo()
            .rename(BURST_REALM, "Customer", id, &format!("Burst customer {id}"))?;
    }
    let mut burst_db = AsyncPgConnection::establish(&burst_stack.database.url).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let applied_s = loop {
        let stored: Count = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM qbo_sync.destination_attributes \
             WHERE workspace_id = {burst_workspace} AND value LIKE 'Burst customer %'"
        ))
        .get_result(&mut burst_db)
        .await?;
        if stored.n as usize >= burst_ids.len() {
            break started.elapsed().as_secs_f64();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the burst was not applied within 5 minutes ({} of {})",
            stored.n,
            burst_ids.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stats = sb.stats();
    let requests = qbo_data_requests(&sb);
    let per_change = requests as f64 / burst_ids.len() as f64;
    println!(
        "(b) burst: {} changes applied in {applied_s:.2}s with {requests} QBO requests ({per_change:.3}/change), {} answered 429",
        burst_ids.len(),
        stats.throttled
    );

    burst_stack.stop().await;
    stack.stop().await;
    sb.stop().await;
    let line = json!({
        "bench": "qbo_sync",
        "rows": rows,
        "initial_rows_per_s": initial_rate.round(),
        "resync_rows_per_s": resync_rate.round(),
        "resync_changed": changed,
        "baseline_copy_rows_per_s": copy_rate.round(),
        "initial_ratio": (initial_rate / copy_rate * 1000.0).round() / 1000.0,
        "rounds": measured.iter().map(|r| json!({
            "initial_rows_per_s": r.initial_rate.round(),
            "resync_rows_per_s": r.resync_rate.round(),
            "baseline_copy_rows_per_s": r.copy_rate.round(),
            "initial_ratio": (r.initial_rate / r.copy_rate * 1000.0).round() / 1000.0,
            "resync_ratio": (r.resync_rate / r.copy_rate * 1000.0).round() / 1000.0,
        })).collect::<Vec<_>>(),
        "resync_ratio": (resync_rate / copy_rate * 1000.0).round() / 1000.0,
        "burst_changes": burst_ids.len(),
        "burst_applied_s": (applied_s * 100.0).round() / 100.0,
        "burst_qbo_requests": requests,
        "burst_requests_per_change": (per_change * 1000.0).round() / 1000.0,
        "burst_429s": stats.throttled,
        "pg_profile": pg.describe(),
    });
    println!("{line}");
    Ok(())
}
