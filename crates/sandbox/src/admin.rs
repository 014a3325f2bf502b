//! The sandbox's own control surface: in-process controls ([`FyleControl`], [`QboControl`]) and the
//! same operations over HTTP under `/_sandbox/...` on both ports (no authentication; never counted
//! in stats; never subject to faults).
//!
//! Changes made here go through the same rules as API writes — `updated_at` / `LastUpdatedTime` /
//! `SyncToken` move and webhooks fire — so a test can play "someone changed it in Fyle/QBO".
//!
//! HTTP routes (JSON bodies):
//! - `GET  /_sandbox/health`, `GET /_sandbox/credentials`
//! - `GET  /_sandbox/stats[?log=false&since=N]`, `POST /_sandbox/stats/reset`
//! - `GET|POST|DELETE /_sandbox/faults` (POST: a [`FaultRule`]), `POST /_sandbox/webhook_faults`
//! - `POST /_sandbox/clock/advance {"seconds": n}`
//! - `PUT  /_sandbox/qbo/throttle`, `PUT /_sandbox/qbo/webhook`, `PUT /_sandbox/fyle/webhook_secret`
//! - `POST /_sandbox/{fyle,qbo}/expire_tokens`
//! - `POST /_sandbox/fyle/orgs {"org_id"}`, `POST /_sandbox/fyle/orgs/{org}/auth_code`
//! - `POST /_sandbox/fyle/orgs/{org}/{resource}` create; `PATCH …/{id}` update;
//!   `POST …/{id}/rename {"name"}`, `POST …/{id}/disable`, `POST …/{id}/enable`, `DELETE …/{id}`
//! - `POST /_sandbox/qbo/realms {"realm_id"}`, `POST /_sandbox/qbo/realms/{realm}/auth_code`
//! - `POST /_sandbox/qbo/realms/{realm}/{Entity}` create (an `Id` may be given); `PATCH …/{id}`;
//!   `POST …/{id}/rename`, `…/disable`, `…/enable`; `DELETE …/{id}` (hard delete → CDC `Deleted`)

use std::{sync::Arc, time::Duration};

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{
    QboWebhookConfig, Shared,
    faults::{FaultRule, Side, WebhookFaultRule, lock},
    fyle::{
        self,
        auth::FyleClient,
        org::WriteError as FyleWriteError,
        resources::{Mode, Resource},
        store::RowId,
    },
    qbo::{entity::EntityType, realm::WriteError as QboWriteError, throttle::ThrottleConfig},
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
    fn status(&self) -> u16 {
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
        self.shared.qbo_write().add_realm(realm)
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

// ---------------------------------------------------------------------------------------------
// HTTP

type Data = web::Data<Shared>;

fn reply(r: Result<Value, AdminError>) -> HttpResponse {
    match r {
        Ok(v) => HttpResponse::Ok().json(v),
        Err(e) => HttpResponse::build(
            actix_web::http::StatusCode::from_u16(e.status()).unwrap_or_default(),
        )
        .json(json!({"error": e.to_string()})),
    }
}

fn body(bytes: &[u8]) -> Result<Value, AdminError> {
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes).map_err(|e| AdminError::BadRequest(e.to_string()))
}

fn parsed<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(bytes).map_err(|e| AdminError::BadRequest(e.to_string()))
}

fn fyle_ctl(d: &Data) -> FyleControl {
    FyleControl::new(d.clone().into_inner())
}

fn qbo_ctl(d: &Data) -> QboControl {
    QboControl::new(d.clone().into_inner())
}

/// Registers the `/_sandbox` routes.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/_sandbox")
            .route("/health", web::get().to(|| async { HttpResponse::Ok().json(json!({"status": "ok"})) }))
            .route("/credentials", web::get().to(|d: Data| async move { HttpResponse::Ok().json(d.credentials()) }))
            .route("/stats", web::get().to(stats))
            .route("/stats/reset", web::post().to(|d: Data| async move {
                d.stats.reset();
                HttpResponse::Ok().json(json!({}))
            }))
            .route("/faults", web::get().to(|d: Data| async move {
                let (endpoint, webhook) = d.faults.list();
                HttpResponse::Ok().json(json!({"endpoint": endpoint, "webhook": webhook}))
            }))
            .route("/faults", web::post().to(|d: Data, b: web::Bytes| async move {
                reply(parsed::<FaultRule>(&b).map(|r| {
                    d.faults.add(r);
                    json!({})
                }))
            }))
            .route("/faults", web::delete().to(|d: Data| async move {
                d.faults.clear();
                HttpResponse::Ok().json(json!({}))
            }))
            .route("/webhook_faults", web::post().to(|d: Data, b: web::Bytes| async move {
                reply(parsed::<WebhookFaultRule>(&b).map(|r| {
                    d.faults.add_webhook(r);
                    json!({})
                }))
            }))
            .route("/clock/advance", web::post().to(|d: Data, b: web::Bytes| async move {
                reply(body(&b).and_then(|v| {
                    let secs = v.get("seconds").and_then(Value::as_f64).ok_or_else(|| AdminError::BadRequest("seconds required".into()))?;
                    d.clock.advance(Duration::from_secs_f64(secs.max(0.0)));
                    Ok(json!({"now": d.clock.now()}))
                }))
            }))
            .route("/qbo/throttle", web::put().to(|d: Data, b: web::Bytes| async move {
                reply(parsed::<ThrottleConfig>(&b).map(|c| {
                    d.qbo_throttle.set_config(c);
                    json!(c)
                }))
            }))
            .route("/qbo/webhook", web::put().to(|d: Data, b: web::Bytes| async move {
                reply(parsed::<QboWebhookConfig>(&b).map(|c| {
                    *lock(&d.qbo_webhook) = c.clone();
                    json!(c)
                }))
            }))
            .route("/fyle/webhook_secret", web::put().to(|d: Data, b: web::Bytes| async move {
                reply(body(&b).map(|v| {
                    let secret = v.get("secret").and_then(Value::as_str).map(str::to_owned);
                    d.fyle_write().webhook_secret = secret;
                    json!({})
                }))
            }))
            .route("/fyle/expire_tokens", web::post().to(|d: Data| async move {
                d.expire_tokens(Side::Fyle);
                HttpResponse::Ok().json(json!({}))
            }))
            .route("/qbo/expire_tokens", web::post().to(|d: Data| async move {
                d.expire_tokens(Side::Qbo);
                HttpResponse::Ok().json(json!({}))
            }))
            .route("/fyle/orgs", web::post().to(|d: Data, b: web::Bytes| async move {
                reply(body(&b).and_then(|v| {
                    let org = v.get("org_id").and_then(Value::as_str).ok_or_else(|| AdminError::BadRequest("org_id required".into()))?;
                    Ok(json!(fyle_ctl(&d).add_org(org)))
                }))
            }))
            .route("/fyle/orgs/{org}/auth_code", web::post().to(|d: Data, p: web::Path<String>| async move {
                HttpResponse::Ok().json(json!({"code": fyle_ctl(&d).issue_code(&p)}))
            }))
            .route("/fyle/orgs/{org}/{resource}", web::post().to(|d: Data, p: web::Path<(String, String)>, b: web::Bytes| async move {
                reply(body(&b).and_then(|v| fyle_ctl(&d).create(&p.0, &p.1, v)))
            }))
            .route("/fyle/orgs/{org}/{resource}/{id}", web::patch().to(|d: Data, p: web::Path<(String, String, String)>, b: web::Bytes| async move {
                reply(body(&b).and_then(|v| fyle_ctl(&d).update(&p.0, &p.1, &p.2, v)))
            }))
            .route("/fyle/orgs/{org}/{resource}/{id}", web::delete().to(|d: Data, p: web::Path<(String, String, String)>| async move {
                reply(fyle_ctl(&d).delete(&p.0, &p.1, &p.2).map(|()| json!({})))
            }))
            .route("/fyle/orgs/{org}/{resource}/{id}/{op}", web::post().to(fyle_op))
            .route("/qbo/realms", web::post().to(|d: Data, b: web::Bytes| async move {
                reply(body(&b).and_then(|v| {
                    let realm = v.get("realm_id").and_then(Value::as_str).ok_or_else(|| AdminError::BadRequest("realm_id required".into()))?;
                    Ok(json!({"realm_id": realm, "refresh_token": qbo_ctl(&d).add_realm(realm)}))
                }))
            }))
            .route("/qbo/realms/{realm}/auth_code", web::post().to(|d: Data, p: web::Path<String>| async move {
                HttpResponse::Ok().json(json!({"code": qbo_ctl(&d).issue_code(&p)}))
            }))
            .route("/qbo/realms/{realm}/{entity}", web::post().to(|d: Data, p: web::Path<(String, String)>, b: web::Bytes| async move {
                reply(body(&b).and_then(|v| qbo_ctl(&d).create(&p.0, &p.1, v)))
            }))
            .route("/qbo/realms/{realm}/{entity}/{id}", web::patch().to(|d: Data, p: web::Path<(String, String, String)>, b: web::Bytes| async move {
                reply(body(&b).and_then(|v| qbo_ctl(&d).update(&p.0, &p.1, &p.2, v)))
            }))
            .route("/qbo/realms/{realm}/{entity}/{id}", web::delete().to(|d: Data, p: web::Path<(String, String, String)>| async move {
                reply(qbo_ctl(&d).delete(&p.0, &p.1, &p.2).map(|()| json!({})))
            }))
            .route("/qbo/realms/{realm}/{entity}/{id}/{op}", web::post().to(qbo_op)),
    );
}

async fn stats(d: Data, req: HttpRequest) -> HttpResponse {
    let q: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let with_log = get("log") != Some("false");
    let since = get("since").and_then(|s| s.parse().ok()).unwrap_or(0);
    HttpResponse::Ok().json(d.stats.snapshot(with_log, since))
}

async fn fyle_op(
    d: Data,
    p: web::Path<(String, String, String, String)>,
    b: web::Bytes,
) -> HttpResponse {
    let (org, resource, id, op) = p.into_inner();
    let ctl = fyle_ctl(&d);
    reply(match op.as_str() {
        "rename" => body(&b).and_then(|v| {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| AdminError::BadRequest("name required".into()))?;
            ctl.rename(&org, &resource, &id, name)
        }),
        "disable" => ctl.set_enabled(&org, &resource, &id, false),
        "enable" => ctl.set_enabled(&org, &resource, &id, true),
        other => Err(AdminError::BadRequest(format!("unknown operation {other}"))),
    })
}

async fn qbo_op(
    d: Data,
    p: web::Path<(String, String, String, String)>,
    b: web::Bytes,
) -> HttpResponse {
    let (realm, entity, id, op) = p.into_inner();
    let ctl = qbo_ctl(&d);
    reply(match op.as_str() {
        "rename" => body(&b).and_then(|v| {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| AdminError::BadRequest("name required".into()))?;
            ctl.rename(&realm, &entity, &id, name)
        }),
        "disable" => ctl.set_active(&realm, &entity, &id, false),
        "enable" => ctl.set_active(&realm, &entity, &id, true),
        other => Err(AdminError::BadRequest(format!("unknown operation {other}"))),
    })
}
