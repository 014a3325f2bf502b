//! Outgoing webhooks on both sides, triggered through the admin API.

use attrsync_sandbox::{
    DeactivationOp, QboWebhookConfig, SandboxConfig, Seed, WebhookFaultAction, WebhookFaultRule,
    WebhookFormat,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::{Fyle, ORG, REALM, Receiver, config, poll, start, start_with};

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

pub async fn subscribe(fyle: &Fyle, url: &str) {
    let (status, _) = fyle
        .post("/admin/subscriptions", &json!({"data": {"is_enabled": true, "webhook_url": url,
            "subscribed_resources": ["EXPENSE", "REPORT", "CATEGORY", "PROJECT", "COST_CENTER", "EXPENSE_FIELD",
                "CORPORATE_CARD", "EMPLOYEE", "TAX_GROUP", "ORG_SETTING"]}}))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fyle_rename_through_admin_api_sends_updated_with_the_full_object() {
    let sb = start().await;
    let rx = Receiver::start().await;
    let fyle = Fyle::connect(&sb).await;
    subscribe(&fyle, &rx.url).await;

    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "{}/_sandbox/fyle/orgs/{ORG}/categories/22330021/rename",
            sb.fyle_url()
        ))
        .json(&json!({"name": "Trips"}))
        .send()
        .await
        .expect("admin rename");
    assert_eq!(r.status(), 200);
    let got = rx.wait_for(1).await;
    let body = got[0].json();
    assert_eq!(body["action"], "UPDATED");
    assert_eq!(body["resource"], "CATEGORY");
    assert_eq!(body["data"]["id"], 22330021);
    assert_eq!(body["data"]["name"], "Trips");
    assert_eq!(body["data"]["display_name"], "Trips / Flight");
    assert_eq!(body["data"]["org_id"], ORG);
    assert!(body["data"]["updated_at"].as_str() > Some("2024-05-01T09:00:00.000000+00:00"));
    assert!(
        got[0].header("X-Fyle-Signature").is_none(),
        "production Fyle signs nothing"
    );
    assert!(got[0].header("webhook-signature").is_none());

    // the list shows the same object
    let (_, list) = fyle
        .get(
            "/admin/categories",
            &[("order", "updated_at.desc"), ("limit", "1")],
        )
        .await;
    assert_eq!(list["data"][0], body["data"]);

    sb.fyle()
        .delete(ORG, "cost_centers", "9587")
        .expect("delete");
    let got = rx.wait_for(2).await;
    let body = got[1].json();
    assert_eq!(
        (body["action"].as_str(), body["resource"].as_str()),
        (Some("DELETED"), Some("COST_CENTER"))
    );
    assert_eq!(
        body["data"],
        json!({"id": 9587, "org_id": ORG, "name": "01: San Francisco"}),
        "DELETED carries only id, org_id and name (reference §2.6)"
    );
    rx.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fyle_webhooks_are_signed_when_a_secret_is_configured() {
    let sb = start_with(SandboxConfig {
        seed: Seed::Demo,
        fyle_webhook_secret: Some("s3cret".into()),
        ..config()
    })
    .await;
    let rx = Receiver::start().await;
    let fyle = Fyle::connect(&sb).await;
    subscribe(&fyle, &rx.url).await;
    // A fixed instant (after every stamp so far) makes the body, and so its signature, a fixed
    // vector.
    sb.clock().pause();
    sb.clock().set_now(
        chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .expect("instant")
            .with_timezone(&chrono::Utc),
    );
    sb.fyle()
        .set_enabled(ORG, "projects", "300177", false)
        .expect("disable");
    let got = rx.wait_for(1).await;
    let w = &got[0];
    assert_eq!(
        String::from_utf8_lossy(&w.body),
        r#"{"action":"UPDATED","data":{"approver_user_ids":[],"approver_users":[],"category_ids":null,"code":"7","created_at":"2022-08-10T16:50:50.914909+00:00","default_billable":null,"description":"Project - Freeman Sporting Goods, Id - 7","display_name":"Freeman Sporting Goods","id":300177,"is_enabled":false,"name":"Freeman Sporting Goods","org_id":"orNoatdUnm1w","restricted_spender_user_ids":null,"sub_project":null,"updated_at":"2030-01-01T00:00:00.000000+00:00"},"resource":"PROJECT"}"#
    );
    // Computed with Python: hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert_eq!(
        w.header("X-Fyle-Signature"),
        Some("1d02c25a9d68af35b1a9518cb4205a93e4c313a2f4a8709424a4bd1280d70bbd")
    );
    let id = w.header("webhook-id").expect("webhook-id");
    let ts = w.header("webhook-timestamp").expect("webhook-timestamp");
    let signed = [id.as_bytes(), b".", ts.as_bytes(), b".", &w.body].concat();
    let expected = format!("v1,{}", STANDARD.encode(hmac(b"s3cret", &signed)));
    assert_eq!(w.header("webhook-signature"), Some(expected.as_str()));
    rx.stop().await;
    sb.stop().await;
}

fn qbo_config(url: &str, format: WebhookFormat, deactivation: DeactivationOp) -> QboWebhookConfig {
    QboWebhookConfig {
        url: Some(url.to_owned()),
        format,
        deactivation,
        batch_window_ms: 50,
        ..QboWebhookConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qbo_rename_through_admin_api_sends_a_signed_legacy_notification() {
    let sb = start().await;
    let rx = Receiver::start().await;
    sb.set_qbo_webhook(qbo_config(
        &rx.url,
        WebhookFormat::Legacy,
        DeactivationOp::Delete,
    ));
    let r = reqwest::Client::new()
        .post(format!(
            "{}/_sandbox/qbo/realms/{REALM}/Customer/8/rename",
            sb.qbo_url()
        ))
        .json(&json!({"name": "Ocean View Road"}))
        .send()
        .await
        .expect("admin rename");
    assert_eq!(r.status(), 200);
    let got = rx.wait_for(1).await;
    let body = got[0].json();
    let n = &body["eventNotifications"][0];
    assert_eq!(n["realmId"], REALM);
    let e = &n["dataChangeEvent"]["entities"][0];
    assert_eq!(
        (
            e["name"].as_str(),
            e["id"].as_str(),
            e["operation"].as_str()
        ),
        (Some("Customer"), Some("8"), Some("Update"))
    );
    let sig = STANDARD.encode(hmac(b"simulator-verifier-token", &got[0].body));
    assert_eq!(got[0].header("intuit-signature"), Some(sig.as_str()));
    let customer = sb.qbo().get(REALM, "Customer", "8").expect("customer");
    assert_eq!(customer["SyncToken"], "3", "rename bumps SyncToken");
    assert_eq!(
        customer["FullyQualifiedName"],
        "Freeman Sporting Goods:Ocean View Road"
    );

    sb.qbo()
        .set_active(REALM, "Vendor", "30", false)
        .expect("deactivate");
    let got = rx.wait_for(2).await;
    let e = &got[1].json()["eventNotifications"][0]["dataChangeEvent"]["entities"][0];
    assert_eq!(
        (e["name"].as_str(), e["operation"].as_str()),
        (Some("Vendor"), Some("Delete")),
        "deactivation as Delete"
    );
    rx.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qbo_webhook_body_and_signature_match_a_fixed_external_vector_over_http() {
    let sb = start().await;
    let rx = Receiver::start().await;
    sb.qbo()
        .load(REALM, "Customer", json!({"Id": "58", "DisplayName": "Blue Harbor", "Active": true, "SyncToken": "0",
            "MetaData": {"CreateTime": "2024-04-01T10:00:00-07:00", "LastUpdatedTime": "2024-04-01T10:00:00-07:00"}}))
        .expect("load");
    sb.set_qbo_webhook(qbo_config(
        &rx.url,
        WebhookFormat::Legacy,
        DeactivationOp::Delete,
    ));
    let at = chrono::DateTime::parse_from_rfc3339("2024-05-02T10:15:30Z")
        .expect("instant")
        .with_timezone(&chrono::Utc);
    sb.clock().set_now(at);
    sb.qbo()
        .update(
            REALM,
            "Customer",
            "58",
            json!({"CompanyName": "Blue Harbor"}),
        )
        .expect("update");
    let got = rx.wait_for(1).await;
    assert_eq!(
        String::from_utf8_lossy(&got[0].body),
        r#"{"eventNotifications":[{"realmId":"9130357766900456","dataChangeEvent":{"entities":[{"name":"Customer","id":"58","operation":"Update","lastUpdated":"2024-05-02T03:15:30-0700"}]}}]}"#,
        "lastUpdated in the company's -0700 form of Intuit's sample"
    );
    // Computed with Python: base64(hmac.new(b"simulator-verifier-token", body, sha256).digest()).
    assert_eq!(
        got[0].header("intuit-signature"),
        Some("KnF3ICVKSdWg63WBpCFgQYEvRhuf6i40vsUBX//LXDs=")
    );
    rx.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qbo_cloudevents_batch_and_update_deactivation() {
    let sb = start().await;
    let rx = Receiver::start().await;
    let mut cfg = qbo_config(&rx.url, WebhookFormat::CloudEvents, DeactivationOp::Update);
    // Wide enough that both changes below fall in one batch however busy the machine.
    cfg.batch_window_ms = 2_000;
    sb.set_qbo_webhook(cfg);
    sb.qbo()
        .rename(REALM, "Account", "7", "Marketing")
        .expect("rename");
    sb.qbo()
        .set_active(REALM, "Class", "5000000000000085682", false)
        .expect("deactivate");
    sb.qbo()
        .rename(REALM, "TaxCode", "2", "CA")
        .expect("tax codes send no webhook");
    let got = rx.wait_for(1).await;
    let events = got[0].json();
    let events = events.as_array().expect("CloudEvents array");
    assert_eq!(
        events.len(),
        2,
        "both changes in one batch, tax code excluded"
    );
    assert_eq!(events[0]["type"], "qbo.account.updated.v1");
    assert_eq!(events[0]["intuitentityid"], "7");
    assert_eq!(events[0]["intuitaccountid"], REALM);
    assert_eq!(events[0]["specversion"], "1.0");
    assert_eq!(
        events[1]["type"], "qbo.class.updated.v1",
        "deactivation reported as update"
    );
    assert_ne!(events[0]["id"], events[1]["id"]);
    let sig = STANDARD.encode(hmac(b"simulator-verifier-token", &got[0].body));
    assert_eq!(got[0].header("intuit-signature"), Some(sig.as_str()));
    rx.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_faults_drop_and_duplicate() {
    let sb = start().await;
    let rx = Receiver::start().await;
    let fyle = Fyle::connect(&sb).await;
    subscribe(&fyle, &rx.url).await;
    sb.faults().add_webhook(WebhookFaultRule {
        side: None,
        action: WebhookFaultAction::Drop,
        skip: 0,
        times: Some(1),
    });
    sb.faults().add_webhook(WebhookFaultRule {
        side: None,
        action: WebhookFaultAction::Duplicate,
        skip: 0,
        times: Some(1),
    });
    sb.fyle()
        .rename(ORG, "categories", "160956", "First")
        .expect("rename");
    sb.fyle()
        .rename(ORG, "categories", "160956", "Second")
        .expect("rename");
    let got = rx.wait_for(2).await;
    let names: Vec<Value> = got
        .iter()
        .map(|w| w.json()["data"]["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![json!("Second"), json!("Second")],
        "first dropped, second duplicated"
    );
    // The sandbox counts a delivery once the receiver has answered, a moment after the
    // receiver recorded it.
    let counts = || {
        let w = sb.stats().webhooks[&attrsync_sandbox::Side::Fyle].clone();
        (w.queued, w.dropped, w.duplicated, w.delivered)
    };
    poll(std::time::Duration::from_secs(10), || async {
        (counts().3 >= 2).then_some(())
    })
    .await;
    assert_eq!(counts(), (2, 1, 1, 2));
    rx.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_reorder_sends_the_held_message_after_the_next() {
    let sb = start().await;
    let rx = Receiver::start().await;
    let fyle = Fyle::connect(&sb).await;
    subscribe(&fyle, &rx.url).await;
    sb.faults().add_webhook(WebhookFaultRule {
        side: None,
        action: WebhookFaultAction::Reorder,
        skip: 0,
        times: Some(1),
    });
    sb.fyle()
        .rename(ORG, "categories", "160956", "First")
        .expect("rename");
    sb.fyle()
        .rename(ORG, "categories", "160956", "Second")
        .expect("rename");
    let got = rx.wait_for(2).await;
    let names: Vec<Value> = got
        .iter()
        .map(|w| w.json()["data"]["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("Second"), json!("First")]);
    rx.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_delay_lets_later_messages_overtake() {
    let sb = start().await;
    let rx = Receiver::start().await;
    let fyle = Fyle::connect(&sb).await;
    subscribe(&fyle, &rx.url).await;
    sb.faults().add_webhook(WebhookFaultRule {
        side: None,
        // Long enough for the second to overtake however busy the machine.
        action: WebhookFaultAction::Delay { ms: 3_000 },
        skip: 0,
        times: Some(1),
    });
    sb.fyle()
        .rename(ORG, "categories", "160956", "First")
        .expect("rename");
    sb.fyle()
        .rename(ORG, "categories", "160956", "Second")
        .expect("rename");
    let got = rx.wait_for(2).await;
    let names: Vec<Value> = got
        .iter()
        .map(|w| w.json()["data"]["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("Second"), json!("First")]);
    rx.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_http_creates_and_deletes_fire_created_and_deleted_on_both_sides() {
    let sb = start().await;
    let rx = Receiver::start().await;
    let fyle = Fyle::connect(&sb).await;
    subscribe(&fyle, &rx.url).await;
    sb.set_qbo_webhook(qbo_config(
        &rx.url,
        WebhookFormat::Legacy,
        DeactivationOp::Delete,
    ));
    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "{}/_sandbox/fyle/orgs/{ORG}/projects",
            sb.fyle_url()
        ))
        .json(&json!({"name": "Harbor Refit", "code": "99"}))
        .send()
        .await
        .expect("admin create");
    assert_eq!(r.status(), 200);
    let created: Value = r.json().await.expect("JSON");
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].json()["action"], "CREATED");
    assert_eq!(got[0].json()["data"], created);

    let r = http
        .post(format!(
            "{}/_sandbox/qbo/realms/{REALM}/Customer",
            sb.qbo_url()
        ))
        .json(&json!({"DisplayName": "Harbor Refit"}))
        .send()
        .await
        .expect("admin create");
    assert_eq!(r.status(), 200);
    let customer: Value = r.json().await.expect("JSON");
    let got = rx.wait_for(2).await;
    let e = &got[1].json()["eventNotifications"][0]["dataChangeEvent"]["entities"][0];
    assert_eq!(
        (e["operation"].as_str(), e["id"].as_str()),
        (Some("Create"), customer["Id"].as_str())
    );

    let id = customer["Id"].as_str().expect("Id");
    let r = http
        .delete(format!(
            "{}/_sandbox/qbo/realms/{REALM}/Customer/{id}",
            sb.qbo_url()
        ))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 200);
    let got = rx.wait_for(3).await;
    assert_eq!(
        got[2].json()["eventNotifications"][0]["dataChangeEvent"]["entities"][0]["operation"],
        "Delete"
    );
    let r = http
        .delete(format!(
            "{}/_sandbox/qbo/realms/{REALM}/Customer/{id}",
            sb.qbo_url()
        ))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 404, "already gone");
    rx.stop().await;
    sb.stop().await;
}
