//! ingest's webhook credentials: each workspace's authentication mode (`webhook_auth`) and its
//! URL tokens and HMAC secrets (`webhook_secrets`, sealed with AES-256-GCM, see
//! [`attrsync_core::sealed`]).
//!
//! A workspace without a row uses the configured default mode (`url_token`), which accepts
//! nothing until a token exists: `GetWebhookEndpoint` or `SetAuthMode` creates it. A rotation
//! gives the current secret a `valid_until` (now + overlap) and adds a new one; both are valid
//! until then, only the new one after (credentials kept in memory carry the moment the first
//! of theirs expires and are loaded again from then on, so the old one is refused on time,
//! whatever the cache's TTL). A secret that no longer opens (its key was removed from
//! the configuration) counts as absent: the check fails closed. Secrets never reach logs.

use std::{collections::HashMap, time::Duration};

use attrsync_core::sealed::{Keyring, Sealed};
use attrsync_db::{DbError, Pool};
use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{Array, BigInt, Bytea, Nullable, Text, Timestamptz},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::auth::{self, AuthMode, Credentials};

diesel::table! {
    webhook_auth (workspace_id) {
        workspace_id -> BigInt,
        mode -> Text,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_secrets (id) {
        id -> BigInt,
        workspace_id -> BigInt,
        kind -> Text,
        key_id -> Text,
        nonce -> Bytea,
        ciphertext -> Bytea,
        created_at -> Timestamptz,
        valid_until -> Nullable<Timestamptz>,
    }
}

/// Each workspace's mode and the currently valid secrets of that mode, opened — for any number
/// of workspaces with one statement per [`LOAD_CHUNK`] of them, each read in one snapshot (a
/// rotation is seen whole or not at all). Every id asked for is in the answer; one without a
/// row has the default mode.
pub async fn load_many(
    pool: &Pool,
    keyring: &Keyring,
    default_mode: AuthMode,
    workspace_ids: &[i64],
) -> Result<HashMap<i64, Credentials>, DbError> {
    let mut conn = pool.get().await?;
    let mut rows: Vec<CredentialRow> = Vec::new();
    for ids in workspace_ids.chunks(LOAD_CHUNK) {
        rows.extend(
            attrsync_db::prepared::sql(
                "SELECT w.workspace_id, a.mode, s.kind, s.key_id, s.nonce, s.ciphertext, \
                        s.valid_until \
                 FROM unnest($1::int8[]) AS w(workspace_id) \
                 LEFT JOIN webhook_auth a ON a.workspace_id = w.workspace_id \
                 LEFT JOIN webhook_secrets s ON s.workspace_id = w.workspace_id \
                      AND (s.valid_until IS NULL OR s.valid_until > now()) \
                 ORDER BY w.workspace_id, s.id DESC",
            )
            .bind::<Array<BigInt>, _>(ids)
            .load::<CredentialRow>(&mut conn)
            .await?,
        );
    }
    let mut loaded: HashMap<i64, Credentials> = HashMap::with_capacity(workspace_ids.len());
    for row in rows {
        let (workspace_id, valid_until) = (row.workspace_id, row.valid_until);
        let credentials = loaded
            .entry(row.workspace_id)
            .or_insert_with(|| Credentials {
                mode: row
                    .mode
                    .as_deref()
                    .and_then(AuthMode::parse)
                    .unwrap_or(default_mode),
                secrets: Vec::new(),
                reload_by: None,
            });
        let Some(sealed) = row.sealed_of_kind(credentials.mode.secret_kind()) else {
            continue;
        };
        if let Some(secret) = open(keyring, workspace_id, sealed) {
            credentials.secrets.push(secret);
            credentials.reload_by = match (credentials.reload_by, valid_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }
    Ok(loaded)
}

/// Workspaces whose credentials one statement of [`load_many`] reads.
pub const LOAD_CHUNK: usize = 1_000;

/// A workspace's mode and one of its valid secrets (none: no row), as [`load_many`] reads them.
#[derive(diesel::QueryableByName)]
struct CredentialRow {
    #[diesel(sql_type = BigInt)]
    workspace_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    mode: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    kind: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    key_id: Option<String>,
    #[diesel(sql_type = Nullable<Bytea>)]
    nonce: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Bytea>)]
    ciphertext: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    valid_until: Option<DateTime<Utc>>,
}

impl CredentialRow {
    /// The row's secret, sealed, when it is of the kind the workspace's mode uses.
    fn sealed_of_kind(self, kind: Option<&str>) -> Option<Sealed> {
        if self.kind.as_deref() != kind {
            return None;
        }
        Some(Sealed {
            key_id: self.key_id?,
            nonce: self.nonce?,
            ciphertext: self.ciphertext?,
        })
    }
}

/// A sealed secret opened, or `None` (logged) when it does not open: treated as absent.
fn open(keyring: &Keyring, workspace_id: i64, sealed: Sealed) -> Option<String> {
    match keyring.open(&sealed) {
        Ok(opened) => String::from_utf8(opened).ok(),
        Err(e) => {
            tracing::error!(workspace_id, error = %e, "a webhook secret does not open; treated as absent");
            None
        }
    }
}

async fn current_mode(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
) -> QueryResult<Option<AuthMode>> {
    let mode: Option<String> = webhook_auth::table
        .find(workspace_id)
        .select(webhook_auth::mode)
        .first(conn)
        .await
        .optional()?;
    Ok(mode.as_deref().and_then(AuthMode::parse))
}

/// The workspace's valid secrets of `kind`, newest first, opened, each with the end of its
/// validity (`None`: until rotated).
async fn valid_secrets(
    conn: &mut AsyncPgConnection,
    keyring: &Keyring,
    workspace_id: i64,
    kind: &str,
) -> QueryResult<Vec<(String, Option<DateTime<Utc>>)>> {
    type Row = (String, Vec<u8>, Vec<u8>, Option<DateTime<Utc>>);
    let rows: Vec<Row> = webhook_secrets::table
        .filter(webhook_secrets::workspace_id.eq(workspace_id))
        .filter(webhook_secrets::kind.eq(kind))
        .filter(
            webhook_secrets::valid_until
                .is_null()
                .or(webhook_secrets::valid_until.gt(diesel::dsl::now)),
        )
        .order(webhook_secrets::id.desc())
        .select((
            webhook_secrets::key_id,
            webhook_secrets::nonce,
            webhook_secrets::ciphertext,
            webhook_secrets::valid_until,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(key_id, nonce, ciphertext, valid_until)| {
            let sealed = Sealed {
                key_id,
                nonce,
                ciphertext,
            };
            Some((open(keyring, workspace_id, sealed)?, valid_until))
        })
        .collect())
}

/// What a change of credentials produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub mode: AuthMode,
    /// A newly created HMAC secret, shown once.
    pub new_hmac_secret: Option<String>,
    pub active_since: DateTime<Utc>,
    pub previous_valid_until: Option<DateTime<Utc>>,
}

/// Sets the workspace's mode, creating the secret it needs if it has none.
pub async fn set_mode(
    pool: &Pool,
    keyring: &Keyring,
    workspace_id: i64,
    mode: AuthMode,
) -> Result<Changed, DbError> {
    let mut conn = pool.get().await?;
    conn.transaction::<_, DbError, _>(async |conn| {
        write_mode(conn, workspace_id, mode).await?;
        let mut new_hmac_secret = None;
        if let Some(kind) = mode.secret_kind()
            && valid_secrets(conn, keyring, workspace_id, kind)
                .await?
                .is_empty()
        {
            let secret = fresh_secret(mode);
            insert_secret(conn, keyring, workspace_id, kind, &secret).await?;
            new_hmac_secret = (mode == AuthMode::Hmac).then_some(secret);
        }
        Ok(Changed {
            mode,
            new_hmac_secret,
            active_since: Utc::now(),
            previous_valid_until: None,
        })
    })
    .await
}

/// Replaces the current secret of the workspace's mode; the previous one stays valid for
/// `overlap`. `None` when the mode has no secret (`org_check_only`).
pub async fn rotate(
    pool: &Pool,
    keyring: &Keyring,
    default_mode: AuthMode,
    workspace_id: i64,
    overlap: Duration,
) -> Result<Option<Changed>, DbError> {
    let mut conn = pool.get().await?;
    conn.transaction::<_, DbError, _>(async |conn| {
        let mode = current_mode(conn, workspace_id)
            .await?
            .unwrap_or(default_mode);
        write_mode(conn, workspace_id, mode).await?;
        let Some(kind) = mode.secret_kind() else {
            return Ok(None);
        };
        let until = Utc::now()
            + chrono::Duration::from_std(overlap).unwrap_or_else(|_| chrono::Duration::zero());
        diesel::update(
            webhook_secrets::table
                .filter(webhook_secrets::workspace_id.eq(workspace_id))
                .filter(webhook_secrets::kind.eq(kind))
                .filter(webhook_secrets::valid_until.is_null()),
        )
        .set(webhook_secrets::valid_until.eq(until))
        .execute(conn)
        .await?;
        let secret = fresh_secret(mode);
        insert_secret(conn, keyring, workspace_id, kind, &secret).await?;
        Ok(Some(Changed {
            mode,
            new_hmac_secret: (mode == AuthMode::Hmac).then_some(secret),
            active_since: Utc::now(),
            previous_valid_until: Some(until),
        }))
    })
    .await
}

/// The workspace's mode and, in url_token mode, its current token (created if missing).
pub async fn endpoint_token(
    pool: &Pool,
    keyring: &Keyring,
    default_mode: AuthMode,
    workspace_id: i64,
) -> Result<(AuthMode, Option<String>), DbError> {
    let mut conn = pool.get().await?;
    conn.transaction::<_, DbError, _>(async |conn| {
        let mode = match current_mode(conn, workspace_id).await? {
            Some(mode) => mode,
            None => {
                write_mode(conn, workspace_id, default_mode).await?;
                default_mode
            }
        };
        if mode != AuthMode::UrlToken {
            return Ok((mode, None));
        }
        let current = valid_secrets(conn, keyring, workspace_id, "url_token").await?;
        let token = match current.into_iter().next() {
            Some((token, _)) => token,
            None => {
                let token = auth::new_url_token();
                insert_secret(conn, keyring, workspace_id, "url_token", &token).await?;
                token
            }
        };
        Ok((mode, Some(token)))
    })
    .await
}

fn fresh_secret(mode: AuthMode) -> String {
    match mode {
        AuthMode::Hmac => auth::new_hmac_secret(),
        _ => auth::new_url_token(),
    }
}

async fn write_mode(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    mode: AuthMode,
) -> QueryResult<()> {
    diesel::insert_into(webhook_auth::table)
        .values((
            webhook_auth::workspace_id.eq(workspace_id),
            webhook_auth::mode.eq(mode.as_str()),
        ))
        .on_conflict(webhook_auth::workspace_id)
        .do_update()
        .set((
            webhook_auth::mode.eq(mode.as_str()),
            webhook_auth::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(drop)
}

async fn insert_secret(
    conn: &mut AsyncPgConnection,
    keyring: &Keyring,
    workspace_id: i64,
    kind: &str,
    secret: &str,
) -> QueryResult<()> {
    let sealed = keyring.seal(secret.as_bytes());
    diesel::insert_into(webhook_secrets::table)
        .values((
            webhook_secrets::workspace_id.eq(workspace_id),
            webhook_secrets::kind.eq(kind),
            webhook_secrets::key_id.eq(&sealed.key_id),
            webhook_secrets::nonce.eq(&sealed.nonce),
            webhook_secrets::ciphertext.eq(&sealed.ciphertext),
        ))
        .execute(conn)
        .await
        .map(drop)
}
