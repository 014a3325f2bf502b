//! The public HTTP edge (actix-web).
//!
//! `POST /workspaces/{id}/fyle/exports/` (also under `/api/`, with or without the trailing
//! slash: the URLs existing Fyle subscriptions already call). A webhook is answered only after
//! it is durably stored; the order of checks is cheapest first:
//!
//! 1. the workspace id must be an integer and the workspace must exist — ingest's projection,
//!    else mapping over gRPC (503 when neither can answer);
//! 2. authentication by the workspace's mode ([`crate::auth`]): a URL token is checked before
//!    the body is read, a signature over the raw body after. Until this succeeds every refusal
//!    is the same 401 — an unknown workspace looks like a bad token;
//! 3. per-workspace rate limit, charged only now, so strangers cannot spend a workspace's
//!    budget (429 with `Retry-After`);
//! 4. body size, counted while reading (413), then JSON shape (400, also for a NUL character
//!    `jsonb` cannot hold); its Fyle org must be `data.org_id` (400; the incumbent's "Workspace
//!    mismatch" / "Workspace not found" only in `org_check_only` mode);
//! 5. stored in the inbox (+ outbox when relayed) in one atomic write, shared with the deliveries
//!    arriving at the same time ([`crate::store`]'s group commit), within
//!    `database.query_timeout` (503 with `Retry-After` when the database is down, silent or
//!    overloaded: the sender should retry, and a delivery whose commit landed as time ran out is
//!    then recognised as a duplicate).
//!
//! No answer ever carries a database error's text. `/healthz`, `/readyz` and `/metrics` come
//! from the platform (`attrsync_runtime::http`).

use std::{collections::HashMap, num::NonZeroU32, sync::Arc};

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use attrsync_core::webhook::Route;
use attrsync_db::Failure;
use attrsync_kafka::{
    envelope, topics,
    workspaces::{Lookup, MappingClient, WorkspaceDirectory},
};
use attrsync_proto::{
    Payload, time,
    v1::{FyleAttributeWebhook, FyleExpenseWebhook, FyleOrgSettingWebhook, ListWorkspacesRequest},
};
use futures::StreamExt;
use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};
use tracing::Instrument;

use crate::{
    auth::{self, AuthMode},
    credentials,
    fyle::{self, Disposition, Rejection},
    guard::WorkspaceAuth,
    store::{self, NewDelivery, Stored},
};

/// Everything the handlers share.
pub struct AppState {
    pub(crate) pool: attrsync_db::Pool,
    pub(crate) inbox: store::Inbox,
    pub(crate) kafka: attrsync_config::KafkaConfig,
    pub(crate) limiter: DefaultKeyedRateLimiter<i64>,
    pub(crate) directory: WorkspaceDirectory,
    pub(crate) mapping: MappingClient,
    pub(crate) relay: attrsync_kafka::relay::RelayHandle,
    pub(crate) max_body_bytes: usize,
    pub(crate) query_timeout: std::time::Duration,
    pub(crate) keyring: attrsync_core::sealed::Keyring,
    pub(crate) default_mode: AuthMode,
    pub(crate) signature_tolerance: std::time::Duration,
    /// The public base URL Fyle posts to, e.g. `https://sync.example.com/api`.
    pub(crate) public_url: String,
    /// QBO webhook verifier tokens (several during a rotation).
    pub(crate) qbo_verifier_tokens: Vec<String>,
    pub(crate) guard: crate::guard::Guard,
    pub(crate) auth_cache: Arc<crate::guard::AuthCache>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub(crate) fn limiter(per_second: u32, burst: u32) -> DefaultKeyedRateLimiter<i64> {
        let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(per_second);
        governor::RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
    }
}

pub fn routes(config: &mut web::ServiceConfig) {
    for prefix in ["", "/api"] {
        for suffix in ["/", ""] {
            config.route(
                &format!("{prefix}/workspaces/{{workspace_id}}/fyle/exports{suffix}"),
                web::post().to(fyle_webhook),
            );
        }
    }
}

fn reject(rejection: &Rejection) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(rejection.status())
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    let mut response = HttpResponse::build(status);
    if let Some(seconds) = rejection.retry_after() {
        response.insert_header((header::RETRY_AFTER, seconds.to_string()));
    }
    response.json(rejection.body())
}

async fn fyle_webhook(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<Arc<AppState>>,
) -> HttpResponse {
    let span = tracing::info_span!("fyle_webhook", workspace_id = %path.as_str());
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    attrsync_telemetry::set_parent(&span, headers);
    let started = std::time::Instant::now();
    let outcome = async {
        let _permit = state.guard.admit(&request)?;
        receive(path.as_str(), &request, payload, &state).await
    }
    .instrument(span.clone())
    .await;
    let _entered = span.enter();
    let answer = match outcome {
        Ok((Stored::New { delivery_id }, disposition)) => {
            tracing::info!(%delivery_id, disposition = disposition.as_str(), "webhook accepted");
            count_outcome("fyle", disposition.outcome());
            HttpResponse::Ok()
                .json(serde_json::json!({"status": "accepted", "delivery_id": delivery_id}))
        }
        Ok((Stored::Duplicate { delivery_id }, _)) => {
            tracing::info!(%delivery_id, "duplicate webhook acknowledged");
            count_outcome("fyle", "duplicate");
            HttpResponse::Ok()
                .json(serde_json::json!({"status": "duplicate", "delivery_id": delivery_id}))
        }
        Err(rejection) => {
            tracing::warn!(status = rejection.status(), reason = %rejection, "webhook refused");
            count_outcome("fyle", "refused");
            metrics::counter!("ingest_webhooks_refused_total", "source" => "fyle", "reason" => rejection.code())
                .increment(1);
            reject(&rejection)
        }
    };
    metrics::histogram!("ingest_accept_seconds", "source" => "fyle")
        .record(started.elapsed().as_secs_f64());
    answer
}

/// `ingest_webhooks_total{source, outcome}`: accepted (relayed), skipped, ignored, duplicate,
/// refused.
pub(crate) fn count_outcome(source: &'static str, outcome: &'static str) {
    metrics::counter!("ingest_webhooks_total", "source" => source, "outcome" => outcome)
        .increment(1);
}

async fn receive(
    workspace: &str,
    request: &HttpRequest,
    payload: web::Payload,
    state: &Arc<AppState>,
) -> Result<(Stored, Disposition), Rejection> {
    // Until authentication succeeds every refusal is the same 401: a stranger cannot tell an
    // unknown workspace from a wrong token.
    let workspace_id: i64 = workspace
        .parse()
        .map_err(|_| unauthenticated("not a workspace id"))?;
    if state.guard.known_unknown(workspace_id) {
        return Err(unauthenticated("unknown workspace"));
    }
    let loader = Arc::clone(state);
    let workspace_auth = state
        .auth_cache
        .get_or_load(workspace_id, move || {
            let state = Arc::clone(&loader);
            async move { load_workspace_auth(&state, workspace_id).await }
        })
        .await?;
    let (projected, credentials) = (&workspace_auth.0, &workspace_auth.1);
    let query = url::form_urlencoded::parse(request.query_string().as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let presented = auth::Presented {
        token: query.as_deref(),
        webhook_id: header("webhook-id"),
        webhook_timestamp: header("webhook-timestamp"),
        webhook_signature: header("webhook-signature"),
        fyle_signature: header("x-fyle-signature"),
    };
    // A token needs no body: strangers are turned away before one is read.
    if credentials.mode == AuthMode::UrlToken {
        auth::check_token(credentials, &presented).map_err(|f| unauthenticated(f.as_str()))?;
    }
    let body = read_body(request, payload, state.max_body_bytes).await?;
    let verified = auth::authenticate(
        workspace_id,
        credentials,
        &presented,
        &body,
        chrono::Utc::now(),
        state.signature_tolerance,
    )
    .map_err(|f| unauthenticated(f.as_str()))?;
    // Only an authenticated delivery keeps the workspace's credentials loaded.
    state.auth_cache.touch(workspace_id);
    // Only an authenticated sender spends the workspace's budget.
    if let Err(not_until) = state.limiter.check_key(&workspace_id) {
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        return Err(Rejection::RateLimited {
            retry_after_secs: wait.as_secs() + 1,
        });
    }
    let hook = fyle::parse(&body)?;
    if projected.fyle_org_id != hook.org_id {
        // The incumbent's messages (which tell whether an org has a workspace) only where the
        // org check is the whole authentication, as in production.
        return Err(if verified.mode() != Some(AuthMode::OrgCheckOnly) {
            Rejection::OrgNotOfWorkspace
        } else if org_has_a_workspace(state, &hook.org_id).await? {
            Rejection::WorkspaceMismatch
        } else {
            Rejection::OrgNotFound
        });
    }

    fyle::check_appliable(&hook)?;
    let route = hook.route();
    let enabled = hook
        .attribute_type()
        .is_none_or(|t| projected.fyle_webhooks_enabled_for(&t));
    let disposition = fyle::disposition(route, enabled);
    let delivery_id = ulid::Ulid::new().to_string();
    let publish = (disposition == Disposition::Published).then(|| {
        let (topic, payload) = relay_payload(&hook, route, &delivery_id);
        let envelope = envelope::new(workspace_id, "ingest", time::now(), payload);
        envelope::outbox_row(state.kafka.topic(topic), &envelope)
    });
    let dedupe_key = fyle::dedupe_key(workspace_id, &body, hook.is_versioned(), chrono::Utc::now());
    let stored = state
        .inbox
        .accept(
            &verified,
            NewDelivery {
                delivery_id: &delivery_id,
                dedupe_key: &dedupe_key,
                action: hook.action.as_str(),
                resource: hook.resource.as_ref().map(|r| r.as_str()),
                disposition,
                publish,
                body: &hook.body,
            },
            state.query_timeout,
        )
        .await
        // Inputs PostgreSQL could refuse were refused above, so what remains is an outage (503)
        // or a fault of ours (500); the cause is logged by the inbox, never answered.
        .map_err(|failure| match failure {
            Failure::Retryable => Rejection::Unavailable,
            Failure::Permanent => Rejection::Internal,
        })?;
    if matches!(stored, Stored::New { .. }) && disposition == Disposition::Published {
        state.relay.wake();
    }
    Ok((stored, disposition))
}

/// Loads what a workspace accepts (see [`load_workspace_auths`]), for a request.
async fn load_workspace_auth(
    state: &AppState,
    workspace_id: i64,
) -> Result<WorkspaceAuth, Rejection> {
    let mut loaded = load_workspace_auths(state, vec![workspace_id]).await;
    match loaded.remove(&workspace_id) {
        Some(Ok(auth)) => Ok(auth),
        Some(Err(Rejection::Unauthenticated)) => Err(unauthenticated("unknown workspace")),
        Some(Err(refusal)) => Err(refusal),
        None => Err(Rejection::Internal),
    }
}

/// Loads what each workspace accepts: its projection row (else mapping's answer) and its
/// credentials — per [`credentials::LOAD_CHUNK`] workspaces one projection read and one
/// credentials read, each chunk within its own deadline. An unknown or deleted workspace is
/// remembered as unknown and answered `Unauthenticated`, like a bad token; a database that
/// cannot answer makes the chunk's workspaces `Unavailable` (logged once per chunk). Every id
/// is answered.
pub(crate) async fn load_workspace_auths(
    state: &AppState,
    workspace_ids: Vec<i64>,
) -> HashMap<i64, Result<WorkspaceAuth, Rejection>> {
    let mut answers = HashMap::with_capacity(workspace_ids.len());
    for chunk in workspace_ids.chunks(credentials::LOAD_CHUNK) {
        load_chunk(state, chunk, &mut answers).await;
    }
    answers
}

/// [`load_workspace_auths`] for one chunk of ids, answered into `answers`.
async fn load_chunk(
    state: &AppState,
    workspace_ids: &[i64],
    answers: &mut HashMap<i64, Result<WorkspaceAuth, Rejection>>,
) {
    let mut found = state.directory.lookup_many(workspace_ids).await;
    let mut live = Vec::with_capacity(workspace_ids.len());
    let mut unavailable: Option<String> = None;
    for &workspace_id in workspace_ids {
        let answer = match found.remove(&workspace_id) {
            Some(Lookup::Found(row)) if !row.deleted => {
                live.push(row);
                continue;
            }
            Some(Lookup::Found(_) | Lookup::Unknown) => {
                state.guard.remember_unknown(workspace_id);
                Err(Rejection::Unauthenticated)
            }
            Some(Lookup::Unavailable(reason)) => {
                unavailable.get_or_insert(reason);
                Err(Rejection::Unavailable)
            }
            None => Err(Rejection::Internal),
        };
        answers.insert(workspace_id, answer);
    }
    if let Some(reason) = unavailable {
        tracing::error!(reason, "workspace lookup unavailable");
    }
    if live.is_empty() {
        return;
    }
    let ids: Vec<i64> = live.iter().map(|row| row.workspace_id).collect();
    let credentials = attrsync_db::with_deadline(
        state.query_timeout,
        credentials::load_many(&state.pool, &state.keyring, state.default_mode, &ids),
    )
    .await;
    match credentials {
        Ok(mut credentials) => {
            for row in live {
                let answer = credentials
                    .remove(&row.workspace_id)
                    .map(|c| Arc::new((row.clone(), c)))
                    .ok_or(Rejection::Internal);
                answers.insert(row.workspace_id, answer);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "database unavailable");
            for id in ids {
                answers.insert(id, Err(Rejection::Unavailable));
            }
        }
    }
}

fn unauthenticated(reason: &'static str) -> Rejection {
    tracing::warn!(reason, "webhook not authenticated");
    metrics::counter!("ingest_unauthenticated_total", "source" => "fyle", "reason" => reason)
        .increment(1);
    Rejection::Unauthenticated
}

fn unavailable(e: attrsync_db::DbError) -> Rejection {
    tracing::error!(error = %e, "database unavailable");
    Rejection::Unavailable
}

/// Reads the body, refusing it as soon as it exceeds `limit` (or says it will).
pub(crate) async fn read_body(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, Rejection> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Rejection::BodyTooLarge { limit });
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| Rejection::InvalidBody(format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(Rejection::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Whether any workspace owns `org_id`: the projection first, then mapping (the projection
/// may not have a brand-new workspace yet). Either answer refuses the webhook with a 400; the
/// two only differ in the message, so a mapping outage falls back to "not found".
async fn org_has_a_workspace(state: &AppState, org_id: &str) -> Result<bool, Rejection> {
    if attrsync_db::with_deadline(
        state.query_timeout,
        store::org_is_known(&state.pool, org_id),
    )
    .await
    .map_err(unavailable)?
    {
        return Ok(true);
    }
    let request = ListWorkspacesRequest {
        fyle_org_id: Some(org_id.to_owned()),
        page_size: 1,
        ..Default::default()
    };
    match state.mapping.clone().list_workspaces(request).await {
        Ok(response) => Ok(!response.get_ref().workspaces.is_empty()),
        Err(status) => {
            tracing::warn!(%status, "mapping unavailable for an org lookup");
            Ok(false)
        }
    }
}

/// The topic and payload a relayed webhook travels with.
fn relay_payload(
    hook: &fyle::FyleWebhook,
    route: Route,
    delivery_id: &str,
) -> (&'static str, Payload) {
    let received_at = Some(time::now());
    let data_json = hook.data.to_string();
    let resource = hook
        .resource
        .as_ref()
        .map(|r| r.as_str().to_owned())
        .unwrap_or_default();
    match route {
        Route::OrgSetting => (
            topics::FYLE_ORG_SETTINGS.name(),
            Payload::FyleOrgSettingWebhook(FyleOrgSettingWebhook {
                data_json,
                delivery_id: delivery_id.to_owned(),
                received_at,
            }),
        ),
        Route::Expense => (
            topics::FYLE_EXPENSE_WEBHOOKS.name(),
            Payload::FyleExpenseWebhook(FyleExpenseWebhook {
                action: hook.action.as_str().to_owned(),
                resource,
                data_json,
                reason: hook.reason.clone().unwrap_or_default(),
                delivery_id: delivery_id.to_owned(),
                received_at,
            }),
        ),
        Route::Attribute | Route::Ignored => (
            topics::FYLE_ATTRIBUTE_WEBHOOKS.name(),
            Payload::FyleAttributeWebhook(FyleAttributeWebhook {
                action: hook.action.as_str().to_owned(),
                resource,
                data_json,
                delivery_id: delivery_id.to_owned(),
                received_at,
            }),
        ),
    }
}
