//! Name normalisation and the content hash used for change detection.
//!
//! Matching across the two systems is case-insensitive (the incumbent lower-cases) and, here,
//! also whitespace-insensitive: QBO collapses runs of spaces in some names and Fyle does not.
//! The content hash lets a sync skip writes and events when nothing the user can see changed.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Lower-case, trim, and collapse internal whitespace runs to one space.
pub fn normalise_name(name: &str) -> String {
    name.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether two names denote the same value for matching purposes.
pub fn names_match(a: &str, b: &str) -> bool {
    normalise_name(a) == normalise_name(b)
}

/// A stable hash of what a user sees of an attribute: its value, whether it is active, and its
/// detail (with object keys in sorted order, so key order in Fyle's JSON does not matter).
pub fn content_hash(value: &str, active: bool, detail: Option<&Value>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(value.as_bytes());
    hasher.update([0, u8::from(active), 0]);
    if let Some(detail) = detail {
        write_canonical(detail, &mut hasher);
    }
    hex::encode(hasher.finalize())
}

/// Canonical JSON encoding: objects with sorted keys, no insignificant whitespace.
fn write_canonical(value: &Value, out: &mut Sha256) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.update(b"{");
            for key in keys {
                write_canonical(&Value::String(key.clone()), out);
                out.update(b":");
                write_canonical(&map[key], out);
                out.update(b",");
            }
            out.update(b"}");
        }
        Value::Array(items) => {
            out.update(b"[");
            for item in items {
                write_canonical(item, out);
                out.update(b",");
            }
            out.update(b"]");
        }
        // 18 and 18.0 are the same number; hash them alike so formatting is not a change.
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.is_finite() => out.update(format!("{f:?}").as_bytes()),
            _ => out.update(n.to_string().as_bytes()),
        },
        scalar => out.update(scalar.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn normalisation_ignores_case_and_spacing() {
        assert_eq!(normalise_name("  Travel   /  FLIGHT "), "travel / flight");
        assert!(names_match("Office Supplies", "office  supplies"));
        assert!(!names_match("Office Supplies", "Office Supply"));
    }

    #[test]
    fn content_hash_changes_with_what_users_see() {
        let base = content_hash("Travel", true, None);
        assert_eq!(base, content_hash("Travel", true, None));
        assert_ne!(base, content_hash("Travel", false, None));
        assert_ne!(base, content_hash("travel", true, None));
        assert_ne!(
            base,
            content_hash("Travel", true, Some(&json!({"tax_rate": 0.2})))
        );
    }

    #[test]
    fn content_hash_ignores_number_formatting() {
        let int = json!({"tax_rate": 18});
        let float = json!({"tax_rate": 18.0});
        assert_eq!(
            content_hash("GST", true, Some(&int)),
            content_hash("GST", true, Some(&float))
        );
        assert_ne!(
            content_hash("GST", true, Some(&int)),
            content_hash("GST", true, Some(&json!({"tax_rate": 18.5})))
        );
    }

    #[test]
    fn content_hash_ignores_key_order() {
        let a = json!({"a": 1, "b": {"x": [1, 2], "y": null}});
        let b = json!({"b": {"y": null, "x": [1, 2]}, "a": 1});
        assert_eq!(
            content_hash("v", true, Some(&a)),
            content_hash("v", true, Some(&b))
        );
        let c = json!({"b": {"y": null, "x": [2, 1]}, "a": 1});
        assert_ne!(
            content_hash("v", true, Some(&a)),
            content_hash("v", true, Some(&c))
        );
    }
}
