//! A realm's access token: cached in the client, shared through the [`TokenStore`], refreshed
//! with rotation-safe compare-and-swap.
//!
//! **Cache.** The client caches the access token until `expires_at − refresh_margin` (5 minutes
//! by default). Callers wait on one lock while one of them obtains a token, so a process refreshes
//! once per realm however many calls are in flight. When a data call is answered 401 the caller
//! asks for a token *other than the one refused*; if another task or holder already replaced it,
//! that one is used and nothing is refreshed. Such an adopted token may have been issued before
//! whatever invalidated the refused one, so a call answered 401 again with it asks once more —
//! and then the store still holds the twice-refused token and the client refreshes. A call is
//! thus repeated at most once after a refresh (see [`crate::client`]).
//!
//! **Obtaining a token** (the client holds no refresh token of its own):
//! 1. `load` the realm's tokens. If the stored access token is usable (and is not the one just
//!    refused), use it — another replica refreshed recently ("adopted").
//! 2. Otherwise refresh with the **stored** refresh token and `rotate(old → new)`.
//!    - `Rotated`: ours is the stored state; use the new access token.
//!    - `LostRace(current)`: another holder rotated first. If QBO answered both of us the same
//!      refresh token, use the stored tokens. If it issued two different ones from one (it
//!      honoured the old token for a grace period), the store keeps the winner's while QBO may
//!      already consider ours current and retire the winner's after the grace; so refresh once
//!      more *with the stored token* and rotate again, which leaves the store holding the token
//!      QBO issued last (should QBO refuse the stored token, ours is stored in its place, by the
//!      same compare-and-swap). Never again with the token we sent: it is rotated away.
//! 3. `invalid_grant`: maybe another holder rotated the token we sent between our `load` and our
//!    refresh (with no grace, QBO accepts a refresh token exactly once). Poll the store for up to
//!    `rotation_wait`; if the stored refresh token changes, start again from 1 with the winner's
//!    tokens. If it does not, the token really is dead: [`Error::InvalidGrant`] (broken).
//!
//! At most [`MAX_ROUNDS`] rounds; a store whose token keeps changing under us is reported as
//! [`Error::TokenStore`] (transient) rather than looping.
//!
//! Failure policy: closed. A store that cannot be read or written fails the call
//! ([`Error::TokenStore`]) — a token QBO issued but we could not store would be lost at the next
//! rotation, and one we cannot read cannot be used. A refresh whose answer is lost in transit may
//! rotate a token we never see; the repeat then meets `invalid_grant`, and unless QBO's grace
//! covers it the realm must be reconnected. Nothing here logs a token.

use std::{sync::Arc, time::Duration};

use chrono::{TimeDelta, Utc};
use tokio::{sync::Mutex, time::Instant};

use crate::{
    error::{Error, Result},
    oauth::OAuthClient,
    stats::{Counters, bump},
    tokens::{AccessToken, Rotation, Secret, TokenStore, Tokens},
};

/// Rounds of load → refresh → rotate before giving up on a store that keeps changing.
pub const MAX_ROUNDS: usize = 4;

/// Where a replacement access token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A refresh made for this request.
    Refreshed,
    /// A token that was already cached or stored.
    Adopted,
}

/// How token handling behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuthTiming {
    pub(crate) refresh_margin: Duration,
    pub(crate) rotation_wait: Duration,
}

/// Token state of one realm's client.
#[derive(Debug)]
pub(crate) struct Auth {
    realm: String,
    oauth: OAuthClient,
    store: Arc<dyn TokenStore>,
    timing: AuthTiming,
    cached: Mutex<Option<AccessToken>>,
    counters: Arc<Counters>,
}

impl Auth {
    pub(crate) fn new(
        realm: String,
        oauth: OAuthClient,
        store: Arc<dyn TokenStore>,
        timing: AuthTiming,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            realm,
            oauth,
            store,
            timing,
            cached: Mutex::new(None),
            counters,
        }
    }

    pub(crate) fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    fn usable(&self, a: &AccessToken) -> bool {
        let margin = TimeDelta::from_std(self.timing.refresh_margin).unwrap_or(TimeDelta::MAX);
        a.expires_at
            .checked_sub_signed(margin)
            .is_some_and(|t| Utc::now() < t)
    }

    /// A usable access token: cached, stored by any holder, or freshly refreshed.
    pub(crate) async fn token(&self) -> Result<Secret> {
        let mut cached = self.cached.lock().await;
        if let Some(a) = cached.as_ref().filter(|a| self.usable(a)) {
            return Ok(a.token.clone());
        }
        let (fresh, _) = self.obtain(None).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Replaces `refused` (a data call was answered 401 with it) by another usable access
    /// token; answers whether that one comes from a refresh made just now ([`Source::Refreshed`])
    /// or was already there — cached by another task, stored by another holder
    /// ([`Source::Adopted`]): such a token may have died with the refused one, so the caller may
    /// come back once more, and then the stored token is the refused one and is refreshed.
    pub(crate) async fn replace(&self, refused: &Secret) -> Result<Source> {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|a| a.token != *refused && self.usable(a))
        {
            return Ok(Source::Adopted);
        }
        *cached = None;
        let (fresh, source) = self.obtain(Some(refused)).await?;
        *cached = Some(fresh);
        Ok(source)
    }

    async fn load(&self) -> Result<Tokens> {
        self.store
            .load(&self.realm)
            .await
            .map_err(|e| Error::TokenStore(e.to_string()))?
            .ok_or_else(|| Error::NotConnected {
                realm: self.realm.clone(),
            })
    }

    /// The protocol of the module docs.
    async fn obtain(&self, refused: Option<&Secret>) -> Result<(AccessToken, Source)> {
        let mut reconcile = false;
        // Our tokens from a lost race with two refresh tokens issued, until the re-rotation
        // settles which one QBO keeps.
        let mut ours: Option<Tokens> = None;
        for _ in 0..MAX_ROUNDS {
            let stored = self.load().await?;
            if !reconcile
                && let Some(a) = stored
                    .access
                    .as_ref()
                    .filter(|a| Some(&a.token) != refused && self.usable(a))
            {
                bump(&self.counters.adopted_tokens);
                return Ok((a.clone(), Source::Adopted));
            }
            reconcile = false;
            let new = match self.oauth.refresh(&stored.refresh_token).await {
                Ok(new) => new,
                Err(Error::InvalidGrant { message }) => {
                    if self.rotated_meanwhile(&stored.refresh_token).await? {
                        tracing::info!(realm = %self.realm, "qbo refresh token was rotated by another holder; using theirs");
                        continue;
                    }
                    // The winner's token is dead but the one QBO issued us may be its current.
                    if let Some(mine) = ours.take() {
                        match self.store_rotation(&stored.refresh_token, &mine).await? {
                            Rotation::Rotated => {
                                if let Some(a) = mine.access.filter(|a| self.usable(a)) {
                                    return Ok((a, Source::Refreshed));
                                }
                            }
                            Rotation::LostRace(_) => bump(&self.counters.lost_races),
                        }
                        continue;
                    }
                    return Err(Error::InvalidGrant { message });
                }
                Err(e) => return Err(e),
            };
            let Some(access) = new.access.clone() else {
                return Err(Error::Protocol {
                    status: 200,
                    message: "refresh answered no access token".into(),
                });
            };
            match self.store_rotation(&stored.refresh_token, &new).await? {
                Rotation::Rotated => {
                    tracing::debug!(realm = %self.realm, "qbo tokens refreshed and stored");
                    return Ok((access, Source::Refreshed));
                }
                Rotation::LostRace(current) => {
                    bump(&self.counters.lost_races);
                    if current.refresh_token == new.refresh_token {
                        // QBO answered both holders the same refresh token: nothing to repair.
                        let access = current.access.filter(|a| self.usable(a)).unwrap_or(access);
                        return Ok((access, Source::Refreshed));
                    }
                    tracing::warn!(realm = %self.realm, "qbo issued two refresh tokens from one; re-rotating from the stored one");
                    reconcile = true;
                    ours = Some(new);
                }
            }
        }
        Err(Error::TokenStore(format!(
            "the refresh token of realm {} changed under every one of {MAX_ROUNDS} rotations",
            self.realm
        )))
    }

    async fn store_rotation(&self, old: &Secret, new: &Tokens) -> Result<Rotation> {
        self.store
            .rotate(&self.realm, old, new)
            .await
            .map_err(|e| Error::TokenStore(e.to_string()))
    }

    /// Whether the stored refresh token stops being `sent` within `rotation_wait`.
    async fn rotated_meanwhile(&self, sent: &Secret) -> Result<bool> {
        let deadline = Instant::now() + self.timing.rotation_wait;
        let step = (self.timing.rotation_wait / 20)
            .clamp(Duration::from_millis(10), Duration::from_millis(250));
        loop {
            if self.load().await?.refresh_token != *sent {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(step).await;
        }
    }
}
