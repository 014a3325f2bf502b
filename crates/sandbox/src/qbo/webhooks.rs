//! Outgoing QBO webhooks (reference §3.8, endpoint Q6).
//!
//! Changes are queued as [`QboEvent`]s; a batching task collects them for `batch_window_ms`
//! (production aggregates over 1–5 minutes; the sandbox defaults to 200 ms) and sends one POST per
//! batch to the app's webhook URL, in the legacy `eventNotifications` format (one element per realm)
//! or as a CloudEvents array, signed with `intuit-signature` = base64 HMAC-SHA256 of the exact body
//! with the verifier token. Deactivation is reported as `Delete` or `Update` (configurable;
//! reference §3.8 marks `Delete` as inferred). TaxCode and TaxRate produce no events. Events that
//! happen while no URL is configured are discarded, as Intuit does for an app without webhooks.
//!
//! `lastUpdated` is rendered as in Intuit's sample, `2015-10-05T14:42:19-0700`: the company's
//! local time with a colon-less offset and no fraction — not RFC 3339, so a receiver that parses it
//! strictly as RFC 3339 fails here as it would in production. A merge (sandbox admin `merge`) is
//! one `Merge` entity naming the survivor in `id` and the merged-away entity in `deletedId`
//! (reference §3.8, third-party schema, **(inferred)**); in CloudEvents form it is
//! `qbo.<entity>.merged.v1` with `data: {"deletedId": …}` **(inferred)**. CloudEvents `time` stays
//! RFC 3339 UTC as in Intuit's CloudEvents sample.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde_json::json;
use tokio::sync::mpsc;

use super::realm::{EventKind, QboEvent};
use crate::{
    config::{DeactivationOp, QboWebhookConfig, WebhookFormat},
    delivery::{Outbox, OutgoingWebhook},
    faults::lock,
    signing,
};

/// The legacy `operation` of an event.
pub fn operation(kind: EventKind, deactivation: DeactivationOp) -> &'static str {
    match (kind, deactivation) {
        (EventKind::Create, _) => "Create",
        (EventKind::Update, _) | (EventKind::Deactivate, DeactivationOp::Update) => "Update",
        (EventKind::Delete, _) | (EventKind::Deactivate, DeactivationOp::Delete) => "Delete",
        (EventKind::Merge, _) => "Merge",
    }
}

/// `lastUpdated` as in Intuit's legacy sample: local time, `-0700` offset, whole seconds.
pub fn last_updated(secs: i64, tz: FixedOffset) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .unwrap_or_default()
        .with_timezone(&tz)
        .format("%Y-%m-%dT%H:%M:%S%z")
        .to_string()
}

fn utc_millis(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// The legacy body, keys in Intuit's order (`name, id, operation, lastUpdated`).
pub fn legacy_body(events: &[QboEvent], deactivation: DeactivationOp) -> Vec<u8> {
    let mut realms: Vec<&str> = Vec::new();
    for e in events {
        if !realms.contains(&e.realm.as_str()) {
            realms.push(&e.realm);
        }
    }
    let notifications: Vec<String> = realms
        .iter()
        .map(|realm| {
            let entities: Vec<String> = events
                .iter()
                .filter(|e| e.realm == *realm)
                .map(|e| {
                    let deleted = e
                        .deleted_id
                        .map(|d| format!(r#","deletedId":{}"#, quoted(&d.to_string())))
                        .unwrap_or_default();
                    format!(
                        r#"{{"name":{},"id":{},"operation":{},"lastUpdated":{}{deleted}}}"#,
                        quoted(e.entity.name()),
                        quoted(&e.id.to_string()),
                        quoted(operation(e.kind, deactivation)),
                        quoted(&last_updated(e.at, e.tz)),
                    )
                })
                .collect();
            format!(
                r#"{{"realmId":{},"dataChangeEvent":{{"entities":[{}]}}}}"#,
                quoted(realm),
                entities.join(",")
            )
        })
        .collect();
    format!(r#"{{"eventNotifications":[{}]}}"#, notifications.join(",")).into_bytes()
}

/// The CloudEvents body (a JSON array).
pub fn cloudevents_body(events: &[QboEvent], deactivation: DeactivationOp) -> Vec<u8> {
    let items: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            let past = match operation(e.kind, deactivation) {
                "Create" => "created",
                "Update" => "updated",
                "Merge" => "merged",
                _ => "deleted",
            };
            let data = match e.deleted_id {
                Some(d) => json!({"deletedId": d.to_string()}),
                None => json!({}),
            };
            json!({
                "specversion": "1.0",
                "id": uuid::Uuid::new_v4().to_string(),
                "source": "intuit.simulator",
                "type": format!("qbo.{}.{past}.v1", e.entity.name().to_lowercase()),
                "datacontenttype": "application/json",
                "time": utc_millis(e.at),
                "intuitentityid": e.id.to_string(),
                "intuitaccountid": e.realm,
                "data": data,
            })
        })
        .collect();
    serde_json::to_vec(&items).unwrap_or_default()
}

/// The signed POST for a batch, if webhooks are configured.
pub(crate) fn message(events: &[QboEvent], cfg: &QboWebhookConfig) -> Option<OutgoingWebhook> {
    let url = cfg.url.clone()?;
    let events: Vec<QboEvent> = events
        .iter()
        .filter(|e| e.entity.webhook_supported())
        .cloned()
        .collect();
    if events.is_empty() {
        return None;
    }
    let body = match cfg.format {
        WebhookFormat::Legacy => legacy_body(&events, cfg.deactivation),
        WebhookFormat::CloudEvents => cloudevents_body(&events, cfg.deactivation),
    };
    let signature = signing::intuit_signature(&cfg.verifier_token, &body);
    Some(OutgoingWebhook {
        url,
        headers: vec![("intuit-signature".to_owned(), signature)],
        body,
    })
}

/// Sending half of the event queue.
#[derive(Debug, Clone)]
pub(crate) struct EventQueue {
    tx: mpsc::UnboundedSender<QboEvent>,
}

impl EventQueue {
    /// Queues events (never blocks).
    pub(crate) fn push(&self, events: impl IntoIterator<Item = QboEvent>) {
        for e in events {
            let _ = self.tx.send(e);
        }
    }
}

/// Starts the batching task on the current runtime.
pub(crate) fn start(outbox: Outbox, config: Arc<Mutex<QboWebhookConfig>>) -> EventQueue {
    let (tx, mut rx) = mpsc::unbounded_channel::<QboEvent>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            let window = Duration::from_millis(lock(&config).batch_window_ms);
            let deadline = tokio::time::Instant::now() + window;
            while let Ok(Some(e)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                batch.push(e);
            }
            while let Ok(e) = rx.try_recv() {
                batch.push(e);
            }
            let cfg = lock(&config).clone();
            if let Some(msg) = message(&batch, &cfg) {
                outbox.send(msg);
            }
        }
    });
    EventQueue { tx }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qbo::entity::EntityType;

    fn event(kind: EventKind) -> QboEvent {
        QboEvent {
            realm: "9130357766900456".into(),
            entity: EntityType::Customer,
            id: 58,
            kind,
            at: 1_714_644_930,
            tz: FixedOffset::west_opt(7 * 3600).expect("valid offset"),
            deleted_id: None,
        }
    }

    /// The body and signature are fixed external vectors: the body is the reference §3.8 vector
    /// with `lastUpdated` in the `-0700` form of Intuit's sample, and the signature was computed
    /// with Python (`base64(hmac.new(b"simulator-verifier-token", body, sha256).digest())`).
    #[test]
    fn legacy_body_uses_the_offset_form_of_intuits_sample() {
        let body = legacy_body(&[event(EventKind::Update)], DeactivationOp::Delete);
        let expected = r#"{"eventNotifications":[{"realmId":"9130357766900456","dataChangeEvent":{"entities":[{"name":"Customer","id":"58","operation":"Update","lastUpdated":"2024-05-02T03:15:30-0700"}]}}]}"#;
        assert_eq!(String::from_utf8_lossy(&body), expected);
        assert_eq!(
            signing::intuit_signature("simulator-verifier-token", &body),
            "KnF3ICVKSdWg63WBpCFgQYEvRhuf6i40vsUBX//LXDs="
        );
    }

    #[test]
    fn merge_names_the_survivor_and_the_deleted_id() {
        let mut e = event(EventKind::Merge);
        e.entity = EntityType::Vendor;
        e.id = 30;
        e.deleted_id = Some(31);
        let body = legacy_body(&[e.clone()], DeactivationOp::Delete);
        assert_eq!(
            String::from_utf8_lossy(&body),
            r#"{"eventNotifications":[{"realmId":"9130357766900456","dataChangeEvent":{"entities":[{"name":"Vendor","id":"30","operation":"Merge","lastUpdated":"2024-05-02T03:15:30-0700","deletedId":"31"}]}}]}"#
        );
        let ce: serde_json::Value =
            serde_json::from_slice(&cloudevents_body(&[e], DeactivationOp::Delete)).expect("json");
        assert_eq!(ce[0]["type"], "qbo.vendor.merged.v1");
        assert_eq!(ce[0]["data"]["deletedId"], "31");
    }

    #[test]
    fn deactivation_is_reported_as_configured() {
        assert_eq!(
            operation(EventKind::Deactivate, DeactivationOp::Delete),
            "Delete"
        );
        assert_eq!(
            operation(EventKind::Deactivate, DeactivationOp::Update),
            "Update"
        );
        let ce: serde_json::Value = serde_json::from_slice(&cloudevents_body(
            &[event(EventKind::Deactivate)],
            DeactivationOp::Delete,
        ))
        .expect("json");
        assert_eq!(ce[0]["type"], "qbo.customer.deleted.v1");
        assert_eq!(ce[0]["intuitentityid"], "58");
        assert_eq!(ce[0]["intuitaccountid"], "9130357766900456");
    }

    #[test]
    fn tax_entities_produce_no_webhook() {
        let cfg = QboWebhookConfig {
            url: Some("http://x".into()),
            ..QboWebhookConfig::default()
        };
        let mut e = event(EventKind::Update);
        e.entity = EntityType::TaxCode;
        assert!(message(&[e], &cfg).is_none());
        assert!(message(&[event(EventKind::Update)], &cfg).is_some());
    }
}
