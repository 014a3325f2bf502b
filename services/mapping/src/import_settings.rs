//! The rules of `UpdateImportSettings` (incumbent §2.7, #59–#61): what a settings change is
//! allowed to be, what the stored mapping settings become, and what it sets in motion. Pure —
//! no database, no clock — so every rule is a unit test; [`crate::store`] runs the plan in one
//! transaction.
//!
//! **Validation** ([`plan`] refuses with a message naming the field):
//! - `import_code_fields` may hold only `ACCOUNT`; a code field once set cannot be removed, and
//!   `ACCOUNT` cannot be added once a category import has run (#39; the incumbent's "Cannot
//!   change the code fields once they are imported");
//! - a mapping setting needs a source and a known QBO destination field; a source or a
//!   destination may appear once; `EMPLOYEE` and `MERCHANT` are not mapping settings
//!   (employees follow `employee_field_mapping`, merchants `import_vendors_as_merchants`);
//! - the fixed pairs stay fixed: CATEGORY → ACCOUNT, TAX_GROUP → TAX_CODE, CORPORATE_CARD →
//!   CREDIT_CARD_ACCOUNT or BANK_ACCOUNT; projects, cost centers and custom fields map to
//!   CUSTOMER, CLASS, DEPARTMENT or VENDOR — so no request can move categories off accounts
//!   (and drop their mappings) or take a field the incumbent's appended settings use;
//! - names at most 255 characters without control characters, lists at most 100 entries; a
//!   refusal echoes at most 64 characters of what was sent.
//!
//! **The stored set** ([`Plan::mapping_settings`]): source fields normalised to UPPER_SNAKE
//! without a `CUSTOM:` prefix (`Cost Code` → `COST_CODE`), `is_custom` derived from the source
//! (never trusted from the caller); the submitted settings replace those with the same
//! destination; a stored CLASS/CUSTOMER/DEPARTMENT/TAX_CODE setting that is not submitted is
//! removed, others are kept (the incumbent's rule); `TAX_GROUP → TAX_CODE` (imported) is
//! added when `import_tax_codes` is on and `CATEGORY → ACCOUNT` (not imported) always; the
//! `CORPORATE_CARD` setting is dropped when `map_fyle_cards_qbo_account` is off or no card
//! export object is set (`delete_cards_mapping_settings`).
//!
//! **What it sets in motion**:
//! - [`Plan::retargeted`]: sources whose destination field changed. Their auto-made mappings
//!   to the old destination are removed and the source is auto-mapped afresh against the new
//!   one (the incumbent only clears `auto_mapped` and waits for the next daily run); an
//!   operator's mappings are kept. A source whose setting is removed keeps its mappings, as
//!   in the incumbent (nothing reads them until a setting names that destination again). A
//!   workspace without stored settings has auto-mapping's defaults in effect, so its first
//!   update is compared with those;
//! - [`Plan::imports`], the `ImportRequested` commands (#60, #61): a full CATEGORY import
//!   when the set of charts of accounts changed (categories imported), `import_items` or
//!   `import_categories` turned on or the code prefix was chosen; `disable_items` when
//!   `import_items` turned off (#59, carrying the Fyle ids of the categories whose item
//!   mappings were removed); TAX_GROUP / MERCHANT / PROJECT when their flag turned
//!   on; a full import of every imported source that is new, was retargeted or had
//!   `import_to_fyle` turned on. Where the incumbent resets a watermark so that the next daily
//!   run is full, we ask for the full run at once;
//! - [`Plan::items_turned_off`]: the CATEGORY → Item mappings are deleted (#59).

use std::collections::BTreeMap;

use attrsync_core::attribute::{CUSTOM_PREFIX, DestinationAttributeType, custom_type_name};
use attrsync_proto::v1::{ImportSettings, MappingSetting};

use crate::snapshot::SettingsRow;

/// The Fyle fields that are not custom fields.
pub(crate) const DEFAULT_SOURCES: [&str; 5] = [
    "CATEGORY",
    "PROJECT",
    "COST_CENTER",
    "TAX_GROUP",
    "CORPORATE_CARD",
];

/// Destination fields whose stored setting a request must repeat to keep.
const REPLACED_WHEN_OMITTED: [&str; 4] = ["CLASS", "CUSTOMER", "DEPARTMENT", "TAX_CODE"];

/// The code fields a workspace may choose.
const CODE_FIELDS: [&str; 1] = ["ACCOUNT"];

/// Why a command disables the categories of items (#59).
pub(crate) const REASON_DISABLE_ITEMS: &str = "disable_items";

/// Bounds on what a caller may send: field names and placeholders, list lengths.
const MAX_NAME_CHARS: usize = 255;
const MAX_LIST: usize = 100;

/// Sources whose destination field is fixed, and the fields they may name.
const FIXED_SOURCES: [(&str, &[&str]); 3] = [
    ("CATEGORY", &["ACCOUNT"]),
    ("TAX_GROUP", &["TAX_CODE"]),
    ("CORPORATE_CARD", &["CREDIT_CARD_ACCOUNT", "BANK_ACCOUNT"]),
];

/// Destination fields the other sources (projects, cost centers, custom fields) may name.
const OPEN_DESTINATIONS: [&str; 4] = ["CUSTOMER", "CLASS", "DEPARTMENT", "VENDOR"];

/// The incumbent's refusal, word for word.
pub(crate) const CODE_FIELDS_FIXED: &str = "Cannot change the code fields once they are imported";

/// One stored mapping setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SettingRow {
    pub(crate) source_field: String,
    pub(crate) destination_field: String,
    pub(crate) import_to_fyle: bool,
    pub(crate) is_custom: bool,
    pub(crate) source_placeholder: Option<String>,
}

impl SettingRow {
    pub(crate) fn to_proto(&self) -> MappingSetting {
        MappingSetting {
            source_field: self.source_field.clone(),
            destination_field: self.destination_field.clone(),
            import_to_fyle: self.import_to_fyle,
            is_custom: self.is_custom,
            source_placeholder: self.source_placeholder.clone(),
        }
    }
}

/// An `ImportRequested` command to publish on `imports.commands.v1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ImportCommand {
    pub(crate) source_field: String,
    pub(crate) full: bool,
    pub(crate) reason: &'static str,
}

/// What a settings change does, for [`crate::store`] to carry out in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub(crate) settings: SettingsRow,
    /// The whole new set, ordered by destination field.
    pub(crate) mapping_settings: Vec<SettingRow>,
    /// (source field, its previous destination field).
    pub(crate) retargeted: Vec<(String, String)>,
    pub(crate) items_turned_off: bool,
    pub(crate) imports: Vec<ImportCommand>,
}

/// The custom settings of `plan` that import and are new or changed against `before` (the
/// stored set): each is imported before it is saved (#64).
pub(crate) fn new_custom_imports<'a>(plan: &'a Plan, before: &[SettingRow]) -> Vec<&'a SettingRow> {
    plan.mapping_settings
        .iter()
        .filter(|s| s.is_custom && s.import_to_fyle && !before.contains(s))
        .collect()
}

/// `Cost Code`, `custom:cost code`, `CUSTOM:COST_CODE` → `COST_CODE`.
pub(crate) fn normalise_source_field(field: &str) -> String {
    let field = field.trim();
    let bare = match field.get(..CUSTOM_PREFIX.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(CUSTOM_PREFIX) => {
            field[CUSTOM_PREFIX.len()..].trim()
        }
        _ => field,
    };
    custom_type_name(bare)
}

fn is_default_source(source: &str) -> bool {
    DEFAULT_SOURCES.contains(&source)
}

/// The change `request` and `submitted` ask of a workspace whose settings are `old` and
/// `old_settings`; `categories_imported` says whether a category import has run.
pub(crate) fn plan(
    old: &SettingsRow,
    old_settings: &[SettingRow],
    request: &ImportSettings,
    submitted: &[MappingSetting],
    categories_imported: bool,
) -> Result<Plan, String> {
    check_lists(request, submitted)?;
    let mut settings = old.clone();
    settings.apply_import_settings(request);
    check_code_fields(old, &settings, categories_imported)?;
    let defaults = default_settings();
    let old_settings = if old_settings.is_empty() {
        &defaults[..]
    } else {
        old_settings
    };

    // Keyed by destination field: the incumbent's upsert key.
    let mut next: BTreeMap<String, SettingRow> = old_settings
        .iter()
        .filter(|s| !REPLACED_WHEN_OMITTED.contains(&s.destination_field.as_str()))
        .map(|s| (s.destination_field.clone(), s.clone()))
        .collect();
    let mut named: Vec<SettingRow> = Vec::new();
    for given in submitted {
        let row = validate(given)?;
        if named
            .iter()
            .any(|n| n.destination_field == row.destination_field)
        {
            return Err(format!(
                "mapping_settings: destination field {} is named twice",
                row.destination_field
            ));
        }
        if named.iter().any(|n| n.source_field == row.source_field) {
            return Err(format!(
                "mapping_settings: source field {} is mapped to more than one destination field",
                row.source_field
            ));
        }
        named.push(row);
    }
    // A submitted source replaces what its kept setting said.
    next.retain(|_, kept| !named.iter().any(|n| n.source_field == kept.source_field));
    for row in named {
        next.insert(row.destination_field.clone(), row);
    }
    let mut append = |source: &str, destination: &str, import_to_fyle: bool| {
        if !next.values().any(|s| s.source_field == source) {
            next.insert(
                destination.to_owned(),
                SettingRow {
                    source_field: source.to_owned(),
                    destination_field: destination.to_owned(),
                    import_to_fyle,
                    is_custom: false,
                    source_placeholder: None,
                },
            );
        }
    };
    if settings.import_tax_codes {
        append("TAX_GROUP", "TAX_CODE", true);
    }
    append("CATEGORY", "ACCOUNT", false);
    if !settings.map_fyle_cards_qbo_account
        || settings.corporate_credit_card_expenses_object.is_none()
    {
        next.retain(|_, s| s.source_field != "CORPORATE_CARD");
    }
    let mapping_settings: Vec<SettingRow> = next.into_values().collect();

    let destination_of = |set: &[SettingRow], source: &str| {
        set.iter()
            .find(|s| s.source_field == source)
            .map(|s| s.destination_field.clone())
    };
    let retargeted: Vec<(String, String)> = old_settings
        .iter()
        .filter(|o| {
            destination_of(&mapping_settings, &o.source_field)
                .is_some_and(|d| d != o.destination_field)
        })
        .map(|o| (o.source_field.clone(), o.destination_field.clone()))
        .collect();
    let items_turned_off = old.import_items && !settings.import_items;
    let imports = imports(
        old,
        &settings,
        old_settings,
        &mapping_settings,
        categories_imported,
    );
    Ok(Plan {
        settings,
        mapping_settings,
        retargeted,
        items_turned_off,
        imports,
    })
}

/// What a workspace without stored mapping settings has in effect: auto-mapping's defaults
/// (`automap::DEFAULT_TARGETS`), none of them imported.
fn default_settings() -> Vec<SettingRow> {
    crate::automap::DEFAULT_TARGETS
        .iter()
        .map(|(source, destination)| SettingRow {
            source_field: (*source).to_owned(),
            destination_field: (*destination).to_owned(),
            import_to_fyle: false,
            is_custom: false,
            source_placeholder: None,
        })
        .collect()
}

fn check_code_fields(
    old: &SettingsRow,
    new: &SettingsRow,
    categories_imported: bool,
) -> Result<(), String> {
    if let Some(unknown) = new
        .import_code_fields
        .iter()
        .find(|f| !CODE_FIELDS.contains(&f.as_str()))
    {
        return Err(format!(
            "import_code_fields: `{}` is not a code field (allowed: ACCOUNT)",
            echo(unknown)
        ));
    }
    let removed = old
        .import_code_fields
        .iter()
        .any(|f| !new.import_code_fields.contains(f));
    let added = new
        .import_code_fields
        .iter()
        .any(|f| !old.import_code_fields.contains(f));
    if removed || (added && categories_imported) {
        return Err(format!("import_code_fields: {CODE_FIELDS_FIXED}"));
    }
    Ok(())
}

/// `text` for an error message: at most 64 characters.
fn echo(text: &str) -> String {
    let mut out: String = text.chars().take(64).collect();
    if text.chars().count() > 64 {
        out.push('…');
    }
    out
}

/// A caller's name: not too long, no control characters (a NUL would fail the write).
fn check_name(field: &str, text: &str) -> Result<(), String> {
    if text.chars().count() > MAX_NAME_CHARS {
        return Err(format!("{field}: longer than {MAX_NAME_CHARS} characters"));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("{field}: control characters are not allowed"));
    }
    Ok(())
}

fn validate(given: &MappingSetting) -> Result<SettingRow, String> {
    check_name("mapping_settings.source_field", &given.source_field)?;
    check_name(
        "mapping_settings.destination_field",
        &given.destination_field,
    )?;
    let source_field = normalise_source_field(&given.source_field);
    if source_field.is_empty() {
        return Err("mapping_settings: source_field must not be empty".into());
    }
    if source_field == "EMPLOYEE" {
        return Err(
            "mapping_settings: employees are mapped by employee_field_mapping, not by a mapping setting"
                .into(),
        );
    }
    if source_field == "MERCHANT" {
        return Err(
            "mapping_settings: merchants are imported by import_vendors_as_merchants, not by a mapping setting"
                .into(),
        );
    }
    let destination_field = given.destination_field.trim().to_uppercase();
    if destination_field
        .parse::<DestinationAttributeType>()
        .is_err()
    {
        return Err(format!(
            "mapping_settings: `{}` is not a QBO destination field",
            echo(&given.destination_field)
        ));
    }
    let allowed: &[&str] = FIXED_SOURCES
        .iter()
        .find(|(s, _)| *s == source_field)
        .map_or(&OPEN_DESTINATIONS[..], |(_, d)| d);
    if !allowed.contains(&destination_field.as_str()) {
        return Err(format!(
            "mapping_settings: {} cannot map to {destination_field} (allowed: {})",
            echo(&source_field),
            allowed.join(", ")
        ));
    }
    let source_placeholder = match given.source_placeholder.as_deref().map(str::trim) {
        Some(p) if !p.is_empty() => {
            check_name("mapping_settings.source_placeholder", p)?;
            Some(p.to_owned())
        }
        _ => None,
    };
    Ok(SettingRow {
        is_custom: !is_default_source(&source_field),
        source_field,
        destination_field,
        import_to_fyle: given.import_to_fyle,
        source_placeholder,
    })
}

/// The caller's free-text fields of the import settings (lists, the default card account):
/// bounded, no control characters. `CreateWorkspace` checks them too.
pub(crate) fn check_lists(
    request: &ImportSettings,
    submitted: &[MappingSetting],
) -> Result<(), String> {
    if submitted.len() > MAX_LIST {
        return Err(format!("mapping_settings: more than {MAX_LIST} settings"));
    }
    for (field, list) in [
        ("charts_of_accounts", &request.charts_of_accounts),
        ("import_code_fields", &request.import_code_fields),
    ] {
        if list.len() > MAX_LIST {
            return Err(format!("{field}: more than {MAX_LIST} entries"));
        }
        for entry in list {
            check_name(field, entry)?;
        }
    }
    if let Some(account) = &request.default_ccc_account_id {
        check_name("default_ccc_account_id", account)?;
    }
    Ok(())
}

fn same_set(a: &[String], b: &[String]) -> bool {
    let set = |l: &[String]| {
        l.iter()
            .cloned()
            .collect::<std::collections::BTreeSet<String>>()
    };
    set(a) == set(b)
}

fn imports(
    old: &SettingsRow,
    new: &SettingsRow,
    old_settings: &[SettingRow],
    new_settings: &[SettingRow],
    categories_imported: bool,
) -> Vec<ImportCommand> {
    let mut out = Vec::new();
    let mut full = |source: &str, reason: &'static str| {
        let command = ImportCommand {
            source_field: source.to_owned(),
            full: true,
            reason,
        };
        if !out.contains(&command) {
            out.push(command);
        }
    };
    let turned_on = |before: bool, after: bool| !before && after;
    let categories = new.import_categories || new.import_items;
    if categories
        && (turned_on(old.import_categories, new.import_categories)
            || turned_on(old.import_items, new.import_items)
            || (new.import_categories
                && !same_set(&old.charts_of_accounts, &new.charts_of_accounts))
            || (!categories_imported && old.import_code_fields != new.import_code_fields))
    {
        full("CATEGORY", "settings_changed");
    }
    if old.import_items && !new.import_items {
        full("CATEGORY", REASON_DISABLE_ITEMS);
    }
    if turned_on(old.import_tax_codes, new.import_tax_codes) {
        full("TAX_GROUP", "settings_changed");
    }
    if turned_on(
        old.import_vendors_as_merchants,
        new.import_vendors_as_merchants,
    ) {
        full("MERCHANT", "settings_changed");
    }
    if turned_on(old.import_projects, new.import_projects) {
        full("PROJECT", "settings_changed");
    }
    for setting in new_settings {
        if !setting.import_to_fyle
            || matches!(setting.source_field.as_str(), "CATEGORY" | "CORPORATE_CARD")
        {
            continue;
        }
        let before = old_settings
            .iter()
            .find(|o| o.source_field == setting.source_field);
        let changed = before
            .is_none_or(|o| o.destination_field != setting.destination_field || !o.import_to_fyle);
        if changed {
            full(&setting.source_field, "settings_changed");
        }
    }
    out.sort();
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn setting(source: &str, destination: &str, import_to_fyle: bool) -> MappingSetting {
        MappingSetting {
            source_field: source.into(),
            destination_field: destination.into(),
            import_to_fyle,
            ..Default::default()
        }
    }

    fn row(source: &str, destination: &str, import_to_fyle: bool) -> SettingRow {
        validate(&setting(source, destination, import_to_fyle)).unwrap()
    }

    fn request(old: &SettingsRow) -> ImportSettings {
        old.to_proto().import_settings.unwrap()
    }

    fn sources(plan: &Plan) -> Vec<(String, String, bool)> {
        plan.mapping_settings
            .iter()
            .map(|s| {
                (
                    s.source_field.clone(),
                    s.destination_field.clone(),
                    s.import_to_fyle,
                )
            })
            .collect()
    }

    fn commands(plan: &Plan) -> Vec<(&str, &str)> {
        plan.imports
            .iter()
            .map(|c| (c.source_field.as_str(), c.reason))
            .collect()
    }

    #[test]
    fn custom_source_fields_are_stored_upper_snake_and_marked_custom() {
        let old = SettingsRow::default();
        let p = plan(
            &old,
            &[],
            &request(&old),
            &[
                setting("custom:Cost Code", "class", false),
                setting(" project ", "CUSTOMER", true),
            ],
            false,
        )
        .unwrap();
        let custom = p
            .mapping_settings
            .iter()
            .find(|s| s.destination_field == "CLASS")
            .unwrap();
        assert_eq!(custom.source_field, "COST_CODE");
        assert!(custom.is_custom);
        let project = p
            .mapping_settings
            .iter()
            .find(|s| s.destination_field == "CUSTOMER")
            .unwrap();
        assert_eq!(project.source_field, "PROJECT");
        assert!(!project.is_custom, "the caller's is_custom is not trusted");
    }

    #[test]
    fn category_to_account_is_always_there_and_tax_codes_follow_their_flag() {
        let old = SettingsRow::default();
        let mut new = request(&old);
        new.import_tax_codes = true;
        let p = plan(&old, &[], &new, &[], false).unwrap();
        assert_eq!(
            sources(&p),
            vec![
                ("CATEGORY".into(), "ACCOUNT".into(), false),
                ("TAX_GROUP".into(), "TAX_CODE".into(), true),
            ]
        );
        assert_eq!(commands(&p), vec![("TAX_GROUP", "settings_changed")]);
    }

    #[test]
    fn omitted_class_customer_department_and_tax_code_settings_are_removed_others_kept() {
        let old = SettingsRow::default();
        let stored = [
            row("PROJECT", "CUSTOMER", true),
            row("COST_CENTER", "DEPARTMENT", false),
            row("CATEGORY", "ACCOUNT", false),
            row("COST_CODE", "VENDOR", false),
        ];
        let p = plan(
            &old,
            &stored,
            &request(&old),
            &[setting("COST_CENTER", "DEPARTMENT", false)],
            false,
        )
        .unwrap();
        assert_eq!(
            sources(&p),
            vec![
                ("CATEGORY".into(), "ACCOUNT".into(), false),
                ("COST_CENTER".into(), "DEPARTMENT".into(), false),
                ("COST_CODE".into(), "VENDOR".into(), false),
            ]
        );
        assert!(
            p.retargeted.is_empty(),
            "a removed setting keeps its mappings"
        );
    }

    #[test]
    fn a_source_whose_destination_changes_is_retargeted_and_imported_in_full() {
        let old = SettingsRow::default();
        let stored = [
            row("PROJECT", "CUSTOMER", true),
            row("CATEGORY", "ACCOUNT", false),
        ];
        let p = plan(
            &old,
            &stored,
            &request(&old),
            &[setting("PROJECT", "CLASS", true)],
            false,
        )
        .unwrap();
        assert_eq!(p.retargeted, vec![("PROJECT".into(), "CUSTOMER".into())]);
        assert_eq!(commands(&p), vec![("PROJECT", "settings_changed")]);
        // The same settings again: nothing moves.
        let again = plan(
            &old,
            &p.mapping_settings,
            &request(&old),
            &[setting("PROJECT", "CLASS", true)],
            false,
        )
        .unwrap();
        assert!(again.retargeted.is_empty() && again.imports.is_empty());
    }

    #[test]
    fn a_swap_of_two_destinations_retargets_both() {
        let old = SettingsRow::default();
        let stored = [
            row("PROJECT", "CUSTOMER", false),
            row("COST_CENTER", "CLASS", false),
        ];
        let p = plan(
            &old,
            &stored,
            &request(&old),
            &[
                setting("PROJECT", "CLASS", false),
                setting("COST_CENTER", "CUSTOMER", false),
            ],
            false,
        )
        .unwrap();
        assert_eq!(p.retargeted.len(), 2);
        assert!(
            p.imports.is_empty(),
            "nothing imported: import_to_fyle is off"
        );
    }

    #[test]
    fn category_imports_follow_the_charts_of_accounts_items_and_code_prefix() {
        let old = SettingsRow {
            import_categories: true,
            ..Default::default()
        };
        let mut new = request(&old);
        new.charts_of_accounts = vec!["Expense".into(), "Cost of Goods Sold".into()];
        let p = plan(&old, &[], &new, &[], true).unwrap();
        assert_eq!(commands(&p), vec![("CATEGORY", "settings_changed")]);
        assert!(p.imports[0].full);
        // The same set in another order is no change.
        let reordered = SettingsRow {
            charts_of_accounts: vec!["Cost of Goods Sold".into(), "Expense".into()],
            ..old.clone()
        };
        assert!(
            plan(&reordered, &[], &new, &[], true)
                .unwrap()
                .imports
                .is_empty()
        );

        let mut new = request(&old);
        new.import_items = true;
        let p = plan(&old, &[], &new, &[], true).unwrap();
        assert_eq!(commands(&p), vec![("CATEGORY", "settings_changed")]);

        let mut with_items = old.clone();
        with_items.import_items = true;
        let mut new = request(&with_items);
        new.import_items = false;
        let p = plan(&with_items, &[], &new, &[], true).unwrap();
        assert!(p.items_turned_off);
        assert_eq!(commands(&p), vec![("CATEGORY", "disable_items")]);

        let mut new = request(&old);
        new.import_code_fields = vec!["ACCOUNT".into()];
        let p = plan(&old, &[], &new, &[], false).unwrap();
        assert_eq!(commands(&p), vec![("CATEGORY", "settings_changed")]);
    }

    #[test]
    fn code_fields_cannot_be_removed_nor_added_after_a_category_import() {
        let old = SettingsRow {
            import_code_fields: vec!["ACCOUNT".into()],
            ..Default::default()
        };
        let mut new = request(&old);
        new.import_code_fields = vec![];
        let refused = plan(&old, &[], &new, &[], false).unwrap_err();
        assert!(refused.contains(CODE_FIELDS_FIXED), "{refused}");

        let plain = SettingsRow::default();
        let mut new = request(&plain);
        new.import_code_fields = vec!["ACCOUNT".into()];
        assert!(plan(&plain, &[], &new, &[], true).is_err());
        assert!(plan(&plain, &[], &new, &[], false).is_ok());

        new.import_code_fields = vec!["CUSTOMER".into()];
        assert!(plan(&plain, &[], &new, &[], false).is_err());
    }

    #[test]
    fn invalid_mapping_settings_are_refused_with_the_field_named() {
        let old = SettingsRow::default();
        let cases = [
            vec![setting("", "CLASS", false)],
            vec![setting("PROJECT", "NOT_A_FIELD", false)],
            vec![setting("EMPLOYEE", "VENDOR", false)],
            vec![setting("merchant", "VENDOR", false)],
            vec![
                setting("PROJECT", "CLASS", false),
                setting("COST_CENTER", "class", false),
            ],
            vec![
                setting("PROJECT", "CLASS", false),
                setting("PROJECT", "CUSTOMER", false),
            ],
        ];
        for submitted in cases {
            let refused = plan(&old, &[], &request(&old), &submitted, false).unwrap_err();
            assert!(refused.starts_with("mapping_settings"), "{refused}");
            assert!(refused.chars().count() < 200, "echoes little: {refused}");
        }
    }

    #[test]
    fn free_text_import_settings_are_bounded_and_without_control_characters() {
        let old = SettingsRow::default();
        for bad in [
            ImportSettings {
                default_ccc_account_id: Some("cc\u{0}9".into()),
                ..request(&old)
            },
            ImportSettings {
                default_ccc_account_id: Some("9".repeat(300)),
                ..request(&old)
            },
            ImportSettings {
                charts_of_accounts: vec!["Expense\n".into()],
                ..request(&old)
            },
        ] {
            assert!(plan(&old, &[], &bad, &[], false).is_err(), "{bad:?}");
            assert!(check_lists(&bad, &[]).is_err());
        }
    }

    #[test]
    fn the_card_setting_goes_when_cards_are_not_mapped() {
        let old = SettingsRow {
            corporate_credit_card_expenses_object: Some("CREDIT CARD PURCHASE".into()),
            ..Default::default()
        };
        let submitted = [setting("CORPORATE_CARD", "CREDIT_CARD_ACCOUNT", false)];
        let kept = plan(&old, &[], &request(&old), &submitted, false).unwrap();
        assert!(
            kept.mapping_settings
                .iter()
                .any(|s| s.source_field == "CORPORATE_CARD")
        );
        let mut new = request(&old);
        new.map_fyle_cards_qbo_account = false;
        let dropped = plan(&old, &kept.mapping_settings, &new, &submitted, false).unwrap();
        assert!(
            !dropped
                .mapping_settings
                .iter()
                .any(|s| s.source_field == "CORPORATE_CARD")
        );
        assert!(dropped.retargeted.is_empty());
    }

    #[test]
    fn a_kept_setting_moves_when_its_source_is_submitted_with_another_destination() {
        let old = SettingsRow::default();
        let stored = [
            row("COST_CODE", "VENDOR", false),
            row("CATEGORY", "ACCOUNT", false),
        ];
        let p = plan(
            &old,
            &stored,
            &request(&old),
            &[setting("COST_CODE", "DEPARTMENT", false)],
            false,
        )
        .unwrap();
        assert_eq!(
            sources(&p),
            vec![
                ("CATEGORY".into(), "ACCOUNT".into(), false),
                ("COST_CODE".into(), "DEPARTMENT".into(), false),
            ]
        );
        assert_eq!(p.retargeted, vec![("COST_CODE".into(), "VENDOR".into())]);
    }

    #[test]
    fn the_first_update_is_compared_with_the_defaults_in_effect() {
        let old = SettingsRow::default();
        let p = plan(
            &old,
            &[],
            &request(&old),
            &[setting("PROJECT", "CLASS", false)],
            false,
        )
        .unwrap();
        assert_eq!(p.retargeted, vec![("PROJECT".into(), "CUSTOMER".into())]);
        assert_eq!(
            sources(&p),
            vec![
                ("CATEGORY".into(), "ACCOUNT".into(), false),
                ("PROJECT".into(), "CLASS".into(), false),
            ]
        );
    }

    #[test]
    fn only_new_or_changed_imported_custom_settings_are_imported_before_saving() {
        let old = SettingsRow::default();
        let stored = [
            row("COST_CODE", "DEPARTMENT", true),
            row("CATEGORY", "ACCOUNT", false),
        ];
        let submitted = [
            setting("COST_CODE", "DEPARTMENT", true),
            setting("REGION", "CLASS", true),
            setting("WORK_ORDER", "CUSTOMER", false),
        ];
        let p = plan(&old, &stored, &request(&old), &submitted, false).unwrap();
        let new: Vec<&str> = new_custom_imports(&p, &stored)
            .iter()
            .map(|s| s.source_field.as_str())
            .collect();
        assert_eq!(
            new,
            ["REGION"],
            "unchanged, not imported and default sources are not"
        );
    }

    #[test]
    fn a_new_imported_custom_field_is_imported_in_full() {
        let old = SettingsRow::default();
        let p = plan(
            &old,
            &[],
            &request(&old),
            &[setting("Cost Code", "DEPARTMENT", true)],
            false,
        )
        .unwrap();
        assert_eq!(commands(&p), vec![("COST_CODE", "settings_changed")]);
    }
}
