//! Pulls: full and incremental passes over a workspace's QBO entities (`SyncDimensions` and
//! the scheduler), applied through [`crate::apply`] like every other path.
//!
//! For each requested entity (all of [`SyncEntity::ALL`] when none is named):
//! 1. **24-hour rule** (incumbent #34): a full `SyncDimensions` of a workspace pulled in full
//!    more recently than `pulls.min_interval` (`qbo_workspace_sync.destination_synced_at`) is
//!    skipped unless forced.
//! 2. **Lease** `qbo-pull:<realm>:<Entity>` (`attrsync_db::lease`): one pass of a realm ×
//!    entity at a time; another pass's request — another replica's, or another of this
//!    replica's (each pass holds the lease under a holder name of its own) — is reported
//!    `HELD_ELSEWHERE`. The lease is renewed while the pass runs and every write transaction
//!    checks it first, so a pass that lost its lease writes nothing more.
//! 3. **Count and size limit** (#29, #30): `count(*)` of the active records is stored on every
//!    attempt; past the limit the entity is skipped with outcome `SKIPPED_SIZE_LIMIT`.
//! 4. **Mode**: a full pass (`Active IN (true, false)`, pages of 1,000 by `Id`, the next read
//!    while two are written — [`PAGE_WRITERS`]) when asked, when
//!    there is no watermark, or when the watermark is older than CDC's 30-day look-back;
//!    otherwise incremental — CDC from `watermark − overlap` (one request per 1,000 changes; an
//!    answer at QBO's 1,000-object cap that cannot move forward holds the watermark, so nothing
//!    is skipped),
//!    or a `LastUpdatedTime` query for tax codes, which CDC does not report (#31). CDC's
//!    deletions deactivate their rows.
//! 5. **Deletion detection** after a complete full pass (#33): active rows of the entity the
//!    pass did not return and that were last written from a copy older than the pass's start
//!    are read back by id once more — a row can slip between offset pages while QBO merges or
//!    deletes — and only those QBO still does not return are deactivated.
//! 6. `qbo_sync_state` records the watermark (the pass's start, or the newest `LastUpdatedTime`
//!    applied if QBO's clock is ahead), the run and its outcome; a complete full `SyncDimensions` sets `destination_synced_at`.
//!
//! **Scheduled passes** ([`crate::reconcile`], through [`Puller::round`]) run the same passes
//! under the same leases, recorded as `RECONCILE` (incremental) or `RECONCILE_FULL`, and may be
//! *judged* against a cutoff (the round's start less `reconcile.grace`): every object stamped
//! (`MetaData.LastUpdatedTime`) before it that the pass had to change — a content change, or
//! a deactivation, that no webhook had made — is a **missed webhook**. An incremental judged
//! pass leaves objects stamped at or after the cutoff to the next round (they are counted
//! `deferred` and its watermark stops at the cutoff), so a webhook still in flight is not
//! counted and a really missed one is counted the next time. Per entity, `qbo_sync_state`
//! keeps the last run's kind, missed and deferred counts, and the missed total.
//!
//! Failure policy: QBO refusing the grant marks the realm expired (see [`crate::connection`])
//! and stops the pull; transient failures fail the entity (`UNAVAILABLE`), keeping what earlier
//! transactions applied — every write is a versioned, idempotent upsert, so repeating is safe —
//! and a failed pass never deactivates anything: a partial listing is never taken for a
//! complete one.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use attrsync_config::KafkaConfig;
use attrsync_db::{
    DbError, Pool,
    lease::{self, Lease},
};
use attrsync_kafka::relay::RelayHandle;
use attrsync_qbo_client::{Active, Order, QboClient, Query, cdc::Change};
use attrsync_runtime::in_flight::InFlight;
use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{BigInt, Bool, Integer, Nullable, Text, Timestamptz},
};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::Value;
use tokio::task::JoinError;

use crate::{
    apply::{self, object_id},
    config::PullsConfig,
    connection::{QboAccess, QboError},
    rules::{self, NoTaxRates, PullMode, SizeLimit, SyncEntity, TaxRateLookup},
    schema::{
        qbo_attribute_counts as counts, qbo_sync_state as state, qbo_workspace_sync as synced,
    },
    settings::QboWorkspace,
    store,
};

/// The realm's tax rates as a pass holds them (shared with the task deriving its next page).
type TaxRates = Arc<dyn TaxRateLookup + Send + Sync>;

/// The tax rates read for this run, or none.
fn rates_of(read: Option<&Arc<HashMap<String, f64>>>) -> TaxRates {
    match read {
        Some(rates) => Arc::clone(rates) as TaxRates,
        None => Arc::new(NoTaxRates),
    }
}

/// Rows per QBO page (QBO's maximum).
const PAGE: u32 = 1000;

/// What a pass was asked to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    /// Every record (SyncDimensions).
    Full,
    /// What changed since the watermark (scheduler, SyncDimensions `incremental`); falls back
    /// to a full pass when there is no usable watermark.
    Incremental,
}

/// How one pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassPlan {
    pub kind: PassKind,
    /// Run by the scheduler: recorded as `RECONCILE` / `RECONCILE_FULL`, `last_reconcile_at`.
    pub scheduled: bool,
    /// Judged passes: objects stamped before this that the pass had to change are missed
    /// webhooks, and an incremental pass leaves objects stamped at or after it to the next
    /// round. `None` judges nothing (`SyncDimensions`, baselines, the 24-hour rule, tax codes).
    pub judge_before: Option<DateTime<Utc>>,
}

impl PassPlan {
    /// `SyncDimensions`' passes.
    pub const fn requested(kind: PassKind) -> Self {
        Self {
            kind,
            scheduled: false,
            judge_before: None,
        }
    }
}

/// What a pass of one entity did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityPull {
    pub entity: SyncEntity,
    /// `PULLED_FULL`, `PULLED_CDC`, `PULLED_QUERY`, `SKIPPED_RECENT`, `SKIPPED_SIZE_LIMIT`,
    /// `HELD_ELSEWHERE`.
    pub outcome: &'static str,
    pub fetched: u32,
    pub changed: u32,
    pub deactivated: u32,
    /// Judged passes: objects changed although stamped before the cutoff.
    pub missed_webhooks: u32,
    /// Judged incremental passes: objects stamped at or after the cutoff, left to the next round.
    pub deferred: u32,
}

impl EntityPull {
    fn skipped(entity: SyncEntity, outcome: &'static str) -> Self {
        Self {
            entity,
            outcome,
            fetched: 0,
            changed: 0,
            deactivated: 0,
            missed_webhooks: 0,
            deferred: 0,
        }
    }
}

/// A QBO object's `MetaData.LastUpdatedTime`.
pub fn stamp(object: &Value) -> Option<DateTime<Utc>> {
    object
        .get("MetaData")?
        .get("LastUpdatedTime")?
        .as_str()
        .and_then(rules::parse_qbo_time)
}

/// What a full or `LastUpdatedTime` pass takes from one page of its query, worked out where
/// the page was read (each object's id and stamp read once) so the pass only adds it up.
#[derive(Debug)]
struct PageRead {
    /// Objects on the page.
    fetched: u32,
    /// The id of every object on the page (what a full pass has seen).
    ids: Vec<String>,
    /// The newest stamp on the page, deferred objects included.
    newest: Option<DateTime<Utc>>,
    /// Objects left to the next round ([`deferred`]).
    deferred: u32,
    /// The stamps of the objects applied now, by id.
    stamps: HashMap<String, Option<DateTime<Utc>>>,
    /// The objects applied now, derived.
    derived: apply::DerivedEntities,
}

impl PageRead {
    /// Sorts `page` into what is applied now and what waits for `defer_from`, and derives the
    /// former with `derive` (pure but for what `derive` does).
    fn of(
        page: Vec<Value>,
        defer_from: Option<DateTime<Utc>>,
        derive: impl FnOnce(&[Value]) -> apply::DerivedEntities,
    ) -> Self {
        let fetched = u32::try_from(page.len()).unwrap_or(u32::MAX);
        let mut read = Self {
            fetched,
            ids: Vec::with_capacity(page.len()),
            newest: None,
            deferred: 0,
            stamps: HashMap::with_capacity(page.len()),
            derived: apply::DerivedEntities::default(),
        };
        let mut now = Vec::with_capacity(page.len());
        for object in page {
            let (id, at) = (object_id(&object), stamp(&object));
            read.newest = read.newest.max(at);
            if deferred(at, defer_from) {
                read.deferred += 1;
            } else {
                if let Some(id) = &id {
                    read.stamps.insert(id.clone(), at);
                }
                now.push(object);
            }
            read.ids.extend(id);
        }
        read.derived = derive(&now);
        read
    }
}

/// Whether a judged incremental pass leaves an object to the next round: stamped at or after
/// the cutoff (pure). Unstamped objects are applied.
pub fn deferred(stamp: Option<DateTime<Utc>>, defer_from: Option<DateTime<Utc>>) -> bool {
    matches!((stamp, defer_from), (Some(at), Some(cutoff)) if at >= cutoff)
}

/// Missed webhooks among what a judged pass wrote (pure): the distinct objects it `changed`
/// whose stamp is before `cutoff`. An object without a stamp proves nothing and is not counted.
pub fn missed(
    stamps: &HashMap<String, Option<DateTime<Utc>>>,
    changed: &HashSet<String>,
    cutoff: Option<DateTime<Utc>>,
) -> u32 {
    let Some(cutoff) = cutoff else {
        return 0;
    };
    let n = changed
        .iter()
        .filter(|id| {
            stamps
                .get(*id)
                .copied()
                .flatten()
                .is_some_and(|at| at < cutoff)
        })
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `qbo_sync_state.last_run` for a pass (pure).
pub fn run_kind(mode: PullMode, scheduled: bool) -> &'static str {
    match (mode == PullMode::Full, scheduled) {
        (true, false) => "FULL",
        (false, false) => "INCREMENTAL",
        (true, true) => "RECONCILE_FULL",
        (false, true) => "RECONCILE",
    }
}

/// What [`Puller::write`] did: rows changed, and the QBO ids they belong to.
#[derive(Debug, Default)]
struct Written {
    rows: u32,
    ids: HashSet<String>,
}

/// Pages of a full or `LastUpdatedTime` pass written at once, each by a task of its own in a
/// transaction of its own (on a connection of its own; `attrsync_runtime::in_flight`): while
/// one page's commit waits for its
/// WAL flush, the next page's rows are being inserted (`make bench-qbo-sync`: initial pull
/// ~14,000 → ~17,500 rows/s). Pages are disjoint (one object per `Id`, pages by `Id`); should
/// an object still come twice, its second write waits for the first's commit and then follows
/// the version rule, and as every page writes its keys in one order (`store`), two pages
/// cannot deadlock. A failed page fails the pass only after every page under way has ended.
const PAGE_WRITERS: usize = 2;

/// A page's write (see [`Puller::write_page`]) with what the pass counts from it: objects
/// read, and their stamps.
type PageWrite = (
    Result<Written, PassError>,
    u32,
    HashMap<String, Option<DateTime<Utc>>>,
);

/// Adds a page's write to `pull`.
fn count_page(
    pull: &mut EntityPull,
    done: Result<PageWrite, JoinError>,
    judge_before: Option<DateTime<Utc>>,
) -> Result<(), PassError> {
    let (written, fetched, stamps) = done.map_err(|e| {
        tracing::error!(error = %e, "a page's write ended without an outcome");
        PassError::Qbo(QboError::Unavailable(format!("page write ended: {e}")))
    })?;
    let applied = written?;
    pull.fetched += fetched;
    pull.changed += applied.rows;
    pull.missed_webhooks += missed(&stamps, &applied.ids, judge_before);
    Ok(())
}

/// The entities named in a request (QBO spellings or attribute types), all when none.
pub fn requested(names: &[String]) -> Result<Vec<SyncEntity>, String> {
    if names.is_empty() {
        return Ok(SyncEntity::ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in names {
        let entity: SyncEntity = name.trim().parse().map_err(|_| {
            format!(
                "`{name}` is not a synced QBO entity (one of Account, Item, Vendor, Customer, \
                 Class, Department, Employee, TaxCode)"
            )
        })?;
        if !out.contains(&entity) {
            out.push(entity);
        }
    }
    Ok(out)
}

/// Whether the 24-hour rule skips a workspace last pulled in full at `last` (pure).
pub fn recently_synced(
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    min_interval: Duration,
    force: bool,
) -> bool {
    let interval = chrono::Duration::from_std(min_interval).unwrap_or(chrono::Duration::MAX);
    !force && last.is_some_and(|l| now - l < interval)
}

/// Runs pulls. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Puller {
    pub(crate) access: QboAccess,
    pool: Pool,
    kafka: KafkaConfig,
    relay: RelayHandle,
    config: PullsConfig,
    size_limit: SizeLimit,
    holder: String,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

enum PassError {
    Qbo(QboError),
    LeaseLost,
}

impl From<DbError> for PassError {
    fn from(e: DbError) -> Self {
        PassError::Qbo(QboError::Db(e))
    }
}

impl From<diesel::result::Error> for PassError {
    fn from(e: diesel::result::Error) -> Self {
        PassError::Qbo(e.into())
    }
}

impl Puller {
    pub(crate) fn new(
        access: QboAccess,
        pool: Pool,
        kafka: KafkaConfig,
        relay: RelayHandle,
        config: PullsConfig,
        size_limit: SizeLimit,
    ) -> Self {
        Self {
            access,
            pool,
            kafka,
            relay,
            config,
            size_limit,
            holder: format!("qbo-sync-{}", ulid::Ulid::new()),
        }
    }

    /// Pulls `entities` of `workspace` (see the module docs).
    pub(crate) async fn sync(
        &self,
        workspace: &QboWorkspace,
        force: bool,
        kind: PassKind,
        entities: &[SyncEntity],
    ) -> Result<Vec<EntityPull>, QboError> {
        let realm = workspace
            .realm_id
            .clone()
            .ok_or(QboError::NoRealm(workspace.workspace_id))?;
        crate::realm::ensure_in(&self.pool, &self.kafka, workspace.workspace_id, &realm).await?;
        let now = Utc::now();
        if kind == PassKind::Full {
            let last = self.destination_synced_at(workspace.workspace_id).await?;
            if recently_synced(last, now, self.config.min_interval, force) {
                return Ok(entities
                    .iter()
                    .map(|e| EntityPull::skipped(*e, "SKIPPED_RECENT"))
                    .collect());
            }
        }
        let client = self.access.client(&realm).await?;
        let mut tax_rates: Option<Arc<HashMap<String, f64>>> = None;
        let mut report = Vec::with_capacity(entities.len());
        for &entity in entities {
            if entity == SyncEntity::TaxCode && tax_rates.is_none() {
                tax_rates = Some(Arc::new(self.tax_rates(&client, &realm).await?));
            }
            let rates = rates_of(tax_rates.as_ref());
            report.push(
                self.pull_entity(
                    &client,
                    workspace,
                    &realm,
                    entity,
                    PassPlan::requested(kind),
                    &rates,
                )
                .await?,
            );
        }
        let complete = kind == PassKind::Full
            && entities.len() == SyncEntity::ALL.len()
            && report
                .iter()
                .all(|r| r.outcome.starts_with("PULLED") || r.outcome == "SKIPPED_SIZE_LIMIT");
        if complete {
            let mut conn = self.pool.get().await.map_err(DbError::from)?;
            diesel::insert_into(synced::table)
                .values((
                    synced::workspace_id.eq(workspace.workspace_id),
                    synced::destination_synced_at.eq(now),
                ))
                .on_conflict(synced::workspace_id)
                .do_update()
                .set(synced::destination_synced_at.eq(now))
                .execute(&mut conn)
                .await?;
        }
        Ok(report)
    }

    /// A scheduled round's passes of one workspace ([`crate::reconcile`]), each entity's
    /// outcome on its own so that one failure does not hide the others'. `Err` when no pass
    /// could run (no realm, the realm not connected or expired).
    pub(crate) async fn round(
        &self,
        workspace: &QboWorkspace,
        plans: &[(SyncEntity, PassPlan)],
    ) -> Result<Vec<(SyncEntity, Result<EntityPull, QboError>)>, QboError> {
        let realm = workspace
            .realm_id
            .clone()
            .ok_or(QboError::NoRealm(workspace.workspace_id))?;
        crate::realm::ensure_in(&self.pool, &self.kafka, workspace.workspace_id, &realm).await?;
        let client = self.access.client(&realm).await?;
        let mut tax_rates: Option<Arc<HashMap<String, f64>>> = None;
        let mut out = Vec::with_capacity(plans.len());
        for &(entity, plan) in plans {
            if entity == SyncEntity::TaxCode && tax_rates.is_none() {
                match self.tax_rates(&client, &realm).await {
                    Ok(rates) => tax_rates = Some(Arc::new(rates)),
                    Err(e) => {
                        out.push((entity, Err(e)));
                        continue;
                    }
                }
            }
            let rates = rates_of(tax_rates.as_ref());
            let pulled = self
                .pull_entity(&client, workspace, &realm, entity, plan, &rates)
                .await;
            out.push((entity, pulled));
        }
        Ok(out)
    }

    async fn destination_synced_at(
        &self,
        workspace_id: i64,
    ) -> Result<Option<DateTime<Utc>>, QboError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        Ok(synced::table
            .find(workspace_id)
            .select(synced::destination_synced_at)
            .first::<Option<DateTime<Utc>>>(&mut conn)
            .await
            .optional()?
            .flatten())
    }

    /// Every tax rate of the realm, `Id → RateValue`: one query per run (the incumbent reads
    /// each referenced rate by id, once per reference).
    async fn tax_rates(
        &self,
        client: &QboClient,
        realm: &str,
    ) -> Result<HashMap<String, f64>, QboError> {
        let rows = client
            .query_all(&Query::select("TaxRate").active(Active::Both))
            .await
            .map_err(|e| self.access.failure(realm, e))?;
        Ok(rows.iter().filter_map(rules::tax_rate_entry).collect())
    }

    async fn pull_entity(
        &self,
        client: &QboClient,
        workspace: &QboWorkspace,
        realm: &str,
        entity: SyncEntity,
        plan: PassPlan,
        tax_rates: &TaxRates,
    ) -> Result<EntityPull, QboError> {
        let name = format!("qbo-pull:{realm}:{entity}");
        // A holder of its own per pass: two passes of one replica (two SyncDimensions, or one
        // and a scheduled round) exclude each other like two replicas do.
        let holder = format!("{}:{}", self.holder, ulid::Ulid::new());
        let Some(held) = lease::acquire(&self.pool, &name, &holder, self.config.lease_ttl).await?
        else {
            return Ok(EntityPull::skipped(entity, "HELD_ELSEWHERE"));
        };
        let renewer = lease::keep_renewed(self.pool.clone(), held.clone(), self.config.lease_ttl);
        let outcome = self
            .pass(client, workspace, realm, entity, plan, tax_rates, &held)
            .await;
        renewer.abort();
        if let Err(e) = lease::release(&self.pool, &held).await {
            tracing::warn!(lease = %held.name, error = %e, "pull lease not released; it expires");
        }
        if outcome.as_ref().is_ok_and(|p| p.changed > 0) {
            self.relay.wake();
        }
        match outcome {
            Ok(pull) => {
                if pull.missed_webhooks > 0 {
                    metrics::counter!("qbo_sync_missed_webhooks_total", "entity" => entity.as_str())
                        .increment(u64::from(pull.missed_webhooks));
                }
                Ok(pull)
            }
            Err(PassError::Qbo(e)) => Err(e),
            Err(PassError::LeaseLost) => Err(QboError::Unavailable(format!(
                "the pull of {entity} lost its lease (another replica took over)"
            ))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn pass(
        &self,
        client: &QboClient,
        workspace: &QboWorkspace,
        realm: &str,
        entity: SyncEntity,
        plan: PassPlan,
        tax_rates: &TaxRates,
        held: &Lease,
    ) -> Result<EntityPull, PassError> {
        let kind = plan.kind;
        let workspace_id = workspace.workspace_id;
        let started = Utc::now();
        self.record_attempt(workspace_id, entity, started).await?;
        if entity.size_limited() {
            let active = client
                .count(&Query::count(entity.as_str()).active(Active::Only))
                .await
                .map_err(|e| PassError::Qbo(self.access.failure(realm, e)))?;
            self.record_count(workspace_id, entity, active).await?;
            let created_at = workspace.created_at.unwrap_or(started);
            if !rules::sync_allowed(active, entity, created_at, &self.size_limit) {
                tracing::warn!(workspace_id, %entity, active, limit = self.size_limit.max_active, "entity over the size limit: not synced");
                self.record_outcome(workspace_id, entity, "SKIPPED_SIZE_LIMIT")
                    .await?;
                return Ok(EntityPull::skipped(entity, "SKIPPED_SIZE_LIMIT"));
            }
        }
        let watermark = self.watermark(workspace_id, entity).await?;
        let mode = match kind {
            PassKind::Full => PullMode::Full,
            PassKind::Incremental => {
                rules::incremental_mode(entity, watermark, started, self.config.incremental_overlap)
            }
        };
        let mut pull = EntityPull::skipped(entity, "PULLED_FULL");
        let mut newest: Option<DateTime<Utc>> = None;
        let mut capped_at: Option<DateTime<Utc>> = None;
        let mut seen: Vec<String> = Vec::new();
        let origin = match mode {
            _ if plan.scheduled => "reconcile",
            PullMode::Full => "full",
            _ => "incremental",
        };
        // A judged incremental pass applies only objects stamped before its cutoff; later ones
        // wait for the next round, when a webhook on its way has had time to arrive.
        let defer_from = plan.judge_before.filter(|_| mode != PullMode::Full);
        match mode {
            PullMode::Full | PullMode::LastUpdatedQuery { .. } => {
                let mut query = Query::select(entity.as_str())
                    .active(Active::Both)
                    .order_by("Id", Order::Asc);
                if let PullMode::LastUpdatedQuery { since } = mode {
                    query = query.changed_since(since);
                    pull.outcome = "PULLED_QUERY";
                }
                // Page n + 1 is read from QBO and derived while the pages before it are
                // written, up to PAGE_WRITERS at once, each in a transaction of its own: the
                // pass costs the slowest of reading, deriving and writing, not their sum. (A
                // judged pass that defers some objects derives after setting them apart.)
                let fetch = |start: u32| {
                    let (client, query) = (client.clone(), query.clone());
                    let (rules, rates) = (workspace.rules.clone(), Arc::clone(tax_rates));
                    tokio::spawn(async move {
                        let page = client
                            .query_page_as::<rules::PulledObject>(&query, start, PAGE)
                            .await?;
                        let page = page.into_iter().map(|object| object.0).collect();
                        Ok::<_, attrsync_qbo_client::Error>(PageRead::of(page, defer_from, |now| {
                            apply::derive_entities(&rules, entity, now, rates.as_ref())
                        }))
                    })
                };
                let mut start = 1;
                let mut next = Some(fetch(start));
                let mut writes = InFlight::new(PAGE_WRITERS);
                let mut failure: Option<PassError> = None;
                while let Some(reading) = next.take() {
                    let read = match reading.await {
                        Ok(Ok(read)) => read,
                        Ok(Err(e)) => {
                            failure = Some(PassError::Qbo(self.access.failure(realm, e)));
                            break;
                        }
                        Err(e) => {
                            failure = Some(PassError::Qbo(QboError::Unavailable(format!(
                                "page read ended: {e}"
                            ))));
                            break;
                        }
                    };
                    if read.fetched >= PAGE {
                        start += PAGE;
                        next = Some(fetch(start));
                    }
                    newest = newest.max(read.newest);
                    if mode == PullMode::Full {
                        seen.extend(read.ids);
                    }
                    pull.deferred += read.deferred;
                    let (fetched, stamps) = (read.fetched, read.stamps);
                    let write = self.write_page(workspace, entity, read.derived, held, origin);
                    let settled = writes
                        .start(async move { (write.await, fetched, stamps) })
                        .await;
                    if let Some(Err(e)) =
                        settled.map(|done| count_page(&mut pull, done, plan.judge_before))
                    {
                        failure = Some(e);
                        break;
                    }
                }
                // Every page under way ends before the pass does (and before any deletion is
                // concluded from it), failed or not.
                if let Some(reading) = next.take() {
                    reading.abort();
                }
                for done in writes.drain().await {
                    if let Err(e) = count_page(&mut pull, done, plan.judge_before) {
                        failure.get_or_insert(e);
                    }
                }
                if let Some(e) = failure {
                    return Err(e);
                }
            }
            PullMode::Cdc { changed_since } => {
                pull.outcome = "PULLED_CDC";
                let mut since = changed_since;
                loop {
                    let answer = client
                        .cdc(&[entity.as_str()], since)
                        .await
                        .map_err(|e| PassError::Qbo(self.access.failure(realm, e)))?;
                    let stamped = |c: &Change| c.last_updated.map(|t| t.with_timezone(&Utc));
                    let (later, now): (Vec<&Change>, Vec<&Change>) = answer
                        .changes
                        .iter()
                        .partition(|c| deferred(stamped(c), defer_from));
                    pull.deferred += u32::try_from(later.len()).unwrap_or(u32::MAX);
                    let (deleted, live): (Vec<&Change>, Vec<&Change>) =
                        now.iter().partition(|c| c.deleted);
                    let objects: Vec<Value> = live.iter().map(|c| c.object.clone()).collect();
                    let deleted_ids: Vec<String> = deleted.iter().map(|c| c.id.clone()).collect();
                    let stamps: HashMap<String, Option<DateTime<Utc>>> =
                        now.iter().map(|c| (c.id.clone(), stamped(c))).collect();
                    newest = newest.max(answer.latest.map(|t| t.with_timezone(&Utc)));
                    pull.fetched += u32::try_from(answer.changes.len()).unwrap_or(u32::MAX);
                    let derived = apply::derive_entities(
                        &workspace.rules,
                        entity,
                        &objects,
                        tax_rates.as_ref(),
                    );
                    let written = self
                        .write(workspace, entity, &derived, &deleted_ids, held, origin)
                        .await?;
                    pull.changed += written.rows;
                    pull.missed_webhooks += missed(&stamps, &written.ids, plan.judge_before);
                    match answer.latest {
                        // A full answer may have left changes out: ask again from the newest.
                        Some(latest) if answer.at_cap() && latest.with_timezone(&Utc) > since => {
                            since = latest.with_timezone(&Utc);
                        }
                        // A full answer that cannot move forward (more than QBO's 1,000 objects
                        // share one stamp): the watermark stays here rather than skip them, and
                        // the next full pass reads them.
                        _ if answer.at_cap() => {
                            tracing::warn!(%entity, %since, "CDC answer at its cap without progress: the watermark holds");
                            capped_at = Some(since);
                            break;
                        }
                        _ => break,
                    }
                }
            }
        }
        if mode == PullMode::Full {
            let stamped_before = started
                - chrono::Duration::from_std(self.config.incremental_overlap)
                    .unwrap_or_else(|_| chrono::Duration::zero());
            let (deactivated, gone) = self
                .detect_deletions(
                    client,
                    workspace,
                    realm,
                    entity,
                    &seen,
                    stamped_before,
                    tax_rates.as_ref(),
                    held,
                )
                .await?;
            pull.deactivated = deactivated;
            pull.changed += deactivated;
            // A judged full pass that finds a deletion found a webhook that never came.
            if plan.judge_before.is_some() {
                pull.missed_webhooks += gone;
            }
        }
        // A complete pass has seen everything QBO had committed when it started; the next
        // incremental read goes back `incremental_overlap` from there. Deferred objects are
        // read again: the watermark stops at the cutoff.
        // A stamp QBO sets in the future (a skewed clock) counts as at most five minutes ahead,
        // so it cannot push the watermark past changes still to come.
        let newest = newest.map(|n| n.min(started + chrono::Duration::minutes(5)));
        // A full pass starts over: an old (even future-skewed) watermark does not survive it.
        let mut watermark = if mode == PullMode::Full {
            newest.max(Some(started))
        } else {
            newest.max(Some(started)).max(watermark)
        };
        if let Some(held) = capped_at {
            watermark = Some(held);
        }
        if let (Some(cutoff), 1..) = (defer_from, pull.deferred) {
            watermark = watermark.map(|w| w.min(cutoff));
        }
        self.record_run(workspace_id, entity, mode, plan.scheduled, watermark, &pull)
            .await?;
        Ok(pull)
    }

    /// Deactivates the rows a complete pass did not return, after reading them back by id.
    /// Returns the rows changed and how many of the QBO ids gone had a row to change.
    #[allow(clippy::too_many_arguments)]
    async fn detect_deletions(
        &self,
        client: &QboClient,
        workspace: &QboWorkspace,
        realm: &str,
        entity: SyncEntity,
        seen: &[String],
        stamped_before: DateTime<Utc>,
        tax_rates: &(dyn TaxRateLookup + Sync),
        held: &Lease,
    ) -> Result<(u32, u32), PassError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let candidates: Vec<String> = store::absent_ids(
            &mut conn,
            workspace.workspace_id,
            entity.as_str(),
            seen,
            stamped_before,
        )
        .await?;
        drop(conn);
        if candidates.is_empty() {
            return Ok((0, 0));
        }
        let mut still_there: Vec<Value> = Vec::new();
        for chunk in candidates.chunks(200) {
            let query = Query::select(entity.as_str())
                .active(Active::Both)
                .where_in("Id", chunk.iter().map(String::as_str));
            still_there.extend(
                client
                    .query_all(&query)
                    .await
                    .map_err(|e| PassError::Qbo(self.access.failure(realm, e)))?,
            );
        }
        let returned: Vec<String> = still_there.iter().filter_map(object_id).collect();
        let gone: Vec<String> = candidates
            .into_iter()
            .filter(|id| !returned.contains(id))
            .collect();
        if !gone.is_empty() {
            tracing::info!(workspace_id = workspace.workspace_id, %entity, gone = gone.len(), "records QBO no longer returns deactivated");
        }
        let derived = apply::derive_entities(&workspace.rules, entity, &still_there, tax_rates);
        let written = self
            .write(workspace, entity, &derived, &gone, held, "full")
            .await?;
        let gone_changed = gone.iter().filter(|id| written.ids.contains(*id)).count();
        Ok((
            written.rows,
            u32::try_from(gone_changed).unwrap_or(u32::MAX),
        ))
    }

    /// [`Self::write`] of a derived page, owning what it needs (to run as a task of its own:
    /// see [`PAGE_WRITERS`]).
    fn write_page(
        &self,
        workspace: &QboWorkspace,
        entity: SyncEntity,
        derived: apply::DerivedEntities,
        held: &Lease,
        origin: &'static str,
    ) -> impl Future<Output = Result<Written, PassError>> + Send + 'static {
        let (puller, workspace, held) = (self.clone(), workspace.clone(), held.clone());
        async move {
            puller
                .write(&workspace, entity, &derived, &[], &held, origin)
                .await
        }
    }

    /// Applies derived objects and deactivates `gone` in one lease-checked transaction,
    /// publishing the changes. Returns how many rows changed and the QBO ids they belong to.
    async fn write(
        &self,
        workspace: &QboWorkspace,
        entity: SyncEntity,
        derived: &apply::DerivedEntities,
        gone: &[String],
        held: &Lease,
        origin: &str,
    ) -> Result<Written, PassError> {
        if derived.is_empty() && gone.is_empty() {
            return Ok(Written::default());
        }
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        conn.transaction::<Written, PassError, _>(async |conn| {
            if !lease::is_live(conn, held).await? {
                return Err(PassError::LeaseLost);
            }
            let applied =
                apply::apply_derived(conn, workspace.workspace_id, entity, derived).await?;
            let mut changes = applied.changes;
            changes
                .extend(apply::deactivate_ids(conn, workspace.workspace_id, entity, gone).await?);
            let written = Written {
                rows: u32::try_from(changes.len()).unwrap_or(u32::MAX),
                ids: changes.iter().map(|c| c.destination_id.clone()).collect(),
            };
            apply::publish(conn, &self.kafka, workspace.workspace_id, origin, changes).await?;
            Ok(written)
        })
        .await
    }

    async fn watermark(
        &self,
        workspace_id: i64,
        entity: SyncEntity,
    ) -> Result<Option<DateTime<Utc>>, DbError> {
        let mut conn = self.pool.get().await?;
        Ok(state::table
            .find((workspace_id, entity.as_str()))
            .select(state::watermark)
            .first::<Option<DateTime<Utc>>>(&mut conn)
            .await
            .optional()?
            .flatten())
    }

    async fn record_attempt(
        &self,
        workspace_id: i64,
        entity: SyncEntity,
        at: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let mut conn = self.pool.get().await?;
        diesel::insert_into(state::table)
            .values((
                state::workspace_id.eq(workspace_id),
                state::qbo_entity.eq(entity.as_str()),
                state::last_attempt_at.eq(at),
            ))
            .on_conflict((state::workspace_id, state::qbo_entity))
            .do_update()
            .set(state::last_attempt_at.eq(at))
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    async fn record_count(
        &self,
        workspace_id: i64,
        entity: SyncEntity,
        active: u64,
    ) -> Result<(), DbError> {
        let active = i64::try_from(active).unwrap_or(i64::MAX);
        let mut conn = self.pool.get().await?;
        diesel::insert_into(counts::table)
            .values((
                counts::workspace_id.eq(workspace_id),
                counts::qbo_entity.eq(entity.as_str()),
                counts::active_count.eq(active),
            ))
            .on_conflict((counts::workspace_id, counts::qbo_entity))
            .do_update()
            .set((
                counts::active_count.eq(active),
                counts::counted_at.eq(diesel::dsl::now),
            ))
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    async fn record_outcome(
        &self,
        workspace_id: i64,
        entity: SyncEntity,
        outcome: &str,
    ) -> Result<(), DbError> {
        let mut conn = self.pool.get().await?;
        diesel::update(state::table.find((workspace_id, entity.as_str())))
            .set(state::last_outcome.eq(outcome))
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    /// Records a pass: its watermark, outcome, kind and counts, the missed total, and the
    /// last full / incremental / reconcile time it advances.
    async fn record_run(
        &self,
        workspace_id: i64,
        entity: SyncEntity,
        mode: PullMode,
        scheduled: bool,
        watermark: Option<DateTime<Utc>>,
        pull: &EntityPull,
    ) -> Result<(), DbError> {
        let full = mode == PullMode::Full;
        let int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        let mut conn = self.pool.get().await?;
        diesel::sql_query(
            "UPDATE qbo_sync_state SET watermark = $3, last_outcome = $4, last_run = $5, \
                 last_run_missed = $6, last_run_deferred = $7, \
                 missed_webhooks = missed_webhooks + $6, \
                 last_full_sync_at = CASE WHEN $8 THEN now() ELSE last_full_sync_at END, \
                 last_incremental_sync_at = \
                     CASE WHEN $9 THEN now() ELSE last_incremental_sync_at END, \
                 last_reconcile_at = CASE WHEN $10 THEN now() ELSE last_reconcile_at END \
             WHERE workspace_id = $1 AND qbo_entity = $2",
        )
        .bind::<BigInt, _>(workspace_id)
        .bind::<Text, _>(entity.as_str())
        .bind::<Nullable<Timestamptz>, _>(watermark)
        .bind::<Text, _>(pull.outcome)
        .bind::<Text, _>(run_kind(mode, scheduled))
        .bind::<Integer, _>(int(pull.missed_webhooks))
        .bind::<Integer, _>(int(pull.deferred))
        .bind::<Bool, _>(full)
        .bind::<Bool, _>(!full && !scheduled)
        .bind::<Bool, _>(scheduled)
        .execute(&mut conn)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_24_hour_rule_skips_a_recent_full_sync_unless_forced() {
        let now = Utc::now();
        let day = Duration::from_secs(24 * 3600);
        assert!(recently_synced(
            Some(now - chrono::Duration::hours(23)),
            now,
            day,
            false
        ));
        assert!(!recently_synced(
            Some(now - chrono::Duration::hours(23)),
            now,
            day,
            true
        ));
        assert!(!recently_synced(
            Some(now - chrono::Duration::hours(25)),
            now,
            day,
            false
        ));
        assert!(!recently_synced(None, now, day, false));
    }

    #[test]
    fn requested_entities_parse_any_case_and_refuse_others() {
        assert_eq!(
            requested(&["vendor".into(), "Vendor".into(), "TAXCODE".into()]),
            Ok(vec![SyncEntity::Vendor, SyncEntity::TaxCode])
        );
        assert_eq!(requested(&[]).map(|v| v.len()), Ok(SyncEntity::ALL.len()));
        assert!(requested(&["Invoice".into()]).is_err());
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_714_651_200 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn a_judged_incremental_pass_defers_what_was_stamped_after_its_cutoff() {
        let cutoff = Some(at(0));
        assert!(deferred(Some(at(0)), cutoff), "at the cutoff");
        assert!(deferred(Some(at(5)), cutoff));
        assert!(!deferred(Some(at(-1)), cutoff));
        assert!(!deferred(None, cutoff), "unstamped objects are applied");
        assert!(
            !deferred(Some(at(5)), None),
            "unjudged passes defer nothing"
        );
    }

    #[test]
    fn only_changed_objects_stamped_before_the_cutoff_are_missed_webhooks() {
        let stamps: HashMap<String, Option<DateTime<Utc>>> = [
            ("1".to_owned(), Some(at(-60))),
            ("2".to_owned(), Some(at(-60))),
            ("3".to_owned(), Some(at(10))),
            ("4".to_owned(), None),
        ]
        .into();
        // 2 did not change (a webhook had applied it already).
        let changed: HashSet<String> = ["1", "3", "4"].map(str::to_owned).into();
        assert_eq!(missed(&stamps, &changed, Some(at(0))), 1);
        assert_eq!(missed(&stamps, &changed, None), 0, "not judged");
        assert_eq!(missed(&stamps, &HashSet::new(), Some(at(0))), 0);
    }

    #[test]
    fn the_stamp_is_qbos_last_updated_time() {
        let object = serde_json::json!({
            "Id": "30",
            "MetaData": {"LastUpdatedTime": "2024-05-02T05:00:00-07:00"}
        });
        assert_eq!(stamp(&object), Some(at(0)));
        assert_eq!(stamp(&serde_json::json!({"Id": "30"})), None);
    }

    #[test]
    fn a_page_read_sets_apart_what_a_judged_pass_defers_and_counts_every_object() {
        let object = |id: serde_json::Value, time: Option<&str>| match time {
            Some(t) => serde_json::json!({"Id": id, "MetaData": {"LastUpdatedTime": t}}),
            None => serde_json::json!({"Id": id}),
        };
        let page = vec![
            object("1".into(), Some("2024-05-02T04:59:00-07:00")), // at(-60): applied
            object("2".into(), Some("2024-05-02T05:00:10-07:00")), // at(10): deferred
            object(3.into(), None),                                // unstamped: applied
            serde_json::json!({"Name": "no id"}),                  // applied, counted, no id
        ];
        let mut derived_from = Vec::new();
        let read = PageRead::of(page.clone(), Some(at(0)), |now| {
            derived_from = now.to_vec();
            apply::DerivedEntities::default()
        });
        assert_eq!(read.fetched, 4);
        assert_eq!(read.ids, ["1", "2", "3"]);
        assert_eq!(
            read.newest,
            Some(at(10)),
            "deferred objects count for the watermark"
        );
        assert_eq!(read.deferred, 1);
        assert_eq!(
            read.stamps,
            HashMap::from([("1".to_owned(), Some(at(-60))), ("3".to_owned(), None)])
        );
        assert_eq!(
            derived_from,
            [page[0].clone(), page[2].clone(), page[3].clone()]
        );

        let unjudged = PageRead::of(page.clone(), None, |now| {
            assert_eq!(now, &page[..], "an unjudged pass applies the whole page");
            apply::DerivedEntities::default()
        });
        assert_eq!((unjudged.deferred, unjudged.stamps.len()), (0, 3));
    }

    #[test]
    fn runs_are_recorded_by_mode_and_by_who_ran_them() {
        let cdc = PullMode::Cdc {
            changed_since: at(0),
        };
        assert_eq!(run_kind(PullMode::Full, false), "FULL");
        assert_eq!(run_kind(cdc, false), "INCREMENTAL");
        assert_eq!(run_kind(PullMode::Full, true), "RECONCILE_FULL");
        assert_eq!(
            run_kind(PullMode::LastUpdatedQuery { since: at(0) }, true),
            "RECONCILE"
        );
    }
}
