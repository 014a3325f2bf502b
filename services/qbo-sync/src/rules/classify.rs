//! Change classification: what kind of change a new draft is against the stored row.
//!
//! The kind travels on `sync.destination-attributes.v1`, which is published **only on a content
//! change** (equal content hashes → [`classify`] returns `None`: no write, no event).
//! [`classify`] compares a draft with the stored row; [`classify_change`] makes the same
//! decision between two stored states (the row before and after an upsert).
//!
//! - No stored row → [`ChangeKind::Created`].
//! - [`ChangeKind::Renamed`] when the value changed **case-insensitively** or the code changed
//!   (incumbent #57–58: import-to-fyle then disables the old name in Fyle, so it needs the old
//!   value and code, which the kind carries). A change of case only ("travel" → "Travel") is
//!   not a rename — Fyle compares names case-insensitively, so there is nothing to disable —
//!   and is reported as [`ChangeKind::Updated`].
//! - Codes: the incumbent counts a change only when the *new* code is non-empty, so removing an
//!   `AcctNum` went unnoticed although Fyle's name `"6010: Advertising"` (codes prepended,
//!   #39) becomes `"Advertising"`. Here any difference counts, adding or removing included
//!   (`None` and an empty code are the same).
//! - Otherwise [`ChangeKind::Deactivated`] / [`ChangeKind::Reactivated`] when `active` flipped,
//!   else [`ChangeKind::Updated`] (detail, case-only value change).
//!
//! **Precedence when several happen at once: Renamed > Deactivated / Reactivated > Updated.**
//! A rename must win because only it carries the old value: a rename reported as
//! "deactivated" would make import-to-fyle look for the *new* name in Fyle, miss it, and leave
//! the old name enabled. Nothing is lost by it — the event also carries the new `active`, so a
//! consumer sees "renamed, and now inactive" (disable the old name, create nothing) or
//! "renamed, and active again" (disable the old name, create the new one).

use super::DestinationDraft;

/// What is stored of a destination attribute, as far as classification needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttribute {
    pub value: String,
    pub code: Option<String>,
    pub active: bool,
    pub content_hash: String,
}

/// How a stored destination attribute changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    /// Visible content changed, but not the name, the code or `active`.
    Updated,
    /// The name (case-insensitively) or the code changed; the previous ones, for disabling.
    Renamed {
        old_value: String,
        old_code: Option<String>,
    },
    Deactivated,
    Reactivated,
}

impl ChangeKind {
    /// The lower-case name used in events and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Renamed { .. } => "renamed",
            Self::Deactivated => "deactivated",
            Self::Reactivated => "reactivated",
        }
    }
}

impl From<&DestinationDraft> for StoredAttribute {
    /// What the draft will be once stored.
    fn from(draft: &DestinationDraft) -> Self {
        Self {
            value: draft.value.clone(),
            code: draft.code.clone(),
            active: draft.active,
            content_hash: draft.content_hash(),
        }
    }
}

/// The kind of change `next` is against `previous`, or `None` when nothing visible changed.
pub fn classify(previous: Option<&StoredAttribute>, next: &DestinationDraft) -> Option<ChangeKind> {
    classify_change(previous, &StoredAttribute::from(next))
}

/// [`classify`] for a row already written: `next` is what is stored now, `previous` what it
/// replaced (the store reports both).
pub fn classify_change(
    previous: Option<&StoredAttribute>,
    next: &StoredAttribute,
) -> Option<ChangeKind> {
    let Some(stored) = previous else {
        return Some(ChangeKind::Created);
    };
    if stored.content_hash == next.content_hash {
        return None;
    }
    let renamed = !same_name(&stored.value, &next.value)
        || non_empty(stored.code.as_deref()) != non_empty(next.code.as_deref());
    Some(if renamed {
        ChangeKind::Renamed {
            old_value: stored.value.clone(),
            old_code: stored.code.clone(),
        }
    } else if stored.active && !next.active {
        ChangeKind::Deactivated
    } else if !stored.active && next.active {
        ChangeKind::Reactivated
    } else {
        ChangeKind::Updated
    })
}

/// Case-insensitive equality (Unicode lower case, as Fyle compares names).
fn same_name(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

fn non_empty(code: Option<&str>) -> Option<&str> {
    code.filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::rules::{AttributeType, display_name};

    fn draft(value: &str, code: Option<&str>, active: bool) -> DestinationDraft {
        DestinationDraft {
            attribute_type: AttributeType::Account,
            display_name: display_name::ACCOUNT,
            destination_id: "7".into(),
            value: value.into(),
            code: code.map(str::to_owned),
            active,
            detail: json!({"fully_qualified_name": value, "account_type": "Expense",
                           "detail_type": "AdvertisingPromotional"}),
            last_updated_time: None,
            sync_token: Some("0".into()),
        }
    }

    fn stored(d: &DestinationDraft) -> StoredAttribute {
        StoredAttribute::from(d)
    }

    fn renamed(old_value: &str, old_code: Option<&str>) -> Option<ChangeKind> {
        Some(ChangeKind::Renamed {
            old_value: old_value.into(),
            old_code: old_code.map(str::to_owned),
        })
    }

    #[test]
    fn stored_states_classify_like_drafts() {
        let before = stored(&draft("Advertising", Some("6010"), true));
        let after = stored(&draft("Marketing", Some("6010"), false));
        assert_eq!(
            classify_change(Some(&before), &after),
            renamed("Advertising", Some("6010"))
        );
        assert_eq!(classify_change(Some(&before), &before), None);
        assert_eq!(classify_change(None, &after), Some(ChangeKind::Created));
    }

    #[test]
    fn a_new_row_is_created() {
        let next = draft("Advertising", Some("6010"), true);
        assert_eq!(classify(None, &next), Some(ChangeKind::Created));
    }

    #[test]
    fn equal_content_is_no_change_even_with_new_version_stamps() {
        let before = draft("Advertising", Some("6010"), true);
        let mut after = before.clone();
        after.sync_token = Some("9".into());
        assert_eq!(classify(Some(&stored(&before)), &after), None);
    }

    #[test]
    fn a_new_name_is_a_rename_carrying_the_old_one() {
        let before = draft("Advertising", Some("6010"), true);
        let after = draft("Marketing", Some("6010"), true);
        assert_eq!(
            classify(Some(&stored(&before)), &after),
            renamed("Advertising", Some("6010"))
        );
    }

    #[test]
    fn a_change_of_case_only_is_an_update_not_a_rename() {
        let before = draft("advertising", None, true);
        let after = draft("Advertising", None, true);
        assert_eq!(
            classify(Some(&stored(&before)), &after),
            Some(ChangeKind::Updated)
        );
        let before = draft("ÉCOLE", None, true);
        let after = draft("école", None, true);
        assert_eq!(
            classify(Some(&stored(&before)), &after),
            Some(ChangeKind::Updated),
            "case folding is Unicode-aware"
        );
    }

    #[test]
    fn any_code_change_is_a_rename_including_adding_and_removing_one() {
        let with = draft("Advertising", Some("6010"), true);
        let other = draft("Advertising", Some("6020"), true);
        let without = draft("Advertising", None, true);
        assert_eq!(
            classify(Some(&stored(&with)), &other),
            renamed("Advertising", Some("6010"))
        );
        assert_eq!(
            classify(Some(&stored(&without)), &with),
            renamed("Advertising", None),
            "a code added"
        );
        assert_eq!(
            classify(Some(&stored(&with)), &without),
            renamed("Advertising", Some("6010")),
            "a code removed (the incumbent misses this one)"
        );
    }

    #[test]
    fn an_empty_stored_code_equals_no_code() {
        let next = draft("Advertising", None, true);
        let mut previous = stored(&draft("Advertising", None, false));
        previous.code = Some(String::new());
        assert_eq!(
            classify(Some(&previous), &next),
            Some(ChangeKind::Reactivated)
        );
    }

    #[test]
    fn active_flips_are_deactivations_and_reactivations() {
        let on = draft("Advertising", None, true);
        let off = draft("Advertising", None, false);
        assert_eq!(
            classify(Some(&stored(&on)), &off),
            Some(ChangeKind::Deactivated)
        );
        assert_eq!(
            classify(Some(&stored(&off)), &on),
            Some(ChangeKind::Reactivated)
        );
    }

    #[test]
    fn a_detail_change_alone_is_an_update() {
        let before = draft("Advertising", None, true);
        let mut after = before.clone();
        after.detail["detail_type"] = Value::from("Travel");
        assert_eq!(
            classify(Some(&stored(&before)), &after),
            Some(ChangeKind::Updated)
        );
    }

    #[test]
    fn rename_wins_over_an_active_flip() {
        let before = draft("Advertising", None, true);
        let after = draft("Old Advertising", None, false);
        assert_eq!(
            classify(Some(&stored(&before)), &after),
            renamed("Advertising", None),
            "renamed and deactivated at once"
        );
        let before = draft("Travel", Some("1"), false);
        let after = draft("Travel", Some("2"), true);
        assert_eq!(
            classify(Some(&stored(&before)), &after),
            renamed("Travel", Some("1")),
            "code changed and reactivated at once"
        );
    }

    #[test]
    fn an_active_flip_wins_over_a_detail_or_case_change() {
        let before = draft("advertising", None, true);
        let after = draft("Advertising", None, false);
        assert_eq!(
            classify(Some(&stored(&before)), &after),
            Some(ChangeKind::Deactivated)
        );
    }
}
