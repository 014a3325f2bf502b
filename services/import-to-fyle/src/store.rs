//! The one write path for import-to-fyle's QBO values and its pending import requests.
//!
//! - [`record_changes`]: a batch of `sync.destination-attributes.v1` changes upserted in one
//!   statement, **newest wins** by the event's time (`version`): a redelivered or late event
//!   changes nothing, and a row only counts as changed (new `changed_at`) when what Fyle would
//!   see of it — name, code, state, detail, rename — differs.
//! - [`request`]: an import of one workspace × source field asked for; requests coalesce on
//!   the key, `full` and `force` only widen, and `seq` grows so a run in progress knows that
//!   more work came while it ran.

use attrsync_proto::v1::{ChangeKind, DestinationAttributeChange};
use chrono::{DateTime, Utc};
use diesel::{
    QueryableByName,
    sql_types::{Array, BigInt, Bool, Jsonb, Nullable, Text, Timestamptz},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use crate::modules::SourceField;

#[derive(QueryableByName)]
struct Written {
    #[diesel(sql_type = Text)]
    attribute_type: String,
}

/// Upserts `changes` of `workspace_id` as of `version`; returns the attribute types of the
/// rows that changed (each once).
pub async fn record_changes(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    version: DateTime<Utc>,
    changes: &[DestinationAttributeChange],
) -> diesel::QueryResult<Vec<String>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let mut types = Vec::new();
    let mut displays = Vec::new();
    let mut ids = Vec::new();
    let mut values = Vec::new();
    let mut codes: Vec<Option<String>> = Vec::new();
    let mut actives = Vec::new();
    let mut details: Vec<Value> = Vec::new();
    let mut renamed: Vec<Option<String>> = Vec::new();
    let mut renamed_codes: Vec<Option<String>> = Vec::new();
    // Later changes of one key in the batch win: keep the last of each key.
    let mut last: std::collections::HashMap<(&str, &str, &str), usize> = Default::default();
    for (i, c) in changes.iter().enumerate() {
        last.insert(
            (
                c.attribute_type.as_str(),
                c.display_name.as_str(),
                c.destination_id.as_str(),
            ),
            i,
        );
    }
    let mut kept: Vec<usize> = last.into_values().collect();
    kept.sort_unstable();
    for i in kept {
        let c = &changes[i];
        let is_rename = c.kind == ChangeKind::Renamed as i32
            || c.old_value.as_deref().is_some_and(|o| o != c.value)
            || c.old_code.is_some();
        types.push(c.attribute_type.clone());
        displays.push(c.display_name.clone());
        ids.push(c.destination_id.clone());
        values.push(c.value.clone());
        codes.push(c.code.clone().filter(|s| !s.is_empty()));
        actives.push(c.active);
        details.push(serde_json::from_str(&c.detail_json).unwrap_or(Value::Null));
        renamed.push(is_rename.then(|| c.old_value.clone().unwrap_or_else(|| c.value.clone())));
        renamed_codes.push(is_rename.then(|| c.old_code.clone()).flatten());
    }
    let written: Vec<Written> = diesel::sql_query(
        "INSERT INTO import_destination_attributes AS t \
           (workspace_id, attribute_type, display_name, destination_id, value, code, active, \
            detail, renamed_from, renamed_from_code, version) \
         SELECT $1, u.t, u.d, u.i, u.v, u.c, u.a, u.j, u.r, u.rc, $11 \
         FROM unnest($2, $3, $4, $5, $6, $7, $8, $9, $10) AS u(t, d, i, v, c, a, j, r, rc) \
         ON CONFLICT (workspace_id, attribute_type, display_name, destination_id) DO UPDATE SET \
           value = excluded.value, code = excluded.code, active = excluded.active, \
           detail = excluded.detail, \
           renamed_from = COALESCE(excluded.renamed_from, t.renamed_from), \
           renamed_from_code = CASE WHEN excluded.renamed_from IS NULL \
                                    THEN t.renamed_from_code ELSE excluded.renamed_from_code END, \
           version = excluded.version, changed_at = now() \
         WHERE t.version <= excluded.version \
           AND (t.value, t.code, t.active, t.detail) IS DISTINCT FROM \
               (excluded.value, excluded.code, excluded.active, excluded.detail) \
         RETURNING attribute_type",
    )
    .bind::<BigInt, _>(workspace_id)
    .bind::<Array<Text>, _>(&types)
    .bind::<Array<Text>, _>(&displays)
    .bind::<Array<Text>, _>(&ids)
    .bind::<Array<Text>, _>(&values)
    .bind::<Array<Nullable<Text>>, _>(&codes)
    .bind::<Array<Bool>, _>(&actives)
    .bind::<Array<Jsonb>, _>(&details)
    .bind::<Array<Nullable<Text>>, _>(&renamed)
    .bind::<Array<Nullable<Text>>, _>(&renamed_codes)
    .bind::<Timestamptz, _>(version)
    .load(conn)
    .await?;
    let mut out: Vec<String> = written.into_iter().map(|w| w.attribute_type).collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// What a request asks for, besides its workspace and field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask<'a> {
    pub full: bool,
    pub force: bool,
    pub reason: &'a str,
    /// The workspace snapshot version the request was decided on (0: any).
    pub settings_version: i64,
}

/// Records that `field` of `workspace_id` should be imported. Requests not yet served coalesce
/// into one: full or forced if any was, the highest settings version, and the newest reason —
/// except that a pending `destination_changed` stays, so a scheduled or manual request merged
/// into a QBO change never puts it under the 30-minute rule.
pub async fn request(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    field: &SourceField,
    ask: Ask<'_>,
) -> diesel::QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO import_requests AS r \
             (workspace_id, source_field, full_import, force, reason, settings_version) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (workspace_id, source_field) DO UPDATE SET \
           full_import = r.full_import OR excluded.full_import, \
           force = r.force OR excluded.force, \
           reason = CASE WHEN r.reason = 'destination_changed' THEN r.reason \
                         ELSE excluded.reason END, \
           seq = r.seq + 1, \
           settings_version = GREATEST(r.settings_version, excluded.settings_version), \
           not_before = LEAST(r.not_before, now()), attempts = 0",
    )
    .bind::<BigInt, _>(workspace_id)
    .bind::<Text, _>(field.as_str())
    .bind::<Bool, _>(ask.full)
    .bind::<Bool, _>(ask.force)
    .bind::<Text, _>(ask.reason)
    .bind::<BigInt, _>(ask.settings_version)
    .execute(conn)
    .await
    .map(drop)
}

/// Records Fyle values of `field` that a run must disable (disable_items, #59).
pub async fn record_disables(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    field: &SourceField,
    source_ids: &[String],
) -> diesel::QueryResult<()> {
    if source_ids.is_empty() {
        return Ok(());
    }
    diesel::sql_query(
        "INSERT INTO import_disables (workspace_id, source_field, source_id) \
         SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING",
    )
    .bind::<BigInt, _>(workspace_id)
    .bind::<Text, _>(field.as_str())
    .bind::<Array<Text>, _>(source_ids)
    .execute(conn)
    .await
    .map(drop)
}

#[derive(QueryableByName)]
struct SourceIdRow {
    #[diesel(sql_type = Text)]
    source_id: String,
}

/// The Fyle ids of `field` still to disable.
pub async fn pending_disables(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    field: &SourceField,
) -> diesel::QueryResult<Vec<String>> {
    let rows: Vec<SourceIdRow> = diesel::sql_query(
        "SELECT source_id FROM import_disables WHERE workspace_id = $1 AND source_field = $2 \
         ORDER BY source_id",
    )
    .bind::<BigInt, _>(workspace_id)
    .bind::<Text, _>(field.as_str())
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.source_id).collect())
}

/// Forgets disables a run has carried out.
pub async fn clear_disables(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    field: &SourceField,
    source_ids: &[String],
) -> diesel::QueryResult<()> {
    diesel::sql_query(
        "DELETE FROM import_disables WHERE workspace_id = $1 AND source_field = $2 \
           AND source_id = ANY($3)",
    )
    .bind::<BigInt, _>(workspace_id)
    .bind::<Text, _>(field.as_str())
    .bind::<Array<Text>, _>(source_ids)
    .execute(conn)
    .await
    .map(drop)
}
