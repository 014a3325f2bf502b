//! REPORT, EXPENSE and ORG_SETTING webhooks emitted through the admin API, delivered like
//! attribute webhooks to the subscriptions that list them.

use serde_json::{Value, json};

use crate::{
    common::{Fyle, ORG, Receiver, start},
    webhooks::subscribe,
};

async fn emit(sb: &attrsync_sandbox::SandboxHandle, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/_sandbox/fyle/orgs/{ORG}/events", sb.fyle_url()))
        .json(&body)
        .send()
        .await
        .expect("admin events");
    (r.status().as_u16(), r.json().await.expect("JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_expense_and_org_setting_events_reach_subscribers() {
    let sb = start().await;
    let rx = Receiver::start().await;
    let fyle = Fyle::connect(&sb).await;
    subscribe(&fyle, &rx.url).await;

    let (status, sent) = emit(
        &sb,
        json!({"resource": "REPORT", "action": "ADMIN_APPROVED", "data": {"id": "rp1s1L3QtMpF", "amount": 150}}),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let (status, _) = emit(
        &sb,
        json!({"resource": "EXPENSE", "action": "ADDED_TO_REPORT", "data": {"report_id": "rp1s1L3QtMpF"}}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = emit(&sb, json!({"resource": "ORG_SETTING", "action": "UPDATED"})).await;
    assert_eq!(status, 200);

    let got = rx.wait_for(3).await;
    let report = got[0].json();
    assert_eq!(report, sent, "the body returned is the body delivered");
    assert_eq!(
        (report["action"].as_str(), report["resource"].as_str()),
        (Some("ADMIN_APPROVED"), Some("REPORT"))
    );
    assert_eq!(report["reason"], "Admin approved the report.");
    assert_eq!(report["data"]["id"], "rp1s1L3QtMpF");
    assert_eq!(report["data"]["state"], "APPROVED");
    assert_eq!(report["data"]["org_id"], ORG);
    let expense = got[1].json();
    assert_eq!(expense["resource"], "EXPENSE");
    assert_eq!(expense["data"]["report_id"], "rp1s1L3QtMpF");
    assert!(
        expense["data"]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("tx"))
    );
    let setting = got[2].json();
    assert_eq!(
        (setting["action"].as_str(), setting["resource"].as_str()),
        (Some("UPDATED"), Some("ORG_SETTING"))
    );
    assert_eq!(setting["data"]["org_id"], ORG);
    assert!(setting["data"]["regional_settings"]["locale"]["timezone"].is_string());

    let (status, body) = emit(&sb, json!({"resource": "REPORT", "action": "SUBMITTED"})).await;
    assert_eq!(status, 400, "not an admin-subscription action: {body}");
    rx.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_go_only_to_subscriptions_that_list_their_resource() {
    let sb = start().await;
    let rx = Receiver::start().await;
    let fyle = Fyle::connect(&sb).await;
    let (status, _) = fyle
        .post(
            "/admin/subscriptions",
            &json!({"data": {"is_enabled": true, "webhook_url": rx.url, "subscribed_resources": ["CATEGORY"]}}),
        )
        .await;
    assert_eq!(status, 200);
    emit(&sb, json!({"resource": "REPORT", "action": "PAID"})).await;
    sb.fyle()
        .rename(ORG, "categories", "22330021", "Trips")
        .expect("rename");
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].json()["resource"], "CATEGORY");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(rx.received().len(), 1, "the REPORT event went nowhere");
    rx.stop().await;
    sb.stop().await;
}
