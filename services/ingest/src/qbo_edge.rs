//! The QBO webhook edge: `POST /webhooks/qbo` and the incumbent's
//! `/api/workspaces/qbo/webhook_callback/` (with or without the trailing slash).
//!
//! 1. body size (413), then the `intuit-signature` over the raw bytes against the configured
//!    verifier tokens (several, for rotation) — missing or wrong: 401, nothing stored
//!    ([`crate::qbo`]); only the verified body is parsed (legacy or CloudEvents, 400 when it
//!    cannot be);
//! 2. each entity event is delivered to every live workspace of its realm (the projection,
//!    else mapping; the incumbent's single "primary" workspace is gone, #67): one inbox row and
//!    one `qbo.entity-changes.v1` message per entity per workspace, deduplicated per workspace
//!    by the CloudEvents `id` or (realm, entity, id, operation, lastUpdated). Webhook sync off
//!    for the entity: recorded `SKIPPED`. A realm no workspace owns: recorded once `IGNORED`,
//!    nothing published (#68). Mapping is asked only when the projection knows no workspace
//!    of the realm, so a workspace joins a shared realm's fan-out once ingest's projection
//!    has it (milliseconds after mapping commits it); its first full sync covers before that;
//! 3. 202 once everything is stored. Rows are stored one by one: a database failure half-way
//!    answers 503, Intuit resends the batch and what was stored is recognised as duplicate.
//!
//! Failure policy: fail closed on signatures, safe on outages (503, nothing half-published).

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use attrsync_db::Failure;
use attrsync_kafka::{envelope, topics, workspaces::ProjectedWorkspace};
use attrsync_proto::{Payload, time, v1::QboEntityChange};

use crate::{
    auth::Verified,
    fyle::{DedupeKey, Disposition, Rejection},
    http::{self, AppState, read_body},
    qbo::{self, QboEntityEvent, QboRejection, VerifiedQboBody},
    store::{NewDelivery, Stored},
};

pub fn routes(config: &mut web::ServiceConfig) {
    for path in [
        "/webhooks/qbo",
        "/api/workspaces/qbo/webhook_callback/",
        "/api/workspaces/qbo/webhook_callback",
    ] {
        config.route(path, web::post().to(qbo_webhook));
    }
}

/// What one QBO delivery came to.
#[derive(Debug, Default)]
struct Received {
    stored: usize,
    duplicates: usize,
    unknown_realms: usize,
}

async fn qbo_webhook(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<Arc<AppState>>,
) -> HttpResponse {
    let started = std::time::Instant::now();
    let outcome = async {
        let _permit = state.guard.admit(&request).map_err(Refusal::Edge)?;
        receive(&request, payload, &state).await
    }
    .await;
    metrics::histogram!("ingest_accept_seconds", "source" => "qbo")
        .record(started.elapsed().as_secs_f64());
    match outcome {
        Ok(received) => {
            tracing::info!(?received, "QBO webhook accepted");
            HttpResponse::Accepted().json(serde_json::json!({
                "status": "accepted",
                "stored": received.stored,
                "duplicates": received.duplicates,
                "unknown_realms": received.unknown_realms,
            }))
        }
        Err(Refusal::Qbo(rejection)) => {
            http::count_outcome("qbo", "refused");
            tracing::warn!(
                status = rejection.status(),
                code = rejection.code(),
                "QBO webhook refused"
            );
            metrics::counter!("ingest_webhooks_refused_total", "source" => "qbo", "reason" => rejection.code())
                .increment(1);
            let status = actix_web::http::StatusCode::from_u16(rejection.status())
                .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
            HttpResponse::build(status).json(rejection.body())
        }
        Err(Refusal::Edge(rejection)) => {
            http::count_outcome("qbo", "refused");
            metrics::counter!("ingest_webhooks_refused_total", "source" => "qbo", "reason" => rejection.code())
                .increment(1);
            let status = actix_web::http::StatusCode::from_u16(rejection.status())
                .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
            let mut response = HttpResponse::build(status);
            if let Some(seconds) = rejection.retry_after() {
                response.insert_header((header::RETRY_AFTER, seconds.to_string()));
            }
            response.json(rejection.body())
        }
    }
}

enum Refusal {
    Qbo(QboRejection),
    Edge(Rejection),
}

impl From<QboRejection> for Refusal {
    fn from(r: QboRejection) -> Self {
        Refusal::Qbo(r)
    }
}

impl From<Rejection> for Refusal {
    fn from(r: Rejection) -> Self {
        Refusal::Edge(r)
    }
}

async fn receive(
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Received, Refusal> {
    let body = read_body(request, payload, state.max_body_bytes).await?;
    let signature = request
        .headers()
        .get(qbo::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    let verified = VerifiedQboBody::verify(&body, signature, &state.qbo_verifier_tokens)?;
    let events = qbo::parse(&verified)?;
    let mut received = Received::default();
    for event in &events {
        let owners = state
            .directory
            .lookup_realm(&event.realm_id)
            .await
            .map_err(|reason| {
                tracing::error!(reason, "realm lookup unavailable");
                Rejection::Unavailable
            })?;
        if owners.is_empty() {
            received.unknown_realms += 1;
            let proof = Verified::qbo(&verified, None);
            let key = DedupeKey::Always(format!("qbo:-:{}", qbo::dedupe_key(event)));
            count(
                &mut received,
                store_event(state, &proof, event, &key, Disposition::Ignored, None).await?,
            );
            continue;
        }
        for workspace in &owners {
            let proof = Verified::qbo(&verified, Some(workspace.workspace_id));
            let key = DedupeKey::Always(format!(
                "qbo:{}:{}",
                workspace.workspace_id,
                qbo::dedupe_key(event)
            ));
            let disposition = if workspace.qbo_webhooks_enabled_for(&event.entity) {
                Disposition::Published
            } else {
                Disposition::Skipped
            };
            let stored =
                store_event(state, &proof, event, &key, disposition, Some(workspace)).await?;
            count(&mut received, stored);
        }
    }
    Ok(received)
}

fn count(received: &mut Received, (stored, disposition): (Stored, Disposition)) {
    match stored {
        Stored::New { .. } => {
            received.stored += 1;
            http::count_outcome("qbo", disposition.outcome());
        }
        Stored::Duplicate { .. } => {
            received.duplicates += 1;
            http::count_outcome("qbo", "duplicate");
        }
    }
}

async fn store_event(
    state: &AppState,
    proof: &Verified,
    event: &QboEntityEvent,
    key: &DedupeKey,
    disposition: Disposition,
    workspace: Option<&ProjectedWorkspace>,
) -> Result<(Stored, Disposition), Rejection> {
    let delivery_id = ulid::Ulid::new().to_string();
    let body = serde_json::json!({
        "realmId": event.realm_id,
        "name": event.entity,
        "id": event.entity_id,
        "operation": event.operation.as_str(),
        "lastUpdated": event.last_updated.map(|t| t.to_rfc3339()),
        "deletedId": event.deleted_id,
        "cloudEventId": event.cloud_event_id,
    });
    let publish = match (workspace, disposition) {
        (Some(workspace), Disposition::Published) => {
            let change = QboEntityChange {
                realm_id: event.realm_id.clone(),
                entity: event.entity.clone(),
                entity_id: event.entity_id.clone(),
                operation: event.operation.as_str().to_owned(),
                last_updated: event.last_updated.map(time::to_proto),
                delivery_id: delivery_id.clone(),
                deleted_id: event.deleted_id.clone().unwrap_or_default(),
            };
            let envelope = envelope::new(
                workspace.workspace_id,
                "ingest",
                time::now(),
                Payload::QboEntityChange(change),
            );
            Some(envelope::outbox_row(
                state.kafka.topic(topics::QBO_ENTITY_CHANGES.name()),
                &envelope,
            ))
        }
        _ => None,
    };
    let relayed = publish.is_some();
    let stored = state
        .inbox
        .accept(
            proof,
            NewDelivery {
                delivery_id: &delivery_id,
                dedupe_key: key,
                action: event.operation.as_str(),
                resource: Some(&event.entity),
                disposition,
                publish,
                body: &body,
            },
            state.query_timeout,
        )
        .await
        .map_err(|failure| match failure {
            Failure::Retryable => Rejection::Unavailable,
            Failure::Permanent => Rejection::Internal,
        })?;
    if relayed && matches!(stored, Stored::New { .. }) {
        state.relay.wake();
    }
    Ok((stored, disposition))
}
