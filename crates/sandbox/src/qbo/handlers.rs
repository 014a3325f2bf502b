//! HTTP handlers of the QBO simulator.
//!
//! Content negotiation: the data API answers JSON only when the request's `Accept` names
//! `application/json`; otherwise (no `Accept`, `*/*`, `application/xml`) it answers XML, as Intuit
//! does. A request without a usable token gets the XML `General Authentication Error` (401, code
//! 100) whatever it accepts, and the 429 throttle body (gate) is XML too — the reference's samples
//! of both are XML, so a client must not assume every error body is JSON **(inferred where
//! Intuit's gateway behaviour is not documented)**. The token endpoint is always JSON. The
//! `qbo_json_only` option answers JSON to everything (ad-hoc use; off in tests).

// Guard helpers return the ready-made error response as `Err`; its size does not matter here.
#![allow(clippy::result_large_err)]

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use serde_json::{Map, Value, json};

use super::{
    auth::{Denied, TokenForm},
    cdc::{self, CdcError},
    company,
    entity::{EntityType, Namespace},
    errors,
    query_parser::parse,
    query_validate::validate,
    realm::WriteError,
    store::QueryOutcome,
    write_rules, xml,
};
use crate::Shared;

/// Registers the QBO routes.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/oauth2/v1/tokens/bearer", web::post().to(token))
        .route("/v3/company/{realm}/query", web::get().to(query_get))
        .route("/v3/company/{realm}/query", web::post().to(query_post))
        .route("/v3/company/{realm}/cdc", web::get().to(cdc_get))
        .route(
            "/v3/company/{realm}/preferences",
            web::get().to(preferences),
        )
        .route("/v3/company/{realm}/{entity}/{id}", web::get().to(read))
        .route("/v3/company/{realm}/{entity}", web::post().to(write));
}

fn json_response(status: u16, body: &Value) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST)).json(body)
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST)
}

/// Does the request accept JSON (or is the sandbox JSON-only)?
pub(crate) fn wants_json(shared: &Shared, req: &HttpRequest) -> bool {
    shared.config.qbo_json_only
        || header(req, "accept")
            .is_some_and(|a| a.to_ascii_lowercase().contains("application/json"))
}

/// A body in the negotiated format.
fn reply(json: bool, status: u16, body: &Value) -> HttpResponse {
    if json {
        json_response(status, body)
    } else {
        HttpResponse::build(status_code(status))
            .content_type("application/xml")
            .body(xml::render(body))
    }
}

/// A gateway error in JSON or XML.
pub(crate) fn gateway_reply(
    shared: &Shared,
    json: bool,
    status: u16,
    err: &errors::GatewayError,
) -> HttpResponse {
    let now = shared.clock.now();
    if json {
        json_response(status, &err.json(now))
    } else {
        HttpResponse::build(status_code(status))
            .content_type("application/xml")
            .body(err.xml(&errors::qbo_time(now, shared.config.qbo_tz_offset_minutes)))
    }
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn token(shared: web::Data<Shared>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let form = TokenForm {
        grant_type: get("grant_type"),
        code: get("code"),
        redirect_uri: get("redirect_uri"),
        refresh_token: get("refresh_token"),
    };
    let now = shared.clock.now();
    let result = shared
        .qbo_write()
        .auth
        .token(header(&req, "authorization"), &form, now);
    let tid = format!("1-{}", uuid::Uuid::new_v4().simple());
    match result {
        Ok(body) => HttpResponse::Ok()
            .insert_header(("intuit_tid", tid))
            .json(body),
        Err((status, body)) => {
            let mut resp = json_response(status, &body);
            if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&tid) {
                resp.headers_mut().insert(
                    actix_web::http::header::HeaderName::from_static("intuit_tid"),
                    v,
                );
            }
            resp
        }
    }
}

/// Checks the bearer token and that the realm exists; returns whether to answer JSON.
fn authorize(shared: &Shared, req: &HttpRequest, realm: &str) -> Result<bool, HttpResponse> {
    let now = shared.clock.now();
    let json = wants_json(shared, req);
    let st = shared.qbo_read();
    let denied = match st.auth.check(header(req, "authorization"), realm, now) {
        Ok(()) if st.realms.contains_key(realm) => return Ok(json),
        Ok(()) | Err(Denied::Forbidden) => (403, errors::FORBIDDEN, json),
        Err(Denied::Expired) => (401, errors::TOKEN_EXPIRED, json),
        Err(Denied::NoToken) => (
            401,
            errors::GENERAL_AUTHENTICATION,
            shared.config.qbo_json_only,
        ),
    };
    drop(st);
    Err(gateway_reply(shared, denied.2, denied.0, &denied.1))
}

fn time(shared: &Shared) -> String {
    errors::qbo_time(shared.clock.now(), shared.config.qbo_tz_offset_minutes)
}

fn run_query(shared: &Shared, realm_id: &str, statement: &str, json: bool) -> HttpResponse {
    let time = time(shared);
    let parsed = match parse(statement.trim()) {
        Ok(q) => q,
        Err(e) => return reply(json, 400, &errors::query_parse_fault(&e.to_string(), &time)),
    };
    let v = match validate(&parsed) {
        Ok(v) => v,
        Err(e) => return reply(json, 400, &errors::query_validation_fault(&e, &time)),
    };
    let st = shared.qbo_read();
    let Some(realm) = st.realms.get(realm_id) else {
        return gateway_reply(shared, json, 403, &errors::FORBIDDEN);
    };
    match realm.table(v.entity).query(&v, realm.tz) {
        Err(e) => reply(json, 400, &errors::query_validation_fault(&e, &time)),
        Ok(QueryOutcome::Count(n)) => reply(
            json,
            200,
            &json!({"QueryResponse": {"totalCount": n}, "time": time}),
        ),
        Ok(QueryOutcome::Page(rows)) if rows.is_empty() => {
            reply(json, 200, &json!({"QueryResponse": {}, "time": time}))
        }
        Ok(QueryOutcome::Page(rows)) if !json => {
            let items: Vec<Value> = rows.iter().map(|e| Value::Object(e.json.clone())).collect();
            let mut page = Map::new();
            page.insert(v.entity.name().to_owned(), Value::Array(items));
            page.insert("startPosition".into(), Value::from(v.start_position));
            page.insert("maxResults".into(), Value::from(rows.len()));
            reply(
                false,
                200,
                &json!({"QueryResponse": Value::Object(page), "time": time}),
            )
        }
        Ok(QueryOutcome::Page(rows)) => {
            let mut out = Vec::with_capacity(rows.len() * 600 + 128);
            out.extend_from_slice(b"{\"QueryResponse\":{\"");
            out.extend_from_slice(v.entity.name().as_bytes());
            out.extend_from_slice(b"\":[");
            for (i, e) in rows.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if serde_json::to_writer(&mut out, &e.json).is_err() {
                    return HttpResponse::InternalServerError().finish();
                }
            }
            let tail = format!(
                "],\"startPosition\":{},\"maxResults\":{}}},\"time\":\"{}\"}}",
                v.start_position,
                rows.len(),
                time
            );
            out.extend_from_slice(tail.as_bytes());
            HttpResponse::Ok()
                .content_type("application/json")
                .body(out)
        }
    }
}

async fn query_get(
    shared: web::Data<Shared>,
    req: HttpRequest,
    realm: web::Path<String>,
) -> HttpResponse {
    let json = match authorize(&shared, &req, &realm) {
        Ok(json) => json,
        Err(resp) => return resp,
    };
    let statement = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "query")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    run_query(&shared, &realm, &statement, json)
}

async fn query_post(
    shared: web::Data<Shared>,
    req: HttpRequest,
    realm: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let json = match authorize(&shared, &req, &realm) {
        Ok(json) => json,
        Err(resp) => return resp,
    };
    run_query(&shared, &realm, &String::from_utf8_lossy(&body), json)
}

async fn cdc_get(
    shared: web::Data<Shared>,
    req: HttpRequest,
    realm_id: web::Path<String>,
) -> HttpResponse {
    let json = match authorize(&shared, &req, &realm_id) {
        Ok(json) => json,
        Err(resp) => return resp,
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let time = time(&shared);
    let now = shared.clock.now().timestamp();
    let st = shared.qbo_read();
    let Some(realm) = st.realms.get(realm_id.as_str()) else {
        return gateway_reply(&shared, json, 403, &errors::FORBIDDEN);
    };
    match cdc::parse_request(realm, get("entities"), get("changedSince"), now) {
        Ok(r) => reply(json, 200, &cdc::respond(realm, &r, &time)),
        Err(CdcError::Missing(field)) => reply(json, 400, &errors::required_missing(field, &time)),
        Err(CdcError::Invalid(detail)) => {
            reply(json, 400, &errors::business_validation(&detail, &time))
        }
    }
}

async fn preferences(
    shared: web::Data<Shared>,
    req: HttpRequest,
    realm_id: web::Path<String>,
) -> HttpResponse {
    let json = match authorize(&shared, &req, &realm_id) {
        Ok(json) => json,
        Err(resp) => return resp,
    };
    let st = shared.qbo_read();
    let Some(realm) = st.realms.get(realm_id.as_str()) else {
        return gateway_reply(&shared, json, 403, &errors::FORBIDDEN);
    };
    let mut body = company::preferences(&realm.company);
    body["time"] = Value::from(time(&shared));
    reply(json, 200, &body)
}

fn unsupported(entity: &str, time: &str, json: bool) -> HttpResponse {
    reply(
        json,
        400,
        &errors::fault(
            "ValidationFault",
            "500",
            "Unsupported Operation",
            &format!("Operation on {entity} is not supported."),
            "",
            time,
        ),
    )
}

async fn read(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (realm_id, entity, id) = path.into_inner();
    let json = match authorize(&shared, &req, &realm_id) {
        Ok(json) => json,
        Err(resp) => return resp,
    };
    let time = time(&shared);
    let st = shared.qbo_read();
    let Some(realm) = st.realms.get(&realm_id) else {
        return gateway_reply(&shared, json, 403, &errors::FORBIDDEN);
    };
    if entity.eq_ignore_ascii_case("companyinfo") {
        let mut body = company::company_info(&realm.company);
        body["time"] = Value::from(time);
        return reply(json, 200, &body);
    }
    let Some(et) = EntityType::from_path(&entity) else {
        return unsupported(&entity, &time, json);
    };
    match id.parse::<u64>().ok().and_then(|n| realm.table(et).get(n)) {
        Some(e) => {
            let mut body = Map::new();
            body.insert(et.name().to_owned(), Value::Object(e.json.clone()));
            body.insert("time".to_owned(), Value::from(time));
            reply(json, 200, &Value::Object(body))
        }
        None => reply(json, 400, &errors::not_found(et.name(), &id, &time)),
    }
}

/// The Fault body of a refused write (sent with HTTP 400).
fn write_error_body(e: &WriteError, entity: &str, time: &str) -> Value {
    match e {
        WriteError::Stale => errors::stale_object(time),
        WriteError::Duplicate(et, name) => errors::duplicate_name(
            et.name(),
            matches!(et.namespace(), Namespace::Party),
            name,
            time,
        ),
        WriteError::Unsupported(property) => errors::unsupported_property(entity, property, time),
        WriteError::NotFound(id) => errors::not_found(entity, id, time),
        WriteError::Required(field) => errors::required_missing(field, time),
        WriteError::Invalid(detail) => errors::business_validation(detail, time),
    }
}

async fn write(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (realm_id, entity) = path.into_inner();
    let json = match authorize(&shared, &req, &realm_id) {
        Ok(json) => json,
        Err(resp) => return resp,
    };
    let time = time(&shared);
    let Some(et) = EntityType::from_path(&entity).filter(|e| e.writable()) else {
        return unsupported(&entity, &time, json);
    };
    let input: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => m,
        _ => {
            let fault = errors::fault(
                "ValidationFault",
                "2500",
                "Invalid Request",
                "Request has invalid or unsupported property",
                "",
                &time,
            );
            return reply(json, 400, &fault);
        }
    };
    // `requestid` makes a retried write idempotent: the first answer is replayed.
    let request_id = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "requestid")
        .map(|(_, v)| (realm_id.clone(), v.into_owned()));
    if let Some(key) = &request_id
        && let Some((status, body)) = shared.qbo_read().replay(key)
    {
        return reply(json, status, &body);
    }
    let now = shared.clock.now().timestamp();
    let result = shared.qbo_apply(|st| {
        let realm = st
            .realms
            .get_mut(&realm_id)
            .ok_or_else(|| WriteError::NotFound(realm_id.clone()))?;
        let updating = input.contains_key("Id");
        write_rules::check(realm, et, &input, !updating)?;
        let (out, event) = if updating {
            realm.update(et, &input, now)?
        } else {
            realm.create(et, &input, now)?
        };
        Ok((out, vec![event]))
    });
    let (status, body) = match result {
        Ok(out) => {
            let mut body = Map::new();
            body.insert(et.name().to_owned(), out);
            body.insert("time".to_owned(), Value::from(time));
            (200, Value::Object(body))
        }
        Err(e) => (400, write_error_body(&e, et.name(), &time)),
    };
    if let Some(key) = request_id {
        shared.qbo_write().remember(key, status, body.clone());
    }
    reply(json, status, &body)
}
