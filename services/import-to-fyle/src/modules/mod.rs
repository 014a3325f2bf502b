//! The import modules: pure functions from a workspace's settings, the destination (QBO)
//! values to import and the values Fyle already has to the exact Fyle payloads. No I/O here —
//! [`crate::run`] loads the inputs, posts the outputs and keeps the import log.
//!
//! One module per Fyle source field ([`SourceField`]), in the incumbent's chain order (#63):
//! CATEGORY ([`category`]), TAX_GROUP ([`tax_group`]), MERCHANT ([`merchant`]), then PROJECT
//! and COST_CENTER ([`project`]), then custom SELECT fields ([`custom`]). Which source fields a workspace imports, and from which QBO
//! attribute types, is [`sources`].
//!
//! # Rules every module shares (incumbent §2.3, checklist #37–#49, #57–#58)
//! - **Candidates** ([`candidates`]): the destination rows selected for the source field (e.g.
//!   accounts of the workspace's charts of accounts), named as Fyle will show them
//!   (`{code}: {name}` for accounts when codes are on, #39), sorted by `(value, id)` and
//!   **deduplicated case-insensitively across the whole run** — the incumbent deduplicates per
//!   page of 200 only, so a name split across pages was posted twice and the second batch
//!   failed. Where several QBO values share a name, an active one is kept (Fyle has one value
//!   of that name: it is enabled while any QBO value of that name is active).
//! - **Batches** of [`BATCH_SIZE`] candidates in that order (#37); `total_batches_count` =
//!   ⌈candidates/200⌉ (+1 for the rename disables, posted last).
//! - **Create** only what Fyle lacks, compared case-insensitively, a *disabled* Fyle value
//!   counting as present; and only active QBO values (#42).
//! - **Disable** an inactive QBO value that exists in Fyle: its payload with `is_enabled:
//!   false` and Fyle's `id` (#43). Tax groups are never disabled (#48).
//! - **Never re-enable** (#44): a QBO value reactivated after its Fyle value was disabled finds
//!   that value present, so it is neither created nor disabled. Deliberate, as the incumbent
//!   (commit `3a379030` removed re-enabling): a Fyle admin may have disabled it on purpose,
//!   and the import must not overrule them.
//! - **Renames** ([`rename_disables`]): the old name is disabled in Fyle unless another QBO
//!   value of the source's types still has it (#57–58; with account codes on, the old coded
//!   name is disabled whatever the others are called, as the incumbent).
//!
//! Failure policy: the functions cannot fail; a value they cannot use (no tax rate, a blank
//! name) is left out and counted by the caller as skipped, never posted half-formed.

pub mod category;
pub mod custom;
pub mod merchant;
pub mod project;
pub mod tax_group;

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// Rows per Fyle bulk post (the incumbent's page size; Fyle's list maximum).
pub const BATCH_SIZE: usize = 200;

/// A Fyle source field import-to-fyle fills. Ordered as the incumbent chains them (#63):
/// custom fields last.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceField {
    Category,
    TaxGroup,
    Merchant,
    Project,
    CostCenter,
    /// A custom SELECT field, by its mapping-setting name (`COST_CODE`, #50).
    Custom(String),
}

impl SourceField {
    /// Every built-in field, in the incumbent's chain order (#63).
    pub const CHAIN: [SourceField; 5] = [
        SourceField::Category,
        SourceField::TaxGroup,
        SourceField::Merchant,
        SourceField::Project,
        SourceField::CostCenter,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            SourceField::Category => "CATEGORY",
            SourceField::TaxGroup => "TAX_GROUP",
            SourceField::Merchant => "MERCHANT",
            SourceField::Project => "PROJECT",
            SourceField::CostCenter => "COST_CENTER",
            SourceField::Custom(name) => name,
        }
    }

    /// A built-in field by name, else a custom field when the name is in the form mapping
    /// stores (the incumbent's `upper().replace(' ', '_')`: upper case, no spaces, no control
    /// characters, no `CUSTOM:` prefix, at most 255 characters; not CORPORATE_CARD or EMPLOYEE,
    /// which are never imported).
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(known) = Self::CHAIN.into_iter().find(|f| f.as_str() == s) {
            return Some(known);
        }
        let custom = !s.is_empty()
            && s.chars().count() <= 255
            && s.to_uppercase() == s
            && !s
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == ':')
            && !matches!(s, "CORPORATE_CARD" | "EMPLOYEE");
        custom.then(|| SourceField::Custom(s.to_owned()))
    }

    /// The Fyle admin resource bulk posts go to (`None`: merchants and custom fields, each
    /// one expense field).
    pub fn resource(&self) -> Option<&'static str> {
        match self {
            SourceField::Category => Some("categories"),
            SourceField::TaxGroup => Some("tax_groups"),
            SourceField::Project => Some("projects"),
            SourceField::CostCenter => Some("cost_centers"),
            SourceField::Merchant | SourceField::Custom(_) => None,
        }
    }
}

/// A custom field the workspace imports (#50): a mapping setting with `import_to_fyle` whose
/// source is not a built-in field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomImport {
    /// The mapping setting's source field (`COST_CODE`).
    pub source_field: String,
    /// The QBO attribute type its options come from.
    pub destination_field: String,
    /// The mapping setting's placeholder, if it has one.
    pub placeholder: Option<String>,
}

/// What a destination value was called before a rename.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Renamed {
    pub value: String,
    /// The code before the change (`None`: unchanged).
    pub code: Option<String>,
}

/// A QBO value as import-to-fyle stores it (from `sync.destination-attributes.v1`).
#[derive(Debug, Clone, PartialEq)]
pub struct DestValue {
    pub attribute_type: String,
    /// `Account` or `Item` for `ACCOUNT` rows (their ids are separate sequences).
    pub display_name: String,
    pub id: String,
    pub value: String,
    pub code: Option<String>,
    pub active: bool,
    pub detail: Value,
    /// Set when the last change of the value was a rename (or a code change).
    pub renamed_from: Option<Renamed>,
}

/// The options of a Fyle SELECT expense field, as Fyle lists it (none when it has none).
pub fn field_options(field: &Value) -> Vec<String> {
    field
        .get("options")
        .and_then(Value::as_array)
        .map(|o| {
            o.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// A value Fyle has (from fyle-sync's `ListExpenseAttributes`): its id, name and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FyleValue {
    pub id: String,
    pub value: String,
    pub active: bool,
}

/// Fyle's values by lower-cased name. Disabled values are present (#42). Where Fyle has two
/// spellings of one name, the enabled one (else the first) stands for both.
#[derive(Debug, Clone, Default)]
pub struct Existing {
    by_lower: HashMap<String, FyleValue>,
}

impl Existing {
    pub fn new(values: impl IntoIterator<Item = FyleValue>) -> Self {
        let mut by_lower: HashMap<String, FyleValue> = HashMap::new();
        for v in values {
            let key = v.value.to_lowercase();
            match by_lower.get(&key) {
                Some(held) if held.active || !v.active => {}
                _ => {
                    by_lower.insert(key, v);
                }
            }
        }
        Self { by_lower }
    }

    pub fn get(&self, name: &str) -> Option<&FyleValue> {
        self.by_lower.get(&name.to_lowercase())
    }

    pub fn len(&self) -> usize {
        self.by_lower.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_lower.is_empty()
    }
}

/// The workspace's import settings, as import-to-fyle reads them (see [`crate::settings`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportPlan {
    pub import_categories: bool,
    pub import_items: bool,
    /// QBO account types imported as categories (default `["Expense"]`).
    pub charts_of_accounts: Vec<String>,
    /// Category names are `{code}: {name}` (`ACCOUNT` in `import_code_fields`, #39).
    pub account_codes: bool,
    pub import_projects: bool,
    pub import_tax_codes: bool,
    pub import_vendors_as_merchants: bool,
    /// Cost centers from this QBO type (`CLASS` or `DEPARTMENT`), as the COST_CENTER mapping
    /// setting says when it imports.
    pub cost_centers_from: Option<String>,
    /// Custom fields imported, in mapping-setting order.
    pub custom_fields: Vec<CustomImport>,
}

impl ImportPlan {
    /// The custom field `name` imports, if it does.
    pub fn custom(&self, name: &str) -> Option<&CustomImport> {
        self.custom_fields.iter().find(|c| c.source_field == name)
    }
}

/// The QBO attribute types a source field imports.
pub fn destination_types(field: &SourceField, plan: &ImportPlan) -> Vec<String> {
    match field {
        SourceField::Category => vec!["ACCOUNT".to_owned()],
        SourceField::TaxGroup => vec!["TAX_CODE".to_owned()],
        SourceField::Merchant => vec!["VENDOR".to_owned()],
        SourceField::Project => vec!["CUSTOMER".to_owned()],
        SourceField::CostCenter => plan.cost_centers_from.iter().cloned().collect(),
        SourceField::Custom(name) => plan
            .custom(name)
            .map(|c| c.destination_field.clone())
            .into_iter()
            .collect(),
    }
}

/// The source fields the workspace imports, in chain order (#63).
pub fn sources(plan: &ImportPlan) -> Vec<SourceField> {
    SourceField::CHAIN
        .into_iter()
        .filter(|f| match f {
            SourceField::Category => plan.import_categories || plan.import_items,
            SourceField::TaxGroup => plan.import_tax_codes,
            SourceField::Merchant => plan.import_vendors_as_merchants,
            SourceField::Project => plan.import_projects,
            SourceField::CostCenter => plan.cost_centers_from.is_some(),
            SourceField::Custom(_) => false,
        })
        .chain(
            plan.custom_fields
                .iter()
                .map(|c| SourceField::Custom(c.source_field.clone())),
        )
        .collect()
}

/// The source fields a change of a QBO value of `attribute_type` concerns.
pub fn fields_for(attribute_type: &str, plan: &ImportPlan) -> Vec<SourceField> {
    sources(plan)
        .into_iter()
        .filter(|f| {
            destination_types(f, plan)
                .iter()
                .any(|t| t == attribute_type)
        })
        .collect()
}

/// Whether `row` is imported into `field` under `plan` (charts of accounts, items).
pub fn selects(field: &SourceField, plan: &ImportPlan, row: &DestValue) -> bool {
    if !destination_types(field, plan).contains(&row.attribute_type) {
        return false;
    }
    if *field != SourceField::Category {
        return true;
    }
    match row.display_name.as_str() {
        "Item" => plan.import_items,
        _ => {
            plan.import_categories
                && row
                    .detail
                    .get("account_type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| plan.charts_of_accounts.iter().any(|c| c == t))
        }
    }
}

/// A destination value ready for a module: its name as Fyle will show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub name: String,
    pub row: DestValue,
}

/// The name Fyle shows for a value: `{code}: {value}` for accounts when codes are on (#39).
pub fn fyle_name(
    field: &SourceField,
    plan: &ImportPlan,
    value: &str,
    code: Option<&str>,
) -> String {
    match code.filter(|c| !c.trim().is_empty()) {
        Some(code) if *field == SourceField::Category && plan.account_codes => {
            format!("{code}: {value}")
        }
        _ => value.to_owned(),
    }
}

/// Selects, names, orders by `(value, id)` and deduplicates case-insensitively across the whole
/// run (an active value wins a shared name). Blank names are dropped.
pub fn candidates(field: &SourceField, plan: &ImportPlan, rows: Vec<DestValue>) -> Vec<Candidate> {
    let mut rows: Vec<DestValue> = rows
        .into_iter()
        .filter(|r| selects(field, plan, r) && !r.value.trim().is_empty())
        .collect();
    rows.sort_by(|a, b| (&a.value, &a.id).cmp(&(&b.value, &b.id)));
    let mut out: Vec<Candidate> = Vec::with_capacity(rows.len());
    let mut at: HashMap<String, usize> = HashMap::new();
    for row in rows {
        let name = fyle_name(field, plan, &row.value, row.code.as_deref());
        match at.get(&name.to_lowercase()) {
            Some(&i) => {
                if row.active && !out[i].row.active {
                    out[i] = Candidate { name, row };
                }
            }
            None => {
                at.insert(name.to_lowercase(), out.len());
                out.push(Candidate { name, row });
            }
        }
    }
    out
}

/// `total_batches_count` for `n` candidates (#37; 0 when there is nothing to do, #36).
pub fn batch_count(n: usize) -> usize {
    n.div_ceil(BATCH_SIZE)
}

/// What a module does with a candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Absent from Fyle and active in QBO.
    Create,
    /// Inactive in QBO, present in Fyle (by this id, with Fyle's spelling).
    Disable { id: String, fyle_name: String },
    /// Nothing to do (present and active, present and reactivated — #44 —, or absent and
    /// inactive).
    Keep,
}

/// The create / disable / keep rule of #42–#44.
pub fn action(candidate: &Candidate, existing: &Existing) -> Action {
    match (existing.get(&candidate.name), candidate.row.active) {
        (None, true) => Action::Create,
        (Some(f), false) if f.active => Action::Disable {
            id: f.id.clone(),
            fyle_name: f.value.clone(),
        },
        _ => Action::Keep,
    }
}

/// Old names to disable after renames (#57–58): for every renamed candidate whose old Fyle
/// name differs (case-insensitively) from its new one and exists enabled in Fyle, unless
/// `in_use` (lower-cased names of the source's QBO values now) still holds it — a check
/// skipped for coded category names (#58: only non-code naming is shared). Also skipped when
/// the old name is a candidate of this run (it stays). Returns `(Fyle id, Fyle name)` pairs,
/// each once.
pub fn rename_disables(
    field: &SourceField,
    plan: &ImportPlan,
    candidates: &[Candidate],
    in_use: &HashSet<String>,
    existing: &Existing,
) -> Vec<(String, String)> {
    let coded = *field == SourceField::Category && plan.account_codes;
    let names: HashSet<String> = candidates.iter().map(|c| c.name.to_lowercase()).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for c in candidates {
        let Some(old) = &c.row.renamed_from else {
            continue;
        };
        let old_code = old.code.as_deref().or(c.row.code.as_deref());
        let old_name = fyle_name(field, plan, &old.value, old_code);
        let lower = old_name.to_lowercase();
        if lower == c.name.to_lowercase() || names.contains(&lower) {
            continue;
        }
        if !coded && in_use.contains(&old.value.to_lowercase()) {
            continue;
        }
        if let Some(f) = existing.get(&old_name)
            && f.active
            && seen.insert(f.id.clone())
        {
            out.push((f.id.clone(), f.value.clone()));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    pub(crate) fn row(t: &str, id: &str, value: &str, active: bool) -> DestValue {
        DestValue {
            attribute_type: t.to_owned(),
            display_name: match t {
                "ACCOUNT" => "Account".to_owned(),
                other => other.to_owned(),
            },
            id: id.to_owned(),
            value: value.to_owned(),
            code: None,
            active,
            detail: json!({"account_type": "Expense"}),
            renamed_from: None,
        }
    }

    pub(crate) fn fyle(id: &str, value: &str, active: bool) -> FyleValue {
        FyleValue {
            id: id.to_owned(),
            value: value.to_owned(),
            active,
        }
    }

    pub(crate) fn plan() -> ImportPlan {
        ImportPlan {
            import_categories: true,
            charts_of_accounts: vec!["Expense".into()],
            import_projects: true,
            import_tax_codes: true,
            import_vendors_as_merchants: true,
            ..Default::default()
        }
    }

    #[test]
    fn custom_fields_parse_from_stored_names_and_come_last_in_the_chain() {
        assert_eq!(SourceField::parse("PROJECT"), Some(SourceField::Project));
        assert_eq!(
            SourceField::parse("COST_CODE"),
            Some(SourceField::Custom("COST_CODE".into()))
        );
        assert_eq!(
            SourceField::parse("COST-CODE_DÉPARTEMENT"),
            Some(SourceField::Custom("COST-CODE_DÉPARTEMENT".into())),
            "mapping stores any name, upper-cased with spaces as underscores"
        );
        for refused in [
            "",
            "cost code",
            "COST CODE",
            "CUSTOM:COST_CODE",
            "COST\u{0}CODE",
            "EMPLOYEE",
            "CORPORATE_CARD",
        ] {
            assert_eq!(SourceField::parse(refused), None, "{refused:?}");
        }
        let p = ImportPlan {
            custom_fields: vec![CustomImport {
                source_field: "COST_CODE".into(),
                destination_field: "DEPARTMENT".into(),
                placeholder: None,
            }],
            ..plan()
        };
        let chain = sources(&p);
        assert_eq!(chain.last(), Some(&SourceField::Custom("COST_CODE".into())));
        assert_eq!(
            destination_types(&SourceField::Custom("COST_CODE".into()), &p),
            ["DEPARTMENT"]
        );
        assert!(
            fields_for("DEPARTMENT", &p).contains(&SourceField::Custom("COST_CODE".into())),
            "a department change imports the custom field"
        );
    }

    #[test]
    fn duplicates_are_removed_across_the_whole_run_not_per_page() {
        // 250 values: "Travel" at both ends of the order would be on different pages.
        let mut rows: Vec<DestValue> = (0..248)
            .map(|i| row("ACCOUNT", &format!("{i}"), &format!("M{i:03}"), true))
            .collect();
        rows.push(row("ACCOUNT", "900", "A travel", true));
        rows.push(row("ACCOUNT", "901", "a TRAVEL", true));
        let c = candidates(&SourceField::Category, &plan(), rows);
        assert_eq!(c.len(), 249);
        assert_eq!(
            c[0].name, "A travel",
            "(value, id) order: the first spelling kept"
        );
        assert_eq!(batch_count(c.len()), 2);
    }

    #[test]
    fn an_active_value_wins_a_shared_name() {
        let rows = vec![
            row("ACCOUNT", "1", "Travel", false),
            row("ACCOUNT", "2", "travel", true),
        ];
        let c = candidates(&SourceField::Category, &plan(), rows);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].row.id, "2");
        assert!(c[0].row.active);
    }

    #[test]
    fn candidates_are_ordered_by_value_then_id() {
        let rows = vec![
            row("ACCOUNT", "9", "Beta", true),
            row("ACCOUNT", "3", "Alpha", true),
            row("ACCOUNT", "1", "Gamma", true),
        ];
        let names: Vec<_> = candidates(&SourceField::Category, &plan(), rows)
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["Alpha", "Beta", "Gamma"]);
    }

    #[test]
    fn batches_are_200_and_nothing_to_do_is_zero() {
        assert_eq!(batch_count(0), 0);
        assert_eq!(batch_count(1), 1);
        assert_eq!(batch_count(200), 1);
        assert_eq!(batch_count(201), 2);
        assert_eq!(batch_count(10_000), 50);
    }

    #[test]
    fn accounts_outside_the_charts_and_items_without_import_items_are_not_categories() {
        let mut income = row("ACCOUNT", "5", "Sales", true);
        income.detail = json!({"account_type": "Income"});
        let mut item = row("ACCOUNT", "6", "Widget", true);
        item.display_name = "Item".into();
        item.detail = Value::Null;
        let vendor = row("VENDOR", "7", "Bessie", true);
        let p = plan();
        assert!(!selects(&SourceField::Category, &p, &income));
        assert!(!selects(&SourceField::Category, &p, &item));
        assert!(!selects(&SourceField::Category, &p, &vendor));
        let with_items = ImportPlan {
            import_items: true,
            charts_of_accounts: vec!["Expense".into(), "Income".into()],
            ..p
        };
        assert!(selects(&SourceField::Category, &with_items, &income));
        assert!(selects(&SourceField::Category, &with_items, &item));
        // Items alone: accounts are not imported.
        let items_only = ImportPlan {
            import_categories: false,
            ..with_items
        };
        assert!(!selects(&SourceField::Category, &items_only, &income));
        assert!(selects(&SourceField::Category, &items_only, &item));
    }

    #[test]
    fn sources_follow_the_settings_in_chain_order() {
        assert_eq!(
            sources(&plan()),
            [
                SourceField::Category,
                SourceField::TaxGroup,
                SourceField::Merchant,
                SourceField::Project
            ]
        );
        assert!(sources(&ImportPlan::default()).is_empty());
        assert_eq!(fields_for("CUSTOMER", &plan()), [SourceField::Project]);
        assert!(fields_for("CLASS", &plan()).is_empty());
        let cc = ImportPlan {
            cost_centers_from: Some("CLASS".into()),
            ..ImportPlan::default()
        };
        assert_eq!(fields_for("CLASS", &cc), [SourceField::CostCenter]);
    }

    #[test]
    fn create_only_what_fyle_lacks_counting_disabled_values_as_present() {
        let existing = Existing::new([fyle("11", "TRAVEL", false), fyle("12", "Meals", true)]);
        let c = |v: &str, active| Candidate {
            name: v.to_owned(),
            row: row("ACCOUNT", "1", v, active),
        };
        assert_eq!(action(&c("Office", true), &existing), Action::Create);
        // Disabled in Fyle and active in QBO: present, and not re-enabled (#44).
        assert_eq!(action(&c("travel", true), &existing), Action::Keep);
        // Inactive in QBO, absent from Fyle: nothing to create.
        assert_eq!(action(&c("Office", false), &existing), Action::Keep);
        // Inactive in QBO, enabled in Fyle: disabled with Fyle's id and spelling (#43).
        assert_eq!(
            action(&c("MEALS", false), &existing),
            Action::Disable {
                id: "12".into(),
                fyle_name: "Meals".into()
            }
        );
        // Already disabled: nothing more.
        assert_eq!(action(&c("Travel", false), &existing), Action::Keep);
    }

    #[test]
    fn an_enabled_fyle_spelling_stands_for_a_name() {
        let existing = Existing::new([fyle("1", "travel", false), fyle("2", "Travel", true)]);
        assert_eq!(existing.get("TRAVEL").map(|f| f.id.as_str()), Some("2"));
        assert_eq!(existing.len(), 1);
    }

    fn renamed(id: &str, old: &str, new: &str) -> DestValue {
        DestValue {
            renamed_from: Some(Renamed {
                value: old.to_owned(),
                code: None,
            }),
            ..row("CUSTOMER", id, new, true)
        }
    }

    #[test]
    fn a_rename_disables_the_old_name_unless_another_value_has_it() {
        let p = plan();
        let existing = Existing::new([fyle("p1", "Old Co", true), fyle("p2", "Shared", true)]);
        let c = candidates(
            &SourceField::Project,
            &p,
            vec![
                renamed("1", "Old Co", "New Co"),
                renamed("2", "Shared", "Other"),
            ],
        );
        let in_use: HashSet<String> = ["shared".to_owned()].into();
        let disables = rename_disables(&SourceField::Project, &p, &c, &in_use, &existing);
        assert_eq!(disables, [("p1".to_owned(), "Old Co".to_owned())]);
    }

    #[test]
    fn a_change_of_case_only_or_a_name_fyle_lacks_disables_nothing() {
        let p = plan();
        let existing = Existing::new([fyle("p1", "acme", true)]);
        let c = candidates(
            &SourceField::Project,
            &p,
            vec![
                renamed("1", "acme", "ACME"),
                renamed("2", "Ghost", "Spirit"),
            ],
        );
        assert!(
            rename_disables(&SourceField::Project, &p, &c, &HashSet::new(), &existing).is_empty()
        );
    }

    #[test]
    fn a_code_change_disables_the_old_coded_category_name() {
        let p = ImportPlan {
            account_codes: true,
            ..plan()
        };
        let mut r = row("ACCOUNT", "7", "Travel", true);
        r.code = Some("6100".into());
        r.renamed_from = Some(Renamed {
            value: "Travel".into(),
            code: Some("6000".into()),
        });
        let existing = Existing::new([fyle("c1", "6000: Travel", true)]);
        let c = candidates(&SourceField::Category, &p, vec![r]);
        assert_eq!(c[0].name, "6100: Travel");
        // Coded names are not shared: disabled although "travel" is still in use.
        let in_use: HashSet<String> = ["travel".to_owned()].into();
        assert_eq!(
            rename_disables(&SourceField::Category, &p, &c, &in_use, &existing),
            [("c1".to_owned(), "6000: Travel".to_owned())]
        );
    }
}
