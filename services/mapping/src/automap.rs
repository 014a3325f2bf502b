//! Auto-mapping rules: which Fyle value maps to which QBO value. Pure — no database, no clock —
//! so every rule is a unit test; [`crate::mappings`] is the thin I/O around them.
//!
//! **What maps to what** ([`Rules::from_settings`]). A workspace whose `mapping_settings` hold
//! rows maps exactly those (source field → destination field), plus what the incumbent always
//! appends: `CATEGORY → ACCOUNT`, and `TAX_GROUP → TAX_CODE` when `import_tax_codes` is on —
//! plus `PROJECT → CUSTOMER` when the legacy `import_projects` flag is on and no PROJECT row
//! says otherwise, since import-to-fyle then imports customers as projects. A
//! workspace without mapping settings uses the incumbent's defaults: `CATEGORY → ACCOUNT`,
//! `PROJECT → CUSTOMER`, `COST_CENTER → CLASS`, `TAX_GROUP → TAX_CODE`. A custom field's setting
//! (`COST_CODE`) applies to its Fyle type (`CUSTOM:COST_CODE`) as well. Items (`ACCOUNT` rows
//! with display name `Item`) take part only when `import_items` is on. Employees map when
//! `auto_map_employees` is set: to QBO `EMPLOYEE` or `VENDOR` per `employee_field_mapping`;
//! and, when card expenses are not exported as bills, to the workspace's default credit card
//! account if they have no card account yet ([`default_card_account`]).
//!
//! **How values match** ([`source_key`], [`destination_keys`]):
//! - by value, **case-insensitively by default** (`auto_map_case_insensitive`; the incumbent's
//!   SQL match is case-sensitive, #54); nothing else is normalised (no trimming), as in the
//!   incumbent;
//! - when the workspace imports codes for the destination type (`import_code_fields`, #39), a
//!   destination with a code also matches as `"{code}: {name}"` — the name the import gave the
//!   Fyle value — as well as by its plain name;
//! - employees (#65) by EMAIL (Fyle value ↔ QBO `detail.email`), NAME (Fyle
//!   `detail.full_name` ↔ QBO value) or EMPLOYEE_CODE (Fyle `detail.employee_code` ↔ QBO
//!   value), always case-insensitively with `*` removed and surrounding spaces trimmed.
//!
//! Only active values on both sides take part.
//!
//! **Ambiguity** ([`choose`]): a source maps only when exactly one destination matches it. When
//! several match, those matching in exact case are preferred; if that still leaves more than
//! one (or none), nothing is mapped and the caller counts it
//! (`mapping_auto_map_ambiguous_total`) and logs it — a wrong mapping silently exports to the
//! wrong account, a missing one is reported as a mapping error an operator can act on. Many
//! sources may map to one destination (the relation is many-to-one).

use std::collections::HashSet;

use serde_json::Value;

/// The Fyle attribute type of employees.
pub const EMPLOYEE: &str = "EMPLOYEE";
/// The prefix fyle-sync gives custom field types (`attrsync_core::attribute::CUSTOM_PREFIX`).
const CUSTOM_PREFIX: &str = attrsync_core::attribute::CUSTOM_PREFIX;

/// How employees are matched (`ImportSettings.auto_map_employees`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmployeeKey {
    Email,
    Name,
    EmployeeCode,
}

impl EmployeeKey {
    /// The stored setting (`EMAIL`, `NAME`, `EMPLOYEE_CODE`); anything else is off.
    pub fn parse(setting: Option<&str>) -> Option<Self> {
        match setting? {
            "EMAIL" => Some(Self::Email),
            "NAME" => Some(Self::Name),
            "EMPLOYEE_CODE" => Some(Self::EmployeeCode),
            _ => None,
        }
    }
}

/// The employee rule in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmployeeRule {
    pub key: EmployeeKey,
    /// `EMPLOYEE` or `VENDOR`.
    pub destination_type: String,
}

/// The workspace settings auto-mapping reads (mapping's own `workspace_settings`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsInput {
    pub auto_map_case_insensitive: bool,
    pub import_code_fields: Vec<String>,
    pub auto_map_employees: Option<String>,
    pub employee_field_mapping: String,
    pub import_tax_codes: bool,
    pub import_items: bool,
    /// The legacy flag: import-to-fyle imports QBO customers as Fyle projects.
    pub import_projects: bool,
    pub corporate_credit_card_expenses_object: Option<String>,
    pub default_ccc_account_id: Option<String>,
}

/// The rules of one workspace.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// (source type, destination type), at most one destination type per source type.
    pub targets: Vec<(String, String)>,
    pub case_insensitive: bool,
    /// Destination types whose Fyle values carry the code (`import_code_fields`).
    pub code_prefixed: Vec<String>,
    pub employees: Option<EmployeeRule>,
    pub include_items: bool,
    /// The QBO credit card account employees without one map to ([`default_card_account`]).
    pub default_card_account: Option<String>,
}

/// The incumbent's defaults for a workspace without mapping settings.
pub const DEFAULT_TARGETS: [(&str, &str); 4] = [
    ("CATEGORY", "ACCOUNT"),
    ("PROJECT", "CUSTOMER"),
    ("COST_CENTER", "CLASS"),
    ("TAX_GROUP", "TAX_CODE"),
];

impl Rules {
    /// The rules from the workspace's settings and its mapping settings
    /// (`(source_field, destination_field)` rows); see the module doc.
    pub fn from_settings(settings: &SettingsInput, mapping_settings: &[(String, String)]) -> Self {
        let mut targets: Vec<(String, String)> = Vec::new();
        let mut add = |source: &str, destination: &str| {
            if !targets.iter().any(|(s, _)| s == source) {
                targets.push((source.to_owned(), destination.to_owned()));
            }
        };
        if mapping_settings.is_empty() {
            for (source, destination) in DEFAULT_TARGETS {
                add(source, destination);
            }
        } else {
            for (source, destination) in mapping_settings {
                if source != EMPLOYEE {
                    add(source, destination);
                }
            }
            add("CATEGORY", "ACCOUNT");
            if settings.import_projects {
                add("PROJECT", "CUSTOMER");
            }
            if settings.import_tax_codes {
                add("TAX_GROUP", "TAX_CODE");
            }
        }
        let employees =
            EmployeeKey::parse(settings.auto_map_employees.as_deref()).map(|key| EmployeeRule {
                key,
                destination_type: if settings.employee_field_mapping == "VENDOR" {
                    "VENDOR"
                } else {
                    "EMPLOYEE"
                }
                .to_owned(),
            });
        Self {
            default_card_account: default_card_account(settings),
            targets,
            case_insensitive: settings.auto_map_case_insensitive,
            code_prefixed: settings.import_code_fields.clone(),
            employees,
            include_items: settings.import_items,
        }
    }

    /// The destination type a source type auto-maps to, if any.
    pub fn destination_for(&self, source_type: &str) -> Option<&str> {
        if source_type == EMPLOYEE {
            return self.employees.as_ref().map(|e| e.destination_type.as_str());
        }
        let bare = source_type.strip_prefix(CUSTOM_PREFIX);
        self.targets
            .iter()
            .find(|(s, _)| s == source_type || Some(s.as_str()) == bare)
            .map(|(_, d)| d.as_str())
    }

    /// The source types that auto-map to `destination_type` (custom settings name both the
    /// bare and the `CUSTOM:` form, since a setting may be stored in either).
    pub fn sources_for(&self, destination_type: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (source, destination) in &self.targets {
            if destination == destination_type {
                out.push(source.clone());
                if !DEFAULT_TARGETS.iter().any(|(s, _)| s == source) && !source.contains(':') {
                    out.push(format!("{CUSTOM_PREFIX}{source}"));
                }
            }
        }
        if let Some(rule) = &self.employees
            && rule.destination_type == destination_type
        {
            out.push(EMPLOYEE.to_owned());
        }
        out
    }

    /// Whether a destination row may be an auto-mapping target at all.
    pub fn destination_eligible(&self, destination: &Destination<'_>) -> bool {
        destination.active && (self.include_items || destination.display_name != "Item")
    }
}

/// The incumbent's default card account (§2.4, `async_auto_map_ccc_account`): when employees
/// are auto-mapped and corporate card expenses are exported as something other than bills,
/// every employee without a card account maps to `default_ccc_account_id`.
pub fn default_card_account(settings: &SettingsInput) -> Option<String> {
    let cards_exported = settings
        .corporate_credit_card_expenses_object
        .as_deref()
        .is_some_and(|o| !o.eq_ignore_ascii_case("BILL"));
    (settings.auto_map_employees.is_some() && cards_exported)
        .then(|| settings.default_ccc_account_id.clone())
        .flatten()
}

/// A Fyle value as auto-mapping sees it.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub attribute_type: &'a str,
    pub source_id: &'a str,
    pub value: &'a str,
    pub active: bool,
    pub detail: Option<&'a Value>,
}

/// A QBO value as auto-mapping sees it.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub attribute_type: &'a str,
    pub display_name: &'a str,
    pub destination_id: &'a str,
    pub value: &'a str,
    pub code: Option<&'a str>,
    pub active: bool,
    pub detail: Option<&'a Value>,
}

/// A value in the two forms it is compared in: folded (what must be equal to match) and
/// exact (the tie-breaker).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MatchKey {
    pub folded: String,
    pub exact: String,
}

fn detail_str<'a>(detail: Option<&'a Value>, key: &str) -> Option<&'a str> {
    detail?.get(key)?.as_str()
}

/// `*` removed, surrounding spaces trimmed, lower case (#65).
pub fn fold_employee(value: &str) -> String {
    value.replace('*', "").trim_matches(' ').to_lowercase()
}

impl Rules {
    fn key(&self, value: &str) -> MatchKey {
        MatchKey {
            folded: if self.case_insensitive {
                value.to_lowercase()
            } else {
                value.to_owned()
            },
            exact: value.to_owned(),
        }
    }

    fn employee_key(value: &str) -> MatchKey {
        let exact = value.replace('*', "").trim_matches(' ').to_owned();
        MatchKey {
            folded: exact.to_lowercase(),
            exact,
        }
    }
}

/// The key a source is matched by, or `None` when it cannot be auto-mapped (no target for its
/// type, inactive, or no value under the employee rule's key).
pub fn source_key(rules: &Rules, source: &Source<'_>) -> Option<MatchKey> {
    if !source.active {
        return None;
    }
    rules.destination_for(source.attribute_type)?;
    if source.attribute_type == EMPLOYEE {
        let rule = rules.employees.as_ref()?;
        let raw = match rule.key {
            EmployeeKey::Email => Some(source.value),
            EmployeeKey::Name => detail_str(source.detail, "full_name"),
            EmployeeKey::EmployeeCode => detail_str(source.detail, "employee_code"),
        }?;
        let key = Rules::employee_key(raw);
        return (!key.folded.is_empty()).then_some(key);
    }
    (!source.value.is_empty()).then(|| rules.key(source.value))
}

/// The keys a destination matches under, for sources of `source_type`.
pub fn destination_keys(
    rules: &Rules,
    source_type: &str,
    destination: &Destination<'_>,
) -> Vec<MatchKey> {
    if source_type == EMPLOYEE {
        let Some(rule) = &rules.employees else {
            return Vec::new();
        };
        let raw = match rule.key {
            EmployeeKey::Email => detail_str(destination.detail, "email"),
            EmployeeKey::Name | EmployeeKey::EmployeeCode => Some(destination.value),
        };
        return raw
            .map(Rules::employee_key)
            .filter(|k| !k.folded.is_empty())
            .into_iter()
            .collect();
    }
    let mut keys = vec![rules.key(destination.value)];
    if rules
        .code_prefixed
        .iter()
        .any(|t| t.eq_ignore_ascii_case(destination.attribute_type))
        && let Some(code) = destination.code.filter(|c| !c.is_empty())
    {
        keys.push(rules.key(&format!("{code}: {}", destination.value)));
    }
    keys
}

/// What auto-mapping does for one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Map to the candidate at this index.
    Map(usize),
    /// Nothing matches.
    NoMatch,
    /// This many distinct destinations match equally well: map nothing.
    Ambiguous(usize),
}

/// Chooses the destination for `source` among `candidates` (any superset of the matching
/// destinations of its target type; see the module doc for the rule).
pub fn choose(rules: &Rules, source: &Source<'_>, candidates: &[Destination<'_>]) -> Decision {
    let Some(key) = source_key(rules, source) else {
        return Decision::NoMatch;
    };
    let Some(target) = rules.destination_for(source.attribute_type) else {
        return Decision::NoMatch;
    };
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut matching: Vec<(usize, bool)> = Vec::new();
    for (i, d) in candidates.iter().enumerate() {
        if d.attribute_type != target || !rules.destination_eligible(d) {
            continue;
        }
        let keys = destination_keys(rules, source.attribute_type, d);
        if !keys.iter().any(|k| k.folded == key.folded) {
            continue;
        }
        if !seen.insert((d.display_name, d.destination_id)) {
            continue;
        }
        let exact = keys.iter().any(|k| k.exact == key.exact);
        matching.push((i, exact));
    }
    match matching.as_slice() {
        [] => Decision::NoMatch,
        [(i, _)] => Decision::Map(*i),
        several => {
            let exact: Vec<usize> = several
                .iter()
                .filter(|(_, e)| *e)
                .map(|(i, _)| *i)
                .collect();
            match exact.as_slice() {
                [i] => Decision::Map(*i),
                _ => Decision::Ambiguous(several.len()),
            }
        }
    }
}

/// The lower-cased strings a database pre-filter may compare `lower(…)` against to find the
/// destinations that could match `source` (a superset; [`choose`] decides).
pub fn prefilter_key(rules: &Rules, source: &Source<'_>) -> Option<String> {
    source_key(rules, source).map(|k| k.folded.to_lowercase())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn settings() -> SettingsInput {
        SettingsInput {
            auto_map_case_insensitive: true,
            employee_field_mapping: "EMPLOYEE".into(),
            ..Default::default()
        }
    }

    fn category(value: &str) -> Source<'_> {
        Source {
            attribute_type: "CATEGORY",
            source_id: "c1",
            value,
            active: true,
            detail: None,
        }
    }

    fn account<'a>(id: &'a str, value: &'a str) -> Destination<'a> {
        Destination {
            attribute_type: "ACCOUNT",
            display_name: "Account",
            destination_id: id,
            value,
            code: None,
            active: true,
            detail: None,
        }
    }

    #[test]
    fn the_default_card_account_needs_employee_auto_mapping_and_cards_not_exported_as_bills() {
        let base = SettingsInput {
            auto_map_employees: Some("EMAIL".into()),
            corporate_credit_card_expenses_object: Some("CREDIT CARD PURCHASE".into()),
            default_ccc_account_id: Some("41".into()),
            ..Default::default()
        };
        assert_eq!(default_card_account(&base), Some("41".into()));
        for off in [
            SettingsInput {
                auto_map_employees: None,
                ..base.clone()
            },
            SettingsInput {
                corporate_credit_card_expenses_object: Some("BILL".into()),
                ..base.clone()
            },
            SettingsInput {
                corporate_credit_card_expenses_object: None,
                ..base.clone()
            },
            SettingsInput {
                default_ccc_account_id: None,
                ..base.clone()
            },
        ] {
            assert_eq!(default_card_account(&off), None, "{off:?}");
        }
    }

    #[test]
    fn defaults_are_the_incumbents_without_mapping_settings() {
        let rules = Rules::from_settings(&settings(), &[]);
        assert_eq!(rules.destination_for("CATEGORY"), Some("ACCOUNT"));
        assert_eq!(rules.destination_for("PROJECT"), Some("CUSTOMER"));
        assert_eq!(rules.destination_for("COST_CENTER"), Some("CLASS"));
        assert_eq!(rules.destination_for("TAX_GROUP"), Some("TAX_CODE"));
        assert_eq!(rules.destination_for("MERCHANT"), None);
        assert_eq!(rules.destination_for("EMPLOYEE"), None, "off by default");
    }

    #[test]
    fn mapping_settings_replace_the_defaults_but_category_to_account_stays() {
        let rules = Rules::from_settings(
            &settings(),
            &[
                ("PROJECT".into(), "CLASS".into()),
                ("COST_CODE".into(), "DEPARTMENT".into()),
            ],
        );
        assert_eq!(rules.destination_for("PROJECT"), Some("CLASS"));
        assert_eq!(rules.destination_for("COST_CENTER"), None);
        assert_eq!(rules.destination_for("CATEGORY"), Some("ACCOUNT"));
        assert_eq!(
            rules.destination_for("TAX_GROUP"),
            None,
            "import_tax_codes off"
        );
        assert_eq!(
            rules.destination_for("CUSTOM:COST_CODE"),
            Some("DEPARTMENT")
        );
        assert_eq!(
            rules.sources_for("DEPARTMENT"),
            vec!["COST_CODE".to_owned(), "CUSTOM:COST_CODE".to_owned()]
        );
    }

    #[test]
    fn projects_imported_by_the_legacy_flag_map_to_customers_unless_a_setting_says_otherwise() {
        let legacy = SettingsInput {
            import_projects: true,
            ..settings()
        };
        let category_only = [("CATEGORY".to_owned(), "ACCOUNT".to_owned())];
        let rules = Rules::from_settings(&legacy, &category_only);
        assert_eq!(rules.destination_for("PROJECT"), Some("CUSTOMER"));
        assert_eq!(
            Rules::from_settings(&settings(), &category_only).destination_for("PROJECT"),
            None,
            "flag off: a mapping setting decides"
        );
        let to_class = [("PROJECT".to_owned(), "CLASS".to_owned())];
        assert_eq!(
            Rules::from_settings(&legacy, &to_class).destination_for("PROJECT"),
            Some("CLASS")
        );
    }

    #[test]
    fn case_insensitive_by_default_and_case_sensitive_when_asked() {
        let rules = Rules::from_settings(&settings(), &[]);
        let accounts = [account("7", "TRAVEL")];
        assert_eq!(
            choose(&rules, &category("Travel"), &accounts),
            Decision::Map(0)
        );
        let strict = Rules::from_settings(
            &SettingsInput {
                auto_map_case_insensitive: false,
                ..settings()
            },
            &[],
        );
        assert_eq!(
            choose(&strict, &category("Travel"), &accounts),
            Decision::NoMatch
        );
        assert_eq!(
            choose(&strict, &category("TRAVEL"), &accounts),
            Decision::Map(0)
        );
    }

    #[test]
    fn two_destinations_matching_equally_map_nothing() {
        let rules = Rules::from_settings(&settings(), &[]);
        let accounts = [account("7", "travel"), account("8", "TRAVEL")];
        assert_eq!(
            choose(&rules, &category("Travel"), &accounts),
            Decision::Ambiguous(2)
        );
        // An exact-case match breaks the tie.
        let accounts = [account("7", "travel"), account("8", "Travel")];
        assert_eq!(
            choose(&rules, &category("Travel"), &accounts),
            Decision::Map(1)
        );
        // The same destination twice in the candidates is one destination.
        let accounts = [account("7", "travel"), account("7", "travel")];
        assert_eq!(
            choose(&rules, &category("Travel"), &accounts),
            Decision::Map(0)
        );
    }

    #[test]
    fn inactive_values_and_items_without_import_items_take_no_part() {
        let rules = Rules::from_settings(&settings(), &[]);
        let mut inactive = account("7", "Travel");
        inactive.active = false;
        assert_eq!(
            choose(&rules, &category("Travel"), &[inactive]),
            Decision::NoMatch
        );
        let mut source = category("Travel");
        source.active = false;
        assert_eq!(
            choose(&rules, &source, &[account("7", "Travel")]),
            Decision::NoMatch
        );
        let mut item = account("7", "Travel");
        item.display_name = "Item";
        assert_eq!(
            choose(&rules, &category("Travel"), &[item]),
            Decision::NoMatch
        );
        let with_items = Rules::from_settings(
            &SettingsInput {
                import_items: true,
                ..settings()
            },
            &[],
        );
        assert_eq!(
            choose(&with_items, &category("Travel"), &[item]),
            Decision::Map(0)
        );
    }

    #[test]
    fn code_prefixed_values_match_when_the_workspace_imports_codes() {
        let mut with_code = account("7", "Travel");
        with_code.code = Some("4100");
        let rules = Rules::from_settings(&settings(), &[]);
        assert_eq!(
            choose(&rules, &category("4100: Travel"), &[with_code]),
            Decision::NoMatch,
            "codes not in use"
        );
        let coded = Rules::from_settings(
            &SettingsInput {
                import_code_fields: vec!["ACCOUNT".into()],
                ..settings()
            },
            &[],
        );
        assert_eq!(
            choose(&coded, &category("4100: travel"), &[with_code]),
            Decision::Map(0)
        );
        assert_eq!(
            choose(&coded, &category("Travel"), &[with_code]),
            Decision::Map(0),
            "the plain name still matches"
        );
    }

    fn employee<'a>(email: &'a str, detail: &'a Value) -> Source<'a> {
        Source {
            attribute_type: "EMPLOYEE",
            source_id: "ou1",
            value: email,
            active: true,
            detail: Some(detail),
        }
    }

    fn vendor<'a>(id: &'a str, value: &'a str, detail: &'a Value) -> Destination<'a> {
        Destination {
            attribute_type: "VENDOR",
            display_name: "vendor",
            destination_id: id,
            value,
            code: None,
            active: true,
            detail: Some(detail),
        }
    }

    #[test]
    fn employees_by_email_name_or_code_with_stars_stripped_case_insensitively() {
        let by = |key: &str| {
            Rules::from_settings(
                &SettingsInput {
                    auto_map_employees: Some(key.into()),
                    employee_field_mapping: "VENDOR".into(),
                    // Employees fold case whatever the workspace's setting (#65).
                    auto_map_case_insensitive: false,
                    ..settings()
                },
                &[],
            )
        };
        let fyle = json!({"full_name": "Ashwin T", "employee_code": "E84122"});
        let source = employee("Ashwin.T@fyle.in", &fyle);
        let qbo = json!({"email": "*ashwin.t@FYLE.in"});
        let v = [vendor("30", "ashwin t*", &qbo)];
        assert_eq!(choose(&by("EMAIL"), &source, &v), Decision::Map(0));
        assert_eq!(choose(&by("NAME"), &source, &v), Decision::Map(0));
        assert_eq!(choose(&by("EMPLOYEE_CODE"), &source, &v), Decision::NoMatch);
        let coded = [vendor("31", "e84122", &qbo)];
        assert_eq!(
            choose(&by("EMPLOYEE_CODE"), &source, &coded),
            Decision::Map(0)
        );
        // Vendors are not candidates when employees map to QBO employees.
        let to_employees = Rules::from_settings(
            &SettingsInput {
                auto_map_employees: Some("EMAIL".into()),
                ..settings()
            },
            &[],
        );
        assert_eq!(choose(&to_employees, &source, &v), Decision::NoMatch);
        assert_eq!(
            to_employees.sources_for("EMPLOYEE"),
            vec!["EMPLOYEE".to_owned()]
        );
    }

    #[test]
    fn an_employee_without_the_key_is_not_mapped() {
        let rules = Rules::from_settings(
            &SettingsInput {
                auto_map_employees: Some("EMPLOYEE_CODE".into()),
                ..settings()
            },
            &[],
        );
        let fyle = json!({"full_name": "Ashwin T", "employee_code": null});
        let qbo = json!({});
        let e = Destination {
            attribute_type: "EMPLOYEE",
            ..vendor("1", "", &qbo)
        };
        assert_eq!(
            choose(&rules, &employee("a@b.c", &fyle), &[e]),
            Decision::NoMatch
        );
    }
}
