//! The QBO entities the sandbox serves (reference §3.4) and their per-type rules.

use serde_json::{Map, Value, json};

/// A QBO entity type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityType {
    /// Chart of accounts.
    Account,
    /// Products and services.
    Item,
    /// Classes.
    Class,
    /// Departments (locations).
    Department,
    /// Customers and jobs.
    Customer,
    /// Vendors.
    Vendor,
    /// Employees.
    Employee,
    /// Tax codes.
    TaxCode,
    /// Tax rates.
    TaxRate,
}

/// Which names must be unique together (among active entities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// Customers, vendors and employees share `DisplayName`s.
    Party,
    /// Entities unique by their own full name.
    Own(EntityType),
}

impl EntityType {
    /// Every type, in a fixed order.
    pub const ALL: [EntityType; 9] = [
        EntityType::Account,
        EntityType::Item,
        EntityType::Class,
        EntityType::Department,
        EntityType::Customer,
        EntityType::Vendor,
        EntityType::Employee,
        EntityType::TaxCode,
        EntityType::TaxRate,
    ];

    /// Name as used in queries and JSON keys (case-sensitive).
    pub fn name(self) -> &'static str {
        match self {
            EntityType::Account => "Account",
            EntityType::Item => "Item",
            EntityType::Class => "Class",
            EntityType::Department => "Department",
            EntityType::Customer => "Customer",
            EntityType::Vendor => "Vendor",
            EntityType::Employee => "Employee",
            EntityType::TaxCode => "TaxCode",
            EntityType::TaxRate => "TaxRate",
        }
    }

    /// Resolves a query entity name (case-sensitive, as Intuit documents).
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == s)
    }

    /// Resolves a URL path segment (`account`, `taxrate`) or a name case-insensitively.
    pub fn from_path(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(s))
    }

    /// Index into per-realm arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The key holding the entity's own name.
    pub fn name_field(self) -> &'static str {
        match self {
            EntityType::Customer | EntityType::Vendor | EntityType::Employee => "DisplayName",
            _ => "Name",
        }
    }

    /// Name lists return only active rows unless the query filters on `Active`.
    pub fn active_only_by_default(self) -> bool {
        self != EntityType::TaxRate
    }

    /// Entities whose `FullyQualifiedName` is `Parent:Child` through `ParentRef`.
    pub fn hierarchical(self) -> bool {
        matches!(
            self,
            EntityType::Account
                | EntityType::Item
                | EntityType::Class
                | EntityType::Department
                | EntityType::Customer
        )
    }

    /// The `Sub…` flag of hierarchical entities.
    pub fn sub_flag(self) -> Option<&'static str> {
        match self {
            EntityType::Account => Some("SubAccount"),
            EntityType::Class => Some("SubClass"),
            EntityType::Department => Some("SubDepartment"),
            EntityType::Item => Some("SubItem"),
            EntityType::Customer => Some("Job"),
            _ => None,
        }
    }

    /// `POST /v3/company/{realm}/<entity>` is served (reference Q4).
    pub fn writable(self) -> bool {
        !matches!(self, EntityType::TaxCode | EntityType::TaxRate)
    }

    /// CDC supports the entity (not TaxCode/TaxRate, reference §3.5).
    pub fn cdc_supported(self) -> bool {
        !matches!(self, EntityType::TaxCode | EntityType::TaxRate)
    }

    /// Webhooks report the entity (TaxCode/TaxRate are not in Intuit's list, reference §3.8).
    pub fn webhook_supported(self) -> bool {
        !matches!(self, EntityType::TaxCode | EntityType::TaxRate)
    }

    /// Uniqueness namespace.
    pub fn namespace(self) -> Namespace {
        match self {
            EntityType::Customer | EntityType::Vendor | EntityType::Employee => Namespace::Party,
            other => Namespace::Own(other),
        }
    }

    /// Type-specific top-level properties that queries may filter or order on (the common ones,
    /// `Id, SyncToken, MetaData, Active, domain`, are added by [`Self::canonical_field`]).
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            EntityType::Account => &[
                "Name",
                "SubAccount",
                "ParentRef",
                "FullyQualifiedName",
                "Classification",
                "AccountType",
                "AccountSubType",
                "AcctNum",
                "CurrentBalance",
                "CurrentBalanceWithSubAccounts",
                "CurrencyRef",
                "Description",
            ],
            EntityType::Item => &[
                "Name",
                "FullyQualifiedName",
                "Type",
                "Description",
                "Taxable",
                "UnitPrice",
                "PurchaseCost",
                "TrackQtyOnHand",
                "IncomeAccountRef",
                "ExpenseAccountRef",
                "SubItem",
                "ParentRef",
                "Level",
                "Sku",
            ],
            EntityType::Class | EntityType::Department => &[
                "Name",
                "SubClass",
                "SubDepartment",
                "ParentRef",
                "FullyQualifiedName",
            ],
            EntityType::Customer => &[
                "DisplayName",
                "FullyQualifiedName",
                "Job",
                "ParentRef",
                "Level",
                "BillWithParent",
                "CompanyName",
                "GivenName",
                "FamilyName",
                "PrimaryEmailAddr",
                "Balance",
                "CurrencyRef",
                "PrintOnCheckName",
            ],
            EntityType::Vendor => &[
                "DisplayName",
                "CompanyName",
                "GivenName",
                "FamilyName",
                "PrintOnCheckName",
                "PrimaryEmailAddr",
                "CurrencyRef",
                "Vendor1099",
                "AcctNum",
                "Balance",
                "BillAddr",
                "PrimaryPhone",
                "WebAddr",
            ],
            EntityType::Employee => &[
                "DisplayName",
                "GivenName",
                "FamilyName",
                "PrintOnCheckName",
                "PrimaryEmailAddr",
                "BillableTime",
                "BillRate",
                "EmployeeNumber",
            ],
            EntityType::TaxCode => &[
                "Name",
                "Description",
                "Taxable",
                "TaxGroup",
                "SalesTaxRateList",
                "PurchaseTaxRateList",
            ],
            EntityType::TaxRate => &[
                "Name",
                "Description",
                "RateValue",
                "AgencyRef",
                "SpecialTaxType",
                "DisplayType",
            ],
        }
    }

    /// Is `name` (case-insensitive) a queryable top-level property? Returns its canonical spelling.
    pub fn canonical_field(self, name: &str) -> Option<&'static str> {
        ["Id", "SyncToken", "MetaData", "Active", "domain"]
            .into_iter()
            .chain(self.fields().iter().copied())
            .find(|f| f.eq_ignore_ascii_case(name))
    }
    /// Properties of a new entity before the client's are applied.
    pub fn defaults(self) -> Map<String, Value> {
        let usd = json!({"value": "USD", "name": "United States Dollar"});
        let v = match self {
            EntityType::Account => {
                json!({"SubAccount": false, "Active": true, "CurrentBalance": 0,
                "CurrentBalanceWithSubAccounts": 0, "CurrencyRef": usd})
            }
            EntityType::Item => {
                json!({"Active": true, "Taxable": false, "UnitPrice": 0,
                "PurchaseCost": 0, "TrackQtyOnHand": false})
            }
            EntityType::Class => json!({"SubClass": false, "Active": true}),
            EntityType::Department => json!({"SubDepartment": false, "Active": true}),
            EntityType::Customer => {
                json!({"Job": false, "BillWithParent": false, "Balance": 0, "Active": true, "CurrencyRef": usd})
            }
            EntityType::Vendor => {
                json!({"Vendor1099": false, "Balance": 0, "Active": true, "CurrencyRef": usd})
            }
            EntityType::Employee => json!({"BillableTime": false, "Active": true}),
            EntityType::TaxCode => json!({"Active": true, "Taxable": true, "TaxGroup": false}),
            EntityType::TaxRate => {
                json!({"Active": true, "RateValue": 0, "SpecialTaxType": "NONE", "DisplayType": "ReadOnly"})
            }
        };
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.insert("domain".into(), json!("QBO"));
        m.insert("sparse".into(), json!(false));
        m
    }
}

/// The `Classification` QBO derives from an `AccountType`.
pub fn account_classification(account_type: &str) -> &'static str {
    match account_type {
        "Bank" | "Other Current Asset" | "Fixed Asset" | "Other Asset" | "Accounts Receivable" => {
            "Asset"
        }
        "Credit Card" | "Accounts Payable" | "Other Current Liability" | "Long Term Liability" => {
            "Liability"
        }
        "Equity" => "Equity",
        "Income" | "Other Income" => "Revenue",
        _ => "Expense",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_sensitive_paths_are_not() {
        assert_eq!(
            EntityType::from_name("Customer"),
            Some(EntityType::Customer)
        );
        assert_eq!(EntityType::from_name("customer"), None);
        assert_eq!(EntityType::from_path("taxrate"), Some(EntityType::TaxRate));
    }

    #[test]
    fn metadata_is_found_case_insensitively() {
        assert_eq!(
            EntityType::Account.canonical_field("Metadata"),
            Some("MetaData")
        );
        assert_eq!(
            EntityType::Vendor.canonical_field("displayname"),
            Some("DisplayName")
        );
        assert_eq!(EntityType::Vendor.canonical_field("Colour"), None);
    }
}
