//! Diesel table definitions for mapping's schema (`migrations/mapping`).

diesel::table! {
    workspaces (id) {
        id -> BigInt,
        name -> Text,
        fyle_org_id -> Text,
        qbo_realm_id -> Nullable<Text>,
        fyle_currency -> Nullable<Text>,
        cluster_domain -> Nullable<Text>,
        onboarding_state -> Text,
        version -> BigInt,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        org_settings -> Jsonb,
        org_settings_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    workspace_settings (workspace_id) {
        workspace_id -> BigInt,
        import_categories -> Bool,
        import_items -> Bool,
        import_projects -> Bool,
        import_tax_codes -> Bool,
        import_vendors_as_merchants -> Bool,
        charts_of_accounts -> Array<Text>,
        import_code_fields -> Array<Text>,
        category_sync_version -> Text,
        auto_map_employees -> Nullable<Text>,
        employee_field_mapping -> Text,
        is_sync_after_timestamp_enabled -> Bool,
        map_fyle_cards_qbo_account -> Bool,
        reimbursable_expenses_object -> Nullable<Text>,
        corporate_credit_card_expenses_object -> Nullable<Text>,
        auto_create_destination_entity -> Bool,
        auto_create_merchants_as_vendors -> Bool,
        auto_map_case_insensitive -> Bool,
        fyle_webhook_sync_enabled -> Bool,
        qbo_webhook_sync_enabled -> Bool,
        fyle_webhook_by_type -> Jsonb,
        qbo_webhook_by_entity -> Jsonb,
        updated_at -> Timestamptz,
        default_ccc_account_id -> Nullable<Text>,
    }
}

diesel::joinable!(workspace_settings -> workspaces (workspace_id));
diesel::allow_tables_to_appear_in_same_query!(workspaces, workspace_settings);

diesel::table! {
    source_attributes (workspace_id, attribute_type, source_id) {
        workspace_id -> BigInt,
        attribute_type -> Text,
        source_id -> Text,
        value -> Text,
        display_name -> Text,
        active -> Bool,
        detail -> Nullable<Jsonb>,
        event_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    destination_attributes (workspace_id, attribute_type, display_name, destination_id) {
        workspace_id -> BigInt,
        attribute_type -> Text,
        display_name -> Text,
        destination_id -> Text,
        value -> Text,
        code -> Nullable<Text>,
        active -> Bool,
        detail -> Nullable<Jsonb>,
        event_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    mapping_settings (workspace_id, destination_field) {
        workspace_id -> BigInt,
        source_field -> Text,
        destination_field -> Text,
        import_to_fyle -> Bool,
        is_custom -> Bool,
        source_placeholder -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    mappings (id) {
        id -> BigInt,
        workspace_id -> BigInt,
        source_type -> Text,
        source_id -> Text,
        destination_type -> Text,
        destination_display_name -> Text,
        destination_id -> Text,
        destination_value -> Text,
        auto_mapped -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        auto_created -> Bool,
    }
}

diesel::table! {
    mapping_errors (id) {
        id -> BigInt,
        workspace_id -> BigInt,
        error_type -> Text,
        source_type -> Text,
        source_id -> Text,
        source_value -> Text,
        destination_type -> Text,
        occurrences -> Integer,
        is_resolved -> Bool,
        resolved_at -> Nullable<Timestamptz>,
        resolved_by_mapping_id -> Nullable<BigInt>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    field_imports (workspace_id, source_field) {
        workspace_id -> BigInt,
        source_field -> Text,
        first_run_at -> Timestamptz,
        last_status -> Text,
        last_event_at -> Timestamptz,
    }
}
