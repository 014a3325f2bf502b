//! Full pulls (SyncDimensions) against the Fyle sandbox in process: the pull path and the
//! webhook path store identical rows, a full pass deactivates what Fyle deleted, the 24-hour
//! rule, a webhook applied while a pull runs is not overwritten by the pull's older copy, an
//! incremental pull reads only what changed since the watermark, a full pass over unchanged
//! objects rewrites none of their rows, and dependent values follow their field by pull and by
//! webhook.

use std::time::Duration;

use attrsync_e2e::{TestStack, eventually};
use attrsync_proto::v1::{
    ExpenseAttribute, ListExpenseAttributesRequest, SyncFyleDimensionsRequest,
    SyncFyleDimensionsResponse,
};
use attrsync_sandbox::{DEMO_ORG_ID, FaultAction, FaultRule, Side};
use serde_json::{Value, json};

use crate::{
    fyle_connection::{connected_workspace, demo_sandbox, stack_for},
    fyle_reconcile::webhooks_only_stack,
};

const WAIT: Duration = Duration::from_secs(60);
const CATEGORIES: &str = "GET /platform/v1/admin/categories";

async fn sync(
    stack: &TestStack,
    workspace_id: i64,
    force: bool,
    types: &[&str],
) -> SyncFyleDimensionsResponse {
    stack
        .fyle_sync
        .clone()
        .sync_dimensions(SyncFyleDimensionsRequest {
            workspace_id,
            force,
            attribute_types: types.iter().map(|t| (*t).to_owned()).collect(),
            incremental: false,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn categories(stack: &TestStack, workspace_id: i64) -> Vec<ExpenseAttribute> {
    stack
        .fyle_sync
        .clone()
        .list_expense_attributes(ListExpenseAttributesRequest {
            workspace_id,
            attribute_type: Some("CATEGORY".into()),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .attributes
}

fn webhook(action: &str, data: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"action": action, "resource": "CATEGORY", "data": data})).unwrap()
}

/// Every stored attribute of a workspace as a user sees it (ids and write times differ between
/// databases), in a stable order.
async fn every_row(stack: &TestStack, workspace_id: i64) -> Vec<StoredRow> {
    use attrsync_db::diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
    let mut db = AsyncPgConnection::establish(&stack.database.url)
        .await
        .unwrap();
    diesel::sql_query(
        "SELECT attribute_type, source_id, value, active, display_name, \
                coalesce(detail::text, '') AS detail, source_updated_at \
         FROM fyle_sync.expense_attributes WHERE workspace_id = $1 \
         ORDER BY attribute_type, source_id",
    )
    .bind::<diesel::sql_types::BigInt, _>(workspace_id)
    .load(&mut db)
    .await
    .unwrap()
}

#[derive(Debug, PartialEq, diesel::QueryableByName)]
struct StoredRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    attribute_type: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    source_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    value: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    active: bool,
    #[diesel(sql_type = diesel::sql_types::Text)]
    display_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    detail: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    source_updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pull_path_and_the_webhook_path_store_identical_rows_for_every_resource() {
    let sb = demo_sandbox().await;
    // One stack learns the org only from the sandbox's webhooks (no scheduled rounds, no pull)…
    let hooked = webhooks_only_stack(&sb).await;
    let by_webhook = connected_workspace(&hooked, &sb).await;
    // …as Fyle writes every object of every pulled resource once (UPDATED with its data).
    let mut touched = 0_u64;
    for resource in [
        "categories",
        "projects",
        "cost_centers",
        "employees",
        "corporate_cards",
        "tax_groups",
        // Fields before their dependent values: a value's webhook needs its field's name.
        "expense_fields",
        "dependent_expense_field_values",
    ] {
        let ids = sb.fyle().ids(DEMO_ORG_ID, resource);
        assert!(!ids.is_empty(), "the demo org has {resource}");
        for id in ids {
            sb.fyle()
                .update(DEMO_ORG_ID, resource, &id, json!({}))
                .unwrap();
            touched += 1;
        }
    }
    eventually(WAIT, "every webhook handled", || async {
        let s = hooked
            .fyle_sync
            .clone()
            .get_sync_status(attrsync_proto::v1::GetFyleSyncStatusRequest {
                workspace_id: by_webhook,
            })
            .await?
            .into_inner();
        Ok((s.webhook_events_applied + s.webhook_events_ignored >= touched).then_some(()))
    })
    .await
    .unwrap();
    let from_webhooks = every_row(&hooked, by_webhook).await;

    // The other learns it only from one full pull (its registered URL reaches nothing).
    let pulled = stack_for(&sb).await;
    let by_pull = connected_workspace(&pulled, &sb).await;
    let report = sync(&pulled, by_pull, true, &[]).await;
    assert!(
        report.resources.iter().all(|r| r.outcome == "PULLED"),
        "{report:?}"
    );
    let from_pull = every_row(&pulled, by_pull).await;

    let types: std::collections::BTreeSet<&str> = from_pull
        .iter()
        .map(|r| r.attribute_type.as_str())
        .collect();
    for fixed in [
        "CATEGORY",
        "PROJECT",
        "COST_CENTER",
        "EMPLOYEE",
        "CORPORATE_CARD",
        "TAX_GROUP",
    ] {
        assert!(types.contains(fixed), "{fixed} rows in {types:?}");
    }
    assert!(
        types.iter().any(|t| ![
            "CATEGORY",
            "PROJECT",
            "COST_CENTER",
            "EMPLOYEE",
            "CORPORATE_CARD",
            "TAX_GROUP"
        ]
        .contains(t)),
        "custom field options in {types:?}"
    );
    let cost_code = from_pull
        .iter()
        .find(|r| r.attribute_type == "CUSTOM:COST_CODE" && r.source_id == "88001")
        .expect("the demo org's dependent value is stored");
    assert_eq!(
        (cost_code.value.as_str(), cost_code.active),
        ("CC-100", true)
    );
    assert!(
        cost_code.detail.contains(r#""is_dependent": true"#),
        "{}",
        cost_code.detail
    );
    assert_eq!(from_webhooks, from_pull);
    pulled.stop().await;
    hooked.stop().await;
    sb.stop().await;
}

/// The attribute rows of one custom type, by source id: (value, active, detail).
async fn custom_rows(
    stack: &TestStack,
    workspace_id: i64,
    attribute_type: &str,
) -> std::collections::BTreeMap<String, (String, bool, String)> {
    every_row(stack, workspace_id)
        .await
        .into_iter()
        .filter(|r| r.attribute_type == attribute_type)
        .map(|r| (r.source_id, (r.value, r.active, r.detail)))
        .collect()
}

const DEPENDENT_VALUES: &str = "dependent_expense_field_values";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependent_values_are_pulled_under_their_fields_name_and_a_full_pass_follows_fyle() {
    let sb = demo_sandbox().await;
    // Its registered URL reaches nothing: only pulls tell it what changed.
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    let value = |parent: &str, code: &str, enabled: bool| {
        json!({"parent_expense_field_id": 203020, "expense_field_id": 229510,
               "parent_expense_field_value": parent, "expense_field_value": code,
               "is_enabled": enabled})
    };
    // A second value under another project, and a disabled one.
    let create =
        |v: Value| sb.fyle().create(DEMO_ORG_ID, DEPENDENT_VALUES, v).unwrap()["id"].to_string();
    let second = create(value("Project Two", "CC-200", true));
    let disabled = create(value("Project Two", "CC-900", false));
    let summary = |rows: std::collections::BTreeMap<String, (String, bool, String)>| {
        rows.into_iter()
            .map(|(id, (v, active, _))| (id, v, active))
            .collect::<Vec<_>>()
    };
    let expect = |mut rows: Vec<(&str, &str, bool)>| {
        rows.sort();
        rows.into_iter()
            .map(|(id, v, a)| (id.to_owned(), v.to_owned(), a))
            .collect::<Vec<_>>()
    };

    // One pull: the field's values under its name, each keyed by its own id, the disabled
    // one inactive, each with its parent's value — in two calls: the fields, then the values.
    sb.reset_stats();
    let report = sync(&stack, workspace_id, true, &["DEPENDENT_FIELD"]).await;
    assert_eq!(report.resources[0].outcome, "PULLED", "{report:?}");
    let calls = |path: &str| {
        sb.stats()
            .count_where(Side::Fyle, |e| e.ends_with(&format!("/admin/{path}")))
    };
    assert_eq!((calls("expense_fields"), calls(DEPENDENT_VALUES)), (1, 1));
    assert_eq!(report.resources[0].rows, 3);
    let rows = custom_rows(&stack, workspace_id, "CUSTOM:COST_CODE").await;
    assert!(
        rows[&second].2.contains(r#""parent_value": "Project Two""#),
        "{rows:?}"
    );
    assert_eq!(
        summary(rows),
        expect(vec![
            ("88001", "CC-100", true),
            (&second, "CC-200", true),
            (&disabled, "CC-900", false),
        ])
    );

    // Fyle renames one, deletes one and enables the disabled one; the next full pass follows.
    sb.fyle()
        .update(
            DEMO_ORG_ID,
            DEPENDENT_VALUES,
            &second,
            json!({"expense_field_value": "CC-201"}),
        )
        .unwrap();
    sb.fyle()
        .delete(DEMO_ORG_ID, DEPENDENT_VALUES, "88001")
        .unwrap();
    sb.fyle()
        .set_enabled(DEMO_ORG_ID, DEPENDENT_VALUES, &disabled, true)
        .unwrap();
    let report = sync(&stack, workspace_id, true, &["DEPENDENT_FIELD"]).await;
    assert_eq!(
        (report.resources[0].rows, report.resources[0].deleted),
        (2, 1),
        "{report:?}"
    );
    let after_full_pass = expect(vec![
        ("88001", "CC-100", false),
        (&second, "CC-201", true),
        (&disabled, "CC-900", true),
    ]);
    assert_eq!(
        summary(custom_rows(&stack, workspace_id, "CUSTOM:COST_CODE").await),
        after_full_pass
    );

    // A custom SELECT field whose name maps to the same type adds its option and leaves the
    // dependent values alone (its options are matched among option rows only).
    sb.fyle()
        .create(
            DEMO_ORG_ID,
            "expense_fields",
            json!({"field_name": "cost_code", "type": "SELECT", "is_custom": true,
                   "is_enabled": true, "is_mandatory": false, "column_name": "text_column9",
                   "options": ["CC-SELECT"]}),
        )
        .unwrap();
    sync(&stack, workspace_id, true, &["EXPENSE_FIELD"]).await;
    let rows = summary(custom_rows(&stack, workspace_id, "CUSTOM:COST_CODE").await);
    let values: Vec<_> = rows
        .iter()
        .filter(|(id, ..)| !id.contains(':'))
        .cloned()
        .collect();
    assert_eq!(values, after_full_pass, "{rows:?}");
    assert!(
        rows.iter()
            .any(|(id, v, a)| id.contains(':') && v == "CC-SELECT" && *a),
        "{rows:?}"
    );
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_value_whose_field_is_unknown_is_ignored_then_stored_by_the_pull() {
    let sb = demo_sandbox().await;
    let hooked = webhooks_only_stack(&sb).await;
    let workspace_id = connected_workspace(&hooked, &sb).await;
    // The value's webhook arrives before anything told fyle-sync about its field.
    sb.fyle()
        .update(
            DEMO_ORG_ID,
            DEPENDENT_VALUES,
            "88001",
            json!({"expense_field_value": "CC-101"}),
        )
        .unwrap();
    eventually(WAIT, "the webhook handled", || async {
        let s = hooked
            .fyle_sync
            .clone()
            .get_sync_status(attrsync_proto::v1::GetFyleSyncStatusRequest { workspace_id })
            .await?
            .into_inner();
        Ok((s.webhook_events_ignored >= 1).then_some(()))
    })
    .await
    .unwrap();
    assert!(
        custom_rows(&hooked, workspace_id, "CUSTOM:COST_CODE")
            .await
            .is_empty(),
        "nothing stored under a guessed type"
    );
    assert!(
        every_row(&hooked, workspace_id)
            .await
            .iter()
            .all(|r| r.attribute_type != "DEPENDENT_FIELD"),
        "nor under the resource's name"
    );
    let report = sync(&hooked, workspace_id, true, &["DEPENDENT_FIELD"]).await;
    assert_eq!(report.resources[0].outcome, "PULLED", "{report:?}");
    let rows = custom_rows(&hooked, workspace_id, "CUSTOM:COST_CODE").await;
    assert_eq!(rows["88001"].0, "CC-101");
    // Its field now known, the value's next webhook is applied.
    sb.fyle()
        .update(
            DEMO_ORG_ID,
            DEPENDENT_VALUES,
            "88001",
            json!({"expense_field_value": "CC-102"}),
        )
        .unwrap();
    eventually(WAIT, "the renamed dependent value", || async {
        let rows = custom_rows(&hooked, workspace_id, "CUSTOM:COST_CODE").await;
        Ok((rows["88001"].0 == "CC-102").then_some(()))
    })
    .await
    .unwrap();
    hooked.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_stored_without_a_version_is_updated_not_refused_by_the_first_pull() {
    use attrsync_db::diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
    let sb = demo_sandbox().await;
    // Pages of 200: the first pull tries them as never seen, and its plain insert meets the row.
    sb.fyle().generate(DEMO_ORG_ID, "categories", 300).unwrap();
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    // A category row from before versions were kept: the pull sees its object for the first
    // time, so it inserts plainly — and must fall back to planning it when the insert meets it.
    let id = sb.fyle().ids(DEMO_ORG_ID, "categories")[0].clone();
    let mut db = AsyncPgConnection::establish(&stack.database.url)
        .await
        .unwrap();
    let planted = diesel::sql_query(
        "INSERT INTO fyle_sync.expense_attributes \
             (workspace_id, attribute_type, display_name, value, source_id, active, content_hash) \
         VALUES ($1, 'CATEGORY', 'Category', 'Stale name', $2, true, 'stale')",
    )
    .bind::<diesel::sql_types::BigInt, _>(workspace_id)
    .bind::<diesel::sql_types::Text, _>(&id)
    .execute(&mut db)
    .await
    .unwrap();
    assert_eq!(planted, 1);
    let report = sync(&stack, workspace_id, true, &["CATEGORY"]).await;
    assert_eq!(report.resources[0].outcome, "PULLED", "{report:?}");
    let stored = categories(&stack, workspace_id).await;
    let row = stored.iter().find(|a| a.source_id == id).unwrap();
    let in_fyle = sb.fyle().get(DEMO_ORG_ID, "categories", &id).unwrap();
    assert_ne!(row.value, "Stale name", "the pull updated the planted row");
    let name = in_fyle["name"].as_str().unwrap_or_default();
    assert!(
        !name.is_empty() && row.value.starts_with(name),
        "{} from {in_fyle}",
        row.value
    );
    assert_eq!(
        stored.iter().filter(|a| a.source_id == id).count(),
        1,
        "one row per object"
    );
    stack.stop().await;
    sb.stop().await;
}

/// A first pull tries its pages as never seen (versions and rows inserted plainly). An object
/// newer webhooks already stored has a version row — a delete's with no attribute row, an
/// update's with its row: its page's plain insert must meet the version and give way to the
/// claims, which refuse the pull's older copies. The deleted object gets no row, the updated
/// one keeps the webhook's, every other object gets one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_pull_keeps_what_newer_webhooks_stored_whether_a_delete_or_an_update() {
    use attrsync_db::diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
    let sb = demo_sandbox().await;
    sb.fyle().generate(DEMO_ORG_ID, "categories", 300).unwrap();
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    let ids = sb.fyle().ids(DEMO_ORG_ID, "categories");
    assert!(
        ids.len() > 300,
        "pages of 200 rows, above the plain-insert threshold"
    );
    // One object on the first page, one on the second.
    let (updated, gone) = (ids[10].clone(), ids[ids.len() / 2 + 10].clone());
    let mut db = AsyncPgConnection::establish(&stack.database.url)
        .await
        .unwrap();
    diesel::sql_query(
        "INSERT INTO fyle_sync.source_versions (workspace_id, object_key, version, deleted) \
         VALUES ($1, 'CATEGORY:' || $2, '2100-01-01T00:00:00Z', true), \
                ($1, 'CATEGORY:' || $3, '2100-01-01T00:00:00Z', false)",
    )
    .bind::<diesel::sql_types::BigInt, _>(workspace_id)
    .bind::<diesel::sql_types::Text, _>(&gone)
    .bind::<diesel::sql_types::Text, _>(&updated)
    .execute(&mut db)
    .await
    .unwrap();
    diesel::sql_query(
        "INSERT INTO fyle_sync.expense_attributes (workspace_id, attribute_type, display_name, \
             value, source_id, active, content_hash, source_updated_at) \
         VALUES ($1, 'CATEGORY', 'Category', 'Webhook name', $2, true, 'webhook', \
                 '2100-01-01T00:00:00Z')",
    )
    .bind::<diesel::sql_types::BigInt, _>(workspace_id)
    .bind::<diesel::sql_types::Text, _>(&updated)
    .execute(&mut db)
    .await
    .unwrap();

    let report = sync(&stack, workspace_id, true, &["CATEGORY"]).await;
    assert_eq!(report.resources[0].outcome, "PULLED", "{report:?}");
    assert_eq!(report.attributes_changed as usize, ids.len() - 2);
    let stored = categories(&stack, workspace_id).await;
    let mut source_ids: Vec<&str> = stored.iter().map(|a| a.source_id.as_str()).collect();
    source_ids.sort_unstable();
    source_ids.dedup();
    assert_eq!(
        (stored.len(), source_ids.len()),
        (ids.len() - 1, ids.len() - 1),
        "one row per object"
    );
    assert!(
        !source_ids.contains(&gone.as_str()),
        "the tombstoned object got no row"
    );
    let kept = stored.iter().find(|a| a.source_id == updated);
    assert_eq!(
        kept.map(|a| a.value.as_str()),
        Some("Webhook name"),
        "the webhook's newer row is kept"
    );
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_category_deleted_in_fyle_is_deactivated_by_the_next_full_pass() {
    let sb = demo_sandbox().await;
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    sync(&stack, workspace_id, true, &["CATEGORY"]).await;
    let before = categories(&stack, workspace_id).await;
    assert!(before.len() >= 2 && before.iter().all(|a| a.active));
    let gone = before[0].source_id.clone();
    sb.fyle().delete(DEMO_ORG_ID, "categories", &gone).unwrap();

    let report = sync(&stack, workspace_id, true, &["CATEGORY"]).await;
    assert_eq!(report.resources[0].deleted, 1);
    let after = categories(&stack, workspace_id).await;
    assert_eq!(after.len(), before.len(), "deactivated, not removed");
    for a in &after {
        assert_eq!(a.active, a.source_id != gone, "{}", a.source_id);
    }
    // Nothing else changes on the pass after.
    let again = sync(&stack, workspace_id, true, &["CATEGORY"]).await;
    assert_eq!(
        (again.resources[0].deleted, again.attributes_changed),
        (0, 0)
    );
    stack.stop().await;
    sb.stop().await;
}

/// The row version (`xmin`) of every category's version row and attribute row of a workspace,
/// keyed `version <object key>` and `attribute <source id>`.
async fn category_row_versions(
    stack: &TestStack,
    workspace_id: i64,
) -> std::collections::BTreeMap<String, String> {
    use attrsync_db::diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
    #[derive(diesel::QueryableByName)]
    struct RowVersion {
        #[diesel(sql_type = diesel::sql_types::Text)]
        key: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        xmin: String,
    }
    let mut db = AsyncPgConnection::establish(&stack.database.url)
        .await
        .unwrap();
    let rows: Vec<RowVersion> = diesel::sql_query(
        "SELECT 'version ' || object_key AS key, xmin::text AS xmin \
         FROM fyle_sync.source_versions WHERE workspace_id = $1 AND object_key LIKE 'CATEGORY:%' \
         UNION ALL \
         SELECT 'attribute ' || source_id, xmin::text FROM fyle_sync.expense_attributes \
         WHERE workspace_id = $1 AND attribute_type = 'CATEGORY'",
    )
    .bind::<diesel::sql_types::BigInt, _>(workspace_id)
    .load(&mut db)
    .await
    .unwrap();
    rows.into_iter().map(|r| (r.key, r.xmin)).collect()
}

/// A full pass whose objects Fyle has not changed since the last one repeats their versions:
/// it writes neither their version rows nor their attribute rows, only the renamed one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pass_over_unchanged_categories_rewrites_only_the_renamed_ones_rows() {
    let sb = demo_sandbox().await;
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    sync(&stack, workspace_id, true, &["CATEGORY"]).await;
    let before = category_row_versions(&stack, workspace_id).await;
    assert!(before.len() >= 4, "{before:?}");
    sb.fyle()
        .rename(DEMO_ORG_ID, "categories", "22330021", "Airfare")
        .unwrap();

    let report = sync(&stack, workspace_id, true, &["CATEGORY"]).await;
    assert_eq!(report.attributes_changed, 1);
    let after = category_row_versions(&stack, workspace_id).await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    let rewritten: Vec<&str> = after
        .iter()
        .filter(|(key, xmin)| before.get(*key) != Some(*xmin))
        .map(|(key, _)| key.as_str())
        .collect();
    assert_eq!(
        rewritten,
        ["attribute 22330021", "version CATEGORY:22330021"],
        "only the renamed category's rows get a new row version"
    );
    stack.stop().await;
    sb.stop().await;
}

/// What PostgreSQL has counted for `fyle_sync.expense_attributes`: scans of its unique key
/// (whatever its name), scans of its other indexes and the entries they read, and the rows
/// sequential scans read.
#[derive(diesel::QueryableByName, Debug, Clone, Copy)]
struct AttributeReads {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    unique_key_scans: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    other_index_scans: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    other_index_entries_read: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    sequential_rows_read: i64,
}

impl AttributeReads {
    async fn now(db: &mut attrsync_db::diesel_async::AsyncPgConnection) -> Self {
        use attrsync_db::diesel_async::RunQueryDsl as _;
        diesel::sql_query(
            "SELECT coalesce(sum(s.idx_scan) FILTER (WHERE k.unique_key), 0)::int8 \
                        AS unique_key_scans, \
                    coalesce(sum(s.idx_scan) FILTER (WHERE NOT k.unique_key), 0)::int8 \
                        AS other_index_scans, \
                    coalesce(sum(s.idx_tup_read) FILTER (WHERE NOT k.unique_key), 0)::int8 \
                        AS other_index_entries_read, \
                    (SELECT seq_tup_read FROM pg_stat_user_tables \
                     WHERE relid = 'fyle_sync.expense_attributes'::regclass) \
                        AS sequential_rows_read \
             FROM pg_stat_user_indexes s \
             JOIN pg_index i ON i.indexrelid = s.indexrelid \
             CROSS JOIN LATERAL (SELECT i.indisunique AND NOT i.indisprimary AS unique_key) k \
             WHERE s.relid = 'fyle_sync.expense_attributes'::regclass",
        )
        .get_result(db)
        .await
        .expect("statistics of expense_attributes")
    }
}

/// A stack whose fyle-sync (`first_statistics` at `interval`) pulls from `sb`, with autovacuum
/// off for `expense_attributes` in the test's database, and a connection to it.
async fn stack_without_autovacuum(
    sb: &attrsync_sandbox::SandboxHandle,
    first_statistics: &str,
) -> (TestStack, attrsync_db::diesel_async::AsyncPgConnection) {
    use attrsync_db::diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
    let stack = TestStack::start_with_env(
        Vec::new(),
        vec![
            (
                "FYLE_SYNC__FYLE__ACCOUNTS_URL".into(),
                sb.fyle_accounts_url().to_owned(),
            ),
            (
                "FYLE_SYNC__DATABASE__FIRST_STATISTICS_INTERVAL".into(),
                first_statistics.into(),
            ),
        ],
    )
    .await
    .unwrap();
    let mut db = AsyncPgConnection::establish(&stack.database.url)
        .await
        .unwrap();
    diesel::sql_query("ALTER TABLE fyle_sync.expense_attributes SET (autovacuum_enabled = false)")
        .execute(&mut db)
        .await
        .unwrap();
    (stack, db)
}

/// A brand-new database's first re-sync can run before `expense_attributes` has statistics
/// (here: autovacuum off and fyle-sync's first statistics off). Without them the planner once
/// probed each stored row through the listing index, reading every row of the type per key;
/// the probes must go through the unique key whatever the statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_sync_before_the_table_is_ever_analysed_probes_rows_by_their_unique_key() {
    use attrsync_db::diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
    let sb = demo_sandbox().await;
    sb.fyle().generate(DEMO_ORG_ID, "categories", 3000).unwrap();
    let (stack, mut db) = stack_without_autovacuum(&sb, "0s").await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    sync(&stack, workspace_id, true, &["CATEGORY"]).await;
    let ids = sb.fyle().ids(DEMO_ORG_ID, "categories");
    let renamed: Vec<&String> = ids.iter().step_by(30).collect();
    for id in &renamed {
        sb.fyle()
            .rename(DEMO_ORG_ID, "categories", id, &format!("Renamed {id}"))
            .unwrap();
    }

    let report = sync(&stack, workspace_id, true, &["CATEGORY"]).await;
    assert_eq!(
        report.attributes_changed as usize,
        renamed.len(),
        "{report:?}"
    );
    let never_analysed: bool = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
        "(SELECT reltuples < 0 FROM pg_class \
          WHERE oid = 'fyle_sync.expense_attributes'::regclass)",
    ))
    .get_result(&mut db)
    .await
    .unwrap();
    assert!(never_analysed, "the scenario needs a table never analysed");
    // Each backend reports its counts within seconds of its transactions. The re-sync looks
    // up every stored object's row, each lookup a scan of whichever index served it.
    let reads = eventually(WAIT, "the re-sync's lookups counted", || {
        let (url, objects) = (stack.database.url.clone(), ids.len() as i64);
        async move {
            let mut db = AsyncPgConnection::establish(&url).await?;
            let reads = AttributeReads::now(&mut db).await;
            Ok((reads.unique_key_scans + reads.other_index_scans >= objects).then_some(reads))
        }
    })
    .await
    .unwrap();
    // Since the database was made: each full pass's deletion check reads the type once through
    // the listing index (two passes: about `2 × ids.len()` entries), each renamed row is
    // updated by its primary key. A single lookup through the listing index reads the whole
    // type (the lookup has no LIMIT), so a few of them would pass the bound.
    assert!(
        reads.other_index_entries_read < 3 * ids.len() as i64 && reads.sequential_rows_read == 0,
        "{reads:?}: a lookup by key went through another index or a sequential scan"
    );
    stack.stop().await;
    sb.stop().await;
}

/// The table a first pull fills is analysed by fyle-sync within seconds
/// (`attrsync_runtime::statistics`), not a minute later by autovacuum (off here): its
/// statistics count its rows, even if a pass came while the first page was uncommitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_given_its_first_rows_gets_statistics_within_seconds_without_autovacuum() {
    use attrsync_db::diesel_async::RunQueryDsl as _;
    #[derive(diesel::QueryableByName)]
    struct Analysed {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        analysed: bool,
    }
    let sb = demo_sandbox().await;
    let (stack, mut db) = stack_without_autovacuum(&sb, "200ms").await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    let state = async |db: &mut attrsync_db::diesel_async::AsyncPgConnection| -> bool {
        diesel::sql_query(
            "SELECT reltuples > 0 AS analysed FROM pg_class \
             WHERE oid = 'fyle_sync.expense_attributes'::regclass",
        )
        .get_result::<Analysed>(db)
        .await
        .unwrap()
        .analysed
    };
    assert!(
        !state(&mut db).await,
        "an empty table has no statistics to take"
    );

    sync(&stack, workspace_id, true, &["CATEGORY"]).await;
    eventually(
        Duration::from_secs(20),
        "expense_attributes analysed",
        || {
            let url = stack.database.url.clone();
            async move {
                use attrsync_db::diesel_async::AsyncConnection as _;
                let mut db = attrsync_db::diesel_async::AsyncPgConnection::establish(&url).await?;
                Ok(state(&mut db).await.then_some(()))
            }
        },
    )
    .await
    .unwrap();
    stack.stop().await;
    sb.stop().await;
}

/// Turns the workspace's Fyle webhook sync on or off and waits until fyle-sync's projection
/// has the flag.
async fn set_fyle_webhooks(stack: &TestStack, workspace_id: i64, on: bool) {
    stack
        .mapping
        .clone()
        .update_webhook_flags(attrsync_proto::v1::UpdateWebhookFlagsRequest {
            workspace_id,
            fyle_webhook_sync_enabled: Some(on),
            ..Default::default()
        })
        .await
        .unwrap();
    eventually(WAIT, "fyle-sync to see the webhook flag", || async {
        let status = stack
            .fyle_sync
            .clone()
            .get_sync_status(attrsync_proto::v1::GetFyleSyncStatusRequest { workspace_id })
            .await?
            .into_inner();
        Ok(status
            .resources
            .iter()
            .all(|r| r.webhook_mode == on)
            .then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_dimensions_in_webhook_mode_pulls_once_then_leaves_the_resource_to_its_webhooks() {
    let sb = demo_sandbox().await;
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    set_fyle_webhooks(&stack, workspace_id, true).await;
    // Never pulled: the first request pulls, webhook mode or not.
    let first = sync(&stack, workspace_id, false, &["CATEGORY"]).await;
    assert_eq!(first.resources[0].outcome, "PULLED");
    let listed = sb.stats().count(Side::Fyle, CATEGORIES);
    // Then a plain request does nothing and calls nothing (incumbent #24)…
    let again = sync(&stack, workspace_id, false, &["CATEGORY"]).await;
    assert!(!again.pulled);
    assert_eq!(again.resources[0].outcome, "SKIPPED_WEBHOOK_MODE");
    assert_eq!(
        sb.stats().count(Side::Fyle, CATEGORIES),
        listed,
        "Fyle was not called"
    );
    // …a forced one pulls.
    let forced = sync(&stack, workspace_id, true, &["CATEGORY"]).await;
    assert_eq!(forced.resources[0].outcome, "PULLED");
    assert!(sb.stats().count(Side::Fyle, CATEGORIES) > listed);
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_pulled_within_24_hours_is_pulled_again_only_when_forced() {
    let sb = demo_sandbox().await;
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    set_fyle_webhooks(&stack, workspace_id, false).await;
    let first = sync(&stack, workspace_id, false, &["CATEGORY", "PROJECT"]).await;
    assert!(first.pulled);
    assert!(first.resources.iter().all(|r| r.outcome == "PULLED"));
    let listed = sb.stats().count(Side::Fyle, CATEGORIES);

    let second = sync(&stack, workspace_id, false, &["CATEGORY", "PROJECT"]).await;
    assert!(!second.pulled);
    assert!(
        second
            .resources
            .iter()
            .all(|r| r.outcome == "SKIPPED_RECENT")
    );
    assert_eq!(
        sb.stats().count(Side::Fyle, CATEGORIES),
        listed,
        "Fyle was not called"
    );
    // A resource never pulled is pulled; a forced one is pulled again.
    let other = sync(&stack, workspace_id, false, &["COST_CENTER", "CATEGORY"]).await;
    assert_eq!(
        other
            .resources
            .iter()
            .map(|r| r.outcome.as_str())
            .collect::<Vec<_>>(),
        vec!["PULLED", "SKIPPED_RECENT"]
    );
    let forced = sync(&stack, workspace_id, true, &["CATEGORY"]).await;
    assert!(forced.pulled);
    assert!(sb.stats().count(Side::Fyle, CATEGORIES) > listed);
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_applied_while_a_pull_runs_is_not_overwritten_by_the_pull() {
    let sb = demo_sandbox().await;
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    let listed: Vec<Value> = sb
        .fyle()
        .get(DEMO_ORG_ID, "categories", "22330021")
        .into_iter()
        .collect();
    let mut renamed = listed[0].clone();
    renamed["name"] = json!("Renamed by webhook");
    renamed["sub_category"] = Value::Null;
    renamed["updated_at"] = json!((chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339());

    // The pull's list call is held for 15 s (long enough for a busy machine to apply the
    // webhook meanwhile): it reads Fyle's older copy, and writes it after the webhook below
    // has been applied.
    sb.faults().add(FaultRule {
        side: Some(Side::Fyle),
        endpoint: CATEGORIES.into(),
        action: FaultAction::Latency { ms: 15_000 },
        skip: 0,
        times: Some(1),
    });
    let pull = {
        let mut client = stack.fyle_sync.clone();
        tokio::spawn(async move {
            client
                .sync_dimensions(SyncFyleDimensionsRequest {
                    workspace_id,
                    force: true,
                    attribute_types: vec!["CATEGORY".into()],
                    incremental: false,
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let posted = stack
        .post_fyle_webhook(workspace_id, &webhook("UPDATED", &renamed))
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    eventually(WAIT, "the webhook applied", || async {
        Ok(categories(&stack, workspace_id)
            .await
            .iter()
            .any(|a| a.value == "Renamed by webhook")
            .then_some(()))
    })
    .await
    .unwrap();
    assert!(!pull.is_finished(), "the webhook landed during the pull");
    let report = pull.await.unwrap().unwrap().into_inner();
    assert!(report.pulled);
    let rows = categories(&stack, workspace_id).await;
    let row = rows.iter().find(|a| a.source_id == "22330021").unwrap();
    assert_eq!(
        row.value, "Renamed by webhook",
        "the pull's older copy did not overwrite the webhook"
    );
    assert!(rows.len() > 1, "the pull applied the other categories");
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_pull_reads_only_rows_changed_since_the_watermark() {
    let sb = demo_sandbox().await;
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    let incremental = |stack: &TestStack| {
        let mut client = stack.fyle_sync.clone();
        async move {
            client
                .sync_dimensions(SyncFyleDimensionsRequest {
                    workspace_id,
                    force: false,
                    attribute_types: vec!["CATEGORY".into()],
                    incremental: true,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    // Never pulled: the incremental request gets a full pass.
    let first = incremental(&stack).await;
    assert_eq!(first.resources[0].outcome, "PULLED");
    let all = first.resources[0].rows;
    assert!(all >= 2);

    sb.fyle()
        .rename(DEMO_ORG_ID, "categories", "22330021", "Airfare")
        .unwrap();
    // Within 24 hours of the full pull, and still pulled: only the renamed row is read.
    let second = incremental(&stack).await;
    assert_eq!(second.resources[0].outcome, "PULLED_INCREMENTAL");
    assert_eq!(second.resources[0].rows, 1, "only the changed row");
    assert_eq!(second.attributes_changed, 1);
    let rows = categories(&stack, workspace_id).await;
    let renamed = rows.iter().find(|a| a.source_id == "22330021").unwrap();
    assert!(renamed.value.starts_with("Airfare"), "{}", renamed.value);
    assert!(
        rows.iter().all(|a| a.active),
        "no deletions from a partial listing"
    );

    let status = stack
        .fyle_sync
        .clone()
        .get_sync_status(attrsync_proto::v1::GetFyleSyncStatusRequest { workspace_id })
        .await
        .unwrap()
        .into_inner();
    let category = status
        .resources
        .iter()
        .find(|r| r.attribute_type == "CATEGORY")
        .unwrap();
    assert!(category.last_full_sync_at.is_some() && category.last_incremental_sync_at.is_some());
    assert!(category.watermark.is_some());
    stack.stop().await;
    sb.stop().await;
}
