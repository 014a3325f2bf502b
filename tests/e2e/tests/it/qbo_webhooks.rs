//! QBO webhooks at the edge: signed or refused, fanned out to every workspace of the realm,
//! deduplicated per workspace, unknown realms recorded and not published.

use std::time::Duration;

use attrsync_e2e::TestStack;
use attrsync_kafka::{envelope, topics};
use attrsync_proto::Payload;
use attrsync_sandbox::signing;
use serde_json::{Value, json};

use crate::kafka_reader::{Raw, read_until};

const WAIT: Duration = Duration::from_secs(60);
const VERIFIER: &str = "simulator-verifier-token";

async fn post(
    stack: &TestStack,
    path: &str,
    body: &[u8],
    signature: Option<String>,
) -> (u16, Value) {
    let mut request = stack
        .http
        .post(format!("{}{path}", stack.ingest_url))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("intuit-signature", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn legacy(realm: &str, entities: &[(&str, &str, &str)]) -> Vec<u8> {
    let entities: Vec<Value> = entities
        .iter()
        .map(|(name, id, operation)| {
            json!({"name": name, "id": id, "operation": operation,
                   "lastUpdated": "2024-05-02T03:15:30-0700"})
        })
        .collect();
    serde_json::to_vec(&json!({"eventNotifications": [
        {"realmId": realm, "dataChangeEvent": {"entities": entities}}]}))
    .unwrap()
}

/// (workspace id, entity, entity id, operation) of each change on the topic.
fn changes(messages: &[Raw]) -> Vec<(i64, String, String, String)> {
    messages
        .iter()
        .filter_map(|m| {
            let envelope = envelope::decode(&m.payload).ok()?;
            let Some(Payload::QboEntityChange(change)) = envelope.payload else {
                return None;
            };
            Some((
                envelope.workspace_id,
                change.entity,
                change.entity_id,
                change.operation,
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_qbo_webhook_reaches_every_workspace_of_its_realm_once() {
    let stack = TestStack::start().await.unwrap();
    let realm = format!("9{}", &ulid::Ulid::new().0.to_string()[..12]);
    let (first, _) = stack
        .create_workspace_with_realm(Some(&realm))
        .await
        .unwrap();
    let (second, _) = stack
        .create_workspace_with_realm(Some(&realm))
        .await
        .unwrap();
    // ingest learns of workspaces through its projection (milliseconds behind mapping; a
    // workspace's first full sync covers what it misses before that): wait for both.
    stack
        .wait_for_realm_in_projection("ingest", &realm, 2, WAIT)
        .await
        .unwrap();
    let body = legacy(
        &realm,
        &[("Account", "41", "Create"), ("Vendor", "30", "Delete")],
    );
    let signature = Some(signing::intuit_signature(VERIFIER, &body));
    let (status, answer) = post(&stack, "/webhooks/qbo", &body, signature.clone()).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["stored"], 4);
    // Intuit retries: the same body again is recognised, per workspace and entity.
    let (status, answer) = post(
        &stack,
        "/api/workspaces/qbo/webhook_callback/",
        &body,
        signature,
    )
    .await;
    assert_eq!((status, answer["duplicates"].clone()), (202, json!(4)));
    // A later change is the barrier: everything before it is on the topic by then.
    let barrier = legacy(&realm, &[("Customer", "58", "Update")]);
    let signature = Some(signing::intuit_signature(VERIFIER, &barrier));
    assert_eq!(
        post(&stack, "/webhooks/qbo", &barrier, signature).await.0,
        202
    );
    let messages = read_until(&stack.topic(topics::QBO_ENTITY_CHANGES), WAIT, |seen| {
        changes(seen).iter().filter(|c| c.1 == "Customer").count() == 2
    })
    .await
    .unwrap();
    let mut seen = changes(&messages);
    seen.retain(|c| c.1 != "Customer");
    seen.sort();
    let expected = |ws: i64| {
        vec![
            (
                ws,
                "Account".to_owned(),
                "41".to_owned(),
                "Create".to_owned(),
            ),
            (
                ws,
                "Vendor".to_owned(),
                "30".to_owned(),
                "Delete".to_owned(),
            ),
        ]
    };
    let mut want = [expected(first), expected(second)].concat();
    want.sort();
    assert_eq!(
        seen, want,
        "one message per entity per workspace, each once"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_or_wrongly_signed_qbo_webhook_is_refused_and_stores_nothing() {
    let stack = TestStack::start().await.unwrap();
    let realm = "9130357766900456";
    stack
        .create_workspace_with_realm(Some(realm))
        .await
        .unwrap();
    let body = legacy(realm, &[("Account", "41", "Create")]);
    for signature in [
        None,
        Some(signing::intuit_signature("another-apps-token", &body)),
        Some("not base64 at all".to_owned()),
    ] {
        let (status, answer) = post(&stack, "/webhooks/qbo", &body, signature).await;
        assert_eq!(status, 401, "{answer}");
    }
    // The reference's own vector (its exact bytes and signature) is accepted.
    let reference = br#"{"eventNotifications":[{"realmId":"9130357766900456","dataChangeEvent":{"entities":[{"name":"Customer","id":"58","operation":"Update","lastUpdated":"2024-05-02T10:15:30.000Z"}]}}]}"#;
    let (status, answer) = post(
        &stack,
        "/webhooks/qbo",
        reference,
        Some("eM57Bbdh4NDu5agmb3xuLyRdjiadJH2YwPhhCXoOc5A=".into()),
    )
    .await;
    assert_eq!((status, answer["stored"].clone()), (202, json!(1)));
    let messages = read_until(&stack.topic(topics::QBO_ENTITY_CHANGES), WAIT, |seen| {
        !seen.is_empty()
    })
    .await
    .unwrap();
    let seen = changes(&messages);
    assert_eq!(seen.len(), 1, "only the signed delivery was relayed");
    assert_eq!((seen[0].1.as_str(), seen[0].2.as_str()), ("Customer", "58"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_for_a_realm_without_a_workspace_is_accepted_recorded_and_not_published() {
    let stack = TestStack::start().await.unwrap();
    let (_, _) = stack
        .create_workspace_with_realm(Some("7000000001"))
        .await
        .unwrap();
    let stranger = legacy("7999999999", &[("Account", "1", "Create")]);
    let (status, answer) = post(
        &stack,
        "/webhooks/qbo",
        &stranger,
        Some(signing::intuit_signature(VERIFIER, &stranger)),
    )
    .await;
    assert_eq!((status, answer["unknown_realms"].clone()), (202, json!(1)));
    // CloudEvents for the known realm is the barrier (and shows that format is read).
    let cloud = serde_json::to_vec(&json!([{"specversion": "1.0", "id": "ce-1",
        "source": "intuit.x", "type": "qbo.account.updated.v1",
        "time": "2025-09-10T21:31:25.179851517Z", "intuitentityid": "77",
        "intuitaccountid": "7000000001", "data": {}}]))
    .unwrap();
    let (status, _) = post(
        &stack,
        "/webhooks/qbo",
        &cloud,
        Some(signing::intuit_signature(VERIFIER, &cloud)),
    )
    .await;
    assert_eq!(status, 202);
    let messages = read_until(&stack.topic(topics::QBO_ENTITY_CHANGES), WAIT, |seen| {
        !changes(seen).is_empty()
    })
    .await
    .unwrap();
    let seen = changes(&messages);
    assert_eq!(
        seen.len(),
        1,
        "the unknown realm's event was not published: {seen:?}"
    );
    assert_eq!(
        (seen[0].1.as_str(), seen[0].2.as_str(), seen[0].3.as_str()),
        ("Account", "77", "Update")
    );
    stack.stop().await;
}
