//! import-to-fyle's tables (migrations/import-to-fyle).

diesel::table! {
    import_destination_attributes (workspace_id, attribute_type, display_name, destination_id) {
        workspace_id -> BigInt,
        attribute_type -> Text,
        display_name -> Text,
        destination_id -> Text,
        value -> Text,
        code -> Nullable<Text>,
        active -> Bool,
        detail -> Jsonb,
        renamed_from -> Nullable<Text>,
        renamed_from_code -> Nullable<Text>,
        version -> Timestamptz,
        changed_at -> Timestamptz,
    }
}

diesel::table! {
    import_requests (workspace_id, source_field) {
        workspace_id -> BigInt,
        source_field -> Text,
        full_import -> Bool,
        force -> Bool,
        reason -> Text,
        requested_at -> Timestamptz,
        not_before -> Timestamptz,
        attempts -> Integer,
        seq -> BigInt,
    }
}

diesel::table! {
    import_logs (workspace_id, attribute_type) {
        workspace_id -> BigInt,
        attribute_type -> Text,
        status -> Text,
        error_log -> Jsonb,
        total_batches_count -> Integer,
        processed_batches_count -> Integer,
        values_posted -> Integer,
        last_outcome -> Nullable<Text>,
        last_successful_run_at -> Nullable<Timestamptz>,
        started_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}
