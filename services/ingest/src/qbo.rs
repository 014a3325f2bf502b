//! QBO webhooks: who may send one, what it says, and every way it is refused — pure rules,
//! no I/O.
//!
//! **Authenticity first.** Intuit signs every delivery: `intuit-signature` is
//! `base64(HMAC-SHA256(key = verifier token, message = raw body))`. [`verify_signature`] checks
//! it against each configured verifier token (several, so a rotation never drops a delivery) in
//! constant time, before a single byte of the body is parsed. The only way to obtain a
//! [`VerifiedQboBody`] is [`VerifiedQboBody::verify`], and [`parse`] accepts nothing else, so no
//! handler — today's or a future replay path — can read an unauthenticated body.
//!
//! **Two formats, one event.** [`parse`] accepts the legacy `{"eventNotifications": […]}` object
//! and the CloudEvents array Intuit migrates apps to, and yields one [`QboEntityEvent`] per
//! changed entity, spelled as legacy QBO spells it (`Account`, `Create`, …) whichever format
//! carried it. Payloads carry identifiers only; consumers fetch the entity itself.
//!
//! **Delivery guarantee.** Intuit retries any non-2xx answer, so delivery is at-least-once;
//! [`dedupe_key`] gives every entity event a stable key (the CloudEvents `id`, or a hash of realm,
//! entity, id, operation and normalised `lastUpdated`), which the inbox makes unique, so the
//! effects are idempotent. Production aggregates changes over a 1–5 minute window: two changes of
//! one entity carry different `lastUpdated` values and are two events, not a duplicate.
//!
//! Failure policy: fail closed. A missing, undecodable or wrong signature, or no usable verifier
//! token configured, is 401 ([`QboRejection::Unauthorized`], one body whatever the cause, so a
//! prober learns nothing) and nothing is stored; empty verifier tokens are ignored, since anyone
//! can sign with an empty key. A signed body whose shape is wrong is 400
//! ([`QboRejection::Malformed`], naming the field) and nothing is stored — including a legacy
//! entity without `lastUpdated`, whose key would collide with the entity's next change. What is
//! merely *unknown* is carried, not refused: an operation or entity name Intuit adds later
//! arrives as [`QboOperation::Other`] or as its own name, so one new kind of change never makes
//! Intuit retry, and finally drop, a whole batch of known ones.

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The header Intuit signs deliveries with.
pub const SIGNATURE_HEADER: &str = "intuit-signature";

/// Why a QBO webhook was refused. Nothing is stored or published for a refused webhook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QboRejection {
    /// The signature is missing, undecodable or matches no verifier token.
    #[error("missing or invalid intuit-signature")]
    Unauthorized,
    /// The body is signed but is not a QBO webhook we can read; the message names the field.
    #[error("{0}")]
    Malformed(String),
}

impl QboRejection {
    /// The HTTP status of this refusal.
    pub fn status(&self) -> u16 {
        match self {
            QboRejection::Unauthorized => 401,
            QboRejection::Malformed(_) => 400,
        }
    }

    /// A stable machine-readable code for the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            QboRejection::Unauthorized => "unauthorized",
            QboRejection::Malformed(_) => "malformed",
        }
    }

    /// `{"error": code, "message": text}`.
    pub fn body(&self) -> Value {
        serde_json::json!({ "error": self.code(), "message": self.to_string() })
    }
}

/// Checks `intuit-signature` (`header`) against the raw `body` with each verifier token.
///
/// Every non-empty token is tried, in constant time per token (`hmac`'s `verify_slice`); the
/// first one that matches accepts. No header, a header that is not base64, no usable token, or
/// no match: [`QboRejection::Unauthorized`].
pub fn verify_signature(
    body: &[u8],
    header: Option<&str>,
    verifier_tokens: &[String],
) -> Result<(), QboRejection> {
    let signature = STANDARD
        .decode(header.ok_or(QboRejection::Unauthorized)?.trim())
        .map_err(|_| QboRejection::Unauthorized)?;
    let matches = |token: &String| {
        !token.is_empty()
            && Hmac::<Sha256>::new_from_slice(token.as_bytes())
                .map(|mac| mac.chain_update(body).verify_slice(&signature).is_ok())
                .unwrap_or(false)
    };
    if verifier_tokens.iter().any(matches) {
        Ok(())
    } else {
        Err(QboRejection::Unauthorized)
    }
}

/// A raw body whose `intuit-signature` verified. Only [`VerifiedQboBody::verify`] makes one, and
/// only [`parse`] reads one.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedQboBody<'a> {
    bytes: &'a [u8],
}

impl<'a> VerifiedQboBody<'a> {
    /// The trust boundary: `body` becomes verified only if [`verify_signature`] accepts it.
    pub fn verify(
        body: &'a [u8],
        header: Option<&str>,
        verifier_tokens: &[String],
    ) -> Result<Self, QboRejection> {
        verify_signature(body, header, verifier_tokens)?;
        Ok(Self { bytes: body })
    }

    /// The exact bytes that were signed (what the inbox stores).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// What happened to an entity, in legacy QBO spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum QboOperation {
    Create,
    Update,
    /// Also how QBO reports a name-list entity made inactive.
    Delete,
    /// Another entity was merged into this one; `deleted_id` names it (legacy format).
    Merge,
    Void,
    Emailed,
    /// An operation this code does not know, as the sender spelled it: carried, not refused.
    Other(String),
}

impl QboOperation {
    /// From the legacy `operation` field (`Create`, `Update`, …).
    pub fn from_legacy(s: &str) -> Self {
        match s {
            "Create" => Self::Create,
            "Update" => Self::Update,
            "Delete" => Self::Delete,
            "Merge" => Self::Merge,
            "Void" => Self::Void,
            "Emailed" => Self::Emailed,
            other => Self::Other(other.to_owned()),
        }
    }

    /// From the past-tense segment of a CloudEvents `type` (`created`, `updated`, …).
    pub fn from_past_tense(s: &str) -> Self {
        match s {
            "created" => Self::Create,
            "updated" => Self::Update,
            "deleted" => Self::Delete,
            "merged" => Self::Merge,
            "voided" => Self::Void,
            "emailed" => Self::Emailed,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The legacy spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Create => "Create",
            Self::Update => "Update",
            Self::Delete => "Delete",
            Self::Merge => "Merge",
            Self::Void => "Void",
            Self::Emailed => "Emailed",
            Self::Other(s) => s,
        }
    }
}

/// One changed entity in one realm, whichever format carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QboEntityEvent {
    /// The QBO company (`realmId` / `intuitaccountid`).
    pub realm_id: String,
    /// The entity name in QBO's spelling (`Account`, `TaxCode`, …).
    pub entity: String,
    /// The entity's id (`id` / `intuitentityid`).
    pub entity_id: String,
    pub operation: QboOperation,
    /// `lastUpdated` (legacy, required) or `time` (CloudEvents, optional).
    pub last_updated: Option<DateTime<Utc>>,
    /// The merged-away entity of a legacy `Merge` (`deletedId`); the CloudEvents format
    /// documents no such field.
    pub deleted_id: Option<String>,
    /// The CloudEvents `id` (None for the legacy format).
    pub cloud_event_id: Option<String>,
}

/// Reads a verified body: the legacy `eventNotifications` object or a CloudEvents array, one
/// event per entity, in the order they appear. An empty batch is valid and yields nothing.
pub fn parse(verified: &VerifiedQboBody<'_>) -> Result<Vec<QboEntityEvent>, QboRejection> {
    let value: Value = serde_json::from_slice(verified.as_bytes())
        .map_err(|e| malformed(format!("body is not valid JSON: {e}")))?;
    if attrsync_core::derive::contains_nul(&value) {
        return Err(malformed(
            "the body contains a NUL character (\\u0000), which cannot be stored",
        ));
    }
    match &value {
        Value::Object(object) => parse_legacy(object),
        Value::Array(events) => events
            .iter()
            .enumerate()
            .map(|(i, event)| parse_cloud_event(event, i))
            .collect(),
        _ => Err(malformed(
            "body must be an object with `eventNotifications` or an array of CloudEvents",
        )),
    }
}

fn parse_legacy(object: &Map<String, Value>) -> Result<Vec<QboEntityEvent>, QboRejection> {
    let notifications = object
        .get("eventNotifications")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("`eventNotifications` must be an array"))?;
    let mut events = Vec::new();
    for (n, notification) in notifications.iter().enumerate() {
        let at = format!("eventNotifications[{n}]");
        let notification = notification
            .as_object()
            .ok_or_else(|| malformed(format!("`{at}` must be an object")))?;
        let realm_id = identifier(notification, "realmId", &at)?;
        let entities = notification
            .get("dataChangeEvent")
            .and_then(|d| d.get("entities"))
            .and_then(Value::as_array)
            .ok_or_else(|| {
                malformed(format!("`{at}.dataChangeEvent.entities` must be an array"))
            })?;
        for (e, entity) in entities.iter().enumerate() {
            let at = format!("{at}.dataChangeEvent.entities[{e}]");
            let entity = entity
                .as_object()
                .ok_or_else(|| malformed(format!("`{at}` must be an object")))?;
            let name = non_empty_str(entity, "name", &at)?;
            let operation = non_empty_str(entity, "operation", &at)?;
            let last_updated = non_empty_str(entity, "lastUpdated", &at)?;
            let last_updated = parse_last_updated(last_updated).ok_or_else(|| {
                malformed(format!("`{at}.lastUpdated` must be an ISO 8601 timestamp"))
            })?;
            let deleted_id = match entity.get("deletedId") {
                None | Some(Value::Null) => None,
                Some(_) => Some(identifier(entity, "deletedId", &at)?),
            };
            events.push(QboEntityEvent {
                realm_id: realm_id.clone(),
                entity: canonical_entity(name),
                entity_id: identifier(entity, "id", &at)?,
                operation: QboOperation::from_legacy(operation),
                last_updated: Some(last_updated),
                deleted_id,
                cloud_event_id: None,
            });
        }
    }
    Ok(events)
}

fn parse_cloud_event(event: &Value, i: usize) -> Result<QboEntityEvent, QboRejection> {
    let at = format!("[{i}]");
    let event = event
        .as_object()
        .ok_or_else(|| malformed(format!("`{at}` must be an object")))?;
    // CloudEvents minor versions are compatible; only the envelope is read.
    if !non_empty_str(event, "specversion", &at)?.starts_with("1.") {
        return Err(malformed(format!("`{at}.specversion` must be 1.x")));
    }
    let id = non_empty_str(event, "id", &at)?;
    let kind = non_empty_str(event, "type", &at)?;
    let (entity, operation) = match kind.split('.').collect::<Vec<_>>()[..] {
        ["qbo", entity, operation, version]
            if !entity.is_empty()
                && !operation.is_empty()
                && version
                    .strip_prefix('v')
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            (entity, operation)
        }
        _ => {
            return Err(malformed(format!(
                "`{at}.type` must be `qbo.<entity>.<operation>.v<N>`, not `{kind}`"
            )));
        }
    };
    let last_updated = match event.get("time") {
        None | Some(Value::Null) => None,
        Some(Value::String(time)) => Some(
            parse_last_updated(time)
                .ok_or_else(|| malformed(format!("`{at}.time` must be an RFC 3339 timestamp")))?,
        ),
        Some(_) => return Err(malformed(format!("`{at}.time` must be a string"))),
    };
    Ok(QboEntityEvent {
        realm_id: identifier(event, "intuitaccountid", &at)?,
        entity: canonical_entity(entity),
        entity_id: identifier(event, "intuitentityid", &at)?,
        operation: QboOperation::from_past_tense(operation),
        last_updated,
        deleted_id: None,
        cloud_event_id: Some(id.to_owned()),
    })
}

/// QBO's names for the entities webhooks report, to restore the capitals the lowercase
/// CloudEvents `type` drops.
const ENTITIES: &[&str] = &[
    "Account",
    "Attachable",
    "Bill",
    "BillPayment",
    "Budget",
    "Class",
    "CompanyCurrency",
    "CreditMemo",
    "Currency",
    "Customer",
    "Department",
    "Deposit",
    "Employee",
    "Estimate",
    "Invoice",
    "Item",
    "JournalCode",
    "JournalEntry",
    "Payment",
    "PaymentMethod",
    "Preferences",
    "Purchase",
    "PurchaseOrder",
    "RefundReceipt",
    "SalesReceipt",
    "TaxAgency",
    "TaxCode",
    "TaxRate",
    "Term",
    "TimeActivity",
    "Transfer",
    "Vendor",
    "VendorCredit",
];

/// `taxcode` → `TaxCode`; a name QBO does not list keeps its letters with the first capitalised.
fn canonical_entity(name: &str) -> String {
    if let Some(known) = ENTITIES.iter().find(|e| e.eq_ignore_ascii_case(name)) {
        return (*known).to_owned();
    }
    let mut chars = name.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// Parses a QBO timestamp: RFC 3339 (`2024-05-02T10:15:30.000Z`, `…+05:30`) or the legacy
/// webhook form with a colon-less offset (`2015-10-05T14:42:19-0700`), fractional seconds
/// optional in both.
pub fn parse_last_updated(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The key under which the inbox recognises a repeat of this entity event (the store scopes
/// it by workspace, so realms shared by several workspaces fan out).
///
/// A CloudEvents event is keyed by its `id`, unique per event. A legacy event has no id: its
/// key is the lowercase hex SHA-256 of the compact JSON array
/// `["qbo", realm, entity, entity id, operation, lastUpdated]`, with `lastUpdated` normalised to
/// UTC RFC 3339 (`2015-10-05T14:42:19-0700` → `2015-10-05T21:42:19Z`), so the same change is one
/// key however its offset was written, and the next change of the entity is another.
pub fn dedupe_key(event: &QboEntityEvent) -> String {
    if let Some(id) = &event.cloud_event_id {
        return id.clone();
    }
    let last_updated = event
        .last_updated
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_default();
    let fields = [
        "qbo",
        &event.realm_id,
        &event.entity,
        &event.entity_id,
        event.operation.as_str(),
        &last_updated,
    ];
    // Serialising an array of strings cannot fail; the fallback only keeps `unwrap` out.
    let canonical = serde_json::to_string(&fields).unwrap_or_else(|_| fields.join("\0"));
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

fn malformed(message: impl Into<String>) -> QboRejection {
    QboRejection::Malformed(message.into())
}

fn non_empty_str<'v>(
    object: &'v Map<String, Value>,
    field: &str,
    at: &str,
) -> Result<&'v str, QboRejection> {
    match object.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(malformed(format!(
            "`{at}.{field}` must be a non-empty string"
        ))),
    }
}

/// An id QBO writes as a string; an integer is accepted and written in decimal.
fn identifier(object: &Map<String, Value>, field: &str, at: &str) -> Result<String, QboRejection> {
    match object.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
        _ => Err(malformed(format!(
            "`{at}.{field}` must be a non-empty string or an integer"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    /// The reference §3.8 vector: token, the exact 180-byte body, and its signature.
    const TOKEN: &str = "simulator-verifier-token";
    const BODY: &[u8] = br#"{"eventNotifications":[{"realmId":"9130357766900456","dataChangeEvent":{"entities":[{"name":"Customer","id":"58","operation":"Update","lastUpdated":"2024-05-02T10:15:30.000Z"}]}}]}"#;
    const SIGNATURE: &str = "eM57Bbdh4NDu5agmb3xuLyRdjiadJH2YwPhhCXoOc5A=";

    fn tokens(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| (*s).to_owned()).collect()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid time")
    }

    /// Parses a body as if it had been signed (the signature path is tested on its own).
    fn parse_trusted(body: &[u8]) -> Result<Vec<QboEntityEvent>, QboRejection> {
        parse(&VerifiedQboBody { bytes: body })
    }

    fn malformed_message(body: Value) -> String {
        match parse_trusted(&serde_json::to_vec(&body).expect("serialise")) {
            Err(QboRejection::Malformed(m)) => m,
            other => panic!("expected Malformed for {body}, got {other:?}"),
        }
    }

    #[test]
    fn the_reference_vector_verifies() {
        assert_eq!(BODY.len(), 180);
        assert_eq!(
            verify_signature(BODY, Some(SIGNATURE), &tokens(&[TOKEN])),
            Ok(())
        );
        let verified =
            VerifiedQboBody::verify(BODY, Some(SIGNATURE), &tokens(&[TOKEN])).expect("verified");
        assert_eq!(verified.as_bytes(), BODY);
    }

    #[test]
    fn during_a_rotation_the_second_of_two_tokens_verifies() {
        let both = tokens(&["the-next-verifier-token", TOKEN]);
        assert_eq!(verify_signature(BODY, Some(SIGNATURE), &both), Ok(()));
        assert_eq!(
            verify_signature(BODY, Some(SIGNATURE), &tokens(&["the-next-verifier-token"])),
            Err(QboRejection::Unauthorized),
            "after the rotation the old signature no longer verifies"
        );
    }

    #[test]
    fn missing_undecodable_or_wrong_signatures_are_401() {
        let token = tokens(&[TOKEN]);
        let mut tampered = BODY.to_vec();
        tampered[36] = b'2'; // realm 9230… instead of 9130…, same signature
        let cases: [(&[u8], Option<&str>, &[String]); 7] = [
            (BODY, None, &token),
            (BODY, Some(""), &token),
            (BODY, Some("not base64!"), &token),
            (BODY, Some("eM57Bbdh4NDu5agmb3xuLyRdjiadJH2Y"), &token), // a prefix of the MAC
            (&tampered, Some(SIGNATURE), &token),
            (BODY, Some(SIGNATURE), &[]),
            (BODY, Some(SIGNATURE), &tokens(&["wrong-token"])),
        ];
        for (body, header, tokens) in cases {
            let refused = VerifiedQboBody::verify(body, header, tokens).expect_err("refused");
            assert_eq!(refused, QboRejection::Unauthorized, "{header:?}");
            assert_eq!(refused.status(), 401);
            assert_eq!(
                refused.body(),
                json!({"error": "unauthorized", "message": "missing or invalid intuit-signature"})
            );
        }
    }

    #[test]
    fn an_empty_verifier_token_never_verifies_anything() {
        // base64(HMAC-SHA256(key = "", message = "{}")), computed with python3 `hmac`.
        let signed_with_empty_key = "IvjuqQlACvmK3zaBqfMZI+9rf8ukq7VT2Sgjo+nVwl4=";
        assert_eq!(
            verify_signature(b"{}", Some(signed_with_empty_key), &tokens(&[""])),
            Err(QboRejection::Unauthorized)
        );
    }

    #[test]
    fn the_signed_legacy_body_becomes_one_customer_update() {
        let verified =
            VerifiedQboBody::verify(BODY, Some(SIGNATURE), &tokens(&[TOKEN])).expect("verified");
        assert_eq!(
            parse(&verified),
            Ok(vec![QboEntityEvent {
                realm_id: "9130357766900456".into(),
                entity: "Customer".into(),
                entity_id: "58".into(),
                operation: QboOperation::Update,
                last_updated: Some(utc(2024, 5, 2, 10, 15, 30)),
                deleted_id: None,
                cloud_event_id: None,
            }])
        );
    }

    #[test]
    fn a_legacy_batch_yields_one_event_per_entity_per_realm() {
        let body = json!({"eventNotifications": [
            {"realmId": "1185883450", "dataChangeEvent": {"entities": [
                {"name": "Customer", "id": "1", "operation": "Create",
                 "lastUpdated": "2015-10-05T14:42:19-0700"},
                {"name": "Vendor", "id": 7, "operation": "Merge",
                 "lastUpdated": "2015-10-05T14:42:19-0700", "deletedId": "8"}]}},
            {"realmId": "42", "dataChangeEvent": {"entities": [
                {"name": "Account", "id": "3", "operation": "Archive",
                 "lastUpdated": "2024-05-02T10:20:00.000Z"}]}}]});
        let events = parse_trusted(&serde_json::to_vec(&body).expect("serialise")).expect("valid");
        let summary: Vec<_> = events
            .iter()
            .map(|e| {
                (
                    e.realm_id.as_str(),
                    e.entity.as_str(),
                    e.entity_id.as_str(),
                    e.operation.as_str(),
                    e.deleted_id.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("1185883450", "Customer", "1", "Create", None),
                ("1185883450", "Vendor", "7", "Merge", Some("8")),
                ("42", "Account", "3", "Archive", None),
            ]
        );
        assert_eq!(events[0].last_updated, Some(utc(2015, 10, 5, 21, 42, 19)));
        assert_eq!(
            events[2].operation,
            QboOperation::Other("Archive".into()),
            "an unknown operation is carried, not refused"
        );
    }

    #[test]
    fn a_cloud_event_maps_back_to_legacy_spelling() {
        // The reference §4 deactivated-vendor fixture, CloudEvents form.
        let body = br#"[ { "specversion": "1.0", "id": "0b0f7c9e-6d7e-4c55-9a59-3b8d1c1e2f10", "source": "intuit.simulator",
    "type": "qbo.vendor.deleted.v1", "datacontenttype": "application/json",
    "time": "2024-05-02T10:20:00.000Z", "intuitentityid": "30",
    "intuitaccountid": "9130357766900456", "data": {} } ]"#;
        assert_eq!(
            parse_trusted(body),
            Ok(vec![QboEntityEvent {
                realm_id: "9130357766900456".into(),
                entity: "Vendor".into(),
                entity_id: "30".into(),
                operation: QboOperation::Delete,
                last_updated: Some(utc(2024, 5, 2, 10, 20, 0)),
                deleted_id: None,
                cloud_event_id: Some("0b0f7c9e-6d7e-4c55-9a59-3b8d1c1e2f10".into()),
            }])
        );
    }

    #[test]
    fn cloud_event_types_name_entities_and_operations() {
        let event = |kind: &str| {
            json!({"specversion": "1.0", "id": "e1", "source": "intuit.x", "type": kind,
                   "time": "2025-09-10T21:31:25.179851517Z", "intuitentityid": "1",
                   "intuitaccountid": "310687", "data": {}})
        };
        let cases = [
            ("qbo.account.created.v1", "Account", QboOperation::Create),
            ("qbo.taxcode.updated.v1", "TaxCode", QboOperation::Update),
            (
                "qbo.journalentry.voided.v1",
                "JournalEntry",
                QboOperation::Void,
            ),
            ("qbo.customer.merged.v1", "Customer", QboOperation::Merge),
            ("qbo.invoice.emailed.v1", "Invoice", QboOperation::Emailed),
            ("qbo.class.deleted.v2", "Class", QboOperation::Delete),
            (
                "qbo.widget.archived.v1",
                "Widget",
                QboOperation::Other("archived".into()),
            ),
        ];
        for (kind, entity, operation) in cases {
            let body = serde_json::to_vec(&json!([event(kind)])).expect("serialise");
            let events = parse_trusted(&body).expect(kind);
            assert_eq!(
                (events[0].entity.as_str(), &events[0].operation),
                (entity, &operation),
                "{kind}"
            );
        }
        let body = serde_json::to_vec(&json!([event("qbo.item.created.v1")])).expect("serialise");
        let parsed = parse_trusted(&body).expect("valid");
        assert_eq!(
            parsed[0].last_updated.map(|t| t.timestamp_subsec_nanos()),
            Some(179_851_517)
        );
    }

    #[test]
    fn empty_batches_are_valid_and_yield_nothing() {
        assert_eq!(parse_trusted(b"[]"), Ok(vec![]));
        assert_eq!(parse_trusted(br#"{"eventNotifications":[]}"#), Ok(vec![]));
    }

    #[test]
    fn malformed_bodies_are_400_naming_the_field() {
        let refused = parse_trusted(b"{not json").expect_err("refused");
        assert_eq!((refused.status(), refused.code()), (400, "malformed"));
        assert!(refused.to_string().starts_with("body is not valid JSON"));
        let entity = |e: Value| {
            json!({"eventNotifications": [{"realmId": "1",
                   "dataChangeEvent": {"entities": [e]}}]})
        };
        let cloud = |patch: Value| {
            let mut e = json!({"specversion": "1.0", "id": "e1", "type": "qbo.item.created.v1",
                               "intuitentityid": "1", "intuitaccountid": "2"});
            for (k, v) in patch.as_object().expect("object") {
                e[k] = v.clone();
            }
            json!([e])
        };
        let at = "eventNotifications[0].dataChangeEvent.entities[0]";
        for (body, message) in [
            (
                json!("x"),
                "body must be an object with `eventNotifications` or an array of CloudEvents"
                    .to_owned(),
            ),
            (
                json!({"foo": 1}),
                "`eventNotifications` must be an array".to_owned(),
            ),
            (
                json!({"eventNotifications": [{"dataChangeEvent": {"entities": []}}]}),
                "`eventNotifications[0].realmId` must be a non-empty string or an integer"
                    .to_owned(),
            ),
            (
                json!({"eventNotifications": [{"realmId": "1"}]}),
                "`eventNotifications[0].dataChangeEvent.entities` must be an array".to_owned(),
            ),
            (
                entity(
                    json!({"id": "1", "operation": "Create", "lastUpdated": "2024-05-02T10:20:00Z"}),
                ),
                format!("`{at}.name` must be a non-empty string"),
            ),
            (
                entity(json!({"name": "Item", "id": true, "operation": "Create",
                              "lastUpdated": "2024-05-02T10:20:00Z"})),
                format!("`{at}.id` must be a non-empty string or an integer"),
            ),
            (
                entity(json!({"name": "Item", "id": "1", "operation": "Create"})),
                format!("`{at}.lastUpdated` must be a non-empty string"),
            ),
            (
                entity(json!({"name": "Item", "id": "1", "operation": "Create",
                              "lastUpdated": "yesterday"})),
                format!("`{at}.lastUpdated` must be an ISO 8601 timestamp"),
            ),
            (json!([1]), "`[0]` must be an object".to_owned()),
            (
                cloud(json!({"id": ""})),
                "`[0].id` must be a non-empty string".to_owned(),
            ),
            (
                cloud(json!({"specversion": "0.3"})),
                "`[0].specversion` must be 1.x".to_owned(),
            ),
            (
                cloud(json!({"type": "com.example.created"})),
                "`[0].type` must be `qbo.<entity>.<operation>.v<N>`, not `com.example.created`"
                    .to_owned(),
            ),
            (
                cloud(json!({"intuitaccountid": null})),
                "`[0].intuitaccountid` must be a non-empty string or an integer".to_owned(),
            ),
            (
                cloud(json!({"time": "soon"})),
                "`[0].time` must be an RFC 3339 timestamp".to_owned(),
            ),
            (
                cloud(json!({"intuitentityid": "a\u{0}b"})),
                "the body contains a NUL character (\\u0000), which cannot be stored".to_owned(),
            ),
        ] {
            assert_eq!(malformed_message(body), message);
        }
    }

    #[test]
    fn last_updated_parses_rfc3339_and_the_colonless_offset_form() {
        let at = utc(2015, 10, 5, 21, 42, 19);
        for s in [
            "2015-10-05T14:42:19-0700",
            "2015-10-05T14:42:19.000-0700",
            "2015-10-05T14:42:19-07:00",
            "2015-10-05T21:42:19Z",
            "2015-10-05T21:42:19.000Z",
        ] {
            assert_eq!(parse_last_updated(s), Some(at), "{s}");
        }
        assert_eq!(
            parse_last_updated("2024-05-02T10:15:30.250Z"),
            Some(utc(2024, 5, 2, 10, 15, 30) + chrono::Duration::milliseconds(250))
        );
        assert_eq!(
            parse_last_updated("2015-10-05T14:42:19.5-0700"),
            Some(at + chrono::Duration::milliseconds(500))
        );
        for bad in [
            "",
            "2015-10-05",
            "2015-10-05 14:42:19",
            "2015-10-05T14:42:19",
        ] {
            assert_eq!(parse_last_updated(bad), None, "{bad:?}");
        }
    }

    fn legacy(operation: QboOperation, last_updated: &str) -> QboEntityEvent {
        QboEntityEvent {
            realm_id: "9130357766900456".into(),
            entity: "Customer".into(),
            entity_id: "58".into(),
            operation,
            last_updated: parse_last_updated(last_updated),
            deleted_id: None,
            cloud_event_id: None,
        }
    }

    #[test]
    fn legacy_dedupe_keys_are_pinned_and_differ_by_operation_and_last_updated() {
        // Computed independently with python3:
        // hashlib.sha256(json.dumps(["qbo", realm, entity, id, op, last_updated],
        //                separators=(",", ":")).encode()).hexdigest()
        let update = legacy(QboOperation::Update, "2024-05-02T10:15:30.000Z");
        assert_eq!(
            dedupe_key(&update),
            "41433aa301d4163a7d305dbce5a9c93e61b5ce854f522084b39523a4a4520cdd"
        );
        assert_eq!(
            dedupe_key(&legacy(QboOperation::Delete, "2024-05-02T10:15:30.000Z")),
            "13cb60a5d6a35eb4a371a9a718b57a5f702840b96a767bf8cc30ae6370604951"
        );
        assert_ne!(
            dedupe_key(&update),
            dedupe_key(&legacy(QboOperation::Update, "2024-05-02T10:15:31.000Z")),
            "the entity's next change is a new event"
        );
        assert_eq!(
            dedupe_key(&update),
            dedupe_key(&legacy(QboOperation::Update, "2024-05-02T03:15:30-0700")),
            "the same instant written with another offset is the same event"
        );
        // The vector body's event, as parsed, has the pinned key.
        let parsed = parse_trusted(BODY).expect("valid");
        assert_eq!(dedupe_key(&parsed[0]), dedupe_key(&update));
    }

    #[test]
    fn a_legacy_vector_with_a_colonless_offset_is_pinned() {
        let body = br#"{"eventNotifications":[{"realmId":"1185883450","dataChangeEvent":{"entities":[{"name":"Vendor","id":"1","operation":"Create","lastUpdated":"2015-10-05T14:42:19-0700"}]}}]}"#;
        let parsed = parse_trusted(body).expect("valid");
        // python3: sha256(b'["qbo","1185883450","Vendor","1","Create","2015-10-05T21:42:19Z"]')
        assert_eq!(
            dedupe_key(&parsed[0]),
            "df7477105e75974232cbc99e572166089cdc5fb56a142b48b54e83036291832f"
        );
    }

    #[test]
    fn cloud_events_are_keyed_by_their_id() {
        let mut event = legacy(QboOperation::Delete, "2024-05-02T10:20:00.000Z");
        let legacy_key = dedupe_key(&event);
        event.cloud_event_id = Some("0b0f7c9e-6d7e-4c55-9a59-3b8d1c1e2f10".into());
        assert_eq!(dedupe_key(&event), "0b0f7c9e-6d7e-4c55-9a59-3b8d1c1e2f10");
        assert_ne!(dedupe_key(&event), legacy_key);
    }
}
