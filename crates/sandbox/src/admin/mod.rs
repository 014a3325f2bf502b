//! The sandbox's own control surface: in-process controls ([`FyleControl`], [`QboControl`]) and the
//! same operations over HTTP under `/_sandbox/...` on every port (no authentication; never counted
//! in stats; never subject to faults).
//!
//! Changes made here go through the same rules as API writes — `updated_at` / `LastUpdatedTime` /
//! `SyncToken` move and webhooks fire — so a test can play "someone changed it in Fyle/QBO".
//!
//! The HTTP routes are listed in the docs of `admin/http.rs`.

mod http;

use std::sync::Arc;

use serde_json::{Map, Value, json};

pub(crate) use self::http::configure;
use crate::{
    Shared,
    config::QboCompany,
    faults::Side,
    fyle::{
        self,
        auth::FyleClient,
        org::WriteError as FyleWriteError,
        resources::{Mode, Resource},
        store::RowId,
    },
    qbo::{entity::EntityType, realm::WriteError as QboWriteError},
};

/// Why an admin operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AdminError {
    /// No such org or realm.
    #[error("unknown org or realm {0}")]
    UnknownTenant(String),
    /// No such resource or entity type.
    #[error("unknown resource {0}")]
    UnknownResource(String),
    /// Fyle refused the change.
    #[error("fyle refused the change: {0:?}")]
    Fyle(FyleWriteError),
    /// QBO refused the change.
    #[error("qbo refused the change: {0:?}")]
    Qbo(QboWriteError),
    /// Malformed request.
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl AdminError {
    pub(crate) fn status(&self) -> u16 {
        match self {
            AdminError::UnknownTenant(_) | AdminError::UnknownResource(_) => 404,
            AdminError::Fyle(FyleWriteError::NotFound)
            | AdminError::Qbo(QboWriteError::NotFound(_)) => 404,
            _ => 400,
        }
    }
}

fn object(v: Value) -> Result<Map<String, Value>, AdminError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(AdminError::BadRequest("body must be a JSON object".into())),
    }
}

/// Drives the Fyle side in process.
#[derive(Debug, Clone)]
pub struct FyleControl {
    shared: Arc<Shared>,
}

impl FyleControl {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn resource(name: &str) -> Result<Resource, AdminError> {
        Resource::from_path(name).ok_or_else(|| AdminError::UnknownResource(name.to_owned()))
    }

    fn write(
        &self,
        org: &str,
        f: impl FnOnce(
            &mut fyle::org::FyleOrg,
            i64,
        ) -> Result<(Value, Vec<fyle::org::Change>), FyleWriteError>,
    ) -> Result<Value, AdminError> {
        let now = self.shared.clock.now().timestamp_micros();
        let mut unknown = false;
        let r = self.shared.fyle_apply(|st| match st.orgs.get_mut(org) {
            Some(o) => f(o, now),
            None => {
                unknown = true;
                Err(FyleWriteError::NotFound)
            }
        });
        r.map_err(|e| {
            if unknown {
                AdminError::UnknownTenant(org.to_owned())
            } else {
                AdminError::Fyle(e)
            }
        })
    }

    /// Adds an org; returns its client credentials.
    pub fn add_org(&self, org_id: &str) -> FyleClient {
        self.shared.fyle_write().add_org(fyle::profile(org_id))
    }

    /// Creates an object (any keys allowed); returns it.
    pub fn create(&self, org: &str, resource: &str, data: Value) -> Result<Value, AdminError> {
        let r = Self::resource(resource)?;
        let mut input = object(data)?;
        input.remove("id");
        self.write(org, |o, now| {
            o.upsert(r, &input, now, Mode::Admin)
                .map(|(v, c)| (v, vec![c]))
        })
    }

    /// Merges `patch` into an object; returns it.
    pub fn update(
        &self,
        org: &str,
        resource: &str,
        id: &str,
        patch: Value,
    ) -> Result<Value, AdminError> {
        let r = Self::resource(resource)?;
        let mut input = object(patch)?;
        let id =
            RowId::of(&Value::from(id)).ok_or_else(|| AdminError::BadRequest("bad id".into()))?;
        input.insert("id".into(), id.to_json());
        self.write(org, |o, now| {
            o.upsert(r, &input, now, Mode::Admin)
                .map(|(v, c)| (v, vec![c]))
        })
    }

    /// Renames an object (its `name`, `field_name` for expense fields, …).
    pub fn rename(
        &self,
        org: &str,
        resource: &str,
        id: &str,
        name: &str,
    ) -> Result<Value, AdminError> {
        let key = Self::resource(resource)?.name_key();
        self.update(org, resource, id, json!({ key: name }))
    }

    /// Enables or disables an object.
    pub fn set_enabled(
        &self,
        org: &str,
        resource: &str,
        id: &str,
        enabled: bool,
    ) -> Result<Value, AdminError> {
        self.update(org, resource, id, json!({"is_enabled": enabled}))
    }

    /// Hard-deletes an object (`DELETED` webhook).
    pub fn delete(&self, org: &str, resource: &str, id: &str) -> Result<(), AdminError> {
        let r = Self::resource(resource)?;
        let id =
            RowId::of(&Value::from(id)).ok_or_else(|| AdminError::BadRequest("bad id".into()))?;
        self.write(org, |o, _| o.delete(r, &id).map(|c| (Value::Null, vec![c])))
            .map(|_| ())
    }

    /// An object as the list endpoint serves it.
    pub fn get(&self, org: &str, resource: &str, id: &str) -> Option<Value> {
        let r = Resource::from_path(resource)?;
        let id = RowId::of(&Value::from(id))?;
        let st = self.shared.fyle_read();
        st.orgs
            .get(org)?
            .collection(r)
            .get(&id)
            .map(|row| Value::Object(row.json.clone()))
    }

    /// The org's record in Fyle's integration-settings service (what integrations PATCHed).
    pub fn integration(&self, org: &str) -> Option<Value> {
        let st = self.shared.fyle_read();
        st.orgs
            .get(org)?
            .integration
            .as_ref()
            .map(crate::fyle::integration::Integration::to_json)
    }

    /// The ids of every object of a resource, as the list endpoint renders them.
    pub fn ids(&self, org: &str, resource: &str) -> Vec<String> {
        let st = self.shared.fyle_read();
        match (st.orgs.get(org), Resource::from_path(resource)) {
            (Some(o), Some(r)) => o
                .collection(r)
                .iter()
                .map(|row| match row.id.to_json() {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Number of objects of a resource.
    pub fn count(&self, org: &str, resource: &str) -> usize {
        let st = self.shared.fyle_read();
        match (st.orgs.get(org), Resource::from_path(resource)) {
            (Some(o), Some(r)) => o.collection(r).len(),
            _ => 0,
        }
    }

    /// Adds `n` generated objects of a resource (see [`crate::seed`]); no webhooks fire.
    pub fn generate(&self, org: &str, resource: &str, n: usize) -> Result<(), AdminError> {
        let r = Self::resource(resource)?;
        let mut st = self.shared.fyle_write();
        let o = st
            .orgs
            .get_mut(org)
            .ok_or_else(|| AdminError::UnknownTenant(org.to_owned()))?;
        crate::seed::generate_fyle(o, r, n);
        Ok(())
    }

    /// Sends a REPORT, EXPENSE or ORG_SETTING webhook to the org's subscriptions (see
    /// [`crate::fyle::events`]); returns the body sent.
    pub fn emit(
        &self,
        org: &str,
        resource: &str,
        action: &str,
        data: Value,
        reason: Option<&str>,
    ) -> Result<Value, AdminError> {
        let data = object(data)?;
        let now = self.shared.clock.now();
        let (body, messages) = {
            let st = self.shared.fyle_read();
            let o = st
                .orgs
                .get(org)
                .ok_or_else(|| AdminError::UnknownTenant(org.to_owned()))?;
            let body = fyle::events::event_body(&o.profile, resource, action, &data, reason, now)
                .map_err(AdminError::BadRequest)?;
            let bytes = serde_json::to_vec(&body).unwrap_or_default();
            let messages =
                fyle::webhooks::deliveries(o, resource, &bytes, st.webhook_secret.as_deref(), now);
            (body, messages)
        };
        self.shared.fyle_send(messages);
        Ok(body)
    }

    /// A one-time authorization code.
    pub fn issue_code(&self, org: &str) -> String {
        self.shared.fyle_write().auth.issue_code(org)
    }

    /// An access token without the OAuth round trip.
    pub fn access_token(&self, org: &str) -> String {
        let now = self.shared.clock.now();
        self.shared.fyle_write().auth.issue_access(org, now)
    }

    /// Expires every Fyle access token.
    pub fn expire_tokens(&self) {
        self.shared.expire_tokens(Side::Fyle);
    }
}

/// Drives the QBO side in process.
#[derive(Debug, Clone)]
pub struct QboControl {
    shared: Arc<Shared>,
}

impl QboControl {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn entity(name: &str) -> Result<EntityType, AdminError> {
        EntityType::from_path(name).ok_or_else(|| AdminError::UnknownResource(name.to_owned()))
    }

    fn write(
        &self,
        realm: &str,
        f: impl FnOnce(
            &mut crate::qbo::realm::Realm,
            i64,
        ) -> Result<(Value, crate::qbo::realm::QboEvent), QboWriteError>,
    ) -> Result<Value, AdminError> {
        let now = self.shared.clock.now().timestamp();
        let mut unknown = false;
        let r = self.shared.qbo_apply(|st| match st.realms.get_mut(realm) {
            Some(r) => f(r, now).map(|(v, e)| (v, vec![e])),
            None => {
                unknown = true;
                Err(QboWriteError::NotFound(realm.to_owned()))
            }
        });
        r.map_err(|e| {
            if unknown {
                AdminError::UnknownTenant(realm.to_owned())
            } else {
                AdminError::Qbo(e)
            }
        })
    }

    fn id(id: &str) -> Result<u64, AdminError> {
        id.parse()
            .map_err(|_| AdminError::BadRequest(format!("bad id {id}")))
    }

    /// Adds a realm; returns its current refresh token.
    pub fn add_realm(&self, realm: &str) -> String {
        let now = self.shared.clock.now();
        self.shared.qbo_write().add_realm(realm, now)
    }

    /// Creates an entity (an `Id` in `data` is honoured); returns it.
    pub fn create(&self, realm: &str, entity: &str, data: Value) -> Result<Value, AdminError> {
        let et = Self::entity(entity)?;
        let input = object(data)?;
        let id = match input.get("Id") {
            Some(v) => Some(
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
                    .parse()
                    .map_err(|_| AdminError::BadRequest("bad Id".into()))?,
            ),
            None => None,
        };
        self.write(realm, |r, now| r.create_as(et, id, &input, now))
    }

    /// Stores a fully formed entity as fixture data: no checks, no webhook.
    pub fn load(&self, realm: &str, entity: &str, data: Value) -> Result<(), AdminError> {
        let et = Self::entity(entity)?;
        let json = object(data)?;
        let mut st = self.shared.qbo_write();
        let r = st
            .realms
            .get_mut(realm)
            .ok_or_else(|| AdminError::UnknownTenant(realm.to_owned()))?;
        r.load(et, json);
        Ok(())
    }

    /// Applies a patch (no `SyncToken` needed); returns the entity.
    pub fn update(
        &self,
        realm: &str,
        entity: &str,
        id: &str,
        patch: Value,
    ) -> Result<Value, AdminError> {
        let et = Self::entity(entity)?;
        let id = Self::id(id)?;
        let patch = object(patch)?;
        self.write(realm, |r, now| r.patch(et, id, &patch, now))
    }

    /// Renames an entity (`Name` or `DisplayName`).
    pub fn rename(
        &self,
        realm: &str,
        entity: &str,
        id: &str,
        name: &str,
    ) -> Result<Value, AdminError> {
        let key = Self::entity(entity)?.name_field();
        self.update(realm, entity, id, json!({ key: name }))
    }

    /// Activates or deactivates an entity (deactivation appends `" (deleted)"`).
    pub fn set_active(
        &self,
        realm: &str,
        entity: &str,
        id: &str,
        active: bool,
    ) -> Result<Value, AdminError> {
        self.update(realm, entity, id, json!({"Active": active}))
    }

    /// Merges entity `from` into `into` (a `Merge` webhook with `deletedId`); returns the survivor.
    pub fn merge(
        &self,
        realm: &str,
        entity: &str,
        from: &str,
        into: &str,
    ) -> Result<Value, AdminError> {
        let et = Self::entity(entity)?;
        let (from, into) = (Self::id(from)?, Self::id(into)?);
        self.write(realm, |r, now| r.merge(et, from, into, now))
    }

    /// Hard-deletes an entity.
    pub fn delete(&self, realm: &str, entity: &str, id: &str) -> Result<(), AdminError> {
        let et = Self::entity(entity)?;
        let id = Self::id(id)?;
        self.write(realm, |r, now| {
            r.delete(et, id, now).map(|e| (Value::Null, e))
        })
        .map(|_| ())
    }

    /// An entity as served.
    pub fn get(&self, realm: &str, entity: &str, id: &str) -> Option<Value> {
        let et = EntityType::from_path(entity)?;
        let st = self.shared.qbo_read();
        st.realms
            .get(realm)?
            .table(et)
            .get(id.parse().ok()?)
            .map(|e| Value::Object(e.json.clone()))
    }

    /// Adds `n` generated entities of a type (see [`crate::seed`]); no webhooks fire.
    pub fn generate(&self, realm: &str, entity: &str, n: usize) -> Result<(), AdminError> {
        let et = Self::entity(entity)?;
        let mut st = self.shared.qbo_write();
        let r = st
            .realms
            .get_mut(realm)
            .ok_or_else(|| AdminError::UnknownTenant(realm.to_owned()))?;
        crate::seed::generate_qbo(r, et, n);
        Ok(())
    }

    /// Replaces a realm's company settings (`CompanyInfo`, `Preferences`).
    pub fn set_company(&self, realm: &str, company: QboCompany) -> Result<(), AdminError> {
        let mut st = self.shared.qbo_write();
        let r = st
            .realms
            .get_mut(realm)
            .ok_or_else(|| AdminError::UnknownTenant(realm.to_owned()))?;
        r.company = company;
        Ok(())
    }

    /// A one-time authorization code.
    pub fn issue_code(&self, realm: &str) -> String {
        self.shared.qbo_write().auth.issue_code(realm)
    }

    /// An access token without the OAuth round trip.
    pub fn access_token(&self, realm: &str) -> String {
        let now = self.shared.clock.now();
        self.shared.qbo_write().auth.issue_access(realm, now)
    }

    /// The realm's current refresh token.
    pub fn refresh_token(&self, realm: &str) -> Option<String> {
        self.shared
            .qbo_read()
            .auth
            .current_refresh(realm)
            .map(str::to_owned)
    }

    /// Expires every QBO access token.
    pub fn expire_tokens(&self) {
        self.shared.expire_tokens(Side::Qbo);
    }
}
