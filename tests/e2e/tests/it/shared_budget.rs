//! A partner's rate budget is shared by every service: fyle-sync and import-to-fyle reserving
//! slots of the same Fyle org's bucket from their own schemas are spaced as one caller would
//! be (`attrsync_db::shared_rate`, the platform's `attrsync_shared.rate_buckets`).

use std::time::Duration;

use attrsync_config::DatabaseConfig;
use attrsync_db::{shared_rate, testing::TestDatabase};

async fn pool_for(url: &str, schema: &str) -> attrsync_db::Pool {
    let config = DatabaseConfig {
        url: url.to_owned(),
        schema: schema.to_owned(),
        pool_size: 2,
        connect_timeout: Duration::from_secs(5),
        checkout_timeout: Duration::from_secs(5),
        query_timeout: Duration::from_secs(15),
    };
    attrsync_db::connect(&config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_reserving_one_orgs_fyle_budget_are_spaced_as_one_caller() {
    let db = TestDatabase::create(&attrsync_e2e::admin_database_url(), &attrsync_e2e::TEMPLATE)
        .await
        .unwrap();
    let fyle_sync = pool_for(&db.url, "fyle_sync").await;
    let import = pool_for(&db.url, "import_to_fyle").await;
    // 10 per second, no burst: the first reservation is free, each next one waits 100 ms more.
    let mut waits = Vec::new();
    for pool in [&fyle_sync, &import, &fyle_sync, &import] {
        waits.push(
            shared_rate::reserve(pool, "fyle:orShared", 10.0, 1.0)
                .await
                .unwrap(),
        );
    }
    assert_eq!(waits[0], Duration::ZERO);
    for (i, wait) in waits.iter().enumerate().skip(1) {
        let expected = Duration::from_millis(100 * i as u64);
        assert!(
            wait.abs_diff(expected) < Duration::from_millis(60),
            "reservation {i} (alternating services) waits {wait:?}, expected about {expected:?}: {waits:?}"
        );
    }
}
