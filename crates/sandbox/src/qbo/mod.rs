//! The QuickBooks Online Accounting API simulator (reference §3, endpoints Q1–Q7).
//!
//! State: realms (companies, see [`realm`]) and the OAuth state ([`auth`]) behind one `RwLock` in
//! the shared sandbox state. Queries ([`query_parser`] → [`store`]) take the read lock and render
//! the page straight from the stored objects; writes take the write lock and queue webhook events
//! ([`webhooks`]) after unlocking. Throttling ([`throttle`]) happens in the gate before a handler.

pub mod auth;
pub mod cdc;
pub mod entity;
pub mod errors;
pub(crate) mod handlers;
pub mod query_lexer;
pub mod query_parser;
pub mod query_validate;
pub mod realm;
pub mod store;
pub mod throttle;
pub mod webhooks;

use std::{collections::BTreeMap, time::Duration};

use self::{auth::QboAuth, realm::Realm};

/// Everything the QBO simulator stores.
#[derive(Debug)]
pub struct QboState {
    /// Companies by realm id.
    pub realms: BTreeMap<String, Realm>,
    /// OAuth state.
    pub auth: QboAuth,
    tz_offset_minutes: i32,
}

impl QboState {
    /// Empty state.
    pub fn new(access_ttl: Duration, refresh_grace: Duration, tz_offset_minutes: i32) -> Self {
        Self {
            realms: BTreeMap::new(),
            auth: QboAuth::new(access_ttl, refresh_grace),
            tz_offset_minutes,
        }
    }

    /// Adds a realm (idempotent) and connects it; returns its current refresh token.
    pub fn add_realm(&mut self, realm_id: &str) -> String {
        let tz = self.tz_offset_minutes;
        self.realms
            .entry(realm_id.to_owned())
            .or_insert_with(|| Realm::new(realm_id, tz));
        self.auth.connect(realm_id)
    }
}
