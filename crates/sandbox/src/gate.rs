//! The middleware in front of both simulated APIs: request counting, throttling and endpoint
//! faults, in that order, before the request reaches a handler.
//!
//! 1. Every request outside `/_sandbox` is counted per endpoint key and per org/realm (see
//!    [`crate::stats`]) with its final status, duration and bytes — including requests refused by the throttle or a fault, because a
//!    real client pays for those calls too.
//! 2. QBO requests under `/v3/company/{realm}` take a throttle permit for the realm (500/min, 10 in
//!    flight); refusal → `429` with the 3001 body. The permit is held until the response is
//!    produced, including any injected latency. Fyle data-API requests (`/platform/…`) are
//!    rate-limited per client IP (10/s, on by default; the accounts host is not limited —
//!    **(inferred)**: the documented limit is in the data-API guide); refusal →
//!    `429 {"message": "Too many requests"}` without `Retry-After` (**(inferred)**, undocumented).
//! 3. The first matching fault rule acts: latency, throttle, server error, arbitrary status,
//!    token expiry, or a BulkError marker for the bulk handler.

use std::{
    future::{Ready, ready},
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::{
    Error, HttpMessage, HttpResponse,
    body::{BodySize, BoxBody, MessageBody},
    dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready},
    http::StatusCode,
    web,
};
use futures::future::LocalBoxFuture;
use serde_json::json;

use crate::{
    Shared,
    faults::{FaultAction, Side},
    qbo::{errors, handlers, xml},
    stats::{Finished, endpoint_key},
};

/// Marker put in request extensions by a `bulk_error` fault.
#[derive(Debug, Clone)]
pub(crate) struct InjectedBulkError {
    /// Row to fail.
    pub(crate) row: usize,
    /// Message.
    pub(crate) message: String,
}

/// The tenant (Fyle org) of a request, put in request extensions by the handler that read the
/// bearer token, so the gate can count the request per org.
#[derive(Debug, Clone)]
pub(crate) struct Tenant(pub(crate) String);

/// The middleware factory for one side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gate {
    side: Side,
}

impl Gate {
    /// Gate for a side.
    pub(crate) fn new(side: Side) -> Self {
        Self { side }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Gate
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = Error;
    type Transform = GateService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(GateService {
            service: Rc::new(service),
            side: self.side,
        }))
    }
}

/// The middleware service.
#[derive(Debug)]
pub(crate) struct GateService<S> {
    service: Rc<S>,
    side: Side,
}

/// The realm id of a QBO data path.
pub(crate) fn realm_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v3/company/")?;
    let realm = rest.split('/').next()?;
    (!realm.is_empty()).then_some(realm)
}

fn fault_response(
    side: Side,
    shared: &Shared,
    action: &FaultAction,
    accepts_json: bool,
) -> Option<HttpResponse> {
    let now = shared.clock.now();
    let time = errors::qbo_time(now, shared.config.qbo_tz_offset_minutes);
    let with_retry = |mut b: actix_web::HttpResponseBuilder, retry: Option<u64>| {
        if let Some(secs) = retry {
            b.insert_header(("Retry-After", secs.to_string()));
        }
        b
    };
    Some(match action {
        FaultAction::Throttle { retry_after } => match side {
            Side::Fyle => with_retry(HttpResponse::TooManyRequests(), *retry_after)
                .json(json!({"message": "Too many requests"})),
            // Intuit's 429 body is XML whatever the request accepts (reference §3.6 sample).
            Side::Qbo => {
                let mut resp = handlers::gateway_reply(
                    shared,
                    shared.config.qbo_json_only,
                    429,
                    &errors::THROTTLED,
                );
                if let Some(secs) = retry_after
                    && let Ok(v) = actix_web::http::header::HeaderValue::from_str(&secs.to_string())
                {
                    resp.headers_mut()
                        .insert(actix_web::http::header::RETRY_AFTER, v);
                }
                resp
            }
        },
        FaultAction::ServerError { status } => {
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            match side {
                Side::Fyle => {
                    HttpResponse::build(code).json(json!({"message": "Internal server error"}))
                }
                Side::Qbo if accepts_json => {
                    HttpResponse::build(code).json(errors::system_fault(&time))
                }
                Side::Qbo => HttpResponse::build(code)
                    .content_type("application/xml")
                    .body(xml::render(&errors::system_fault(&time))),
            }
        }
        FaultAction::Status {
            status,
            body,
            retry_after,
        } => {
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            with_retry(HttpResponse::build(code), *retry_after)
                .json(body.clone().unwrap_or_else(|| json!({})))
        }
        FaultAction::Latency { .. } | FaultAction::ExpireTokens | FaultAction::BulkError { .. } => {
            return None;
        }
    })
}

impl<S, B> Service<ServiceRequest> for GateService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let shared = req
            .app_data::<web::Data<Shared>>()
            .map(|d| Arc::clone(&d.clone().into_inner()));
        let Some(shared) = shared.filter(|_| !req.path().starts_with("/_sandbox")) else {
            let fut = self.service.call(req);
            return Box::pin(async move { fut.await.map(ServiceResponse::map_into_boxed_body) });
        };
        let side = self.side;
        let started = Instant::now();
        let method = req.method().as_str().to_owned();
        let path = req.path().to_owned();
        let query = req.query_string().to_owned();
        let key = endpoint_key(&method, &path);
        let accepts_json = side == Side::Qbo && handlers::wants_json(&shared, req.request());
        let bytes_in = req
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);

        let mut short: Option<HttpResponse> = None;
        let mut latency = None;
        let permit = match side {
            Side::Qbo => realm_of(&path).map(|realm| shared.qbo_throttle.acquire(realm)),
            Side::Fyle if !path.starts_with("/platform/") => None,
            Side::Fyle => shared.fyle_limiter.as_ref().map(|l| {
                let ip = req
                    .peer_addr()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default();
                l.acquire(&ip)
            }),
        };
        let permit = match permit {
            Some(Err(_)) => {
                short = fault_response(
                    side,
                    &shared,
                    &FaultAction::Throttle { retry_after: None },
                    accepts_json,
                );
                None
            }
            Some(Ok(p)) => Some(p),
            None => None,
        };
        if short.is_none() {
            match shared.faults.take(side, &key) {
                Some(FaultAction::Latency { ms }) => latency = Some(Duration::from_millis(ms)),
                Some(FaultAction::ExpireTokens) => shared.expire_tokens(side),
                Some(FaultAction::BulkError { row, message }) => {
                    req.extensions_mut().insert(InjectedBulkError {
                        row,
                        message: message.unwrap_or_else(|| "Simulated failure".to_owned()),
                    });
                }
                Some(action) => short = fault_response(side, &shared, &action, accepts_json),
                None => {}
            }
        }
        let call = match short {
            Some(resp) => Err(req.into_response(resp)),
            None => Ok(self.service.call(req)),
        };
        Box::pin(async move {
            if let Some(d) = latency {
                tokio::time::sleep(d).await;
            }
            let res = match call {
                Err(resp) => Ok(resp),
                Ok(fut) => fut.await.map(ServiceResponse::map_into_boxed_body),
            };
            drop(permit);
            let status = match &res {
                Ok(r) => r.status().as_u16(),
                Err(e) => e.as_response_error().status_code().as_u16(),
            };
            let bytes_out = match &res {
                Ok(r) => match r.response().body().size() {
                    BodySize::Sized(n) => n,
                    _ => 0,
                },
                Err(_) => 0,
            };
            let tenant = match side {
                Side::Qbo => realm_of(&path).map(str::to_owned),
                Side::Fyle => res.as_ref().ok().and_then(|r| {
                    r.request()
                        .extensions()
                        .get::<Tenant>()
                        .map(|t| t.0.clone())
                }),
            };
            shared.stats.record(Finished {
                side,
                method: &method,
                path: &path,
                query: &query,
                endpoint: &key,
                status,
                ms: started.elapsed().as_secs_f64() * 1000.0,
                at: shared.clock.now(),
                tenant: tenant.as_deref(),
                bytes_in,
                bytes_out,
            });
            res
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realm_is_read_from_data_paths_only() {
        assert_eq!(realm_of("/v3/company/123/query"), Some("123"));
        assert_eq!(realm_of("/oauth2/v1/tokens/bearer"), None);
    }
}
