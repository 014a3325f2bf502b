//! QBO's XML representation, for answers to requests without `Accept: application/json` (Intuit
//! answers XML then) and for the bodies that are XML whatever was asked (429 throttle, the 401 of
//! a missing or unknown token). Pure and minimal: the sandbox builds every answer as JSON and this
//! module renders it the way Intuit's XML looks, following the samples of reference §3.6:
//!
//! - the document is `<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="…">`;
//! - an object becomes an element, an array repeated elements of the same name;
//! - `domain`, `sparse` (entities), `startPosition`, `maxResults`, `totalCount` (query responses),
//!   `type` (faults), `code`, `element` (errors) and `status` (CDC deletions) are attributes;
//! - a reference (`CurrencyRef: {"value": "USD", "name": "…"}`) is `<CurrencyRef name="…">USD</…>`;
//! - `Id`, `SyncToken` and `MetaData` lead an entity's children (`Message` an error's), the rest
//!   follow in key order
//!   (Intuit uses schema order; clients must not depend on element order) **(inferred)**.
//!
//! Text and attribute values are escaped (`& < > " '`); `null` values are left out.

use std::fmt::Write as _;

use serde_json::{Map, Value};

const ATTRIBUTES: [&str; 9] = [
    "domain",
    "sparse",
    "startPosition",
    "maxResults",
    "totalCount",
    "type",
    "code",
    "element",
    "status",
];

const LEADING: [&str; 4] = ["Id", "SyncToken", "MetaData", "Message"];

/// Escapes text for element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn element(out: &mut String, name: &str, v: &Value) {
    match v {
        Value::Null => {}
        Value::Array(items) => {
            for item in items {
                element(out, name, item);
            }
        }
        Value::Object(m) => object(out, name, m),
        other => {
            let text = scalar(other).unwrap_or_default();
            let _ = write!(out, "<{name}>{}</{name}>", escape(&text));
        }
    }
}

fn object(out: &mut String, name: &str, m: &Map<String, Value>) {
    let _ = write!(out, "<{name}");
    let is_ref = name.ends_with("Ref") && m.contains_key("value");
    let attrs: &[&str] = if is_ref { &["name"] } else { &ATTRIBUTES };
    for key in attrs {
        if let Some(text) = m.get(*key).and_then(scalar) {
            let _ = write!(out, " {key}=\"{}\"", escape(&text));
        }
    }
    if is_ref {
        let text = m.get("value").and_then(scalar).unwrap_or_default();
        let _ = write!(out, ">{}</{name}>", escape(&text));
        return;
    }
    out.push('>');
    for key in LEADING {
        if let Some(v) = m.get(key) {
            element(out, key, v);
        }
    }
    for (k, v) in m {
        if !LEADING.contains(&k.as_str()) && !ATTRIBUTES.contains(&k.as_str()) {
            element(out, k, v);
        }
    }
    let _ = write!(out, "</{name}>");
}

/// Renders a QBO JSON answer (`{"<Entity>"|"QueryResponse"|"Fault"|…: …, "time": …}`) as an
/// `IntuitResponse` document.
pub fn render(body: &Value) -> String {
    let mut out = String::from(r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#);
    out.push_str(r#"<IntuitResponse xmlns="http://schema.intuit.com/finance/v3""#);
    if let Some(time) = body.get("time").and_then(scalar) {
        let _ = write!(out, " time=\"{}\"", escape(&time));
    }
    out.push('>');
    if let Value::Object(m) = body {
        for (k, v) in m.iter().filter(|(k, _)| k.as_str() != "time") {
            element(&mut out, k, v);
        }
    }
    out.push_str("</IntuitResponse>");
    out
}

/// The XML form of a gateway error (lowercase JSON envelope, see `errors::gateway`): a `Fault`
/// with the same type, code, message and detail.
pub fn gateway_fault(kind: &str, code: &str, message: &str, detail: &str, time: &str) -> String {
    let body = serde_json::json!({
        "Fault": {"type": kind, "Error": [{"code": code, "Message": message, "Detail": detail}]},
        "time": time,
    });
    render(&body)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn throttle_fault_matches_the_reference_sample() {
        let xml = gateway_fault(
            "SERVICE",
            "3001",
            "message=ThrottleExceeded; errorCode=003001; statusCode=429",
            "",
            "2024-05-02T03:15:22.123-07:00",
        );
        assert!(xml.contains(r#"<Fault type="SERVICE"><Error code="3001"><Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>"#), "{xml}");
        assert!(xml.starts_with(r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2024-05-02T03:15:22.123-07:00">"#));
    }

    #[test]
    fn entities_refs_attributes_and_escaping() {
        let body = json!({"QueryResponse": {"Vendor": [
            {"DisplayName": "Books & <Bessie>", "Id": "30", "SyncToken": "0", "domain": "QBO", "sparse": false,
             "CurrencyRef": {"value": "USD", "name": "United States Dollar"}, "Active": true, "Balance": 0,
             "MetaData": {"CreateTime": "2014-09-12T10:07:56-07:00"}, "WebAddr": null}],
            "startPosition": 1, "maxResults": 1}, "time": "t"});
        assert_eq!(
            render(&body),
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#,
                r#"<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="t">"#,
                r#"<QueryResponse startPosition="1" maxResults="1">"#,
                r#"<Vendor domain="QBO" sparse="false"><Id>30</Id><SyncToken>0</SyncToken>"#,
                r#"<MetaData><CreateTime>2014-09-12T10:07:56-07:00</CreateTime></MetaData>"#,
                r#"<Active>true</Active><Balance>0</Balance>"#,
                r#"<CurrencyRef name="United States Dollar">USD</CurrencyRef>"#,
                r#"<DisplayName>Books &amp; &lt;Bessie&gt;</DisplayName></Vendor>"#,
                r#"</QueryResponse></IntuitResponse>"#
            )
        );
    }
}
