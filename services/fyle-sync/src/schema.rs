//! Diesel table definitions for fyle-sync's schema (`migrations/fyle-sync`).

diesel::table! {
    expense_attributes (id) {
        id -> BigInt,
        workspace_id -> BigInt,
        attribute_type -> Text,
        display_name -> Text,
        value -> Text,
        source_id -> Text,
        active -> Bool,
        detail -> Nullable<Jsonb>,
        content_hash -> Text,
        auto_mapped -> Bool,
        auto_created -> Bool,
        source_updated_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    fyle_sync_state (workspace_id, attribute_type) {
        workspace_id -> BigInt,
        attribute_type -> Text,
        watermark -> Nullable<Timestamptz>,
        last_full_sync_at -> Nullable<Timestamptz>,
        last_incremental_sync_at -> Nullable<Timestamptz>,
        last_reconcile_at -> Nullable<Timestamptz>,
        missed_webhooks -> BigInt,
        last_run -> Nullable<Text>,
        last_run_at -> Nullable<Timestamptz>,
        last_run_rows -> Integer,
        last_run_changed -> Integer,
        last_run_deleted -> Integer,
        last_run_missed -> Integer,
    }
}

diesel::table! {
    fyle_subscriptions (workspace_id) {
        workspace_id -> BigInt,
        status -> Text,
        subscription_id -> Nullable<Text>,
        attempts -> Integer,
        last_error -> Nullable<Text>,
        registered_at -> Nullable<Timestamptz>,
        next_attempt_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_event_counts (workspace_id) {
        workspace_id -> BigInt,
        applied -> BigInt,
        ignored -> BigInt,
        last_event_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    processed_events (event_id) {
        event_id -> Text,
        processed_at -> Timestamptz,
    }
}

diesel::table! {
    fyle_connections (workspace_id) {
        workspace_id -> BigInt,
        org_id -> Text,
        cluster_domain -> Text,
        key_id -> Text,
        nonce -> Bytea,
        ciphertext -> Bytea,
        status -> Text,
        status_reason -> Nullable<Text>,
        connected_at -> Timestamptz,
        status_at -> Timestamptz,
    }
}

diesel::table! {
    dependent_fields (workspace_id, field_id) {
        workspace_id -> BigInt,
        field_id -> BigInt,
        field_name -> Text,
        parent_field_id -> Nullable<BigInt>,
        placeholder -> Jsonb,
        is_mandatory -> Jsonb,
        enabled -> Bool,
        source_updated_at -> Nullable<Timestamptz>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    fyle_connections,
    fyle_subscriptions,
    fyle_sync_state,
);
