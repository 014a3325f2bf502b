//! HTTP handlers of the QBO simulator.

// Guard helpers return the ready-made error response as `Err`; its size does not matter here.
#![allow(clippy::result_large_err)]

use actix_web::{HttpRequest, HttpResponse, http::StatusCode, web};
use serde_json::{Map, Value, json};

use super::{
    auth::{Denied, TokenForm},
    cdc::{self, CdcError},
    entity::EntityType,
    errors,
    query_parser::parse,
    query_validate::validate,
    realm::{Realm, WriteError},
    store::QueryOutcome,
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

/// Checks the bearer token and that the realm exists.
fn authorize(shared: &Shared, req: &HttpRequest, realm: &str) -> Result<(), HttpResponse> {
    let now = shared.clock.now();
    let st = shared.qbo_read();
    match st.auth.check(header(req, "authorization"), realm, now) {
        Ok(()) if st.realms.contains_key(realm) => Ok(()),
        Ok(()) | Err(Denied::Forbidden) => Err(json_response(403, &errors::forbidden(now))),
        Err(Denied::Unauthenticated) => Err(json_response(401, &errors::token_expired(now))),
    }
}

fn time(shared: &Shared) -> String {
    errors::qbo_time(shared.clock.now(), shared.config.qbo_tz_offset_minutes)
}

fn run_query(shared: &Shared, realm_id: &str, statement: &str) -> HttpResponse {
    let time = time(shared);
    let parsed = match parse(statement.trim()) {
        Ok(q) => q,
        Err(e) => return json_response(400, &errors::query_parse_fault(&e.to_string(), &time)),
    };
    let v = match validate(&parsed) {
        Ok(v) => v,
        Err(e) => return json_response(400, &errors::query_validation_fault(&e, &time)),
    };
    let st = shared.qbo_read();
    let Some(realm) = st.realms.get(realm_id) else {
        return json_response(403, &errors::forbidden(shared.clock.now()));
    };
    match realm.table(v.entity).query(&v, realm.tz) {
        Err(e) => json_response(400, &errors::query_validation_fault(&e, &time)),
        Ok(QueryOutcome::Count(n)) => {
            HttpResponse::Ok().json(json!({"QueryResponse": {"totalCount": n}, "time": time}))
        }
        Ok(QueryOutcome::Page(rows)) if rows.is_empty() => {
            HttpResponse::Ok().json(json!({"QueryResponse": {}, "time": time}))
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
    if let Err(resp) = authorize(&shared, &req, &realm) {
        return resp;
    }
    let statement = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "query")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    run_query(&shared, &realm, &statement)
}

async fn query_post(
    shared: web::Data<Shared>,
    req: HttpRequest,
    realm: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    if let Err(resp) = authorize(&shared, &req, &realm) {
        return resp;
    }
    run_query(&shared, &realm, &String::from_utf8_lossy(&body))
}

async fn cdc_get(
    shared: web::Data<Shared>,
    req: HttpRequest,
    realm_id: web::Path<String>,
) -> HttpResponse {
    if let Err(resp) = authorize(&shared, &req, &realm_id) {
        return resp;
    }
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
        return json_response(403, &errors::forbidden(shared.clock.now()));
    };
    match cdc::parse_request(realm, get("entities"), get("changedSince"), now) {
        Ok(r) => HttpResponse::Ok().json(cdc::respond(realm, &r, &time)),
        Err(CdcError::Missing(field)) => {
            json_response(400, &errors::required_missing(field, &time))
        }
        Err(CdcError::Invalid(detail)) => {
            json_response(400, &errors::business_validation(&detail, &time))
        }
    }
}

async fn preferences(
    shared: web::Data<Shared>,
    req: HttpRequest,
    realm: web::Path<String>,
) -> HttpResponse {
    if let Err(resp) = authorize(&shared, &req, &realm) {
        return resp;
    }
    HttpResponse::Ok().json(json!({
        "Preferences": {
            "AccountingInfoPrefs": {"TrackDepartments": true, "ClassTrackingPerTxn": true},
            "CurrencyPrefs": {"MultiCurrencyEnabled": false, "HomeCurrency": {"value": "USD"}},
            "TaxPrefs": {"UsingSalesTax": true},
            "domain": "QBO", "sparse": false, "Id": "1", "SyncToken": "0"
        },
        "time": time(&shared),
    }))
}

fn unsupported(entity: &str, time: &str) -> HttpResponse {
    json_response(
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

fn company_info(realm: &Realm) -> Value {
    json!({"CompanyInfo": {"CompanyName": realm.company_name, "LegalName": realm.company_name, "Country": "US",
        "domain": "QBO", "sparse": false, "Id": "1", "SyncToken": "0"}})
}

async fn read(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (realm_id, entity, id) = path.into_inner();
    if let Err(resp) = authorize(&shared, &req, &realm_id) {
        return resp;
    }
    let time = time(&shared);
    let st = shared.qbo_read();
    let Some(realm) = st.realms.get(&realm_id) else {
        return json_response(403, &errors::forbidden(shared.clock.now()));
    };
    if entity.eq_ignore_ascii_case("companyinfo") {
        let mut body = company_info(realm);
        body["time"] = Value::from(time);
        return HttpResponse::Ok().json(body);
    }
    let Some(et) = EntityType::from_path(&entity) else {
        return unsupported(&entity, &time);
    };
    match id.parse::<u64>().ok().and_then(|n| realm.table(et).get(n)) {
        Some(e) => {
            let mut body = Map::new();
            body.insert(et.name().to_owned(), Value::Object(e.json.clone()));
            body.insert("time".to_owned(), Value::from(time));
            HttpResponse::Ok().json(Value::Object(body))
        }
        None => json_response(400, &errors::not_found(et.name(), &id, &time)),
    }
}

/// The Fault body of a refused write (sent with HTTP 400).
fn write_error_body(e: &WriteError, entity: &str, time: &str) -> Value {
    match e {
        WriteError::Stale => errors::stale_object(time),
        WriteError::Duplicate(name) => errors::duplicate_name(name, time),
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
    if let Err(resp) = authorize(&shared, &req, &realm_id) {
        return resp;
    }
    let time = time(&shared);
    let Some(et) = EntityType::from_path(&entity).filter(|e| e.writable()) else {
        return unsupported(&entity, &time);
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
            return json_response(400, &fault);
        }
    };
    // `requestid` makes a retried write idempotent: the first answer is replayed.
    let request_id = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "requestid")
        .map(|(_, v)| (realm_id.clone(), v.into_owned()));
    if let Some(key) = &request_id
        && let Some((status, body)) = shared.qbo_read().replay(key)
    {
        return json_response(status, &body);
    }
    let now = shared.clock.now().timestamp();
    let result = shared.qbo_apply(|st| {
        let realm = st
            .realms
            .get_mut(&realm_id)
            .ok_or_else(|| WriteError::NotFound(realm_id.clone()))?;
        let (out, event) = if input.contains_key("Id") {
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
    json_response(status, &body)
}
