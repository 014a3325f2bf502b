//! Writes (create, sparse update with SyncToken, duplicate names, `requestid`) and CDC
//! (changes, deletions, the 30-day look-back) against the sandbox.

use attrsync_qbo_client::{Disposition, Error, Query};
use attrsync_sandbox::{FaultAction, FaultRule, Side};
use chrono::{TimeDelta, Utc};
use serde_json::json;

use crate::common::{REALM, calls, client, sandbox};

const VENDOR_POST: &str = "POST /v3/company/{realm}/vendor";
const CDC: &str = "GET /v3/company/{realm}/cdc";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_then_sparse_update_and_a_stale_sync_token_is_typed() {
    let sb = sandbox().await;
    let qbo = client(&sb);
    let v = qbo
        .create(
            "Vendor",
            json!({"DisplayName": "Harbor Supplies", "PrimaryEmailAddr": {"Address": "ap@harbor.example"}}),
            None,
        )
        .await
        .expect("create");
    let id = v["Id"].as_str().expect("id").to_owned();
    assert_eq!(v["SyncToken"], "0");

    let updated = qbo
        .update_sparse(
            "Vendor",
            &id,
            "0",
            json!({"DisplayName": "Harbor Supplies Ltd"}),
            None,
        )
        .await
        .expect("sparse update");
    assert_eq!(updated["SyncToken"], "1");
    assert_eq!(updated["DisplayName"], "Harbor Supplies Ltd");
    assert_eq!(
        updated["PrimaryEmailAddr"]["Address"], "ap@harbor.example",
        "sparse: the rest is kept"
    );

    let err = qbo
        .update_sparse("Vendor", &id, "0", json!({"Active": false}), None)
        .await
        .expect_err("stale");
    assert!(
        matches!(&err, Error::StaleObject(f) if f.code() == Some(5010)),
        "{err:?}"
    );
    assert_eq!(err.disposition(), Disposition::Rejected);

    let read = qbo.read("Vendor", &id).await.expect("read");
    assert_eq!(read["SyncToken"], "1", "the stale update changed nothing");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_name_on_create_is_typed_with_its_detail() {
    let sb = sandbox().await;
    let qbo = client(&sb);
    let err = qbo
        .create("Vendor", json!({"DisplayName": "Books by Bessie"}), None)
        .await
        .expect_err("the demo realm has this vendor");
    let Error::DuplicateName(fault) = &err else {
        panic!("expected DuplicateName, got {err:?}");
    };
    assert_eq!(fault.code(), Some(6240));
    assert!(
        fault
            .detail()
            .is_some_and(|d| d.contains("already exists") && d.contains("vendor")),
        "{fault}"
    );
    assert_eq!(err.disposition(), Disposition::Rejected);
    // The caller links to the existing entity instead.
    let existing = qbo
        .query_all(&Query::select("Vendor").where_eq("DisplayName", "Books by Bessie"))
        .await
        .expect("lookup");
    assert_eq!(existing.len(), 1);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_carry_a_request_id_so_repeats_are_applied_once() {
    let sb = sandbox().await;
    let qbo = client(&sb);
    // The same logical create sent twice (a retry after a lost answer, or after a restart).
    let first = qbo
        .create(
            "Vendor",
            json!({"DisplayName": "Once Only"}),
            Some("evt-01J0000000001"),
        )
        .await
        .expect("create");
    let again = qbo
        .create(
            "Vendor",
            json!({"DisplayName": "Once Only"}),
            Some("evt-01J0000000001"),
        )
        .await
        .expect("QBO answers the repeat with the first answer, not a duplicate-name fault");
    assert_eq!(first["Id"], again["Id"]);

    // A 503 before QBO applied anything: the client repeats the write.
    sb.faults().add(FaultRule {
        side: Some(Side::Qbo),
        endpoint: VENDOR_POST.into(),
        action: FaultAction::ServerError { status: 503 },
        skip: 0,
        times: Some(1),
    });
    qbo.create("Vendor", json!({"DisplayName": "After A 503"}), None)
        .await
        .expect("repeated after the 503");
    assert_eq!(calls(&sb, VENDOR_POST), 4);
    assert_eq!(qbo.stats().retries, 1);
    assert_eq!(qbo.stats().writes, 4);

    let err = qbo
        .create(
            "Vendor",
            json!({"DisplayName": "X", "NotAProperty": 1}),
            None,
        )
        .await
        .expect_err("unknown property");
    assert!(
        matches!(&err, Error::Validation { status: 400, fault } if fault.code() == Some(2010)),
        "{err:?}"
    );
    let err = qbo
        .create("Vendor", json!({"Id": "30", "DisplayName": "X"}), None)
        .await
        .expect_err("a create has no Id");
    assert!(matches!(err, Error::InvalidRequest(_)));
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_returns_changed_objects_and_deletions() {
    let sb = sandbox().await;
    let qbo = client(&sb);
    let since = Utc::now() - TimeDelta::minutes(5);
    let customer = qbo
        .create("Customer", json!({"DisplayName": "Blue Harbor"}), None)
        .await
        .expect("create");
    sb.qbo()
        .rename(REALM, "Account", "7", "Advertising & Promotion")
        .expect("rename");
    sb.qbo().delete(REALM, "Vendor", "30").expect("delete");

    let changes = qbo
        .cdc(&["Customer", "Vendor", "Account", "Class"], since)
        .await
        .expect("cdc");
    let find = |entity: &str, id: &str| {
        changes
            .changes
            .iter()
            .find(|c| c.entity == entity && c.id == id)
            .unwrap_or_else(|| panic!("{entity} {id} in {changes:?}"))
    };
    let c = find("Customer", customer["Id"].as_str().expect("id"));
    assert!(!c.deleted);
    assert_eq!(c.object["DisplayName"], "Blue Harbor");
    let a = find("Account", "7");
    assert_eq!(a.object["Name"], "Advertising & Promotion");
    let v = find("Vendor", "30");
    assert!(v.deleted, "{v:?}");
    assert!(v.last_updated.is_some());
    assert_eq!(
        changes.changes.len(),
        3,
        "nothing else changed: {changes:?}"
    );
    assert!(!changes.at_cap());
    assert!(changes.latest.is_some());
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_older_than_the_look_back_is_refused_without_a_request() {
    let sb = sandbox().await;
    let qbo = client(&sb);
    let err = qbo
        .cdc(&["Customer"], Utc::now() - TimeDelta::days(31))
        .await
        .expect_err("too old");
    assert!(matches!(err, Error::CdcTooOld { .. }), "{err:?}");
    assert_eq!(err.disposition(), Disposition::Rejected);
    let err = qbo
        .cdc(&["TaxCode"], Utc::now())
        .await
        .expect_err("not supported by CDC");
    assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
    assert_eq!(calls(&sb, CDC), 0);
    assert_eq!(qbo.stats().requests, 0);
    sb.stop().await;
}
