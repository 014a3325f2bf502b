//! Diesel table definitions for qbo-sync's schema (`migrations/qbo-sync`).

diesel::table! {
    destination_attributes (id) {
        id -> BigInt,
        workspace_id -> BigInt,
        attribute_type -> Text,
        display_name -> Text,
        qbo_entity -> Text,
        destination_id -> Text,
        value -> Text,
        code -> Nullable<Text>,
        active -> Bool,
        detail -> Jsonb,
        content_hash -> Text,
        auto_created -> Bool,
        qbo_updated_at -> Nullable<Timestamptz>,
        sync_token -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        locally_deactivated -> Bool,
    }
}

diesel::table! {
    qbo_credentials (realm_id) {
        realm_id -> Text,
        company_name -> Nullable<Text>,
        key_id -> Text,
        refresh_nonce -> Bytea,
        refresh_sealed -> Bytea,
        refresh_expires_at -> Nullable<Timestamptz>,
        generation -> BigInt,
        access_nonce -> Nullable<Bytea>,
        access_sealed -> Nullable<Bytea>,
        access_expires_at -> Nullable<Timestamptz>,
        status -> Text,
        status_reason -> Nullable<Text>,
        connected_by -> BigInt,
        connected_at -> Timestamptz,
        status_at -> Timestamptz,
    }
}

diesel::table! {
    qbo_sync_state (workspace_id, qbo_entity) {
        workspace_id -> BigInt,
        qbo_entity -> Text,
        watermark -> Nullable<Timestamptz>,
        last_full_sync_at -> Nullable<Timestamptz>,
        last_incremental_sync_at -> Nullable<Timestamptz>,
        last_reconcile_at -> Nullable<Timestamptz>,
        last_attempt_at -> Nullable<Timestamptz>,
        last_outcome -> Nullable<Text>,
        missed_webhooks -> BigInt,
        last_run -> Nullable<Text>,
        last_run_missed -> Integer,
        last_run_deferred -> Integer,
    }
}

diesel::table! {
    qbo_workspace_sync (workspace_id) {
        workspace_id -> BigInt,
        destination_synced_at -> Nullable<Timestamptz>,
        realm_id -> Nullable<Text>,
    }
}

diesel::table! {
    qbo_attribute_counts (workspace_id, qbo_entity) {
        workspace_id -> BigInt,
        qbo_entity -> Text,
        active_count -> BigInt,
        counted_at -> Timestamptz,
    }
}

diesel::table! {
    qbo_merges (workspace_id, qbo_entity, merged_id) {
        workspace_id -> BigInt,
        qbo_entity -> Text,
        merged_id -> Text,
        surviving_id -> Text,
        merged_at -> Timestamptz,
    }
}

diesel::table! {
    qbo_pending_changes (id) {
        id -> BigInt,
        realm_id -> Text,
        workspace_id -> BigInt,
        qbo_entity -> Text,
        entity_id -> Text,
        operation -> Text,
        deleted_id -> Nullable<Text>,
        last_updated -> Nullable<Timestamptz>,
        received_at -> Timestamptz,
        attempts -> Integer,
        not_before -> Timestamptz,
    }
}

diesel::table! {
    qbo_connection_announced (workspace_id) {
        workspace_id -> BigInt,
        realm_id -> Text,
        state -> Text,
        announced_at -> Timestamptz,
    }
}
