//! The Fyle Platform API simulator (reference §1–2, endpoints F1–F9), and the integration-settings
//! service the integrations report counts to ([`integration`]).
//!
//! State: a map of orgs (each with its collections, see [`org`]) and the OAuth state ([`auth`]),
//! behind one `RwLock` in the shared sandbox state. Reads (lists) take the read lock and serialise
//! the page straight from the stored rows; writes take the write lock, apply, compute the webhook
//! messages from the org's subscriptions and hand them to the delivery queue after unlocking.

pub mod auth;
mod defaults;
pub mod events;
pub mod handlers;
pub mod integration;
pub mod list_filter;
pub mod list_query;
pub mod org;
pub mod resources;
pub mod store;
pub mod webhooks;

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};

use self::{
    auth::{FyleAuth, FyleClient},
    org::{Change, FyleOrg, OrgProfile},
};
use crate::{config::FyleMess, delivery::OutgoingWebhook};

/// Everything the Fyle simulator stores.
#[derive(Debug)]
pub struct FyleState {
    /// Orgs by id.
    pub orgs: BTreeMap<String, FyleOrg>,
    /// OAuth clients and tokens.
    pub auth: FyleAuth,
    /// Optional webhook signing secret.
    pub webhook_secret: Option<String>,
    /// Timestamp and list-order mess, copied into every org added later.
    pub mess: FyleMess,
}

impl FyleState {
    /// Empty state.
    pub fn new(access_ttl: Duration, webhook_secret: Option<String>) -> Self {
        Self {
            orgs: BTreeMap::new(),
            auth: FyleAuth::new(access_ttl),
            webhook_secret,
            mess: FyleMess::default(),
        }
    }

    /// Adds an org (or returns the client of an existing one).
    pub fn add_org(&mut self, profile: OrgProfile) -> FyleClient {
        let id = profile.org_id.clone();
        let mess = self.mess;
        self.orgs.entry(id.clone()).or_insert_with(|| {
            let mut org = FyleOrg::new(profile);
            org.mess = mess;
            org
        });
        match self.auth.clients().into_iter().find(|c| c.org_id == id) {
            Some(c) => c,
            None => self.auth.register(&id),
        }
    }

    /// The webhook POSTs for a list of changes.
    pub(crate) fn messages(&self, changes: &[Change], now: DateTime<Utc>) -> Vec<OutgoingWebhook> {
        let mut out = Vec::new();
        for change in changes {
            if let Some(org) = self.orgs.get(&change.org_id) {
                out.extend(webhooks::messages(
                    org,
                    change,
                    self.webhook_secret.as_deref(),
                    now,
                ));
            }
        }
        out
    }
}

/// A default org profile for an org id.
pub fn profile(org_id: &str) -> OrgProfile {
    OrgProfile {
        org_id: org_id.to_owned(),
        name: "Fyle".to_owned(),
        currency: "USD".to_owned(),
        domain: "fylehq.com".to_owned(),
        admin: serde_json::json!({"id": "usqywo0f3nBY", "email": "admin@example.com", "full_name": "Ada Admin"}),
    }
}
