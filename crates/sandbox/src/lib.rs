//! Faithful HTTP simulators of the Fyle Platform API and the QuickBooks Online Accounting API.
//!
//! They stand in for the two SaaS systems in integration tests, benchmarks and the `make run` demo:
//! real HTTP servers (actix-web) on their own ports — Fyle's accounts host (OAuth token and cluster
//! lookup), Fyle's cluster data host (`/platform/v1`) and QBO — sharing one in-memory state and
//! one admin API. Behaviour follows `shared/reference/external-apis.md` ("the reference"); where
//! the reference marks something **(inferred)** the module doing it says so.
//!
//! ```no_run
//! # async fn demo() -> attrsync_sandbox::Result<()> {
//! use attrsync_sandbox::{Sandbox, SandboxConfig, Seed};
//! let sandbox = Sandbox::start(SandboxConfig { seed: Seed::Demo, ..SandboxConfig::default() }).await?;
//! println!("Fyle at {}, QBO at {}", sandbox.fyle_url(), sandbox.qbo_url());
//! sandbox.fyle().rename("orNoatdUnm1w", "categories", "22330021", "Travel 2").ok();
//! sandbox.stop().await;
//! # Ok(()) }
//! ```
//!
//! Layout: [`fyle`] and [`qbo`] hold each simulator (state, rules, handlers, webhooks);
//! [`admin`] is the `/_sandbox` API and the in-process controls ([`FyleControl`], [`QboControl`]);
//! [`faults`], [`stats`], [`seed`], [`signing`] and [`clock`] are shared. The gate middleware counts,
//! throttles and injects faults in front of every handler.
//!
//! Concurrency: each simulator's state sits behind one `RwLock`. Handlers never await while
//! holding it; a list page is rendered under the read lock directly from the stored rows. Webhooks
//! leave through per-side queues served by tasks on the runtime that called [`Sandbox::start`].

pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
mod delivery;
pub mod faults;
pub mod fyle;
mod gate;
pub mod qbo;
pub mod seed;
pub mod signing;
pub mod stats;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use actix_web::{App, HttpServer, dev::ServerHandle, web};
use serde::Serialize;

pub use crate::{
    admin::{FyleControl, QboControl},
    clock::Clock,
    config::{
        DEMO_ORG_ID, DEMO_REALM_ID, DeactivationOp, FyleMess, QboCompany, QboWebhookConfig,
        SandboxConfig, Seed, TimestampResolution, WebhookFormat,
    },
    faults::{FaultAction, FaultRule, Faults, Side, WebhookFaultAction, WebhookFaultRule},
    seed::OTHER_ORG_ID,
    stats::StatsSnapshot,
};
use crate::{
    delivery::{DeliveryConfig, Outbox},
    fyle::{FyleState, auth::FyleClient, org::Change},
    qbo::{
        QboState,
        auth::QboApp,
        realm::QboEvent,
        throttle::{Throttle, ThrottleConfig},
        webhooks::EventQueue,
    },
    stats::Stats,
};

/// Errors of starting a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A server could not bind its port.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// Address tried.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// State shared by both servers, the admin API and the in-process controls.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SandboxConfig,
    pub(crate) clock: Clock,
    fyle: RwLock<FyleState>,
    qbo: RwLock<QboState>,
    pub(crate) faults: Arc<Faults>,
    pub(crate) stats: Arc<Stats>,
    fyle_out: Outbox,
    qbo_events: EventQueue,
    pub(crate) qbo_webhook: Arc<Mutex<QboWebhookConfig>>,
    pub(crate) qbo_throttle: Arc<Throttle>,
    pub(crate) fyle_limiter: Option<Arc<Throttle>>,
    fyle_url: OnceLock<String>,
    fyle_accounts_url: OnceLock<String>,
    qbo_url: OnceLock<String>,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn fyle_read(&self) -> RwLockReadGuard<'_, FyleState> {
        read(&self.fyle)
    }

    pub(crate) fn fyle_write(&self) -> RwLockWriteGuard<'_, FyleState> {
        write(&self.fyle)
    }

    pub(crate) fn qbo_read(&self) -> RwLockReadGuard<'_, QboState> {
        read(&self.qbo)
    }

    pub(crate) fn qbo_write(&self) -> RwLockWriteGuard<'_, QboState> {
        write(&self.qbo)
    }

    /// Runs a Fyle write and sends the webhooks of its changes (after unlocking).
    pub(crate) fn fyle_apply<T, E>(
        &self,
        f: impl FnOnce(&mut FyleState) -> Result<(T, Vec<Change>), E>,
    ) -> Result<T, E> {
        let now = self.clock.now();
        let (out, messages) = {
            let mut st = self.fyle_write();
            let (out, changes) = f(&mut st)?;
            let messages = st.messages(&changes, now);
            (out, messages)
        };
        for m in messages {
            self.fyle_out.send(m);
        }
        Ok(out)
    }

    /// Queues Fyle webhook POSTs built outside a write (admin-emitted events).
    pub(crate) fn fyle_send(&self, messages: Vec<delivery::OutgoingWebhook>) {
        for m in messages {
            self.fyle_out.send(m);
        }
    }

    /// Runs a QBO write and queues the webhook events of its changes (after unlocking).
    pub(crate) fn qbo_apply<T, E>(
        &self,
        f: impl FnOnce(&mut QboState) -> Result<(T, Vec<QboEvent>), E>,
    ) -> Result<T, E> {
        let (out, events) = f(&mut self.qbo_write())?;
        self.qbo_events.push(events);
        Ok(out)
    }

    pub(crate) fn expire_tokens(&self, side: Side) {
        match side {
            Side::Fyle => self.fyle_write().auth.expire_all(),
            Side::Qbo => {
                let now = self.clock.now();
                self.qbo_write().auth.expire_all(now);
            }
        }
    }

    pub(crate) fn fyle_url(&self) -> &str {
        self.fyle_url.get().map_or("", String::as_str)
    }

    pub(crate) fn fyle_accounts_url(&self) -> &str {
        self.fyle_accounts_url.get().map_or("", String::as_str)
    }

    pub(crate) fn qbo_url(&self) -> &str {
        self.qbo_url.get().map_or("", String::as_str)
    }

    pub(crate) fn credentials(&self) -> Credentials {
        let fyle = self.fyle_read().auth.clients();
        let q = self.qbo_read();
        let realms = q
            .realms
            .keys()
            .map(|r| QboRealmCredentials {
                realm_id: r.clone(),
                refresh_token: q.auth.current_refresh(r).unwrap_or_default().to_owned(),
            })
            .collect();
        Credentials {
            fyle_url: self.fyle_url().to_owned(),
            fyle_accounts_url: self.fyle_accounts_url().to_owned(),
            qbo_url: self.qbo_url().to_owned(),
            fyle,
            qbo_app: q.auth.app.clone(),
            qbo_realms: realms,
            qbo_verifier_token: crate::faults::lock(&self.qbo_webhook)
                .verifier_token
                .clone(),
        }
    }
}

/// A realm's connection.
#[derive(Debug, Clone, Serialize)]
pub struct QboRealmCredentials {
    /// Realm id.
    pub realm_id: String,
    /// Its current refresh token.
    pub refresh_token: String,
}

/// Everything a client needs to connect (printed by the binary at start).
#[derive(Debug, Clone, Serialize)]
pub struct Credentials {
    /// Fyle cluster data host (the `cluster_domain`; data API under `/platform/v1`).
    pub fyle_url: String,
    /// Fyle accounts host (`POST /oauth/token`, `POST /oauth/cluster`).
    pub fyle_accounts_url: String,
    /// QBO base URL.
    pub qbo_url: String,
    /// Fyle OAuth clients, one per org.
    pub fyle: Vec<FyleClient>,
    /// The QBO app.
    pub qbo_app: QboApp,
    /// QBO realm connections.
    pub qbo_realms: Vec<QboRealmCredentials>,
    /// Verifier token signing QBO webhooks.
    pub qbo_verifier_token: String,
}

/// Entry point.
#[derive(Debug)]
pub struct Sandbox;

/// A running sandbox. Dropping it without [`SandboxHandle::stop`] leaves the servers running until
/// the runtime ends.
#[derive(Debug)]
pub struct SandboxHandle {
    shared: Arc<Shared>,
    servers: Vec<ServerHandle>,
}

impl Sandbox {
    /// Seeds the state and starts both servers on the current Tokio runtime.
    pub async fn start(config: SandboxConfig) -> Result<SandboxHandle> {
        let clock = Clock::new();
        let faults = Arc::new(Faults::default());
        let stats = Arc::new(Stats::default());
        let delivery = DeliveryConfig {
            attempts: config.webhook_attempts,
            timeout: config.webhook_timeout,
        };
        let fyle_out = delivery::start(
            Side::Fyle,
            delivery.clone(),
            Arc::clone(&faults),
            Arc::clone(&stats),
        );
        let qbo_out = delivery::start(Side::Qbo, delivery, Arc::clone(&faults), Arc::clone(&stats));
        let qbo_webhook = Arc::new(Mutex::new(config.qbo_webhook.clone()));
        let qbo_events = qbo::webhooks::start(qbo_out, Arc::clone(&qbo_webhook));

        let mut fyle_state =
            FyleState::new(config.fyle_access_ttl, config.fyle_webhook_secret.clone());
        fyle_state.mess = config.fyle_mess;
        let mut qbo_state = QboState::new(
            config.qbo_access_ttl,
            config.qbo_refresh_grace,
            config.qbo_tz_offset_minutes,
        );
        qbo_state.auth.refresh_ttl = config.qbo_refresh_ttl;
        seed::apply(&config, &mut fyle_state, &mut qbo_state);

        let shared = Arc::new(Shared {
            qbo_throttle: Throttle::new(config.qbo_throttle, clock.clone()),
            fyle_limiter: config
                .fyle_rate_limit_per_second
                .map(|n| Throttle::new(ThrottleConfig::fyle_per_second(n), clock.clone())),
            config,
            clock,
            fyle: RwLock::new(fyle_state),
            qbo: RwLock::new(qbo_state),
            faults,
            stats,
            fyle_out,
            qbo_events,
            qbo_webhook,
            fyle_url: OnceLock::new(),
            fyle_accounts_url: OnceLock::new(),
            qbo_url: OnceLock::new(),
        });

        let mut servers = Vec::new();
        for host in [Host::FyleAccounts, Host::FyleData, Host::Qbo] {
            let port = match host {
                Host::FyleAccounts => shared.config.fyle_accounts_port,
                Host::FyleData => shared.config.fyle_port,
                Host::Qbo => shared.config.qbo_port,
            };
            let (server, addr) = serve(&shared, host, port)?;
            let url = match host {
                Host::FyleAccounts => &shared.fyle_accounts_url,
                Host::FyleData => &shared.fyle_url,
                Host::Qbo => &shared.qbo_url,
            };
            let _ = url.set(format!("http://{addr}"));
            servers.push(server);
        }
        let handles = servers.iter().map(actix_web::dev::Server::handle).collect();
        for server in servers {
            tokio::spawn(server);
        }
        Ok(SandboxHandle {
            shared,
            servers: handles,
        })
    }
}

/// The three HTTP servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host {
    /// Fyle's accounts host: OAuth token and cluster lookup.
    FyleAccounts,
    /// Fyle's cluster data host: `/platform/v1`.
    FyleData,
    /// QBO: OAuth and the data API.
    Qbo,
}

fn serve(
    shared: &Arc<Shared>,
    host_kind: Host,
    port: u16,
) -> Result<(actix_web::dev::Server, SocketAddr)> {
    let side = match host_kind {
        Host::FyleAccounts | Host::FyleData => Side::Fyle,
        Host::Qbo => Side::Qbo,
    };
    let data = web::Data::from(Arc::clone(shared));
    let host = shared.config.host.clone();
    let addr = format!("{host}:{port}");
    let server = HttpServer::new(move || {
        let app = App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
            .wrap(gate::Gate::new(side))
            .configure(admin::configure);
        match host_kind {
            Host::FyleAccounts => app.configure(fyle::handlers::configure_accounts),
            Host::FyleData => app.configure(fyle::handlers::configure_data),
            Host::Qbo => app.configure(qbo::handlers::configure),
        }
    })
    .workers(shared.config.workers.max(1))
    .disable_signals()
    .shutdown_timeout(1)
    .bind(&addr)
    .map_err(|source| Error::Bind {
        addr: addr.clone(),
        source,
    })?;
    let bound = server.addrs().first().copied().ok_or_else(|| Error::Bind {
        addr: addr.clone(),
        source: std::io::Error::other("no address bound"),
    })?;
    Ok((server.run(), bound))
}

impl SandboxHandle {
    /// Fyle cluster data host (the `cluster_domain`; data API under `/platform/v1`).
    pub fn fyle_url(&self) -> &str {
        self.shared.fyle_url()
    }

    /// Fyle accounts host (`POST /oauth/token`, `POST /oauth/cluster`), apart from the data host
    /// as in production (`accounts.fylehq.com` vs `us1.fylehq.com`).
    pub fn fyle_accounts_url(&self) -> &str {
        self.shared.fyle_accounts_url()
    }

    /// QBO base URL (data API under `/v3/company/{realm}`, token at `/oauth2/v1/tokens/bearer`).
    pub fn qbo_url(&self) -> &str {
        self.shared.qbo_url()
    }

    /// Client credentials of every org and realm.
    pub fn credentials(&self) -> Credentials {
        self.shared.credentials()
    }

    /// Drives the Fyle state.
    pub fn fyle(&self) -> FyleControl {
        FyleControl::new(Arc::clone(&self.shared))
    }

    /// Drives the QBO state.
    pub fn qbo(&self) -> QboControl {
        QboControl::new(Arc::clone(&self.shared))
    }

    /// Fault rules.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Counters and the request log.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot(true, 0)
    }

    /// Zeroes the counters.
    pub fn reset_stats(&self) {
        self.shared.stats.reset();
    }

    /// The sandbox clock (advance it to expire tokens or open a new throttle window).
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// Replaces the QBO throttle limits.
    pub fn set_qbo_throttle(&self, config: ThrottleConfig) {
        self.shared.qbo_throttle.set_config(config);
    }

    /// Replaces the QBO webhook settings.
    pub fn set_qbo_webhook(&self, config: QboWebhookConfig) {
        *faults::lock(&self.shared.qbo_webhook) = config;
    }

    /// Sets (or clears) the Fyle webhook signing secret.
    pub fn set_fyle_webhook_secret(&self, secret: Option<String>) {
        self.shared.fyle_write().webhook_secret = secret;
    }

    /// Stops every server.
    pub async fn stop(self) {
        for s in &self.servers {
            s.stop(true).await;
        }
    }
}
