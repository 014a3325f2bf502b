//! `make bench-import`: QuickBooks values into Fyle, measured over the whole running loop —
//! mapping, ingest, fyle-sync, qbo-sync and import-to-fyle in this process, the local stack's
//! PostgreSQL (durable profile, or the bench refuses) and Kafka, both sandboxes over loopback
//! HTTP with Fyle's documented limit on (10 requests/second per client IP).
//!
//! (a) **A first import at Fyle's limit**: 10,000 Expense accounts (`BENCH_IMPORT_ACCOUNTS`) in a
//!     QBO company, already pulled by qbo-sync, and an empty Fyle org. The clock starts when
//!     mapping's `UpdateImportSettings` turns category import on and stops when the last
//!     category exists in the Fyle sandbox. The minimum Fyle's limit imposes: one bulk post per
//!     200 values at 10 requests/second (50 requests ⇒ 5 s). `ratio` = minimum ÷ ours (target
//!     ≥ 0.83: within 20%). Also reported: the Fyle requests made, 429s answered, and when
//!     fyle-sync holds every new category.
//! (b) **Change → category → mapping**: 20 workspaces (each its own Fyle org and QBO company,
//!     categories imported), then 200 accounts created in QBO round-robin across them at
//!     `BENCH_IMPORT_RATE` (2) per second, their webhooks batched by the sandbox for 200 ms as
//!     under `make run`. Per change: the time from its creation until Fyle stamped the enabled
//!     category (Fyle's `updated_at`, as fyle-sync stored it) and until mapping created its
//!     CATEGORY → ACCOUNT mapping (`mappings.created_at`); p50 / p99 of each (target: mapping
//!     p99 ≤ 5 s; the incumbent: up to 24 hours).
//!
//! Ends with one JSON line. `BENCH_IMPORT_PARTS=a|b` runs one part; `BENCH_IMPORT_ACCOUNTS`,
//! `BENCH_IMPORT_CHANGES` and `BENCH_IMPORT_RATE` change the sizes for quick looks.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use anyhow::Context as _;
use attrsync_e2e::{
    TestStack,
    bench::{durable_postgres, env_number, merge, percentile, round3, wait_count},
    import::ImportHandle,
    qbo::QboSyncHandle,
};
use attrsync_proto::v1::{
    ConnectFyleRequest, ConnectQboRequest, CreateWorkspaceRequest, ImportSettings,
    SyncQboDimensionsRequest, UpdateImportSettingsRequest,
};
use attrsync_sandbox::{QboWebhookConfig, Sandbox, SandboxConfig, SandboxHandle, Seed, Side};
use chrono::{DateTime, Utc};
use diesel::{
    QueryableByName,
    sql_types::{BigInt, Text, Timestamptz},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;

/// Fyle's documented limit, which the sandbox enforces per client IP.
const FYLE_REQUESTS_PER_SECOND: f64 = 10.0;
/// Values per bulk post (#37).
const BATCH: usize = 200;
const WORKSPACES: usize = 20;

/// Fyle data-host requests the sandbox served, and the 429s among all it answered.
fn fyle_requests(sb: &SandboxHandle) -> u64 {
    sb.stats()
        .count_where(Side::Fyle, |endpoint| endpoint.contains("/platform/"))
}

/// The loop's services on one stack: mapping, ingest and fyle-sync (the stack), qbo-sync and
/// import-to-fyle.
struct Services {
    stack: TestStack,
    qbo: QboSyncHandle,
    _import: ImportHandle,
}

async fn services(sb: &SandboxHandle) -> anyhow::Result<Services> {
    let stack = TestStack::start_with_env(
        Vec::new(),
        vec![(
            "FYLE_SYNC__FYLE__ACCOUNTS_URL".into(),
            sb.fyle_accounts_url().to_owned(),
        )],
    )
    .await?;
    let qbo = stack.start_qbo_sync(sb.qbo_url(), Vec::new()).await?;
    let import = stack.start_import_to_fyle(Vec::new()).await?;
    Ok(Services {
        stack,
        qbo,
        _import: import,
    })
}

/// A workspace of `org` and `realm` (both added to the sandbox), connected to both.
async fn workspace(
    sb: &SandboxHandle,
    s: &Services,
    org: &str,
    realm: &str,
) -> anyhow::Result<i64> {
    let client = sb.fyle().add_org(org);
    let workspace_id = s
        .stack
        .mapping
        .clone()
        .create_workspace(CreateWorkspaceRequest {
            name: format!("Bench {org}"),
            fyle_org_id: org.to_owned(),
            qbo_realm_id: Some(realm.to_owned()),
            ..Default::default()
        })
        .await?
        .into_inner()
        .workspace
        .context("a workspace")?
        .id;
    s.stack
        .fyle_sync
        .clone()
        .connect_fyle(ConnectFyleRequest {
            workspace_id,
            refresh_token: Some(client.refresh_token),
            authorization_code: None,
        })
        .await?;
    s.qbo
        .client
        .clone()
        .connect_qbo(ConnectQboRequest {
            workspace_id,
            realm_id: realm.to_owned(),
            authorization_code: None,
            refresh_token: sb.qbo().refresh_token(realm),
        })
        .await?;
    Ok(workspace_id)
}

async fn import_categories(s: &Services, workspace_id: i64) -> anyhow::Result<()> {
    s.stack
        .mapping
        .clone()
        .update_import_settings(UpdateImportSettingsRequest {
            workspace_id,
            import_settings: Some(ImportSettings {
                import_categories: true,
                ..Default::default()
            }),
            mapping_settings: Vec::new(),
        })
        .await?;
    Ok(())
}

async fn pull_accounts(s: &Services, workspace_id: i64) -> anyhow::Result<()> {
    s.qbo
        .client
        .clone()
        .sync_dimensions(SyncQboDimensionsRequest {
            workspace_id,
            force: true,
            attribute_types: vec!["Account".into()],
            incremental: false,
        })
        .await?;
    Ok(())
}

/// `n` Expense accounts in `realm`, stored as fixture data (generated, then typed Expense).
fn expense_accounts(sb: &SandboxHandle, realm: &str, n: usize) -> anyhow::Result<()> {
    sb.qbo().generate(realm, "Account", n)?;
    // The generator numbers entities from 1,000,001 and cycles through every account type,
    // sub-accounts and inactive ones; these are all active top-level Expense accounts (the
    // default chart of accounts imports Expense ones; a first import, active ones).
    for id in 1_000_001..=1_000_000 + n {
        let mut account = sb
            .qbo()
            .get(realm, "Account", &id.to_string())
            .context("a generated account")?;
        account["AccountType"] = json!("Expense");
        account["Classification"] = json!("Expense");
        account["AccountSubType"] = json!("OtherMiscellaneousServiceCost");
        account["Active"] = json!(true);
        account["SubAccount"] = json!(false);
        account["FullyQualifiedName"] = account["Name"].clone();
        if let Some(fields) = account.as_object_mut() {
            fields.remove("ParentRef");
        }
        attrsync_sandbox::QboControl::load(&sb.qbo(), realm, "Account", account)?;
    }
    Ok(())
}

fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
}

fn main() -> anyhow::Result<()> {
    attrsync_e2e::bench::run_on_two_threads(run())
}

async fn run() -> anyhow::Result<()> {
    let accounts = env_number("BENCH_IMPORT_ACCOUNTS", 10_000);
    let changes = env_number("BENCH_IMPORT_CHANGES", 200);
    let rate = env_number("BENCH_IMPORT_RATE", 2.0);
    let parts = std::env::var("BENCH_IMPORT_PARTS").unwrap_or_else(|_| "ab".into());
    let pg = durable_postgres("make bench-import").await?;

    let sb = Sandbox::start(SandboxConfig {
        seed: Seed::Empty,
        workers: 2,
        ..SandboxConfig::default()
    })
    .await?;

    let mut line = json!({
        "bench": "import",
        "baseline_incumbent_s": 86_400,
        "pg_profile": pg.describe(),
    });
    if parts.contains('a') {
        merge(&mut line, first_import(&sb, accounts).await?);
    }
    if parts.contains('b') {
        merge(&mut line, change_latency(&sb, changes, rate).await?);
    }
    sb.stop().await;
    println!("{line}");
    Ok(())
}

/// (a): a first import of `accounts` accounts into an empty Fyle org; its figures.
async fn first_import(sb: &SandboxHandle, accounts: usize) -> anyhow::Result<serde_json::Value> {
    let (org, realm) = ("orBenchImport", "4620816365261100100");
    sb.qbo().add_realm(realm);
    expense_accounts(sb, realm, accounts)?;
    let s = services(sb).await?;
    let mut db = AsyncPgConnection::establish(&s.stack.database.url).await?;
    let workspace_id = workspace(sb, &s, org, realm).await?;
    pull_accounts(&s, workspace_id).await?;
    wait_count(
        &mut db,
        &format!(
            "SELECT count(*) AS n FROM import_to_fyle.import_destination_attributes \
             WHERE workspace_id = {workspace_id} AND attribute_type = 'ACCOUNT'"
        ),
        accounts as i64,
        Duration::from_secs(300),
        "import-to-fyle holding the accounts",
    )
    .await?;
    let before = sb.fyle().count(org, "categories");
    sb.reset_stats();
    let started = Instant::now();
    import_categories(&s, workspace_id).await?;
    let settings_s = started.elapsed().as_secs_f64();
    println!("(a) UpdateImportSettings answered after {settings_s:.3}s");
    let deadline = started + Duration::from_secs(600);
    let mut first_s = None;
    while sb.fyle().count(org, "categories") < before + accounts {
        if first_s.is_none() && sb.fyle().count(org, "categories") > before {
            first_s = Some(started.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} of {accounts} categories in Fyle after 10 minutes",
            sb.fyle().count(org, "categories") - before
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let import_s = started.elapsed().as_secs_f64();
    let first_s = first_s.unwrap_or(import_s);
    let requests_a = fyle_requests(sb);
    let throttled_a = sb.stats().throttled;
    wait_count(
        &mut db,
        &format!(
            "SELECT count(*) AS n FROM fyle_sync.expense_attributes \
             WHERE workspace_id = {workspace_id} AND attribute_type = 'CATEGORY' AND active"
        ),
        accounts as i64,
        Duration::from_secs(600),
        "fyle-sync holding the new categories",
    )
    .await?;
    let stored_s = started.elapsed().as_secs_f64();
    wait_count(
        &mut db,
        &format!(
            "SELECT count(*) AS n FROM mapping.mappings \
             WHERE workspace_id = {workspace_id} AND source_type = 'CATEGORY'"
        ),
        accounts as i64,
        Duration::from_secs(600),
        "mapping mapping the new categories",
    )
    .await?;
    let mapped_s = started.elapsed().as_secs_f64();
    let minimum_s = accounts.div_ceil(BATCH) as f64 / FYLE_REQUESTS_PER_SECOND;
    let ratio = minimum_s / import_s;
    println!(
        "(a) {accounts} accounts → Fyle categories in {import_s:.2}s, the first after {first_s:.2}s (minimum at Fyle's limit {minimum_s:.2}s, ratio {ratio:.3}); \
         {requests_a} Fyle requests, {throttled_a} answered 429; all stored by fyle-sync after {stored_s:.2}s, all mapped after {mapped_s:.2}s"
    );
    s.stack.stop().await;
    Ok(json!({
        "accounts": accounts,
        "import_s": round3(import_s),
        "first_category_s": round3(first_s),
        "minimum_s": round3(minimum_s),
        "ratio": round3(ratio),
        "import_fyle_requests": requests_a,
        "import_429s": throttled_a,
        "stored_by_fyle_sync_s": round3(stored_s),
        "mapped_s": round3(mapped_s),
    }))
}

/// (b): change → enabled category → mapping over `WORKSPACES` workspaces; its figures.
async fn change_latency(
    sb: &SandboxHandle,
    changes: usize,
    rate: f64,
) -> anyhow::Result<serde_json::Value> {
    let s = services(sb).await?;
    let mut db = AsyncPgConnection::establish(&s.stack.database.url).await?;
    sb.set_qbo_webhook(QboWebhookConfig {
        url: Some(format!("{}/webhooks/qbo", s.stack.ingest_url)),
        batch_window_ms: 200,
        ..QboWebhookConfig::default()
    });
    let mut workspaces = Vec::new();
    for w in 0..WORKSPACES {
        let (org, realm) = (
            format!("orBenchLoop{w:02}"),
            format!("46208163652611002{w:02}"),
        );
        sb.qbo().add_realm(&realm);
        for name in ["Travel", "Meals", "Lodging"] {
            sb.qbo().create(
                &realm,
                "Account",
                json!({"Name": name, "AccountType": "Expense"}),
            )?;
        }
        let workspace_id = workspace(sb, &s, &org, &realm).await?;
        pull_accounts(&s, workspace_id).await?;
        import_categories(&s, workspace_id).await?;
        workspaces.push((workspace_id, realm));
    }
    // Every workspace's first import done and mapped: 3 mappings each.
    wait_count(
        &mut db,
        "SELECT count(*) AS n FROM mapping.mappings WHERE source_type = 'CATEGORY'",
        3 * WORKSPACES as i64,
        Duration::from_secs(300),
        "the first imports mapped",
    )
    .await?;
    sb.reset_stats();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut created: Vec<(i64, String, DateTime<Utc>)> = Vec::with_capacity(changes);
    let mut next = Instant::now();
    for i in 0..changes {
        tokio::time::sleep_until(next.into()).await;
        next += interval;
        let (workspace_id, realm) = &workspaces[i % WORKSPACES];
        let at = Utc::now();
        let account = sb.qbo().create(
            realm,
            "Account",
            json!({"Name": format!("Change {i:03}"), "AccountType": "Expense"}),
        )?;
        let id = account["Id"]
            .as_str()
            .context("the account's Id")?
            .to_owned();
        created.push((*workspace_id, id, at));
    }
    wait_count(
        &mut db,
        "SELECT count(*) AS n FROM mapping.mappings \
         WHERE source_type = 'CATEGORY' AND destination_value LIKE 'Change %'",
        changes as i64,
        Duration::from_secs(300),
        "every change mapped",
    )
    .await?;
    #[derive(QueryableByName)]
    struct Arrival {
        #[diesel(sql_type = BigInt)]
        workspace_id: i64,
        #[diesel(sql_type = Text)]
        destination_id: String,
        #[diesel(sql_type = Timestamptz)]
        in_fyle_at: DateTime<Utc>,
        #[diesel(sql_type = Timestamptz)]
        mapped_at: DateTime<Utc>,
    }
    let arrivals: Vec<Arrival> = diesel::sql_query(
        "SELECT m.workspace_id, m.destination_id, COALESCE(e.source_updated_at, e.created_at) AS in_fyle_at, \
                m.created_at AS mapped_at \
         FROM mapping.mappings m \
         JOIN fyle_sync.expense_attributes e \
           ON e.workspace_id = m.workspace_id AND e.attribute_type = 'CATEGORY' \
          AND e.source_id = m.source_id \
         WHERE m.source_type = 'CATEGORY' AND m.destination_value LIKE 'Change %'",
    )
    .load(&mut db)
    .await?;
    let mut to_fyle = Vec::new();
    let mut to_mapping = Vec::new();
    for (workspace_id, id, at) in &created {
        let arrival = arrivals
            .iter()
            .find(|a| a.workspace_id == *workspace_id && &a.destination_id == id)
            .with_context(|| format!("account {id} of workspace {workspace_id} mapped"))?;
        to_fyle.push(seconds_between(*at, arrival.in_fyle_at));
        to_mapping.push(seconds_between(*at, arrival.mapped_at));
    }
    to_fyle.sort_by(f64::total_cmp);
    to_mapping.sort_by(f64::total_cmp);
    let requests_b = fyle_requests(sb);
    for (endpoint, stats) in sb
        .stats()
        .endpoints
        .iter()
        .filter(|(k, _)| k.starts_with("fyle "))
    {
        println!("(b)   {endpoint}: {}", stats.count);
    }
    let throttled_b = sb.stats().throttled;
    println!(
        "(b) {changes} changes over {WORKSPACES} workspaces at {rate}/s: enabled Fyle category p50 {:.3}s p99 {:.3}s; \
         mapping p50 {:.3}s p99 {:.3}s max {:.3}s; {requests_b} Fyle requests, {throttled_b} answered 429",
        percentile(&to_fyle, 50.0),
        percentile(&to_fyle, 99.0),
        percentile(&to_mapping, 50.0),
        percentile(&to_mapping, 99.0),
        to_mapping.last().copied().unwrap_or(f64::NAN),
    );
    s.stack.stop().await;
    Ok(json!({
        "changes": changes,
        "workspaces": WORKSPACES,
        "changes_per_s": rate,
        "to_fyle_p50_s": round3(percentile(&to_fyle, 50.0)),
        "to_fyle_p99_s": round3(percentile(&to_fyle, 99.0)),
        "to_mapping_p50_s": round3(percentile(&to_mapping, 50.0)),
        "to_mapping_p99_s": round3(percentile(&to_mapping, 99.0)),
        "loop_fyle_requests": requests_b,
        "loop_429s": throttled_b,
    }))
}
