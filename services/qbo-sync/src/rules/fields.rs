//! Reading QBO entity JSON: the few accessors every rule needs, and the name clean-up.
//!
//! QBO returns "only properties with values" (reference §3.2), so an absent property is normal
//! and reads as `None`; a property of the wrong JSON type is malformed. Ids and `SyncToken`s
//! are strings in QBO's JSON, but integers are accepted too (some clients re-encode them).
//!
//! The rules read only the top-level properties in [`READ_PROPERTIES`] (debug builds check
//! every [`Entity`] read against it), so a pull reads its pages' objects as [`PulledObject`]s:
//! those properties only, the rest of each object (addresses, phones, balances, names the
//! rules never use) skipped by the parser instead of built into maps and dropped again.

use chrono::{DateTime, Utc};
use serde::{
    Deserialize, Deserializer,
    de::{IgnoredAny, MapAccess, SeqAccess, Visitor, value::SeqAccessDeserializer},
};
use serde_json::{Map, Value};

/// What QBO appends to the names of inactive name-list entities (reference §3.2).
pub const DELETED_MARKER: &str = " (deleted)";

/// Every top-level property of a QBO entity that a rule reads: through [`Entity`] (checked in
/// debug builds) or, for a tax code's rates, `PurchaseTaxRateList` read by `tax`.
pub(crate) const READ_PROPERTIES: &[&str] = &[
    "Id",
    "SyncToken",
    "MetaData",
    "Active",
    "status",
    "Name",
    "FullyQualifiedName",
    "DisplayName",
    "CurrencyRef",
    "PrimaryEmailAddr",
    "AccountType",
    "AccountSubType",
    "AcctNum",
    "Type",
    "PurchaseTaxRateList",
];

/// A QBO object as a pull reads it from a page: a JSON object of its [`READ_PROPERTIES`] only,
/// every other property skipped unread. A row that is not an object is kept as it is (the
/// rules refuse it as malformed, as they would have anyway).
#[derive(Debug, Clone, PartialEq)]
pub struct PulledObject(pub Value);

impl<'de> Deserialize<'de> for PulledObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PulledVisitor).map(Self)
    }
}

struct PulledVisitor;

impl<'de> Visitor<'de> for PulledVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a QBO object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(ReadProperty(name)) = map.next_key()? {
            match name {
                Some(name) => {
                    kept.insert(name.to_owned(), map.next_value()?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// A property name: the [`READ_PROPERTIES`] entry it is, or `None` for one the rules never read.
struct ReadProperty(Option<&'static str>);

impl<'de> Deserialize<'de> for ReadProperty {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;

        impl Visitor<'_> for NameVisitor {
            type Value = ReadProperty;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a property name")
            }

            fn visit_str<E>(self, v: &str) -> Result<ReadProperty, E> {
                Ok(ReadProperty(
                    READ_PROPERTIES.iter().copied().find(|p| *p == v),
                ))
            }
        }

        deserializer.deserialize_str(NameVisitor)
    }
}

/// A property that is present but unusable, named by its path in the entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

/// A QBO entity object.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entity<'a>(&'a serde_json::Map<String, Value>);

impl<'a> Entity<'a> {
    pub(crate) fn new(value: &'a Value) -> Result<Self, Malformed> {
        value.as_object().map(Self).ok_or(Malformed("<entity>"))
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        debug_assert!(
            READ_PROPERTIES.contains(&key),
            "{key} is read by a rule: add it to READ_PROPERTIES, or pulls will not keep it"
        );
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// A string property; absent or null is `None`.
    pub(crate) fn str(&self, key: &'static str) -> Result<Option<&'a str>, Malformed> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Malformed(key)),
        }
    }

    /// A string property inside an object property (`CurrencyRef.value`).
    pub(crate) fn nested_str(
        &self,
        outer: &'static str,
        inner: &'static str,
        path: &'static str,
    ) -> Result<Option<&'a str>, Malformed> {
        match self.get(outer) {
            None => Ok(None),
            Some(Value::Object(map)) => match map.get(inner) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(Malformed(path)),
            },
            Some(_) => Err(Malformed(outer)),
        }
    }

    /// An identifier: a non-empty string or a non-negative integer, as a string.
    pub(crate) fn id(&self, key: &'static str) -> Result<Option<String>, Malformed> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => id_text(value).map(Some).ok_or(Malformed(key)),
        }
    }

    /// `Active`. QBO always sends it for name-list entities; when it is absent the entity is
    /// taken as active, QBO's default for a new name-list entity.
    pub(crate) fn active(&self) -> Result<bool, Malformed> {
        match self.get("Active") {
            None => Ok(true),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(Malformed("Active")),
        }
    }

    /// `MetaData.LastUpdatedTime`; unreadable stamps are `None` (they are informational: the
    /// content hash, not this time, decides whether anything changed).
    pub(crate) fn last_updated_time(&self) -> Option<DateTime<Utc>> {
        let meta = self.get("MetaData")?.as_object()?;
        parse_qbo_time(meta.get("LastUpdatedTime")?.as_str()?)
    }

    /// `SyncToken`, when present and readable.
    pub(crate) fn sync_token(&self) -> Option<String> {
        self.get("SyncToken").and_then(id_text)
    }
}

/// An id-like JSON value as text: a non-empty string (trimmed) or a non-negative integer.
pub(crate) fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        _ => None,
    }
}

/// QBO's timestamps: RFC 3339 with a local offset (`2019-08-02T01:25:18-07:00`), sometimes with
/// fractional seconds or an offset without a colon (`-0700`, as in webhooks).
pub fn parse_qbo_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The value users see, from a raw QBO name: for inactive entities every `" (deleted)"` is
/// removed (QBO adds it on deactivation; the incumbent removes it the same way, #32); for all,
/// surrounding whitespace is trimmed. `None` when nothing is left.
///
/// Active names keep the marker: a user may really call an active account "Old (deleted)".
/// Unicode is kept as it is (no transliteration; see the `derive` module docs).
pub fn clean_name(raw: &str, active: bool) -> Option<String> {
    let name = if active {
        raw.trim().to_owned()
    } else {
        raw.replace(DELETED_MARKER, "").trim().to_owned()
    };
    (!name.is_empty()).then_some(name)
}

/// `AcctNum` as the incumbent stores codes: whitespace runs collapsed to one space, trimmed;
/// blank is `None`.
pub fn collapse_code(raw: &str) -> Option<String> {
    let code = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    (!code.is_empty()).then_some(code)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    #[test]
    fn deleted_marker_is_removed_from_inactive_names_only() {
        assert_eq!(
            clean_name("Old Travel (deleted)", false).as_deref(),
            Some("Old Travel")
        );
        assert_eq!(
            clean_name("Automobile:Fuel (deleted)  ", false).as_deref(),
            Some("Automobile:Fuel")
        );
        assert_eq!(
            clean_name("Old (deleted)", true).as_deref(),
            Some("Old (deleted)"),
            "an active name is the user's own"
        );
        assert_eq!(clean_name(" (deleted)", false), None);
        assert_eq!(clean_name("   ", true), None);
    }

    #[test]
    fn codes_collapse_whitespace() {
        assert_eq!(collapse_code(" 60 10\t A ").as_deref(), Some("60 10 A"));
        assert_eq!(collapse_code(" \t"), None);
    }

    #[test]
    fn qbo_times_parse_with_any_offset_spelling() {
        let expected = Utc.with_ymd_and_hms(2019, 8, 2, 8, 25, 18).single();
        assert_eq!(parse_qbo_time("2019-08-02T01:25:18-07:00"), expected);
        assert_eq!(parse_qbo_time("2019-08-02T01:25:18-0700"), expected);
        assert_eq!(parse_qbo_time("2019-08-02T08:25:18.000Z"), expected);
        assert_eq!(parse_qbo_time("yesterday"), None);
    }

    #[test]
    fn a_pulled_object_keeps_the_properties_the_rules_read_and_nothing_else() {
        let page = r#"[{"Id": "58", "SyncToken": "3", "DisplayName": "Bessie", "Active": true,
            "MetaData": {"CreateTime": "t0", "LastUpdatedTime": "t1"},
            "BillAddr": {"Line1": "1 Main St", "City": "Mountain View"}, "Balance": 12.5,
            "PrimaryEmailAddr": {"Address": "b@example.com"}, "Tags": [1, {"a": null}],
            "Na\u006de": "escaped key", "GivenName": null}, "not an object", 7]"#;
        let rows: Vec<PulledObject> = serde_json::from_str(page).expect("a page");
        assert_eq!(
            rows,
            [
                PulledObject(
                    json!({"Id": "58", "SyncToken": "3", "DisplayName": "Bessie",
                    "Active": true, "MetaData": {"CreateTime": "t0", "LastUpdatedTime": "t1"},
                    "PrimaryEmailAddr": {"Address": "b@example.com"}, "Name": "escaped key"})
                ),
                PulledObject(json!("not an object")),
                PulledObject(json!(7)),
            ]
        );
        assert!(serde_json::from_str::<Vec<PulledObject>>(r#"[{"Id": }]"#).is_err());
    }

    #[test]
    fn ids_accept_strings_and_integers() {
        let entity = json!({"Id": 58, "SyncToken": "3", "Active": true});
        let entity = Entity::new(&entity).expect("an object");
        assert_eq!(entity.id("Id"), Ok(Some("58".into())));
        assert_eq!(entity.sync_token().as_deref(), Some("3"));
        assert_eq!(entity.id("Active"), Err(Malformed("Active")));
        assert_eq!(entity.id("AcctNum"), Ok(None));
    }
}
