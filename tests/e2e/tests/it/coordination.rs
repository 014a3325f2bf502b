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
    let database =
        TestDatabase::create(&attrsync_e2e::admin_database_url(), &attrsync_e2e::TEMPLATE)
            .await
            .unwrap();
    // Two replicas, two pools.
    let (a, b) = (pool(&database).await, pool(&database).await);
    let ttl = Duration::from_millis(400);
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
    assert!(lease::renew(&a, &held, ttl).await.unwrap());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_rate_limit_and_are_spaced_as_one_caller() {
    let database =
        TestDatabase::create(&attrsync_e2e::admin_database_url(), &attrsync_e2e::TEMPLATE)
            .await
            .unwrap();
    let (a, b) = (pool(&database).await, pool(&database).await);
    let mut waits = Vec::new();
    // 10 per second with a burst of 10, taken alternately by two replicas within a moment.
    for n in 0..16 {
        let replica = if n % 2 == 0 { &a } else { &b };
        waits.push(
            shared_rate::reserve(replica, "fyle:orX", 10.0, 10.0)
                .await
                .unwrap(),
        );
    }
    assert!(waits[..10].iter().all(|w| w.is_zero()), "{waits:?}");
    // The 11th call waits about 0.1 s, the 16th about 0.6 s, whichever replica makes it.
    let secs: Vec<f64> = waits[10..].iter().map(Duration::as_secs_f64).collect();
    for (i, wait) in secs.iter().enumerate() {
        let expected = 0.1 * (i as f64 + 1.0);
        assert!(
            (wait - expected).abs() < 0.08,
            "call {} waits {wait:.3}s, expected ~{expected:.1}s",
            i + 11
        );
    }
}
