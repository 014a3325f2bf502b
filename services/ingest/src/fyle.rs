//! Fyle webhooks: what ingest accepts, and every way it refuses — pure rules, no I/O.
//!
//! A body is accepted when it is a JSON object with a string `action`, an optional string
//! `resource`, and a `data` object carrying the `org_id` of the workspace named in the URL —
//! checked after the delivery authenticated ([`crate::auth`]). Each refusal is a [`Rejection`]
//! with one status and one JSON body, defined here and nowhere else.

use attrsync_core::{
    FyleAttributeType,
    webhook::{FyleResource, FyleWebhookAction, Route},
};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Why a webhook was refused. Nothing is stored or published for a refused webhook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("workspace `{0}` does not exist")]
    UnknownWorkspace(String),
    /// The org belongs to another workspace (the incumbent's "Workspace mismatch").
    #[error("Workspace mismatch")]
    WorkspaceMismatch,
    /// The org belongs to no workspace (the incumbent's "Workspace not found").
    #[error("Workspace not found")]
    OrgNotFound,
    #[error("too many webhooks for this workspace; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("temporarily unavailable; retry later")]
    Unavailable,
    /// Missing or wrong credentials, or a workspace that does not exist: one answer for all.
    #[error("missing or invalid webhook credentials")]
    Unauthenticated,
    /// An authenticated delivery whose `data.org_id` is not the workspace's org.
    #[error("data.org_id is not this workspace's org")]
    OrgNotOfWorkspace,
    #[error("the webhook could not be stored")]
    Internal,
    /// Too many deliveries in flight at once.
    #[error("busy; retry shortly")]
    Busy,
}

impl Rejection {
    /// The HTTP status of this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::BodyTooLarge { .. } => 413,
            Rejection::MalformedJson(_) | Rejection::InvalidBody(_) => 400,
            Rejection::WorkspaceMismatch | Rejection::OrgNotFound => 400,
            Rejection::UnknownWorkspace(_) => 404,
            Rejection::RateLimited { .. } => 429,
            Rejection::Unavailable => 503,
            Rejection::Unauthenticated => 401,
            Rejection::OrgNotOfWorkspace => 400,
            Rejection::Internal => 500,
            Rejection::Busy => 503,
        }
    }

    /// A stable machine-readable code for the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::BodyTooLarge { .. } => "body_too_large",
            Rejection::MalformedJson(_) => "malformed_json",
            Rejection::InvalidBody(_) => "invalid_body",
            Rejection::UnknownWorkspace(_) => "unknown_workspace",
            Rejection::WorkspaceMismatch => "workspace_mismatch",
            Rejection::OrgNotFound => "org_not_found",
            Rejection::RateLimited { .. } => "rate_limited",
            Rejection::Unavailable => "unavailable",
            Rejection::Unauthenticated => "unauthorized",
            Rejection::OrgNotOfWorkspace => "org_mismatch",
            Rejection::Internal => "internal",
            Rejection::Busy => "busy",
        }
    }

    /// Seconds a client should wait before retrying, when retrying can help.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Rejection::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Rejection::Unavailable => Some(5),
            Rejection::Busy => Some(1),
            _ => None,
        }
    }

    /// `{"error": code, "message": text}`.
    pub fn body(&self) -> Value {
        serde_json::json!({ "error": self.code(), "message": self.to_string() })
    }
}

/// A webhook body that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct FyleWebhook {
    pub action: FyleWebhookAction,
    pub resource: Option<FyleResource>,
    pub org_id: String,
    pub data: Value,
    pub reason: Option<String>,
    /// The whole body, as parsed (stored in the inbox).
    pub body: Value,
}

impl FyleWebhook {
    pub fn route(&self) -> Route {
        attrsync_core::webhook::route(&self.action, self.resource.as_ref())
    }

    /// Whether the object carries its version (`data.updated_at`).
    pub fn is_versioned(&self) -> bool {
        self.data
            .get("updated_at")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    }

    /// The attribute type whose rollout flag governs this webhook.
    pub fn attribute_type(&self) -> Option<String> {
        let resource = self.resource.as_ref()?;
        if let Some(fixed) = resource.fixed_attribute_type() {
            return Some(fixed.as_str().to_owned());
        }
        match resource {
            FyleResource::ExpenseField | FyleResource::DependentField => {
                Some(match self.data.get("field_name").and_then(Value::as_str) {
                    Some(name) => FyleAttributeType::custom(name).as_str().to_owned(),
                    None => resource.as_str().to_owned(),
                })
            }
            _ => None,
        }
    }
}

/// Parses and validates a body.
pub fn parse(body: &[u8]) -> Result<FyleWebhook, Rejection> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Rejection::MalformedJson(e.to_string()))?;
    if attrsync_core::derive::contains_nul(&value) {
        return Err(Rejection::InvalidBody(
            "the body contains a NUL character (\\u0000), which cannot be stored".into(),
        ));
    }
    let object = value
        .as_object()
        .ok_or_else(|| Rejection::InvalidBody("body must be a JSON object".into()))?;
    let action = match object.get("action") {
        Some(Value::String(a)) if !a.is_empty() => FyleWebhookAction::from(a.clone()),
        _ => {
            return Err(Rejection::InvalidBody(
                "`action` must be a non-empty string".into(),
            ));
        }
    };
    let resource = match object.get("resource") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) => Some(FyleResource::from(r.clone())),
        Some(_) => return Err(Rejection::InvalidBody("`resource` must be a string".into())),
    };
    let data = match object.get("data") {
        Some(d @ Value::Object(_)) => d.clone(),
        _ => return Err(Rejection::InvalidBody("`data` must be an object".into())),
    };
    let org_id = match data.get("org_id") {
        Some(Value::String(o)) if !o.is_empty() => o.clone(),
        _ => {
            return Err(Rejection::InvalidBody(
                "`data.org_id` must be a non-empty string".into(),
            ));
        }
    };
    let reason = object
        .get("reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(FyleWebhook {
        action,
        resource,
        org_id,
        data,
        reason,
        body: value,
    })
}

/// How long a body without a version is recognised as a repeat.
pub const UNVERSIONED_DEDUPE_WINDOW_SECS: i64 = 3600;

/// Refuses an attribute webhook fyle-sync could never apply, naming the field, so the sender
/// hears it now (400) instead of a 200 and a dead letter later. It runs the very derivation
/// fyle-sync runs ([`attrsync_core::derive`]); a DELETED needs only `data.id`. Other routes
/// (expense, org setting, ignored) carry nothing fyle-sync derives and pass.
pub fn check_appliable(hook: &FyleWebhook) -> Result<(), Rejection> {
    let Some(resource) = hook.resource.as_ref() else {
        return Ok(());
    };
    if hook.route() != Route::Attribute {
        return Ok(());
    }
    if hook.action == FyleWebhookAction::Deleted {
        return match hook.data.get("id") {
            Some(Value::String(id)) if !id.is_empty() => Ok(()),
            Some(Value::Number(_)) => Ok(()),
            _ => Err(Rejection::InvalidBody(
                "`data.id` must be a non-empty string or an integer".into(),
            )),
        };
    }
    attrsync_core::derive::derive(resource, &hook.data)
        .map(drop)
        .map_err(|e| Rejection::InvalidBody(format!("fyle-sync cannot apply it: {e}")))
}

/// Identifies a delivery. Fyle sends no delivery id and resends a failed webhook byte for
/// byte, so the same body for the same workspace is the same delivery — when the body carries
/// a version (`data.updated_at`). A body without one (a report exported again, an expense
/// ejected twice) can legitimately repeat later, so it is a repeat only within
/// [`UNVERSIONED_DEDUPE_WINDOW_SECS`] of the first: the key names the window-sized bucket it
/// arrived in, and the store also looks in the previous bucket, so a retry that crosses a
/// bucket boundary is still recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupeKey {
    /// A versioned body: the same bytes are the same delivery for as long as the inbox keeps it.
    Always(String),
    /// An unversioned body: `{body}:{bucket}`, a repeat of the same body in this bucket or
    /// the previous one, within the window.
    Windowed { body: String, bucket: i64 },
}

impl DedupeKey {
    /// The key stored with the delivery.
    pub fn stored(&self) -> String {
        match self {
            DedupeKey::Always(key) => key.clone(),
            DedupeKey::Windowed { body, bucket } => format!("{body}:{bucket}"),
        }
    }
}

pub fn dedupe_key(
    workspace_id: i64,
    body: &[u8],
    versioned: bool,
    received_at: chrono::DateTime<chrono::Utc>,
) -> DedupeKey {
    let mut hasher = Sha256::new();
    hasher.update(b"fyle:");
    hasher.update(workspace_id.to_string().as_bytes());
    hasher.update(b":");
    hasher.update(body);
    let hash = hex::encode(hasher.finalize());
    if versioned {
        DedupeKey::Always(hash)
    } else {
        DedupeKey::Windowed {
            body: hash,
            bucket: received_at
                .timestamp()
                .div_euclid(UNVERSIONED_DEDUPE_WINDOW_SECS),
        }
    }
}

/// What ingest does with an accepted webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Relayed to Kafka.
    Published,
    /// Recorded, not relayed: webhook sync is off for this attribute type.
    Skipped,
    /// Recorded, not relayed: nobody consumes it.
    Ignored,
}

impl Disposition {
    /// The `outcome` label of `ingest_webhooks_total`.
    pub fn outcome(self) -> &'static str {
        match self {
            Disposition::Published => "accepted",
            Disposition::Skipped => "skipped",
            Disposition::Ignored => "ignored",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Published => "PUBLISHED",
            Disposition::Skipped => "SKIPPED",
            Disposition::Ignored => "IGNORED",
        }
    }
}

/// The disposition of a webhook taking the route, given whether webhook sync is on for it.
pub fn disposition(route: Route, attribute_sync_enabled: bool) -> Disposition {
    match route {
        Route::Attribute if attribute_sync_enabled => Disposition::Published,
        Route::Attribute => Disposition::Skipped,
        Route::Expense | Route::OrgSetting => Disposition::Published,
        Route::Ignored => Disposition::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).expect("serialise")
    }

    #[test]
    fn a_category_webhook_is_accepted_and_routed_to_fyle_sync() {
        let hook = parse(&body(json!({"action": "CREATED", "resource": "CATEGORY",
            "data": {"id": 1, "org_id": "orX", "name": "Travel"}})))
        .expect("valid");
        assert_eq!(hook.org_id, "orX");
        assert_eq!(hook.route(), Route::Attribute);
        assert_eq!(hook.attribute_type().as_deref(), Some("CATEGORY"));
    }

    #[test]
    fn expense_field_flags_use_the_custom_type() {
        let hook = parse(&body(
            json!({"action": "UPDATED", "resource": "EXPENSE_FIELD",
            "data": {"id": 1, "org_id": "orX", "field_name": "Cost Code", "type": "SELECT"}}),
        ))
        .expect("valid");
        assert_eq!(hook.attribute_type().as_deref(), Some("CUSTOM:COST_CODE"));
    }

    #[test]
    fn malformed_and_invalid_bodies_are_refused_with_400() {
        let bad = parse(b"{not json").expect_err("malformed");
        assert_eq!((bad.status(), bad.code()), (400, "malformed_json"));
        for (v, why) in [
            (json!([1, 2]), "body must be a JSON object"),
            (
                json!({"resource": "CATEGORY", "data": {"org_id": "o"}}),
                "`action` must be a non-empty string",
            ),
            (
                json!({"action": "CREATED", "data": "x"}),
                "`data` must be an object",
            ),
            (
                json!({"action": "CREATED", "data": {"id": 1}}),
                "`data.org_id` must be a non-empty string",
            ),
            (
                json!({"action": "CREATED", "resource": 5, "data": {"org_id": "o"}}),
                "`resource` must be a string",
            ),
        ] {
            let e = parse(&body(v)).expect_err(why);
            assert_eq!(e, Rejection::InvalidBody(why.into()));
            assert_eq!(e.body(), json!({"error": "invalid_body", "message": why}));
        }
    }

    #[test]
    fn dedupe_keys_are_the_sha256_of_workspace_and_bytes() {
        let now = chrono::Utc::now();
        // sha256("fyle:1:{}"), computed independently with `printf 'fyle:1:{}' | sha256sum`.
        assert_eq!(
            dedupe_key(1, b"{}", true, now),
            DedupeKey::Always(
                "8231e7b2bacc531bebd3ed9f2a544bb921baad1a2b9db166ff254bf69866db1b".into()
            )
        );
        assert_ne!(
            dedupe_key(1, b"{}", true, now),
            dedupe_key(2, b"{}", true, now)
        );
        assert_ne!(
            dedupe_key(1, b"{}", true, now),
            dedupe_key(1, b"{ }", true, now)
        );
    }

    #[test]
    fn unversioned_bodies_are_keyed_by_the_hour_bucket_they_arrive_in() {
        use chrono::TimeZone;
        let at = |h, m| {
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 23, h, m, 0)
                .single()
                .expect("time")
        };
        let body =
            br#"{"action":"ACCOUNTING_EXPORT_INITIATED","data":{"id":"rp1","org_id":"or1"}}"#;
        let ten = dedupe_key(1, body, false, at(10, 1));
        assert_eq!(ten, dedupe_key(1, body, false, at(10, 59)));
        let DedupeKey::Windowed { bucket, .. } = &ten else {
            panic!("unversioned bodies are windowed");
        };
        assert_eq!(*bucket, at(10, 0).timestamp() / 3600);
        assert!(ten.stored().ends_with(&format!(":{bucket}")));
        assert_ne!(ten, dedupe_key(1, body, false, at(11, 1)));
        assert_eq!(
            dedupe_key(1, body, true, at(10, 1)),
            dedupe_key(1, body, true, at(18, 1)),
            "versioned bodies never expire"
        );
        let hook = parse(br#"{"action":"UPDATED","resource":"CATEGORY","data":{"org_id":"o","updated_at":"2024-01-01T00:00:00Z"}}"#).expect("valid");
        assert!(hook.is_versioned());
        assert!(!parse(body).expect("valid").is_versioned());
    }

    #[test]
    fn a_nul_character_is_refused_before_it_reaches_the_database() {
        let bad = br#"{"action":"CREATED","data":{"org_id":"o","name":"a\u0000b"}}"#;
        assert_eq!(parse(bad).expect_err("refused").code(), "invalid_body");
        // An escaped backslash followed by "u0000" is plain text, and storable.
        let fine = br#"{"action":"CREATED","data":{"org_id":"o","name":"a\\u0000b"}}"#;
        assert!(parse(fine).is_ok());
    }

    #[test]
    fn attribute_webhooks_fyle_sync_could_never_apply_are_refused_naming_the_field() {
        let check = |v: Value| check_appliable(&parse(&body(v)).expect("parses"));
        assert!(
            check(json!({"action": "CREATED", "resource": "CATEGORY",
            "data": {"id": 1, "org_id": "o", "name": "Travel", "is_enabled": true}}))
            .is_ok()
        );
        let missing = check(json!({"action": "CREATED", "resource": "CATEGORY",
            "data": {"id": 1, "org_id": "o", "is_enabled": true}}))
        .expect_err("no name");
        assert_eq!(missing.status(), 400);
        assert!(missing.to_string().contains("name"), "{missing}");
        let wrong_id = check(json!({"action": "DELETED", "resource": "PROJECT",
            "data": {"id": [1], "org_id": "o"}}))
        .expect_err("array id");
        assert!(wrong_id.to_string().contains("data.id"), "{wrong_id}");
        assert!(
            check(json!({"action": "DELETED", "resource": "PROJECT",
            "data": {"id": "p1", "org_id": "o"}}))
            .is_ok()
        );
        // An action or resource nobody applies passes (recorded as ignored, not relayed).
        assert!(
            check(json!({"action": "ARCHIVED", "resource": "CATEGORY",
            "data": {"org_id": "o"}}))
            .is_ok()
        );
        assert!(
            check(json!({"action": "CREATED", "resource": "SPACESHIP",
            "data": {"org_id": "o"}}))
            .is_ok()
        );
    }

    #[test]
    fn dispositions_follow_routes_and_flags() {
        assert_eq!(disposition(Route::Attribute, true), Disposition::Published);
        assert_eq!(disposition(Route::Attribute, false), Disposition::Skipped);
        assert_eq!(disposition(Route::Expense, false), Disposition::Published);
        assert_eq!(disposition(Route::OrgSetting, true), Disposition::Published);
        assert_eq!(disposition(Route::Ignored, true), Disposition::Ignored);
    }

    #[test]
    fn every_rejection_has_a_status_and_retry_hint_where_retrying_helps() {
        assert_eq!(Rejection::BodyTooLarge { limit: 10 }.status(), 413);
        assert_eq!(Rejection::UnknownWorkspace("9".into()).status(), 404);
        assert_eq!(
            Rejection::WorkspaceMismatch.body()["message"],
            "Workspace mismatch"
        );
        assert_eq!(
            Rejection::OrgNotFound.body()["message"],
            "Workspace not found"
        );
        assert_eq!(
            Rejection::RateLimited {
                retry_after_secs: 1
            }
            .retry_after(),
            Some(1)
        );
        assert_eq!(Rejection::Unavailable.status(), 503);
        assert_eq!(Rejection::MalformedJson("x".into()).retry_after(), None);
    }
}
