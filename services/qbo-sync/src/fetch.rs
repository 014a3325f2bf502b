//! Targeted fetches: QBO webhook changes, read back and applied within a second or so.
//!
//! The consumer ([`crate::changes`]) leaves each change in `qbo_pending_changes`. This task, on
//! every replica, looks every `webhooks.coalesce_window` for realms whose oldest pending change
//! has waited a full window, and serves each such realm under the lease `qbo-fetch:<realm>`
//! (one replica per realm at a time):
//!
//! 1. the realm's due changes (up to [`MAX_CHANGES_PER_ROUND`]) become one fetch plan
//!    ([`rules::coalesce`]): per entity type the distinct ids to read, ids to deactivate
//!    directly (Delete), merges;
//! 2. the ids are read with one `SELECT * FROM <Entity> WHERE Active IN (true, false) AND Id
//!    IN (…)` per entity type (chunked) — a burst of changes costs a handful of requests,
//!    and **one fetch serves every workspace** whose changes are in the round;
//! 3. in **one transaction** (lease checked first): for each workspace, what was read is
//!    applied with the workspace's rules ([`crate::apply`]), ids QBO did not return are
//!    deactivated (hard-deleted), Deletes deactivate unless the stored copy is newer, merges
//!    are recorded in `qbo_merges` and deactivate the merged-away id; the change events go to
//!    the outbox; and exactly the pending rows served are deleted.
//!
//! Failure policy: nothing is lost. A round that fails (QBO down or throttled past the
//! client's retries, the connection expired or missing, the database) leaves its rows in
//! place with `attempts + 1` and `not_before` pushed back exponentially (`retry_initial` …
//! `retry_max`), logged and counted (`qbo_sync_fetch_failures_total`); a realm whose
//! connection is expired or missing is not served at all until `ConnectQbo`, and its rows are
//! served then. Changes for a workspace that is gone
//! or moved to another realm are dropped with a count. A crash between the read and the
//! commit repeats the round: every write is a versioned, idempotent upsert.

use std::{collections::BTreeMap, time::Duration};

use attrsync_config::KafkaConfig;
use attrsync_db::{
    DbError, Pool,
    lease::{self, Lease},
};
use attrsync_kafka::{
    relay::RelayHandle,
    workspaces::{Lookup, WorkspaceDirectory},
};
use attrsync_qbo_client::{Active, Query};
use chrono::{DateTime, Utc};
use diesel::{
    QueryableByName,
    prelude::*,
    sql_types::{Array, BigInt, Interval, Text},
};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{
    apply::{self, object_id},
    config::WebhooksConfig,
    connection::{QboAccess, QboError},
    rules::{self, ChunkLimits, EntityChange, FetchPlan, NoTaxRates, Operation, SyncEntity},
    schema::{qbo_merges as merges, qbo_pending_changes as pending},
    settings,
    store::{self, Deactivation},
};

/// Pending changes one round serves at most (the rest wait for the next round).
pub const MAX_CHANGES_PER_ROUND: i64 = 10_000;

/// How long a replica's fetch lease on a realm lasts without renewal.
const LEASE_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Queryable)]
struct PendingRow {
    id: i64,
    realm_id: String,
    workspace_id: i64,
    qbo_entity: String,
    entity_id: String,
    operation: String,
    deleted_id: Option<String>,
    last_updated: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
    attempts: i32,
}

#[derive(QueryableByName)]
struct DueRealm {
    #[diesel(sql_type = Text)]
    realm_id: String,
}

/// Serves pending QBO changes. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Fetcher {
    pool: Pool,
    access: QboAccess,
    directory: WorkspaceDirectory,
    kafka: KafkaConfig,
    relay: RelayHandle,
    config: WebhooksConfig,
    holder: String,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

enum RoundError {
    Qbo(QboError),
    LeaseLost,
}

impl From<diesel::result::Error> for RoundError {
    fn from(e: diesel::result::Error) -> Self {
        RoundError::Qbo(e.into())
    }
}

impl From<DbError> for RoundError {
    fn from(e: DbError) -> Self {
        RoundError::Qbo(QboError::Db(e))
    }
}

impl Fetcher {
    pub(crate) fn new(
        pool: Pool,
        access: QboAccess,
        directory: WorkspaceDirectory,
        kafka: KafkaConfig,
        relay: RelayHandle,
        config: WebhooksConfig,
    ) -> Self {
        Self {
            pool,
            access,
            directory,
            kafka,
            relay,
            config,
            holder: format!("qbo-fetch-{}", ulid::Ulid::new()),
        }
    }

    /// The task: a round every coalescing window until shutdown.
    pub(crate) async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.config.coalesce_window) => {}
            }
            match self.due_realms().await {
                Ok(realms) => {
                    for realm in realms {
                        self.serve(&realm).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "pending QBO changes not read; next round"),
            }
        }
    }

    /// Connected realms whose oldest due change has waited a full window. A realm without a
    /// working connection is not served at all (its rows wait, untouched, for `ConnectQbo`),
    /// so an expired grant costs no request and no row update per round.
    async fn due_realms(&self) -> Result<Vec<String>, DbError> {
        let mut conn = self.pool.get().await?;
        let window = diesel::pg::data_types::PgInterval::from_microseconds(
            i64::try_from(self.config.coalesce_window.as_micros()).unwrap_or(i64::MAX),
        );
        let rows: Vec<DueRealm> = diesel::sql_query(
            "SELECT p.realm_id FROM qbo_pending_changes p \
             JOIN qbo_credentials c ON c.realm_id = p.realm_id AND c.status = 'CONNECTED' \
             WHERE p.not_before <= now() \
             GROUP BY p.realm_id HAVING min(p.received_at) <= now() - $1 \
             ORDER BY min(p.received_at)",
        )
        .bind::<Interval, _>(window)
        .load(&mut conn)
        .await?;
        Ok(rows.into_iter().map(|r| r.realm_id).collect())
    }

    /// One round for `realm`; failures are recorded on the rows, never returned.
    pub(crate) async fn serve(&self, realm: &str) {
        let name = format!("qbo-fetch:{realm}");
        let held = match lease::acquire(&self.pool, &name, &self.holder, LEASE_TTL).await {
            Ok(Some(held)) => held,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(realm, error = %e, "fetch lease not taken");
                return;
            }
        };
        let renewer = lease::keep_renewed(self.pool.clone(), held.clone(), LEASE_TTL);
        let rows = self.due_rows(realm).await;
        let outcome = match rows {
            Ok(rows) if rows.is_empty() => Ok(()),
            Ok(rows) => match self.round(realm, &rows, &held).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    self.defer(&rows).await;
                    Err(e)
                }
            },
            Err(e) => Err(RoundError::Qbo(QboError::Db(e))),
        };
        renewer.abort();
        if let Err(e) = lease::release(&self.pool, &held).await {
            tracing::warn!(realm, error = %e, "fetch lease not released; it expires");
        }
        match outcome {
            Ok(()) => {}
            Err(RoundError::LeaseLost) => {
                tracing::warn!(
                    realm,
                    "fetch round lost its lease; another replica serves it"
                )
            }
            Err(RoundError::Qbo(e)) => {
                metrics::counter!("qbo_sync_fetch_failures_total").increment(1);
                tracing::warn!(realm, error = %e, "QBO changes not fetched; retried later");
            }
        }
    }

    async fn due_rows(&self, realm: &str) -> Result<Vec<PendingRow>, DbError> {
        let mut conn = self.pool.get().await?;
        Ok(pending::table
            .filter(pending::realm_id.eq(realm))
            .filter(pending::not_before.le(diesel::dsl::now))
            .order(pending::id)
            .limit(MAX_CHANGES_PER_ROUND)
            .select((
                pending::id,
                pending::realm_id,
                pending::workspace_id,
                pending::qbo_entity,
                pending::entity_id,
                pending::operation,
                pending::deleted_id,
                pending::last_updated,
                pending::received_at,
                pending::attempts,
            ))
            .load(&mut conn)
            .await?)
    }

    /// Pushes failed rows back: `not_before` = now + initial × 2^attempts, capped.
    async fn defer(&self, rows: &[PendingRow]) {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(0);
        let delay = retry_delay(attempts, self.config.retry_initial, self.config.retry_max);
        let delay = diesel::pg::data_types::PgInterval::from_microseconds(
            i64::try_from(delay.as_micros()).unwrap_or(i64::MAX),
        );
        let deferred = async {
            let mut conn = self.pool.get().await?;
            diesel::sql_query(
                "UPDATE qbo_pending_changes SET attempts = attempts + 1, not_before = now() + $2 \
                 WHERE id = ANY($1)",
            )
            .bind::<Array<BigInt>, _>(&ids)
            .bind::<Interval, _>(delay)
            .execute(&mut conn)
            .await
            .map_err(DbError::from)
        };
        if let Err(e) = deferred.await {
            tracing::warn!(error = %e, "failed QBO changes not deferred; retried next round");
        }
    }

    async fn round(
        &self,
        realm: &str,
        rows: &[PendingRow],
        held: &Lease,
    ) -> Result<(), RoundError> {
        let changes: Vec<EntityChange> = rows
            .iter()
            .map(|r| EntityChange {
                realm_id: r.realm_id.clone(),
                entity: r.qbo_entity.clone(),
                entity_id: r.entity_id.clone(),
                operation: Operation::from_legacy(&r.operation),
                deleted_id: r.deleted_id.clone(),
                last_updated: r.last_updated,
            })
            .collect();
        let plan = rules::coalesce(&changes, &ChunkLimits::default())
            .into_iter()
            .find(|p| p.realm_id == realm)
            .unwrap_or_else(|| FetchPlan {
                realm_id: realm.to_owned(),
                entities: BTreeMap::new(),
                ignored: 0,
                ignored_by_entity: BTreeMap::new(),
            });
        if plan.ignored > 0 {
            metrics::counter!("qbo_sync_changes_ignored_total", "reason" => "entity_not_synced")
                .increment(plan.ignored);
        }
        // Read everything first: no HTTP inside the transaction.
        let mut fetched: BTreeMap<SyncEntity, Vec<Value>> = BTreeMap::new();
        if plan.fetch_statements() > 0 {
            let client = self.access.client(realm).await.map_err(RoundError::Qbo)?;
            for (entity, entity_plan) in &plan.entities {
                let objects = fetched.entry(*entity).or_default();
                for ids in &entity_plan.fetch {
                    let query = Query::select(entity.as_str())
                        .active(Active::Both)
                        .where_in("Id", ids.iter().map(String::as_str));
                    let rows = client
                        .query_all(&query)
                        .await
                        .map_err(|e| RoundError::Qbo(self.access.failure(realm, e)))?;
                    metrics::counter!("qbo_sync_fetch_requests_total").increment(1);
                    objects.extend(rows);
                }
            }
        }
        let mut workspaces = Vec::new();
        let mut ids: Vec<i64> = rows.iter().map(|r| r.workspace_id).collect();
        ids.sort_unstable();
        ids.dedup();
        for workspace_id in ids {
            match self.directory.lookup(workspace_id).await {
                Lookup::Found(w) if !w.deleted && w.qbo_realm_id.as_deref() == Some(realm) => {
                    workspaces.push(settings::of(&w));
                }
                Lookup::Found(_) | Lookup::Unknown => {
                    metrics::counter!("qbo_sync_changes_ignored_total", "reason" => "workspace_gone")
                        .increment(1);
                }
                Lookup::Unavailable(reason) => {
                    return Err(RoundError::Qbo(QboError::Unavailable(reason)));
                }
            }
        }
        let served: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let oldest = rows.iter().map(|r| r.received_at).min();
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let published = conn
            .transaction::<usize, RoundError, _>(async |conn| {
                if !lease::is_live(conn, held).await? {
                    return Err(RoundError::LeaseLost);
                }
                let mut published = 0;
                for workspace in &workspaces {
                    crate::realm::ensure(conn, &self.kafka, workspace.workspace_id, realm).await?;
                    let mut changes = Vec::new();
                    for (entity, entity_plan) in &plan.entities {
                        let objects = fetched.get(entity).map_or(&[][..], Vec::as_slice);
                        let applied = apply::apply_entities(
                            conn,
                            workspace.workspace_id,
                            &workspace.rules,
                            *entity,
                            objects,
                            &NoTaxRates,
                        )
                        .await?;
                        changes.extend(applied.changes);
                        // Asked for but not returned: hard-deleted in QBO.
                        let returned: Vec<String> = objects.iter().filter_map(object_id).collect();
                        let vanished: Vec<String> = entity_plan
                            .fetch_ids()
                            .filter(|id| !returned.iter().any(|r| r == id))
                            .map(str::to_owned)
                            .collect();
                        changes.extend(
                            apply::deactivate_ids(conn, workspace.workspace_id, *entity, &vanished)
                                .await?,
                        );
                        let (ids, as_of): (Vec<String>, Vec<Option<DateTime<Utc>>>) = entity_plan
                            .deactivate
                            .iter()
                            .map(|d| (d.id.clone(), d.as_of))
                            .unzip();
                        if !ids.is_empty() {
                            let written = store::deactivate(
                                conn,
                                workspace.workspace_id,
                                entity.as_str(),
                                Deactivation::IdsAsOf {
                                    ids: &ids,
                                    as_of: &as_of,
                                },
                            )
                            .await?;
                            changes.extend(written.iter().filter_map(apply::change_event));
                        }
                        for merge in &entity_plan.merges {
                            diesel::insert_into(merges::table)
                                .values((
                                    merges::workspace_id.eq(workspace.workspace_id),
                                    merges::qbo_entity.eq(entity.as_str()),
                                    merges::merged_id.eq(&merge.merged_away_id),
                                    merges::surviving_id.eq(&merge.surviving_id),
                                ))
                                .on_conflict((
                                    merges::workspace_id,
                                    merges::qbo_entity,
                                    merges::merged_id,
                                ))
                                .do_update()
                                .set(merges::surviving_id.eq(&merge.surviving_id))
                                .execute(conn)
                                .await?;
                        }
                    }
                    published += apply::publish(
                        conn,
                        &self.kafka,
                        workspace.workspace_id,
                        "webhook",
                        changes,
                    )
                    .await?;
                }
                diesel::delete(pending::table.filter(pending::id.eq_any(&served)))
                    .execute(conn)
                    .await?;
                Ok(published)
            })
            .await?;
        if published > 0 {
            self.relay.wake();
        }
        metrics::counter!("qbo_sync_changes_served_total").increment(served.len() as u64);
        if let Some(oldest) = oldest {
            let waited = (Utc::now() - oldest).to_std().unwrap_or_default();
            metrics::histogram!("qbo_sync_change_apply_seconds").record(waited.as_secs_f64());
        }
        Ok(())
    }
}

/// The wait before retry number `attempts + 1` of a failed round (pure): `initial × 2^attempts`,
/// at most `max`.
pub fn retry_delay(attempts: i32, initial: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(u32::try_from(attempts.clamp(0, 31)).unwrap_or(31));
    initial.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(retry_delay(0, s(1), s(300)), s(1));
        assert_eq!(retry_delay(3, s(1), s(300)), s(8));
        assert_eq!(retry_delay(9, s(1), s(300)), s(300));
        assert_eq!(retry_delay(1_000, s(1), s(300)), s(300));
        assert_eq!(retry_delay(-4, s(1), s(300)), s(1));
    }
}
