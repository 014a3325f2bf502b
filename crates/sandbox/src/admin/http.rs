//! The `/_sandbox` admin API over HTTP, served on every port (Fyle accounts, Fyle data, QBO).
//!
//! Routes (JSON bodies):
//! - `GET  /_sandbox/health`, `GET /_sandbox/credentials`
//! - `GET  /_sandbox/stats[?log=false&since=N]`, `POST /_sandbox/stats/reset`
//! - `GET|POST|DELETE /_sandbox/faults` (POST: a [`FaultRule`]), `POST /_sandbox/webhook_faults`
//! - `POST /_sandbox/clock/advance {"seconds": n}`
//! - `PUT  /_sandbox/qbo/throttle`, `PUT /_sandbox/qbo/webhook`, `PUT /_sandbox/fyle/webhook_secret`
//! - `POST /_sandbox/{fyle,qbo}/expire_tokens`
//! - `POST /_sandbox/fyle/orgs {"org_id"}`, `POST /_sandbox/fyle/orgs/{org}/auth_code`
//! - `POST /_sandbox/fyle/orgs/{org}/events {"resource": "REPORT"|"EXPENSE"|"ORG_SETTING",
//!   "action", "data"?, "reason"?}` — a non-attribute webhook (see `fyle/events.rs`)
//! - `POST /_sandbox/fyle/orgs/{org}/{resource}` create; `PATCH …/{id}` update;
//!   `POST …/{id}/rename {"name"}`, `POST …/{id}/disable`, `POST …/{id}/enable`, `DELETE …/{id}`
//! - `POST /_sandbox/qbo/realms {"realm_id"}`, `POST /_sandbox/qbo/realms/{realm}/auth_code`,
//!   `PUT /_sandbox/qbo/realms/{realm}/company` (a `QboCompany`: country, currency, tax …)
//! - `POST /_sandbox/qbo/realms/{realm}/{Entity}` create (an `Id` may be given); `PATCH …/{id}`;
//!   `POST …/{id}/rename`, `…/disable`, `…/enable`, `…/merge {"into": id}` (`{id}` is merged away);
//!   `DELETE …/{id}` (hard delete → CDC `Deleted`)

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AdminError, FyleControl, QboControl};
use crate::{
    QboWebhookConfig, Shared,
    config::QboCompany,
    faults::{FaultRule, Side, WebhookFaultRule, lock},
    qbo::throttle::ThrottleConfig,
};

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
            .route("/fyle/orgs/{org}/integration", web::get().to(|d: Data, p: web::Path<String>| async move {
                match fyle_ctl(&d).integration(&p) {
                    Some(record) => HttpResponse::Ok().json(record),
                    None => HttpResponse::NotFound().json(json!({"message": "no such org or integration"})),
                }
            }))
            .route("/fyle/orgs/{org}/events", web::post().to(|d: Data, p: web::Path<String>, b: web::Bytes| async move {
                reply(body(&b).and_then(|v| {
                    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
                    let (resource, action) = text("resource").zip(text("action"))
                        .ok_or_else(|| AdminError::BadRequest("resource and action required".into()))?;
                    let data = v.get("data").cloned().unwrap_or_else(|| json!({}));
                    fyle_ctl(&d).emit(&p, &resource, &action, data, text("reason").as_deref())
                }))
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
            .route("/qbo/realms/{realm}/company", web::put().to(|d: Data, p: web::Path<String>, b: web::Bytes| async move {
                reply(parsed::<QboCompany>(&b).and_then(|c| {
                    qbo_ctl(&d).set_company(&p, c.clone())?;
                    Ok(json!(c))
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
        "merge" => body(&b).and_then(|v| {
            let into = v
                .get("into")
                .and_then(Value::as_str)
                .ok_or_else(|| AdminError::BadRequest("into required".into()))?;
            ctl.merge(&realm, &entity, &id, into)
        }),
        other => Err(AdminError::BadRequest(format!("unknown operation {other}"))),
    })
}
