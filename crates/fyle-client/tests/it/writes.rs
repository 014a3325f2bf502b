//! Single and bulk posts, and Fyle's typed 400 bodies.

use attrsync_fyle_client::{BadRequestKind, Disposition, Error, Filters};
use attrsync_sandbox::{FaultAction, FaultRule, Seed, Side};
use serde_json::json;

use crate::common::{ORG, connect, sandbox};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_creates_then_updates_by_id() {
    let sb = sandbox(Seed::Empty, None).await;
    let fyle = connect(&sb).await;
    let created = fyle
        .post(
            "categories",
            json!({"name": "Travel", "sub_category": "Flight"}),
        )
        .await
        .expect("create");
    let id = created["id"].as_i64().expect("Fyle assigns an id");
    assert_eq!(created["display_name"], "Travel / Flight");
    let updated = fyle
        .post(
            "categories",
            json!({"id": id, "name": "Trips", "is_enabled": false}),
        )
        .await
        .expect("update");
    assert_eq!(updated["id"], id);
    assert_eq!(updated["is_enabled"], false);
    assert_eq!(
        sb.fyle()
            .get(ORG, "categories", &id.to_string())
            .expect("stored")["name"],
        "Trips"
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_post_is_one_atomic_request() {
    let sb = sandbox(Seed::Empty, None).await;
    let fyle = connect(&sb).await;
    let rows: Vec<_> = (0..200)
        .map(|i| json!({"name": format!("Account {i:03}"), "code": i.to_string()}))
        .collect();
    fyle.post_bulk("categories", &rows).await.expect("bulk");
    let listing = fyle
        .list_all("categories", &Filters::new())
        .await
        .expect("list");
    assert_eq!(listing.rows.len(), 200);
    assert_eq!(
        listing
            .rows
            .iter()
            .map(|r| r["updated_at"].to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        1,
        "one bulk, one stamp"
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_400_bodies_come_back_typed() {
    let sb = sandbox(Seed::Empty, None).await;
    let fyle = connect(&sb).await;

    let err = fyle
        .post("categories", json!({"sub_category": "no name"}))
        .await
        .expect_err("name is required");
    let Error::WrongParams(bad) = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(&bad.kind, BadRequestKind::Validation(data) if data.to_string().contains("name")),
        "{bad:?}"
    );
    assert_eq!(err.disposition(), Disposition::Rejected);

    fyle.post("categories", json!({"name": "Meals"}))
        .await
        .expect("first");
    let err = fyle
        .post("categories", json!({"name": "Meals"}))
        .await
        .expect_err("duplicate");
    assert!(
        matches!(&err, Error::WrongParams(b) if b.kind == BadRequestKind::Integrity
            && b.message.as_deref().is_some_and(|m| m.contains("Meals"))),
        "{err:?}"
    );

    let err = fyle
        .post_bulk(
            "categories",
            &[json!({"name": "Fine"}), json!({"sub_category": "no name"})],
        )
        .await
        .expect_err("row 1 is invalid");
    let Error::WrongParams(bad) = &err else {
        panic!("{err:?}")
    };
    let BadRequestKind::Bulk(rows) = &bad.kind else {
        panic!("{bad:?}")
    };
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].row, 1, "the index in the posted array");
    assert!(
        sb.fyle().count(ORG, "categories") == 1,
        "nothing of the refused batch was applied"
    );

    sb.faults().add(FaultRule {
        side: Some(Side::Fyle),
        endpoint: "POST /platform/v1/admin/projects/bulk".into(),
        action: FaultAction::BulkError {
            row: 0,
            message: Some("Invalid / disabled department found".into()),
        },
        skip: 0,
        times: Some(1),
    });
    let err = fyle
        .post_bulk("projects", &[json!({"name": "P1"})])
        .await
        .expect_err("injected BulkError");
    assert!(
        matches!(&err, Error::WrongParams(b) if matches!(&b.kind, BadRequestKind::Bulk(r)
            if r[0].message == "Invalid / disabled department found")),
        "{err:?}"
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_and_no_privilege_are_typed() {
    let sb = sandbox(Seed::Demo, None).await;
    let fyle = connect(&sb).await;
    let err = fyle
        .list_all("no_such_resource", &Filters::new())
        .await
        .expect_err("404");
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    sb.faults().add(FaultRule {
        side: Some(Side::Fyle),
        endpoint: "GET /platform/v1/admin/employees".into(),
        action: FaultAction::Status {
            status: 403,
            body: Some(json!({"message": "Forbidden"})),
            retry_after: None,
        },
        skip: 0,
        times: Some(1),
    });
    let err = fyle
        .list_all("employees", &Filters::new())
        .await
        .expect_err("403");
    assert!(
        matches!(&err, Error::NoPrivilege { message } if message == "Forbidden"),
        "{err:?}"
    );
    assert!(fyle.post("../spender", json!({})).await.is_err());
    sb.stop().await;
}
