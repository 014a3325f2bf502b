//! Where a realm's tokens live: the [`TokenStore`] the service implements over PostgreSQL, and
//! an in-memory one for tests.
//!
//! QBO refresh tokens **rotate** (reference §3.1): a refresh may answer a new refresh token, and
//! the old one stops working (immediately, in the sandbox's default). A client that kept the
//! token as its own state would lose the connection the first time two holders refreshed, or
//! the first time a process died between a refresh and its write. So the client keeps no refresh
//! token at all: every refresh starts from [`TokenStore::load`] and ends with
//! [`TokenStore::rotate`], a compare-and-swap on the refresh token that was sent. Exactly one
//! holder's rotation wins; a loser gets [`Rotation::LostRace`] with what the winner stored and
//! uses it (see [`crate::auth`] for the whole protocol). The store also shares the access token
//! and its expiry, so replicas reuse one token per realm instead of refreshing one each.
//!
//! A PostgreSQL implementation: `load` = `SELECT` of the realm's row; `rotate` =
//! `UPDATE … SET refresh_token = $new, access_token = …, access_expires_at = …
//! WHERE realm = $1 AND refresh_token = $old RETURNING …` — no row updated means a lost race:
//! read the row and return it as `LostRace` (with sealed tokens, compare under `SELECT … FOR
//! UPDATE` in one transaction instead). Errors are returned, never swallowed: the client then
//! fails the call as [`crate::Error::TokenStore`] (transient) rather than use tokens it could
//! not persist.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use attrsync_http_retry::BoxFuture;
use chrono::{DateTime, Utc};

/// A token or secret: compared and cloned like a string, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, to send or to store. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// An access token and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The bearer token.
    pub token: Secret,
    /// When QBO stops accepting it (computed from `expires_in` at the request's start).
    pub expires_at: DateTime<Utc>,
}

/// A realm's tokens, as the token endpoint issues them and the store keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// The refresh token (about 100 days; rotates).
    pub refresh_token: Secret,
    /// When the refresh token expires (`x_refresh_token_expires_in`), when known.
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// The access token (an hour), when one is cached.
    pub access: Option<AccessToken>,
}

impl Tokens {
    /// Tokens with only a refresh token (e.g. a connection imported from elsewhere).
    pub fn refresh_only(refresh_token: impl Into<Secret>) -> Self {
        Self {
            refresh_token: refresh_token.into(),
            refresh_expires_at: None,
            access: None,
        }
    }
}

/// The outcome of [`TokenStore::rotate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The stored refresh token was the one sent; the new tokens are stored.
    Rotated,
    /// Someone else rotated first; nothing was changed. Carries what is stored now.
    LostRace(Tokens),
}

/// Error of a token store (its own error, boxed).
pub type StoreError = Box<dyn std::error::Error + Send + Sync>;

/// Persistent, shared storage of each realm's tokens, with compare-and-swap rotation.
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// The realm's current tokens; `None` when the realm is not connected.
    fn load<'a>(&'a self, realm: &'a str) -> BoxFuture<'a, Result<Option<Tokens>, StoreError>>;

    /// Stores `new` if and only if the realm's stored refresh token is still `old_refresh`
    /// ([`Rotation::Rotated`]); otherwise changes nothing and returns the stored tokens
    /// ([`Rotation::LostRace`]). A realm that is not connected is an error.
    fn rotate<'a>(
        &'a self,
        realm: &'a str,
        old_refresh: &'a Secret,
        new: &'a Tokens,
    ) -> BoxFuture<'a, Result<Rotation, StoreError>>;
}

/// A [`TokenStore`] in memory (tests, tools). Counts rotations and lost races.
#[derive(Default)]
pub struct InMemoryTokenStore {
    realms: Mutex<HashMap<String, Tokens>>,
    rotations: AtomicU64,
    lost_races: AtomicU64,
}

impl fmt::Debug for InMemoryTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryTokenStore")
            .field("realms", &self.lock().len())
            .field("rotations", &self.rotations())
            .finish_non_exhaustive()
    }
}

impl InMemoryTokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tokens>> {
        // The map is valid whatever panicked while holding it.
        self.realms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connects (or reconnects) a realm with `tokens`.
    pub fn insert(&self, realm: &str, tokens: Tokens) {
        self.lock().insert(realm.to_owned(), tokens);
    }

    /// The realm's stored tokens.
    pub fn get(&self, realm: &str) -> Option<Tokens> {
        self.lock().get(realm).cloned()
    }

    /// Rotations that won.
    pub fn rotations(&self) -> u64 {
        self.rotations.load(Ordering::Relaxed)
    }

    /// Rotations refused because another one won first.
    pub fn lost_races(&self) -> u64 {
        self.lost_races.load(Ordering::Relaxed)
    }
}

impl TokenStore for InMemoryTokenStore {
    fn load<'a>(&'a self, realm: &'a str) -> BoxFuture<'a, Result<Option<Tokens>, StoreError>> {
        Box::pin(async move { Ok(self.get(realm)) })
    }

    fn rotate<'a>(
        &'a self,
        realm: &'a str,
        old_refresh: &'a Secret,
        new: &'a Tokens,
    ) -> BoxFuture<'a, Result<Rotation, StoreError>> {
        Box::pin(async move {
            let mut realms = self.lock();
            let Some(current) = realms.get_mut(realm) else {
                return Err(format!("realm {realm} is not connected").into());
            };
            if current.refresh_token != *old_refresh {
                self.lost_races.fetch_add(1, Ordering::Relaxed);
                return Ok(Rotation::LostRace(current.clone()));
            }
            *current = new.clone();
            self.rotations.fetch_add(1, Ordering::Relaxed);
            Ok(Rotation::Rotated)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show() {
        let t = Tokens {
            refresh_token: Secret::new("AB11-very-secret-refresh"),
            refresh_expires_at: None,
            access: Some(AccessToken {
                token: Secret::new("eyJ-access"),
                expires_at: Utc::now(),
            }),
        };
        let shown = format!("{t:?}");
        assert!(
            !shown.contains("very-secret") && !shown.contains("eyJ"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn rotation_is_a_compare_and_swap_on_the_refresh_token() {
        let store = InMemoryTokenStore::new();
        store.insert("r", Tokens::refresh_only("rt1"));
        let two = Tokens::refresh_only("rt2");
        let three = Tokens::refresh_only("rt3");
        let old = Secret::new("rt1");
        assert_eq!(
            store.rotate("r", &old, &two).await.expect("store"),
            Rotation::Rotated
        );
        assert_eq!(
            store.rotate("r", &old, &three).await.expect("store"),
            Rotation::LostRace(two.clone()),
            "the second rotation from rt1 loses and sees the winner"
        );
        assert_eq!(store.get("r"), Some(two));
        assert_eq!((store.rotations(), store.lost_races()), (1, 1));
        assert!(store.rotate("other", &old, &three).await.is_err());
        assert_eq!(store.load("other").await.expect("store"), None);
    }
}
