//! Full pulls against a Fyle sandbox that misbehaves as Fyle does: an access token that
//! expires in the middle of a pass, a burst of 429s from a caller that overshoots Fyle's
//! 10 requests/second, a collection written to while 10,000 rows are paged through, and
//! employees who have not accepted their invite.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use attrsync_db::diesel_async::{AsyncConnection as _, AsyncPgConnection};
use attrsync_e2e::{TestStack, eventually};
use attrsync_proto::v1::{
    GetFyleSyncStatusRequest, SyncFyleDimensionsRequest, SyncFyleDimensionsResponse,
};
use attrsync_sandbox::{DEMO_ORG_ID, FaultAction, FaultRule, SandboxHandle, Side};
use diesel::{
    QueryableByName,
    sql_types::{BigInt, Bool, Text},
};
use serde_json::json;

use crate::{
    fyle_connection::{connected_workspace, demo_sandbox, stack_for},
    fyle_reconcile::{connect, start_replica, webhooks_only_stack},
};

const CATEGORIES: &str = "GET /platform/v1/admin/categories";
const TOKEN: &str = "POST /oauth/token";
/// The sandbox numbers generated categories from here (`seed::generate_fyle`).
const FIRST_GENERATED_CATEGORY: u64 = 10_000_001;

async fn full_pull(
    stack: &TestStack,
    workspace_id: i64,
    resource: &str,
) -> SyncFyleDimensionsResponse {
    stack
        .fyle_sync
        .clone()
        .sync_dimensions(SyncFyleDimensionsRequest {
            workspace_id,
            force: true,
            attribute_types: vec![resource.into()],
            incremental: false,
        })
        .await
        .unwrap()
        .into_inner()
}

#[derive(QueryableByName)]
struct StoredAttribute {
    #[diesel(sql_type = Text)]
    source_id: String,
    #[diesel(sql_type = Text)]
    value: String,
    #[diesel(sql_type = Bool)]
    active: bool,
}

/// Every stored attribute of a type, by source id, read from fyle-sync's table.
async fn stored(
    stack: &TestStack,
    workspace_id: i64,
    attribute_type: &str,
) -> HashMap<String, StoredAttribute> {
    use attrsync_db::diesel_async::RunQueryDsl as _;
    let mut db = AsyncPgConnection::establish(&stack.database.url)
        .await
        .unwrap();
    diesel::sql_query(
        "SELECT source_id, value, active FROM fyle_sync.expense_attributes \
         WHERE workspace_id = $1 AND attribute_type = $2",
    )
    .bind::<BigInt, _>(workspace_id)
    .bind::<Text, _>(attribute_type)
    .load::<StoredAttribute>(&mut db)
    .await
    .unwrap()
    .into_iter()
    .map(|a| (a.source_id.clone(), a))
    .collect()
}

/// The ids of the `n` categories the sandbox generated (each checked to exist).
fn generated_categories(sb: &SandboxHandle, n: usize) -> Vec<String> {
    sb.fyle().generate(DEMO_ORG_ID, "categories", n).unwrap();
    let ids: Vec<String> = (0..n as u64)
        .map(|k| (FIRST_GENERATED_CATEGORY + k).to_string())
        .collect();
    assert!(
        ids.iter()
            .all(|id| sb.fyle().get(DEMO_ORG_ID, "categories", id).is_some())
    );
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_in_the_middle_of_a_pull_is_refreshed_once_and_the_pull_completes() {
    // Fyle's 10/s limit off: the request counts below are exact, and a 429 answered to a
    // moment of jitter would add a request.
    let sb = attrsync_sandbox::Sandbox::start(attrsync_sandbox::SandboxConfig {
        seed: attrsync_sandbox::Seed::Demo,
        workers: 1,
        fyle_rate_limit_per_second: None,
        ..attrsync_sandbox::SandboxConfig::default()
    })
    .await
    .unwrap();
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    generated_categories(&sb, 1_000);
    let in_fyle = sb.fyle().count(DEMO_ORG_ID, "categories");
    // What a pull costs in token and list requests when nothing goes wrong.
    let (tokens, pages) = (
        sb.stats().count(Side::Fyle, TOKEN),
        sb.stats().count(Side::Fyle, CATEGORIES),
    );
    full_pull(&stack, workspace_id, "CATEGORY").await;
    let tokens_per_pull = sb.stats().count(Side::Fyle, TOKEN) - tokens;
    let pages_per_pull = sb.stats().count(Side::Fyle, CATEGORIES) - pages;
    // Fyle expires every access token as the third page is asked for: that request is
    // answered 401 and must be repeated with a fresh token.
    sb.faults().add(FaultRule {
        side: Some(Side::Fyle),
        endpoint: CATEGORIES.into(),
        action: FaultAction::ExpireTokens,
        skip: 2,
        times: Some(1),
    });
    let tokens_before = sb.stats().count(Side::Fyle, TOKEN);
    let pages_before = sb.stats().count(Side::Fyle, CATEGORIES);

    let report = full_pull(&stack, workspace_id, "CATEGORY").await;
    assert_eq!(report.resources[0].outcome, "PULLED");
    assert_eq!(
        report.resources[0].rows as usize, in_fyle,
        "every row, none twice"
    );
    let rows = stored(&stack, workspace_id, "CATEGORY").await;
    assert_eq!(rows.len(), in_fyle);
    assert_eq!(
        sb.stats().count(Side::Fyle, TOKEN) - tokens_before,
        tokens_per_pull + 1,
        "one refresh more than a quiet pull, after the 401"
    );
    assert_eq!(
        sb.stats().count(Side::Fyle, CATEGORIES) - pages_before,
        pages_per_pull + 1,
        "the refused page was asked again"
    );
    let status = stack
        .fyle_sync
        .clone()
        .get_sync_status(GetFyleSyncStatusRequest { workspace_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.fyle_connection, "CONNECTED",
        "an expired token is not a broken connection"
    );
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_429s_from_an_overeager_replica_slows_the_pull_but_does_not_fail_it() {
    let sb = demo_sandbox().await;
    // A replica whose limiter is set far above Fyle's 10 requests/second: the sandbox answers
    // its excess with 429 (no Retry-After, as Fyle does), and backoff has to absorb them.
    let stack = TestStack::start_with_env(
        Vec::new(),
        vec![
            (
                "FYLE_SYNC__FYLE__ACCOUNTS_URL".into(),
                sb.fyle_accounts_url().to_owned(),
            ),
            ("FYLE_SYNC__FYLE__REQUESTS_PER_SECOND".into(), "200".into()),
        ],
    )
    .await
    .unwrap();
    let workspace_id = connected_workspace(&stack, &sb).await;
    generated_categories(&sb, 4_000);
    let in_fyle = sb.fyle().count(DEMO_ORG_ID, "categories");
    // On top of what its pace earns, Fyle throttles the third page four times in a row with
    // `Retry-After: 1` (the client makes six attempts per call).
    sb.faults().add(FaultRule {
        side: Some(Side::Fyle),
        endpoint: CATEGORIES.into(),
        action: FaultAction::Throttle {
            retry_after: Some(1),
        },
        skip: 2,
        times: Some(4),
    });
    let throttled_before = sb.stats().throttled;

    let started = std::time::Instant::now();
    let report = full_pull(&stack, workspace_id, "CATEGORY").await;
    let throttled = sb.stats().throttled - throttled_before;
    assert!(
        throttled >= 4,
        "the sandbox answered a burst of 429s ({throttled})"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "each Retry-After was honoured ({:?})",
        started.elapsed()
    );
    assert_eq!(report.resources[0].outcome, "PULLED");
    assert_eq!(report.resources[0].rows as usize, in_fyle);
    assert_eq!(
        stored(&stack, workspace_id, "CATEGORY").await.len(),
        in_fyle
    );
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_through_10000_rows_while_fyle_writes_to_the_collection_misses_no_row() {
    let sb = demo_sandbox().await;
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    let originals = generated_categories(&sb, 10_000);

    // While the pass pages (50 pages at Fyle's 10/s: ~5 s), Fyle keeps writing: existing
    // rows renamed (they move to the end of the (updated_at, id) order, past pages already
    // read — where an offset pager skips the rows behind them) and new rows created.
    let pulling = Arc::new(AtomicBool::new(true));
    let writes = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (sb_writes, pulling, writes) = (sb.fyle(), pulling.clone(), writes.clone());
        let originals = originals.clone();
        tokio::spawn(async move {
            let mut created = Vec::new();
            let mut k = 0_usize;
            while pulling.load(Ordering::SeqCst) {
                // Spread over the whole order, the early pages included.
                let id = &originals[(k * 7_919) % originals.len()];
                sb_writes
                    .rename(
                        DEMO_ORG_ID,
                        "categories",
                        id,
                        &format!("Renamed during the pull {k}"),
                    )
                    .unwrap();
                let new = sb_writes
                    .create(
                        DEMO_ORG_ID,
                        "categories",
                        json!({"name": format!("Created during the pull {k}"), "is_enabled": true}),
                    )
                    .unwrap();
                created.push(new["id"].to_string().trim_matches('"').to_owned());
                writes.fetch_add(2, Ordering::SeqCst);
                k += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            created
        })
    };
    let report = full_pull(&stack, workspace_id, "CATEGORY").await;
    pulling.store(false, Ordering::SeqCst);
    let created = writer.await.unwrap();
    assert_eq!(report.resources[0].outcome, "PULLED");
    assert!(
        writes.load(Ordering::SeqCst) >= 40,
        "Fyle wrote to the collection throughout the pass ({} writes)",
        writes.load(Ordering::SeqCst)
    );

    // Every row that existed throughout the pass was returned by it.
    let after_full = stored(&stack, workspace_id, "CATEGORY").await;
    let missed: Vec<&String> = originals
        .iter()
        .filter(|id| !after_full.contains_key(*id))
        .collect();
    assert!(
        missed.is_empty(),
        "{} rows missed, e.g. {:?}",
        missed.len(),
        missed.first()
    );

    // A row written during the pass was returned by it or is by the next incremental pass:
    // afterwards the table is Fyle's collection, value for value.
    let incremental = stack
        .fyle_sync
        .clone()
        .sync_dimensions(SyncFyleDimensionsRequest {
            workspace_id,
            force: false,
            attribute_types: vec!["CATEGORY".into()],
            incremental: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(incremental.resources[0].outcome, "PULLED_INCREMENTAL");
    let rows = stored(&stack, workspace_id, "CATEGORY").await;
    assert_eq!(rows.len(), sb.fyle().count(DEMO_ORG_ID, "categories"));
    for id in originals.iter().chain(&created) {
        let in_fyle = sb.fyle().get(DEMO_ORG_ID, "categories", id).unwrap();
        let name = in_fyle["name"].as_str().unwrap();
        let row = rows.get(id).unwrap_or_else(|| panic!("{id} is stored"));
        assert!(
            row.value.starts_with(name),
            "{id}: {} is Fyle's {name}",
            row.value
        );
        assert!(row.active);
    }
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_employee_who_has_not_accepted_the_invite_is_stored_by_neither_pull_nor_webhook() {
    let sb = demo_sandbox().await;
    // Fyle's webhooks reach this stack's ingest; only the pull below and the webhooks store
    // employees.
    let stack = webhooks_only_stack(&sb).await;
    let workspace_id = stack.create_workspace_for_org(DEMO_ORG_ID).await.unwrap();
    let invited = sb
        .fyle()
        .create(
            DEMO_ORG_ID,
            "employees",
            json!({
                "user": {"email": "invited@example.com", "full_name": "Invited Only"},
                "has_accepted_invite": false,
                "is_enabled": true,
            }),
        )
        .unwrap();
    let invited_id = invited["id"].as_str().unwrap().to_owned();
    // Connecting registers the subscription: the sandbox's webhooks reach this stack.
    connect(&stack, &sb, workspace_id).await;
    let report = full_pull(&stack, workspace_id, "EMPLOYEE").await;
    assert_eq!(report.resources[0].outcome, "PULLED");
    let employees = stored(&stack, workspace_id, "EMPLOYEE").await;
    assert!(!employees.is_empty(), "accepted employees are stored");
    assert!(!employees.contains_key(&invited_id), "pulled, not stored");

    // A webhook for the same employee (Fyle sends one on every write) stores nothing either,
    // while the same write to an accepted employee is applied.
    let accepted_id = employees.keys().next().unwrap().clone();
    sb.fyle()
        .update(
            DEMO_ORG_ID,
            "employees",
            &invited_id,
            json!({"code": "E-INV"}),
        )
        .unwrap();
    sb.fyle()
        .update(
            DEMO_ORG_ID,
            "employees",
            &accepted_id,
            json!({"is_enabled": false}),
        )
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "the accepted employee's webhook applied",
        || async {
            Ok(stored(&stack, workspace_id, "EMPLOYEE")
                .await
                .get(&accepted_id)
                .is_some_and(|a| !a.active)
                .then_some(()))
        },
    )
    .await
    .unwrap();
    assert!(
        !stored(&stack, workspace_id, "EMPLOYEE")
            .await
            .contains_key(&invited_id),
        "webhooked, not stored"
    );
    stack.stop().await;
    sb.stop().await;
}

/// A category webhook as Fyle sends it for `org` (the workspaces here are many orgs, which
/// the sandbox's one Fyle app cannot all connect; the payload shape is the sandbox's).
fn category_webhook(org: &str, id: u64, name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "CREATED", "resource": "CATEGORY",
        "data": {"id": id, "org_id": org, "name": name, "sub_category": null,
                 "display_name": name, "code": null, "is_enabled": true,
                 "system_category": null, "restricted_project_ids": null,
                 "restricted_spender_user_ids": null,
                 "created_at": "2024-05-02T10:00:00.000000+00:00",
                 "updated_at": "2024-05-02T10:00:00.000000+00:00"}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fyle_sync_replicas_share_the_webhook_partitions_and_one_pull_lease() {
    let sb = demo_sandbox().await;
    // ingest creates the webhook topic (the stacks of the other tests have one partition).
    let stack = TestStack::start_with_env(
        vec![("INGEST__KAFKA__PARTITIONS".into(), "3".into())],
        vec![(
            "FYLE_SYNC__FYLE__ACCOUNTS_URL".into(),
            sb.fyle_accounts_url().to_owned(),
        )],
    )
    .await
    .unwrap();
    // A second fyle-sync on the same database, topics and consumer group: a replica.
    let (replica, shutdown) = start_replica(
        &stack,
        vec![(
            "FYLE_SYNC__FYLE__ACCOUNTS_URL".into(),
            sb.fyle_accounts_url().to_owned(),
        )],
    )
    .await;
    let topic = attrsync_kafka::topics::FYLE_ATTRIBUTE_WEBHOOKS;
    let handled =
        |running: &attrsync_runtime::Running| running.consumer(topic).map_or(0, |c| c.handled());

    // Webhooks of 12 workspaces (keys spread over the topic's partitions), in waves until both
    // replicas have handled some: the group has rebalanced and shares the partitions.
    let mut workspaces = Vec::new();
    for _ in 0..12 {
        workspaces.push(stack.create_workspace().await.unwrap());
    }
    let mut posted: HashMap<i64, u64> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut wave = 0_u64;
    while handled(&replica) == 0 || handled(stack.fyle_sync_running()) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replicas never shared the partitions"
        );
        for (workspace_id, org) in &workspaces {
            let body = category_webhook(org, 5_000 + wave, &format!("Wave {wave}"));
            let response = stack.post_fyle_webhook(*workspace_id, &body).await.unwrap();
            assert_eq!(response.status(), 200);
            *posted.entry(*workspace_id).or_default() += 1;
        }
        wave += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Each webhook applied exactly once between them, whichever replica had its partition.
    for (workspace_id, n) in &posted {
        let rows = eventually(Duration::from_secs(60), "every webhook applied", || async {
            let rows = stored(&stack, *workspace_id, "CATEGORY").await;
            Ok((rows.len() as u64 == *n).then_some(rows))
        })
        .await
        .unwrap();
        assert!(
            rows.values()
                .all(|a| a.active && a.value.starts_with("Wave "))
        );
        let status = stack
            .fyle_sync
            .clone()
            .get_sync_status(GetFyleSyncStatusRequest {
                workspace_id: *workspace_id,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            status.webhook_events_applied, *n,
            "workspace {workspace_id}"
        );
    }

    // Both replicas asked to pull the same workspace × resource at once: one pulls, the other
    // reports the lease held elsewhere (the list call is slowed for 10 s so the pulls overlap
    // however slowly the second replica builds its Fyle client).
    let connected = connected_workspace(&stack, &sb).await;
    sb.faults().add(FaultRule {
        side: Some(Side::Fyle),
        endpoint: CATEGORIES.into(),
        action: FaultAction::Latency { ms: 10_000 },
        skip: 0,
        times: Some(2),
    });
    let mut replica_client =
        attrsync_proto::v1::fyle_sync_service_client::FyleSyncServiceClient::connect(format!(
            "http://{}",
            replica.grpc_addr
        ))
        .await
        .unwrap();
    let request = || SyncFyleDimensionsRequest {
        workspace_id: connected,
        force: true,
        attribute_types: vec!["CATEGORY".into()],
        incremental: false,
    };
    let mut first = stack.fyle_sync.clone();
    let (a, b) = tokio::join!(
        first.sync_dimensions(request()),
        replica_client.sync_dimensions(request())
    );
    let mut outcomes = vec![
        a.unwrap().into_inner().resources[0].outcome.clone(),
        b.unwrap().into_inner().resources[0].outcome.clone(),
    ];
    outcomes.sort();
    assert_eq!(outcomes, vec!["HELD_ELSEWHERE", "PULLED"]);
    assert!(!stored(&stack, connected, "CATEGORY").await.is_empty());
    shutdown.cancel();
    replica.stop().await;
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_row_holding_a_nul_character_is_skipped_and_the_rest_of_its_page_is_stored() {
    let sb = demo_sandbox().await;
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    let bad = sb
        .fyle()
        .create(
            DEMO_ORG_ID,
            "categories",
            json!({"name": "Bad\u{0}name", "is_enabled": true}),
        )
        .unwrap();
    let bad_id = bad["id"].to_string();
    let in_fyle = sb.fyle().count(DEMO_ORG_ID, "categories");

    // PostgreSQL cannot store the row; it must not fail the page (and so every later pull).
    let report = full_pull(&stack, workspace_id, "CATEGORY").await;
    assert_eq!(report.resources[0].outcome, "PULLED");
    let rows = stored(&stack, workspace_id, "CATEGORY").await;
    assert_eq!(rows.len(), in_fyle - 1, "every other category stored");
    assert!(!rows.contains_key(&bad_id));
    stack.stop().await;
    sb.stop().await;
}
