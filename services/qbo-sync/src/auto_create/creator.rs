//! Serving `qbo_pending_creates`: the QBO calls ([`ensure`], outside transactions), the one
//! transaction that stores the result ([`record`]), and the task that runs them per realm
//! ([`Creator`]). See the [module docs](super) for the design and the failure policy.

use std::time::Duration;

use attrsync_config::KafkaConfig;
use attrsync_db::{
    DbError, Pool,
    lease::{self, Lease},
    outbox,
};
use attrsync_kafka::{
    envelope,
    relay::RelayHandle,
    topics::{self, TopicPayload as _},
    workspaces::{Lookup, WorkspaceDirectory},
};
use attrsync_proto::v1::FyleAttributeAutoCreated;
use attrsync_qbo_client::{Active, Error as ClientError, Query};
use diesel::{
    QueryableByName,
    prelude::*,
    sql_types::{BigInt, Interval, Text},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{CreateRequest, Found, create_body, is_active, pick, request_id, target};
use crate::{
    apply::{self, PRODUCER},
    config::WebhooksConfig,
    connection::{QboAccess, QboError},
    fetch::retry_delay,
    rules::{NoTaxRates, SyncEntity},
    schema::destination_attributes as da,
    settings::{self, QboWorkspace},
};

/// Pending creates one round serves at most per realm (the rest wait for the next round).
const MAX_PER_ROUND: i64 = 100;

/// How long a replica's lease on a realm's creates lasts without renewal.
const LEASE_TTL: Duration = Duration::from_secs(30);

/// What [`ensure`] found or made.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// qbo-sync created this entity.
    Created(Value),
    /// An active entity of that name existed: linked, not duplicated.
    Linked(Value),
    /// The name cannot be had (an inactive entity or another list holds it): the reason.
    Conflict(String),
}

/// Finds the active `request.entity` named `request.display_name` in `realm`, or creates it
/// (see the [module docs](super) for duplicates). Calls QBO; never call it inside a
/// transaction.
pub(crate) async fn ensure(
    access: &QboAccess,
    realm: &str,
    workspace_id: i64,
    request: &CreateRequest,
) -> Result<Outcome, QboError> {
    let client = access.client(realm).await?;
    let entity = request.entity.as_str();
    let lookup = Query::select(entity)
        .active(Active::Both)
        .where_eq("DisplayName", request.display_name.as_str());
    let found = client
        .query_all(&lookup)
        .await
        .map_err(|e| access.failure(realm, e))?;
    match pick(&request.display_name, &found) {
        Found::Active(existing) => return Ok(Outcome::Linked(existing)),
        Found::Inactive(id) => return Ok(inactive(entity, &id)),
        Found::Nothing => {}
    }
    let id = request_id(workspace_id, request.entity, &request.display_name);
    match client.create(entity, create_body(request), Some(&id)).await {
        Ok(created) if is_active(&created) => Ok(Outcome::Created(created)),
        Ok(created) => Ok(inactive(
            entity,
            &apply::object_id(&created).unwrap_or_default(),
        )),
        Err(ClientError::DuplicateName(_)) => {
            let again = client
                .query_all(&lookup)
                .await
                .map_err(|e| access.failure(realm, e))?;
            Ok(match pick(&request.display_name, &again) {
                Found::Active(existing) => Outcome::Linked(existing),
                Found::Inactive(id) => inactive(entity, &id),
                Found::Nothing => Outcome::Conflict(format!(
                    "the name {:?} is used by another customer, vendor or employee in QBO",
                    request.display_name
                )),
            })
        }
        Err(e) => Err(access.failure(realm, e)),
    }
}

fn inactive(entity: &str, id: &str) -> Outcome {
    Outcome::Conflict(format!(
        "an inactive QBO {entity} ({id}) has this name; reactivate or rename it in QBO"
    ))
}

/// The Fyle attribute behind a create, for mapping's event.
#[derive(Debug, Clone)]
pub(crate) struct FyleSource {
    pub(crate) attribute_type: String,
    pub(crate) source_id: String,
    pub(crate) value: String,
}

/// Stores `object` (a QBO entity of `entity` that [`ensure`] created or linked) for `workspace`,
/// inside the caller's transaction: applied like any synced entity, marked `auto_created` when
/// `created`, its change event and — with a `source` — the event for mapping enqueued. Returns
/// the stored row's id, or `None` when the entity derives no attribute. Idempotent.
pub(crate) async fn record(
    conn: &mut AsyncPgConnection,
    kafka: &KafkaConfig,
    workspace: &QboWorkspace,
    entity: SyncEntity,
    object: &Value,
    created: bool,
    source: Option<&FyleSource>,
) -> QueryResult<Option<i64>> {
    let Some(destination_id) = apply::object_id(object) else {
        return Ok(None);
    };
    let applied = apply::apply_entities(
        conn,
        workspace.workspace_id,
        &workspace.rules,
        entity,
        std::slice::from_ref(object),
        &NoTaxRates,
    )
    .await?;
    let row = da::table
        .filter(da::workspace_id.eq(workspace.workspace_id))
        .filter(da::qbo_entity.eq(entity.as_str()))
        .filter(da::destination_id.eq(&destination_id))
        .filter(da::attribute_type.eq(super::destination_type(entity)))
        .select((da::id, da::value))
        .first::<(i64, String)>(conn)
        .await
        .optional()?;
    let Some((row_id, value)) = row else {
        return Ok(None);
    };
    if created {
        diesel::update(da::table.find(row_id))
            .set(da::auto_created.eq(true))
            .execute(conn)
            .await?;
    }
    apply::publish(
        conn,
        kafka,
        workspace.workspace_id,
        "auto_create",
        applied.changes,
    )
    .await?;
    if let Some(source) = source {
        let payload = FyleAttributeAutoCreated {
            source_attribute_type: source.attribute_type.clone(),
            source_id: source.source_id.clone(),
            source_value: source.value.clone(),
            destination_attribute_type: super::destination_type(entity).to_owned(),
            destination_id,
            destination_value: value,
            created,
        };
        let envelope = envelope::new(
            workspace.workspace_id,
            PRODUCER,
            attrsync_proto::time::now(),
            payload.into_payload(),
        );
        let row = envelope::outbox_row(
            kafka.topic(topics::FYLE_ATTRIBUTE_AUTO_CREATED.name()),
            &envelope,
        );
        outbox::enqueue(conn, &[row]).await?;
    }
    Ok(Some(row_id))
}

#[derive(Debug, Clone, Queryable)]
struct PendingCreate {
    id: i64,
    workspace_id: i64,
    qbo_entity: String,
    display_name: String,
    email: Option<String>,
    source_attribute_type: String,
    source_id: String,
    source_value: String,
    attempts: i32,
}

diesel::table! {
    qbo_pending_creates (id) {
        id -> BigInt,
        workspace_id -> BigInt,
        realm_id -> Text,
        qbo_entity -> Text,
        display_name -> Text,
        email -> Nullable<Text>,
        source_attribute_type -> Text,
        source_id -> Text,
        source_value -> Text,
        request_id -> Text,
        status -> Text,
        attempts -> Integer,
        last_error -> Nullable<Text>,
        not_before -> Timestamptz,
        received_at -> Timestamptz,
    }
}

use self::qbo_pending_creates as pending;

#[derive(QueryableByName)]
struct DueRealm {
    #[diesel(sql_type = Text)]
    realm_id: String,
}

/// Why a row was not served.
enum Miss {
    /// Try again later (QBO, the database, mapping): the round for the realm stops.
    Later(String),
    /// A repeat cannot succeed: the row fails with this reason.
    Never(String),
    /// The workspace is gone, moved, or no longer asks for it: the row is dropped.
    Drop(&'static str),
    LeaseLost,
}

impl From<QboError> for Miss {
    fn from(e: QboError) -> Self {
        match e {
            QboError::Rejected(reason) | QboError::InvalidArgument(reason) => Miss::Never(reason),
            other => Miss::Later(other.to_string()),
        }
    }
}

impl From<diesel::result::Error> for Miss {
    fn from(e: diesel::result::Error) -> Self {
        Miss::Later(format!("database: {e}"))
    }
}

impl From<DbError> for Miss {
    fn from(e: DbError) -> Self {
        Miss::Later(format!("database: {e}"))
    }
}

/// The `qbo-auto-create` task and `CreateEntity`'s storage. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Creator {
    pool: Pool,
    access: QboAccess,
    directory: WorkspaceDirectory,
    kafka: KafkaConfig,
    relay: RelayHandle,
    config: WebhooksConfig,
    holder: String,
}

impl std::fmt::Debug for Creator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Creator")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

impl Creator {
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
            holder: format!("qbo-auto-create-{}", ulid::Ulid::new()),
        }
    }

    /// `CreateEntity`: finds or creates `request` for `workspace` now, stores it, and returns
    /// the stored row's id.
    pub(crate) async fn create_now(
        &self,
        workspace: &QboWorkspace,
        request: &CreateRequest,
    ) -> Result<Result<i64, String>, QboError> {
        let realm = workspace
            .realm_id
            .as_deref()
            .ok_or(QboError::NoRealm(workspace.workspace_id))?;
        let (object, created) =
            match ensure(&self.access, realm, workspace.workspace_id, request).await? {
                Outcome::Created(object) => (object, true),
                Outcome::Linked(object) => (object, false),
                Outcome::Conflict(reason) => return Ok(Err(reason)),
            };
        count(if created { "created" } else { "linked" });
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let stored = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                record(
                    conn,
                    &self.kafka,
                    workspace,
                    request.entity,
                    &object,
                    created,
                    None,
                )
                .await
            })
            .await?;
        self.relay.wake();
        Ok(stored.ok_or_else(|| "the QBO entity derives no destination attribute".to_owned()))
    }

    /// The task: a round every `webhooks.coalesce_window` until shutdown.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.config.coalesce_window) => {}
            }
            match self.due_realms().await {
                Ok(realms) => {
                    for realm in realms {
                        self.serve(&realm).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "pending QBO creates not read; next round"),
            }
        }
    }

    async fn due_realms(&self) -> Result<Vec<String>, DbError> {
        let mut conn = self.pool.get().await?;
        let rows: Vec<DueRealm> = diesel::sql_query(
            "SELECT realm_id FROM qbo_pending_creates \
             WHERE status = 'PENDING' AND not_before <= now() \
             GROUP BY realm_id ORDER BY min(id)",
        )
        .load(&mut conn)
        .await?;
        Ok(rows.into_iter().map(|r| r.realm_id).collect())
    }

    /// One round for `realm`, under its lease; failures are recorded on the rows.
    async fn serve(&self, realm: &str) {
        let name = format!("qbo-auto-create:{realm}");
        let held = match lease::acquire(&self.pool, &name, &self.holder, LEASE_TTL).await {
            Ok(Some(held)) => held,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(realm, error = %e, "auto-create lease not taken");
                return;
            }
        };
        let renewer = lease::keep_renewed(self.pool.clone(), held.clone(), LEASE_TTL);
        match self.due_rows(realm).await {
            Ok(rows) => {
                for (i, row) in rows.iter().enumerate() {
                    match self.serve_one(realm, row, &held).await {
                        Ok(()) => {}
                        Err(Miss::Never(reason)) => {
                            count("failed");
                            tracing::warn!(realm, row = row.id, %reason, "QBO entity not auto-created");
                            self.settle(row.id, Some(&reason)).await;
                        }
                        Err(Miss::Drop(why)) => {
                            count(why);
                            self.settle(row.id, None).await;
                        }
                        Err(Miss::Later(reason)) => {
                            metrics::counter!("qbo_sync_auto_create_failures_total").increment(1);
                            tracing::warn!(realm, %reason, "QBO entity not created yet; retried later");
                            // QBO or a dependency is down: the rest of the round waits too.
                            for row in &rows[i..] {
                                self.defer(row).await;
                            }
                            break;
                        }
                        Err(Miss::LeaseLost) => {
                            tracing::warn!(realm, "auto-create round lost its lease");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(realm, error = %e, "pending QBO creates not read"),
        }
        renewer.abort();
        if let Err(e) = lease::release(&self.pool, &held).await {
            tracing::warn!(realm, error = %e, "auto-create lease not released; it expires");
        }
    }

    async fn due_rows(&self, realm: &str) -> Result<Vec<PendingCreate>, DbError> {
        let mut conn = self.pool.get().await?;
        Ok(pending::table
            .filter(pending::realm_id.eq(realm))
            .filter(pending::status.eq("PENDING"))
            .filter(pending::not_before.le(diesel::dsl::now))
            .order(pending::id)
            .limit(MAX_PER_ROUND)
            .select((
                pending::id,
                pending::workspace_id,
                pending::qbo_entity,
                pending::display_name,
                pending::email,
                pending::source_attribute_type,
                pending::source_id,
                pending::source_value,
                pending::attempts,
            ))
            .load(&mut conn)
            .await?)
    }

    async fn serve_one(&self, realm: &str, row: &PendingCreate, held: &Lease) -> Result<(), Miss> {
        let workspace = match self.directory.lookup(row.workspace_id).await {
            Lookup::Found(w) if !w.deleted && w.qbo_realm_id.as_deref() == Some(realm) => {
                settings::of(&w)
            }
            Lookup::Found(_) | Lookup::Unknown => return Err(Miss::Drop("workspace_gone")),
            Lookup::Unavailable(reason) => return Err(Miss::Later(reason)),
        };
        let entity: SyncEntity = row
            .qbo_entity
            .parse()
            .map_err(|_| Miss::Never(format!("unknown entity {}", row.qbo_entity)))?;
        // The settings may have changed since the request was recorded.
        if target(&row.source_attribute_type, &workspace.auto_create) != Some(entity) {
            return Err(Miss::Drop("settings_off"));
        }
        let request = CreateRequest {
            entity,
            display_name: row.display_name.clone(),
            email: row.email.clone(),
            currency: None,
        };
        let (object, created) =
            match ensure(&self.access, realm, workspace.workspace_id, &request).await? {
                Outcome::Created(object) => (object, true),
                Outcome::Linked(object) => (object, false),
                Outcome::Conflict(reason) => return Err(Miss::Never(reason)),
            };
        let source = FyleSource {
            attribute_type: row.source_attribute_type.clone(),
            source_id: row.source_id.clone(),
            value: row.source_value.clone(),
        };
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let stored = conn
            .transaction::<_, Miss, _>(async |conn| {
                if !lease::is_live(conn, held).await? {
                    return Err(Miss::LeaseLost);
                }
                let stored = record(
                    conn,
                    &self.kafka,
                    &workspace,
                    entity,
                    &object,
                    created,
                    Some(&source),
                )
                .await?;
                if stored.is_some() {
                    diesel::delete(pending::table.find(row.id))
                        .execute(conn)
                        .await?;
                }
                Ok(stored)
            })
            .await?;
        if stored.is_none() {
            return Err(Miss::Never(
                "the QBO entity derives no destination attribute".into(),
            ));
        }
        self.relay.wake();
        count(if created { "created" } else { "linked" });
        Ok(())
    }

    /// Ends a row: failed for good with `reason`, or dropped (`None`).
    async fn settle(&self, id: i64, reason: Option<&str>) {
        let settled = async {
            let mut conn = self.pool.get().await?;
            match reason {
                Some(reason) => {
                    diesel::update(pending::table.find(id))
                        .set((
                            pending::status.eq("FAILED"),
                            pending::last_error.eq(reason),
                            pending::attempts.eq(pending::attempts + 1),
                        ))
                        .execute(&mut conn)
                        .await
                }
                None => {
                    diesel::delete(pending::table.find(id))
                        .execute(&mut conn)
                        .await
                }
            }
            .map_err(DbError::from)
        };
        if let Err(e) = settled.await {
            tracing::warn!(error = %e, "pending QBO create not settled; served again");
        }
    }

    /// Pushes a row back: `not_before` = now + initial × 2^attempts, capped.
    async fn defer(&self, row: &PendingCreate) {
        let delay = retry_delay(
            row.attempts,
            self.config.retry_initial,
            self.config.retry_max,
        );
        let delay = diesel::pg::data_types::PgInterval::from_microseconds(
            i64::try_from(delay.as_micros()).unwrap_or(i64::MAX),
        );
        let deferred = async {
            let mut conn = self.pool.get().await?;
            diesel::sql_query(
                "UPDATE qbo_pending_creates SET attempts = attempts + 1, not_before = now() + $2 \
                 WHERE id = $1",
            )
            .bind::<BigInt, _>(row.id)
            .bind::<Interval, _>(delay)
            .execute(&mut conn)
            .await
            .map_err(DbError::from)
        };
        if let Err(e) = deferred.await {
            tracing::warn!(error = %e, "pending QBO create not deferred; retried next round");
        }
    }
}

fn count(outcome: &'static str) {
    metrics::counter!("qbo_sync_auto_create_total", "outcome" => outcome).increment(1);
}
