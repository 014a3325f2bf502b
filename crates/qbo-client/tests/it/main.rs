//! The QBO client over real HTTP against the QBO simulator (`attrsync_sandbox`), started in
//! process on free ports for each test: rotating refresh tokens, the query language, CDC,
//! throttling (500/min and 10 in flight, shrunk where a test needs it), faults in JSON and XML,
//! and the admin API to shape the realm.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod auth;
mod common;
mod limits;
mod queries;
mod rotation;
mod writes_and_cdc;
