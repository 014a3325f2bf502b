//! QBO error bodies (reference §3.6), as pure builders.
//!
//! Two shapes exist: the data-service `Fault` (capitalised keys, `code` as a string, HTTP 400 for
//! validation) and the gateway envelope (lowercase keys) used for 401 (3200), 403 (3100) and 429
//! (3001; the JSON form of the documented XML body is **(inferred)**). Every body also has an XML
//! form ([`super::xml`]); which one is sent is decided by the handler (see `handlers.rs`).

use chrono::{DateTime, FixedOffset, Offset, Utc};
use serde_json::{Value, json};

/// `time` as QBO renders it: local offset, milliseconds (`2024-05-02T03:15:22.123-07:00`).
pub fn qbo_time(now: DateTime<Utc>, tz_offset_minutes: i32) -> String {
    let tz = FixedOffset::east_opt(tz_offset_minutes * 60).unwrap_or_else(|| Utc.fix());
    now.with_timezone(&tz)
        .format("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

/// A data-service fault: `{"Fault": {"Error": [...], "type": ...}, "time": ...}`.
pub fn fault(
    kind: &str,
    code: &str,
    message: &str,
    detail: &str,
    element: &str,
    time: &str,
) -> Value {
    json!({
        "Fault": {
            "Error": [ { "Message": message, "Detail": detail, "code": code, "element": element } ],
            "type": kind,
        },
        "time": time,
    })
}

/// 400 ValidationFault for a query that does not parse (code 4000, **(inferred)**).
pub fn query_parse_fault(detail: &str, time: &str) -> Value {
    fault(
        "ValidationFault",
        "4000",
        "Error parsing query",
        &format!("QueryParserError: {detail}"),
        "",
        time,
    )
}

/// 400 ValidationFault for a query that parses but is invalid (unknown entity/property; code 4001).
pub fn query_validation_fault(detail: &str, time: &str) -> Value {
    fault(
        "ValidationFault",
        "4001",
        "Invalid query",
        &format!("QueryValidationError: {detail}"),
        "",
        time,
    )
}

/// 400 Stale Object Error (code 5010).
pub fn stale_object(time: &str) -> Value {
    fault(
        "ValidationFault",
        "5010",
        "Stale Object Error",
        "Stale Object Error : You and root were working on this at the same time. root finished before you did, so your work was not saved.",
        "",
        time,
    )
}

/// 400 Duplicate Name Exists Error (code 6240). `party`: the name list shared by customers,
/// vendors and employees (the reference's text); other types name themselves **(inferred)**.
pub fn duplicate_name(entity: &str, party: bool, name: &str, time: &str) -> Value {
    let who = if party {
        "Another customer, vendor or employee".to_owned()
    } else {
        format!("Another {}", entity.to_lowercase())
    };
    fault(
        "ValidationFault",
        "6240",
        "Duplicate Name Exists Error",
        &format!(
            "The name supplied already exists. : {who} is already using this name ({name}). Please use a different name."
        ),
        "",
        time,
    )
}

/// 400 for a property the entity does not have (code 2010; detail text **(inferred)**).
pub fn unsupported_property(entity: &str, property: &str, time: &str) -> Value {
    fault(
        "ValidationFault",
        "2010",
        "Request has invalid or unsupported property",
        &format!(
            "Property Name:Unrecognized field \"{property}\" (class com.intuit.schema.finance.v3.{entity}), not marked as ignorable specified is unsupported or invalid"
        ),
        property,
        time,
    )
}

/// 400 Object Not Found (code 610).
pub fn not_found(entity: &str, id: &str, time: &str) -> Value {
    fault(
        "ValidationFault",
        "610",
        "Object Not Found",
        &format!(
            "Object Not Found : Something you're trying to use has been made inactive or is not found ({entity} {id})."
        ),
        "",
        time,
    )
}

/// 400 Required param missing (code 2020).
pub fn required_missing(field: &str, time: &str) -> Value {
    fault(
        "ValidationFault",
        "2020",
        "Required param missing, need to supply the required value for the API",
        &format!("Required parameter {field} is missing in the request"),
        field,
        time,
    )
}

/// 400 generic business validation (code 6000).
pub fn business_validation(detail: &str, time: &str) -> Value {
    fault(
        "ValidationFault",
        "6000",
        "A business validation error has occurred while processing your request",
        detail,
        "",
        time,
    )
}

/// 5xx SystemFault (code 10000, **(inferred)**).
pub fn system_fault(time: &str) -> Value {
    fault(
        "SystemFault",
        "10000",
        "An application error has occurred while processing your request",
        "System Failure Error: Simulated failure",
        "",
        time,
    )
}

/// A gateway error (401/403/429) in either form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayError {
    /// `fault.type` (`AUTHENTICATION`, `SERVICE`, `AuthenticationFault`).
    pub kind: &'static str,
    /// Error code.
    pub code: &'static str,
    /// Message.
    pub message: &'static str,
    /// Detail.
    pub detail: &'static str,
}

impl GatewayError {
    /// The lowercase JSON envelope.
    pub fn json(&self, now: DateTime<Utc>) -> Value {
        gateway(self.code, self.message, self.detail, self.kind, now)
    }

    /// The XML `Fault`.
    pub fn xml(&self, time: &str) -> String {
        super::xml::gateway_fault(self.kind, self.code, self.message, self.detail, time)
    }
}

/// 401 for an expired access token (code 3200).
pub const TOKEN_EXPIRED: GatewayError = GatewayError {
    kind: "AUTHENTICATION",
    code: "3200",
    message: "message=AuthenticationFailed; errorCode=003200; statusCode=401",
    detail: "Token expired: 0 or invalid token",
};

/// 401 for a request without a usable token (none, not `Bearer`, or never issued): the XML
/// `General Authentication Error` of reference §3.6 (its detail text is **(inferred)**).
pub const GENERAL_AUTHENTICATION: GatewayError = GatewayError {
    kind: "AuthenticationFault",
    code: "100",
    message: "General Authentication Error",
    detail: "AuthenticationErrorGeneral: SRV-110-Authentication Failure , statusCode: 401",
};

/// 403 for a token of another realm (code 3100).
pub const FORBIDDEN: GatewayError = GatewayError {
    kind: "SERVICE",
    code: "3100",
    message: "message=AuthorizationFailed; errorCode=003100; statusCode=403",
    detail: "The access token is not authorized for this realm",
};

/// 429 throttle (code 3001).
pub const THROTTLED: GatewayError = GatewayError {
    kind: "SERVICE",
    code: "3001",
    message: "message=ThrottleExceeded; errorCode=003001; statusCode=429",
    detail: "The request limit was reached.",
};

/// The gateway envelope (401/403/429), `time` in epoch milliseconds.
pub fn gateway(code: &str, message: &str, detail: &str, kind: &str, now: DateTime<Utc>) -> Value {
    json!({
        "warnings": null, "intuitObject": null,
        "fault": { "error": [ { "message": message, "detail": detail, "code": code, "element": null } ], "type": kind },
        "report": null, "queryResponse": null, "batchItemResponse": [], "attachableResponse": [],
        "syncErrorResponse": null, "requestId": null, "time": now.timestamp_millis(), "status": null,
        "cdcresponse": [],
    })
}

/// 401 for an expired access token (code 3200), JSON form.
pub fn token_expired(now: DateTime<Utc>) -> Value {
    TOKEN_EXPIRED.json(now)
}

/// 403 for a token of another realm (code 3100), JSON form.
pub fn forbidden(now: DateTime<Utc>) -> Value {
    FORBIDDEN.json(now)
}

/// 429 throttle (code 3001), JSON form.
pub fn throttled(now: DateTime<Utc>) -> Value {
    THROTTLED.json(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_uses_the_company_offset_with_milliseconds() {
        let now = DateTime::parse_from_rfc3339("2024-05-02T10:15:22.123Z")
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(qbo_time(now, -420), "2024-05-02T03:15:22.123-07:00");
    }

    #[test]
    fn fault_codes_are_strings() {
        let f = stale_object("t");
        assert_eq!(f["Fault"]["Error"][0]["code"], "5010");
        assert_eq!(f["Fault"]["type"], "ValidationFault");
        let g = throttled(Utc::now());
        assert_eq!(g["fault"]["error"][0]["code"], "3001");
    }
}
