//! Coordination between replicas through PostgreSQL: leases and the shared rate limit.

use std::time::Duration;

use attrsync_db::{lease, shared_rate, testing::TestDatabase};

async fn pool(database: &TestDatabase) -> attrsync_db::Pool {
    let env = attrsync_e2e::service_env("fyle-sync", &database.url, "t.", None);
    let config =
        <fyle_sync::Config as attrsync_config::ServiceConfig>::from_env_pairs(env).unwrap();
    attrsync_db::connect(&config.database).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_has_one_holder_until_it_expires_and_a_lost_lease_cannot_be_renewed() {
    let database = attrsync_e2e::test_database().await;
    // Two replicas, two pools.
    let (a, b) = (pool(&database).await, pool(&database).await);
    // Held leases last a minute, so a slow machine between two steps cannot expire one; the
    // crash below is a renewal with a short TTL that is then left to run out.
    let ttl = Duration::from_secs(60);
    let held = lease::acquire(&a, "pull:7:CATEGORY", "replica-a", ttl)
        .await
        .unwrap()
        .expect("free");
    assert!(
        lease::acquire(&b, "pull:7:CATEGORY", "replica-b", ttl)
            .await
            .unwrap()
            .is_none(),
        "held by a"
    );
    assert!(
        lease::acquire(&b, "pull:7:PROJECT", "replica-b", ttl)
            .await
            .unwrap()
            .is_some(),
        "another name is free"
    );
    assert!(
        lease::renew(&a, &held, Duration::from_millis(300))
            .await
            .unwrap()
    );
    // a crashes (stops renewing): after the TTL, b takes over with a higher fencing number.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let taken = lease::acquire(&b, "pull:7:CATEGORY", "replica-b", ttl)
        .await
        .unwrap()
        .expect("expired");
    assert!(taken.fencing > held.fencing);
    assert!(!lease::renew(&a, &held, ttl).await.unwrap(), "a lost it");
    lease::release(&a, &held).await.unwrap();
    assert!(
        lease::acquire(&a, "pull:7:CATEGORY", "replica-a", ttl)
            .await
            .unwrap()
            .is_none(),
        "a stale release does not free b's lease"
    );
    lease::release(&b, &taken).await.unwrap();
    assert!(
        lease::acquire(&a, "pull:7:CATEGORY", "replica-a", ttl)
            .await
            .unwrap()
            .is_some()
    );
}

/// A pull writes two pages at once, each transaction checking its lease: the checks must not
/// hold off the holder's own renewal (they could, back to back, under `FOR SHARE`), yet a
/// takeover must still wait for a transaction that checked the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_checked_the_lease_delays_a_takeover_but_not_the_holders_renewal() {
    use diesel_async::AsyncConnection as _;
    let database = attrsync_e2e::test_database().await;
    let (a, b) = (pool(&database).await, pool(&database).await);
    let held = lease::acquire(&a, "pull:7:CATEGORY", "replica-a", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("free");
    // A page's transaction checks the lease, then stays open until told to commit.
    let (checked_tx, checked) = tokio::sync::oneshot::channel::<bool>();
    let (commit, commit_rx) = tokio::sync::oneshot::channel::<()>();
    let page = {
        let (a, held) = (a.clone(), held.clone());
        tokio::spawn(async move {
            let mut conn = a.get().await.unwrap();
            conn.transaction::<_, diesel::result::Error, _>(async move |conn| {
                checked_tx.send(lease::is_live(conn, &held).await?).ok();
                commit_rx.await.ok();
                Ok(())
            })
            .await
            .unwrap();
        })
    };
    assert!(checked.await.unwrap(), "the page saw its lease live");
    // The holder's renewal goes through while the page is open (here, one that lets the
    // lease run out soon)…
    let renewed = tokio::time::timeout(
        Duration::from_secs(5),
        lease::renew(&a, &held, Duration::from_millis(300)),
    )
    .await
    .expect("a renewal does not wait for its holder's checking transaction")
    .unwrap();
    assert!(renewed);
    // …but once it has run out, another replica's takeover waits for the page to end.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let takeover = tokio::spawn({
        let b = b.clone();
        async move { lease::acquire(&b, "pull:7:CATEGORY", "replica-b", Duration::from_secs(60)).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !takeover.is_finished(),
        "a takeover waits for the transaction that checked the lease"
    );
    commit.send(()).unwrap();
    page.await.unwrap();
    let taken = takeover.await.unwrap().unwrap().expect("expired");
    assert!(taken.fencing > held.fencing);
}

/// Reserves one call on `key` and says when it is served, in seconds since the epoch on the
/// database's clock (the moment the bucket was stamped plus the wait the caller was given), and
/// the wait itself. Measuring on the database's clock keeps a slow machine between two calls out
/// of the figures.
pub(crate) async fn reserve_served_at(
    pool: &attrsync_db::Pool,
    key: &str,
    rate: f64,
    burst: f64,
) -> (f64, Duration) {
    #[derive(diesel::QueryableByName)]
    struct Stamp {
        #[diesel(sql_type = diesel::sql_types::Double)]
        at: f64,
    }
    let wait = shared_rate::reserve(pool, key, rate, burst).await.unwrap();
    let mut conn = pool.get().await.unwrap();
    let stamp: Stamp = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT EXTRACT(EPOCH FROM refreshed_at)::float8 AS at \
             FROM attrsync_shared.rate_buckets WHERE key = $1",
        )
        .bind::<diesel::sql_types::Text, _>(key),
        &mut conn,
    )
    .await
    .unwrap();
    (stamp.at + wait.as_secs_f64(), wait)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_rate_limit_and_are_spaced_as_one_caller() {
    let database = attrsync_e2e::test_database().await;
    let (a, b) = (pool(&database).await, pool(&database).await);
    // 2 per second with a burst of 10, taken alternately by two replicas. Only a stall of half
    // a second between two calls (the bucket refilling to its cap) could move the figures.
    let (rate, burst) = (2.0, 10.0);
    let (mut slots, mut waits) = (Vec::new(), Vec::new());
    for n in 0..16 {
        let replica = if n % 2 == 0 { &a } else { &b };
        let (slot, wait) = reserve_served_at(replica, "fyle:orX", rate, burst).await;
        slots.push(slot);
        waits.push(wait);
    }
    assert!(waits[..10].iter().all(|w| w.is_zero()), "{waits:?}");
    // The 11th call is served half a second after the first, the 16th three seconds after it,
    // whichever replica makes it.
    for (i, slot) in slots[10..].iter().enumerate() {
        let expected = (i as f64 + 1.0) / rate;
        let after_first = slot - slots[0];
        assert!(
            (after_first - expected).abs() < 0.01,
            "call {} is served {after_first:.3}s after the first, expected {expected:.1}s",
            i + 11
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_in_flight_cap_and_a_crashed_holders_slot_returns_after_its_lease() {
    use std::{num::NonZeroU32, sync::Arc};

    use attrsync_db::shared_permits::{self, SharedPermits};
    use attrsync_http_retry::{RequestLimiter as _, Unlimited};

    let database = attrsync_e2e::test_database().await;
    let (a, b) = (pool(&database).await, pool(&database).await);
    let cap = NonZeroU32::new(3).unwrap();
    let replica = |pool: &attrsync_db::Pool| {
        SharedPermits::new(
            pool.clone(),
            "qbo",
            Arc::new(Unlimited),
            cap,
            Duration::from_secs(60),
            Duration::from_millis(10),
        )
    };
    let (ra, rb) = (replica(&a), replica(&b));
    let blocked = Duration::from_millis(300);
    let p1 = ra.acquire("realm1").await.unwrap();
    let p2 = rb.acquire("realm1").await.unwrap();
    let _p3 = ra.acquire("realm1").await.unwrap();
    // Three in flight between the two replicas: a fourth waits, from either.
    assert!(
        tokio::time::timeout(blocked, rb.acquire("realm1"))
            .await
            .is_err()
    );
    assert!(
        tokio::time::timeout(blocked, ra.acquire("realm1"))
            .await
            .is_err()
    );
    // Another realm has its own slots.
    let _other = tokio::time::timeout(Duration::from_secs(10), rb.acquire("realm2"))
        .await
        .expect("another realm is not held up")
        .unwrap();
    // A permit one replica drops lets the other replica's waiting request go.
    let waiting = tokio::spawn(async move { rb.acquire("realm1").await.map(drop) });
    tokio::time::sleep(blocked).await;
    assert!(
        !waiting.is_finished(),
        "still waiting while all three are held"
    );
    drop(p2);
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("a freed slot is claimed by the waiting replica")
        .unwrap()
        .unwrap();
    drop(p1);

    // A holder that crashed never releases: its slots come back when their lease ends.
    let key = "qbo:realm3";
    shared_permits::ensure_slots(&a, key, cap).await.unwrap();
    let lease = Duration::from_secs(3);
    let started = std::time::Instant::now();
    for _ in 0..3 {
        let slot = shared_permits::claim(&a, key, cap, "crashed", lease)
            .await
            .unwrap();
        assert!(slot.is_some());
    }
    assert_eq!(
        shared_permits::claim(&b, key, cap, "other", lease)
            .await
            .unwrap(),
        None,
        "no fourth slot"
    );
    assert!(
        !shared_permits::release(&b, key, 0, "not the holder")
            .await
            .unwrap(),
        "only the holder frees a slot"
    );
    let rc = replica(&b);
    tokio::time::timeout(Duration::from_secs(20), rc.acquire("realm3"))
        .await
        .expect("a crashed holder's slot returns after its lease")
        .unwrap();
    assert!(
        started.elapsed() >= lease - Duration::from_millis(200),
        "not before the lease ended: {:?}",
        started.elapsed()
    );

    // A request cancelled while its claim ran frees whatever its token claimed.
    let key = "qbo:realm4";
    shared_permits::ensure_slots(&a, key, cap).await.unwrap();
    for _ in 0..2 {
        shared_permits::claim(&a, key, cap, "cancelled", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        shared_permits::release_holder(&b, key, "cancelled")
            .await
            .unwrap(),
        2
    );
    for _ in 0..3 {
        assert!(
            shared_permits::claim(&b, key, cap, "next", Duration::from_secs(60))
                .await
                .unwrap()
                .is_some(),
            "every slot is free again"
        );
    }
}
