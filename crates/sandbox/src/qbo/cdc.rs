//! Change Data Capture (reference §3.5, endpoint Q5):
//! `GET /v3/company/{realm}/cdc?entities=Customer,Vendor&changedSince=<ts>`.
//!
//! Returns every object of the listed entities changed at or after `changedSince` (active or not,
//! full objects), plus hard-deleted ones as `{"domain","status":"Deleted","Id","MetaData"}`.
//! `changedSince` must lie within the last 30 days; at most 1,000 objects are returned, the oldest
//! changes first, so a client can continue from the last `LastUpdatedTime` it saw. One
//! `QueryResponse` element per entity that changed, in the order requested. TaxCode and TaxRate are
//! not supported. The exact fault codes for a bad request are **(inferred)**.

use serde_json::{Value, json};

use super::{
    entity::EntityType,
    realm::Realm,
    store::{format_time, parse_time},
};

/// Look-back limit.
pub const WINDOW_SECS: i64 = 30 * 24 * 3600;
/// Objects per response.
pub const MAX_OBJECTS: usize = 1000;

/// A checked CDC request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdcRequest {
    /// Entities, in request order, deduplicated.
    pub entities: Vec<EntityType>,
    /// Epoch seconds.
    pub since: i64,
}

/// Why a CDC request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CdcError {
    /// A parameter is missing (2020).
    Missing(&'static str),
    /// A parameter is invalid (detail).
    Invalid(String),
}

/// Checks `entities` and `changedSince` against the clock (`now`, epoch seconds).
pub fn parse_request(
    realm: &Realm,
    entities: Option<&str>,
    changed_since: Option<&str>,
    now: i64,
) -> Result<CdcRequest, CdcError> {
    let list = entities
        .filter(|s| !s.trim().is_empty())
        .ok_or(CdcError::Missing("entities"))?;
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let et = EntityType::from_path(name)
            .ok_or_else(|| CdcError::Invalid(format!("Invalid entity name: {name}")))?;
        if !et.cdc_supported() {
            return Err(CdcError::Invalid(format!(
                "CDC is not supported for {}",
                et.name()
            )));
        }
        if !out.contains(&et) {
            out.push(et);
        }
    }
    let since_text = changed_since.ok_or(CdcError::Missing("changedSince"))?;
    let since = parse_time(since_text, realm.tz)
        .ok_or_else(|| CdcError::Invalid(format!("Invalid changedSince: {since_text}")))?;
    if since < now - WINDOW_SECS {
        return Err(CdcError::Invalid(
            "changedSince must be within the last 30 days".into(),
        ));
    }
    Ok(CdcRequest {
        entities: out,
        since,
    })
}

/// Builds the `CDCResponse` body.
pub fn respond(realm: &Realm, req: &CdcRequest, time: &str) -> Value {
    // (when, position of the entity in the request, id, object)
    let mut changed: Vec<(i64, usize, u64, Value)> = Vec::new();
    for (pos, et) in req.entities.iter().enumerate() {
        for e in realm.table(*et).changed_since(req.since) {
            changed.push((e.updated, pos, e.id, Value::Object(e.json.clone())));
            if changed.len() > 20 * MAX_OBJECTS {
                break;
            }
        }
        for t in realm
            .tombstones
            .iter()
            .filter(|t| t.entity == *et && t.at >= req.since)
        {
            let obj = json!({"domain": "QBO", "status": "Deleted", "Id": t.id.to_string(),
                "MetaData": {"LastUpdatedTime": format_time(t.at, realm.tz)}});
            changed.push((t.at, pos, t.id, obj));
        }
    }
    changed.sort_by_key(|c| (c.0, c.1, c.2));
    changed.truncate(MAX_OBJECTS);
    let mut groups: Vec<Vec<Value>> = vec![Vec::new(); req.entities.len()];
    for (_, pos, _, obj) in changed {
        groups[pos].push(obj);
    }
    let responses: Vec<Value> = req
        .entities
        .iter()
        .zip(groups)
        .filter(|(_, g)| !g.is_empty())
        .map(|(et, g)| {
            let n = g.len();
            json!({ et.name(): g, "startPosition": 1, "maxResults": n })
        })
        .collect();
    json!({ "CDCResponse": [ { "QueryResponse": responses } ], "time": time })
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn window_and_entity_checks() {
        let realm = Realm::new("1", 0);
        let now = 100 * 24 * 3600;
        assert!(parse_request(&realm, Some("Customer"), Some("1970-03-12T00:00:00Z"), now).is_ok());
        assert!(matches!(
            parse_request(&realm, Some("Customer"), Some("1970-01-02T00:00:00Z"), now),
            Err(CdcError::Invalid(_))
        ));
        assert_eq!(
            parse_request(&realm, None, Some("1970-03-12"), now),
            Err(CdcError::Missing("entities"))
        );
        assert!(matches!(
            parse_request(&realm, Some("TaxCode"), Some("1970-03-12"), now),
            Err(CdcError::Invalid(_))
        ));
    }

    #[test]
    fn groups_changes_and_reports_deletes() {
        let mut realm = Realm::new("1", 0);
        realm
            .create(
                EntityType::Customer,
                &obj(json!({"DisplayName": "Old"})),
                10,
            )
            .expect("create");
        realm
            .create(
                EntityType::Customer,
                &obj(json!({"DisplayName": "New"})),
                200,
            )
            .expect("create");
        let (v, _) = realm
            .create(
                EntityType::Vendor,
                &obj(json!({"DisplayName": "Gone"})),
                150,
            )
            .expect("create");
        let vid: u64 = v["Id"].as_str().expect("id").parse().expect("numeric");
        realm.delete(EntityType::Vendor, vid, 300).expect("delete");
        let req = CdcRequest {
            entities: vec![
                EntityType::Customer,
                EntityType::Vendor,
                EntityType::Account,
            ],
            since: 100,
        };
        let body = respond(&realm, &req, "t");
        let qr = &body["CDCResponse"][0]["QueryResponse"];
        assert_eq!(
            qr.as_array().map(Vec::len),
            Some(2),
            "Account had no change"
        );
        assert_eq!(qr[0]["Customer"][0]["DisplayName"], "New");
        assert_eq!(qr[0]["maxResults"], 1);
        assert_eq!(qr[1]["Vendor"][0]["status"], "Deleted");
    }

    #[test]
    fn caps_at_one_thousand_oldest_first() {
        let mut realm = Realm::new("1", 0);
        for i in 0..1100 {
            realm
                .create(
                    EntityType::Class,
                    &obj(json!({"Name": format!("C{i}")})),
                    1000 + i,
                )
                .expect("create");
        }
        let req = CdcRequest {
            entities: vec![EntityType::Class],
            since: 0,
        };
        let body = respond(&realm, &req, "t");
        let rows = &body["CDCResponse"][0]["QueryResponse"][0]["Class"];
        assert_eq!(rows.as_array().map(Vec::len), Some(MAX_OBJECTS));
        assert_eq!(rows[0]["Name"], "C0");
    }
}
