//! Writing destination attributes: set-based, versioned, change-reporting.
//!
//! Every path that changes `destination_attributes` — full and incremental pulls, targeted
//! fetches after webhooks, deletes and merges — goes through the two functions here, inside
//! the caller's transaction:
//!
//! - [`upsert`] writes a page of derived attributes of one QBO entity type in **a constant
//!   number of statements** whatever the page size: the stored rows it touches are locked
//!   (`FOR UPDATE`, in id order, so their old values are the ones replaced and two writers
//!   never deadlock), then one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO UPDATE` writes
//!   what changed among the keys that have a row (copies equal to the locked row are left
//!   out), and one plain `INSERT`, in a savepoint, the keys that have none (should another
//!   writer have inserted one since the lock, that insert is undone to the savepoint and its
//!   keys take the `ON CONFLICT` statement). A row is rewritten only when its content hash or
//!   SyncToken differs, and never with an older copy.
//!   **Version rule**: a copy wins when its `MetaData.LastUpdatedTime` is newer; with the same
//!   stamp (QBO's stamps have whole seconds) when its `SyncToken` is not lower; never, with the
//!   same stamp, over a row deactivated here (`locally_deactivated`: a Delete, a Merge, an id QBO
//!   no longer returns), which only a strictly newer copy brings back. Stamps are capped at
//!   five minutes past our clock, so a far-future stamp cannot freeze a row.
//! - [`deactivate`] turns stored rows inactive (QBO deletes, merges, rows a complete pass no
//!   longer returns — found by [`absent_ids`] — and types an Account left), by primary key and
//!   only if the row is unchanged since it was read.
//!
//! Both return the [`Changed`] rows — with the stored values they replaced — from which the
//! caller's pure rules name the change (created, renamed, …) for `sync.destination-attributes.v1`.
//!
//! **Key lookups, whatever the statistics say.** Both match a page of at most a few thousand
//! keys against the table. While a first sync loads a workspace, the planner's statistics are
//! those of an empty table (or defaults): it expects `workspace_id = $1 AND qbo_entity = $2` to
//! keep a few rows, and then hashes all of the workspace's rows for every page, or walks them
//! once per key — a full sync turned quadratic (the hash build was most of the database's time in
//! `make bench-qbo-sync`). So [`upsert`] looks each key up through a `LATERAL … LIMIT 1` subquery
//! (the page drives, one unique-index probe per key, in any plan) with sequential scans off for
//! its statements ([`no_sequential_scans`]); [`deactivate`], whose statements are shaped by
//! their callers, also turns hash and merge joins off ([`plan_as_key_lookups`]). Both put the
//! settings back before returning, so the rest of the caller's transaction plans normally.
//! The probe compares `attribute_type || ''`, which no index serves: without statistics every
//! index led by `(workspace_id, attribute_type)` costs the same as the unique key to the
//! planner, and it took one of them and filtered every row of the type per key (`EXPLAIN
//! ANALYZE` on a never-analysed table of 50,000 rows: 12 ms per key); now only the unique key
//! `(workspace_id, qbo_entity, destination_id, …)` matches three columns (0.03 ms per key), and
//! the type — at most two rows share an id — is a filter.
//!
//! Failure policy: database errors are returned to the caller, whose transaction then writes
//! nothing; every statement is idempotent, so repeating a failed page is safe.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::{
    QueryableByName,
    pg::sql_types::Jsonb,
    prelude::*,
    sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde_json::Value;

use crate::rules::{DestinationDraft, content_hash};

/// A row [`upsert`] or [`deactivate`] wrote, with what it replaced (every field of `previous`
/// is `None` for a new row).
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Changed {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
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
    #[diesel(sql_type = Jsonb)]
    pub detail: Value,
    #[diesel(sql_type = Text)]
    pub content_hash: String,
    #[diesel(embed)]
    pub previous: Previous,
}

/// The stored values a write replaced.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Previous {
    #[diesel(sql_type = Nullable<Text>)]
    pub old_value: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub old_code: Option<String>,
    #[diesel(sql_type = Nullable<Bool>)]
    pub old_active: Option<bool>,
    #[diesel(sql_type = Nullable<Text>)]
    pub old_hash: Option<String>,
}

impl Changed {
    /// Whether what a user sees changed (a new SyncToken alone does not count).
    pub fn content_changed(&self) -> bool {
        self.previous.old_hash.as_deref() != Some(self.content_hash.as_str())
    }
}

/// Writes `drafts` — attributes derived from QBO entities of type `qbo_entity` — for
/// `workspace_id`, returning the rows written. Drafts for the same (id, type) are reduced to
/// the newest copy first (one statement cannot write a row twice).
pub async fn upsert(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    qbo_entity: &str,
    drafts: &[DestinationDraft],
) -> QueryResult<Vec<Changed>> {
    let drafts = newest_per_key(drafts);
    if drafts.is_empty() {
        return Ok(Vec::new());
    }
    no_sequential_scans(conn).await?;
    let written = write_page(conn, workspace_id, qbo_entity, &drafts).await?;
    restore_planner(conn).await?;
    Ok(written)
}

/// A locked stored row: its key and what decides whether a copy rewrites it.
#[derive(QueryableByName)]
struct StoredKey {
    #[diesel(sql_type = Text)]
    attribute_type: String,
    #[diesel(sql_type = Text)]
    destination_id: String,
    #[diesel(sql_type = Text)]
    content_hash: String,
    #[diesel(sql_type = Nullable<Text>)]
    sync_token: Option<String>,
}

/// [`upsert`]'s statements: the lock, then keys with a stored row through [`UPSERT`] and keys
/// without one through a plain [`INSERT_NEW`] (a first sync's pages are all new keys; a plain
/// insert costs about half of `ON CONFLICT` with its look-ups — `make bench-qbo-sync`, 1,000
/// rows: 40 ms against ~20). A key another writer inserted since the lock makes the plain
/// insert fail; it is undone to its savepoint and those keys go through [`UPSERT`] too.
/// Copies whose content hash and SyncToken equal the locked row's are left out before
/// [`UPSERT`], whose rule would not write them either (a re-sync's pages are mostly such).
/// Each draft's content hash is computed once, and the columns borrow from the drafts.
async fn write_page(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    qbo_entity: &str,
    drafts: &[&DestinationDraft],
) -> QueryResult<Vec<Changed>> {
    let hashes: Vec<String> = drafts.iter().map(|d| d.content_hash()).collect();
    let attribute_types: Vec<&str> = drafts.iter().map(|d| d.attribute_type.as_str()).collect();
    let destination_ids: Vec<&str> = drafts.iter().map(|d| d.destination_id.as_str()).collect();
    // Lock what this page replaces, so the values reported as "old" are the ones overwritten.
    let stored: Vec<StoredKey> = diesel::sql_query(
        "SELECT d.attribute_type, d.destination_id, d.content_hash, d.sync_token \
         FROM destination_attributes d \
         WHERE d.id = ANY(ARRAY( \
             SELECT l.id FROM unnest($3::text[], $4::text[]) AS i(attribute_type, destination_id) \
             CROSS JOIN LATERAL ( \
                 SELECT x.id FROM destination_attributes x \
                 WHERE x.workspace_id = $1 AND x.qbo_entity = $2 \
                   AND x.destination_id = i.destination_id \
                   AND x.attribute_type || '' = i.attribute_type \
                 LIMIT 1) l)) \
         ORDER BY d.id FOR UPDATE",
    )
    .bind::<BigInt, _>(workspace_id)
    .bind::<Text, _>(qbo_entity)
    .bind::<Array<Text>, _>(&attribute_types)
    .bind::<Array<Text>, _>(&destination_ids)
    .load(conn)
    .await?;
    let stored: HashMap<(&str, &str), &StoredKey> = stored
        .iter()
        .map(|k| ((k.attribute_type.as_str(), k.destination_id.as_str()), k))
        .collect();
    let mut known = Columns::default();
    let mut new = Columns::default();
    for (draft, hash) in drafts.iter().zip(&hashes) {
        match stored.get(&(draft.attribute_type.as_str(), draft.destination_id.as_str())) {
            None => new.push(draft, hash),
            Some(row) if row.content_hash == *hash && row.sync_token == draft.sync_token => {}
            Some(_) => known.push(draft, hash),
        }
    }
    let mut written = if known.is_empty() {
        Vec::new()
    } else {
        write_statement(conn, UPSERT, workspace_id, qbo_entity, &known).await?
    };
    if !new.is_empty() {
        let inserted = conn
            .transaction::<Vec<NewRow>, diesel::result::Error, _>(async |conn| {
                write_statement(conn, INSERT_NEW, workspace_id, qbo_entity, &new).await
            })
            .await;
        written.extend(match inserted {
            Ok(rows) => new.inserted(rows)?,
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => write_statement(conn, UPSERT, workspace_id, qbo_entity, &new).await?,
            Err(e) => return Err(e),
        });
    }
    written.sort_by_key(|c| c.id);
    Ok(written)
}

/// A row [`INSERT_NEW`] inserted: its id, by key (what else it holds, the page sent).
#[derive(QueryableByName)]
struct NewRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    attribute_type: String,
    #[diesel(sql_type = Text)]
    destination_id: String,
}

/// Runs [`UPSERT`] or [`INSERT_NEW`] (the same parameters) for `columns`, reading its rows
/// as `R`.
async fn write_statement<R>(
    conn: &mut AsyncPgConnection,
    statement: &'static str,
    workspace_id: i64,
    qbo_entity: &str,
    columns: &Columns<'_>,
) -> QueryResult<Vec<R>>
where
    R: QueryableByName<diesel::pg::Pg> + Send + 'static,
{
    diesel::sql_query(statement)
        .bind::<BigInt, _>(workspace_id)
        .bind::<Text, _>(qbo_entity)
        .bind::<Array<Text>, _>(&columns.attribute_type)
        .bind::<Array<Text>, _>(&columns.display_name)
        .bind::<Array<Text>, _>(&columns.destination_id)
        .bind::<Array<Text>, _>(&columns.value)
        .bind::<Array<Nullable<Text>>, _>(&columns.code)
        .bind::<Array<Bool>, _>(&columns.active)
        .bind::<Array<Jsonb>, _>(&columns.detail)
        .bind::<Array<Text>, _>(&columns.content_hash)
        .bind::<Array<Nullable<Timestamptz>>, _>(&columns.qbo_updated_at)
        .bind::<Array<Nullable<Text>>, _>(&columns.sync_token)
        .load(conn)
        .await
}

/// Puts the planner settings back for the rest of the caller's transaction — a statement
/// planned later (and perhaps kept as a cached generic plan, which settings do not invalidate)
/// gets the ordinary planner.
async fn restore_planner(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    conn.batch_execute("RESET enable_seqscan; RESET enable_hashjoin; RESET enable_mergejoin")
        .await
}

/// Turns sequential scans off until [`restore_planner`] (see the module doc).
async fn no_sequential_scans(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    attrsync_db::prepared::sql("SELECT set_config('enable_seqscan', 'off', true)")
        .execute(conn)
        .await
        .map(drop)
}

/// Turns hash joins, merge joins and sequential scans off until [`restore_planner`] (see the
/// module doc).
async fn plan_as_key_lookups(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    attrsync_db::prepared::sql(
        "SELECT set_config('enable_hashjoin', 'off', true), \
                set_config('enable_mergejoin', 'off', true), \
                set_config('enable_seqscan', 'off', true)",
    )
    .execute(conn)
    .await
    .map(drop)
}

/// The page's columns as a relation `input` (parameters `$3`…`$12`; `$1` the workspace, `$2`
/// the QBO entity).
macro_rules! page_input {
    () => {
        "WITH input AS (
    SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bool[],
                         $9::jsonb[], $10::text[], $11::timestamptz[], $12::text[])
        AS i(attribute_type, display_name, destination_id, value, code, active, detail,
             content_hash, qbo_updated_at, sync_token)
)"
    };
}

/// The insert of `input`'s rows, up to (not including) what a conflict does.
macro_rules! insert_input {
    () => {
        "
    INSERT INTO destination_attributes AS d
        (workspace_id, qbo_entity, attribute_type, display_name, destination_id, value, code,
         active, detail, content_hash, qbo_updated_at, sync_token)
    SELECT $1, $2, i.attribute_type, i.display_name, i.destination_id, i.value, i.code, i.active,
           i.detail, i.content_hash,
           -- LEAST ignores NULL: a copy without a stamp stays without one.
           CASE WHEN i.qbo_updated_at IS NULL THEN NULL
                ELSE LEAST(i.qbo_updated_at, now() + interval '5 minutes') END,
           i.sync_token
    FROM input i"
    };
}

/// The columns of a written row ([`Changed`] without its previous values).
macro_rules! written_columns {
    () => {
        "d.id, d.attribute_type, d.display_name, d.destination_id, d.value, d.code, d.active, \
         d.detail, d.content_hash"
    };
}

/// Rows for keys the lock found no row for: a plain insert (no look-up, no `ON CONFLICT`),
/// nothing replaced. It returns only each row's id and key: the rest is what the page sent
/// ([`Columns::inserted`]), and sending it back would cost a jsonb rendering and a parse a row.
const INSERT_NEW: &str = concat!(
    page_input!(),
    insert_input!(),
    "
    RETURNING d.id, d.attribute_type, d.destination_id"
);

/// `prior` reads the snapshot the statement started with — the locked rows' current values —
/// and `written` the rows the upsert changed; the outer join pairs them.
const UPSERT: &str = concat!(
    page_input!(),
    ", prior AS (
    SELECT p.*
    FROM input i
    CROSS JOIN LATERAL (
        SELECT d.attribute_type, d.destination_id, d.value, d.code, d.active, d.content_hash
        FROM destination_attributes d
        WHERE d.workspace_id = $1 AND d.qbo_entity = $2 AND d.destination_id = i.destination_id
          AND d.attribute_type || '' = i.attribute_type
        LIMIT 1) p
), written AS (",
    insert_input!(),
    "
    ON CONFLICT (workspace_id, qbo_entity, destination_id, attribute_type) DO UPDATE SET
        display_name = excluded.display_name,
        value = excluded.value,
        code = excluded.code,
        active = excluded.active,
        detail = excluded.detail,
        content_hash = excluded.content_hash,
        qbo_updated_at = excluded.qbo_updated_at,
        sync_token = excluded.sync_token,
        locally_deactivated = false,
        updated_at = CASE WHEN d.content_hash = excluded.content_hash THEN d.updated_at ELSE now() END
    WHERE (d.content_hash <> excluded.content_hash
           OR d.sync_token IS DISTINCT FROM excluded.sync_token)
      AND (d.qbo_updated_at IS NULL OR excluded.qbo_updated_at IS NULL
           OR excluded.qbo_updated_at > d.qbo_updated_at
           OR (excluded.qbo_updated_at = d.qbo_updated_at
               AND NOT d.locally_deactivated
               AND (CASE WHEN excluded.sync_token ~ '^[0-9]{1,18}$'
                         THEN excluded.sync_token::bigint END)
                   >= coalesce(CASE WHEN d.sync_token ~ '^[0-9]{1,18}$'
                                    THEN d.sync_token::bigint END, 0)))
    RETURNING ",
    written_columns!(),
    "
)
SELECT w.*, p.value AS old_value, p.code AS old_code, p.active AS old_active,
       p.content_hash AS old_hash
FROM written w
LEFT JOIN prior p ON p.attribute_type = w.attribute_type AND p.destination_id = w.destination_id
ORDER BY w.id"
);

/// Which stored rows [`deactivate`] turns inactive (always within one workspace × entity).
#[derive(Debug, Clone, Copy)]
pub enum Deactivation<'a> {
    /// Every row of these QBO ids (deleted or merged away in QBO).
    Ids(&'a [String]),
    /// Every row of `ids[i]`, unless the stored copy is newer than `as_of[i]` (a webhook's
    /// Delete that a later fetch already overtook); the row is then stamped `as_of[i]`, so an
    /// older copy read before the delete cannot bring it back.
    IdsAsOf {
        ids: &'a [String],
        as_of: &'a [Option<DateTime<Utc>>],
    },
    /// The rows of these (id, type) pairs — `ids[i]` with `types[i]` — slots an entity no
    /// longer fills (an Account whose type moved it from ACCOUNT to BANK_ACCOUNT, or out of the
    /// charts of accounts).
    Slots {
        ids: &'a [String],
        types: &'a [String],
    },
}

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    value: String,
    #[diesel(sql_type = Nullable<Text>)]
    code: Option<String>,
    #[diesel(sql_type = Jsonb)]
    detail: Value,
    #[diesel(sql_type = Text)]
    content_hash: String,
    #[diesel(sql_type = Text)]
    destination_id: String,
}

/// Turns the active rows `which` selects inactive, returning them.
pub async fn deactivate(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    qbo_entity: &str,
    which: Deactivation<'_>,
) -> QueryResult<Vec<Changed>> {
    plan_as_key_lookups(conn).await?;
    let written = deactivate_planned(conn, workspace_id, qbo_entity, which).await?;
    restore_planner(conn).await?;
    Ok(written)
}

/// [`deactivate`]'s statements.
async fn deactivate_planned(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    qbo_entity: &str,
    which: Deactivation<'_>,
) -> QueryResult<Vec<Changed>> {
    const ACTIVE_ROWS: &str = "SELECT id, value, code, detail, content_hash, destination_id \
         FROM destination_attributes WHERE workspace_id = $1 AND qbo_entity = $2 AND active";
    let candidates: Vec<Candidate> = match which {
        Deactivation::Ids(ids) => {
            diesel::sql_query(format!(
                "{ACTIVE_ROWS} AND destination_id = ANY($3) ORDER BY id FOR UPDATE"
            ))
            .bind::<BigInt, _>(workspace_id)
            .bind::<Text, _>(qbo_entity)
            .bind::<Array<Text>, _>(ids)
            .load(conn)
            .await?
        }
        Deactivation::IdsAsOf { ids, as_of } => {
            diesel::sql_query(format!(
                "{ACTIVE_ROWS} AND EXISTS (SELECT 1 FROM unnest($3::text[], $4::timestamptz[]) \
                     AS i(id, as_of) WHERE i.id = destination_id \
                     AND (i.as_of IS NULL OR qbo_updated_at IS NULL OR qbo_updated_at <= i.as_of)) \
                 ORDER BY id FOR UPDATE"
            ))
            .bind::<BigInt, _>(workspace_id)
            .bind::<Text, _>(qbo_entity)
            .bind::<Array<Text>, _>(ids)
            .bind::<Array<Nullable<Timestamptz>>, _>(as_of)
            .load(conn)
            .await?
        }
        Deactivation::Slots { ids, types } => {
            diesel::sql_query(format!(
                "{ACTIVE_ROWS} AND (destination_id, attribute_type) IN \
                 (SELECT * FROM unnest($3::text[], $4::text[])) ORDER BY id FOR UPDATE"
            ))
            .bind::<BigInt, _>(workspace_id)
            .bind::<Text, _>(qbo_entity)
            .bind::<Array<Text>, _>(ids)
            .bind::<Array<Text>, _>(types)
            .load(conn)
            .await?
        }
    };
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = candidates.iter().map(|c| c.id).collect();
    let hashes: Vec<String> = candidates
        .iter()
        .map(|c| content_hash(&c.value, c.code.as_deref(), false, &c.detail))
        .collect();
    let old_hashes: Vec<&str> = candidates.iter().map(|c| c.content_hash.as_str()).collect();
    let stamps: Vec<Option<DateTime<Utc>>> = match which {
        Deactivation::IdsAsOf { ids, as_of } => candidates
            .iter()
            .map(|c| {
                ids.iter()
                    .zip(as_of)
                    .filter(|(id, _)| **id == c.destination_id)
                    .filter_map(|(_, at)| *at)
                    .max()
            })
            .collect(),
        _ => vec![None; candidates.len()],
    };
    diesel::sql_query(
        "UPDATE destination_attributes d \
         SET active = false, content_hash = i.content_hash, updated_at = now(), \
             locally_deactivated = true, \
             qbo_updated_at = CASE WHEN i.as_of IS NULL THEN d.qbo_updated_at \
                 ELSE GREATEST(d.qbo_updated_at, LEAST(i.as_of, now() + interval '5 minutes')) END \
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[]) \
              AS i(id, content_hash, old_hash, as_of) \
         WHERE d.id = i.id AND d.content_hash = i.old_hash \
         RETURNING d.id, d.attribute_type, d.display_name, d.destination_id, d.value, d.code, \
                   d.active, d.detail, d.content_hash, d.value AS old_value, d.code AS old_code, \
                   true AS old_active, i.old_hash AS old_hash",
    )
    .bind::<Array<BigInt>, _>(&ids)
    .bind::<Array<Text>, _>(&hashes)
    .bind::<Array<Text>, _>(&old_hashes)
    .bind::<Array<Nullable<Timestamptz>>, _>(&stamps)
    .load(conn)
    .await
}

#[derive(QueryableByName)]
struct AbsentId {
    #[diesel(sql_type = Text)]
    destination_id: String,
}

/// The QBO ids of active rows of `qbo_entity` that are not in `seen` and were last written
/// from a copy older than `stamped_before`: what a complete pass suggests was deleted.
pub async fn absent_ids(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    qbo_entity: &str,
    seen: &[String],
    stamped_before: DateTime<Utc>,
) -> QueryResult<Vec<String>> {
    let rows: Vec<AbsentId> = diesel::sql_query(
        "SELECT DISTINCT destination_id FROM destination_attributes \
         WHERE workspace_id = $1 AND qbo_entity = $2 AND active \
           AND NOT destination_id = ANY($3) \
           AND (qbo_updated_at IS NULL OR qbo_updated_at < $4) \
         ORDER BY destination_id",
    )
    .bind::<BigInt, _>(workspace_id)
    .bind::<Text, _>(qbo_entity)
    .bind::<Array<Text>, _>(seen)
    .bind::<Timestamptz, _>(stamped_before)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.destination_id).collect())
}

/// The drafts with one copy per (id, type): the one QBO stamped last, the later one on a tie.
fn newest_per_key(drafts: &[DestinationDraft]) -> Vec<&DestinationDraft> {
    let mut newest: HashMap<(&str, &str), &DestinationDraft> = HashMap::with_capacity(drafts.len());
    for draft in drafts {
        let key = (draft.attribute_type.as_str(), draft.destination_id.as_str());
        match newest.get(&key) {
            Some(kept) if kept.last_updated_time > draft.last_updated_time => {}
            _ => {
                newest.insert(key, draft);
            }
        }
    }
    let mut kept: Vec<&DestinationDraft> = newest.into_values().collect();
    kept.sort_by(|a, b| {
        (a.attribute_type.as_str(), a.destination_id.as_str())
            .cmp(&(b.attribute_type.as_str(), b.destination_id.as_str()))
    });
    kept
}

/// The page as column arrays, the shape `unnest` takes, borrowed from its drafts.
#[derive(Default)]
struct Columns<'a> {
    attribute_type: Vec<&'static str>,
    display_name: Vec<&'static str>,
    destination_id: Vec<&'a str>,
    value: Vec<&'a str>,
    code: Vec<Option<&'a str>>,
    active: Vec<bool>,
    detail: Vec<&'a Value>,
    content_hash: Vec<&'a str>,
    qbo_updated_at: Vec<Option<DateTime<Utc>>>,
    sync_token: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    fn push(&mut self, draft: &'a DestinationDraft, content_hash: &'a str) {
        self.attribute_type.push(draft.attribute_type.as_str());
        self.display_name.push(draft.display_name);
        self.destination_id.push(&draft.destination_id);
        self.value.push(&draft.value);
        self.code.push(draft.code.as_deref());
        self.active.push(draft.active);
        self.detail.push(&draft.detail);
        self.content_hash.push(content_hash);
        self.qbo_updated_at.push(draft.last_updated_time);
        self.sync_token.push(draft.sync_token.as_deref());
    }

    fn is_empty(&self) -> bool {
        self.destination_id.is_empty()
    }

    /// The [`Changed`] rows of an [`INSERT_NEW`] of these columns that returned `rows`: what
    /// was sent, under the ids the database gave. The insert writes every row it is sent or
    /// fails, so `rows` are exactly the keys sent; anything else is an error rather than a row
    /// stored without its change event.
    fn inserted(&self, rows: Vec<NewRow>) -> QueryResult<Vec<Changed>> {
        let at: HashMap<(&str, &str), usize> = (0..self.destination_id.len())
            .map(|i| ((self.attribute_type[i], self.destination_id[i]), i))
            .collect();
        let unexpected = || {
            diesel::result::Error::DeserializationError(
                "the insert of new keys returned rows other than the keys it was sent".into(),
            )
        };
        if rows.len() != at.len() {
            return Err(unexpected());
        }
        rows.into_iter()
            .map(|row| {
                let i = *at
                    .get(&(row.attribute_type.as_str(), row.destination_id.as_str()))
                    .ok_or_else(unexpected)?;
                Ok(Changed {
                    id: row.id,
                    attribute_type: row.attribute_type,
                    display_name: self.display_name[i].to_owned(),
                    destination_id: row.destination_id,
                    value: self.value[i].to_owned(),
                    code: self.code[i].map(str::to_owned),
                    active: self.active[i],
                    detail: self.detail[i].clone(),
                    content_hash: self.content_hash[i].to_owned(),
                    previous: Previous {
                        old_value: None,
                        old_code: None,
                        old_active: None,
                        old_hash: None,
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::rules::{AttributeType, display_name};

    fn draft(id: &str, value: &str) -> DestinationDraft {
        DestinationDraft {
            attribute_type: AttributeType::Customer,
            display_name: display_name::CUSTOMER,
            destination_id: id.into(),
            value: value.into(),
            code: None,
            active: true,
            detail: json!({"email": format!("{value}@example.com")}),
            last_updated_time: None,
            sync_token: Some("0".into()),
        }
    }

    fn returned(id: i64, destination_id: &str) -> NewRow {
        NewRow {
            id,
            attribute_type: AttributeType::Customer.as_str().to_owned(),
            destination_id: destination_id.into(),
        }
    }

    #[test]
    fn new_rows_are_paired_with_what_was_sent_by_key_whatever_order_they_return_in() {
        let drafts = [draft("1", "Ada"), draft("2", "Bo")];
        let hashes: Vec<String> = drafts.iter().map(DestinationDraft::content_hash).collect();
        let mut sent = Columns::default();
        for (d, h) in drafts.iter().zip(&hashes) {
            sent.push(d, h);
        }
        let changed = sent
            .inserted(vec![returned(11, "2"), returned(10, "1")])
            .expect("the keys sent");
        assert_eq!(
            changed
                .iter()
                .map(|c| (c.id, c.value.as_str(), c.content_hash.as_str()))
                .collect::<Vec<_>>(),
            [
                (11, "Bo", hashes[1].as_str()),
                (10, "Ada", hashes[0].as_str())
            ]
        );
        assert_eq!(changed[1].detail, json!({"email": "Ada@example.com"}));
        assert_eq!(changed[1].previous.old_value, None);

        assert!(
            sent.inserted(vec![returned(10, "1")]).is_err(),
            "a row missing"
        );
        assert!(
            sent.inserted(vec![returned(10, "1"), returned(12, "3")])
                .is_err(),
            "a key not sent"
        );
    }
}
