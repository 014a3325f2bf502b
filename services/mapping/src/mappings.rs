//! Mappings and mapping errors in the database: auto-mapping's I/O around the pure rules of
//! [`crate::automap`], the operator's writes, and error resolution.
//!
//! **One write path per kind of writer.** Auto-mapping only ever fills an empty (source,
//! destination type) slot, so a mapping that exists — above all one an operator made — is
//! never overwritten: it looks the mapped sources up under the workspace's lock and inserts
//! the rest (set-based, a plain insert; should one ever conflict, the insert's savepoint is
//! rolled back and it is repeated with `ON CONFLICT DO NOTHING`). An operator's `UpsertMapping`
//! replaces the slot and clears `auto_mapped`. Both resolve errors by [`resolve_errors`]'s rule
//! (auto-mapping for a whole envelope in one statement, [`automap_sources`]) in the same
//! transaction, so an error is resolved the moment a mapping that resolves it commits, by
//! whatever path (#55, #56), and a reported error finds an existing mapping at once.
//!
//! **Serialised per workspace.** The two consumers (Fyle side, QBO side) and the API each take
//! a transaction-scoped advisory lock on the workspace ([`lock_workspace`]) before reading: a
//! Fyle value and its QBO twin arriving at the same instant in two transactions would otherwise
//! each miss the other (write skew) and neither would map. A deadlock between two batches that
//! lock workspaces in different orders is detected by PostgreSQL and retried by the consumer
//! (SQLSTATE class 40 is retryable).
//!
//! **Plans that do not hang on statistics.** Every auto-mapping lookup is an index probe per
//! key or id (`= ANY` on a key's columns, or a `LATERAL … LIMIT` per key), never an anti-join
//! the planner may turn into a scan per row: a new workspace's first pull arrives before the
//! statistics know its rows, and such a plan cost 0.7 s per 1,000-value envelope, growing.
//!
//! **Mapping state** ([`mapping_state`]) is computed when read, by joining the mappings with
//! the projections, so a deactivation or rename on either side flags the mapping at once and
//! nothing has to be rewritten when it happens.
//!
//! Failure policy: every function runs inside its caller's transaction and returns database
//! errors unchanged; the consumer wrapper classifies them (retry or dead-letter), the API maps
//! them to gRPC codes. A value that cannot be matched is not an error: it stays unmapped.

use std::collections::{BTreeMap, HashMap, HashSet};

use attrsync_proto::v1::MappingState;
use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    result::DatabaseErrorKind,
    sql_types::{Array, BigInt, Bool, Jsonb, Nullable, Text},
};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use attrsync_kafka::handler::{EffectError, EffectHandler, Event, Tx};

use crate::automap::{self, Decision, EmployeeKey, Rules, SettingsInput};

/// Serialises auto-mapping and mapping writes of one workspace until the transaction ends.
pub(crate) async fn lock_workspace(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
) -> QueryResult<()> {
    lock_workspaces(conn, &[workspace_id]).await
}

/// A batch of an effect that locks its workspace per message ([`lock_workspace`]): every
/// workspace of the batch is locked first, by [`lock_workspaces`], then the messages are applied
/// in order. A transaction holding several workspaces' locks thus always took them in the same
/// order, whichever consumer it belongs to.
pub(crate) async fn apply_each_locked<H: EffectHandler>(
    effect: &H,
    tx: &mut Tx<'_>,
    events: &[Event<'_, H::Payload>],
) -> Result<(), EffectError> {
    let workspace_ids: Vec<i64> = events.iter().map(|e| e.workspace.workspace_id).collect();
    lock_workspaces(tx.conn, &workspace_ids).await?;
    for event in events {
        effect.apply(tx, event).await?;
        tx.flush_if_large().await?;
    }
    Ok(())
}

/// [`lock_workspace`] for several workspaces, by one statement. The locks are taken in
/// ascending key order, so two transactions that each lock several cannot deadlock (a lock
/// already held is taken again at no cost).
pub(crate) async fn lock_workspaces(
    conn: &mut AsyncPgConnection,
    workspace_ids: &[i64],
) -> QueryResult<()> {
    let mut keys: Vec<i64> = workspace_ids
        .iter()
        .map(|id| attrsync_db::advisory_key(&format!("mapping:automap:{id}")))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    // A function scan yields the array in order, and each row's lock is taken as it is read.
    attrsync_db::prepared::sql(
        "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::int8[]) AS k",
    )
    .bind::<Array<BigInt>, _>(keys)
    .execute(conn)
    .await?;
    Ok(())
}

/// The workspace's auto-mapping rules ([`load_rules_of`] for it alone). `None` for a
/// workspace without settings (it does not exist here).
pub(crate) async fn load_rules(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
) -> QueryResult<Option<Rules>> {
    Ok(load_rules_of(conn, &[workspace_id])
        .await?
        .remove(&workspace_id))
}

/// The auto-mapping rules of these workspaces, from mapping's own settings tables, in one
/// query (every event reads them, so a settings change applies to the next one). A workspace
/// without settings (it does not exist here) is absent.
pub(crate) async fn load_rules_of(
    conn: &mut AsyncPgConnection,
    workspace_ids: &[i64],
) -> QueryResult<HashMap<i64, Rules>> {
    // The mapping settings' two columns, in destination order, beside the settings row.
    let rows: Vec<RulesRow> = attrsync_db::prepared::sql(
        "SELECT s.workspace_id, s.auto_map_case_insensitive, s.import_code_fields, \
                s.auto_map_employees, s.employee_field_mapping, s.import_tax_codes, \
                s.import_items, s.import_projects, s.corporate_credit_card_expenses_object, \
                s.default_ccc_account_id, \
                ARRAY(SELECT m.source_field FROM mapping_settings m \
                      WHERE m.workspace_id = s.workspace_id ORDER BY m.destination_field) \
                    AS source_fields, \
                ARRAY(SELECT m.destination_field FROM mapping_settings m \
                      WHERE m.workspace_id = s.workspace_id ORDER BY m.destination_field) \
                    AS destination_fields \
         FROM workspace_settings s WHERE s.workspace_id = ANY($1)",
    )
    .bind::<Array<BigInt>, _>(workspace_ids)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let settings: Vec<(String, String)> = row
                .source_fields
                .into_iter()
                .zip(row.destination_fields)
                .collect();
            let rules = Rules::from_settings(
                &SettingsInput {
                    auto_map_case_insensitive: row.auto_map_case_insensitive,
                    import_code_fields: row.import_code_fields,
                    auto_map_employees: row.auto_map_employees,
                    employee_field_mapping: row.employee_field_mapping,
                    import_tax_codes: row.import_tax_codes,
                    import_items: row.import_items,
                    import_projects: row.import_projects,
                    corporate_credit_card_expenses_object: row
                        .corporate_credit_card_expenses_object,
                    default_ccc_account_id: row.default_ccc_account_id,
                },
                &settings,
            );
            (row.workspace_id, rules)
        })
        .collect())
}

/// What [`load_rules_of`] reads.
#[derive(QueryableByName)]
struct RulesRow {
    #[diesel(sql_type = BigInt)]
    workspace_id: i64,
    #[diesel(sql_type = Bool)]
    auto_map_case_insensitive: bool,
    #[diesel(sql_type = Array<Text>)]
    import_code_fields: Vec<String>,
    #[diesel(sql_type = Nullable<Text>)]
    auto_map_employees: Option<String>,
    #[diesel(sql_type = Text)]
    employee_field_mapping: String,
    #[diesel(sql_type = Bool)]
    import_tax_codes: bool,
    #[diesel(sql_type = Bool)]
    import_items: bool,
    #[diesel(sql_type = Bool)]
    import_projects: bool,
    #[diesel(sql_type = Nullable<Text>)]
    corporate_credit_card_expenses_object: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    default_ccc_account_id: Option<String>,
    #[diesel(sql_type = Array<Text>)]
    source_fields: Vec<String>,
    #[diesel(sql_type = Array<Text>)]
    destination_fields: Vec<String>,
}

/// A row of `source_attributes`, as auto-mapping reads it.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct SourceRow {
    #[diesel(sql_type = Text)]
    pub attribute_type: String,
    #[diesel(sql_type = Text)]
    pub source_id: String,
    #[diesel(sql_type = Text)]
    pub value: String,
    #[diesel(sql_type = Bool)]
    pub active: bool,
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub detail: Option<Value>,
}

impl SourceRow {
    pub(crate) fn view(&self) -> automap::Source<'_> {
        automap::Source {
            attribute_type: &self.attribute_type,
            source_id: &self.source_id,
            value: &self.value,
            active: self.active,
            detail: self.detail.as_ref(),
        }
    }
}

/// A row of `destination_attributes`, as auto-mapping reads it.
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct DestinationRow {
    #[diesel(sql_type = Text)]
    pub attribute_type: String,
    #[diesel(sql_type = Text)]
    pub display_name: String,
    #[diesel(sql_type = Text)]
    pub destination_id: String,
    #[diesel(sql_type = Text)]
    pub value: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub code: Option<String>,
    #[diesel(sql_type = Bool)]
    pub active: bool,
    #[diesel(sql_type = Nullable<Jsonb>)]
    pub detail: Option<Value>,
}

impl DestinationRow {
    pub(crate) fn view(&self) -> automap::Destination<'_> {
        automap::Destination {
            attribute_type: &self.attribute_type,
            display_name: &self.display_name,
            destination_id: &self.destination_id,
            value: &self.value,
            code: self.code.as_deref(),
            active: self.active,
            detail: self.detail.as_ref(),
        }
    }
}

/// At most this many candidates are read for one match (a superset of the matches; far more
/// than any real chart of accounts has values equal but for case).
const MAX_CANDIDATES: i64 = 100;

/// The condition that leaves out sources `s` mapped to the destination type bound as `$4`.
/// Lookups of `mappings` by source compare `destination_type || ''`: with the type as a plain
/// column, `mappings_destination` (workspace, destination type, …) matched two of the key's
/// columns, and on a table without statistics (filled inside a settings change's own
/// transaction, where no ANALYZE sees the rows) the planner walked it and read every mapping
/// of the type per source — 958 ms per 200 lookups at 100,000 mappings against 0.7 ms
/// through the unique key, which is then the only index matching three columns.
const UNMAPPED_FOR_4: &str = "AND NOT EXISTS (SELECT 1 FROM mappings m \
     WHERE m.workspace_id = s.workspace_id AND m.source_type = s.attribute_type \
       AND m.source_id = s.source_id AND m.destination_type || '' = $4)";

/// Maps `source` if it is unmapped for its target type and exactly one destination matches.
/// Returns the new mapping's id.
pub(crate) async fn automap_source(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    rules: &Rules,
    source: &SourceRow,
) -> QueryResult<Option<i64>> {
    if source.attribute_type == automap::EMPLOYEE && source.active {
        map_default_card(conn, workspace_id, rules, std::slice::from_ref(source)).await?;
    }
    let view = source.view();
    let Some(target) = rules.destination_for(&source.attribute_type) else {
        return Ok(None);
    };
    let Some(key) = automap::prefilter_key(rules, &view) else {
        return Ok(None);
    };
    let mapped: Option<i64> = diesel::sql_query(
        "SELECT id FROM mappings WHERE workspace_id = $1 AND source_type = $2 \
           AND source_id = $3 AND destination_type = $4",
    )
    .bind::<BigInt, _>(workspace_id)
    .bind::<Text, _>(&source.attribute_type)
    .bind::<Text, _>(&source.source_id)
    .bind::<Text, _>(target)
    .get_result::<IdRow>(conn)
    .await
    .optional()?
    .map(|r| r.id);
    if mapped.is_some() {
        return Ok(None);
    }
    // The pre-filter in SQL is a lower-cased superset; `automap::choose` decides exactly.
    let matched = match (source.attribute_type.as_str(), &rules.employees) {
        (automap::EMPLOYEE, Some(rule)) if rule.key == EmployeeKey::Email => {
            "lower(btrim(replace(detail->>'email', '*', ''), ' ')) = $3"
        }
        (automap::EMPLOYEE, _) => "lower(btrim(replace(value, '*', ''), ' ')) = $3",
        _ => "(lower(value) = $3 OR lower(code || ': ' || value) = $3)",
    };
    let candidates: Vec<DestinationRow> = diesel::sql_query(format!(
        "SELECT attribute_type, display_name, destination_id, value, code, active, detail \
         FROM destination_attributes \
         WHERE workspace_id = $1 AND attribute_type = $2 AND active AND {matched} \
         ORDER BY display_name, destination_id LIMIT $4"
    ))
    .bind::<BigInt, _>(workspace_id)
    .bind::<Text, _>(target)
    .bind::<Text, _>(&key)
    .bind::<BigInt, _>(MAX_CANDIDATES)
    .load(conn)
    .await?;
    let views: Vec<automap::Destination<'_>> = candidates.iter().map(|d| d.view()).collect();
    match automap::choose(rules, &view, &views) {
        Decision::Map(i) => {
            let destination = &candidates[i];
            let id = insert_auto(conn, workspace_id, source, destination).await?;
            if let Some(id) = id {
                metrics::counter!("mapping_auto_mapped_total", "source_type" => metric_type(&source.attribute_type))
                    .increment(1);
                tracing::info!(
                    workspace_id,
                    mapping_id = id,
                    source_type = %source.attribute_type,
                    source_id = %source.source_id,
                    destination_type = %destination.attribute_type,
                    destination_id = %destination.destination_id,
                    "auto-mapped"
                );
            }
            Ok(id)
        }
        Decision::Ambiguous(n) => {
            metrics::counter!("mapping_auto_map_ambiguous_total", "source_type" => metric_type(&source.attribute_type))
                .increment(1);
            tracing::warn!(
                workspace_id,
                source_type = %source.attribute_type,
                source_id = %source.source_id,
                destination_type = target,
                matches = n,
                "not auto-mapped: several destinations match equally"
            );
            Ok(None)
        }
        Decision::NoMatch => Ok(None),
    }
}

/// Auto-maps one workspace's Fyle values: [`automap_sources_of`] for it alone.
pub(crate) async fn automap_sources(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    rules: &Rules,
    sources: &[SourceRow],
) -> QueryResult<usize> {
    automap_sources_of(
        conn,
        &[SourcesOf {
            workspace_id,
            rules,
            sources,
        }],
    )
    .await
}

/// Fyle values of one workspace to auto-map, with its rules.
pub(crate) struct SourcesOf<'a> {
    pub workspace_id: i64,
    pub rules: &'a Rules,
    pub sources: &'a [SourceRow],
}

/// Auto-maps Fyle values (active ones) of any number of workspaces, set-based: one query for
/// which are mapped already and one for the candidate QBO values of every key (each an index
/// probe per value or key, whatever the workspaces), [`automap::choose`] for each in memory,
/// and one statement per workspace and source type that mapped something, inserting the new
/// mappings and resolving the errors they answer. Employees keep the one-by-one path
/// ([`automap_source`]: their keys and default card account). Returns how many mappings it
/// made.
pub(crate) async fn automap_sources_of(
    conn: &mut AsyncPgConnection,
    of: &[SourcesOf<'_>],
) -> QueryResult<usize> {
    let mut mapped = 0;
    // Each value to match: its workspace's index in `of`, the value, its target type and key.
    let mut wanted: Vec<Wanted<'_>> = Vec::new();
    for (w, each) in of.iter().enumerate() {
        for source in each.sources.iter().filter(|s| s.active) {
            if source.attribute_type == automap::EMPLOYEE {
                mapped += usize::from(
                    automap_source(conn, each.workspace_id, each.rules, source)
                        .await?
                        .is_some(),
                );
                continue;
            }
            let Some(target) = each.rules.destination_for(&source.attribute_type) else {
                continue;
            };
            let Some(key) = automap::prefilter_key(each.rules, &source.view()) else {
                continue;
            };
            wanted.push(Wanted {
                of: w,
                source,
                target,
                key,
            });
        }
    }
    if wanted.is_empty() {
        return Ok(mapped);
    }
    let workspace_of = |w: &Wanted<'_>| of[w.of].workspace_id;
    let already: HashSet<(i64, String, String)> = attrsync_db::prepared::sql(
        "SELECT k.workspace_id, k.source_type, k.source_id \
         FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[]) \
             AS k(workspace_id, source_type, destination_type, source_id) \
         CROSS JOIN LATERAL ( \
             SELECT 1 FROM mappings m \
             WHERE m.workspace_id = k.workspace_id AND m.source_type = k.source_type \
               AND m.source_id = k.source_id AND m.destination_type || '' = k.destination_type \
             LIMIT 1) m",
    )
    .bind::<Array<BigInt>, _>(wanted.iter().map(workspace_of).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(
        wanted
            .iter()
            .map(|w| w.source.attribute_type.as_str())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(wanted.iter().map(|w| w.target).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(
        wanted
            .iter()
            .map(|w| w.source.source_id.as_str())
            .collect::<Vec<_>>(),
    )
    .load::<MappedSourceRow>(conn)
    .await?
    .into_iter()
    .map(|r| (r.workspace_id, r.source_type, r.source_id))
    .collect();
    wanted.retain(|w| {
        !already.contains(&(
            workspace_of(w),
            w.source.attribute_type.clone(),
            w.source.source_id.clone(),
        ))
    });
    if wanted.is_empty() {
        return Ok(mapped);
    }
    // Each distinct (workspace, target type, key) once, in a fixed order.
    let keys: Vec<(i64, &str, &str)> = wanted
        .iter()
        .map(|w| (workspace_of(w), w.target, w.key.as_str()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut candidates: HashMap<(i64, String, String), Vec<DestinationRow>> = HashMap::new();
    let rows: Vec<CandidateRow> = attrsync_db::prepared::sql(
        "SELECT k.workspace_id, k.key, d.attribute_type, d.display_name, d.destination_id, \
                d.value, d.code, d.active, d.detail \
         FROM unnest($1::int8[], $2::text[], $3::text[]) WITH ORDINALITY \
             AS k(workspace_id, attribute_type, key, ord) \
         CROSS JOIN LATERAL ( \
             SELECT * FROM destination_attributes d \
             WHERE d.workspace_id = k.workspace_id AND d.attribute_type = k.attribute_type \
               AND d.active \
               AND (lower(d.value) = k.key OR lower(d.code || ': ' || d.value) = k.key) \
             ORDER BY d.display_name, d.destination_id LIMIT $4) d \
         ORDER BY k.ord, d.display_name, d.destination_id",
    )
    .bind::<Array<BigInt>, _>(keys.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(keys.iter().map(|k| k.1).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(keys.iter().map(|k| k.2).collect::<Vec<_>>())
    .bind::<BigInt, _>(MAX_CANDIDATES)
    .load(conn)
    .await?;
    for row in rows {
        let key = (
            row.workspace_id,
            row.destination.attribute_type.clone(),
            row.key,
        );
        candidates.entry(key).or_default().push(row.destination);
    }
    // Chosen pairs per (workspace, source type), for one insert each.
    let mut chosen: BTreeMap<(usize, &str), Vec<(&SourceRow, &DestinationRow)>> = BTreeMap::new();
    for w in &wanted {
        let found = candidates
            .get(&(workspace_of(w), w.target.to_owned(), w.key.clone()))
            .map_or(&[][..], Vec::as_slice);
        if found.is_empty() {
            continue;
        }
        let views: Vec<automap::Destination<'_>> = found.iter().map(|d| d.view()).collect();
        match automap::choose(of[w.of].rules, &w.source.view(), &views) {
            Decision::Map(j) => chosen
                .entry((w.of, w.source.attribute_type.as_str()))
                .or_default()
                .push((w.source, &found[j])),
            Decision::Ambiguous(n) => {
                metrics::counter!("mapping_auto_map_ambiguous_total", "source_type" => metric_type(&w.source.attribute_type))
                    .increment(1);
                tracing::warn!(
                    workspace_id = workspace_of(w),
                    source_type = %w.source.attribute_type,
                    source_id = %w.source.source_id,
                    destination_type = w.target,
                    matches = n,
                    "not auto-mapped: several destinations match equally"
                );
            }
            Decision::NoMatch => {}
        }
    }
    for ((w, _), pairs) in &chosen {
        mapped += insert_auto_many(conn, of[*w].workspace_id, pairs).await?;
    }
    Ok(mapped)
}

/// A Fyle value [`automap_sources_of`] looks a match up for.
struct Wanted<'a> {
    /// Its workspace's index in the call's list.
    of: usize,
    source: &'a SourceRow,
    target: &'a str,
    key: String,
}

/// A source found mapped by [`automap_sources_of`].
#[derive(QueryableByName)]
struct MappedSourceRow {
    #[diesel(sql_type = BigInt)]
    workspace_id: i64,
    #[diesel(sql_type = Text)]
    source_type: String,
    #[diesel(sql_type = Text)]
    source_id: String,
}

/// A candidate QBO value for a (workspace, key) of [`automap_sources_of`].
#[derive(QueryableByName)]
struct CandidateRow {
    #[diesel(sql_type = BigInt)]
    workspace_id: i64,
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(embed)]
    destination: DestinationRow,
}

#[derive(QueryableByName)]
struct InsertedRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    source_id: String,
    #[diesel(sql_type = Text)]
    destination_id: String,
}

/// Inserts auto mappings (a source mapped meanwhile keeps its mapping) and resolves the open
/// errors they answer ([`resolve_errors`]'s rule), in one statement; returns how many were
/// inserted.
async fn insert_auto_many(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    chosen: &[(&SourceRow, &DestinationRow)],
) -> QueryResult<usize> {
    if chosen.is_empty() {
        return Ok(0);
    }
    let column = |f: for<'a> fn(&'a (&SourceRow, &DestinationRow)) -> &'a str| -> Vec<&str> {
        chosen.iter().map(f).collect()
    };
    // One source type and one destination type per call (a group of automap_sources).
    let source_type = &chosen[0].0.attribute_type;
    let destination_type = &chosen[0].1.attribute_type;
    let rows = AutoRows {
        workspace_id,
        source_type,
        destination_type,
        source_ids: column(|(s, _)| &s.source_id),
        display_names: column(|(_, d)| &d.display_name),
        destination_ids: column(|(_, d)| &d.destination_id),
        values: column(|(_, d)| &d.value),
    };
    // Every writer of `mappings` holds the workspace's lock, under which the callers looked
    // the mapped sources up: a plain insert (a quarter cheaper than ON CONFLICT's speculative
    // one, measured) does not conflict. A large one runs so, in a savepoint: should it ever
    // conflict, it is rolled back and the rows go in again skipping the conflicts — nothing is
    // lost, nothing fails. A small one (an event's few values) skips the conflicts at once,
    // sparing the savepoint's two round trips.
    const SKIP_CONFLICTS: &str =
        "ON CONFLICT (workspace_id, source_type, source_id, destination_type) DO NOTHING";
    let inserted = if chosen.len() < PLAIN_INSERT_FROM {
        insert_and_resolve(conn, &rows, SKIP_CONFLICTS).await?
    } else {
        let plain = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                insert_and_resolve(conn, &rows, "").await
            })
            .await;
        match plain {
            Err(diesel::result::Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                insert_and_resolve(conn, &rows, SKIP_CONFLICTS).await?
            }
            other => other?,
        }
    };
    if inserted.is_empty() {
        return Ok(0);
    }
    metrics::counter!("mapping_auto_mapped_total", "source_type" => metric_type(source_type))
        .increment(inserted.len() as u64);
    for row in &inserted {
        tracing::debug!(workspace_id, mapping_id = row.id, source_type = %source_type,
            source_id = %row.source_id, destination_type = %destination_type,
            destination_id = %row.destination_id, "auto-mapped");
    }
    tracing::info!(workspace_id, source_type = %source_type, destination_type = %destination_type,
        mapped = inserted.len(), "auto-mapped");
    Ok(inserted.len())
}

/// From this many rows [`insert_auto_many`] inserts plainly, in a savepoint.
const PLAIN_INSERT_FROM: usize = 500;

/// The columns of the mappings [`insert_auto_many`] writes.
struct AutoRows<'a> {
    workspace_id: i64,
    source_type: &'a str,
    destination_type: &'a str,
    source_ids: Vec<&'a str>,
    display_names: Vec<&'a str>,
    destination_ids: Vec<&'a str>,
    values: Vec<&'a str>,
}

/// One statement: inserts `rows` (`on_conflict` is empty or an `ON CONFLICT` clause) and
/// resolves the open errors they answer; the inserted rows.
async fn insert_and_resolve(
    conn: &mut AsyncPgConnection,
    rows: &AutoRows<'_>,
    on_conflict: &str,
) -> QueryResult<Vec<InsertedRow>> {
    diesel::sql_query(format!(
        "WITH inserted AS ( \
           INSERT INTO mappings (workspace_id, source_type, source_id, destination_type, \
               destination_display_name, destination_id, destination_value, auto_mapped) \
           SELECT $1, $2, sid, $3, dn, did, dv, true \
           FROM unnest($4::text[], $5::text[], $6::text[], $7::text[]) AS u(sid, dn, did, dv) \
           {on_conflict} \
           RETURNING id, source_id, destination_id), \
         resolved AS ( \
           UPDATE mapping_errors e SET is_resolved = true, resolved_at = now(), \
               resolved_by_mapping_id = i.id, updated_at = now() \
           FROM inserted i \
           WHERE e.workspace_id = $1 AND e.source_type = $2 AND e.source_id = i.source_id \
             AND NOT e.is_resolved \
             AND (e.destination_type = $3 OR (e.destination_type = '' \
                  AND ($2 <> 'EMPLOYEE' OR $3 IN ('EMPLOYEE', 'VENDOR'))))) \
         SELECT id, source_id, destination_id FROM inserted"
    ))
    .bind::<BigInt, _>(rows.workspace_id)
    .bind::<Text, _>(rows.source_type)
    .bind::<Text, _>(rows.destination_type)
    .bind::<Array<Text>, _>(&rows.source_ids)
    .bind::<Array<Text>, _>(&rows.display_names)
    .bind::<Array<Text>, _>(&rows.destination_ids)
    .bind::<Array<Text>, _>(&rows.values)
    .load(conn)
    .await
}

/// Custom types are many; metrics label them as one.
fn metric_type(source_type: &str) -> String {
    if source_type.starts_with(attrsync_core::attribute::CUSTOM_PREFIX) {
        "CUSTOM".to_owned()
    } else {
        source_type.to_owned()
    }
}

/// Auto-maps, for QBO values an event wrote (active ones), the unmapped Fyle values they could
/// answer. Set-based: one query per source type for the candidates of every value in the
/// batch, then [`automap_sources`] decides them all against their destinations — so a pull of
/// 10,000 accounts costs a handful of statements, not 10,000 or more.
pub(crate) async fn automap_destinations(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    rules: &Rules,
    destinations: &[&DestinationRow],
) -> QueryResult<usize> {
    let mut mapped = 0;
    let mut keys_by_source_type: Vec<(String, Vec<String>)> = Vec::new();
    for destination in destinations {
        let view = destination.view();
        if !rules.destination_eligible(&view) {
            continue;
        }
        if destination.attribute_type == CREDIT_CARD_ACCOUNT
            && rules.default_card_account.as_deref() == Some(destination.destination_id.as_str())
        {
            mapped += map_default_card_everywhere(conn, workspace_id, rules).await?;
        }
        for source_type in rules.sources_for(&destination.attribute_type) {
            let keys = automap::destination_keys(rules, &source_type, &view)
                .into_iter()
                .map(|k| k.folded.to_lowercase());
            match keys_by_source_type
                .iter_mut()
                .find(|(t, _)| *t == source_type)
            {
                Some((_, all)) => all.extend(keys),
                None => keys_by_source_type.push((source_type, keys.collect())),
            }
        }
    }
    for (source_type, mut keys) in keys_by_source_type {
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            continue;
        }
        let Some(destination_type) = rules.destination_for(&source_type).map(str::to_owned) else {
            continue;
        };
        let employee_key = match (
            source_type.as_str(),
            rules.employees.as_ref().map(|r| r.key),
        ) {
            (automap::EMPLOYEE, Some(EmployeeKey::Email)) => {
                Some("lower(btrim(replace(s.value, '*', ''), ' '))")
            }
            (automap::EMPLOYEE, Some(EmployeeKey::Name)) => {
                Some("lower(btrim(replace(s.detail->>'full_name', '*', ''), ' '))")
            }
            (automap::EMPLOYEE, _) => {
                Some("lower(btrim(replace(s.detail->>'employee_code', '*', ''), ' '))")
            }
            _ => None,
        };
        // Values by key: each key probes the value index on its own (a LATERAL subquery behind
        // `OFFSET 0` is never flattened into a join), so the plan does not hang on statistics —
        // a new workspace's first pull, whose rows the statistics do not know yet, was planned
        // as a scan of every mapping per value (0.7 s and growing per 1,000-account envelope).
        // Whether such a value is mapped already is automap_sources' index lookup. Employee
        // keys are expressions no index holds: one pass over the workspace's unmapped employees
        // (mapped ones are left out here, or automap_source would visit each one by one).
        let sources: Vec<SourceRow> = match employee_key {
            None => {
                diesel::sql_query(
                    "SELECT s.attribute_type, s.source_id, s.value, s.active, s.detail \
                     FROM unnest($3::text[]) AS k(key) \
                     CROSS JOIN LATERAL ( \
                       SELECT * FROM source_attributes s \
                       WHERE s.workspace_id = $1 AND s.attribute_type = $2 AND s.active \
                         AND lower(s.value) = k.key \
                       OFFSET 0) s",
                )
                .bind::<BigInt, _>(workspace_id)
                .bind::<Text, _>(&source_type)
                .bind::<Array<Text>, _>(&keys)
                .load(conn)
                .await?
            }
            Some(matched) => {
                diesel::sql_query(format!(
                    "SELECT s.attribute_type, s.source_id, s.value, s.active, s.detail \
                     FROM source_attributes s \
                     WHERE s.workspace_id = $1 AND s.attribute_type = $2 AND s.active \
                       AND {matched} = ANY($3) {UNMAPPED_FOR_4}"
                ))
                .bind::<BigInt, _>(workspace_id)
                .bind::<Text, _>(&source_type)
                .bind::<Array<Text>, _>(&keys)
                .bind::<Text, _>(&destination_type)
                .load(conn)
                .await?
            }
        };
        mapped += automap_sources(conn, workspace_id, rules, &sources).await?;
    }
    Ok(mapped)
}

/// The QBO attribute type of card accounts.
const CREDIT_CARD_ACCOUNT: &str = "CREDIT_CARD_ACCOUNT";

/// Maps each of `employees` without a card account to the default card account, if the
/// workspace has one and mapping's projection holds it active. Only fills an empty slot, so an
/// operator's card mapping is never replaced. Returns how many mappings it made.
async fn map_default_card(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    rules: &Rules,
    employees: &[SourceRow],
) -> QueryResult<usize> {
    let Some(account_id) = rules.default_card_account.as_deref() else {
        return Ok(0);
    };
    let Some(account) =
        crate::projection::find_destinations(conn, workspace_id, CREDIT_CARD_ACCOUNT, account_id)
            .await?
            .into_iter()
            .find(|d| d.active)
    else {
        return Ok(0);
    };
    let mut mapped = 0;
    for employee in employees {
        if insert_auto(conn, workspace_id, employee, &account)
            .await?
            .is_some()
        {
            mapped += 1;
        }
    }
    if mapped > 0 {
        metrics::counter!("mapping_auto_mapped_total", "source_type" => "DEFAULT_CARD_ACCOUNT")
            .increment(mapped as u64);
        tracing::info!(
            workspace_id,
            mapped,
            account_id,
            "employees mapped to the default card account"
        );
    }
    Ok(mapped)
}

/// Maps every active employee without a card account to the default card account.
pub(crate) async fn map_default_card_everywhere(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    rules: &Rules,
) -> QueryResult<usize> {
    if rules.default_card_account.is_none() {
        return Ok(0);
    }
    let employees: Vec<SourceRow> = diesel::sql_query(
        "SELECT s.attribute_type, s.source_id, s.value, s.active, s.detail \
         FROM source_attributes s \
         WHERE s.workspace_id = $1 AND s.attribute_type = 'EMPLOYEE' AND s.active \
           AND NOT EXISTS (SELECT 1 FROM mappings m WHERE m.workspace_id = s.workspace_id \
               AND m.source_type = 'EMPLOYEE' AND m.source_id = s.source_id \
               AND m.destination_type || '' = 'CREDIT_CARD_ACCOUNT') \
         ORDER BY s.source_id",
    )
    .bind::<BigInt, _>(workspace_id)
    .load(conn)
    .await?;
    map_default_card(conn, workspace_id, rules, &employees).await
}

/// What a settings change removed.
#[derive(Debug, Default)]
pub(crate) struct Removed {
    pub count: usize,
    /// The Fyle categories whose item mappings went (disable_items disables them in Fyle).
    pub item_categories: Vec<String>,
}

/// After a settings change: removes the auto-made mappings of `retargeted` sources to their
/// previous destination field (an operator's are kept), and — when `items_turned_off` — every
/// CATEGORY → Item mapping, operator's included (#59, as the incumbent).
pub(crate) async fn remove_after_settings_change(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    retargeted: &[(String, String)],
    items_turned_off: bool,
) -> QueryResult<Removed> {
    let mut removed = Removed::default();
    for (source, old_destination) in retargeted {
        removed.count += diesel::sql_query(
            "DELETE FROM mappings WHERE workspace_id = $1 \
               AND source_type IN ($2, $3) AND destination_type = $4 AND auto_mapped",
        )
        .bind::<BigInt, _>(workspace_id)
        .bind::<Text, _>(source)
        .bind::<Text, _>(format!(
            "{}{source}",
            attrsync_core::attribute::CUSTOM_PREFIX
        ))
        .bind::<Text, _>(old_destination)
        .execute(conn)
        .await?;
    }
    if items_turned_off {
        let gone: Vec<SourceIdRow> = diesel::sql_query(
            "DELETE FROM mappings WHERE workspace_id = $1 AND source_type = 'CATEGORY' \
               AND destination_type = 'ACCOUNT' AND destination_display_name = 'Item' \
             RETURNING source_id",
        )
        .bind::<BigInt, _>(workspace_id)
        .load(conn)
        .await?;
        removed.count += gone.len();
        removed.item_categories = gone.into_iter().map(|r| r.source_id).collect();
        removed.item_categories.sort();
    }
    if removed.count > 0 {
        tracing::info!(
            workspace_id,
            removed = removed.count,
            "mappings removed by a settings change"
        );
    }
    Ok(removed)
}

#[derive(Debug, QueryableByName)]
struct SourceIdRow {
    #[diesel(sql_type = Text)]
    source_id: String,
}

/// The source types whose auto-mapping may differ between `before` and `after`: every target
/// when a matching rule changed (case, code prefixes, items), else the targets that are new or
/// point elsewhere; employees when their rule changed.
pub(crate) fn changed_source_types(before: &Rules, after: &Rules) -> Vec<String> {
    let everything = before.case_insensitive != after.case_insensitive
        || before.code_prefixed != after.code_prefixed
        || before.include_items != after.include_items;
    let mut out: Vec<String> = Vec::new();
    for target in &after.targets {
        if everything || !before.targets.contains(target) {
            let source = &target.0;
            out.push(source.clone());
            if !automap::DEFAULT_TARGETS.iter().any(|(s, _)| s == source) && !source.contains(':') {
                out.push(format!(
                    "{}{source}",
                    attrsync_core::attribute::CUSTOM_PREFIX
                ));
            }
        }
    }
    if after.employees.is_some() && (everything || before.employees != after.employees) {
        out.push(automap::EMPLOYEE.to_owned());
    }
    out
}

/// Sources per page when a settings change re-maps a whole type.
const RULES_PAGE: i64 = 25_000;

/// Auto-maps, under `after`, every active unmapped source of the types whose rules changed
/// from `before`. Runs in the settings change's transaction, in pages of [`RULES_PAGE`] active
/// sources (in id order, from the primary key; employees only unmapped ones) through
/// [`automap_sources`] (the rule every other path uses, set-based; it skips the mapped ones by
/// an index lookup), so turning on
/// case-insensitive matching over 100,000 categories is a few dozen statements, not 400,000
/// (`make bench-mapping`). Returns how many mappings it made.
pub(crate) async fn automap_changed_rules(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    before: &Rules,
    after: &Rules,
) -> QueryResult<usize> {
    let mut mapped = 0;
    if after.default_card_account.is_some()
        && (before.default_card_account != after.default_card_account
            || before.employees != after.employees)
    {
        mapped += map_default_card_everywhere(conn, workspace_id, after).await?;
    }
    for source_type in changed_source_types(before, after) {
        let Some(target) = after.destination_for(&source_type).map(str::to_owned) else {
            continue;
        };
        // Employees go one by one (automap_source), so the mapped ones are left out here; the
        // target is bound as $4 in both forms of the query (`$4 IS NOT NULL` names it always).
        let unmapped_only = if source_type == automap::EMPLOYEE {
            UNMAPPED_FOR_4
        } else {
            ""
        };
        let mut after_id = String::new();
        loop {
            let page: Vec<SourceRow> = diesel::sql_query(format!(
                "SELECT s.attribute_type, s.source_id, s.value, s.active, s.detail \
                 FROM source_attributes s \
                 WHERE s.workspace_id = $1 AND s.attribute_type = $2 AND s.active \
                   AND s.source_id > $3 AND $4::text IS NOT NULL {unmapped_only} \
                 ORDER BY s.source_id LIMIT $5"
            ))
            .bind::<BigInt, _>(workspace_id)
            .bind::<Text, _>(&source_type)
            .bind::<Text, _>(&after_id)
            .bind::<Text, _>(&target)
            .bind::<BigInt, _>(RULES_PAGE)
            .load(conn)
            .await?;
            let Some(last) = page.last() else { break };
            after_id = last.source_id.clone();
            mapped += automap_sources(conn, workspace_id, after, &page).await?;
        }
    }
    Ok(mapped)
}

#[derive(Debug, QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

pub(crate) async fn insert_auto(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    source: &SourceRow,
    destination: &DestinationRow,
) -> QueryResult<Option<i64>> {
    let id = diesel::sql_query(
        "INSERT INTO mappings (workspace_id, source_type, source_id, destination_type, \
             destination_display_name, destination_id, destination_value, auto_mapped) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, true) \
         ON CONFLICT (workspace_id, source_type, source_id, destination_type) DO NOTHING \
         RETURNING id",
    )
    .bind::<BigInt, _>(workspace_id)
    .bind::<Text, _>(&source.attribute_type)
    .bind::<Text, _>(&source.source_id)
    .bind::<Text, _>(&destination.attribute_type)
    .bind::<Text, _>(&destination.display_name)
    .bind::<Text, _>(&destination.destination_id)
    .bind::<Text, _>(&destination.value)
    .get_result::<IdRow>(conn)
    .await
    .optional()?
    .map(|r| r.id);
    if let Some(id) = id {
        resolve_errors(
            conn,
            workspace_id,
            &source.attribute_type,
            &source.source_id,
            &destination.attribute_type,
            id,
        )
        .await?;
    }
    Ok(id)
}

/// Resolves the open errors of a source that a mapping to `destination_type` answers: errors
/// naming that destination type, and errors naming none (for an employee, only an EMPLOYEE or
/// VENDOR mapping answers those — a card account does not make an expense exportable).
pub(crate) async fn resolve_errors(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    source_type: &str,
    source_id: &str,
    destination_type: &str,
    mapping_id: i64,
) -> QueryResult<usize> {
    let resolved = diesel::sql_query(
        "UPDATE mapping_errors SET is_resolved = true, resolved_at = now(), \
             resolved_by_mapping_id = $5, updated_at = now() \
         WHERE workspace_id = $1 AND source_type = $2 AND source_id = $3 AND NOT is_resolved \
           AND (destination_type = $4 OR (destination_type = '' \
                AND ($2 <> 'EMPLOYEE' OR $4 IN ('EMPLOYEE', 'VENDOR'))))",
    )
    .bind::<BigInt, _>(workspace_id)
    .bind::<Text, _>(source_type)
    .bind::<Text, _>(source_id)
    .bind::<Text, _>(destination_type)
    .bind::<BigInt, _>(mapping_id)
    .execute(conn)
    .await?;
    if resolved > 0 {
        metrics::counter!("mapping_errors_resolved_total").increment(resolved as u64);
        tracing::info!(
            workspace_id,
            source_type,
            source_id,
            mapping_id,
            resolved,
            "mapping errors resolved"
        );
    }
    Ok(resolved)
}

/// The state an operator sees on a mapping: the first that applies of destination unknown or
/// source unknown, destination inactive, destination renamed since mapped, source inactive.
pub fn mapping_state(
    source_active: Option<bool>,
    destination_active: Option<bool>,
    destination_value_now: Option<&str>,
    mapped_destination_value: &str,
) -> MappingState {
    match (source_active, destination_active) {
        (None, _) | (_, None) => MappingState::UnknownAttribute,
        (_, Some(false)) => MappingState::DestinationInactive,
        _ if destination_value_now.is_some_and(|v| v != mapped_destination_value) => {
            MappingState::DestinationRenamed
        }
        (Some(false), _) => MappingState::SourceInactive,
        (Some(true), Some(true)) => MappingState::Ok,
    }
}

/// A mapping with both sides' current state (`ListMappings`).
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct MappingView {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub workspace_id: i64,
    #[diesel(sql_type = Text)]
    pub source_type: String,
    #[diesel(sql_type = Text)]
    pub source_id: String,
    #[diesel(sql_type = Text)]
    pub destination_type: String,
    #[diesel(sql_type = Text)]
    pub destination_display_name: String,
    #[diesel(sql_type = Text)]
    pub destination_id: String,
    #[diesel(sql_type = Text)]
    pub mapped_destination_value: String,
    #[diesel(sql_type = Bool)]
    pub auto_mapped: bool,
    #[diesel(sql_type = Bool)]
    pub auto_created: bool,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub updated_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    pub source_value: Option<String>,
    #[diesel(sql_type = Nullable<Bool>)]
    pub source_active: Option<bool>,
    #[diesel(sql_type = Nullable<Text>)]
    pub destination_value: Option<String>,
    #[diesel(sql_type = Nullable<Bool>)]
    pub destination_active: Option<bool>,
}

impl MappingView {
    pub(crate) fn to_proto(&self) -> attrsync_proto::v1::Mapping {
        let state = mapping_state(
            self.source_active,
            self.destination_active,
            self.destination_value.as_deref(),
            &self.mapped_destination_value,
        );
        attrsync_proto::v1::Mapping {
            id: self.id,
            workspace_id: self.workspace_id,
            source_type: self.source_type.clone(),
            source_id: self.source_id.clone(),
            source_value: self.source_value.clone().unwrap_or_default(),
            destination_type: self.destination_type.clone(),
            destination_id: self.destination_id.clone(),
            destination_value: self
                .destination_value
                .clone()
                .unwrap_or_else(|| self.mapped_destination_value.clone()),
            auto_mapped: self.auto_mapped,
            auto_created: self.auto_created,
            source_active: self.source_active.unwrap_or(false),
            destination_active: self.destination_active.unwrap_or(false),
            state: state as i32,
            destination_display_name: self.destination_display_name.clone(),
            mapped_destination_value: self.mapped_destination_value.clone(),
            created_at: Some(attrsync_proto::time::to_proto(self.created_at)),
            updated_at: Some(attrsync_proto::time::to_proto(self.updated_at)),
        }
    }
}

/// The SELECT list and joins of [`MappingView`].
pub(crate) const MAPPING_VIEW_SQL: &str = "\
    SELECT m.id, m.workspace_id, m.source_type, m.source_id, m.destination_type, \
           m.destination_display_name, m.destination_id, \
           m.destination_value AS mapped_destination_value, m.auto_mapped, m.auto_created, \
           m.created_at, \
           m.updated_at, s.value AS source_value, s.active AS source_active, \
           d.value AS destination_value, d.active AS destination_active \
    FROM mappings m \
    LEFT JOIN source_attributes s ON s.workspace_id = m.workspace_id \
         AND s.attribute_type = m.source_type AND s.source_id = m.source_id \
    LEFT JOIN destination_attributes d ON d.workspace_id = m.workspace_id \
         AND d.attribute_type = m.destination_type \
         AND d.display_name = m.destination_display_name \
         AND d.destination_id = m.destination_id";

/// How many mappings point at a destination (to say how many a deactivation flags).
pub(crate) async fn mappings_to(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    destination: &DestinationRow,
) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let row: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM mappings WHERE workspace_id = $1 AND destination_type = $2 \
           AND destination_display_name = $3 AND destination_id = $4",
    )
    .bind::<BigInt, _>(workspace_id)
    .bind::<Text, _>(&destination.attribute_type)
    .bind::<Text, _>(&destination.display_name)
    .bind::<Text, _>(&destination.destination_id)
    .get_result(conn)
    .await?;
    Ok(row.n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_the_first_problem() {
        use MappingState as S;
        assert_eq!(
            mapping_state(Some(true), Some(true), Some("Travel"), "Travel"),
            S::Ok
        );
        assert_eq!(
            mapping_state(Some(false), Some(false), Some("Travel"), "Travel"),
            S::DestinationInactive,
            "what breaks exports comes first"
        );
        assert_eq!(
            mapping_state(Some(true), Some(true), Some("Trips"), "Travel"),
            S::DestinationRenamed
        );
        assert_eq!(
            mapping_state(Some(false), Some(true), Some("Travel"), "Travel"),
            S::SourceInactive
        );
        assert_eq!(
            mapping_state(None, Some(true), Some("Travel"), "Travel"),
            S::UnknownAttribute
        );
        assert_eq!(
            mapping_state(Some(true), None, None, "Travel"),
            S::UnknownAttribute
        );
    }
}
