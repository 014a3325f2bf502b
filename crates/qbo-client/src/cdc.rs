//! Change Data Capture (reference §3.5): `GET /cdc?entities=A,B&changedSince=<ts>`, its checks
//! and its answer. Pure.
//!
//! QBO answers the full objects of the listed entities changed at or after `changedSince`, and
//! deleted ones as `{"domain", "status": "Deleted", "Id", "MetaData"}`, grouped per entity:
//! `{"CDCResponse": [{"QueryResponse": [{"Customer": [...], "startPosition", "maxResults"}, …]}]}`.
//! An entity with no change may be left out. At most [`MAX_OBJECTS`] objects come back: a
//! [`Changes`] that is [`Changes::at_cap`] may be incomplete, and the caller continues from
//! [`Changes::latest`].
//!
//! Client-side checks, so a caller learns it must do a full pull without spending a request:
//! the look-back is 30 days (the client refuses anything older than 30 days minus a margin, as
//! [`crate::Error::CdcTooOld`], because QBO's clock is not ours), and CDC does not support
//! `JournalCode`, `TaxAgency`, `TimeActivity`, `TaxCode` and `TaxRate`.

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use serde_json::Value;

use crate::{
    error::{Error, Result},
    query::check_entity,
};

/// QBO's look-back limit.
pub const LOOKBACK: TimeDelta = TimeDelta::days(30);
/// Objects per CDC answer.
pub const MAX_OBJECTS: usize = 1000;
/// Entities CDC does not support.
pub const UNSUPPORTED: [&str; 5] = [
    "JournalCode",
    "TaxAgency",
    "TimeActivity",
    "TaxCode",
    "TaxRate",
];

/// One changed (or deleted) object.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The entity (`Customer`).
    pub entity: String,
    /// Its `Id`.
    pub id: String,
    /// `"status": "Deleted"`: the object is gone; `object` carries only `Id`, `MetaData`,
    /// `domain`.
    pub deleted: bool,
    /// `MetaData.LastUpdatedTime`, when present and readable.
    pub last_updated: Option<DateTime<FixedOffset>>,
    /// The object as QBO sent it.
    pub object: Value,
}

/// A CDC answer, flattened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Every object, in the order QBO sent them (grouped by entity).
    pub changes: Vec<Change>,
    /// The latest `LastUpdatedTime` seen.
    pub latest: Option<DateTime<FixedOffset>>,
}

impl Changes {
    /// Did QBO send as many objects as it ever sends? Then more may exist: ask again from
    /// [`Changes::latest`].
    pub fn at_cap(&self) -> bool {
        self.changes.len() >= MAX_OBJECTS
    }
}

/// Checks a CDC request against the look-back (`now` minus [`LOOKBACK`] plus `margin`) and the
/// supported entities; returns the `entities` parameter.
pub fn check_request(
    entities: &[&str],
    changed_since: DateTime<Utc>,
    now: DateTime<Utc>,
    margin: TimeDelta,
) -> Result<String> {
    if entities.is_empty() {
        return Err(Error::InvalidRequest(
            "CDC needs at least one entity".into(),
        ));
    }
    for e in entities {
        check_entity(e)?;
        if UNSUPPORTED.iter().any(|u| u.eq_ignore_ascii_case(e)) {
            return Err(Error::InvalidRequest(format!(
                "CDC does not support {e}; query it by MetaData.LastUpdatedTime"
            )));
        }
    }
    let oldest = now - LOOKBACK + margin;
    if changed_since < oldest {
        return Err(Error::CdcTooOld {
            changed_since,
            oldest,
        });
    }
    Ok(entities.join(","))
}

/// The `changedSince` parameter.
pub fn render_since(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

fn protocol(message: String) -> Error {
    Error::Protocol {
        status: 200,
        message,
    }
}

/// Reads a `CDCResponse` body.
pub fn parse(body: &Value) -> Result<Changes> {
    let responses = body
        .get("CDCResponse")
        .and_then(Value::as_array)
        .ok_or_else(|| protocol("CDC answer without CDCResponse".into()))?;
    let mut out = Changes::default();
    for r in responses {
        let groups = match r.get("QueryResponse") {
            None | Some(Value::Null) => continue,
            Some(Value::Array(groups)) => groups.as_slice(),
            Some(one @ Value::Object(_)) => std::slice::from_ref(one),
            Some(other) => return Err(protocol(format!("CDC QueryResponse is {other}"))),
        };
        for group in groups {
            let Some(group) = group.as_object() else {
                return Err(protocol(
                    "CDC QueryResponse element is not an object".into(),
                ));
            };
            for (entity, objects) in group {
                let Value::Array(objects) = objects else {
                    continue; // startPosition, maxResults, totalCount
                };
                for object in objects {
                    out.changes.push(change(entity, object)?);
                }
            }
        }
    }
    out.latest = out.changes.iter().filter_map(|c| c.last_updated).max();
    Ok(out)
}

fn change(entity: &str, object: &Value) -> Result<Change> {
    let id = object
        .get("Id")
        .and_then(Value::as_str)
        .ok_or_else(|| protocol(format!("CDC {entity} object without an Id")))?;
    let deleted = object
        .get("status")
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("Deleted"));
    let last_updated = object
        .pointer("/MetaData/LastUpdatedTime")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    Ok(Change {
        entity: entity.to_owned(),
        id: id.to_owned(),
        deleted,
        last_updated,
        object: object.clone(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_reference_answer_is_flattened_with_deletions() {
        let body = json!({ "CDCResponse": [ { "QueryResponse": [
              { "Customer": [ {"Id": "58", "DisplayName": "Blue Harbor", "Active": true, "SyncToken": "1",
                               "MetaData": {"CreateTime": "2024-04-01T10:00:00-07:00", "LastUpdatedTime": "2024-05-01T10:00:00-07:00"}} ],
                "startPosition": 1, "maxResults": 1 },
              { "Vendor": [ {"domain": "QBO", "status": "Deleted", "Id": "41",
                             "MetaData": {"LastUpdatedTime": "2024-05-01T11:00:00-07:00"}} ],
                "startPosition": 1, "maxResults": 1 } ] } ],
          "time": "2024-05-02T10:00:00.000-07:00" });
        let c = parse(&body).expect("parses");
        assert_eq!(c.changes.len(), 2);
        assert_eq!(
            (
                c.changes[0].entity.as_str(),
                c.changes[0].id.as_str(),
                c.changes[0].deleted
            ),
            ("Customer", "58", false)
        );
        assert_eq!(c.changes[0].object["DisplayName"], "Blue Harbor");
        assert_eq!(
            (
                c.changes[1].entity.as_str(),
                c.changes[1].id.as_str(),
                c.changes[1].deleted
            ),
            ("Vendor", "41", true)
        );
        assert_eq!(
            c.latest,
            DateTime::parse_from_rfc3339("2024-05-01T11:00:00-07:00").ok()
        );
        assert!(!c.at_cap());
    }

    #[test]
    fn nothing_changed_and_malformed_answers() {
        let empty =
            parse(&json!({"CDCResponse": [{"QueryResponse": []}], "time": "t"})).expect("ok");
        assert!(empty.changes.is_empty() && empty.latest.is_none());
        assert!(parse(&json!({"QueryResponse": {}})).is_err());
        assert!(parse(&json!({"CDCResponse": [{"QueryResponse": [{"Vendor": [{"DisplayName": "no id"}]}]}]})).is_err());
    }

    #[test]
    fn requests_older_than_the_look_back_or_of_unsupported_entities_are_refused() {
        let now = Utc::now();
        let margin = TimeDelta::hours(1);
        assert_eq!(
            check_request(
                &["Customer", "Vendor"],
                now - TimeDelta::days(29),
                now,
                margin
            )
            .expect("within"),
            "Customer,Vendor"
        );
        let err = check_request(&["Customer"], now - TimeDelta::days(30), now, margin)
            .expect_err("too old");
        assert!(matches!(err, Error::CdcTooOld { .. }), "{err:?}");
        assert_eq!(err.disposition(), crate::Disposition::Rejected);
        assert!(
            check_request(
                &["Customer"],
                now - TimeDelta::days(30) + TimeDelta::minutes(30),
                now,
                margin
            )
            .is_err(),
            "inside QBO's window but not inside the margin"
        );
        assert!(check_request(&["TaxCode"], now, now, margin).is_err());
        assert!(check_request(&[], now, now, margin).is_err());
        assert!(check_request(&["Customer,Vendor"], now, now, margin).is_err());
    }
}
