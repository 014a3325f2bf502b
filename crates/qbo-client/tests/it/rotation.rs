//! Rotating refresh tokens with two holders (replicas) of one token store: whatever the order of
//! their refreshes, one rotation wins, both calls succeed, and the store ends holding a refresh
//! token QBO still accepts — also after QBO's grace for superseded tokens has passed.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use attrsync_qbo_client::{
    BoxFuture, Disposition, Error, InMemoryTokenStore, Query, Rotation, Secret, StoreError,
    TokenStore, Tokens,
};
use attrsync_sandbox::{Clock, QboControl, SandboxConfig, Seed};
use tokio::sync::Barrier;

use crate::common::{
    QUERY, REALM, TOKEN, calls, calls_with_status, client_with, fast_options, sandbox,
    sandbox_with, store,
};

/// Where the two holders are made to meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meet {
    /// Both have loaded the same refresh token before either refreshes.
    BeforeRefresh,
    /// Both have refreshed before either stores.
    BeforeRotate,
}

/// An in-memory store that holds the first two loads (or rotations) until both have arrived,
/// and may then move QBO's clock on before letting them go.
#[derive(Debug)]
struct Gated {
    inner: InMemoryTokenStore,
    meet: Meet,
    arrivals: AtomicUsize,
    barrier: Barrier,
    then_advance: Option<(Clock, Duration)>,
    /// Lets the holder whose new refresh token QBO has already superseded store first, so
    /// the store's winner is the dead token.
    dead_wins: Option<QboControl>,
}

impl Gated {
    fn new(inner: InMemoryTokenStore, meet: Meet) -> Self {
        Self {
            inner,
            meet,
            arrivals: AtomicUsize::new(0),
            barrier: Barrier::new(2),
            then_advance: None,
            dead_wins: None,
        }
    }

    async fn gate(&self, at: Meet, new_refresh: Option<&Secret>) {
        if self.meet == at && self.arrivals.fetch_add(1, Ordering::SeqCst) < 2 {
            let leader = self.barrier.wait().await.is_leader();
            if let (true, Some((clock, by))) = (leader, &self.then_advance) {
                clock.advance(*by);
            }
            self.barrier.wait().await;
            if let (Some(qbo), Some(new)) = (&self.dead_wins, new_refresh)
                && qbo.refresh_token(REALM).as_deref() == Some(new.expose())
            {
                // QBO's current token: let the other (superseded) one store first.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

impl TokenStore for Gated {
    fn load<'a>(&'a self, realm: &'a str) -> BoxFuture<'a, Result<Option<Tokens>, StoreError>> {
        Box::pin(async move {
            let loaded = self.inner.load(realm).await;
            self.gate(Meet::BeforeRefresh, None).await;
            loaded
        })
    }

    fn rotate<'a>(
        &'a self,
        realm: &'a str,
        old_refresh: &'a Secret,
        new: &'a Tokens,
    ) -> BoxFuture<'a, Result<Rotation, StoreError>> {
        Box::pin(async move {
            self.gate(Meet::BeforeRotate, Some(&new.refresh_token))
                .await;
            self.inner.rotate(realm, old_refresh, new).await
        })
    }
}

fn gated(sb: &attrsync_sandbox::SandboxHandle, meet: Meet) -> Arc<Gated> {
    let inner = InMemoryTokenStore::new();
    inner.insert(
        REALM,
        store(sb).get(REALM).expect("the realm's refresh token"),
    );
    Arc::new(Gated::new(inner, meet))
}

async fn both_query(a: &attrsync_qbo_client::QboClient, b: &attrsync_qbo_client::QboClient) {
    let q = Query::select("Account");
    let (ra, rb) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(a.query_all(&q), b.query_all(&q))
    })
    .await
    .expect("both replicas finish");
    assert!(!ra.expect("replica A's call").is_empty());
    assert!(!rb.expect("replica B's call").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_refreshing_one_token_at_once_lose_nothing() {
    // Grace 0 (the sandbox default): QBO accepts the shared refresh token once.
    let sb = sandbox().await;
    let store = gated(&sb, Meet::BeforeRefresh);
    let a = client_with(&sb, store.clone(), fast_options());
    let b = client_with(&sb, store.clone(), fast_options());
    both_query(&a, &b).await;

    assert_eq!(store.inner.rotations(), 1, "exactly one rotation won");
    assert_eq!(calls(&sb, TOKEN), 2, "both refreshed with the same token…");
    assert_eq!(
        calls_with_status(&sb, TOKEN, 400),
        1,
        "…and QBO refused the second (invalid_grant)"
    );
    let (sa, sb_) = (a.stats(), b.stats());
    assert_eq!(sa.refreshes + sb_.refreshes, 1);
    assert_eq!(
        sa.adopted_tokens + sb_.adopted_tokens,
        1,
        "the loser used the winner's access token"
    );

    // The stored refresh token is QBO's current one and still works.
    let stored = store.inner.get(REALM).expect("stored");
    assert_eq!(
        Some(stored.refresh_token.expose()),
        sb.qbo().refresh_token(REALM).as_deref()
    );
    sb.qbo().expire_tokens();
    both_query(&a, &b).await;
    assert_eq!(
        calls_with_status(&sb, TOKEN, 200),
        2,
        "one more refresh, from the stored token, for both replicas"
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_grace_period_the_store_ends_on_the_token_qbo_issued_last() {
    // QBO honours a superseded refresh token for a minute: both refreshes succeed, QBO has
    // issued two tokens from one, and the second supersedes the first.
    let sb = sandbox_with(SandboxConfig {
        seed: Seed::Demo,
        qbo_refresh_grace: Duration::from_secs(60),
        ..SandboxConfig::default()
    })
    .await;
    let store = gated(&sb, Meet::BeforeRotate);
    let a = client_with(&sb, store.clone(), fast_options());
    let b = client_with(&sb, store.clone(), fast_options());
    both_query(&a, &b).await;

    assert_eq!(store.inner.lost_races(), 1, "one rotation lost the race");
    assert_eq!(a.stats().lost_races + b.stats().lost_races, 1);
    assert_eq!(
        store.inner.rotations(),
        2,
        "the winner's, then the loser's re-rotation from the stored token"
    );
    let stored = store.inner.get(REALM).expect("stored");
    assert_eq!(
        Some(stored.refresh_token.expose()),
        sb.qbo().refresh_token(REALM).as_deref(),
        "the store holds the token QBO issued last"
    );

    // Past the grace period every superseded token is dead; the stored one is not.
    sb.clock().advance(Duration::from_secs(120));
    sb.qbo().expire_tokens();
    both_query(&a, &b).await;
    assert_eq!(calls_with_status(&sb, TOKEN, 400), 0);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_stored_token_dies_in_the_race_the_losers_token_is_stored_instead() {
    // Both refreshes succeed within a one-second grace; by the time they store, the grace is
    // over and the token QBO superseded — the one stored first — is dead: the loser's
    // re-rotation from it is refused, and the loser's own token must be stored instead.
    let sb = sandbox_with(SandboxConfig {
        seed: Seed::Demo,
        qbo_refresh_grace: Duration::from_secs(1),
        ..SandboxConfig::default()
    })
    .await;
    let inner = InMemoryTokenStore::new();
    inner.insert(REALM, store(&sb).get(REALM).expect("refresh token"));
    let store = Arc::new(Gated {
        then_advance: Some((sb.clock().clone(), Duration::from_secs(5))),
        dead_wins: Some(sb.qbo()),
        ..Gated::new(inner, Meet::BeforeRotate)
    });
    let a = client_with(&sb, store.clone(), fast_options());
    let b = client_with(&sb, store.clone(), fast_options());
    both_query(&a, &b).await;
    assert_eq!(
        calls_with_status(&sb, TOKEN, 400),
        1,
        "the re-rotation from the dead token was refused"
    );
    assert_eq!(
        store.inner.rotations(),
        2,
        "the winner's, then the loser's own"
    );
    let stored = store.inner.get(REALM).expect("stored");
    assert_eq!(
        Some(stored.refresh_token.expose()),
        sb.qbo().refresh_token(REALM).as_deref(),
        "the store holds QBO's current token"
    );
    sb.qbo().expire_tokens();
    both_query(&a, &b).await;
    sb.stop().await;
}

/// A store whose database is down.
#[derive(Debug, Default)]
struct Down(AtomicUsize);

impl TokenStore for Down {
    fn load<'a>(&'a self, _realm: &'a str) -> BoxFuture<'a, Result<Option<Tokens>, StoreError>> {
        Box::pin(async move {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err("connection refused".into())
        })
    }

    fn rotate<'a>(
        &'a self,
        _realm: &'a str,
        _old: &'a Secret,
        _new: &'a Tokens,
    ) -> BoxFuture<'a, Result<Rotation, StoreError>> {
        Box::pin(async { Err("connection refused".into()) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_store_that_is_down_fails_the_call_closed() {
    let sb = sandbox().await;
    let down = Arc::new(Down::default());
    let qbo = client_with(&sb, down.clone(), fast_options());
    let err = qbo
        .query_all(&Query::select("Account"))
        .await
        .expect_err("no tokens");
    assert!(matches!(err, Error::TokenStore(_)), "{err:?}");
    assert_eq!(err.disposition(), Disposition::Transient);
    assert_eq!(down.0.load(Ordering::Relaxed), 1);
    assert_eq!(calls(&sb, TOKEN) + calls(&sb, QUERY), 0, "nothing was sent");
    sb.stop().await;
}
