//! A realm's QBO connection: `ConnectQbo`, the stored rotating tokens, and the expired state.
//!
//! **One connection per company.** Workspaces sharing a QBO company (realm) share its tokens
//! (`qbo_credentials`, keyed by realm): one fetch then serves them all, and one chain of refresh
//! tokens has one writer. The newest `ConnectQbo` for a realm replaces its tokens.
//!
//! **Rotation without loss** ([`PgTokenStore`], the client's `TokenStore`): QBO retires a
//! refresh token when it issues the next one. The client keeps no token; every refresh reads
//! the stored one and stores the new one only if the stored refresh token is still the one it
//! refreshed with — checked under the row's lock (`SELECT … FOR UPDATE`), since the tokens are
//! sealed (AES-256-GCM, `attrsync_core::sealed`) and cannot be compared in SQL. A replica that
//! loses the race gets the winner's tokens and uses them. The access token is stored sealed
//! beside it, so replicas share it.
//!
//! **ConnectQbo(workspace, realm, code | refresh token)** proves the grant before storing it:
//! the realm must be the workspace's (from the workspace projection, else mapping), a code is
//! exchanged (or a refresh token refreshed — which rotates it, so what is stored is always the
//! newest), and `CompanyInfo` of the realm is read with the new tokens held in memory; only a
//! grant that can read the realm replaces what is stored (`CONNECTED`), so a grant of another
//! company never overwrites the realm's working tokens.
//!
//! A rotation that succeeded is always stored, even if the realm was meanwhile marked
//! `EXPIRED` (QBO has already retired the old token; the refresh proves the grant works, so
//! the mark is lifted).
//!
//! Every change of the realm's status — first connection, `EXPIRED`, reconnected or lifted by
//! a rotation — is announced as a `ConnectionStatusChanged` on `sync.connections.v1` (source
//! `qbo`, `EXPIRED` as `BROKEN`) to each workspace the projection knows for the realm and to
//! the connecting one, through the outbox in the transaction that stores it
//! ([`attrsync_kafka::connection_status`]). Each workspace's previous state is the one last
//! announced to it for this realm (`qbo_connection_announced`), so a workspace joining a
//! company already connected, or moved to another company, hears CONNECTED, and a repeat of
//! its state announces nothing.
//!
//! Failure policy: **closed**. When QBO refuses the stored grant (`invalid_grant`, a 401 that
//! survives a fresh token, a 403 — the client's `Disposition::Broken`), and one `CompanyInfo`
//! read with the grant stored *now* is refused too (so a call that began before a reconnect, or
//! a 403 on one entity, does not condemn the realm), the realm is marked
//! `EXPIRED` (the incumbent PATCHes `is_token_expired`, #53): an `ERROR` log, the
//! `qbo_sync_credentials_expired_total` counter, the status in `GetSyncStatus`, a `BROKEN`
//! `ConnectionStatusChanged` (below); the token store
//! then answers "not connected" for the realm, so no call reaches QBO until `ConnectQbo` stores
//! a working grant. `invalid_client` (the app's own credentials) marks no realm: it is an
//! operator's problem, logged and counted (`qbo_sync_app_credentials_refused_total`).
//! Transient failures (429/5xx, network, the database) are `UNAVAILABLE` and change nothing. No secret — tokens, codes, client secret — is logged or returned.

use std::{collections::HashMap, num::NonZeroU32, sync::Arc, time::Duration};

use attrsync_core::sealed::{Keyring, Sealed};
use attrsync_db::{DbError, Pool, shared_permits::SharedPermits, shared_rate::SharedLimiter};
use attrsync_kafka::{
    connection_status::{self, Announcer, Change},
    workspaces::{self, Lookup, WorkspaceDirectory},
};
use attrsync_proto::v1::ConnectionState;
use attrsync_qbo_client::{
    AccessToken, AppCredentials, BoxFuture, ClientOptions, Disposition, Endpoints,
    InMemoryTokenStore, QboClient, Rotation, Secret, TokenStore, Tokens, tokens::StoreError,
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::Mutex;

use crate::{config::QboConfig, schema::qbo_credentials as qc};

/// How much longer than a request's timeouts a replica's claim on one of a realm's in-flight
/// slots lasts: a crashed replica's slots come back after this.
const SLOT_LEASE_MARGIN: Duration = Duration::from_secs(30);
/// How often a request waiting for a free in-flight slot of its realm asks again.
const SLOT_POLL: Duration = Duration::from_millis(20);

/// Why a QBO connection operation failed; mapped to one gRPC status in `grpc`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum QboError {
    #[error("workspace {0} does not exist")]
    UnknownWorkspace(i64),
    #[error("workspace {0} is not connected to a QBO company")]
    NoRealm(i64),
    #[error("realm {requested} is not the QBO company of workspace {workspace_id} ({actual})")]
    RealmMismatch {
        workspace_id: i64,
        requested: String,
        actual: String,
    },
    #[error("QBO company {0} is not connected; call ConnectQbo")]
    NotConnected(String),
    #[error("the QBO connection of company {0} has expired ({1}); call ConnectQbo again")]
    Expired(String, String),
    #[error("QBO refused the grant: {0}")]
    GrantRefused(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("QBO unavailable: {0}")]
    Unavailable(String),
    #[error("QBO refused the request: {0}")]
    Rejected(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for QboError {
    fn from(e: diesel::result::Error) -> Self {
        QboError::Db(e.into())
    }
}

/// A realm's stored connection, as `GetSyncStatus` shows it.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct StoredConnection {
    pub(crate) company_name: Option<String>,
    pub(crate) status: String,
    pub(crate) status_reason: Option<String>,
}

/// Everything qbo-sync does with QBO credentials. Cheap to clone.
#[derive(Clone)]
pub(crate) struct QboAccess {
    pool: Pool,
    store: Arc<PgTokenStore>,
    endpoints: Endpoints,
    app: AppCredentials,
    options: ClientOptions,
    redirect_uri: String,
    directory: WorkspaceDirectory,
    clients: Arc<Mutex<HashMap<String, QboClient>>>,
}

impl std::fmt::Debug for QboAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QboAccess")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl QboAccess {
    pub(crate) fn new(
        pool: Pool,
        keyring: Keyring,
        config: &QboConfig,
        directory: WorkspaceDirectory,
        announcer: Announcer,
    ) -> anyhow::Result<Self> {
        let endpoints = Endpoints::new(&config.api_url, &config.token_url)?;
        // The rate and the cap on requests in flight are each one budget per realm for every
        // replica (PostgreSQL): QBO's 500/minute and 10 at once are the realm's, not ours.
        let rate = SharedLimiter::new(pool.clone(), "qbo", config.requests_per_minute / 60.0, 1.0);
        let in_flight = NonZeroU32::new(u32::try_from(config.max_concurrent).unwrap_or(1))
            .unwrap_or(NonZeroU32::MIN);
        let defaults = ClientOptions::default();
        let permits = SharedPermits::new(
            pool.clone(),
            "qbo",
            Arc::new(rate),
            in_flight,
            // Longer than any request, its retries' waits excluded (each retry claims anew).
            defaults.request_timeout + defaults.connect_timeout + SLOT_LEASE_MARGIN,
            SLOT_POLL,
        );
        let options = ClientOptions {
            limiter: Arc::new(permits),
            minor_version: config.minor_version,
            ..defaults
        };
        Ok(Self {
            store: Arc::new(PgTokenStore {
                pool: pool.clone(),
                keyring,
                announcer,
            }),
            pool,
            endpoints,
            app: AppCredentials {
                client_id: config.client_id.clone(),
                client_secret: Secret::new(config.client_secret.clone()),
            },
            options,
            redirect_uri: config.redirect_uri.clone(),
            directory,
            clients: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The client of `realm` (cached; clones share its token cache and counters). Refuses an
    /// expired or unknown connection without calling QBO.
    pub(crate) async fn client(&self, realm: &str) -> Result<QboClient, QboError> {
        match self.stored(realm).await? {
            None => return Err(QboError::NotConnected(realm.to_owned())),
            Some(c) if c.status == "EXPIRED" => {
                return Err(QboError::Expired(
                    realm.to_owned(),
                    c.status_reason.unwrap_or_default(),
                ));
            }
            Some(_) => {}
        }
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(realm) {
            return Ok(client.clone());
        }
        let client = QboClient::new(
            &self.endpoints,
            self.app.clone(),
            realm,
            self.store.clone(),
            self.options.clone(),
        )
        .map_err(|e| QboError::InvalidArgument(e.to_string()))?;
        clients.insert(realm.to_owned(), client.clone());
        Ok(client)
    }

    /// The stored connection of `realm`, if any.
    pub(crate) async fn stored(&self, realm: &str) -> Result<Option<StoredConnection>, QboError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        Ok(qc::table
            .find(realm)
            .select((qc::company_name, qc::status, qc::status_reason))
            .first(&mut conn)
            .await
            .optional()?)
    }

    /// The workspace's realm, checked against the projection (else mapping).
    pub(crate) async fn realm_of(&self, workspace_id: i64) -> Result<String, QboError> {
        match self.directory.lookup(workspace_id).await {
            Lookup::Found(w) if !w.deleted => w.qbo_realm_id.ok_or(QboError::NoRealm(workspace_id)),
            Lookup::Found(_) | Lookup::Unknown => Err(QboError::UnknownWorkspace(workspace_id)),
            Lookup::Unavailable(reason) => Err(QboError::Unavailable(reason)),
        }
    }

    /// `ConnectQbo`: proves the grant, stores it for the realm, reads the company name.
    pub(crate) async fn connect(
        &self,
        workspace_id: i64,
        realm: &str,
        code: Option<&str>,
        refresh_token: Option<&str>,
    ) -> Result<String, QboError> {
        let actual = self.realm_of(workspace_id).await?;
        if actual != realm {
            return Err(QboError::RealmMismatch {
                workspace_id,
                requested: realm.to_owned(),
                actual,
            });
        }
        let oauth = attrsync_qbo_client::OAuthClient::new(
            self.endpoints.token_url.as_str(),
            self.app.clone(),
            &self.options,
        )
        .map_err(|e| QboError::InvalidArgument(e.to_string()))?;
        let granted = match (code, refresh_token) {
            (Some(code), None) if !code.is_empty() => {
                oauth.exchange_code(code, &self.redirect_uri).await
            }
            (None, Some(token)) if !token.is_empty() => oauth.refresh(&Secret::new(token)).await,
            _ => {
                return Err(QboError::InvalidArgument(
                    "ConnectQbo takes exactly one of authorization_code and refresh_token".into(),
                ));
            }
        };
        let tokens = granted.map_err(|e| match e.disposition() {
            Disposition::Transient => QboError::Unavailable(e.to_string()),
            _ => QboError::GrantRefused(e.to_string()),
        })?;
        // Prove the grant on this realm before it replaces anything: a grant of another company
        // (or one that cannot read it) must not overwrite the realm's working tokens. The proof
        // runs on tokens held in memory; a refresh it needs rotates them there, and what is
        // stored is the newest.
        let trial = Arc::new(InMemoryTokenStore::new());
        trial.insert(realm, tokens);
        let prover = QboClient::new(
            &self.endpoints,
            self.app.clone(),
            realm,
            trial.clone(),
            self.options.clone(),
        )
        .map_err(|e| QboError::InvalidArgument(e.to_string()))?;
        let info = prover
            .read("CompanyInfo", realm)
            .await
            .map_err(|e| match e.disposition() {
                Disposition::Transient => QboError::Unavailable(e.to_string()),
                _ => QboError::GrantRefused(format!("the grant cannot read company {realm}: {e}")),
            })?;
        let company_name = info
            .get("CompanyName")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let tokens = trial
            .get(realm)
            .ok_or_else(|| QboError::Unavailable("the proven grant was not kept".into()))?;
        self.store.replace(realm, workspace_id, &tokens).await?;
        self.clients.lock().await.remove(realm);
        metrics::counter!("qbo_sync_connections_total").increment(1);
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        diesel::update(qc::table.find(realm))
            .set(qc::company_name.eq(&company_name))
            .execute(&mut conn)
            .await?;
        tracing::info!(workspace_id, realm, "QBO company connected");
        Ok(company_name)
    }

    /// Turns a client error into a [`QboError`], marking the realm `EXPIRED` first when QBO
    /// refused the grant itself. Call it on every QBO failure of the realm.
    pub(crate) fn failure(&self, realm: &str, e: attrsync_qbo_client::Error) -> QboError {
        match e.disposition() {
            Disposition::Transient => QboError::Unavailable(e.to_string()),
            Disposition::Rejected => QboError::Rejected(e.to_string()),
            Disposition::Broken => {
                let reason = e.to_string();
                if matches!(e, attrsync_qbo_client::Error::InvalidClient { .. }) {
                    // The app's own credentials, not the realm's grant: no realm is marked.
                    metrics::counter!("qbo_sync_app_credentials_refused_total").increment(1);
                    tracing::error!(
                        realm,
                        "QBO refused the app's client credentials; check qbo.client_id / qbo.client_secret"
                    );
                    return QboError::Unavailable(reason);
                }
                let access = self.clone();
                let realm_owned = realm.to_owned();
                let why = reason.clone();
                // Confirming and marking must not delay the caller's error; if either fails,
                // the next refused call starts them again.
                tokio::spawn(async move { access.confirm_then_expire(&realm_owned, &why).await });
                QboError::Expired(realm.to_owned(), reason)
            }
        }
    }

    /// Marks `realm` expired only if the grant stored *now* is refused too: a call that began
    /// before a reconnect, or a 403 on one entity the connecting user may not read, does not
    /// prove the realm's grant is gone. One `CompanyInfo` read with the stored grant decides.
    async fn confirm_then_expire(&self, realm: &str, reason: &str) {
        let Ok(client) = QboClient::new(
            &self.endpoints,
            self.app.clone(),
            realm,
            self.store.clone(),
            self.options.clone(),
        ) else {
            return;
        };
        match client.read("CompanyInfo", realm).await {
            Ok(_) => tracing::warn!(
                realm,
                "a QBO call was refused, but the stored grant still reads the company: not marked expired"
            ),
            Err(e)
                if matches!(e.disposition(), Disposition::Broken)
                    && !matches!(e, attrsync_qbo_client::Error::InvalidClient { .. }) =>
            {
                self.mark_expired(realm, reason).await;
            }
            Err(e) => {
                tracing::warn!(realm, error = %e, "could not confirm a refused QBO grant; the next refusal asks again")
            }
        }
    }

    async fn mark_expired(&self, realm: &str, reason: &str) {
        let announcer = &self.store.announcer;
        let marked = async {
            let mut conn = self.pool.get().await.map_err(DbError::from)?;
            conn.transaction::<_, diesel::result::Error, _>(async |conn| {
                let marked =
                    diesel::update(qc::table.find(realm).filter(qc::status.eq("CONNECTED")))
                        .set((
                            qc::status.eq("EXPIRED"),
                            qc::status_reason.eq(reason),
                            qc::status_at.eq(diesel::dsl::now),
                            qc::access_sealed.eq(None::<Vec<u8>>),
                            qc::access_nonce.eq(None::<Vec<u8>>),
                            qc::access_expires_at.eq(None::<DateTime<Utc>>),
                        ))
                        .execute(conn)
                        .await?;
                if marked == 1 {
                    announce_to_realm(
                        conn,
                        announcer,
                        realm,
                        ConnectionState::Broken,
                        reason,
                        None,
                    )
                    .await?;
                }
                Ok(marked)
            })
            .await
            .map_err(DbError::from)
        };
        match marked.await {
            Ok(1) => {
                announcer.wake();
                metrics::counter!("qbo_sync_credentials_expired_total").increment(1);
                tracing::error!(
                    realm,
                    "QBO refused the stored grant: connection marked EXPIRED until ConnectQbo"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(realm, error = %e, "could not mark the QBO connection expired")
            }
        }
        self.clients.lock().await.remove(realm);
    }
}

/// Announces that the realm's connection is now `current` to every workspace of the realm (as
/// this service's projection knows them) and to `connecting` (the workspace of a ConnectQbo,
/// which the projection may not hold yet), each from the state last announced to it for this
/// realm (`qbo_connection_announced`; none → UNSPECIFIED), and only where that differs. Runs in
/// the caller's transaction, which holds the realm's `qbo_credentials` row lock, so a realm's
/// announcements are serialised.
async fn announce_to_realm(
    conn: &mut AsyncPgConnection,
    announcer: &Announcer,
    realm: &str,
    current: ConnectionState,
    reason: &str,
    connecting: Option<i64>,
) -> QueryResult<usize> {
    use crate::schema::qbo_connection_announced as ann;
    let mut workspace_ids: Vec<i64> = workspaces::find_by_realm(conn, realm)
        .await?
        .iter()
        .map(|w| w.workspace_id)
        .chain(connecting)
        .collect();
    workspace_ids.sort_unstable();
    workspace_ids.dedup();
    let last: HashMap<i64, String> = ann::table
        .filter(ann::workspace_id.eq_any(&workspace_ids))
        .filter(ann::realm_id.eq(realm))
        .select((ann::workspace_id, ann::state))
        .load::<(i64, String)>(conn)
        .await?
        .into_iter()
        .collect();
    let state = match current {
        ConnectionState::Connected => "CONNECTED",
        _ => "BROKEN",
    };
    let mut announced = 0;
    for workspace_id in workspace_ids {
        let change = Change {
            account_id: realm,
            previous: connection_status::state_of(last.get(&workspace_id).map(String::as_str)),
            current,
            reason,
            at: Utc::now(),
        };
        if !announcer.announce(conn, workspace_id, &change).await? {
            continue;
        }
        diesel::insert_into(ann::table)
            .values((
                ann::workspace_id.eq(workspace_id),
                ann::realm_id.eq(realm),
                ann::state.eq(state),
            ))
            .on_conflict(ann::workspace_id)
            .do_update()
            .set((
                ann::realm_id.eq(realm),
                ann::state.eq(state),
                ann::announced_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        announced += 1;
    }
    Ok(announced)
}

/// The realm tokens in PostgreSQL (`qbo_credentials`), sealed; see the module docs.
pub(crate) struct PgTokenStore {
    pool: Pool,
    keyring: Keyring,
    /// Announces a change of a realm's status (`sync.connections.v1`).
    announcer: Announcer,
}

impl std::fmt::Debug for PgTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTokenStore").finish_non_exhaustive()
    }
}

#[derive(Queryable)]
struct StoredTokens {
    key_id: String,
    refresh_nonce: Vec<u8>,
    refresh_sealed: Vec<u8>,
    refresh_expires_at: Option<DateTime<Utc>>,
    access_nonce: Option<Vec<u8>>,
    access_sealed: Option<Vec<u8>>,
    access_expires_at: Option<DateTime<Utc>>,
    status: String,
}

type StoredColumns = (
    qc::key_id,
    qc::refresh_nonce,
    qc::refresh_sealed,
    qc::refresh_expires_at,
    qc::access_nonce,
    qc::access_sealed,
    qc::access_expires_at,
    qc::status,
);

const STORED: StoredColumns = (
    qc::key_id,
    qc::refresh_nonce,
    qc::refresh_sealed,
    qc::refresh_expires_at,
    qc::access_nonce,
    qc::access_sealed,
    qc::access_expires_at,
    qc::status,
);

impl PgTokenStore {
    fn open(&self, key_id: &str, nonce: &[u8], ciphertext: &[u8]) -> Result<Secret, StoreError> {
        let plain = self.keyring.open(&Sealed {
            key_id: key_id.to_owned(),
            nonce: nonce.to_vec(),
            ciphertext: ciphertext.to_vec(),
        })?;
        Ok(Secret::new(String::from_utf8(plain)?))
    }

    fn tokens(&self, row: &StoredTokens) -> Result<Tokens, StoreError> {
        let refresh_token = self.open(&row.key_id, &row.refresh_nonce, &row.refresh_sealed)?;
        let access = match (&row.access_nonce, &row.access_sealed, row.access_expires_at) {
            (Some(nonce), Some(sealed), Some(expires_at)) => Some(AccessToken {
                token: self.open(&row.key_id, nonce, sealed)?,
                expires_at,
            }),
            _ => None,
        };
        Ok(Tokens {
            refresh_token,
            refresh_expires_at: row.refresh_expires_at,
            access,
        })
    }

    /// The sealed columns of `tokens` (both under the active key, so one key id serves both).
    fn sealed(&self, tokens: &Tokens) -> TokenColumns {
        let refresh = self.keyring.seal(tokens.refresh_token.expose().as_bytes());
        let access = tokens
            .access
            .as_ref()
            .map(|a| (self.keyring.seal(a.token.expose().as_bytes()), a.expires_at));
        TokenColumns {
            key_id: refresh.key_id,
            refresh_nonce: refresh.nonce,
            refresh_sealed: refresh.ciphertext,
            refresh_expires_at: tokens.refresh_expires_at,
            access_nonce: access.as_ref().map(|(s, _)| s.nonce.clone()),
            access_sealed: access.as_ref().map(|(s, _)| s.ciphertext.clone()),
            access_expires_at: access.map(|(_, at)| at),
        }
    }

    /// Stores a newly granted connection for `realm` (ConnectQbo), replacing any other.
    async fn replace(
        &self,
        realm: &str,
        workspace_id: i64,
        tokens: &Tokens,
    ) -> Result<(), DbError> {
        let columns = self.sealed(tokens);
        let mut conn = self.pool.get().await?;
        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            // Insert, or replace the stored row (its lock serialises the realm's changes).
            let inserted = diesel::insert_into(qc::table)
                .values((
                    qc::realm_id.eq(realm),
                    &columns,
                    qc::status.eq("CONNECTED"),
                    qc::connected_by.eq(workspace_id),
                ))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?
                == 1;
            if !inserted {
                diesel::update(qc::table.find(realm))
                    .set((
                        &columns,
                        qc::generation.eq(qc::generation + 1),
                        qc::status.eq("CONNECTED"),
                        qc::status_reason.eq(None::<String>),
                        qc::connected_by.eq(workspace_id),
                        qc::connected_at.eq(diesel::dsl::now),
                        qc::status_at.eq(diesel::dsl::now),
                    ))
                    .execute(conn)
                    .await?;
            }
            announce_to_realm(
                conn,
                &self.announcer,
                realm,
                ConnectionState::Connected,
                "",
                Some(workspace_id),
            )
            .await
        })
        .await?;
        self.announcer.wake();
        Ok(())
    }
}

/// The sealed token columns of a `qbo_credentials` row, as a connect and a rotation write them.
/// Both tokens are sealed under the active key, whose id the row stores once; no access token
/// writes NULLs.
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = qc, treat_none_as_null = true)]
struct TokenColumns {
    key_id: String,
    refresh_nonce: Vec<u8>,
    refresh_sealed: Vec<u8>,
    refresh_expires_at: Option<DateTime<Utc>>,
    access_nonce: Option<Vec<u8>>,
    access_sealed: Option<Vec<u8>>,
    access_expires_at: Option<DateTime<Utc>>,
}

impl TokenStore for PgTokenStore {
    fn load<'a>(&'a self, realm: &'a str) -> BoxFuture<'a, Result<Option<Tokens>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.get().await?;
            let row: Option<StoredTokens> = qc::table
                .find(realm)
                .select(STORED)
                .first(&mut conn)
                .await
                .optional()?;
            match row {
                // An expired grant is not offered: the client then refuses without calling QBO.
                Some(row) if row.status == "CONNECTED" => Ok(Some(self.tokens(&row)?)),
                _ => Ok(None),
            }
        })
    }

    fn rotate<'a>(
        &'a self,
        realm: &'a str,
        old_refresh: &'a Secret,
        new: &'a Tokens,
    ) -> BoxFuture<'a, Result<Rotation, StoreError>> {
        Box::pin(async move {
            let columns = self.sealed(new);
            let mut conn = self.pool.get().await?;
            let rotation = conn
                .transaction::<Result<Rotation, StoreError>, diesel::result::Error, _>(
                    async |conn| {
                        let row: Option<StoredTokens> = qc::table
                            .find(realm)
                            .select(STORED)
                            .for_update()
                            .first(conn)
                            .await
                            .optional()?;
                        let Some(row) = row else {
                            return Ok(Err(format!("realm {realm} is not connected").into()));
                        };
                        let current = match self.tokens(&row) {
                            Ok(current) => current,
                            Err(e) => return Ok(Err(e)),
                        };
                        if current.refresh_token != *old_refresh {
                            return Ok(Ok(Rotation::LostRace(current)));
                        }
                        // The refresh succeeded with the stored token, which QBO has now retired:
                        // the new one is kept whatever the status says (a grant that just
                        // refreshed works, so an EXPIRED mark is lifted).
                        diesel::update(qc::table.find(realm))
                            .set((
                                &columns,
                                qc::generation.eq(qc::generation + 1),
                                qc::status.eq("CONNECTED"),
                                qc::status_reason.eq(None::<String>),
                            ))
                            .execute(conn)
                            .await?;
                        announce_to_realm(
                            conn,
                            &self.announcer,
                            realm,
                            ConnectionState::Connected,
                            "",
                            None,
                        )
                        .await?;
                        Ok(Ok(Rotation::Rotated))
                    },
                )
                .await?;
            if matches!(rotation, Ok(Rotation::Rotated)) {
                // Sends a lifted EXPIRED mark's announcement now (a no-op otherwise).
                self.announcer.wake();
            }
            rotation
        })
    }
}
