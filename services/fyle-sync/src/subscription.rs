//! The workspace's Fyle webhook subscription (reference §1.4.10, §2.1).
//!
//! `ConnectFyle`, once the credentials are stored, registers one admin subscription per
//! workspace: it asks ingest's gRPC `GetWebhookEndpoint` for the workspace's URL (token
//! included, in `url_token` mode) and posts `{is_enabled, webhook_url, subscribed_resources}`
//! to Fyle's `/admin/subscriptions` with every resource the incumbent subscribes plus
//! `DEPENDENT_FIELD` ([`SUBSCRIBED_RESOURCES`]; migration `2026-12-12-000006` sent the
//! subscriptions registered before that back through the retry, which adds it).
//!
//! **Idempotent.** The org's subscriptions are listed first, and one whose URL *path* is this
//! workspace's (`…/workspaces/{id}/fyle/exports/`, whatever the host or token) is the
//! workspace's: identical → nothing is written; different (a rotated token, a new public host,
//! disabled, resources missing) → updated in place by its id; none → created. So reconnecting
//! never adds a second subscription, and any extra ones (an earlier crash between create and
//! record) are disabled, so Fyle delivers each change once. One attempt at a time per
//! workspace across replicas (lease `fyle-subscription:<workspace>`).
//!
//! Failure policy: **the connection is kept, the subscription retried**. When ingest or Fyle
//! cannot be reached (or refuses), the row in `fyle_subscriptions` is `PENDING` with the error
//! (never the URL: it carries ingest's secret token, which is neither stored here nor logged),
//! `ConnectFyle` still succeeds and says `PENDING`, and the scheduler
//! ([`crate::schedule`]) retries every `subscriptions.retry_interval` while the connection is
//! `CONNECTED`. Meanwhile no webhook arrives, so the workspace's reconciles find every change
//! and its webhook health turns DEGRADED: polling covers the gap.

use std::time::Duration;

use attrsync_db::{DbError, Pool, lease};
use attrsync_fyle_client::{Filters, FyleClient};
use attrsync_proto::v1::{GetWebhookEndpointRequest, ingest_service_client::IngestServiceClient};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

use crate::{
    connection::{FyleAccess, FyleError},
    schema::{fyle_connections as fc, fyle_subscriptions as fs},
};

/// Stored statuses.
pub(crate) const REGISTERED: &str = "REGISTERED";
pub(crate) const PENDING: &str = "PENDING";

/// What the subscription lists: every resource the incumbent subscribes (reference §2.1),
/// plus DEPENDENT_FIELD (the incumbent's QBO app leaves dependent values to no one; here they
/// are attributes kept fresh like the others); ingest routes each one.
pub const SUBSCRIBED_RESOURCES: [&str; 11] = [
    "EXPENSE",
    "REPORT",
    "CATEGORY",
    "PROJECT",
    "COST_CENTER",
    "EXPENSE_FIELD",
    "CORPORATE_CARD",
    "EMPLOYEE",
    "TAX_GROUP",
    "ORG_SETTING",
    "DEPENDENT_FIELD",
];

type Interceptor = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;
type IngestClient = IngestServiceClient<InterceptedService<Channel, Interceptor>>;

/// An ingest client that connects lazily (fyle-sync starts while ingest is down) and gives up
/// on a call after a few seconds.
fn ingest_client(endpoint: &str) -> anyhow::Result<IngestClient> {
    let channel = Channel::from_shared(endpoint.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    Ok(IngestServiceClient::with_interceptor(
        channel,
        attrsync_telemetry::grpc::inject_interceptor as Interceptor,
    ))
}

/// The path every URL of workspace `id` has, without its trailing slash.
fn workspace_path(workspace_id: i64) -> String {
    format!("/workspaces/{workspace_id}/fyle/exports")
}

/// Whether a Fyle subscription's `webhook_url` is workspace `workspace_id`'s (pure).
pub fn is_workspace_url(webhook_url: &str, workspace_id: i64) -> bool {
    url::Url::parse(webhook_url)
        .is_ok_and(|u| u.path().trim_end_matches('/') == workspace_path(workspace_id))
}

/// What to do with the org's subscriptions (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Ours is there as wanted.
    Keep { id: String },
    /// Ours is there but differs: rewrite it by id.
    Update { id: String },
    /// None is ours: create one.
    Create,
}

/// Decides from the org's subscriptions (rows of `/admin/subscriptions`) what registering
/// `url` for the workspace takes, and which extra subscriptions of the workspace to disable.
pub fn plan(existing: &[Value], workspace_id: i64, url: &str) -> (Plan, Vec<String>) {
    let mut ours: Vec<(&Value, String)> = existing
        .iter()
        .filter(|s| {
            s.get("webhook_url")
                .and_then(Value::as_str)
                .is_some_and(|u| is_workspace_url(u, workspace_id))
        })
        .filter_map(|s| row_id(s).map(|id| (s, id)))
        .collect();
    // The one kept: an enabled one first, then the oldest (numeric ids sort numerically).
    ours.sort_by_key(|(s, id)| {
        (
            s.get("is_enabled") != Some(&Value::Bool(true)),
            id.parse::<i64>().unwrap_or(i64::MAX),
            id.clone(),
        )
    });
    let mut ours = ours.into_iter();
    let Some((kept, id)) = ours.next() else {
        return (Plan::Create, Vec::new());
    };
    let extras: Vec<String> = ours
        .filter(|(s, _)| s.get("is_enabled") == Some(&Value::Bool(true)))
        .map(|(_, id)| id)
        .collect();
    let listed: Vec<&str> = kept
        .get("subscribed_resources")
        .and_then(Value::as_array)
        .map(|rs| rs.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let as_wanted = kept.get("webhook_url").and_then(Value::as_str) == Some(url)
        && kept.get("is_enabled") == Some(&Value::Bool(true))
        && SUBSCRIBED_RESOURCES.iter().all(|r| listed.contains(r));
    let plan = if as_wanted {
        Plan::Keep { id }
    } else {
        Plan::Update { id }
    };
    (plan, extras)
}

fn row_id(row: &Value) -> Option<String> {
    match row.get("id") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// Fyle's id as the API takes it back (integer ids stay integers).
fn id_value(id: &str) -> Value {
    id.parse::<i64>().map_or_else(|_| json!(id), |n| json!(n))
}

/// A workspace's stored subscription.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = fs)]
pub(crate) struct Stored {
    pub(crate) status: String,
    pub(crate) subscription_id: Option<String>,
    pub(crate) attempts: i32,
    pub(crate) last_error: Option<String>,
    pub(crate) registered_at: Option<DateTime<Utc>>,
    pub(crate) next_attempt_at: DateTime<Utc>,
}

/// Registers subscriptions. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Subscriptions {
    pool: Pool,
    fyle: FyleAccess,
    ingest: IngestClient,
    retry_interval: Duration,
    lease_ttl: Duration,
    holder: String,
}

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions")
            .field("retry_interval", &self.retry_interval)
            .finish_non_exhaustive()
    }
}

/// Why an attempt failed; stored and logged (never carries the URL or a token).
#[derive(Debug)]
struct Failed(String);

impl Subscriptions {
    pub(crate) fn new(
        fyle: FyleAccess,
        ingest_endpoint: &str,
        retry_interval: Duration,
        lease_ttl: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pool: fyle.pool.clone(),
            fyle,
            ingest: ingest_client(ingest_endpoint)?,
            retry_interval,
            lease_ttl,
            holder: format!("fyle-sync-{}", ulid::Ulid::new()),
        })
    }

    /// The stored subscription of a workspace, if any attempt was made.
    pub(crate) async fn stored(&self, workspace_id: i64) -> Result<Option<Stored>, DbError> {
        let mut conn = self.pool.get().await?;
        Ok(fs::table
            .find(workspace_id)
            .select(Stored::as_select())
            .first(&mut conn)
            .await
            .optional()?)
    }

    /// Registers (or confirms) the workspace's subscription and records the outcome; returns
    /// the status stored (`REGISTERED` or `PENDING`). Only the database failing is an error.
    pub(crate) async fn register(&self, workspace_id: i64) -> Result<&'static str, DbError> {
        let name = format!("fyle-subscription:{workspace_id}");
        let Some(held) = lease::acquire(&self.pool, &name, &self.holder, self.lease_ttl).await?
        else {
            // Another replica is registering it right now; it records the outcome.
            tracing::info!(workspace_id, "subscription registration running elsewhere");
            return Ok(PENDING);
        };
        let outcome = self.attempt(workspace_id).await;
        let recorded = self.record(workspace_id, &outcome).await;
        if let Err(e) = lease::release(&self.pool, &held).await {
            tracing::warn!(error = %e, lease = %held.name, "could not release a subscription lease; it expires");
        }
        recorded?;
        Ok(match outcome {
            Ok(_) => REGISTERED,
            Err(_) => PENDING,
        })
    }

    /// Retries every `PENDING` subscription that is due, of workspaces still connected.
    pub(crate) async fn retry_due(&self) -> Result<(), DbError> {
        let due: Vec<i64> = {
            let mut conn = self.pool.get().await?;
            fs::table
                .inner_join(fc::table.on(fc::workspace_id.eq(fs::workspace_id)))
                .filter(fs::status.eq(PENDING))
                .filter(fs::next_attempt_at.le(diesel::dsl::now))
                .filter(fc::status.eq(crate::connection::CONNECTED))
                .select(fs::workspace_id)
                .order(fs::next_attempt_at)
                .limit(100)
                .load(&mut conn)
                .await?
        };
        for workspace_id in due {
            let status = self.register(workspace_id).await?;
            tracing::info!(workspace_id, status, "pending Fyle subscription retried");
        }
        Ok(())
    }

    async fn attempt(&self, workspace_id: i64) -> Result<String, Failed> {
        let url = self
            .ingest
            .clone()
            .get_webhook_endpoint(GetWebhookEndpointRequest { workspace_id })
            .await
            .map_err(|s| Failed(format!("ingest GetWebhookEndpoint: {:?}", s.code())))?
            .into_inner()
            .url;
        if !is_workspace_url(&url, workspace_id) {
            return Err(Failed(
                "ingest answered a URL that is not the workspace's".into(),
            ));
        }
        let client = self.fyle.client(workspace_id).await.map_err(fyle_failed)?;
        self.put(&client, workspace_id, &url).await
    }

    async fn put(
        &self,
        client: &FyleClient,
        workspace_id: i64,
        url: &str,
    ) -> Result<String, Failed> {
        let listing = match client.list_all("subscriptions", &Filters::new()).await {
            Ok(l) => l,
            Err(e) => return Err(fyle_failed(self.fyle.failed(workspace_id, &e).await)),
        };
        let (plan, extras) = plan(&listing.rows, workspace_id, url);
        let data = |id: Option<&str>| {
            let mut data = json!({
                "is_enabled": true,
                "webhook_url": url,
                "subscribed_resources": SUBSCRIBED_RESOURCES,
            });
            if let Some(id) = id {
                data["id"] = id_value(id);
            }
            data
        };
        let id = match plan {
            Plan::Keep { id } => id,
            Plan::Update { id } => {
                self.post(client, workspace_id, data(Some(&id))).await?;
                tracing::info!(workspace_id, subscription_id = %id, "Fyle subscription updated");
                id
            }
            Plan::Create => {
                let created = self.post(client, workspace_id, data(None)).await?;
                let id = row_id(&created)
                    .ok_or_else(|| Failed("Fyle answered a subscription without id".into()))?;
                tracing::info!(workspace_id, subscription_id = %id, "Fyle subscription created");
                id
            }
        };
        for extra in extras {
            let off = json!({"id": id_value(&extra), "is_enabled": false});
            self.post(client, workspace_id, off).await?;
            tracing::warn!(workspace_id, subscription_id = %extra, "a duplicate Fyle subscription of the workspace was disabled");
        }
        Ok(id)
    }

    async fn post(
        &self,
        client: &FyleClient,
        workspace_id: i64,
        data: Value,
    ) -> Result<Value, Failed> {
        match client.post("subscriptions", data).await {
            Ok(v) => Ok(v),
            Err(e) => Err(fyle_failed(self.fyle.failed(workspace_id, &e).await)),
        }
    }

    async fn record(
        &self,
        workspace_id: i64,
        outcome: &Result<String, Failed>,
    ) -> Result<(), DbError> {
        let mut conn = self.pool.get().await?;
        match outcome {
            Ok(id) => {
                diesel::insert_into(fs::table)
                    .values((
                        fs::workspace_id.eq(workspace_id),
                        fs::status.eq(REGISTERED),
                        fs::subscription_id.eq(id),
                        fs::attempts.eq(1),
                        fs::registered_at.eq(diesel::dsl::now),
                    ))
                    .on_conflict(fs::workspace_id)
                    .do_update()
                    .set((
                        fs::status.eq(REGISTERED),
                        fs::subscription_id.eq(id),
                        fs::attempts.eq(fs::attempts + 1),
                        fs::last_error.eq(None::<String>),
                        fs::registered_at.eq(diesel::dsl::now),
                        fs::updated_at.eq(diesel::dsl::now),
                    ))
                    .execute(&mut conn)
                    .await?;
            }
            Err(Failed(reason)) => {
                metrics::counter!("fyle_sync_subscription_failures_total").increment(1);
                tracing::warn!(workspace_id, reason, retry_in = ?self.retry_interval, "Fyle webhook subscription not registered; PENDING");
                let next = Utc::now()
                    + chrono::Duration::from_std(self.retry_interval)
                        .unwrap_or_else(|_| chrono::Duration::minutes(1));
                diesel::insert_into(fs::table)
                    .values((
                        fs::workspace_id.eq(workspace_id),
                        fs::status.eq(PENDING),
                        fs::attempts.eq(1),
                        fs::last_error.eq(reason),
                        fs::next_attempt_at.eq(next),
                    ))
                    .on_conflict(fs::workspace_id)
                    .do_update()
                    .set((
                        fs::status.eq(PENDING),
                        fs::attempts.eq(fs::attempts + 1),
                        fs::last_error.eq(reason),
                        fs::next_attempt_at.eq(next),
                        fs::updated_at.eq(diesel::dsl::now),
                    ))
                    .execute(&mut conn)
                    .await?;
            }
        }
        Ok(())
    }
}

fn fyle_failed(e: FyleError) -> Failed {
    Failed(format!("Fyle: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://hooks.example.com/workspaces/7/fyle/exports/?token=new";

    fn sub(id: i64, url: &str, enabled: bool, resources: &[&str]) -> Value {
        json!({"id": id, "webhook_url": url, "is_enabled": enabled, "subscribed_resources": resources})
    }

    #[test]
    fn urls_are_the_workspaces_by_path_whatever_the_host_or_token() {
        assert!(is_workspace_url(URL, 7));
        assert!(is_workspace_url(
            "http://old.host/workspaces/7/fyle/exports",
            7
        ));
        assert!(!is_workspace_url(URL, 70));
        assert!(!is_workspace_url(
            "http://h/api/workspaces/7/fyle/exports/",
            7
        ));
        assert!(!is_workspace_url("not a url", 7));
    }

    #[test]
    fn an_identical_subscription_is_kept_and_nothing_is_written() {
        let existing = vec![
            sub(
                1,
                "https://other/workspaces/8/fyle/exports/",
                true,
                &["CATEGORY"],
            ),
            sub(2, URL, true, &SUBSCRIBED_RESOURCES),
        ];
        assert_eq!(
            plan(&existing, 7, URL),
            (Plan::Keep { id: "2".into() }, vec![])
        );
    }

    #[test]
    fn a_rotated_token_or_missing_resource_updates_the_subscription_in_place() {
        let old = "https://hooks.example.com/workspaces/7/fyle/exports/?token=old";
        let existing = vec![sub(5, old, true, &SUBSCRIBED_RESOURCES)];
        assert_eq!(plan(&existing, 7, URL).0, Plan::Update { id: "5".into() });
        let existing = vec![sub(5, URL, true, &["CATEGORY"])];
        assert_eq!(plan(&existing, 7, URL).0, Plan::Update { id: "5".into() });
        let existing = vec![sub(5, URL, false, &SUBSCRIBED_RESOURCES)];
        assert_eq!(plan(&existing, 7, URL).0, Plan::Update { id: "5".into() });
    }

    #[test]
    fn without_one_of_the_workspace_a_subscription_is_created() {
        let existing = vec![sub(1, "https://h/workspaces/8/fyle/exports/", true, &[])];
        assert_eq!(plan(&existing, 7, URL), (Plan::Create, vec![]));
        assert_eq!(plan(&[], 7, URL), (Plan::Create, vec![]));
    }

    #[test]
    fn duplicates_keep_the_oldest_enabled_one_and_disable_the_rest() {
        let existing = vec![
            sub(9, URL, true, &SUBSCRIBED_RESOURCES),
            sub(3, URL, false, &SUBSCRIBED_RESOURCES),
            sub(4, URL, true, &SUBSCRIBED_RESOURCES),
        ];
        assert_eq!(
            plan(&existing, 7, URL),
            (Plan::Keep { id: "4".into() }, vec!["9".into()]),
            "the disabled one stays disabled"
        );
    }
}
