//! The QuickBooks Online Accounting API simulator (reference §3, endpoints Q1–Q7).
//!
//! State: realms (companies, see [`realm`]) and the OAuth state ([`auth`]) behind one `RwLock` in
//! the shared sandbox state. Queries ([`query_parser`] → [`store`]) take the read lock and render
//! the page straight from the stored objects; writes take the write lock and queue webhook events
//! ([`webhooks`]) after unlocking. Throttling ([`throttle`]) happens in the gate before a handler.

pub mod auth;
pub mod cdc;
pub mod company;
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
pub mod write_rules;
pub mod xml;

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::Duration,
};

use serde_json::Value;

use self::{auth::QboAuth, realm::Realm};

/// Everything the QBO simulator stores.
#[derive(Debug)]
pub struct QboState {
    /// Companies by realm id.
    pub realms: BTreeMap<String, Realm>,
    /// OAuth state.
    pub auth: QboAuth,
    tz_offset_minutes: i32,
    /// Answers to writes that carried a `requestid`, per realm, oldest first for eviction.
    replies: HashMap<(String, String), (u16, Value)>,
    reply_order: VecDeque<(String, String)>,
}

/// Remembered `requestid` answers (older ones are forgotten).
pub const REQUEST_ID_MEMORY: usize = 10_000;

impl QboState {
    /// Empty state.
    pub fn new(access_ttl: Duration, refresh_grace: Duration, tz_offset_minutes: i32) -> Self {
        Self {
            realms: BTreeMap::new(),
            auth: QboAuth::new(access_ttl, refresh_grace),
            tz_offset_minutes,
            replies: HashMap::new(),
            reply_order: VecDeque::new(),
        }
    }

    /// The answer given earlier to a write with this `(realm, requestid)`.
    pub fn replay(&self, key: &(String, String)) -> Option<(u16, Value)> {
        self.replies.get(key).cloned()
    }

    /// Remembers the answer to a write with a `requestid`.
    pub fn remember(&mut self, key: (String, String), status: u16, body: Value) {
        if self.replies.insert(key.clone(), (status, body)).is_none() {
            self.reply_order.push_back(key);
        }
        while self.reply_order.len() > REQUEST_ID_MEMORY {
            if let Some(old) = self.reply_order.pop_front() {
                self.replies.remove(&old);
            }
        }
    }

    /// Adds a realm (idempotent) and connects it at `now`; returns its current refresh token.
    pub fn add_realm(&mut self, realm_id: &str, now: chrono::DateTime<chrono::Utc>) -> String {
        let tz = self.tz_offset_minutes;
        self.realms
            .entry(realm_id.to_owned())
            .or_insert_with(|| Realm::new(realm_id, tz));
        self.auth.connect(realm_id, now)
    }
}
