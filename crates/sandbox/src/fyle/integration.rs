//! Fyle's integration-settings service, as the integrations see it: one record per org and
//! installed integration (`tpa_name`), whose counts Fyle's app shows as banners — the unmapped
//! corporate cards among them (incumbent #23: `PATCH {INTEGRATIONS_SETTINGS_API}/integrations/`).
//!
//! `PATCH /integrations/` (served on the accounts host; the real service is a host of its own):
//! - `Authorization: Bearer <access token>` names the org (missing or invalid → 401
//!   `{"detail": …}`);
//! - the body is a JSON object with `tpa_name` (missing → 400 `{"detail": "tpa_name is
//!   required"}`) and any of `unmapped_card_count`, `unmapped_employee_count`, `errors_count`
//!   (non-negative integers) and `is_token_expired` (boolean); a field of the wrong type → 400
//!   `{"<field>": ["…"]}` and nothing changes;
//! - an org without that integration installed → 200 `{"message": "Integration is inactive or
//!   does not exist"}`, nothing stored (the real service answers so for sandbox orgs);
//! - otherwise the fields are stored and the record is answered (200).
//!
//! Every org starts with the QuickBooks integration installed ([`QBO_TPA_NAME`]) and its
//! counts at zero; each accepted PATCH is counted (`patches`) so tests can see repeats.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::list_filter::format_micros;

/// The `tpa_name` of the QuickBooks Online integration.
pub const QBO_TPA_NAME: &str = "Fyle Quickbooks Integration";

/// One org's record of an installed integration.
#[derive(Debug, Clone, Serialize)]
pub struct Integration {
    pub tpa_name: String,
    pub is_active: bool,
    pub unmapped_card_count: u64,
    pub unmapped_employee_count: u64,
    pub errors_count: u64,
    pub is_token_expired: bool,
    /// When a PATCH last changed it; `None` until then.
    pub updated_at: Option<String>,
    /// Accepted PATCHes (not a field of the real service).
    pub patches: u64,
}

impl Integration {
    /// The QuickBooks integration, installed, nothing to report.
    pub fn qbo() -> Self {
        Self {
            tpa_name: QBO_TPA_NAME.to_owned(),
            is_active: true,
            unmapped_card_count: 0,
            unmapped_employee_count: 0,
            errors_count: 0,
            is_token_expired: false,
            updated_at: None,
            patches: 0,
        }
    }

    /// The record as the service answers it.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// What a PATCH asks for, validated (pure).
#[derive(Debug, Default, PartialEq)]
pub struct Patch {
    pub tpa_name: String,
    pub unmapped_card_count: Option<u64>,
    pub unmapped_employee_count: Option<u64>,
    pub errors_count: Option<u64>,
    pub is_token_expired: Option<bool>,
}

/// Reads a PATCH body; `Err` is the 400 body.
pub fn parse_patch(body: &[u8]) -> Result<Patch, Value> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(json!({"detail": "JSON parse error"}));
    };
    let Some(tpa_name) = fields.get("tpa_name").and_then(Value::as_str) else {
        return Err(json!({"detail": "tpa_name is required"}));
    };
    let count = |key: &str| -> Result<Option<u64>, Value> {
        match fields.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| json!({ key: ["A valid non-negative integer is required."] })),
        }
    };
    let is_token_expired = match fields.get("is_token_expired") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(json!({"is_token_expired": ["Must be a valid boolean."]})),
    };
    Ok(Patch {
        tpa_name: tpa_name.to_owned(),
        unmapped_card_count: count("unmapped_card_count")?,
        unmapped_employee_count: count("unmapped_employee_count")?,
        errors_count: count("errors_count")?,
        is_token_expired,
    })
}

/// Applies `patch` to the org's record if it is the installed integration; the answer's body.
pub fn apply(record: Option<&mut Integration>, patch: &Patch, now: DateTime<Utc>) -> Value {
    let Some(record) = record.filter(|r| r.is_active && r.tpa_name == patch.tpa_name) else {
        return json!({"message": "Integration is inactive or does not exist"});
    };
    if let Some(n) = patch.unmapped_card_count {
        record.unmapped_card_count = n;
    }
    if let Some(n) = patch.unmapped_employee_count {
        record.unmapped_employee_count = n;
    }
    if let Some(n) = patch.errors_count {
        record.errors_count = n;
    }
    if let Some(b) = patch.is_token_expired {
        record.is_token_expired = b;
    }
    record.updated_at = Some(format_micros(now.timestamp_micros()));
    record.patches += 1;
    record.to_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_709_251_200, 0).expect("time")
    }

    #[test]
    fn a_patch_needs_a_tpa_name_and_typed_fields() {
        assert_eq!(
            parse_patch(br#"{"unmapped_card_count": 3}"#),
            Err(json!({"detail": "tpa_name is required"}))
        );
        assert!(parse_patch(br#"{"tpa_name": "x", "unmapped_card_count": -1}"#).is_err());
        assert!(parse_patch(br#"{"tpa_name": "x", "unmapped_card_count": "3"}"#).is_err());
        assert!(parse_patch(b"[]").is_err());
        let patch = parse_patch(br#"{"tpa_name": "x", "unmapped_card_count": 3}"#).expect("ok");
        assert_eq!(patch.unmapped_card_count, Some(3));
        assert_eq!(patch.errors_count, None);
    }

    #[test]
    fn only_the_installed_integration_is_updated() {
        let mut record = Integration::qbo();
        let other = Patch {
            tpa_name: "Fyle Xero Integration".into(),
            unmapped_card_count: Some(4),
            ..Patch::default()
        };
        let answer = apply(Some(&mut record), &other, now());
        assert!(answer["message"].is_string());
        assert_eq!((record.unmapped_card_count, record.patches), (0, 0));
        let ours = Patch {
            tpa_name: QBO_TPA_NAME.into(),
            unmapped_card_count: Some(4),
            ..Patch::default()
        };
        let answer = apply(Some(&mut record), &ours, now());
        assert_eq!(answer["unmapped_card_count"], 4);
        assert_eq!((record.unmapped_card_count, record.patches), (4, 1));
        assert!(apply(None, &ours, now())["message"].is_string());
    }
}
