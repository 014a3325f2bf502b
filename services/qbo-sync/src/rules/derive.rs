//! Derivation: what one QBO entity means for the sync — zero, one or two destination attributes.
//!
//! [`derive()`](fn@derive) takes an entity exactly as QBO's JSON API returns it (a query row, a
//! read by id, a CDC row) and the workspace's settings, and returns the drafts to store or why
//! there are none. Full pulls, incremental pulls and webhook fetches all call it, so they cannot
//! disagree.
//!
//! # Rules, by entity (incumbent §2.2)
//!
//! | entity | rows | value | code | detail |
//! |---|---|---|---|---|
//! | Account, `AccountType` in [`WorkspaceRules::charts_of_accounts`] | `ACCOUNT` / `Account` | `FullyQualifiedName` (V2) or `Name` (V1) | `AcctNum`, whitespace collapsed | `{fully_qualified_name, account_type, detail_type}` |
//! | Account, `Credit Card` | `CREDIT_CARD_ACCOUNT` | same | same | `{fully_qualified_name, account_type}` |
//! | Account, `Bank` or `Other Current Liability` | `BANK_ACCOUNT` | same | same | same |
//! | Account, `Accounts Payable` | `ACCOUNTS_PAYABLE` | same | same | same |
//! | Item, `Type` not `Category`, only with `import_items` | `ACCOUNT` / `Item` | `FullyQualifiedName`, else `Name` | – | `null` |
//! | Vendor | `VENDOR` | `DisplayName` | – | `{email, currency}` |
//! | Customer | `CUSTOMER` | `FullyQualifiedName`, else `DisplayName` | – | `null` |
//! | Class, Department | `CLASS`, `DEPARTMENT` | `FullyQualifiedName`, else `Name` | – | `null` |
//! | Employee | `EMPLOYEE` | `DisplayName` | – | `{email}` |
//! | TaxCode with purchase rates | `TAX_CODE` | `"{Name} @{rate}%"` ([`super::tax`]) | – | `{tax_rate, tax_refs}` |
//!
//! `Other Current Liability` is both a chart type and a bank type: such an account yields **two**
//! rows, `ACCOUNT` and `BANK_ACCOUNT`, as the incumbent's code does (its chart test and its
//! bank test are separate `if`s) — hence [`Derived::Attributes`] holds a `Vec`. The default
//! [`WorkspaceRules::charts_of_accounts`] is the incumbent's 13 `CHARTS_OF_ACCOUNTS` types: the
//! incumbent stores every one of them and filters by the workspace's own `charts_of_accounts`
//! setting (default `['Expense']`) only when importing to Fyle (incumbent §2.3). Pass that
//! setting here only if stored rows should follow it too.
//!
//! # Where we match the incumbent
//! - `" (deleted)"` removed from inactive names, then whitespace trimmed (#32).
//! - Blank values are skipped; codes are `AcctNum` with whitespace collapsed.
//! - Tax codes without purchase rates are skipped; items of `Type = Category` are skipped.
//!
//! # Where we deliberately do better
//! - **`active` is QBO's `Active` for every type.** The incumbent hard-codes `true` for
//!   `ACCOUNT` rows, employees and tax codes in its active pass and relies on a separate
//!   inactive pass — which a webhook-driven fetch of one entity does not have.
//! - **Inactive accounts keep their type.** The incumbent's inactive pass turns *every* inactive
//!   account into an `ACCOUNT` row, so a deactivated credit-card account stays active as a
//!   `CREDIT_CARD_ACCOUNT` forever; here one rule serves active and inactive accounts alike.
//!   Likewise `detail_type` is kept on inactive `ACCOUNT` rows (the incumbent drops it), so a
//!   deactivation changes only `active`.
//! - **One naming rule for customers**: `FullyQualifiedName`, falling back to `DisplayName`, for
//!   active and inactive ones alike. The incumbent names active customers by
//!   `FullyQualifiedName` and inactive ones by `DisplayName`, so a sub-customer
//!   (`Freeman Sporting Goods:0969 Ocean View Road`) was "renamed" to its short name on
//!   deactivation and Fyle's project of the long name was never disabled.
//! - **Codes on every account row**, not only on `ACCOUNT`: it is the same QBO account and the
//!   same `AcctNum`.
//! - **Items only when `import_items` is on.** The incumbent stores items always, yet
//!   deactivates them when `import_items` is turned off (#59) — and its next pull revives them.
//!   Here items are skipped with [`SkipReason::NotImportedType`], which retires stored ones.
//! - **Unicode is kept.** The incumbent passes account and customer names through `unidecode`
//!   (`"Café"` → `"Cafe"`, `"東京"` → `"Dong Jing"`): Fyle stores UTF-8 names,
//!   transliteration makes the Fyle name differ from the QBO one users know, and it can fold two
//!   distinct QBO names into one (`"Müller"`, `"Muller"`), which case-insensitive
//!   de-duplication downstream then drops. A workspace migrated from the incumbent has Fyle
//!   names in ASCII; matching them is import-to-fyle's concern.
//! - **Values longer than 255 characters are kept whole** (see
//!   [`FYLE_NAME_MAX_CHARS`](super::FYLE_NAME_MAX_CHARS)); the incumbent's `char(255)` column
//!   fails the whole batch on one.
//! - **CDC tombstones** (`"status": "Deleted"`) retire the entity's rows
//!   ([`SkipReason::DeletedInQbo`]).
//!
//! # Failure policy
//! Derivation never fails: an entity it cannot read is [`Derived::Skipped`] with
//! [`SkipReason::Malformed`] naming the property, and nothing is written for it. Whether a skip
//! also retires rows stored earlier for the same id is [`SkipReason::retires_existing`]: only
//! for reasons that say the entity no longer belongs (type not imported, deleted), never for
//! reasons that may be ours or transient (malformed, missing rate) — those fail safe, keeping
//! what is stored.

use serde_json::{Value, json};

use super::{
    AttributeType, DestinationDraft, SyncEntity,
    draft::display_name,
    fields::{Entity, Malformed, clean_name, collapse_code},
    tax::{TaxOutcome, TaxRateLookup, rate_tax_code, tax_code_value},
};

#[cfg(test)]
mod tests;

/// The incumbent's `CHARTS_OF_ACCOUNTS`: the 13 `AccountType`s stored as `ACCOUNT` rows
/// (reference §3.4).
pub const CHARTS_OF_ACCOUNTS: [&str; 13] = [
    "Expense",
    "Other Expense",
    "Fixed Asset",
    "Cost of Goods Sold",
    "Current Liability",
    "Equity",
    "Other Current Asset",
    "Other Current Liability",
    "Long Term Liability",
    "Current Asset",
    "Income",
    "Other Income",
    "Other Asset",
];

/// Which account name becomes an `ACCOUNT` value (incumbent `category_sync_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CategorySyncVersion {
    /// `Name` (the leaf: `Fuel`).
    V1,
    /// `FullyQualifiedName` (the path: `Automobile:Fuel`); the incumbent's default.
    #[default]
    V2,
}

/// The workspace settings derivation depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRules {
    /// `AccountType`s stored as `ACCOUNT` rows; default [`CHARTS_OF_ACCOUNTS`].
    pub charts_of_accounts: Vec<String>,
    pub category_sync_version: CategorySyncVersion,
    /// Whether items are synced (as `ACCOUNT` / `Item`).
    pub import_items: bool,
}

impl Default for WorkspaceRules {
    fn default() -> Self {
        Self {
            charts_of_accounts: CHARTS_OF_ACCOUNTS.iter().map(|t| (*t).to_owned()).collect(),
            category_sync_version: CategorySyncVersion::default(),
            import_items: false,
        }
    }
}

/// What a QBO entity amounts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Derived {
    /// One or more rows (two only for `Other Current Liability` accounts); never empty.
    Attributes(Vec<DestinationDraft>),
    Skipped(SkipReason),
}

impl Derived {
    /// The drafts, empty when skipped.
    pub fn into_drafts(self) -> Vec<DestinationDraft> {
        match self {
            Self::Attributes(drafts) => drafts,
            Self::Skipped(_) => Vec::new(),
        }
    }
}

/// Why an entity yields no attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// An `AccountType` outside the charts and not a card, bank or payable account (e.g.
    /// `Accounts Receivable`), or an item while `import_items` is off.
    NotImportedType,
    /// An item of `Type = Category` (a grouping, not something to book against).
    ItemCategory,
    /// The name is empty or whitespace (after `" (deleted)"` removal).
    BlankValue,
    /// A tax code with no purchase rates (e.g. US `TAX`/`NON`).
    NoPurchaseTaxRates,
    /// A purchase rate the caller's lookup does not have.
    MissingTaxRate { tax_rate_id: String },
    /// Not an entity that yields attributes (`TaxRate`, `Bill`, `Invoice`, …).
    UnknownEntity,
    /// A CDC tombstone: `"status": "Deleted"`, only `Id` and `MetaData` left.
    DeletedInQbo,
    /// A property that is missing or of the wrong type, named by its path.
    Malformed { field: &'static str },
}

impl SkipReason {
    /// Whether rows stored earlier for the same entity id should be deactivated: the entity
    /// exists but no longer belongs, or is gone. False where the skip may be transient or ours
    /// (missing rate, malformed, blank): then what is stored stays as it is.
    pub fn retires_existing(&self) -> bool {
        match self {
            Self::NotImportedType
            | Self::ItemCategory
            | Self::NoPurchaseTaxRates
            | Self::DeletedInQbo => true,
            Self::BlankValue
            | Self::MissingTaxRate { .. }
            | Self::UnknownEntity
            | Self::Malformed { .. } => false,
        }
    }

    /// A short stable label (metrics, logs).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NotImportedType => "not_imported_type",
            Self::ItemCategory => "item_category",
            Self::BlankValue => "blank_value",
            Self::NoPurchaseTaxRates => "no_purchase_tax_rates",
            Self::MissingTaxRate { .. } => "missing_tax_rate",
            Self::UnknownEntity => "unknown_entity",
            Self::DeletedInQbo => "deleted_in_qbo",
            Self::Malformed { .. } => "malformed",
        }
    }
}

impl From<Malformed> for SkipReason {
    fn from(Malformed(field): Malformed) -> Self {
        Self::Malformed { field }
    }
}

/// One kind of row an entity can fill: `(attribute_type, display_name)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    pub attribute_type: AttributeType,
    pub display_name: &'static str,
}

const fn slot(attribute_type: AttributeType, display_name: &'static str) -> Slot {
    Slot {
        attribute_type,
        display_name,
    }
}

const ACCOUNT_SLOTS: [Slot; 4] = [
    slot(AttributeType::Account, display_name::ACCOUNT),
    slot(
        AttributeType::CreditCardAccount,
        display_name::CREDIT_CARD_ACCOUNT,
    ),
    slot(AttributeType::BankAccount, display_name::BANK_ACCOUNT),
    slot(
        AttributeType::AccountsPayable,
        display_name::ACCOUNTS_PAYABLE,
    ),
];

/// Every kind of row `entity` can yield. Accounts can fill four (their `AccountType` can be
/// changed in QBO); every other entity one.
pub fn slots(entity: SyncEntity) -> &'static [Slot] {
    const ITEM: [Slot; 1] = [slot(AttributeType::Account, display_name::ITEM)];
    const VENDOR: [Slot; 1] = [slot(AttributeType::Vendor, display_name::VENDOR)];
    const CUSTOMER: [Slot; 1] = [slot(AttributeType::Customer, display_name::CUSTOMER)];
    const CLASS: [Slot; 1] = [slot(AttributeType::Class, display_name::CLASS)];
    const DEPARTMENT: [Slot; 1] = [slot(AttributeType::Department, display_name::DEPARTMENT)];
    const EMPLOYEE: [Slot; 1] = [slot(AttributeType::Employee, display_name::EMPLOYEE)];
    const TAX_CODE: [Slot; 1] = [slot(AttributeType::TaxCode, display_name::TAX_CODE)];
    match entity {
        SyncEntity::Account => &ACCOUNT_SLOTS,
        SyncEntity::Item => &ITEM,
        SyncEntity::Vendor => &VENDOR,
        SyncEntity::Customer => &CUSTOMER,
        SyncEntity::Class => &CLASS,
        SyncEntity::Department => &DEPARTMENT,
        SyncEntity::Employee => &EMPLOYEE,
        SyncEntity::TaxCode => &TAX_CODE,
    }
}

/// The slots whose stored rows for this entity id should be deactivated after `derived`:
/// the entity's slots it did not fill this time (an account whose type moved from `Expense` to
/// `Credit Card` leaves its `ACCOUNT` row), all of them when the skip retires the entity, none
/// when the skip fails safe.
pub fn retired_slots(entity: SyncEntity, derived: &Derived) -> Vec<Slot> {
    match derived {
        Derived::Attributes(drafts) => slots(entity)
            .iter()
            .filter(|s| {
                !drafts.iter().any(|d| {
                    d.attribute_type == s.attribute_type && d.display_name == s.display_name
                })
            })
            .copied()
            .collect(),
        Derived::Skipped(reason) if reason.retires_existing() => slots(entity).to_vec(),
        Derived::Skipped(_) => Vec::new(),
    }
}

/// Derives the destination attributes a QBO entity of type `entity_name` stands for.
/// `tax_rates` is consulted for tax codes only (pass [`NoTaxRates`](super::NoTaxRates)
/// otherwise).
pub fn derive(
    entity_name: &str,
    entity: &Value,
    rules: &WorkspaceRules,
    tax_rates: &dyn TaxRateLookup,
) -> Derived {
    let Ok(kind) = entity_name.parse::<SyncEntity>() else {
        return Derived::Skipped(SkipReason::UnknownEntity);
    };
    match derive_entity(kind, entity, rules, tax_rates) {
        Ok(drafts) => Derived::Attributes(drafts),
        Err(reason) => Derived::Skipped(reason),
    }
}

fn derive_entity(
    kind: SyncEntity,
    value: &Value,
    rules: &WorkspaceRules,
    tax_rates: &dyn TaxRateLookup,
) -> Result<Vec<DestinationDraft>, SkipReason> {
    let entity = Entity::new(value)?;
    let id = entity.id("Id")?.ok_or(Malformed("Id"))?;
    if entity
        .str("status")
        .ok()
        .flatten()
        .is_some_and(|s| s.eq_ignore_ascii_case("Deleted"))
    {
        return Err(SkipReason::DeletedInQbo);
    }
    let active = entity.active()?;
    let row = Row { entity, id, active };
    match kind {
        SyncEntity::Account => account(&row, rules),
        SyncEntity::Item => item(&row, rules).map(|d| vec![d]),
        SyncEntity::Vendor => {
            let value = row.value(&["DisplayName"])?;
            let detail = json!({
                "email": row.email()?,
                "currency": row.entity.nested_str("CurrencyRef", "value", "CurrencyRef.value")?,
            });
            Ok(vec![row.draft(AttributeType::Vendor, value, None, detail)])
        }
        SyncEntity::Customer => {
            let value = row.value(&["FullyQualifiedName", "DisplayName"])?;
            Ok(vec![row.draft(
                AttributeType::Customer,
                value,
                None,
                Value::Null,
            )])
        }
        SyncEntity::Class => {
            let value = row.value(&["FullyQualifiedName", "Name"])?;
            Ok(vec![row.draft(
                AttributeType::Class,
                value,
                None,
                Value::Null,
            )])
        }
        SyncEntity::Department => {
            let value = row.value(&["FullyQualifiedName", "Name"])?;
            Ok(vec![row.draft(
                AttributeType::Department,
                value,
                None,
                Value::Null,
            )])
        }
        SyncEntity::Employee => {
            let value = row.value(&["DisplayName"])?;
            let detail = json!({"email": row.email()?});
            Ok(vec![row.draft(
                AttributeType::Employee,
                value,
                None,
                detail,
            )])
        }
        SyncEntity::TaxCode => tax_code(&row, value, tax_rates).map(|d| vec![d]),
    }
}

/// An entity being derived, with what every type needs.
struct Row<'a> {
    entity: Entity<'a>,
    id: String,
    active: bool,
}

impl Row<'_> {
    /// The first present name among `keys`, cleaned: missing everywhere is malformed, blank
    /// after cleaning is [`SkipReason::BlankValue`].
    fn value(&self, keys: &[&'static str]) -> Result<String, SkipReason> {
        let mut raw = None;
        for key in keys {
            if let Some(name) = self.entity.str(key)? {
                raw = Some(name);
                break;
            }
        }
        let raw = raw.ok_or(Malformed(keys[0]))?;
        clean_name(raw, self.active).ok_or(SkipReason::BlankValue)
    }

    /// `PrimaryEmailAddr.Address`, `null` when absent or blank.
    fn email(&self) -> Result<Option<String>, Malformed> {
        let address =
            self.entity
                .nested_str("PrimaryEmailAddr", "Address", "PrimaryEmailAddr.Address")?;
        Ok(address
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned))
    }

    fn draft(
        &self,
        attribute_type: AttributeType,
        value: String,
        code: Option<String>,
        detail: Value,
    ) -> DestinationDraft {
        self.draft_as(
            attribute_type,
            super::default_display_name(attribute_type),
            value,
            code,
            detail,
        )
    }

    fn draft_as(
        &self,
        attribute_type: AttributeType,
        display_name: &'static str,
        value: String,
        code: Option<String>,
        detail: Value,
    ) -> DestinationDraft {
        DestinationDraft {
            attribute_type,
            display_name,
            destination_id: self.id.clone(),
            value,
            code,
            active: self.active,
            detail,
            last_updated_time: self.entity.last_updated_time(),
            sync_token: self.entity.sync_token(),
        }
    }
}

fn account(row: &Row<'_>, rules: &WorkspaceRules) -> Result<Vec<DestinationDraft>, SkipReason> {
    let account_type = row
        .entity
        .str("AccountType")?
        .ok_or(Malformed("AccountType"))?;
    let is = |t: &str| account_type.eq_ignore_ascii_case(t);
    let in_charts = rules.charts_of_accounts.iter().any(|t| is(t));
    let other = if is("Credit Card") {
        Some(AttributeType::CreditCardAccount)
    } else if is("Bank") || is("Other Current Liability") {
        Some(AttributeType::BankAccount)
    } else if is("Accounts Payable") {
        Some(AttributeType::AccountsPayable)
    } else {
        None
    };
    if !in_charts && other.is_none() {
        return Err(SkipReason::NotImportedType);
    }

    let value = match rules.category_sync_version {
        CategorySyncVersion::V1 => row.value(&["Name"])?,
        CategorySyncVersion::V2 => row.value(&["FullyQualifiedName", "Name"])?,
    };
    let fully_qualified_name = row.value(&["FullyQualifiedName", "Name"])?;
    let code = row.entity.str("AcctNum")?.and_then(collapse_code);

    let mut drafts = Vec::with_capacity(2);
    if in_charts {
        let detail_type = row.entity.str("AccountSubType")?;
        let detail = json!({
            "fully_qualified_name": fully_qualified_name,
            "account_type": account_type,
            "detail_type": detail_type,
        });
        drafts.push(row.draft(AttributeType::Account, value.clone(), code.clone(), detail));
    }
    if let Some(attribute_type) = other {
        let detail = json!({
            "fully_qualified_name": fully_qualified_name,
            "account_type": account_type,
        });
        drafts.push(row.draft(attribute_type, value, code, detail));
    }
    Ok(drafts)
}

fn item(row: &Row<'_>, rules: &WorkspaceRules) -> Result<DestinationDraft, SkipReason> {
    if !rules.import_items {
        return Err(SkipReason::NotImportedType);
    }
    if row
        .entity
        .str("Type")?
        .is_some_and(|t| t.eq_ignore_ascii_case("Category"))
    {
        return Err(SkipReason::ItemCategory);
    }
    let value = row.value(&["FullyQualifiedName", "Name"])?;
    Ok(row.draft_as(
        AttributeType::Account,
        display_name::ITEM,
        value,
        None,
        Value::Null,
    ))
}

fn tax_code(
    row: &Row<'_>,
    raw: &Value,
    tax_rates: &dyn TaxRateLookup,
) -> Result<DestinationDraft, SkipReason> {
    // The rate first: a code without purchase rates is skipped whatever its name.
    let (rate, detail) = match rate_tax_code(raw, tax_rates) {
        TaxOutcome::Rated { rate, detail } => (rate, detail),
        TaxOutcome::NoPurchaseRates => return Err(SkipReason::NoPurchaseTaxRates),
        TaxOutcome::MissingRate(tax_rate_id) => {
            return Err(SkipReason::MissingTaxRate { tax_rate_id });
        }
        TaxOutcome::Malformed(m) => return Err(m.into()),
    };
    let name = row.value(&["Name"])?;
    let value = tax_code_value(&name, rate);
    Ok(row.draft(AttributeType::TaxCode, value, None, detail))
}
