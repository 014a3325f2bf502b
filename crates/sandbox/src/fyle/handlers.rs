//! HTTP handlers of the Fyle simulator (endpoints F1–F8): the accounts host serves F1–F2 (token,
//! cluster lookup) and the integration-settings service's `PATCH /integrations/`, the cluster
//! data host F3–F8. Neither serves the other's routes (404), as the
//! real `accounts.fylehq.com` and `us1.fylehq.com` do not.

// Guard helpers return the ready-made error response as `Err`; its size does not matter here.
#![allow(clippy::result_large_err)]

use actix_web::{HttpMessage, HttpRequest, HttpResponse, http::StatusCode, web};
use serde_json::{Map, Value, json};

use super::{
    auth::TokenRequest,
    org::{BulkRowError, WriteError},
    resources::{Mode, Resource},
    store::RowId,
};
use crate::{
    Shared,
    gate::{InjectedBulkError, Tenant},
};

/// Registers the routes of the accounts host.
pub(crate) fn configure_accounts(cfg: &mut web::ServiceConfig) {
    cfg.route("/oauth/token", web::post().to(token))
        .route("/oauth/cluster", web::post().to(cluster))
        .route("/oauth/cluster/", web::post().to(cluster))
        .route("/integrations/", web::patch().to(patch_integration))
        .route("/integrations", web::patch().to(patch_integration));
}

/// Registers the routes of the cluster data host.
pub(crate) fn configure_data(cfg: &mut web::ServiceConfig) {
    cfg.route("/platform/v1/spender/my_profile", web::get().to(my_profile))
        .route("/platform/v1/admin/{resource}", web::get().to(list))
        .route("/platform/v1/admin/{resource}", web::post().to(post_one))
        .route(
            "/platform/v1/admin/{resource}/bulk",
            web::post().to(post_bulk),
        )
        .route(
            "/platform/v1/admin/{resource}/delete/bulk",
            web::post().to(delete_bulk),
        );
}

fn respond(status: u16, body: &Value) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST)).json(body)
}

fn message(status: u16, msg: &str) -> HttpResponse {
    respond(status, &json!({"message": msg}))
}

/// The body of a refused write.
pub(crate) fn write_error(e: &WriteError) -> HttpResponse {
    match e {
        WriteError::Validation(fields) => respond(
            400,
            &json!({"data": fields, "error": "ValidationError", "message": null}),
        ),
        WriteError::NotFound => message(404, "Resource not found"),
        WriteError::Integrity(m) => respond(
            400,
            &json!({"data": null, "error": "IntegrityError", "message": m}),
        ),
        WriteError::Bulk(rows) => {
            let data: Vec<Value> = rows
                .iter()
                .map(|BulkRowError { key, message, row }| json!({"key": key, "message": message, "row": row}))
                .collect();
            respond(
                400,
                &json!({"data": data, "error": "BulkError", "message": null}),
            )
        }
    }
}

/// The org of the request's bearer token, or the 401 to send.
fn authorize(shared: &Shared, req: &HttpRequest) -> Result<String, HttpResponse> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let org = shared
        .fyle_read()
        .auth
        .check(header, shared.clock.now())
        .map(str::to_owned)
        .ok_or_else(|| message(401, "invalid token"))?;
    req.extensions_mut().insert(Tenant(org.clone()));
    Ok(org)
}

fn resource(name: &str) -> Result<Resource, HttpResponse> {
    Resource::from_path(name).ok_or_else(|| message(404, "Resource not found"))
}

fn parse_body(body: &[u8]) -> Result<Value, HttpResponse> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut m)) => m
            .remove("data")
            .ok_or_else(|| message(400, "data is required")),
        Ok(_) => Err(message(400, "request body must be a JSON object")),
        Err(e) => Err(message(400, &format!("invalid JSON: {e}"))),
    }
}

/// `PATCH /integrations/` of the integration-settings service (see [`super::integration`]).
async fn patch_integration(
    shared: web::Data<Shared>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let now = shared.clock.now();
    let Some(org) = shared
        .fyle_read()
        .auth
        .check(header, now)
        .map(str::to_owned)
    else {
        return respond(401, &json!({"detail": "Invalid access token"}));
    };
    req.extensions_mut().insert(Tenant(org.clone()));
    let patch = match super::integration::parse_patch(&body) {
        Ok(p) => p,
        Err(answer) => return respond(400, &answer),
    };
    let mut state = shared.fyle_write();
    let record = state
        .orgs
        .get_mut(&org)
        .and_then(|o| o.integration.as_mut());
    HttpResponse::Ok().json(super::integration::apply(record, &patch, now))
}

async fn token(shared: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let req: TokenRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return message(400, &format!("invalid JSON body: {e}")),
    };
    let now = shared.clock.now();
    match shared.fyle_write().auth.token(&req, now) {
        Ok(body) => HttpResponse::Ok().json(body),
        Err((status, body)) => respond(status, &body),
    }
}

async fn cluster(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    match authorize(&shared, &req) {
        Ok(_) => HttpResponse::Ok().json(json!({"cluster_domain": shared.fyle_url()})),
        Err(resp) => resp,
    }
}

async fn my_profile(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    let org_id = match authorize(&shared, &req) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let st = shared.fyle_read();
    let Some(org) = st.orgs.get(&org_id) else {
        return message(404, "Resource not found");
    };
    let p = &org.profile;
    HttpResponse::Ok().json(json!({"data": {
        "org": {"currency": p.currency, "domain": p.domain, "id": p.org_id, "name": p.name},
        "org_id": p.org_id,
        "roles": ["FYLER", "ADMIN"],
        "user": p.admin,
        "user_id": p.admin.get("id").cloned().unwrap_or(Value::Null),
    }}))
}

async fn list(
    shared: web::Data<Shared>,
    req: HttpRequest,
    name: web::Path<String>,
) -> HttpResponse {
    let org_id = match authorize(&shared, &req) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let st = shared.fyle_read();
    let Some(org) = st.orgs.get(&org_id) else {
        return message(404, "Resource not found");
    };
    let result = if name.as_str() == "merchants" {
        org.list_merchants(&pairs)
    } else {
        match resource(&name) {
            Ok(r) => org.list(r, &pairs),
            Err(resp) => return resp,
        }
    };
    match result {
        Ok(bytes) => HttpResponse::Ok()
            .content_type("application/json")
            .body(bytes),
        Err(msg) => message(400, &msg),
    }
}

async fn post_one(
    shared: web::Data<Shared>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let org_id = match authorize(&shared, &req) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let r = match resource(&name) {
        Ok(r) if r.accepts_post() => r,
        Ok(_) => return message(405, "Method not allowed"),
        Err(resp) => return resp,
    };
    let input: Map<String, Value> = match parse_body(&body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return message(400, "data must be an object"),
        Err(resp) => return resp,
    };
    let now = shared.clock.now().timestamp_micros();
    let result = shared.fyle_apply(|st| {
        let org = st.orgs.get_mut(&org_id).ok_or(WriteError::NotFound)?;
        let (out, change) = org.upsert(r, &input, now, Mode::Api)?;
        Ok((out, vec![change]))
    });
    match result {
        Ok(out) => HttpResponse::Ok().json(json!({"data": out})),
        Err(e) => write_error(&e),
    }
}

async fn post_bulk(
    shared: web::Data<Shared>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let org_id = match authorize(&shared, &req) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let r = match resource(&name) {
        Ok(r) if r.accepts_bulk() => r,
        Ok(_) => return message(405, "Method not allowed"),
        Err(resp) => return resp,
    };
    let items = match parse_body(&body) {
        Ok(Value::Array(items)) => items,
        Ok(_) => return message(400, "data must be a list"),
        Err(resp) => return resp,
    };
    let fault = req
        .extensions()
        .get::<InjectedBulkError>()
        .map(|f| (f.row, f.message.clone()));
    let now = shared.clock.now().timestamp_micros();
    let result = shared.fyle_apply(|st| {
        let org = st.orgs.get_mut(&org_id).ok_or(WriteError::NotFound)?;
        Ok(((), org.bulk(r, &items, now, Mode::Api, fault)?))
    });
    match result {
        Ok(()) => HttpResponse::Ok().json(json!({})),
        Err(e) => write_error(&e),
    }
}

async fn delete_bulk(
    shared: web::Data<Shared>,
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let org_id = match authorize(&shared, &req) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let r = match resource(&name) {
        Ok(r @ (Resource::Categories | Resource::Projects | Resource::CostCenters)) => r,
        Ok(_) => return message(405, "Method not allowed"),
        Err(resp) => return resp,
    };
    let items = match parse_body(&body) {
        Ok(Value::Array(items)) => items,
        Ok(_) => return message(400, "data must be a list"),
        Err(resp) => return resp,
    };
    let result = shared.fyle_apply(|st| {
        let org = st.orgs.get_mut(&org_id).ok_or(WriteError::NotFound)?;
        let ids: Vec<(usize, Option<RowId>)> = items
            .iter()
            .enumerate()
            .map(|(i, item)| (i, item.get("id").and_then(RowId::of)))
            .collect();
        let missing: Vec<BulkRowError> = ids
            .iter()
            .filter(|(_, id)| {
                id.as_ref()
                    .is_none_or(|id| org.collection(r).get(id).is_none())
            })
            .map(|(row, _)| BulkRowError {
                key: items[*row].get("id").cloned().unwrap_or(Value::Null),
                message: "Resource not found".into(),
                row: *row,
            })
            .collect();
        if !missing.is_empty() {
            return Err(WriteError::Bulk(missing));
        }
        let mut changes = Vec::new();
        for id in ids.into_iter().filter_map(|(_, id)| id) {
            changes.push(org.delete(r, &id)?);
        }
        Ok(((), changes))
    });
    match result {
        Ok(()) => HttpResponse::Ok().json(json!({})),
        Err(e) => write_error(&e),
    }
}
