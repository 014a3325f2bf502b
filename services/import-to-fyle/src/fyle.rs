//! Fyle, as import-to-fyle reaches it: access tokens from fyle-sync, posts and reads paced by
//! the shared token bucket, and Fyle's current values from fyle-sync.
//!
//! - **Tokens**: import-to-fyle holds no Fyle credentials. `GetAccessToken` of fyle-sync
//!   returns an access token and the cluster domain for a workspace; it is cached here until
//!   five minutes before its expiry, and asked again once when Fyle answers 401/498.
//! - **Pacing**: every call to the data host first takes a token from the PostgreSQL bucket
//!   `fyle:<org>` ([`attrsync_db::shared_rate::SharedLimiter`]), so every replica of
//!   import-to-fyle together stays under Fyle's 10 requests/second. (fyle-sync keeps a bucket
//!   of the same name in its own schema: the two services do not share one budget until the
//!   bucket moves to a shared schema; see the report in docs/architecture.md.)
//! - **Retries**: 429, 5xx and transport failures are retried with capped, jittered
//!   exponential backoff honouring `Retry-After` ([`attrsync_http_retry::backoff_delay`]), at
//!   most `fyle.max_attempts` attempts. Writes are repeated too (at-least-once): a bulk
//!   update by `id` is idempotent, and a repeated create meets Fyle's uniqueness rule — the run
//!   then fails and the next one finds the value present.
//! - **Fyle's values**: read from fyle-sync's `ListExpenseAttributes` (its table follows Fyle
//!   through webhooks and pulls) rather than by listing Fyle, which would spend the org's
//!   request budget on every incremental run; the merchant field itself is read from Fyle
//!   (its id and full definition are needed to re-post it).
//!
//! Failure policy: closed. Without a permit from the bucket, or a token from fyle-sync, no
//! call is made; the error says whether a later attempt may succeed ([`FyleError::is_transient`]).

use std::{collections::HashMap, sync::Arc, time::Duration};

use attrsync_fyle_client::BadRequest;
use attrsync_http_retry::{RateLimiter, RetryPolicy, backoff_delay, parse_retry_after};
use attrsync_proto::{
    time,
    v1::{
        GetAccessTokenRequest, ListExpenseAttributesRequest, SyncFyleDimensionsRequest,
        fyle_sync_service_client::FyleSyncServiceClient,
    },
};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tonic::{Code, transport::Channel};

use crate::modules::FyleValue;

/// Why a Fyle call did not succeed, by what the run does next.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FyleError {
    /// Fyle refused the request (400 validation, 403, 404): the message is Fyle's.
    #[error("Fyle rejected the request ({status}): {message}")]
    Rejected {
        status: u16,
        message: String,
        response: Value,
    },
    /// No usable token: the workspace is not connected to Fyle, its connection is broken, or
    /// Fyle refused a fresh token.
    #[error("no valid Fyle token: {0}")]
    Token(String),
    /// Fyle kept failing (5xx) through every retry.
    #[error("Fyle failed ({status}) after retries: {message}")]
    Server { status: u16, message: String },
    /// Fyle, fyle-sync or the rate bucket unreachable, or throttled through every retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// An answer this code cannot read.
    #[error("unexpected answer from Fyle: {0}")]
    Protocol(String),
}

impl FyleError {
    /// A later attempt of the same run may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, FyleError::Unavailable(_) | FyleError::Server { .. })
    }
}

#[derive(Clone)]
struct Token {
    access_token: String,
    api_base: String,
    expires_at: DateTime<Utc>,
}

/// Import-to-fyle's way to Fyle. Cheap to clone.
#[derive(Clone)]
pub struct FyleGateway {
    http: reqwest::Client,
    fyle_sync: FyleSyncServiceClient<Channel>,
    limiter: Arc<dyn RateLimiter>,
    retry: RetryPolicy,
    tokens: Arc<Mutex<HashMap<i64, Token>>>,
}

impl std::fmt::Debug for FyleGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FyleGateway").finish_non_exhaustive()
    }
}

fn from_status(s: &tonic::Status) -> FyleError {
    match s.code() {
        Code::NotFound | Code::FailedPrecondition | Code::PermissionDenied => {
            FyleError::Token(s.message().to_owned())
        }
        _ => FyleError::Unavailable(format!("fyle-sync: {}", s.message())),
    }
}

fn message_of(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned())
}

impl FyleGateway {
    pub fn new(
        fyle_sync_endpoint: &str,
        limiter: Arc<dyn RateLimiter>,
        request_timeout: Duration,
        max_attempts: u32,
    ) -> anyhow::Result<Self> {
        let channel = Channel::from_shared(fyle_sync_endpoint.to_owned())?
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        Ok(Self {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .timeout(request_timeout)
                .build()?,
            fyle_sync: FyleSyncServiceClient::new(channel),
            limiter,
            retry: RetryPolicy {
                max_attempts,
                ..RetryPolicy::default()
            },
            tokens: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    async fn token(&self, workspace_id: i64, fresh: bool) -> Result<Token, FyleError> {
        let mut tokens = self.tokens.lock().await;
        if !fresh
            && let Some(t) = tokens.get(&workspace_id)
            && t.expires_at - chrono::Duration::minutes(5) > Utc::now()
        {
            return Ok(t.clone());
        }
        let grant = self
            .fyle_sync
            .clone()
            .get_access_token(GetAccessTokenRequest { workspace_id })
            .await
            .map_err(|s| from_status(&s))?
            .into_inner();
        let token = Token {
            access_token: grant.access_token,
            api_base: format!("{}/platform/v1", grant.cluster_domain.trim_end_matches('/')),
            expires_at: grant
                .expires_at
                .as_ref()
                .and_then(time::from_proto)
                .unwrap_or_else(|| Utc::now() + chrono::Duration::minutes(30)),
        };
        tokens.insert(workspace_id, token.clone());
        Ok(token)
    }

    /// One call to the data host (`path` below `/platform/v1`), paced and retried; the body of
    /// a 2xx answer.
    async fn call(
        &self,
        workspace_id: i64,
        org_id: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, FyleError> {
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.token(workspace_id, false).await?;
            let asked = std::time::Instant::now();
            self.limiter
                .acquire(org_id)
                .await
                .map_err(|e| FyleError::Unavailable(format!("rate bucket: {e}")))?;
            let paced = asked.elapsed();
            metrics::counter!("import_to_fyle_fyle_requests_total").increment(1);
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", token.api_base))
                .bearer_auth(&token.access_token)
                .header("Accept", "application/json");
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let (status, retry_after, bytes) = match req.send().await {
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    let retry_after = answer
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, Utc::now()));
                    match answer.bytes().await {
                        Ok(b) => (status, retry_after, b.to_vec()),
                        Err(e) => (0, None, e.without_url().to_string().into_bytes()),
                    }
                }
                Err(e) => (0, None, e.without_url().to_string().into_bytes()),
            };
            tracing::debug!(workspace_id, %method, path, status, ?paced,
                took = ?asked.elapsed(), "Fyle call");
            let failure = match status {
                200..=299 => {
                    if bytes.is_empty() {
                        return Ok(json!({}));
                    }
                    return serde_json::from_slice(&bytes)
                        .map_err(|e| FyleError::Protocol(format!("{path}: {e}")));
                }
                401 | 498 if !refreshed => {
                    refreshed = true;
                    attempt -= 1;
                    self.tokens.lock().await.remove(&workspace_id);
                    self.token(workspace_id, true).await?;
                    continue;
                }
                401 | 498 => return Err(FyleError::Token(message_of(&bytes))),
                0 => FyleError::Unavailable(format!("Fyle: {}", String::from_utf8_lossy(&bytes))),
                429 => FyleError::Unavailable(format!("Fyle throttled: {}", message_of(&bytes))),
                500..=599 => FyleError::Server {
                    status,
                    message: message_of(&bytes),
                },
                _ => {
                    let message = if status == 400 {
                        BadRequest::parse(&bytes).to_string()
                    } else {
                        message_of(&bytes)
                    };
                    return Err(FyleError::Rejected {
                        status,
                        message,
                        response: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    });
                }
            };
            if attempt >= self.retry.max_attempts {
                return Err(failure);
            }
            let wait = backoff_delay(&self.retry, attempt, retry_after, rand::random::<f64>());
            tracing::info!(workspace_id, attempt, error = %failure, ?wait, "Fyle call retried");
            tokio::time::sleep(wait).await;
        }
    }

    /// `POST /admin/<resource>/bulk` with `{"data": rows}` (atomic in Fyle).
    pub async fn post_bulk(
        &self,
        workspace_id: i64,
        org_id: &str,
        resource: &str,
        rows: &[Value],
    ) -> Result<(), FyleError> {
        self.call(
            workspace_id,
            org_id,
            Method::POST,
            &format!("/admin/{resource}/bulk"),
            &[],
            Some(&json!({ "data": rows })),
        )
        .await
        .map(drop)
    }

    /// Fyle's expense fields matching `filters`, newest first, at most `limit`.
    async fn expense_fields(
        &self,
        workspace_id: i64,
        org_id: &str,
        filters: &[(&str, &str)],
        limit: &str,
    ) -> Result<Vec<Value>, FyleError> {
        let mut query = filters.to_vec();
        query.extend([
            ("order", "updated_at.desc"),
            ("offset", "0"),
            ("limit", limit),
        ]);
        let page = self
            .call(
                workspace_id,
                org_id,
                Method::GET,
                "/admin/expense_fields",
                &query,
                None,
            )
            .await?;
        Ok(page
            .get("data")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// The merchant expense field (`column_name = merchant`), as Fyle lists it.
    pub async fn merchant_field(
        &self,
        workspace_id: i64,
        org_id: &str,
    ) -> Result<Option<Value>, FyleError> {
        let fields = self
            .expense_fields(workspace_id, org_id, &[("column_name", "eq.merchant")], "1")
            .await?;
        Ok(fields.into_iter().next())
    }

    /// The custom SELECT expense field labelled `field_name` in any case (the newest, if Fyle
    /// has several).
    pub async fn custom_field(
        &self,
        workspace_id: i64,
        org_id: &str,
        field_name: &str,
    ) -> Result<Option<Value>, FyleError> {
        // `ilike` finds the label in any case; a wildcard in it could match more, so the
        // answer is checked for the exact (case-insensitive) label below.
        let name = format!("ilike.{field_name}");
        let filters = [
            ("field_name", name.as_str()),
            ("is_custom", "eq.true"),
            ("type", "eq.SELECT"),
        ];
        let wanted = field_name.to_lowercase();
        Ok(self
            .expense_fields(workspace_id, org_id, &filters, "50")
            .await?
            .into_iter()
            .find(|f| {
                f.get("field_name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.to_lowercase() == wanted)
            }))
    }

    /// Creates or updates one expense field (`payload` is the whole field).
    pub async fn post_expense_field(
        &self,
        workspace_id: i64,
        org_id: &str,
        payload: &Value,
    ) -> Result<(), FyleError> {
        self.call(
            workspace_id,
            org_id,
            Method::POST,
            "/admin/expense_fields",
            &[],
            Some(&json!({ "data": payload })),
        )
        .await
        .map(drop)
    }

    /// Re-posts the merchant field with `options` (the whole list).
    pub async fn post_merchant_options(
        &self,
        workspace_id: i64,
        org_id: &str,
        field: &Value,
        options: &[String],
    ) -> Result<(), FyleError> {
        let mut data = serde_json::Map::new();
        for key in [
            "id",
            "field_name",
            "type",
            "placeholder",
            "category_ids",
            "is_enabled",
            "is_custom",
            "is_mandatory",
            "code",
            "default_value",
        ] {
            if let Some(v) = field.get(key) {
                data.insert(key.to_owned(), v.clone());
            }
        }
        data.insert("options".to_owned(), json!(options));
        self.post_expense_field(workspace_id, org_id, &Value::Object(data))
            .await
    }

    /// Fyle's values of `attribute_type` as fyle-sync holds them (enabled and disabled).
    pub async fn existing(
        &self,
        workspace_id: i64,
        attribute_type: &str,
    ) -> Result<Vec<FyleValue>, FyleError> {
        let mut out = Vec::new();
        let mut after_id = 0;
        loop {
            let page = self
                .fyle_sync
                .clone()
                .list_expense_attributes(ListExpenseAttributesRequest {
                    workspace_id,
                    attribute_type: Some(attribute_type.to_owned()),
                    after_id,
                    page_size: 1000,
                    ..Default::default()
                })
                .await
                .map_err(|s| from_status(&s))?
                .into_inner();
            out.extend(page.attributes.into_iter().map(|a| FyleValue {
                id: a.source_id,
                value: a.value,
                active: a.active,
            }));
            if page.next_after_id == 0 {
                return Ok(out);
            }
            after_id = page.next_after_id;
        }
    }

    /// Asks fyle-sync for an incremental pull of `resource`, so the values just posted (and
    /// their Fyle ids) reach its table — Fyle sends no webhooks for bulk writes.
    pub async fn resync(&self, workspace_id: i64, resource: &str) -> Result<(), FyleError> {
        self.fyle_sync
            .clone()
            .sync_dimensions(SyncFyleDimensionsRequest {
                workspace_id,
                force: true,
                attribute_types: vec![resource.to_owned()],
                incremental: true,
            })
            .await
            .map_err(|s| from_status(&s))
            .map(drop)
    }
}
