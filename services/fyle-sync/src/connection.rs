//! A workspace's Fyle connection: `ConnectFyle`, the stored credentials, `GetAccessToken`, and
//! the broken state.
//!
//! `ConnectFyle(workspace, refresh_token)` proves the token with Fyle before storing anything:
//! a token refresh and cluster lookup on the accounts host, then `my_profile` on the data host
//! (through [`attrsync_fyle_client`], paced by the shared per-org limiter) to learn the org.
//! An org that is not the workspace's (from the workspace projection, else mapping) is refused
//! with `FAILED_PRECONDITION` and nothing is stored. Otherwise the refresh token is stored
//! sealed with AES-256-GCM under the active key (`[secrets]`, key id stored beside it), with the
//! org and cluster, status `CONNECTED`.
//!
//! Every change of the stored status — first connection, broken, reconnected — is announced
//! as a `ConnectionStatusChanged` on `sync.connections.v1` through the outbox, in the
//! transaction that stores it ([`attrsync_kafka::connection_status`]); a repeat of the same
//! status announces nothing.
//!
//! Failure policy: **closed**. When Fyle refuses the stored credentials (the token endpoint's
//! 401/404, or a data call refused even with a fresh token — the client's
//! [`Disposition::Broken`]) the connection is marked `BROKEN` (an `ERROR` log, the
//! `fyle_sync_connection_broken_total` counter, the status in `GetSyncStatus`, the `BROKEN`
//! event) — only if the refused credentials are still the stored ones (same `connected_at`; a
//! refusal of credentials a concurrent `ConnectFyle` replaced condemns nothing) — and every later
//! `GetAccessToken` / `SyncDimensions` of the workspace is refused without calling Fyle, so a
//! revoked token is not hammered, until `ConnectFyle` stores working credentials again. A
//! stored token whose key is no longer configured does not open and counts as not connected.
//! Transient failures (Fyle 429/5xx, network, the limiter's database) are `UNAVAILABLE` and
//! change nothing. No secret — refresh token, access token, client secret — is logged or
//! returned in an error.
//!
//! Access tokens handed out by `GetAccessToken` are cached in this process until five minutes
//! before they expire; they are not stored. Connected clients (pulls, subscriptions) are kept
//! per workspace while the stored connection is the one they were built from, and renew their
//! own access tokens; a broken connection or a new `ConnectFyle` drops them.
//!
//! Once the connection is stored, `ConnectFyle` registers the workspace's webhook subscription
//! ([`crate::subscription`]); a registration that fails leaves the connection stored and the
//! subscription `PENDING`, retried on the scheduler's ticks.

use std::{collections::HashMap, sync::Arc, time::Duration};

use attrsync_core::sealed::{Keyring, Sealed};
use attrsync_db::{DbError, Pool, shared_rate::SharedLimiter};
use attrsync_fyle_client::{ClientOptions, Credentials, Disposition, FyleClient, RateLimiter};
use attrsync_kafka::{
    connection_status::{self, Announcer, Change},
    workspaces::{Lookup, WorkspaceDirectory},
};
use attrsync_proto::v1::ConnectionState;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Mutex;

use crate::{config::FyleConfig, schema::fyle_connections as fc};

/// Why a Fyle operation of the API failed; mapped to one gRPC status in `grpc`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FyleError {
    #[error("workspace {0} does not exist")]
    UnknownWorkspace(i64),
    #[error("workspace {0} is not connected to Fyle; call ConnectFyle")]
    NotConnected(i64),
    #[error("the Fyle connection of workspace {0} is broken ({1}); call ConnectFyle again")]
    Broken(i64, String),
    #[error("the refresh token belongs to Fyle org {found}, not the workspace's org {expected}")]
    OrgMismatch { expected: String, found: String },
    #[error("Fyle refused the credentials: {0}")]
    CredentialsRefused(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("Fyle or a dependency is unavailable: {0}")]
    Unavailable(String),
    #[error("Fyle refused the request: {0}")]
    Rejected(String),
    #[error("database: {0}")]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for FyleError {
    fn from(e: diesel::result::Error) -> Self {
        FyleError::Db(e.into())
    }
}

/// Connection status as stored.
pub(crate) const CONNECTED: &str = "CONNECTED";
pub(crate) const BROKEN: &str = "BROKEN";

/// A workspace's stored connection.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) org_id: String,
    pub(crate) cluster_domain: String,
    pub(crate) status: String,
    pub(crate) status_reason: Option<String>,
    pub(crate) status_at: DateTime<Utc>,
    pub(crate) connected_at: DateTime<Utc>,
    sealed: Sealed,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("org_id", &self.org_id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = fc)]
struct ConnectionRow {
    org_id: String,
    cluster_domain: String,
    key_id: String,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
    status: String,
    status_reason: Option<String>,
    status_at: DateTime<Utc>,
    connected_at: DateTime<Utc>,
}

/// A current access token and the data host it is valid on.
#[derive(Clone)]
pub(crate) struct Grant {
    pub(crate) access_token: String,
    pub(crate) cluster_domain: String,
    pub(crate) expires_at: DateTime<Utc>,
}

/// Everything fyle-sync does with Fyle credentials. Cheap to clone.
#[derive(Clone)]
pub(crate) struct FyleAccess {
    pub(crate) pool: Pool,
    keyring: Keyring,
    config: FyleConfig,
    directory: WorkspaceDirectory,
    /// Announces a change of a connection's status (`sync.connections.v1`).
    announcer: Announcer,
    http: reqwest::Client,
    limiter: Arc<SharedLimiter>,
    tokens: Arc<Mutex<HashMap<i64, Grant>>>,
    /// Connected clients by workspace, with the `connected_at` of the stored connection each
    /// was built from (a newer ConnectFyle, from any replica, builds a new one).
    clients: Arc<Mutex<HashMap<i64, KeptClient>>>,
}

/// A connected client and the `connected_at` of the stored connection it was built from.
type KeptClient = (DateTime<Utc>, FyleClient);

impl std::fmt::Debug for FyleAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FyleAccess")
            .field("accounts_url", &self.config.accounts_url)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

#[derive(Deserialize)]
struct ClusterAnswer {
    cluster_domain: String,
}

impl FyleAccess {
    pub(crate) fn new(
        pool: Pool,
        keyring: Keyring,
        config: FyleConfig,
        directory: WorkspaceDirectory,
        announcer: Announcer,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()?;
        // Burst 1: requests evenly spaced, as Fyle counts a sliding second; one bucket per org
        // for every replica and every service (`fyle:<org>`).
        let limiter = Arc::new(SharedLimiter::new(
            pool.clone(),
            "fyle",
            config.requests_per_second,
            1.0,
        ));
        Ok(Self {
            pool,
            keyring,
            config,
            directory,
            announcer,
            http,
            limiter,
            tokens: Arc::new(Mutex::new(HashMap::new())),
            clients: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn credentials(&self, refresh_token: String) -> Credentials {
        Credentials {
            client_id: self.config.client_id.clone(),
            client_secret: self.config.client_secret.clone(),
            refresh_token,
        }
    }

    /// Client options for this service: the shared per-org limiter.
    pub(crate) fn client_options(&self) -> ClientOptions {
        ClientOptions {
            limiter: Arc::clone(&self.limiter) as Arc<dyn RateLimiter>,
            ..ClientOptions::default()
        }
    }

    /// `ConnectFyle`: see the module doc. Returns the org and cluster.
    pub(crate) async fn connect(
        &self,
        workspace_id: i64,
        refresh_token: &str,
    ) -> Result<(String, String), FyleError> {
        if refresh_token.trim().is_empty() {
            return Err(FyleError::InvalidArgument(
                "refresh_token is required".into(),
            ));
        }
        let expected = match self.directory.lookup(workspace_id).await {
            Lookup::Found(w) if !w.deleted => w.fyle_org_id,
            Lookup::Found(_) | Lookup::Unknown => {
                return Err(FyleError::UnknownWorkspace(workspace_id));
            }
            Lookup::Unavailable(e) => return Err(FyleError::Unavailable(e)),
        };
        let grant = self.exchange(refresh_token).await?;
        let client = FyleClient::connect(
            &self.config.accounts_url,
            self.credentials(refresh_token.to_owned()),
            self.client_options(),
        )
        .await
        .map_err(client_error)?;
        let found = client.org_id().to_owned();
        if found != expected {
            tracing::warn!(workspace_id, %expected, %found, "ConnectFyle refused: the token belongs to another org");
            return Err(FyleError::OrgMismatch { expected, found });
        }
        let sealed = self.keyring.seal(refresh_token.as_bytes());
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            // Insert, or lock the stored row and read its status before replacing it: a
            // concurrent ConnectFyle or broken mark is seen either way.
            let inserted = diesel::insert_into(fc::table)
                .values((
                    fc::workspace_id.eq(workspace_id),
                    fc::org_id.eq(&found),
                    fc::cluster_domain.eq(&grant.cluster_domain),
                    fc::key_id.eq(&sealed.key_id),
                    fc::nonce.eq(&sealed.nonce),
                    fc::ciphertext.eq(&sealed.ciphertext),
                    fc::status.eq(CONNECTED),
                    fc::status_reason.eq(None::<String>),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?
                == 1;
            let previous = if inserted {
                None
            } else {
                let previous: String = fc::table
                    .find(workspace_id)
                    .select(fc::status)
                    .for_update()
                    .first(conn)
                    .await?;
                diesel::update(fc::table.find(workspace_id))
                    .set((
                        fc::org_id.eq(&found),
                        fc::cluster_domain.eq(&grant.cluster_domain),
                        fc::key_id.eq(&sealed.key_id),
                        fc::nonce.eq(&sealed.nonce),
                        fc::ciphertext.eq(&sealed.ciphertext),
                        fc::status.eq(CONNECTED),
                        fc::status_reason.eq(None::<String>),
                        fc::connected_at.eq(diesel::dsl::now),
                        fc::status_at.eq(diesel::dsl::now),
                    ))
                    .execute(conn)
                    .await?;
                Some(previous)
            };
            let change = Change {
                account_id: &found,
                previous: connection_status::state_of(previous.as_deref()),
                current: ConnectionState::Connected,
                reason: "",
                at: Utc::now(),
            };
            self.announcer.announce(conn, workspace_id, &change).await?;
            Ok(())
        })
        .await?;
        self.announcer.wake();
        self.tokens.lock().await.insert(workspace_id, grant.clone());
        self.clients.lock().await.remove(&workspace_id);
        tracing::info!(workspace_id, org_id = %found, "Fyle connected");
        Ok((found, grant.cluster_domain))
    }

    /// The stored connection, if any.
    pub(crate) async fn stored(&self, workspace_id: i64) -> Result<Option<Connection>, FyleError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let row: Option<ConnectionRow> = fc::table
            .find(workspace_id)
            .select(ConnectionRow::as_select())
            .first(&mut conn)
            .await
            .optional()?;
        Ok(row.map(|r| Connection {
            org_id: r.org_id,
            cluster_domain: r.cluster_domain,
            status: r.status,
            status_reason: r.status_reason,
            status_at: r.status_at,
            connected_at: r.connected_at,
            sealed: Sealed {
                key_id: r.key_id,
                nonce: r.nonce,
                ciphertext: r.ciphertext,
            },
        }))
    }

    /// The refresh token of a working connection; refuses a missing or broken one.
    async fn usable(&self, workspace_id: i64) -> Result<(Connection, String), FyleError> {
        let Some(connection) = self.stored(workspace_id).await? else {
            return Err(FyleError::NotConnected(workspace_id));
        };
        if connection.status == BROKEN {
            return Err(FyleError::Broken(
                workspace_id,
                connection.status_reason.clone().unwrap_or_default(),
            ));
        }
        let token = match self.keyring.open(&connection.sealed) {
            Ok(bytes) => {
                String::from_utf8(bytes).map_err(|_| FyleError::NotConnected(workspace_id))?
            }
            Err(e) => {
                tracing::error!(workspace_id, error = %e, "the stored Fyle refresh token does not open; treated as not connected");
                return Err(FyleError::NotConnected(workspace_id));
            }
        };
        Ok((connection, token))
    }

    /// A connected client for the workspace's org (pulls, subscriptions, reconciles), kept
    /// while the stored connection is the one it was built from: connecting costs a token
    /// exchange, a cluster lookup and a `my_profile` call, and the client renews its own
    /// access token, so a pull per webhook or import must not connect again.
    pub(crate) async fn client(&self, workspace_id: i64) -> Result<FyleClient, FyleError> {
        let (connection, refresh_token) = self.usable(workspace_id).await?;
        if let Some((built_from, client)) = self.clients.lock().await.get(&workspace_id)
            && *built_from == connection.connected_at
        {
            return Ok(client.clone());
        }
        let connected = FyleClient::connect(
            &self.config.accounts_url,
            self.credentials(refresh_token),
            self.client_options(),
        )
        .await;
        match connected {
            Ok(client) => {
                self.clients
                    .lock()
                    .await
                    .insert(workspace_id, (connection.connected_at, client.clone()));
                Ok(client)
            }
            Err(e) => Err(self
                .failed_for(workspace_id, &e, Some(connection.connected_at))
                .await),
        }
    }

    /// Classifies a client error of the workspace's kept client; a broken one is recorded.
    pub(crate) async fn failed(
        &self,
        workspace_id: i64,
        e: &attrsync_fyle_client::Error,
    ) -> FyleError {
        // The kept client was built from this connection; none kept means a ConnectFyle (or a
        // broken mark) replaced it while the call ran.
        let built_from = self
            .clients
            .lock()
            .await
            .get(&workspace_id)
            .map(|(at, _)| *at);
        self.failed_for(workspace_id, e, built_from).await
    }

    /// [`Self::failed`] for credentials of the connection stored at `refused_connected_at`.
    async fn failed_for(
        &self,
        workspace_id: i64,
        e: &attrsync_fyle_client::Error,
        refused_connected_at: Option<DateTime<Utc>>,
    ) -> FyleError {
        if e.disposition() == Disposition::Broken {
            let reason = match e.status() {
                Some(status) => format!("Fyle answered {status} to the stored credentials"),
                None => "Fyle refused the stored credentials".to_owned(),
            };
            let Some(refused) = refused_connected_at else {
                tracing::warn!(
                    workspace_id,
                    "Fyle refused credentials that were replaced meanwhile: not marked broken"
                );
                return client_error_ref(e);
            };
            self.mark_broken(workspace_id, &reason, refused).await;
            return FyleError::Broken(workspace_id, reason);
        }
        client_error_ref(e)
    }

    /// `GetAccessToken`: a current access token, cached until 5 minutes before it expires.
    pub(crate) async fn access_token(&self, workspace_id: i64) -> Result<Grant, FyleError> {
        let (connection, refresh_token) = self.usable(workspace_id).await?;
        let mut tokens = self.tokens.lock().await;
        if let Some(g) = tokens.get(&workspace_id)
            && g.expires_at - chrono::Duration::minutes(5) > Utc::now()
        {
            return Ok(g.clone());
        }
        match self.exchange(&refresh_token).await {
            Ok(grant) => {
                if grant.cluster_domain != connection.cluster_domain {
                    tracing::info!(workspace_id, cluster = %grant.cluster_domain, "Fyle cluster changed");
                }
                tokens.insert(workspace_id, grant.clone());
                Ok(grant)
            }
            Err(FyleError::CredentialsRefused(reason)) => {
                tokens.remove(&workspace_id);
                drop(tokens);
                self.mark_broken(workspace_id, &reason, connection.connected_at)
                    .await;
                Err(FyleError::Broken(workspace_id, reason))
            }
            Err(e) => Err(e),
        }
    }

    /// Records that Fyle refused the credentials of the connection stored at `refused` — only
    /// if that connection is still the stored one: a refusal of credentials a ConnectFyle has
    /// since replaced condemns nothing.
    pub(crate) async fn mark_broken(
        &self,
        workspace_id: i64,
        reason: &str,
        refused: DateTime<Utc>,
    ) {
        self.tokens.lock().await.remove(&workspace_id);
        self.clients.lock().await.remove(&workspace_id);
        let marked = async {
            let mut conn = self.pool.get().await.map_err(DbError::from)?;
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                let stored: Option<(String, String, DateTime<Utc>)> = fc::table
                    .find(workspace_id)
                    .select((fc::status, fc::org_id, fc::connected_at))
                    .for_update()
                    .first(conn)
                    .await
                    .optional()?;
                let Some((previous, org_id, connected_at)) = stored else {
                    return Ok(false);
                };
                if connected_at != refused {
                    return Ok(false);
                }
                diesel::update(fc::table.find(workspace_id))
                    .set((
                        fc::status.eq(BROKEN),
                        fc::status_reason.eq(reason),
                        fc::status_at.eq(diesel::dsl::now),
                    ))
                    .execute(conn)
                    .await?;
                let change = Change {
                    account_id: &org_id,
                    previous: connection_status::state_of(Some(&previous)),
                    current: ConnectionState::Broken,
                    reason,
                    at: Utc::now(),
                };
                self.announcer.announce(conn, workspace_id, &change).await?;
                Ok(true)
            })
            .await
            .map_err(DbError::from)
        };
        match marked.await {
            Ok(true) => {
                self.announcer.wake();
                metrics::counter!("fyle_sync_connection_broken_total").increment(1);
                tracing::error!(
                    workspace_id,
                    reason,
                    "Fyle connection broken; calls to Fyle stop until ConnectFyle"
                );
            }
            Ok(false) => tracing::warn!(
                workspace_id,
                "Fyle refused credentials that were replaced meanwhile: not marked broken"
            ),
            Err(e) => {
                tracing::error!(workspace_id, error = %e, "could not record the broken Fyle connection")
            }
        }
    }

    /// The refresh grant and cluster lookup on the accounts host (reference §1.1).
    async fn exchange(&self, refresh_token: &str) -> Result<Grant, FyleError> {
        let base = self.config.accounts_url.trim_end_matches('/');
        let unavailable = |e: reqwest::Error| {
            FyleError::Unavailable(format!("Fyle accounts host: {}", e.without_url()))
        };
        let started = Utc::now();
        let answer = self
            .http
            .post(format!("{base}/oauth/token"))
            .json(&json!({
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": self.config.client_id,
                "client_secret": self.config.client_secret,
            }))
            .send()
            .await
            .map_err(unavailable)?;
        let status = answer.status().as_u16();
        let token: TokenAnswer = match status {
            200..=299 => answer
                .json()
                .await
                .map_err(|_| FyleError::Rejected("token answer without access_token".into()))?,
            401 | 404 => {
                return Err(FyleError::CredentialsRefused(format!(
                    "the token endpoint answered {status}"
                )));
            }
            429 | 500..=599 => {
                return Err(FyleError::Unavailable(format!(
                    "the token endpoint answered {status}"
                )));
            }
            _ => {
                return Err(FyleError::Rejected(format!(
                    "the token endpoint answered {status}"
                )));
            }
        };
        let answer = self
            .http
            .post(format!("{base}/oauth/cluster"))
            .bearer_auth(&token.access_token)
            .json(&json!({}))
            .send()
            .await
            .map_err(unavailable)?;
        let status = answer.status().as_u16();
        if !answer.status().is_success() {
            return Err(FyleError::Unavailable(format!(
                "the cluster lookup answered {status}"
            )));
        }
        let cluster: ClusterAnswer = answer
            .json()
            .await
            .map_err(|_| FyleError::Rejected("cluster answer without cluster_domain".into()))?;
        Ok(Grant {
            access_token: token.access_token,
            cluster_domain: cluster
                .cluster_domain
                .trim()
                .trim_end_matches('/')
                .to_owned(),
            expires_at: started + chrono::Duration::seconds(token.expires_in.unwrap_or(3600)),
        })
    }
}

fn client_error(e: attrsync_fyle_client::Error) -> FyleError {
    client_error_ref(&e)
}

fn client_error_ref(e: &attrsync_fyle_client::Error) -> FyleError {
    match e.disposition() {
        Disposition::Broken => FyleError::CredentialsRefused(
            e.status()
                .map_or_else(|| "refused".to_owned(), |s| format!("Fyle answered {s}")),
        ),
        Disposition::Transient => FyleError::Unavailable(e.to_string()),
        Disposition::Rejected => FyleError::Rejected(e.to_string()),
    }
}
