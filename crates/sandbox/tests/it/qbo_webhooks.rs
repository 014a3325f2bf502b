//! QBO webhook events that clients must survive: merges with `deletedId`, and deactivation
//! reported as `Delete` or `Update` as configured.

use attrsync_sandbox::{DeactivationOp, QboWebhookConfig, WebhookFormat};
use serde_json::{Value, json};

use crate::common::{REALM, Receiver, start};

fn legacy(url: &str, deactivation: DeactivationOp) -> QboWebhookConfig {
    QboWebhookConfig {
        url: Some(url.to_owned()),
        format: WebhookFormat::Legacy,
        deactivation,
        batch_window_ms: 50,
        ..QboWebhookConfig::default()
    }
}

fn entities(body: &Value) -> Vec<Value> {
    body["eventNotifications"][0]["dataChangeEvent"]["entities"]
        .as_array()
        .expect("entities")
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merging_two_vendors_sends_merge_with_deleted_id_and_deactivates_the_loser() {
    let sb = start().await;
    let rx = Receiver::start().await;
    sb.set_qbo_webhook(legacy(&rx.url, DeactivationOp::Delete));
    let dup = sb
        .qbo()
        .create(
            REALM,
            "Vendor",
            json!({"DisplayName": "Books by Bessie Ltd"}),
        )
        .expect("second vendor");
    let dup_id = dup["Id"].as_str().expect("Id").to_owned();
    rx.wait_for(1).await; // the Create
    let r = reqwest::Client::new()
        .post(format!(
            "{}/_sandbox/qbo/realms/{REALM}/Vendor/{dup_id}/merge",
            sb.qbo_url()
        ))
        .json(&json!({"into": "30"}))
        .send()
        .await
        .expect("admin merge");
    assert_eq!(r.status(), 200);
    let got = rx.wait_for(2).await;
    let e = entities(&got[1].json());
    assert_eq!(e.len(), 1, "one Merge event, not a Delete plus an Update");
    assert_eq!(e[0]["operation"], "Merge");
    assert_eq!(e[0]["id"], "30", "id names the survivor");
    assert_eq!(e[0]["deletedId"], dup_id.as_str());
    let last = e[0]["lastUpdated"].as_str().expect("lastUpdated");
    assert!(
        chrono::DateTime::parse_from_rfc3339(last).is_err(),
        "lastUpdated {last} is Intuit's -0700 form, not RFC 3339"
    );
    assert!(
        chrono::DateTime::parse_from_str(last, "%Y-%m-%dT%H:%M:%S%z").is_ok(),
        "{last}"
    );
    let loser = sb.qbo().get(REALM, "Vendor", &dup_id).expect("kept");
    assert_eq!(loser["Active"], false);
    assert_eq!(loser["DisplayName"], "Books by Bessie Ltd (deleted)");
    let survivor = sb.qbo().get(REALM, "Vendor", "30").expect("survivor");
    assert_eq!(survivor["SyncToken"], "1", "the survivor changed too");
    rx.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_is_delete_or_update_as_configured() {
    for (op, expected) in [
        (DeactivationOp::Delete, "Delete"),
        (DeactivationOp::Update, "Update"),
    ] {
        let sb = start().await;
        let rx = Receiver::start().await;
        sb.set_qbo_webhook(legacy(&rx.url, op));
        sb.qbo()
            .set_active(REALM, "Customer", "8", false)
            .expect("deactivate");
        let got = rx.wait_for(1).await;
        let e = entities(&got[0].json());
        assert_eq!(
            (e[0]["name"].as_str(), e[0]["id"].as_str()),
            (Some("Customer"), Some("8"))
        );
        assert_eq!(e[0]["operation"], expected, "deactivation as {op:?}");
        assert!(e[0].get("deletedId").is_none());
        // reactivation is always an Update
        sb.qbo()
            .set_active(REALM, "Customer", "8", true)
            .expect("reactivate");
        let got = rx.wait_for(2).await;
        assert_eq!(entities(&got[1].json())[0]["operation"], "Update");
        rx.stop().await;
        sb.stop().await;
    }
}
