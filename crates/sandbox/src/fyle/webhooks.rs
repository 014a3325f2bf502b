//! Outgoing Fyle webhooks (reference §2, endpoint F9).
//!
//! For every change to a resource with a webhook name, each enabled subscription of the org whose
//! `subscribed_resources` lists that name gets `POST <webhook_url>` with
//! `{"action", "resource", "data"}`, `data` being the full list-item object — except `DELETED`,
//! whose `data` carries only `id`, `org_id` and `name`, as the reference's example does (§2.6;
//! for resources without a `name` the sandbox sends their naming field there — `field_name`,
//! the employee's `user.full_name`, a card's nickname or number — **(inferred)**). REPORT, EXPENSE
//! and ORG_SETTING events (see [`super::events`]) go through the same subscriptions.
//! Production Fyle signs nothing, so by default neither does the sandbox.
//! With a secret configured it adds `X-Fyle-Signature` (hex HMAC-SHA256 of the body) and the
//! Standard Webhooks headers `webhook-id`, `webhook-timestamp`, `webhook-signature`; the id and
//! timestamp are fixed when the change happens, so retries and duplicates carry the same id.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{org::Change, org::FyleOrg, resources::Resource};
use crate::{delivery::OutgoingWebhook, signing};

/// The webhook body of a change.
pub fn body(change: &Change, resource_name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": change.action.as_str(),
        "resource": resource_name,
        "data": change.data,
    }))
    .unwrap_or_default()
}

/// Signature headers for a body, when a secret is configured.
pub fn signature_headers(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Vec<(String, String)> {
    vec![
        (
            "X-Fyle-Signature".to_owned(),
            signing::fyle_signature(secret, body),
        ),
        ("webhook-id".to_owned(), msg_id.to_owned()),
        ("webhook-timestamp".to_owned(), timestamp.to_string()),
        (
            "webhook-signature".to_owned(),
            signing::standard_webhooks_signature(secret, msg_id, timestamp, body),
        ),
    ]
}

/// The subscription URLs of an org that receive a resource's webhooks.
pub fn subscribers(org: &FyleOrg, resource_name: &str) -> Vec<String> {
    org.collection(Resource::Subscriptions)
        .iter()
        .filter(|s| s.json.get("is_enabled") == Some(&Value::Bool(true)))
        .filter(|s| {
            s.json
                .get("subscribed_resources")
                .and_then(Value::as_array)
                .is_some_and(|rs| rs.iter().any(|r| r.as_str() == Some(resource_name)))
        })
        .filter_map(|s| {
            s.json
                .get("webhook_url")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

/// The POSTs a change causes.
pub(crate) fn messages(
    org: &FyleOrg,
    change: &Change,
    secret: Option<&str>,
    now: DateTime<Utc>,
) -> Vec<OutgoingWebhook> {
    let Some(name) = change.resource.webhook_name() else {
        return Vec::new();
    };
    deliveries(org, name, &body(change, name), secret, now)
}

/// The POSTs of one body to every subscription of `org` that lists `resource_name`.
pub(crate) fn deliveries(
    org: &FyleOrg,
    resource_name: &str,
    body: &[u8],
    secret: Option<&str>,
    now: DateTime<Utc>,
) -> Vec<OutgoingWebhook> {
    subscribers(org, resource_name)
        .into_iter()
        .map(|url| {
            let headers = match secret {
                Some(secret) => {
                    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
                    signature_headers(secret, &id, now.timestamp(), body)
                }
                None => Vec::new(),
            };
            OutgoingWebhook {
                url,
                headers,
                body: body.to_vec(),
            }
        })
        .collect()
}

/// The `data` of a `DELETED` webhook: `id`, `org_id` and `name` only.
pub fn deleted_data(resource: Resource, row: &Map<String, Value>) -> Value {
    let text = |k: &str| row.get(k).filter(|v| !v.is_null()).cloned();
    let name = match resource {
        Resource::Employees => row
            .get("user")
            .and_then(|u| u.get("full_name").or_else(|| u.get("email")))
            .cloned(),
        Resource::CorporateCards => text("nickname").or_else(|| text("card_number")),
        r => text("name").or_else(|| text(r.name_key())),
    };
    json!({
        "id": row.get("id").cloned().unwrap_or(Value::Null),
        "org_id": row.get("org_id").cloned().unwrap_or(Value::Null),
        "name": name.unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fyle::org::Action;

    #[test]
    fn deleted_data_keeps_only_id_org_and_name() {
        let row = json!({"id": 9587, "org_id": "or79Cob97KSh", "name": "01: San Francisco",
            "code": "500", "is_enabled": true, "updated_at": "2024-05-02T10:00:00.000000+00:00"});
        assert_eq!(
            deleted_data(Resource::CostCenters, row.as_object().expect("object")),
            json!({"id": 9587, "org_id": "or79Cob97KSh", "name": "01: San Francisco"})
        );
        let field = json!({"id": 1, "org_id": "orA", "field_name": "Region", "options": ["N"]});
        assert_eq!(
            deleted_data(Resource::ExpenseFields, field.as_object().expect("object"))["name"],
            "Region"
        );
    }

    #[test]
    fn body_has_action_resource_and_full_data() {
        let change = Change {
            org_id: "orA".into(),
            resource: Resource::Categories,
            action: Action::Updated,
            data: json!({"id": 1, "name": "Travel", "org_id": "orA"}),
        };
        let v: Value = serde_json::from_slice(&body(&change, "CATEGORY")).expect("valid JSON");
        assert_eq!(
            v,
            json!({"action": "UPDATED", "resource": "CATEGORY", "data": {"id": 1, "name": "Travel", "org_id": "orA"}})
        );
    }

    /// Expected values computed independently with Python's `hmac`, `hashlib` and `base64`:
    /// `hmac.new(b"k", b"{}", sha256).hexdigest()` and the base64 digest of `b"msg_1.10.{}"`.
    #[test]
    fn signature_headers_carry_fixed_external_vectors() {
        let h = signature_headers("k", "msg_1", 10, b"{}");
        assert_eq!(
            h[0],
            (
                "X-Fyle-Signature".to_owned(),
                "add853b103fbcc936a194f9eb15e29c4ff08af6e47d5d1bca4f20218e31e4fff".to_owned()
            )
        );
        assert_eq!(h[1].1, "msg_1");
        assert_eq!(h[2].1, "10");
        assert_eq!(h[3].1, "v1,aYwYtsrIaY4ZIwdLvkNE/tFi6VFP5xqLSmzEM5CHvAk=");
    }
}
