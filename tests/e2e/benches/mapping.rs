//! `make bench-mapping`: auto-mapping, measured in the running mapping service (its gRPC API
//! and its Kafka consumers) against the local stack's PostgreSQL (durable profile, or the bench
//! refuses) and Kafka. The change events are published onto mapping's topics as fyle-sync and
//! qbo-sync publish them (envelopes of up to 1,000 changes, keyed by workspace).
//!
//! (a) **100,000 categories against 100,000 accounts** (`BENCH_MAPPING_ROWS`). A workspace
//!     matching case-sensitively holds both sides, equal but for case, so nothing is mapped.
//!     The clock runs over the `UpdateImportSettings` call that turns case-insensitive matching
//!     on: in its one transaction mapping re-maps every unmapped category (reads, the matching
//!     rule in memory, one insert and one error-resolving update per page) and commits
//!     100,000 mappings. **Baseline**, same run, same database: one
//!     `INSERT … SELECT … JOIN ON lower(value)` of the same mapping into `mappings` itself
//!     (its keys, indexes and foreign key), as the rows of another, empty workspace. `ratio` = our
//!     rows/second ÷ the baseline's (target ≥ 0.5). Also reported, not compared: the event
//!     path — a second workspace already holding the categories receives the 100,000 accounts
//!     as qbo-sync's first pull publishes them; the time from the first envelope sent until
//!     every category is mapped (projection writes included).
//! (b) **Event → mapping at 200 events/second** (`BENCH_MAPPING_RATE`, for
//!     `BENCH_MAPPING_SECONDS` = 15): 20 workspaces each holding 500 unmapped categories; one
//!     destination-attribute event a tick, round robin, each a new account matching one
//!     category. Per event: from just before it is sent until its mapping row is visible to
//!     another connection (polled every 5 ms); p50 / p99 / max.
//!
//! Ends with one JSON line. `BENCH_MAPPING_PARTS=a|b` runs one part; any `MAPPING__…` setting
//! of the bench's environment (e.g. `MAPPING__DATABASE__QUERY_TIMEOUT=300s`) goes to mapping.
#![allow(clippy::unwrap_used)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use attrsync_e2e::{
    TestStack,
    bench::{count, durable_postgres, env_number, merge, percentile, round3, wait_count},
};
use attrsync_kafka::{
    Producer,
    topics::{self, Topic, TopicPayload},
};
use attrsync_proto::v1::{
    ChangeKind, CreateWorkspaceRequest, DestinationAttributeChange, DestinationAttributesChanged,
    ExpenseAttributeChange, ExpenseAttributesChanged, ImportSettings, UpdateImportSettingsRequest,
    WorkspaceSettings,
};
use diesel::{
    QueryableByName,
    sql_types::{BigInt, Text},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;

/// Changes per envelope, as a pull page publishes them.
const ENVELOPE: usize = 1_000;
const LATENCY_WORKSPACES: usize = 20;
const LATENCY_CATEGORIES: usize = 500;
const POLL: Duration = Duration::from_millis(5);
const LOAD_LIMIT: Duration = Duration::from_secs(900);

fn main() -> anyhow::Result<()> {
    attrsync_e2e::bench::run_on_two_threads(run())
}

async fn run() -> anyhow::Result<()> {
    let rows = env_number("BENCH_MAPPING_ROWS", 100_000usize);
    let rate = env_number("BENCH_MAPPING_RATE", 200.0);
    let seconds = env_number("BENCH_MAPPING_SECONDS", 15.0);
    let parts = std::env::var("BENCH_MAPPING_PARTS").unwrap_or_else(|_| "ab".into());
    let partitions = env_number("BENCH_MAPPING_PARTITIONS", 3usize);
    let pg = durable_postgres("make bench-mapping").await?;
    // mapping starts first and creates the topics it consumes with production's partitions.
    // Any `MAPPING__…` variable of the bench's own environment wins (for trying settings).
    let mut mapping_env = vec![("MAPPING__KAFKA__PARTITIONS".into(), partitions.to_string())];
    mapping_env.extend(std::env::vars().filter(|(k, _)| k.starts_with("MAPPING__")));
    let stack = TestStack::start_with_env(mapping_env, Vec::new()).await?;
    let producer = stack.direct_producer()?;
    let url = attrsync_db::url_with_schema(&stack.database.url, "mapping")?;
    let mut db = AsyncPgConnection::establish(&url).await?;

    let mut line =
        json!({"bench": "mapping", "pg_profile": pg.describe(), "partitions": partitions});
    if parts.contains('a') {
        merge(
            &mut line,
            bulk_automap(&stack, &producer, &mut db, rows).await?,
        );
    }
    if parts.contains('b') {
        merge(
            &mut line,
            event_latency(&stack, &producer, &url, rate, seconds).await?,
        );
    }
    stack.stop().await;
    println!("{line}");
    Ok(())
}

/// A workspace matching case-sensitively or not.
async fn workspace(stack: &TestStack, name: &str, case_insensitive: bool) -> anyhow::Result<i64> {
    let snapshot = stack
        .mapping
        .clone()
        .create_workspace(CreateWorkspaceRequest {
            name: format!("Bench {name}"),
            fyle_org_id: format!("orBench{name}"),
            settings: Some(WorkspaceSettings {
                mapping_settings: Vec::new(),
                import_settings: Some(import_settings(case_insensitive)),
                webhook_flags: None,
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(snapshot.workspace.map(|w| w.id).unwrap_or_default())
}

fn import_settings(case_insensitive: bool) -> ImportSettings {
    ImportSettings {
        charts_of_accounts: vec!["Expense".into()],
        is_sync_after_timestamp_enabled: true,
        auto_map_case_insensitive: case_insensitive,
        ..Default::default()
    }
}

fn category(id: &str, value: String) -> ExpenseAttributeChange {
    ExpenseAttributeChange {
        attribute_type: "CATEGORY".into(),
        source_id: id.into(),
        value,
        old_value: None,
        active: true,
        kind: ChangeKind::Created as i32,
        display_name: "Category".into(),
        detail_json: String::new(),
    }
}

fn account(id: &str, value: String) -> DestinationAttributeChange {
    DestinationAttributeChange {
        attribute_type: "ACCOUNT".into(),
        destination_id: id.into(),
        value,
        old_value: None,
        active: true,
        kind: ChangeKind::Created as i32,
        display_name: "Account".into(),
        code: None,
        old_code: None,
        detail_json: json!({"account_type": "Expense"}).to_string(),
    }
}

/// The `i`th category of the bulk part, and its account (the same name in capitals).
fn bulk_pair(i: usize) -> (ExpenseAttributeChange, DestinationAttributeChange) {
    (
        category(&format!("cat{i:06}"), format!("Expense Account {i:06}")),
        account(
            &format!("{}", 100_000 + i),
            format!("EXPENSE ACCOUNT {i:06}"),
        ),
    )
}

/// Sends one envelope of `payload` for `workspace_id` onto `topic`.
async fn send<P: TopicPayload>(
    producer: &Producer,
    topic: Topic<P>,
    workspace_id: i64,
    payload: P,
) -> anyhow::Result<()> {
    let envelope = attrsync_kafka::envelope::new(
        workspace_id,
        "bench",
        attrsync_proto::time::now(),
        payload.into_payload(),
    );
    producer.publish(topic.name(), &envelope).await?;
    Ok(())
}

/// Every change of `changes`, in envelopes of [`ENVELOPE`] (`envelope` wraps a chunk), as a
/// pull publishes them.
async fn send_in_envelopes<C: Clone, P: TopicPayload>(
    producer: &Producer,
    topic: Topic<P>,
    workspace_id: i64,
    changes: &[C],
    envelope: fn(Vec<C>) -> P,
) -> anyhow::Result<()> {
    for chunk in changes.chunks(ENVELOPE) {
        send(producer, topic, workspace_id, envelope(chunk.to_vec())).await?;
    }
    Ok(())
}

async fn send_categories(
    producer: &Producer,
    workspace_id: i64,
    changes: Vec<ExpenseAttributeChange>,
) -> anyhow::Result<()> {
    let envelope = |changes| ExpenseAttributesChanged {
        changes,
        origin: "pull".into(),
    };
    send_in_envelopes(
        producer,
        topics::EXPENSE_ATTRIBUTES_CHANGED,
        workspace_id,
        &changes,
        envelope,
    )
    .await
}

async fn send_accounts(
    producer: &Producer,
    workspace_id: i64,
    changes: Vec<DestinationAttributeChange>,
) -> anyhow::Result<()> {
    let envelope = |changes| DestinationAttributesChanged {
        changes,
        origin: "pull".into(),
    };
    send_in_envelopes(
        producer,
        topics::DESTINATION_ATTRIBUTES_CHANGED,
        workspace_id,
        &changes,
        envelope,
    )
    .await
}

fn stored(table: &str, workspace_id: i64) -> String {
    format!("SELECT count(*) AS n FROM {table} WHERE workspace_id = {workspace_id}")
}

fn mapped(workspace_id: i64) -> String {
    format!(
        "SELECT count(*) AS n FROM mappings WHERE workspace_id = {workspace_id} \
           AND source_type = 'CATEGORY' AND destination_type = 'ACCOUNT'"
    )
}

/// Mappings of `workspace_id` whose category and account carry the same name in any case
/// (every one the bench expects is of that kind).
fn mapped_correctly(workspace_id: i64) -> String {
    format!(
        "SELECT count(*) AS n FROM mappings m \
         JOIN source_attributes s ON s.workspace_id = m.workspace_id \
          AND s.attribute_type = m.source_type AND s.source_id = m.source_id \
         WHERE m.workspace_id = {workspace_id} AND m.source_type = 'CATEGORY' \
           AND lower(s.value) = lower(m.destination_value)"
    )
}

/// (a): 100,000 × 100,000 through a settings change, next to one `INSERT … SELECT … JOIN`;
/// then the event path. Its figures.
async fn bulk_automap(
    stack: &TestStack,
    producer: &Producer,
    db: &mut AsyncPgConnection,
    rows: usize,
) -> anyhow::Result<serde_json::Value> {
    let (categories, accounts): (Vec<_>, Vec<_>) = (0..rows).map(bulk_pair).unzip();

    // The settings path: both sides stored, nothing matches case-sensitively.
    let workspace_id = workspace(stack, "Bulk", false).await?;
    let loading = Instant::now();
    send_accounts(producer, workspace_id, accounts.clone()).await?;
    send_categories(producer, workspace_id, categories.clone()).await?;
    wait_count(
        db,
        &stored("destination_attributes", workspace_id),
        rows as i64,
        LOAD_LIMIT,
        "accounts stored",
    )
    .await?;
    wait_count(
        db,
        &stored("source_attributes", workspace_id),
        rows as i64,
        LOAD_LIMIT,
        "categories stored",
    )
    .await?;
    let load_s = loading.elapsed().as_secs_f64();
    // Both plans below read fresh tables: give the planner their statistics first (autovacuum
    // would, later), so neither side is measured with a nested loop over 100,000².
    diesel::sql_query("ANALYZE source_attributes, destination_attributes, mappings")
        .execute(db)
        .await?;
    anyhow::ensure!(
        count(db, &mapped(workspace_id)).await? == 0,
        "nothing maps case-sensitively"
    );
    println!(
        "(a) {rows} accounts and {rows} categories stored by mapping's consumers in {load_s:.2}s"
    );

    let started = Instant::now();
    stack
        .mapping
        .clone()
        .update_import_settings(UpdateImportSettingsRequest {
            workspace_id,
            import_settings: Some(import_settings(true)),
            mapping_settings: Vec::new(),
        })
        .await?;
    let ours_s = started.elapsed().as_secs_f64();
    let ours = count(db, &mapped_correctly(workspace_id)).await?;
    anyhow::ensure!(
        ours == rows as i64 && count(db, &mapped(workspace_id)).await? == rows as i64,
        "every category mapped to its account: {ours} of {rows}"
    );
    let ours_rate = rows as f64 / ours_s;

    let baseline_id = workspace(stack, "Baseline", false).await?;
    let (baseline, baseline_s) = join_baseline(db, workspace_id, baseline_id).await?;
    anyhow::ensure!(baseline == rows, "the baseline maps {baseline} of {rows}");
    let baseline_rate = rows as f64 / baseline_s;
    let ratio = ours_rate / baseline_rate;
    println!(
        "(a) settings change → {rows} mappings in {ours_s:.3}s ({ours_rate:.0} rows/s); \
         one INSERT … SELECT … JOIN ON lower(value): {baseline_s:.3}s ({baseline_rate:.0} rows/s); ratio {ratio:.3}"
    );

    // The event path: the categories are known, the accounts arrive as a first pull.
    let events_id = workspace(stack, "Events", true).await?;
    send_categories(producer, events_id, categories).await?;
    wait_count(
        db,
        &stored("source_attributes", events_id),
        rows as i64,
        LOAD_LIMIT,
        "categories stored",
    )
    .await?;
    let started = Instant::now();
    send_accounts(producer, events_id, accounts).await?;
    wait_count(
        db,
        &mapped(events_id),
        rows as i64,
        LOAD_LIMIT,
        "every category mapped as its account arrives",
    )
    .await?;
    let events_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        count(db, &mapped_correctly(events_id)).await? == rows as i64,
        "every category mapped to its account"
    );
    println!(
        "(a) event path: {rows} accounts sent as a first pull → every category mapped in {events_s:.2}s ({:.0} rows/s, projection writes included)",
        rows as f64 / events_s
    );
    Ok(json!({
        "rows": rows,
        "automap_s": round3(ours_s),
        "automap_rows_per_s": ours_rate.round(),
        "baseline_join_s": round3(baseline_s),
        "baseline_join_rows_per_s": baseline_rate.round(),
        "ratio": round3(ratio),
        "event_path_s": round3(events_s),
        "event_path_rows_per_s": (rows as f64 / events_s).round(),
    }))
}

/// The baseline: one `INSERT … SELECT … JOIN ON lower(value)` of `workspace_id`'s category →
/// account mapping into `mappings` itself (its keys, indexes and foreign key), as the rows of
/// the empty workspace `into`; (rows, seconds).
async fn join_baseline(
    db: &mut AsyncPgConnection,
    workspace_id: i64,
    into: i64,
) -> anyhow::Result<(usize, f64)> {
    let started = Instant::now();
    let inserted = diesel::sql_query(
        "INSERT INTO mappings (workspace_id, source_type, source_id, destination_type, \
             destination_display_name, destination_id, destination_value, auto_mapped) \
         SELECT $2, s.attribute_type, s.source_id, d.attribute_type, d.display_name, \
                d.destination_id, d.value, true \
         FROM source_attributes s \
         JOIN destination_attributes d ON d.workspace_id = s.workspace_id \
          AND d.attribute_type = 'ACCOUNT' AND d.active AND lower(d.value) = lower(s.value) \
         WHERE s.workspace_id = $1 AND s.attribute_type = 'CATEGORY' AND s.active",
    )
    .bind::<BigInt, _>(workspace_id)
    .bind::<BigInt, _>(into)
    .execute(db)
    .await?;
    Ok((inserted, started.elapsed().as_secs_f64()))
}

#[derive(QueryableByName)]
struct MappedRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    workspace_id: i64,
    #[diesel(sql_type = Text)]
    source_id: String,
}

/// When each (workspace, category) mapping first became visible.
type Seen = Arc<Mutex<HashMap<(i64, String), Instant>>>;

/// Polls `mappings` every [`POLL`] from its own connection until `stop`, recording when each
/// category mapping is first seen. Rows are read from a little below the highest id seen, so a
/// transaction that took a lower id but committed later is not missed.
async fn watch_mappings(
    url: String,
    seen: Seen,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let mut db = AsyncPgConnection::establish(&url).await?;
    let mut highest = count(&mut db, "SELECT COALESCE(max(id), 0) AS n FROM mappings").await?;
    while !stop.is_cancelled() {
        let rows: Vec<MappedRow> = diesel::sql_query(
            "SELECT id, workspace_id, source_id FROM mappings \
             WHERE id > $1 AND source_type = 'CATEGORY'",
        )
        .bind::<BigInt, _>(highest - 2_000)
        .load(&mut db)
        .await?;
        let now = Instant::now();
        {
            let mut seen = seen.lock().unwrap();
            for row in rows {
                highest = highest.max(row.id);
                seen.entry((row.workspace_id, row.source_id)).or_insert(now);
            }
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// (b): destination events at `rate` per second for `seconds`; time to each one's mapping.
async fn event_latency(
    stack: &TestStack,
    producer: &Producer,
    url: &str,
    rate: f64,
    seconds: f64,
) -> anyhow::Result<serde_json::Value> {
    let mut db = AsyncPgConnection::establish(url).await?;
    let mut workspaces = Vec::new();
    for w in 0..LATENCY_WORKSPACES {
        let workspace_id = workspace(stack, &format!("Latency{w:02}"), true).await?;
        let categories = (0..LATENCY_CATEGORIES)
            .map(|i| category(&format!("lat{i:04}"), format!("Latency {w:02}-{i:04}")))
            .collect();
        send_categories(producer, workspace_id, categories).await?;
        workspaces.push(workspace_id);
    }
    for &workspace_id in &workspaces {
        wait_count(
            &mut db,
            &stored("source_attributes", workspace_id),
            LATENCY_CATEGORIES as i64,
            LOAD_LIMIT,
            "categories stored",
        )
        .await?;
    }

    let seen: Seen = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let watcher = tokio::spawn(watch_mappings(url.to_owned(), seen.clone(), stop.clone()));
    let events = ((rate * seconds) as usize).min(LATENCY_WORKSPACES * LATENCY_CATEGORIES);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut sent: Vec<((i64, String), Instant)> = Vec::with_capacity(events);
    let mut sends = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut next = started;
    for n in 0..events {
        tokio::time::sleep_until(next.into()).await;
        next += interval;
        let (w, i) = (n % LATENCY_WORKSPACES, n / LATENCY_WORKSPACES);
        let workspace_id = workspaces[w];
        let change = account(
            &format!("{}", 500_000 + n),
            format!("LATENCY {w:02}-{i:04}"),
        );
        sent.push(((workspace_id, format!("lat{i:04}")), Instant::now()));
        let producer = producer.clone();
        sends.spawn(async move {
            let payload = DestinationAttributesChanged {
                changes: vec![change],
                origin: "webhook".into(),
            };
            send(
                &producer,
                topics::DESTINATION_ATTRIBUTES_CHANGED,
                workspace_id,
                payload,
            )
            .await
        });
    }
    let send_s = started.elapsed().as_secs_f64();
    while let Some(result) = sends.join_next().await {
        result??;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = {
            let seen = seen.lock().unwrap();
            sent.iter()
                .filter(|(key, _)| seen.contains_key(key))
                .count()
        };
        if done >= events {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{done} of {events} events mapped after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    watcher.await??;
    let seen = seen.lock().unwrap();
    let mut latencies: Vec<f64> = sent
        .iter()
        .map(|(key, at)| {
            seen.get(key)
                .map(|visible| visible.saturating_duration_since(*at).as_secs_f64())
                .unwrap_or(f64::INFINITY)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let achieved = events as f64 / send_s;
    let (p50, p99, max) = (
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "(b) {events} destination events at {achieved:.0}/s over {LATENCY_WORKSPACES} workspaces: \
         event → mapping visible p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        p50 * 1e3,
        p99 * 1e3,
        max * 1e3
    );
    Ok(json!({
        "events": events,
        "events_per_s": round3(achieved),
        "event_to_mapping_p50_ms": round3(p50 * 1e3),
        "event_to_mapping_p99_ms": round3(p99 * 1e3),
        "event_to_mapping_max_ms": round3(max * 1e3),
    }))
}
