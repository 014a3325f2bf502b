//! Default values of every key of each Fyle resource's list item, so objects created through the
//! API or the admin API carry the full documented shape (reference §1.4).

use serde_json::{Value, json};

use super::resources::Resource;

/// Every key of a new list item of `r` with its default (ids, `org_id` and timestamps are set
/// by the caller). Field lists follow the `*_out` schemas of reference §1.4.
pub(crate) fn defaults(r: Resource) -> Value {
    match r {
        Resource::Categories => json!({
            "name": null, "sub_category": null, "is_enabled": true, "system_category": null,
            "code": null, "restricted_project_ids": null, "restricted_spender_user_ids": null
        }),
        Resource::Projects => json!({
            "name": null, "sub_project": null, "code": null, "description": null, "is_enabled": true,
            "restricted_spender_user_ids": null, "approver_user_ids": [], "approver_users": [],
            "category_ids": null, "default_billable": null
        }),
        Resource::CostCenters => json!({
            "name": null, "code": null, "description": null, "is_enabled": true,
            "restricted_spender_user_ids": null
        }),
        Resource::TaxGroups => json!({
            "name": null, "percentage": 0, "is_enabled": true, "is_default": null, "code": null
        }),
        Resource::ExpenseFields => json!({
            "seq": 1, "field_name": null, "column_name": null, "type": "TEXT", "options": [],
            "default_value": null, "placeholder": "", "category_ids": [], "is_enabled": true,
            "is_custom": true, "is_mandatory": false, "code": null, "parent_field_id": null,
            "display_order": null
        }),
        Resource::Employees => json!({
            "user_id": null, "user": null, "code": null, "department_id": null, "department": null,
            "location": null, "title": null, "business_unit": null, "is_enabled": true,
            "has_accepted_invite": true, "roles": ["FYLER"], "joined_at": null, "level_id": null,
            "level": null, "special_email": null, "custom_fields": [], "cost_center_ids": [],
            "cost_centers": [], "project_ids": [], "projects": [], "category_ids": [],
            "categories": [], "approver_user_ids": [], "approver_users": [], "mileage_rate_ids": [],
            "mileage_rates": [], "per_diem_rate_ids": [], "per_diem_rates": [], "mobile": null,
            "is_mobile_verified": false, "locale": null, "mileage_settings": null,
            "ach_account": null, "delegatees": [], "branch_account": null, "branch_ifsc": null,
            "flattened_custom_field": {}
        }),
        Resource::CorporateCards => json!({
            "user_id": null, "user": null, "bank_name": "Bank of America",
            "card_number": "xxxx-xxxx-xxxx-0000", "cardholder_name": null, "nickname": null,
            "data_feed_source": null, "code": null, "yodlee_account_id": null,
            "last_synced_at": null, "last_assigned_at": null, "assignor_user_id": null,
            "is_visa_enrolled": false, "is_mastercard_enrolled": false,
            "is_capitalone_enrolled": null, "is_dummy": false, "verification_status": "NOT_VERIFIED",
            "last_ready_for_verification_at": null, "last_verification_attempt_at": null,
            "last_verified_at": null, "virtual_card_id": null, "virtual_card_state": null,
            "is_archived": false, "archived_at": null, "archived_by_user_id": null,
            "total_transactions_count": 0, "unassigned_transactions_count": 0
        }),
        Resource::Departments => json!({
            "name": null, "code": null, "sub_department": null, "display_name": null,
            "is_enabled": true, "description": null
        }),
        Resource::Subscriptions => json!({
            "is_enabled": true, "webhook_url": null, "subscribed_resources": []
        }),
        Resource::DependentValues => json!({
            "parent_expense_field_id": null, "expense_field_id": null,
            "parent_expense_field_value": null, "expense_field_value": null, "is_enabled": true
        }),
    }
}
