//! QBO error bodies (reference §3.6), as pure builders.
//!
//! Two shapes exist: the data-service `Fault` (capitalised keys, `code` as a string, HTTP 400 for
//! validation) and the gateway envelope (lowercase keys) used for 401 (3200), 403 (3100) and 429
//! (3001; the JSON form of the documented XML body is **(inferred)**).

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

/// 400 Duplicate Name Exists Error (code 6240).
pub fn duplicate_name(name: &str, time: &str) -> Value {
    fault(
        "ValidationFault",
        "6240",
        "Duplicate Name Exists Error",
        &format!(
            "The name supplied already exists. : Another customer, vendor or employee is already using this name ({name}). Please use a different name."
        ),
        "",
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

/// 401 for an expired or unknown access token (code 3200).
pub fn token_expired(now: DateTime<Utc>) -> Value {
    gateway(
        "3200",
        "message=AuthenticationFailed; errorCode=003200; statusCode=401",
        "Token expired: 0 or invalid token",
        "AUTHENTICATION",
        now,
    )
}

/// 403 for a token of another realm (code 3100).
pub fn forbidden(now: DateTime<Utc>) -> Value {
    gateway(
        "3100",
        "message=AuthorizationFailed; errorCode=003100; statusCode=403",
        "The access token is not authorized for this realm",
        "SERVICE",
        now,
    )
}

/// 429 throttle (code 3001).
pub fn throttled(now: DateTime<Utc>) -> Value {
    gateway(
        "3001",
        "message=ThrottleExceeded; errorCode=003001; statusCode=429",
        "The request limit was reached.",
        "SERVICE",
        now,
    )
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
