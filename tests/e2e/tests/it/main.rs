//! End-to-end tests against the real local stack (run `make stack-up` or `make test`).

#![allow(clippy::unwrap_used)]

mod coordination;
mod durability;
mod fyle_connection;
mod fyle_pull_faults;
mod fyle_pulls;
mod fyle_reconcile;
mod fyle_webhooks;
mod import_settings;
mod import_to_fyle;
mod ingest_edge;
mod kafka_consumer;
mod kafka_outage;
mod kafka_reader;
mod loop_scenarios;
mod mapping_auto;
mod operability;
mod operations;
mod outbox;
mod prepared_sql;
mod qbo_auto_create;
mod qbo_reconcile;
mod qbo_sync;
mod qbo_webhooks;
mod registry;
mod regressions;
mod shared_budget;
mod unmapped_cards;
mod webhook_auth;
