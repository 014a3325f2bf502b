//! The SDK's `list_all` loop against 10,000-row collections terminates with exactly `count` rows,
//! in order and without duplicates, whatever the page size.

use std::collections::HashSet;

use serde_json::Value;

use crate::common::{Fyle, ORG, start, start_unthrottled};

fn ids(rows: &[Value]) -> Vec<i64> {
    rows.iter()
        .map(|r| r["id"].as_i64().expect("integer id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_all_returns_exactly_count_rows_at_every_page_size() {
    let sb = start_unthrottled().await;
    sb.fyle()
        .generate(ORG, "categories", 10_000)
        .expect("generate");
    let fyle = Fyle::connect(&sb).await;
    let expected = 10_000 + 3; // generated + the three demo fixtures
    for page_size in [None, Some(1), Some(7), Some(50), Some(199), Some(200)] {
        let (count, rows) = fyle
            .list_all(
                "/admin/categories",
                &[("order", "updated_at.desc")],
                page_size,
            )
            .await;
        assert_eq!(count, expected, "count at page size {page_size:?}");
        assert_eq!(rows.len(), count, "rows at page size {page_size:?}");
        let unique: HashSet<i64> = ids(&rows).into_iter().collect();
        assert_eq!(
            unique.len(),
            count,
            "no duplicates at page size {page_size:?}"
        );
        let stamps: Vec<&str> = rows
            .iter()
            .map(|r| r["updated_at"].as_str().expect("updated_at"))
            .collect();
        assert!(
            stamps.windows(2).all(|w| w[0] >= w[1]),
            "updated_at.desc order at page size {page_size:?}"
        );
    }
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_list_all_counts_only_matches() {
    let sb = start_unthrottled().await;
    sb.fyle()
        .generate(ORG, "projects", 10_000)
        .expect("generate");
    // disable every 10th generated project
    for k in (0..10_000).step_by(10) {
        let id = (11_000_001 + k).to_string();
        sb.fyle()
            .set_enabled(ORG, "projects", &id, false)
            .expect("disable");
    }
    let fyle = Fyle::connect(&sb).await;
    let (count, rows) = fyle
        .list_all(
            "/admin/projects",
            &[("order", "updated_at.desc,id"), ("is_enabled", "eq.true")],
            Some(199),
        )
        .await;
    // 10,000 generated - 1,000 disabled + 1 enabled demo project
    assert_eq!(count, 9_001);
    assert_eq!(rows.len(), 9_001);
    assert!(rows.iter().all(|r| r["is_enabled"] == true));
    let (disabled, _) = fyle
        .list_all(
            "/admin/projects",
            &[("order", "id.desc"), ("is_enabled", "eq.False")],
            None,
        )
        .await;
    assert_eq!(disabled, 1_001, "eq.False matches case-insensitively");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_size_limits_are_enforced() {
    let sb = start().await;
    let fyle = Fyle::connect(&sb).await;
    let (status, body) = fyle
        .get("/admin/categories", &[("order", "id"), ("limit", "201")])
        .await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().expect("message").contains("limit"));
    let (status, body) = fyle.get("/admin/categories", &[("order", "id")]).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().map(Vec::len), Some(3));
    let (status, body) = fyle
        .get("/admin/categories", &[("order", "id"), ("offset", "50")])
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["count"], 3, "count stays the total past the end");
    assert_eq!(body["data"], serde_json::json!([]));
    sb.stop().await;
}
