//! Fyle webhooks: every action and resource the Fyle Platform sends, and how ingest routes them.
//!
//! Parsing is total: an action or resource we do not know is kept as `Other` and routed to
//! [`Route::Ignored`] instead of failing the request, because Fyle adds enum values without
//! notice and a 4xx would only make it retry a body we will never understand.

use serde::{Deserialize, Serialize};

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($variant,)+
            /// A value this build does not know.
            Other(String),
        }

        impl $name {
            pub const KNOWN: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)+
                    Self::Other(s) => s,
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                match s.as_str() {
                    $($wire => Self::$variant,)+
                    _ => Self::Other(s),
                }
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.as_str().to_owned()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// The `action` of a Fyle webhook (reference §2.3, admin, spender and approver callbacks).
    FyleWebhookAction {
        Created = "CREATED",
        Updated = "UPDATED",
        Deleted = "DELETED",
        AdminApproved = "ADMIN_APPROVED",
        Approved = "APPROVED",
        StateChangePaymentProcessing = "STATE_CHANGE_PAYMENT_PROCESSING",
        Paid = "PAID",
        MarkPaid = "MARK_PAID",
        AccountingExportInitiated = "ACCOUNTING_EXPORT_INITIATED",
        UpdatedAfterApproval = "UPDATED_AFTER_APPROVAL",
        EjectedFromReport = "EJECTED_FROM_REPORT",
        AddedToReport = "ADDED_TO_REPORT",
        PartiallyApproved = "PARTIALLY_APPROVED",
        ApproverAdded = "APPROVER_ADDED",
        ApproverSendback = "APPROVER_SENDBACK",
        ApproverRemoved = "APPROVER_REMOVED",
        PaymentPending = "PAYMENT_PENDING",
        PaymentProcessing = "PAYMENT_PROCESSING",
        Commented = "COMMENTED",
        Submitted = "SUBMITTED",
    }
);

wire_enum!(
    /// The `resource` of a Fyle webhook (the subscription's `subscribed_resources`, plus
    /// `DEPENDENT_FIELD` from the integration's enum).
    FyleResource {
        Expense = "EXPENSE",
        Report = "REPORT",
        Category = "CATEGORY",
        Project = "PROJECT",
        CostCenter = "COST_CENTER",
        ExpenseField = "EXPENSE_FIELD",
        CorporateCard = "CORPORATE_CARD",
        Employee = "EMPLOYEE",
        TaxGroup = "TAX_GROUP",
        OrgSetting = "ORG_SETTING",
        DependentField = "DEPENDENT_FIELD",
    }
);

impl FyleResource {
    /// The attribute type of a resource whose objects are attributes of one fixed type.
    /// Expense and dependent fields carry many types (one per field) and give `None`.
    pub fn fixed_attribute_type(&self) -> Option<crate::FyleAttributeType> {
        use crate::FyleAttributeType as T;
        Some(match self {
            Self::Category => T::Category,
            Self::Project => T::Project,
            Self::CostCenter => T::CostCenter,
            Self::Employee => T::Employee,
            Self::CorporateCard => T::CorporateCard,
            Self::TaxGroup => T::TaxGroup,
            _ => return None,
        })
    }

    /// Resources whose CREATED/UPDATED/DELETED change an attribute.
    pub fn is_attribute(&self) -> bool {
        matches!(
            self,
            Self::Category
                | Self::Project
                | Self::CostCenter
                | Self::ExpenseField
                | Self::CorporateCard
                | Self::Employee
                | Self::TaxGroup
                | Self::DependentField
        )
    }
}

/// Where ingest sends an accepted Fyle webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `fyle.attribute-webhooks.v1`, for fyle-sync.
    Attribute,
    /// `fyle.expense-webhooks.v1`, for the export pipeline.
    Expense,
    /// `fyle.org-settings.v1`, for mapping.
    OrgSetting,
    /// Accepted and recorded, but nobody consumes it (the incumbent's "no-op, 200").
    Ignored,
}

/// The incumbent's dispatch table (incumbent §3.2), as one pure function.
///
/// Report state changes, direct exports and expense changes go to the expense topic; an
/// ORG_SETTING update goes to mapping; CREATED/UPDATED/DELETED of an attribute resource go to
/// fyle-sync. Everything else, including `UPDATED` of EXPENSE/REPORT and `CREATED` of
/// ORG_SETTING (which the incumbent sends into its attribute processor only to log an error),
/// is recorded and ignored.
pub fn route(action: &FyleWebhookAction, resource: Option<&FyleResource>) -> Route {
    use FyleWebhookAction as A;
    match action {
        A::AdminApproved
        | A::Approved
        | A::StateChangePaymentProcessing
        | A::Paid
        | A::AccountingExportInitiated => Route::Expense,
        A::UpdatedAfterApproval | A::EjectedFromReport | A::AddedToReport
            if resource == Some(&FyleResource::Expense) =>
        {
            Route::Expense
        }
        A::Updated if resource == Some(&FyleResource::OrgSetting) => Route::OrgSetting,
        A::Created | A::Updated | A::Deleted
            if resource.is_some_and(FyleResource::is_attribute) =>
        {
            Route::Attribute
        }
        _ => Route::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(action: &str, resource: &str) -> Route {
        route(
            &FyleWebhookAction::from(action.to_owned()),
            Some(&FyleResource::from(resource.to_owned())),
        )
    }

    #[test]
    fn routes_follow_the_incumbent_dispatch_table() {
        for a in [
            "ADMIN_APPROVED",
            "APPROVED",
            "STATE_CHANGE_PAYMENT_PROCESSING",
            "PAID",
        ] {
            assert_eq!(r(a, "REPORT"), Route::Expense, "{a}");
        }
        assert_eq!(r("ACCOUNTING_EXPORT_INITIATED", "REPORT"), Route::Expense);
        assert_eq!(r("UPDATED_AFTER_APPROVAL", "EXPENSE"), Route::Expense);
        assert_eq!(r("EJECTED_FROM_REPORT", "EXPENSE"), Route::Expense);
        assert_eq!(r("ADDED_TO_REPORT", "EXPENSE"), Route::Expense);
        assert_eq!(r("UPDATED", "ORG_SETTING"), Route::OrgSetting);
        for res in [
            "CATEGORY",
            "PROJECT",
            "COST_CENTER",
            "EMPLOYEE",
            "CORPORATE_CARD",
            "TAX_GROUP",
            "EXPENSE_FIELD",
        ] {
            for a in ["CREATED", "UPDATED", "DELETED"] {
                assert_eq!(r(a, res), Route::Attribute, "{a} {res}");
            }
        }
    }

    #[test]
    fn unsupported_combinations_are_ignored() {
        assert_eq!(r("CREATED", "ORG_SETTING"), Route::Ignored);
        assert_eq!(r("UPDATED", "EXPENSE"), Route::Ignored);
        assert_eq!(r("UPDATED", "REPORT"), Route::Ignored);
        assert_eq!(r("MARK_PAID", "REPORT"), Route::Ignored);
        assert_eq!(r("SOMETHING_NEW", "CATEGORY"), Route::Ignored);
        assert_eq!(route(&FyleWebhookAction::Created, None), Route::Ignored);
    }

    #[test]
    fn fixed_attribute_types() {
        assert_eq!(
            FyleResource::CostCenter.fixed_attribute_type(),
            Some(crate::FyleAttributeType::CostCenter)
        );
        assert_eq!(FyleResource::ExpenseField.fixed_attribute_type(), None);
        assert_eq!(FyleResource::Report.fixed_attribute_type(), None);
    }

    #[test]
    fn unknown_values_survive_a_round_trip() {
        let a: FyleWebhookAction = serde_json::from_str("\"BRAND_NEW\"").expect("parse");
        assert_eq!(a, FyleWebhookAction::Other("BRAND_NEW".into()));
        assert_eq!(
            serde_json::to_string(&a).expect("serialise"),
            "\"BRAND_NEW\""
        );
        assert_eq!(
            FyleResource::from("TAX_GROUP".to_owned()),
            FyleResource::TaxGroup
        );
    }
}
