//! What applying a Fyle object to the stored attributes should do — pure rules, no I/O.
//!
//! - An attribute is found by `(workspace, type, source_id)`; a new one is inserted.
//! - Whether an event may be applied at all is decided by its version (see
//!   [`effective_version`] and `apply`'s `source_versions`), before any of these rules run.
//! - A write happens only when the content hash differs; its kind (renamed, deactivated,
//!   reactivated, updated) is what the change event reports.
//! - Custom SELECT fields follow the incumbent: options are identified by value within their
//!   type; unknown options are created, active options no longer listed are deactivated, and
//!   inactive options that reappear stay inactive (incumbent checklist 21–22).

use attrsync_core::derive::{DerivedAttribute, SelectField};
use attrsync_proto::v1::ChangeKind;
use chrono::{DateTime, Utc};

/// The stored facts a plan needs about one attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub id: i64,
    pub value: String,
    pub active: bool,
    pub content_hash: String,
    pub source_updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertPlan {
    Insert,
    Update(ChangeKind),
    Unchanged,
}

/// An event's version: Fyle's `updated_at` when it has one, else when it was received — but
/// never later than `received_at + max_skew`, so a forged or skewed far-future stamp cannot
/// make every later real update look stale.
pub fn effective_version(
    updated_at: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
    max_skew: std::time::Duration,
) -> DateTime<Utc> {
    let ceiling = received_at
        + chrono::Duration::from_std(max_skew).unwrap_or_else(|_| chrono::Duration::zero());
    updated_at.unwrap_or(received_at).min(ceiling)
}

pub fn plan_upsert(
    existing: Option<&Stored>,
    incoming: &DerivedAttribute,
    incoming_hash: &str,
) -> UpsertPlan {
    let Some(stored) = existing else {
        return UpsertPlan::Insert;
    };
    if stored.content_hash == incoming_hash {
        return UpsertPlan::Unchanged;
    }
    UpsertPlan::Update(change_kind(stored, &incoming.value, incoming.active))
}

/// How an update appears to users: a new value is a rename, whatever else changed with it.
pub fn change_kind(stored: &Stored, value: &str, active: bool) -> ChangeKind {
    if stored.value != value {
        ChangeKind::Renamed
    } else if stored.active && !active {
        ChangeKind::Deactivated
    } else if !stored.active && active {
        ChangeKind::Reactivated
    } else {
        ChangeKind::Updated
    }
}

/// One step of applying a custom SELECT field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionStep {
    Create { value: String, source_id: String },
    Deactivate { id: i64, value: String },
}

/// The steps that bring the stored options of `field`'s type in line with `field.options`.
/// `existing` holds every stored value of that type, active or not.
pub fn plan_select_field(existing: &[Stored], field: &SelectField) -> Vec<OptionStep> {
    let mut steps: Vec<OptionStep> = field
        .options
        .iter()
        .filter(|option| !existing.iter().any(|s| &s.value == *option))
        .map(|option| OptionStep::Create {
            value: option.clone(),
            source_id: field.option_source_id(option),
        })
        .collect();
    steps.extend(
        existing
            .iter()
            .filter(|s| s.active && !field.options.contains(&s.value))
            .map(|s| OptionStep::Deactivate {
                id: s.id,
                value: s.value.clone(),
            }),
    );
    steps
}

#[cfg(test)]
mod tests {
    use attrsync_core::FyleAttributeType;
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn at(hour: u32) -> Option<DateTime<Utc>> {
        Utc.with_ymd_and_hms(2024, 5, 2, hour, 0, 0).single()
    }

    fn stored(value: &str, active: bool, hash: &str, updated: Option<DateTime<Utc>>) -> Stored {
        Stored {
            id: 1,
            value: value.into(),
            active,
            content_hash: hash.into(),
            source_updated_at: updated,
        }
    }

    fn incoming(value: &str, active: bool, updated: Option<DateTime<Utc>>) -> DerivedAttribute {
        DerivedAttribute {
            attribute_type: FyleAttributeType::Category,
            display_name: "Category".into(),
            value: value.into(),
            source_id: "22330099".into(),
            active,
            detail: None,
            source_updated_at: updated,
        }
    }

    #[test]
    fn new_attributes_are_inserted() {
        assert_eq!(
            plan_upsert(None, &incoming("Travel", true, at(10)), "h"),
            UpsertPlan::Insert
        );
    }

    #[test]
    fn a_far_future_updated_at_counts_only_up_to_the_allowed_skew() {
        let received = at(10).expect("time");
        let skew = std::time::Duration::from_secs(300);
        let forged = Utc.with_ymd_and_hms(9999, 1, 1, 0, 0, 0).single();
        assert_eq!(
            effective_version(forged, received, skew),
            received + chrono::Duration::seconds(300)
        );
        assert_eq!(
            effective_version(at(9), received, skew),
            at(9).expect("time")
        );
        assert_eq!(effective_version(None, received, skew), received);
    }

    #[test]
    fn a_select_field_with_5000_options_is_split_under_the_byte_cap() {
        use prost::Message as _;
        let changes: Vec<attrsync_proto::v1::ExpenseAttributeChange> = (0..5000)
            .map(|i| attrsync_proto::v1::ExpenseAttributeChange {
                attribute_type: "CUSTOM:COST_CODE".into(),
                source_id: format!("229506:Option number {i}"),
                value: format!("Option number {i}"),
                detail_json: r#"{"custom_field_id":229506,"placeholder":"Select a cost code"}"#
                    .into(),
                ..Default::default()
            })
            .collect();
        let cap = 64 * 1024;
        let chunks = attrsync_kafka::envelope::chunk_by_encoded_len(changes.clone(), cap);
        assert!(chunks.len() > 1);
        for chunk in &chunks {
            let event = attrsync_proto::v1::ExpenseAttributesChanged {
                changes: chunk.clone(),
                origin: "webhook".into(),
            };
            assert!(event.encoded_len() <= cap + 16, "{}", event.encoded_len());
        }
        assert_eq!(chunks.concat(), changes, "nothing lost, order kept");
    }

    #[test]
    fn changed_content_is_an_update_and_identical_content_is_unchanged() {
        let s = stored("Travel / Train", true, "new", at(11));
        assert_eq!(
            plan_upsert(Some(&s), &incoming("Travel / Bus", true, at(11)), "bus"),
            UpsertPlan::Update(ChangeKind::Renamed)
        );
        let s = stored("Travel", true, "same", at(10));
        assert_eq!(
            plan_upsert(Some(&s), &incoming("Travel", true, at(12)), "same"),
            UpsertPlan::Unchanged
        );
    }

    #[test]
    fn change_kinds_describe_what_users_see() {
        let active = stored("Travel", true, "h", None);
        let inactive = stored("Travel", false, "h", None);
        assert_eq!(
            change_kind(&active, "Travel", false),
            ChangeKind::Deactivated
        );
        assert_eq!(
            change_kind(&inactive, "Travel", true),
            ChangeKind::Reactivated
        );
        assert_eq!(change_kind(&active, "Travel", true), ChangeKind::Updated);
        assert_eq!(change_kind(&active, "Trips", false), ChangeKind::Renamed);
    }

    #[test]
    fn select_fields_create_new_options_and_deactivate_removed_ones() {
        let field = SelectField {
            attribute_type: FyleAttributeType::custom("Luke"),
            display_name: "Luke".into(),
            field_id: "229506".into(),
            options: vec!["France".into(), "Denmark".into(), "Spain".into()],
            active: true,
            detail: json!({}),
            source_updated_at: None,
        };
        let existing = vec![
            Stored {
                id: 1,
                ..stored("France", true, "h", None)
            },
            Stored {
                id: 2,
                ..stored("Italy", true, "h", None)
            },
            Stored {
                id: 3,
                ..stored("Spain", false, "h", None)
            },
            Stored {
                id: 4,
                ..stored("Norway", false, "h", None)
            },
        ];
        assert_eq!(
            plan_select_field(&existing, &field),
            vec![
                OptionStep::Create {
                    value: "Denmark".into(),
                    source_id: "229506:Denmark".into()
                },
                OptionStep::Deactivate {
                    id: 2,
                    value: "Italy".into()
                },
            ],
            "Spain reappears but stays inactive; Norway is already inactive"
        );
    }
}
