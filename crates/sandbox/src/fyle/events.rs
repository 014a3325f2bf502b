//! REPORT, EXPENSE and ORG_SETTING webhooks (reference §2.3 and §2.6), emitted on demand by the
//! sandbox admin API (`POST /_sandbox/fyle/orgs/{org}/events`, [`crate::FyleControl::emit`]), so
//! the receiver's routing of non-attribute events can be tested against the sandbox instead of
//! hand-written bodies. The sandbox keeps no reports or expenses: an event is a body built here and
//! delivered to the org's subscriptions that list its resource.
//!
//! Only the actions the reference lists for admin subscriptions are accepted (an unknown action is
//! refused, so a typo cannot produce a body production never sends). `data` is filled with a
//! plausible object for the resource — fields from the documented report schema and the
//! reference's examples; the expense fields are **(inferred)** — and the caller's keys replace
//! the defaults one by one; `org_id` is always the org's. REPORT events carry the documented,
//! required `reason` (a default text per action unless one is given); the others carry none.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{auth::random_token, list_filter::format_micros, org::OrgProfile};

/// Actions of REPORT webhooks to admin subscriptions, with the report `state` each implies and
/// the default `reason`.
pub const REPORT_ACTIONS: [(&str, &str, &str); 6] = [
    ("ADMIN_APPROVED", "APPROVED", "Admin approved the report."),
    ("APPROVED", "APPROVED", "The report was approved."),
    (
        "STATE_CHANGE_PAYMENT_PROCESSING",
        "PAYMENT_PROCESSING",
        "The report is being processed for payment.",
    ),
    ("PAID", "PAID", "The report was paid."),
    ("MARK_PAID", "PAID", "The report was marked as paid."),
    (
        "ACCOUNTING_EXPORT_INITIATED",
        "APPROVED",
        "Accounting export was initiated.",
    ),
];

/// Actions of EXPENSE webhooks.
pub const EXPENSE_ACTIONS: [&str; 3] = [
    "UPDATED_AFTER_APPROVAL",
    "EJECTED_FROM_REPORT",
    "ADDED_TO_REPORT",
];

/// The webhook body of an event, or why it is refused.
pub fn event_body(
    profile: &OrgProfile,
    resource: &str,
    action: &str,
    data: &Map<String, Value>,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Value, String> {
    let stamp = format_micros(now.timestamp_micros());
    let (mut out, reason) = match resource {
        "REPORT" => {
            let (_, state, default_reason) = REPORT_ACTIONS
                .iter()
                .find(|(a, _, _)| *a == action)
                .ok_or_else(|| unknown(resource, action))?;
            let report = json!({
                "id": format!("rp{}", random_token(10)),
                "state": state,
                "seq_num": format!("C/{}/R/{}", now.format("%Y/%m"), now.timestamp() % 1000),
                "amount": 150,
                "currency": profile.currency,
                "num_expenses": 1,
                "purpose": null,
                "created_at": stamp,
                "updated_at": stamp,
                "updated_by_user": profile.admin,
            });
            (report, Some(reason.unwrap_or(default_reason)))
        }
        "EXPENSE" => {
            if !EXPENSE_ACTIONS.contains(&action) {
                return Err(unknown(resource, action));
            }
            let report_id =
                (action != "EJECTED_FROM_REPORT").then(|| format!("rp{}", random_token(10)));
            let expense = json!({
                "id": format!("tx{}", random_token(10)),
                "report_id": report_id,
                "state": "APPROVED",
                "amount": 42.5,
                "currency": profile.currency,
                "category_id": null,
                "project_id": null,
                "cost_center_id": null,
                "merchant": null,
                "spent_at": stamp,
                "created_at": stamp,
                "updated_at": stamp,
            });
            (expense, None)
        }
        "ORG_SETTING" => {
            if action != "UPDATED" {
                return Err(unknown(resource, action));
            }
            let settings = json!({
                "regional_settings": {"locale": {"date_format": "DD/MM/YYYY", "timezone": "Asia/Kolkata"}},
            });
            (settings, None)
        }
        other => {
            return Err(format!(
                "resource must be REPORT, EXPENSE or ORG_SETTING, got {other:?}"
            ));
        }
    };
    if let Value::Object(m) = &mut out {
        for (k, v) in data {
            m.insert(k.clone(), v.clone());
        }
        m.insert("org_id".into(), Value::from(profile.org_id.clone()));
    }
    let mut body = json!({"action": action, "resource": resource, "data": out});
    if let Some(r) = reason {
        body["reason"] = Value::from(r);
    }
    Ok(body)
}

fn unknown(resource: &str, action: &str) -> String {
    format!("{action:?} is not an action of {resource} webhooks")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> OrgProfile {
        OrgProfile {
            org_id: "or79Cob97KSh".into(),
            name: "Fyle".into(),
            currency: "USD".into(),
            domain: "fylehq.com".into(),
            admin: json!({"id": "usqywo0f3nBY", "email": "admin@example.com", "full_name": "Ada Admin"}),
        }
    }

    #[test]
    fn report_events_carry_state_reason_and_the_callers_keys() {
        let data = json!({"id": "rp1s1L3QtMpF", "org_id": "orSomeoneElse"});
        let body = event_body(
            &profile(),
            "REPORT",
            "ADMIN_APPROVED",
            data.as_object().expect("object"),
            None,
            Utc::now(),
        )
        .expect("valid event");
        assert_eq!(body["reason"], "Admin approved the report.");
        assert_eq!(body["data"]["id"], "rp1s1L3QtMpF");
        assert_eq!(body["data"]["org_id"], "or79Cob97KSh", "always the org's");
        assert_eq!(body["data"]["state"], "APPROVED");
        assert_eq!(
            body["data"]["updated_by_user"]["email"],
            "admin@example.com"
        );
    }

    #[test]
    fn unknown_actions_and_resources_are_refused() {
        let none = Map::new();
        let now = Utc::now();
        assert!(event_body(&profile(), "REPORT", "SUBMITTED", &none, None, now).is_err());
        assert!(event_body(&profile(), "ORG_SETTING", "CREATED", &none, None, now).is_err());
        assert!(event_body(&profile(), "CATEGORY", "CREATED", &none, None, now).is_err());
        let ejected = event_body(
            &profile(),
            "EXPENSE",
            "EJECTED_FROM_REPORT",
            &none,
            None,
            now,
        )
        .expect("ok");
        assert_eq!(ejected["data"]["report_id"], Value::Null);
        assert!(ejected.get("reason").is_none());
    }
}
