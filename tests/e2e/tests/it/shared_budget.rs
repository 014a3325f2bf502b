//! A partner's rate budget is shared by every service: fyle-sync and import-to-fyle reserving
//! slots of the same Fyle org's bucket from their own schemas are spaced as one caller would
//! be (`attrsync_db::shared_rate`, the platform's `attrsync_shared.rate_buckets`).

use std::time::Duration;

use attrsync_config::DatabaseConfig;

async fn pool_for(url: &str, schema: &str) -> attrsync_db::Pool {
    let config = DatabaseConfig {
        url: url.to_owned(),
        schema: schema.to_owned(),
        pool_size: 2,
        connect_timeout: Duration::from_secs(5),
        checkout_timeout: Duration::from_secs(5),
        query_timeout: Duration::from_secs(15),
        first_statistics_interval: Duration::ZERO,
    };
    attrsync_db::connect(&config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_reserving_one_orgs_fyle_budget_are_spaced_as_one_caller() {
    let db = attrsync_e2e::test_database().await;
    let fyle_sync = pool_for(&db.url, "fyle_sync").await;
    let import = pool_for(&db.url, "import_to_fyle").await;
    // 2 per second, no burst: the first reservation is served at once, each next one half a
    // second after the one before, whichever service makes it (on the database's clock).
    let mut served = Vec::new();
    for pool in [&fyle_sync, &import, &fyle_sync, &import] {
        served.push(crate::coordination::reserve_served_at(pool, "fyle:orShared", 2.0, 1.0).await);
    }
    assert_eq!(served[0].1, Duration::ZERO);
    for (i, (at, _)) in served.iter().enumerate().skip(1) {
        let after_first = at - served[0].0;
        let expected = 0.5 * i as f64;
        assert!(
            (after_first - expected).abs() < 0.01,
            "reservation {i} (alternating services) is served {after_first:.3}s after the first, \
             expected {expected:.1}s: {served:?}"
        );
    }
}
