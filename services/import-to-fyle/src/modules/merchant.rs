//! MERCHANT from QBO vendors (#49): Fyle keeps merchants as the `options` of one system
//! expense field (`column_name = merchant`), so the import posts the **whole** option list in
//! one request: (existing options ∪ active vendors) − inactive vendors − renamed-away names,
//! deduplicated case-insensitively (the first spelling kept: Fyle's, then QBO's in `(value,
//! id)` order). Existing options keep their order; new ones follow.
//!
//! Unlike the incumbent (which posts every run), nothing is posted when the list would not
//! change — so a redelivered change or a repeated run costs no Fyle write — and an empty list
//! is never posted (Fyle would clear every merchant). No mappings are made for merchants.

use std::collections::HashSet;

use super::{Candidate, ImportPlan, SourceField, fyle_name};

/// The new option list, or `None` when it equals `current` or would be empty.
pub fn options(
    plan: &ImportPlan,
    candidates: &[Candidate],
    in_use: &HashSet<String>,
    current: &[String],
) -> Option<Vec<String>> {
    let active: HashSet<String> = candidates
        .iter()
        .filter(|c| c.row.active)
        .map(|c| c.name.to_lowercase())
        .collect();
    let mut remove: HashSet<String> = candidates
        .iter()
        .filter(|c| !c.row.active)
        .map(|c| c.name.to_lowercase())
        .collect();
    for c in candidates {
        if let Some(old) = &c.row.renamed_from {
            let old = fyle_name(&SourceField::Merchant, plan, &old.value, None).to_lowercase();
            if !in_use.contains(&old) {
                remove.insert(old);
            }
        }
    }
    remove.retain(|n| !active.contains(n));
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(current.len() + candidates.len());
    let kept = current
        .iter()
        .filter(|o| !remove.contains(&o.to_lowercase()))
        .cloned();
    let added = candidates
        .iter()
        .filter(|c| c.row.active)
        .map(|c| c.name.clone());
    for name in kept.chain(added) {
        if seen.insert(name.to_lowercase()) {
            out.push(name);
        }
    }
    (out != current && !out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::{
        Renamed, candidates,
        tests::{plan, row},
    };

    fn opts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_full_list_is_existing_plus_vendors_minus_inactive_deduplicated() {
        let c = candidates(
            &SourceField::Merchant,
            &plan(),
            vec![
                row("VENDOR", "1", "Books by Bessie", true),
                row("VENDOR", "2", "adp", true),
                row("VENDOR", "3", "Goner", false),
                row("VENDOR", "4", "New Vendor", true),
            ],
        );
        let current = opts(&["ADP", "Goner", "Uber"]);
        assert_eq!(
            options(&plan(), &c, &HashSet::new(), &current),
            Some(opts(&["ADP", "Uber", "Books by Bessie", "New Vendor"]))
        );
    }

    #[test]
    fn an_unchanged_list_and_an_empty_one_are_not_posted() {
        let c = candidates(
            &SourceField::Merchant,
            &plan(),
            vec![row("VENDOR", "1", "uber", true)],
        );
        assert_eq!(
            options(&plan(), &c, &HashSet::new(), &opts(&["Uber"])),
            None
        );
        let gone = candidates(
            &SourceField::Merchant,
            &plan(),
            vec![row("VENDOR", "1", "Uber", false)],
        );
        assert_eq!(
            options(&plan(), &gone, &HashSet::new(), &opts(&["Uber"])),
            None
        );
    }

    #[test]
    fn a_renamed_vendor_replaces_its_old_name_unless_another_vendor_has_it() {
        let mut renamed = row("VENDOR", "1", "Bessie's Books", true);
        renamed.renamed_from = Some(Renamed {
            value: "Books by Bessie".into(),
            code: None,
        });
        let c = candidates(&SourceField::Merchant, &plan(), vec![renamed]);
        let current = opts(&["Books by Bessie", "Uber"]);
        assert_eq!(
            options(&plan(), &c, &HashSet::new(), &current),
            Some(opts(&["Uber", "Bessie's Books"]))
        );
        let in_use: HashSet<String> = ["books by bessie".to_owned()].into();
        assert_eq!(
            options(&plan(), &c, &in_use, &current),
            Some(opts(&["Books by Bessie", "Uber", "Bessie's Books"]))
        );
    }
}
