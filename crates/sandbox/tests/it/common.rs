//! Helpers shared by the contract tests: starting a sandbox, authenticated clients for both APIs,
//! the SDK's `list_all` loop, a recording webhook receiver and polling with a deadline.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use attrsync_sandbox::{
    DEMO_ORG_ID, DEMO_REALM_ID, FyleMess, Sandbox, SandboxConfig, SandboxHandle, Seed,
    TimestampResolution,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

pub const ORG: &str = DEMO_ORG_ID;
pub const REALM: &str = DEMO_REALM_ID;

/// Starts a demo-seeded sandbox with one worker per server.
pub async fn start() -> SandboxHandle {
    start_with(SandboxConfig {
        seed: Seed::Demo,
        ..config()
    })
    .await
}

/// A demo-seeded sandbox without the Fyle rate limit, for tests that make hundreds of Fyle calls
/// to check something else (the limit itself is on by default and tested on its own).
pub async fn start_unthrottled() -> SandboxHandle {
    start_with(SandboxConfig {
        seed: Seed::Demo,
        fyle_rate_limit_per_second: None,
        ..config()
    })
    .await
}

/// The contract suite's configuration: one worker per server and the mess turned up — Fyle
/// `updated_at` rounded to whole seconds, so unrelated writes tie (bulk posts share one stamp and
/// ties have no hidden id order by default anyway).
pub fn config() -> SandboxConfig {
    SandboxConfig {
        workers: 1,
        fyle_mess: FyleMess {
            updated_at_resolution: TimestampResolution::Seconds,
            ..FyleMess::default()
        },
        ..SandboxConfig::default()
    }
}

pub async fn start_with(config: SandboxConfig) -> SandboxHandle {
    Sandbox::start(config)
        .await
        .expect("sandbox starts on free ports")
}

/// A Fyle client authenticated through the OAuth refresh grant.
pub struct Fyle {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Fyle {
    pub async fn connect(sb: &SandboxHandle) -> Self {
        Self::connect_org(sb, ORG).await
    }

    /// A client of another org of the sandbox.
    pub async fn connect_org(sb: &SandboxHandle, org: &str) -> Self {
        let http = reqwest::Client::new();
        let creds = sb.credentials();
        let c = creds
            .fyle
            .iter()
            .find(|c| c.org_id == org)
            .expect("the org has a client");
        let resp: Value = http
            .post(format!("{}/oauth/token", sb.fyle_accounts_url()))
            .json(
                &json!({"grant_type": "refresh_token", "refresh_token": c.refresh_token,
                "client_id": c.client_id, "client_secret": c.client_secret}),
            )
            .send()
            .await
            .expect("token call")
            .json()
            .await
            .expect("token JSON");
        let token = resp["access_token"]
            .as_str()
            .expect("access token")
            .to_owned();
        Self {
            http,
            base: format!("{}/platform/v1", sb.fyle_url()),
            token,
        }
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .query(query)
            .send()
            .await
            .expect("GET");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON body"))
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("Accept", "application/json")
            .json(body)
            .send()
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON body"))
    }

    /// The SDK's `list_all`: first page with the filters (and `first_limit` if given), then
    /// `offset = total, limit = len(previous page)` until `total >= count`. Bounded so a broken
    /// server fails the test instead of hanging it.
    pub async fn list_all(
        &self,
        path: &str,
        filters: &[(&str, &str)],
        first_limit: Option<usize>,
    ) -> (usize, Vec<Value>) {
        let mut rows = Vec::new();
        let mut limit = first_limit;
        let mut count;
        let mut requests = 0;
        loop {
            let offset = rows.len().to_string();
            let limit_text = limit.map(|l| l.to_string());
            let mut query: Vec<(&str, &str)> = filters.to_vec();
            if !rows.is_empty() {
                query.push(("offset", &offset));
            }
            if let Some(l) = &limit_text {
                query.push(("limit", l));
            }
            let (status, page) = self.get(path, &query).await;
            assert_eq!(status, 200, "list failed: {page}");
            let data = page["data"].as_array().expect("data array").clone();
            count = page["count"].as_u64().expect("count") as usize;
            assert_eq!(
                page["offset"].as_u64(),
                Some(rows.len() as u64),
                "offset is echoed"
            );
            requests += 1;
            assert!(requests <= 20_000, "list_all does not terminate");
            let n = data.len();
            rows.extend(data);
            if rows.len() >= count {
                break;
            }
            assert!(
                n > 0,
                "empty page while count {count} > total {}",
                rows.len()
            );
            limit = Some(n);
        }
        (count, rows)
    }
}

/// A QBO client with an access token for the demo realm; it asks for JSON (`Accept:
/// application/json`) as qbo-sdk does — without it QBO answers XML.
pub struct Qbo {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Qbo {
    pub fn new(sb: &SandboxHandle) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("{}/v3/company/{REALM}", sb.qbo_url()),
            token: sb.qbo().access_token(REALM),
        }
    }

    pub async fn query(&self, statement: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}/query", self.base))
            .bearer_auth(&self.token)
            .header("Accept", "application/json")
            .query(&[("query", statement), ("minorversion", "75")])
            .send()
            .await
            .expect("query");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON body"))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("Accept", "application/json")
            .send()
            .await
            .expect("GET");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON body"))
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("Accept", "application/json")
            .json(body)
            .send()
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON body"))
    }
}

/// Basic auth header of the sandbox's QBO app.
pub fn qbo_basic(sb: &SandboxHandle) -> String {
    let app = sb.credentials().qbo_app;
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", app.client_id, app.client_secret))
    )
}

/// One request received by the recording receiver.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }
}

/// A webhook receiver on a free port that records every POST and answers 200.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    handle: actix_web::dev::ServerHandle,
}

impl Receiver {
    pub async fn start() -> Self {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let sink = Arc::clone(&got);
        let server = HttpServer::new(move || {
            let sink = Arc::clone(&sink);
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let sink = Arc::clone(&sink);
                async move {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.as_str().to_owned(),
                                v.to_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect();
                    sink.lock().unwrap().push(Received {
                        headers,
                        body: body.to_vec(),
                    });
                    HttpResponse::Ok().json(json!({}))
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .expect("receiver binds");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url: format!("http://{addr}/hook"),
            got,
            handle,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (deadline 10 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        poll(Duration::from_secs(10), || async {
            (self.received().len() >= n).then(|| self.received())
        })
        .await
        .unwrap_or_else(|| panic!("expected {n} webhooks, got {:?}", self.received().len()))
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// Polls `f` every 20 ms until it returns `Some` or the deadline passes.
pub async fn poll<T, F, Fut>(deadline: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
