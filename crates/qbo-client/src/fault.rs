//! QBO error bodies (reference §3.6) read into one [`Fault`] type, whatever their shape. Pure.
//!
//! Three shapes reach a client:
//! - the data service's JSON `Fault`: `{"Fault": {"Error": [{"Message", "Detail", "code",
//!   "element"}], "type": "ValidationFault"}, "time": …}` — on a 400, and sometimes on a 200;
//! - the gateway's lowercase JSON envelope (401 3200, 403 3100, 429 3001): `{"fault": {"error":
//!   [{"message", "detail", "code", "element"}], "type": "AUTHENTICATION"}, …}`;
//! - XML, whatever the request accepted (the 401 of a missing token, the 429 throttle):
//!   `<IntuitResponse …><Fault type="…"><Error code="…" element="…"><Message>…</Message>
//!   <Detail>…</Detail></Error></Fault></IntuitResponse>`, or a bare `<Fault>` root.
//!
//! `code` is a string in real answers (a number is accepted too). XML is read with quick-xml's
//! serde support (entities unescaped, unknown elements and attributes ignored), never by hand.
//! A body that is none of these is "no fault" (`None`); the caller decides what that means.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

/// A QBO fault: its `type` and its errors (usually one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fault {
    /// `type`: `ValidationFault`, `AUTHENTICATION`, `SERVICE`, `AuthenticationFault`,
    /// `SystemFault`, …
    pub kind: Option<String>,
    /// The errors, in the order given.
    pub errors: Vec<FaultError>,
}

/// One `Error` of a [`Fault`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultError {
    /// `code`, as sent (`"6240"`).
    pub code: String,
    /// `Message` (`"Duplicate Name Exists Error"`).
    pub message: String,
    /// `Detail`, when present.
    pub detail: Option<String>,
    /// `element`: the property the error is about, when given and not empty.
    pub element: Option<String>,
}

impl Fault {
    /// The first error's numeric code (`"6240"` → 6240).
    pub fn code(&self) -> Option<u32> {
        self.errors.first()?.code.trim().parse().ok()
    }

    /// The first error's message (empty when there is none).
    pub fn message(&self) -> &str {
        self.errors.first().map_or("", |e| e.message.as_str())
    }

    /// The first error's detail.
    pub fn detail(&self) -> Option<&str> {
        self.errors.first()?.detail.as_deref()
    }

    /// Is this an authentication fault (type `AUTHENTICATION`/`AuthenticationFault`), which a
    /// fresh access token may cure?
    pub fn is_authentication(&self) -> bool {
        self.kind
            .as_deref()
            .is_some_and(|k| k.to_ascii_lowercase().starts_with("authentication"))
    }

    /// Is this a system fault (type `SystemFault` or a code ≥ 10000, "severe"), which a later
    /// attempt may not meet?
    pub fn is_system(&self) -> bool {
        self.kind
            .as_deref()
            .is_some_and(|k| k.eq_ignore_ascii_case("SystemFault"))
            || self.code().is_some_and(|c| c >= 10_000)
    }

    /// Reads a fault from a body in any of the three shapes; `None` when the body has none.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let text = body.trim_ascii_start();
        if text.starts_with(b"<") {
            return from_xml(std::str::from_utf8(text).ok()?);
        }
        let v: Value = serde_json::from_slice(text).ok()?;
        Self::from_json(&v)
    }

    /// Reads the `Fault` (or gateway `fault`) of a JSON answer; `None` when it has none.
    pub fn from_json(v: &Value) -> Option<Self> {
        let f = field(v, "Fault").filter(|f| f.is_object())?;
        let kind = field(f, "type").and_then(Value::as_str).map(str::to_owned);
        let errors = match field(f, "Error") {
            Some(Value::Array(items)) => items.iter().map(error_from_json).collect(),
            Some(one @ Value::Object(_)) => vec![error_from_json(one)],
            _ => Vec::new(),
        };
        if kind.is_none() && errors.is_empty() {
            return None;
        }
        Some(Self { kind, errors })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(first) = self.errors.first() else {
            return write!(f, "{} fault", self.kind.as_deref().unwrap_or("untyped"));
        };
        write!(f, "{} ({})", first.message, first.code)?;
        if let Some(d) = first.detail.as_deref().filter(|d| !d.is_empty()) {
            write!(f, ": {d}")?;
        }
        if let Some(e) = &first.element {
            write!(f, " [element {e}]")?;
        }
        if self.errors.len() > 1 {
            write!(f, " (+{} more)", self.errors.len() - 1)?;
        }
        Ok(())
    }
}

/// `key` or its lowercase-first form (`Fault`/`fault`, `Message`/`message`).
fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    obj.get(key).filter(|x| !x.is_null()).or_else(|| {
        let lower = key.to_ascii_lowercase();
        obj.get(&lower).filter(|x| !x.is_null())
    })
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn error_from_json(e: &Value) -> FaultError {
    FaultError {
        code: text(field(e, "code")).unwrap_or_default(),
        message: text(field(e, "Message")).unwrap_or_default(),
        detail: text(field(e, "Detail")),
        element: text(field(e, "element")).filter(|s| !s.is_empty()),
    }
}

#[derive(Deserialize)]
struct XmlResponse {
    #[serde(rename = "Fault", default)]
    fault: Option<XmlFault>,
}

#[derive(Deserialize)]
struct XmlFault {
    #[serde(rename = "@type", default)]
    kind: Option<String>,
    #[serde(rename = "Error", default)]
    errors: Vec<XmlError>,
}

#[derive(Deserialize)]
struct XmlError {
    #[serde(rename = "@code", default)]
    code: Option<String>,
    #[serde(rename = "@element", default)]
    element: Option<String>,
    #[serde(rename = "Message", default)]
    message: Option<String>,
    #[serde(rename = "Detail", default)]
    detail: Option<String>,
}

/// The name of the document's root element.
fn root_name(xml: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        match reader.read_event().ok()? {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                return Some(e.local_name().into_inner().to_owned());
            }
            quick_xml::events::Event::Eof => return None,
            _ => {}
        }
    }
}

fn from_xml(xml: &str) -> Option<Fault> {
    let fault = if root_name(xml)? == "Fault" {
        quick_xml::de::from_str::<XmlFault>(xml).ok()?
    } else {
        quick_xml::de::from_str::<XmlResponse>(xml).ok()?.fault?
    };
    Some(Fault {
        kind: fault.kind,
        errors: fault
            .errors
            .into_iter()
            .map(|e| FaultError {
                code: e.code.unwrap_or_default(),
                message: e.message.unwrap_or_default(),
                detail: e.detail,
                element: e.element.filter(|s| !s.is_empty()),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_service_fault_of_the_reference() {
        let body = br#"{ "Fault": { "Error": [ { "Message": "Duplicate Name Exists Error",
                          "Detail": "The name supplied already exists. : Another customer, vendor or employee is already using this name. Please use a different name.",
                          "code": "6240", "element": "" } ],
             "type": "ValidationFault" },
  "time": "2024-05-02T03:15:22.123-07:00" }"#;
        let f = Fault::parse(body).expect("fault");
        assert_eq!(f.kind.as_deref(), Some("ValidationFault"));
        assert_eq!(f.code(), Some(6240));
        assert_eq!(f.message(), "Duplicate Name Exists Error");
        assert!(
            f.detail()
                .is_some_and(|d| d.starts_with("The name supplied already exists."))
        );
        assert_eq!(f.errors[0].element, None, "an empty element is no element");
        assert!(!f.is_authentication() && !f.is_system());
    }

    #[test]
    fn the_gateway_envelope_of_the_reference() {
        let body = br#"{ "warnings": null, "intuitObject": null,
  "fault": { "error": [ { "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                          "detail": "Token expired: 0 ...", "code": "3200", "element": null } ],
             "type": "AUTHENTICATION" },
  "report": null, "queryResponse": null, "batchItemResponse": [], "attachableResponse": [],
  "syncErrorResponse": null, "requestId": null, "time": 1633520295688, "status": null, "cdcresponse": [] }"#;
        let f = Fault::parse(body).expect("fault");
        assert_eq!(f.code(), Some(3200));
        assert!(f.is_authentication());
        assert_eq!(f.detail(), Some("Token expired: 0 ..."));
        assert!(f.to_string().contains("errorCode=003200"), "{f}");
    }

    #[test]
    fn the_xml_faults_of_the_reference() {
        let throttled = br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2024-05-02T03:15:22.123-07:00"><Fault type="SERVICE"><Error code="3001"><Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message></Error></Fault></IntuitResponse>"#;
        let f = Fault::parse(throttled).expect("fault");
        assert_eq!(f.kind.as_deref(), Some("SERVICE"));
        assert_eq!(f.code(), Some(3001));
        assert_eq!(
            f.message(),
            "message=ThrottleExceeded; errorCode=003001; statusCode=429"
        );
        assert_eq!(f.detail(), None);

        let auth = br#"<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2024-05-02T03:15:22.123-07:00">
  <Fault type="AuthenticationFault">
    <Error code="100"><Message>General Authentication Error</Message><Detail>AuthenticationErrorGeneral: SRV-110-Authentication Failure , statusCode: 401</Detail></Error>
  </Fault>
</IntuitResponse>"#;
        let f = Fault::parse(auth).expect("fault");
        assert!(f.is_authentication());
        assert_eq!(f.code(), Some(100));
        assert_eq!(f.message(), "General Authentication Error");
        assert!(f.detail().is_some_and(|d| d.contains("SRV-110")));
    }

    #[test]
    fn xml_text_is_unescaped_and_attributes_element_and_several_errors_are_read() {
        let body = br#"<IntuitResponse><Fault type="ValidationFault"><Error code="6240" element="DisplayName"><Message>Duplicate Name Exists Error</Message><Detail>Name &apos;O&amp;Brien&apos; &lt;exists&gt;</Detail></Error><Error code="2020"><Message>Required param missing</Message></Error></Fault></IntuitResponse>"#;
        let f = Fault::parse(body).expect("fault");
        assert_eq!(f.errors.len(), 2);
        assert_eq!(f.detail(), Some("Name 'O&Brien' <exists>"));
        assert_eq!(f.errors[0].element.as_deref(), Some("DisplayName"));
        assert_eq!(f.errors[1].code, "2020");
        assert!(f.to_string().ends_with("(+1 more)"), "{f}");
    }

    #[test]
    fn a_bare_fault_root_and_numeric_codes_are_accepted() {
        let f = Fault::parse(br#"<Fault type="SystemFault"><Error code="10000"><Message>An application error has occurred</Message></Error></Fault>"#)
            .expect("fault");
        assert!(f.is_system());
        let f = Fault::parse(br#"{"Fault": {"Error": {"Message": "Object Not Found", "code": 610}, "type": "ValidationFault"}}"#)
            .expect("fault");
        assert_eq!(f.code(), Some(610));
    }

    #[test]
    fn bodies_without_a_fault_are_none() {
        for body in [
            &br#"{"QueryResponse": {}, "time": "t"}"#[..],
            br#"{"fault": null, "QueryResponse": {}}"#,
            br#"<IntuitResponse time="t"><QueryResponse/></IntuitResponse>"#,
            b"<html><body>Bad gateway</body></html>",
            b"not json at all",
            b"<unterminated",
            b"",
        ] {
            assert_eq!(
                Fault::parse(body),
                None,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
