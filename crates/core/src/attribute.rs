//! Attribute types on both sides and the records the sync services keep.

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::WorkspaceId;

/// The type of a Fyle-side attribute (an `ExpenseAttribute.attribute_type`).
///
/// Custom SELECT expense fields become types of their own, named after the field with the
/// prefix `CUSTOM:` (`"Cost Code"` → `CUSTOM:COST_CODE`). The incumbent uses the bare upper-snake
/// name, so a custom field called "Cost Center" or "Project" shares — and can deactivate — the
/// system type's values; the prefix holds a character upper-snake built-in names never
/// contain, so no custom field can ever name a system type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FyleAttributeType {
    Category,
    Project,
    CostCenter,
    Employee,
    CorporateCard,
    TaxGroup,
    Merchant,
    /// A custom SELECT (or dependent SELECT) field; holds the upper-snake type name.
    Custom(String),
}

impl FyleAttributeType {
    /// The built-in types, in the order a full pull visits them.
    pub const BUILT_IN: [FyleAttributeType; 7] = [
        FyleAttributeType::Category,
        FyleAttributeType::Project,
        FyleAttributeType::CostCenter,
        FyleAttributeType::Employee,
        FyleAttributeType::CorporateCard,
        FyleAttributeType::TaxGroup,
        FyleAttributeType::Merchant,
    ];

    /// The type a custom field named `field_name` gets: `CUSTOM:` + upper case, spaces → `_`.
    pub fn custom(field_name: &str) -> Self {
        Self::Custom(format!("{CUSTOM_PREFIX}{}", custom_type_name(field_name)))
    }

    /// The upper-snake name stored in `attribute_type` columns and carried in events.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Category => "CATEGORY",
            Self::Project => "PROJECT",
            Self::CostCenter => "COST_CENTER",
            Self::Employee => "EMPLOYEE",
            Self::CorporateCard => "CORPORATE_CARD",
            Self::TaxGroup => "TAX_GROUP",
            Self::Merchant => "MERCHANT",
            Self::Custom(name) => name,
        }
    }

    /// The human label the incumbent stores in `display_name` for built-in types.
    pub fn display_name(&self) -> &str {
        match self {
            Self::Category => "Category",
            Self::Project => "Project",
            Self::CostCenter => "Cost Center",
            Self::Employee => "Employee",
            Self::CorporateCard => "Corporate Card",
            Self::TaxGroup => "Tax Group",
            Self::Merchant => "Merchant",
            Self::Custom(name) => name,
        }
    }
}

/// What every custom field type starts with.
pub const CUSTOM_PREFIX: &str = "CUSTOM:";

/// `field_name.upper().replace(' ', '_')`, as the incumbent derives custom attribute types.
pub fn custom_type_name(field_name: &str) -> String {
    field_name.to_uppercase().replace(' ', "_")
}

/// A type name as an operator may type it (`category`, `CUSTOM:Cost Code`) in the stored form
/// (`CATEGORY`, `CUSTOM:COST_CODE`).
pub fn normalise_type_name(name: &str) -> String {
    let name = name.trim();
    match name.get(..CUSTOM_PREFIX.len()) {
        Some(prefix) if prefix.eq_ignore_ascii_case(CUSTOM_PREFIX) => {
            FyleAttributeType::custom(name[CUSTOM_PREFIX.len()..].trim())
                .as_str()
                .to_owned()
        }
        _ => custom_type_name(name),
    }
}

impl fmt::Display for FyleAttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FyleAttributeType {
    type Err = std::convert::Infallible;

    /// Any string is a valid type: unknown names are custom field types.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "CATEGORY" => Self::Category,
            "PROJECT" => Self::Project,
            "COST_CENTER" => Self::CostCenter,
            "EMPLOYEE" => Self::Employee,
            "CORPORATE_CARD" => Self::CorporateCard,
            "TAX_GROUP" => Self::TaxGroup,
            "MERCHANT" => Self::Merchant,
            other => Self::Custom(other.to_owned()),
        })
    }
}

impl Serialize for FyleAttributeType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FyleAttributeType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.parse() {
            Ok(t) => t,
            Err(never) => match never {},
        })
    }
}

/// The type of a QBO-side attribute (a `DestinationAttribute.attribute_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DestinationAttributeType {
    /// Expense accounts (display name `Account`) and items (display name `Item`).
    Account,
    CreditCardAccount,
    BankAccount,
    AccountsPayable,
    Employee,
    Vendor,
    Customer,
    Class,
    Department,
    TaxCode,
}

impl DestinationAttributeType {
    pub const ALL: [DestinationAttributeType; 10] = [
        Self::Account,
        Self::CreditCardAccount,
        Self::BankAccount,
        Self::AccountsPayable,
        Self::Employee,
        Self::Vendor,
        Self::Customer,
        Self::Class,
        Self::Department,
        Self::TaxCode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Account => "ACCOUNT",
            Self::CreditCardAccount => "CREDIT_CARD_ACCOUNT",
            Self::BankAccount => "BANK_ACCOUNT",
            Self::AccountsPayable => "ACCOUNTS_PAYABLE",
            Self::Employee => "EMPLOYEE",
            Self::Vendor => "VENDOR",
            Self::Customer => "CUSTOMER",
            Self::Class => "CLASS",
            Self::Department => "DEPARTMENT",
            Self::TaxCode => "TAX_CODE",
        }
    }

    /// The QBO entity the values are read from.
    pub fn qbo_entity(self) -> QboEntity {
        match self {
            Self::Account | Self::CreditCardAccount | Self::BankAccount | Self::AccountsPayable => {
                QboEntity::Account
            }
            Self::Employee => QboEntity::Employee,
            Self::Vendor => QboEntity::Vendor,
            Self::Customer => QboEntity::Customer,
            Self::Class => QboEntity::Class,
            Self::Department => QboEntity::Department,
            Self::TaxCode => QboEntity::TaxCode,
        }
    }
}

impl fmt::Display for DestinationAttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DestinationAttributeType {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

/// The QBO entities attribute sync reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum QboEntity {
    Account,
    Item,
    Class,
    Department,
    Customer,
    Vendor,
    Employee,
    TaxCode,
    TaxRate,
}

impl QboEntity {
    pub const ALL: [QboEntity; 9] = [
        Self::Account,
        Self::Item,
        Self::Class,
        Self::Department,
        Self::Customer,
        Self::Vendor,
        Self::Employee,
        Self::TaxCode,
        Self::TaxRate,
    ];

    /// The entity name as QBO spells it in queries, URLs and webhooks.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Account => "Account",
            Self::Item => "Item",
            Self::Class => "Class",
            Self::Department => "Department",
            Self::Customer => "Customer",
            Self::Vendor => "Vendor",
            Self::Employee => "Employee",
            Self::TaxCode => "TaxCode",
            Self::TaxRate => "TaxRate",
        }
    }
}

impl FromStr for QboEntity {
    type Err = UnknownName;

    /// QBO entity names compare case-insensitively (webhooks and queries differ in case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

/// A name that is not one of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name `{0}`")]
pub struct UnknownName(pub String);

/// One Fyle-side value as fyle-sync stores it: identified by `(workspace, type, source_id)`, so
/// a rename updates the row instead of adding one (the incumbent keys on the value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpenseAttribute {
    pub workspace_id: WorkspaceId,
    pub attribute_type: FyleAttributeType,
    pub display_name: String,
    pub value: String,
    pub source_id: String,
    pub active: bool,
    pub detail: Option<Value>,
    /// Fyle's `updated_at` for the object the value came from, when it has one. Events older
    /// than what is stored are ignored.
    pub source_updated_at: Option<DateTime<Utc>>,
}

/// One QBO-side value as qbo-sync stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DestinationAttribute {
    pub workspace_id: WorkspaceId,
    pub attribute_type: DestinationAttributeType,
    pub display_name: String,
    pub value: String,
    pub destination_id: String,
    pub code: Option<String>,
    pub active: bool,
    pub detail: Option<Value>,
    pub source_updated_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_types_round_trip_through_their_names() {
        for t in FyleAttributeType::BUILT_IN {
            assert_eq!(t.as_str().parse::<FyleAttributeType>(), Ok(t.clone()));
        }
        assert_eq!(
            "COST_CODE".parse::<FyleAttributeType>(),
            Ok(FyleAttributeType::Custom("COST_CODE".into()))
        );
    }

    #[test]
    fn custom_field_types_are_upper_snake_field_names() {
        assert_eq!(
            FyleAttributeType::custom("Cost Code").as_str(),
            "CUSTOM:COST_CODE"
        );
        assert_eq!(FyleAttributeType::custom("Luke").as_str(), "CUSTOM:LUKE");
    }

    #[test]
    fn a_custom_field_named_like_a_system_type_gets_a_type_of_its_own() {
        for (field, system) in [
            ("Cost Center", FyleAttributeType::CostCenter),
            ("Project", FyleAttributeType::Project),
            ("Category", FyleAttributeType::Category),
        ] {
            let custom = FyleAttributeType::custom(field);
            assert_ne!(custom, system, "{field}");
            assert_ne!(custom.as_str(), system.as_str(), "{field}");
            assert_eq!(
                custom.as_str().parse::<FyleAttributeType>().ok(),
                Some(custom)
            );
        }
        assert_eq!(normalise_type_name(" category "), "CATEGORY");
        assert_eq!(normalise_type_name("custom:Cost Code"), "CUSTOM:COST_CODE");
    }

    #[test]
    fn destination_types_and_entities_parse() {
        assert_eq!("TAX_CODE".parse(), Ok(DestinationAttributeType::TaxCode));
        assert!("TAXCODE".parse::<DestinationAttributeType>().is_err());
        assert_eq!("taxcode".parse(), Ok(QboEntity::TaxCode));
        assert_eq!(
            DestinationAttributeType::CreditCardAccount.qbo_entity(),
            QboEntity::Account
        );
    }
}
