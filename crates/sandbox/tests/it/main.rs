//! Contract tests of the sandboxes over real HTTP: each test starts its own sandbox in process on
//! port 0 and talks to it with reqwest, as the services under test will.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod binary;
mod common;
mod faults_and_stats;
mod fyle_api;
mod fyle_events;
mod fyle_pagination;
mod fyle_races;
mod qbo_auth;
mod qbo_cdc;
mod qbo_formats;
mod qbo_query;
mod qbo_strict;
mod qbo_webhooks;
mod qbo_writes;
mod throttle;
mod variety;
mod webhooks;
