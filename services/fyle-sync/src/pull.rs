//! Pulls (`SyncDimensions`): full passes over Fyle's attribute resources, applied through the
//! same derivation and version rule as webhooks.
//!
//! For each requested resource (all of [`PULLED`] when none is named):
//! 1. **24-hour rule** (incumbent #25/#26): a resource whose last full pull
//!    (`fyle_sync_state.last_full_sync_at`) is newer than `pulls.min_interval` is skipped unless
//!    the request says `force`.
//! 2. **Lease** (`attrsync_db::lease`, named `fyle-pull:<workspace>:<RESOURCE>`): one replica pulls
//!    a workspace × resource at a time; another replica's pull is reported `HELD_ELSEWHERE`, not
//!    waited for. The lease is renewed every third of `pulls.lease_ttl` while the pass runs, and
//!    every write transaction first checks — `FOR SHARE`, so a new holder waits for it — that this
//!    holder's lease (with its fencing number) is still live: a pull that lost its lease writes
//!    nothing more. A crashed puller's lease expires after the TTL.
//! 3. **List** the whole collection with the client's keyset pass (`list_all`), every call paced
//!    by the shared per-org bucket (`connection::SharedLimiter`).
//! 4. **Apply** each row as a webhook would be: [`attrsync_core::derive::derive`], then
//!    [`apply::apply_live`] at the row's version (`updated_at`, capped like a webhook's), which
//!    claims the version in `source_versions` first — so a pulled copy never overwrites a newer
//!    webhook, and a webhook older than the pull changes nothing after it. Changes go to the
//!    outbox (`sync.expense-attributes.v1`, origin `pull`) in the same transaction, 200 rows per
//!    transaction.
//! 5. **Deletion detection**: a stored active object that the complete pass did not return, and
//!    whose stored version is older than [`deletion_cutoff`] (the pass's watermark, or the pass's
//!    start less `versions.max_clock_skew` — so it is not a row written while the pass ran), was
//!    deleted in Fyle: a tombstone is claimed at the cutoff and its rows are deactivated, as a
//!    `DELETED` webhook would. A failed pass (any error) returns nothing and
//!    deactivates nothing: a partial listing is never mistaken for a complete one.
//! 6. `fyle_sync_state` records the watermark and `last_full_sync_at`.
//!
//! **Incremental pulls** (`incremental` in the request) list only rows changed since the stored
//! watermark less `pulls.incremental_overlap` (`updated_at=gte.…`, issue #27: the overlap absorbs
//! stamps committed out of order), apply them by the same rules and advance the watermark and
//! `last_incremental_sync_at`. They detect no deletions (absence from a partial listing proves
//! nothing) and are not subject to the 24-hour rule; a resource without a watermark gets a full
//! pass instead.
//!
//! Failure policy: credentials Fyle refuses mark the connection broken (see
//! [`crate::connection`]) and stop the pull; transient failures fail the call (`UNAVAILABLE`),
//! leaving what earlier transactions applied — every write is an idempotent, versioned upsert,
//! so repeating the pull is safe. A row that does not derive is skipped with a warning (it still
//! counts as present, so it is not deactivated).

use std::{collections::HashSet, time::Duration};

use attrsync_config::KafkaConfig;
use attrsync_core::{attribute::CUSTOM_PREFIX, derive, webhook::FyleResource};
use attrsync_db::{
    DbError, Pool,
    lease::{self, Lease},
    outbox::{self, NewOutboxMessage},
};
use attrsync_fyle_client::{Filters, FyleClient};
use attrsync_kafka::{
    envelope,
    handler::EffectError,
    relay::RelayHandle,
    topics::{self, TopicPayload as _},
};
use attrsync_proto::v1::{ExpenseAttributeChange, ExpenseAttributesChanged, ResourcePull};
use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{BigInt, Text},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use crate::{
    apply::{self, EventOutcome, MAX_CHANGE_EVENT_BYTES},
    config::PullsConfig,
    connection::{FyleAccess, FyleError},
    plan::{chunk_changes, effective_version},
    schema::{expense_attributes as ea, fyle_sync_state as state},
};

/// The resources a pull covers, in pull order.
pub const PULLED: [FyleResource; 7] = [
    FyleResource::Category,
    FyleResource::Project,
    FyleResource::CostCenter,
    FyleResource::Employee,
    FyleResource::CorporateCard,
    FyleResource::TaxGroup,
    FyleResource::ExpenseField,
];

/// The producer named in the envelopes of pulled changes.
const PRODUCER: &str = "fyle-sync";

/// Rows applied per transaction.
const ROWS_PER_TRANSACTION: usize = 200;

/// The Fyle admin collection of a pulled resource.
pub fn collection(resource: &FyleResource) -> Option<&'static str> {
    Some(match resource {
        FyleResource::Category => "categories",
        FyleResource::Project => "projects",
        FyleResource::CostCenter => "cost_centers",
        FyleResource::Employee => "employees",
        FyleResource::CorporateCard => "corporate_cards",
        FyleResource::TaxGroup => "tax_groups",
        FyleResource::ExpenseField => "expense_fields",
        _ => return None,
    })
}

/// The requested resources: every pulled one when none is named; an unknown name is an error.
pub fn requested(names: &[String]) -> Result<Vec<FyleResource>, String> {
    if names.is_empty() {
        return Ok(PULLED.to_vec());
    }
    let mut out: Vec<FyleResource> = Vec::new();
    for name in names {
        let resource = FyleResource::from(name.trim().to_ascii_uppercase());
        if collection(&resource).is_none() {
            return Err(format!(
                "`{name}` is not a pulled resource (one of CATEGORY, PROJECT, COST_CENTER, \
                 EMPLOYEE, CORPORATE_CARD, TAX_GROUP, EXPENSE_FIELD)"
            ));
        }
        if !out.contains(&resource) {
            out.push(resource);
        }
    }
    Ok(out)
}

/// Whether the 24-hour rule skips a resource last pulled at `last` (pure).
pub fn pulled_recently(
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    min_interval: Duration,
    force: bool,
) -> bool {
    let interval = chrono::Duration::from_std(min_interval).unwrap_or(chrono::Duration::MAX);
    !force && last.is_some_and(|l| now - l < interval)
}

/// The object a stored attribute row belongs to: its own source id for fixed types, the field
/// id for a custom SELECT option (`<field id>:<option>`). `None` for rows no pass of `resource`
/// covers (e.g. dependent values, whose custom types have no `:` in their source ids).
pub fn stored_object_id<'a>(
    resource: &FyleResource,
    attribute_type: &str,
    source_id: &'a str,
) -> Option<&'a str> {
    match resource {
        FyleResource::ExpenseField => {
            let option_type =
                attribute_type.starts_with(CUSTOM_PREFIX) || attribute_type == "MERCHANT";
            source_id
                .split_once(':')
                .filter(|_| option_type)
                .map(|(field, _)| field)
        }
        r if r.fixed_attribute_type().is_some() => Some(source_id),
        _ => None,
    }
}

/// Runs pulls. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Puller {
    pub(crate) fyle: FyleAccess,
    pool: Pool,
    kafka: KafkaConfig,
    relay: RelayHandle,
    config: PullsConfig,
    max_clock_skew: Duration,
    /// This replica's lease holder name.
    holder: String,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// A resource's state row: its name, last full pull and watermark.
type LastSync = (String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// What a whole `SyncDimensions` did.
#[derive(Debug, Default)]
pub(crate) struct SyncReport {
    pub(crate) resources: Vec<ResourcePull>,
}

#[derive(diesel::QueryableByName)]
struct Held {
    #[diesel(sql_type = BigInt)]
    held: i64,
}

#[derive(Debug)]
enum PullFailure {
    Fyle(FyleError),
    LeaseLost,
}

impl From<DbError> for PullFailure {
    fn from(e: DbError) -> Self {
        PullFailure::Fyle(FyleError::Db(e))
    }
}

impl From<diesel::result::Error> for PullFailure {
    fn from(e: diesel::result::Error) -> Self {
        PullFailure::Fyle(FyleError::from(e))
    }
}

impl Puller {
    pub(crate) fn new(
        fyle: FyleAccess,
        kafka: KafkaConfig,
        relay: RelayHandle,
        config: PullsConfig,
        max_clock_skew: Duration,
    ) -> Self {
        Self {
            pool: fyle.pool.clone(),
            fyle,
            kafka,
            relay,
            config,
            max_clock_skew,
            holder: format!("fyle-sync-{}", ulid::Ulid::new()),
        }
    }

    /// `SyncDimensions`.
    pub(crate) async fn sync(
        &self,
        workspace_id: i64,
        force: bool,
        incremental: bool,
        resources: &[FyleResource],
    ) -> Result<SyncReport, FyleError> {
        let last = self.last_syncs(workspace_id).await?;
        let now = Utc::now();
        let mut report = SyncReport::default();
        let mut client: Option<FyleClient> = None;
        for resource in resources {
            let name = resource.as_str().to_owned();
            let (last_pull, watermark) = last
                .iter()
                .find(|(t, ..)| *t == name)
                .map_or((None, None), |(_, l, w)| (*l, *w));
            // An incremental pull needs a watermark (a resource never pulled gets a full pass)
            // and is not subject to the 24-hour rule: it costs one call when nothing changed.
            let since = watermark.filter(|_| incremental);
            if since.is_none() && pulled_recently(last_pull, now, self.config.min_interval, force) {
                report.resources.push(ResourcePull {
                    resource: name,
                    outcome: "SKIPPED_RECENT".into(),
                    ..Default::default()
                });
                continue;
            }
            let client = match &client {
                Some(c) => c,
                None => client.insert(self.fyle.client(workspace_id).await?),
            };
            report.resources.push(
                self.pull_resource(client, workspace_id, resource, since)
                    .await?,
            );
        }
        Ok(report)
    }

    async fn last_syncs(&self, workspace_id: i64) -> Result<Vec<LastSync>, FyleError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        Ok(state::table
            .filter(state::workspace_id.eq(workspace_id))
            .select((
                state::attribute_type,
                state::last_full_sync_at,
                state::watermark,
            ))
            .load(&mut conn)
            .await?)
    }

    async fn pull_resource(
        &self,
        client: &FyleClient,
        workspace_id: i64,
        resource: &FyleResource,
        since: Option<DateTime<Utc>>,
    ) -> Result<ResourcePull, FyleError> {
        let name = format!("fyle-pull:{workspace_id}:{}", resource.as_str());
        let Some(held) =
            lease::acquire(&self.pool, &name, &self.holder, self.config.lease_ttl).await?
        else {
            tracing::info!(workspace_id, resource = %resource, "pull skipped: another replica holds the lease");
            return Ok(ResourcePull {
                resource: resource.as_str().to_owned(),
                outcome: "HELD_ELSEWHERE".into(),
                ..Default::default()
            });
        };
        let renewer = self.renew_while_running(held.clone());
        let result = self
            .pass(client, workspace_id, resource, &held, since)
            .await;
        renewer.abort();
        if let Err(e) = lease::release(&self.pool, &held).await {
            tracing::warn!(error = %e, lease = %held.name, "could not release a pull lease; it expires");
        }
        self.relay.wake();
        match result {
            Ok(pulled) => Ok(pulled),
            Err(PullFailure::Fyle(e)) => Err(e),
            Err(PullFailure::LeaseLost) => Err(FyleError::Unavailable(format!(
                "the pull of {resource} lost its lease (another replica took over)"
            ))),
        }
    }

    fn renew_while_running(&self, held: Lease) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        let ttl = self.config.lease_ttl;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                match lease::renew(&pool, &held, ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(lease = %held.name, "pull lease lost");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(lease = %held.name, error = %e, "pull lease not renewed")
                    }
                }
            }
        })
    }

    async fn pass(
        &self,
        client: &FyleClient,
        workspace_id: i64,
        resource: &FyleResource,
        held: &Lease,
        since: Option<DateTime<Utc>>,
    ) -> Result<ResourcePull, PullFailure> {
        let path = collection(resource).unwrap_or_default();
        let started = Utc::now();
        let listed = match since {
            None => client.list_all(path, &Filters::new()).await,
            Some(watermark) => {
                client
                    .list_changed_since(
                        path,
                        &Filters::new(),
                        Some(watermark),
                        self.config.incremental_overlap,
                    )
                    .await
            }
        };
        let listing = match listed {
            Ok(l) => l,
            Err(e) => return Err(PullFailure::Fyle(self.fyle.failed(workspace_id, &e).await)),
        };
        let mut report = ResourcePull {
            resource: resource.as_str().to_owned(),
            outcome: if since.is_some() {
                "PULLED_INCREMENTAL"
            } else {
                "PULLED"
            }
            .into(),
            rows: u32::try_from(listing.rows.len()).unwrap_or(u32::MAX),
            ..Default::default()
        };
        let mut returned: HashSet<String> = HashSet::new();
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        for rows in listing.rows.chunks(ROWS_PER_TRANSACTION) {
            let changed = conn
                .transaction::<_, PullFailure, _>(async |conn| {
                    self.check_lease(conn, held).await?;
                    let mut changes = Vec::new();
                    for row in rows {
                        let Some(id) = row_id(row) else {
                            tracing::warn!(resource = %resource, "a pulled row has no id; skipped");
                            continue;
                        };
                        returned.insert(id.clone());
                        changes.extend(
                            self.apply_row(conn, workspace_id, resource, &id, row)
                                .await?,
                        );
                    }
                    let n = changes.len();
                    self.publish(conn, workspace_id, changes).await?;
                    Ok(n)
                })
                .await?;
            report.changed += u32::try_from(changed).unwrap_or(u32::MAX);
        }
        let cutoff = deletion_cutoff(listing.watermark, started, self.max_clock_skew);
        let (deleted, changed) = conn
            .transaction::<_, PullFailure, _>(async |conn| {
                self.check_lease(conn, held).await?;
                if since.is_some() {
                    // Not a complete listing: nothing can be concluded from absence.
                    diesel::insert_into(state::table)
                        .values((
                            state::workspace_id.eq(workspace_id),
                            state::attribute_type.eq(resource.as_str()),
                            state::watermark.eq(listing.watermark),
                            state::last_incremental_sync_at.eq(diesel::dsl::now),
                        ))
                        .on_conflict((state::workspace_id, state::attribute_type))
                        .do_update()
                        .set((
                            state::watermark.eq(listing.watermark),
                            state::last_incremental_sync_at.eq(diesel::dsl::now),
                        ))
                        .execute(conn)
                        .await?;
                    return Ok((0, 0));
                }
                let (deleted, changes) = self
                    .detect_deletions(conn, workspace_id, resource, &returned, cutoff)
                    .await?;
                let n = changes.len();
                self.publish(conn, workspace_id, changes).await?;
                diesel::insert_into(state::table)
                    .values((
                        state::workspace_id.eq(workspace_id),
                        state::attribute_type.eq(resource.as_str()),
                        state::watermark.eq(listing.watermark),
                        state::last_full_sync_at.eq(diesel::dsl::now),
                    ))
                    .on_conflict((state::workspace_id, state::attribute_type))
                    .do_update()
                    .set((
                        state::watermark.eq(listing.watermark),
                        state::last_full_sync_at.eq(diesel::dsl::now),
                    ))
                    .execute(conn)
                    .await?;
                Ok((deleted, n))
            })
            .await?;
        report.deleted = deleted;
        report.changed += u32::try_from(changed).unwrap_or(u32::MAX);
        tracing::info!(
            workspace_id,
            resource = %resource,
            rows = report.rows,
            changed = report.changed,
            deleted = report.deleted,
            pages = listing.pages,
            incremental = since.is_some(),
            "pull applied"
        );
        Ok(report)
    }

    async fn check_lease(
        &self,
        conn: &mut AsyncPgConnection,
        held: &Lease,
    ) -> Result<(), PullFailure> {
        let live: Held = diesel::sql_query(
            "SELECT count(*) AS held FROM (SELECT 1 FROM leases \
             WHERE name = $1 AND holder = $2 AND fencing = $3 AND expires_at > now() FOR SHARE) l",
        )
        .bind::<Text, _>(&held.name)
        .bind::<Text, _>(&held.holder)
        .bind::<BigInt, _>(held.fencing)
        .get_result(conn)
        .await?;
        if live.held == 1 {
            Ok(())
        } else {
            Err(PullFailure::LeaseLost)
        }
    }

    async fn apply_row(
        &self,
        conn: &mut AsyncPgConnection,
        workspace_id: i64,
        resource: &FyleResource,
        id: &str,
        row: &Value,
    ) -> Result<Vec<ExpenseAttributeChange>, PullFailure> {
        let derived = match derive::derive(resource, row) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(resource = %resource, id, error = %e, "a pulled row does not derive; skipped");
                return Ok(Vec::new());
            }
        };
        let updated_at = row
            .get("updated_at")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc));
        let version = effective_version(updated_at, Utc::now(), self.max_clock_skew);
        match apply::apply_live(conn, workspace_id, resource, id, derived, version)
            .await
            .map_err(effect_failure)?
        {
            EventOutcome::Applied(changes) => Ok(changes),
            EventOutcome::Ignored(_) => Ok(Vec::new()),
        }
    }

    /// Deactivates stored objects of `resource` that the complete pass did not return and that
    /// are older than `cutoff`; returns how many objects and the changes.
    async fn detect_deletions(
        &self,
        conn: &mut AsyncPgConnection,
        workspace_id: i64,
        resource: &FyleResource,
        returned: &HashSet<String>,
        cutoff: DateTime<Utc>,
    ) -> Result<(u32, Vec<ExpenseAttributeChange>), PullFailure> {
        let mut candidates = ea::table
            .filter(ea::workspace_id.eq(workspace_id))
            .filter(ea::active.eq(true))
            .filter(
                ea::source_updated_at
                    .is_null()
                    .or(ea::source_updated_at.lt(cutoff)),
            )
            .select((ea::attribute_type, ea::source_id))
            .into_boxed();
        candidates = match resource.fixed_attribute_type() {
            Some(t) => candidates.filter(ea::attribute_type.eq(t.as_str().to_owned())),
            None => candidates.filter(
                ea::attribute_type
                    .like(format!("{}%", apply::escape_like(CUSTOM_PREFIX)))
                    .or(ea::attribute_type.eq("MERCHANT")),
            ),
        };
        let stored: Vec<(String, String)> = candidates.load(conn).await?;
        let mut missing: Vec<String> = stored
            .iter()
            .filter_map(|(t, s)| stored_object_id(resource, t, s))
            .filter(|id| !returned.contains(*id))
            .map(str::to_owned)
            .collect();
        missing.sort();
        missing.dedup();
        let mut deleted = 0;
        let mut changes = Vec::new();
        for id in missing {
            let key = apply::object_key(resource, &id);
            if !apply::claim_version(conn, workspace_id, &key, cutoff, true).await? {
                continue;
            }
            if let EventOutcome::Applied(c) =
                apply::deactivate_deleted(conn, workspace_id, resource, &id, cutoff)
                    .await
                    .map_err(effect_failure)?
            {
                changes.extend(c);
            }
            deleted += 1;
        }
        if deleted > 0 {
            tracing::info!(workspace_id, resource = %resource, deleted, "objects deleted in Fyle deactivated by a full pass");
        }
        Ok((deleted, changes))
    }

    /// Change events through the outbox, as the webhook path writes them.
    async fn publish(
        &self,
        conn: &mut AsyncPgConnection,
        workspace_id: i64,
        changes: Vec<ExpenseAttributeChange>,
    ) -> Result<(), PullFailure> {
        if changes.is_empty() {
            return Ok(());
        }
        let topic = self.kafka.topic(topics::EXPENSE_ATTRIBUTES_CHANGED.name());
        let rows: Vec<NewOutboxMessage> = chunk_changes(changes, MAX_CHANGE_EVENT_BYTES)
            .into_iter()
            .map(|chunk| {
                let payload = ExpenseAttributesChanged {
                    changes: chunk,
                    origin: "pull".into(),
                };
                let envelope = envelope::new(
                    workspace_id,
                    PRODUCER,
                    attrsync_proto::time::now(),
                    payload.into_payload(),
                );
                envelope::outbox_row(topic.clone(), &envelope)
            })
            .collect();
        outbox::enqueue(conn, &rows).await?;
        Ok(())
    }
}

fn row_id(row: &Value) -> Option<String> {
    match row.get("id") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// Stored objects stamped before this and absent from a complete pass were deleted in Fyle
/// (pure). A row stamped before the pass's watermark existed when the pass began, and so would
/// have been returned (see the client's `list` docs); so would a row stamped before the pass
/// started, allowing `max_skew` between Fyle's clock and ours. Rows stamped later may have been
/// written while the pass ran and are left to the next pass.
pub fn deletion_cutoff(
    watermark: Option<DateTime<Utc>>,
    started: DateTime<Utc>,
    max_skew: Duration,
) -> DateTime<Utc> {
    let skew = chrono::Duration::from_std(max_skew).unwrap_or_else(|_| chrono::Duration::zero());
    let before_start = started - skew;
    watermark.map_or(before_start, |w| w.max(before_start))
}

fn effect_failure(e: EffectError) -> PullFailure {
    match e {
        EffectError::Db(e) => e.into(),
        EffectError::Handler(h) => PullFailure::Fyle(FyleError::Rejected(h.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn resources_are_named_as_webhooks_name_them_and_unknown_ones_are_refused() {
        assert_eq!(requested(&[]).unwrap_or_default(), PULLED.to_vec());
        assert_eq!(
            requested(&["category".into(), "CATEGORY".into(), "EXPENSE_FIELD".into()]),
            Ok(vec![FyleResource::Category, FyleResource::ExpenseField])
        );
        assert!(requested(&["EXPENSE".into()]).is_err());
        assert!(requested(&["DEPENDENT_FIELD".into()]).is_err());
    }

    #[test]
    fn the_24_hour_rule_skips_a_recent_pull_unless_forced() {
        let now = Utc
            .with_ymd_and_hms(2024, 5, 2, 12, 0, 0)
            .single()
            .unwrap_or_default();
        let day = Duration::from_secs(24 * 3600);
        let hour_ago = Some(now - chrono::Duration::hours(1));
        assert!(pulled_recently(hour_ago, now, day, false));
        assert!(!pulled_recently(hour_ago, now, day, true), "force");
        assert!(!pulled_recently(None, now, day, false), "never pulled");
        let two_days = Some(now - chrono::Duration::hours(48));
        assert!(!pulled_recently(two_days, now, day, false));
    }

    #[test]
    fn deletions_are_detected_below_the_watermark_or_well_before_the_pass() {
        let started = Utc
            .with_ymd_and_hms(2024, 5, 2, 12, 0, 0)
            .single()
            .unwrap_or_default();
        let skew = Duration::from_secs(300);
        let early = started - chrono::Duration::minutes(5);
        // The newest object was deleted before the pass: the watermark is older than it, but
        // it was stamped well before the pass began.
        let old_watermark = Some(started - chrono::Duration::days(300));
        assert_eq!(deletion_cutoff(old_watermark, started, skew), early);
        assert_eq!(deletion_cutoff(None, started, skew), early);
        // A watermark past the start (Fyle's clock ahead) still counts.
        let ahead = started + chrono::Duration::minutes(1);
        assert_eq!(deletion_cutoff(Some(ahead), started, skew), ahead);
    }

    #[test]
    fn stored_rows_map_to_the_objects_a_pass_returns() {
        let field = FyleResource::ExpenseField;
        assert_eq!(
            stored_object_id(&field, "CUSTOM:LUKE", "229506:France"),
            Some("229506")
        );
        assert_eq!(stored_object_id(&field, "MERCHANT", "1:Uber"), Some("1"));
        assert_eq!(
            stored_object_id(&field, "CUSTOM:COST_CODE", "88001"),
            None,
            "dependent value"
        );
        assert_eq!(
            stored_object_id(&FyleResource::Category, "CATEGORY", "22330021"),
            Some("22330021")
        );
    }
}
