//! One start-up path for all five services.
//!
//! A service *declares* itself — [`Service`]: its name, configuration, migrations, and in
//! [`Service::declare`] the topics it produces, its consumers, its gRPC APIs, its HTTP routes
//! and its background tasks — and [`start`] does the rest in one order, the same for every
//! service and every test:
//!
//! migrate (platform tables, then the service's) → pool → topics → producer → relay →
//! workspace projection → consumers → HTTP (`/healthz`, `/readyz`, `/metrics` + the service's
//! routes) → gRPC (the service's APIs, health, reflection) → health publisher → retention →
//! first statistics.
//!
//! It returns the one [`Running`] handle. A binary's `main` is [`main`]`::<TheService>()`.
//!
//! Failure policy: anything that fails before the service serves stops the start with an
//! error naming the step; after that, a task that ends before shutdown is logged at ERROR and
//! makes the service NOT_SERVING (see [`crate::health`]) rather than silently missing.

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use anyhow::Context as _;
use attrsync_config::{KafkaConfig, ServiceConfig};
use attrsync_db::Pool;
use attrsync_kafka::{
    ConsumerProgress, Handler, Producer,
    consumer::{self, ConsumerSpec},
    handler::{EffectHandler, Idempotent, Services},
    relay::{self, RelayHandle},
    topics::{self, Topic, TopicPayload, TopicSpec},
    workspaces::{ProjectionHandler, WorkspaceDirectory},
};
use diesel_migrations::EmbeddedMigrations;
use tokio_util::sync::CancellationToken;

use crate::{
    ServiceTasks,
    grpc::GrpcRoutes,
    health::Health,
    http::{HttpRoutes, ops_routes},
};

/// A service of the system, declared once.
pub trait Service: 'static {
    /// E.g. `fyle-sync`: logs, the producer name on envelopes, metrics.
    const NAME: &'static str;
    type Config: ServiceConfig + Clone + Send + Sync + 'static;
    /// The service's own migrations (the platform tables are applied before them).
    fn migrations() -> &'static EmbeddedMigrations;

    /// What the service adds to the platform: consumers, produced topics, gRPC APIs, HTTP
    /// routes, tasks.
    fn declare(
        context: &Context<Self::Config>,
    ) -> impl Future<Output = anyhow::Result<Declaration>> + Send;
}

/// What a service's declaration can use: its configuration and the platform's handles.
pub struct Context<C> {
    pub config: C,
    pub pool: Pool,
    pub producer: Producer,
    pub relay: RelayHandle,
    pub directory: WorkspaceDirectory,
    pub shutdown: CancellationToken,
    name: &'static str,
}

impl<C> std::fmt::Debug for Context<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("service", &self.name)
            .finish_non_exhaustive()
    }
}

impl<C: ServiceConfig> Context<C> {
    /// The full (prefixed) name of `topic` in this deployment.
    pub fn topic<P>(&self, topic: Topic<P>) -> String {
        self.config.platform().kafka.topic(topic.name())
    }
}

type TaskFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type ConsumerStart = Box<dyn FnOnce(KafkaConfig, Producer, CancellationToken) -> TaskFuture + Send>;

struct ConsumerDecl {
    topic: TopicSpec,
    progress: Arc<ConsumerProgress>,
    start: ConsumerStart,
}

impl ConsumerDecl {
    /// A consumer of `topic` in the group `<kafka.group_id>.<topic>`.
    fn new<P, H: Handler>(topic: Topic<P>, handler: H) -> Self {
        let progress = Arc::new(ConsumerProgress::default());
        let spec = ConsumerSpec {
            topics: vec![topic.name()],
            group_suffix: Some(topic.name()),
        };
        let handler = Arc::new(handler);
        let task_progress = progress.clone();
        let start: ConsumerStart = Box::new(move |kafka, producer, shutdown| {
            Box::pin(async move {
                if let Err(e) =
                    consumer::run(&kafka, spec, handler, producer, task_progress, shutdown).await
                {
                    tracing::error!(error = %e, "consumer stopped with an error");
                }
            })
        });
        Self {
            topic: topic.spec(),
            progress,
            start,
        }
    }
}

/// What a service adds to the platform. Built with the `consume`/`produces`/`grpc`/`http`/
/// `task` methods; each addition is one call.
pub struct Declaration {
    produces: Vec<TopicSpec>,
    consumers: Vec<ConsumerDecl>,
    grpc: GrpcRoutes,
    grpc_names: Vec<&'static str>,
    http: Option<HttpRoutes>,
    tasks: Vec<(&'static str, TaskFuture)>,
    services: Services,
}

impl std::fmt::Debug for Declaration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Declaration")
            .field("produces", &self.produces)
            .field("grpc", &self.grpc_names)
            .finish_non_exhaustive()
    }
}

impl Declaration {
    /// An empty declaration for the service of `context`.
    pub fn new<C: ServiceConfig>(context: &Context<C>) -> anyhow::Result<Self> {
        let platform = context.config.platform();
        Ok(Self {
            produces: Vec::new(),
            consumers: Vec::new(),
            grpc: GrpcRoutes::new()?,
            grpc_names: Vec::new(),
            http: None,
            tasks: Vec::new(),
            services: Services {
                pool: context.pool.clone(),
                directory: context.directory.clone(),
                kafka: platform.kafka.clone(),
                relay: context.relay.clone(),
                producer: context.name,
                query_timeout: platform.database.query_timeout,
            },
        })
    }

    /// Consumes `topic` with an idempotent `effect` (see [`attrsync_kafka::handler`]); the
    /// compiler checks that the effect takes the payload the topic carries.
    pub fn consume<P, H>(self, topic: Topic<P>, effect: H) -> Self
    where
        P: TopicPayload,
        H: EffectHandler<Payload = P>,
    {
        let handler = Idempotent::new(effect, self.services.clone());
        self.consume_with(topic, handler)
    }

    /// Consumes `topic` with a handler that brings its own idempotence (e.g. a version guard).
    pub fn consume_with<P, H: Handler>(mut self, topic: Topic<P>, handler: H) -> Self {
        self.consumers.push(ConsumerDecl::new(topic, handler));
        self
    }

    /// Declares a topic the service publishes to (created at start-up).
    pub fn produces<P>(mut self, topic: Topic<P>) -> Self {
        self.produces.push(topic.spec());
        self
    }

    /// Adds a gRPC API (served with health and reflection).
    pub fn grpc<S>(mut self, service: S) -> Self
    where
        S: tonic::codegen::Service<
                tonic::codegen::http::Request<tonic::body::Body>,
                Response = tonic::codegen::http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.grpc_names.push(S::NAME);
        self.grpc = self.grpc.with_service(service);
        self
    }

    /// Adds routes to the service's HTTP listener.
    pub fn http(
        mut self,
        routes: impl Fn(&mut actix_web::web::ServiceConfig) + Send + Sync + 'static,
    ) -> Self {
        self.http = Some(Arc::new(routes));
        self
    }

    /// Runs `task` for the life of the service (it should end when the context's shutdown
    /// token is cancelled).
    pub fn task(
        mut self,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.tasks.push((name, Box::pin(task)));
        self
    }
}

/// A started service.
#[derive(Debug)]
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub health: Arc<Health>,
    consumers: Vec<(&'static str, Arc<ConsumerProgress>)>,
    tasks: ServiceTasks,
}

impl Running {
    /// The progress of the consumer of `topic`.
    pub fn consumer<P>(&self, topic: Topic<P>) -> Option<&Arc<ConsumerProgress>> {
        self.consumers
            .iter()
            .find(|(name, _)| *name == topic.name())
            .map(|(_, progress)| progress)
    }

    /// Stops every task and waits for them (consumers commit, the relay drains).
    pub async fn stop(self) {
        self.tasks.stop().await;
    }
}

/// Applies the platform's and the service's pending migrations to its schema (also what
/// `--migrate-only` does).
pub async fn migrate<S: Service>(config: &S::Config) -> anyhow::Result<()> {
    let database = config.platform().database;
    attrsync_db::migrate(&database.url, &database.schema, S::migrations())
        .await
        .context("migrations")?;
    Ok(())
}

/// Starts `S`: every step of the module doc, in order.
pub async fn start<S: Service>(
    config: S::Config,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    migrate::<S>(&config).await?;
    let platform = config.platform();
    let pool = attrsync_db::connect(platform.database)
        .await
        .context("database pool")?;
    let producer = Producer::new(platform.kafka).context("Kafka producer")?;
    let relay = RelayHandle::default();
    let mapping = match platform.mapping {
        Some(mapping) => Some(
            attrsync_kafka::workspaces::mapping_client(&mapping.endpoint)
                .context("mapping.endpoint")?,
        ),
        None => None,
    };
    let directory = WorkspaceDirectory::new(pool.clone(), mapping, platform.database.query_timeout);
    let context = Context {
        config: config.clone(),
        pool: pool.clone(),
        producer: producer.clone(),
        relay: relay.clone(),
        directory,
        shutdown: shutdown.clone(),
        name: S::NAME,
    };
    let declaration = S::declare(&context)
        .await
        .with_context(|| format!("declaring {}", S::NAME))?;
    let Declaration {
        mut produces,
        mut consumers,
        grpc,
        grpc_names,
        http,
        tasks: service_tasks,
        ..
    } = declaration;

    // Every service but mapping (the registry's owner) keeps a workspace projection.
    if platform.mapping.is_some() {
        consumers.push(ConsumerDecl::new(
            topics::WORKSPACE_SETTINGS,
            ProjectionHandler::new(pool.clone()),
        ));
    }
    let consumed: Vec<TopicSpec> = consumers.iter().map(|c| c.topic).collect();
    produces.sort();
    produces.dedup();
    topics::ensure(platform.kafka, &produces, &consumed)
        .await
        .context("creating topics")?;

    let mut tasks = ServiceTasks::new(shutdown.clone());
    tasks.spawn(
        "outbox relay",
        relay::run(
            pool.clone(),
            producer.clone(),
            platform.database.schema.clone(),
            relay.clone(),
            Duration::from_millis(500),
            shutdown.clone(),
        ),
    );
    let mut progress = Vec::new();
    for consumer in consumers {
        progress.push((consumer.topic.name, consumer.progress));
        tasks.spawn(
            consumer.topic.name,
            (consumer.start)(platform.kafka.clone(), producer.clone(), shutdown.clone()),
        );
    }
    for (name, task) in service_tasks {
        tasks.spawn(name, task);
    }
    tasks.spawn(
        "retention",
        crate::retention::run(
            pool.clone(),
            platform.database.schema.clone(),
            platform.retention.clone(),
            shutdown.clone(),
        ),
    );
    tasks.spawn(
        "first statistics",
        crate::statistics::run(
            pool.clone(),
            platform.database.first_statistics_interval,
            shutdown.clone(),
        ),
    );

    let health = Arc::new(Health::new(
        platform.health.clone(),
        pool.clone(),
        progress
            .iter()
            .map(|(name, p)| ((*name).to_owned(), p.clone()))
            .collect(),
        relay.clone(),
        tasks.died(),
    ));
    let http_addr = serve_http(&mut tasks, platform.http.addr()?, http, health.clone())?;
    let reporter = grpc.health.clone();
    // Answer health checks truthfully from the first request on.
    health.publish_once(&reporter, &grpc_names, None).await;
    let grpc_listener = tokio::net::TcpListener::bind(platform.grpc.addr()?)
        .await
        .context("binding the gRPC listener")?;
    let grpc_addr = grpc_listener.local_addr()?;
    let grpc_shutdown = shutdown.clone();
    tasks.spawn("gRPC server", async move {
        if let Err(e) = grpc.serve(grpc_listener, grpc_shutdown).await {
            tracing::error!(error = %e, "gRPC server stopped");
        }
    });
    tasks.spawn(
        "health",
        health
            .clone()
            .publish_to_grpc(reporter, grpc_names, shutdown.clone()),
    );
    tracing::info!(service = S::NAME, %grpc_addr, %http_addr, "service started");
    Ok(Running {
        grpc_addr,
        http_addr,
        health,
        consumers: progress,
        tasks,
    })
}

fn serve_http(
    tasks: &mut ServiceTasks,
    addr: SocketAddr,
    routes: Option<HttpRoutes>,
    health: Arc<Health>,
) -> anyhow::Result<SocketAddr> {
    crate::http::metrics_handle();
    let listener = std::net::TcpListener::bind(addr).context("binding the HTTP listener")?;
    let bound = listener.local_addr()?;
    let health = actix_web::web::Data::new(health);
    let server = actix_web::HttpServer::new(move || {
        let mut app = actix_web::App::new()
            .app_data(health.clone())
            .configure(ops_routes);
        if let Some(routes) = &routes {
            let routes = routes.clone();
            app = app.configure(move |config| routes(config));
        }
        app
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tasks.spawn("HTTP server", async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    let shutdown = tasks.shutdown_token();
    tasks.spawn_quiet(async move {
        shutdown.cancelled().await;
        handle.stop(true).await;
    });
    Ok(bound)
}

/// A service binary's whole `main`: configuration (`--config`, environment), telemetry,
/// `--migrate-only`, start, and a clean stop on SIGINT/SIGTERM. Start-up errors print as one
/// line and exit with status 1.
pub fn main<S: Service>() -> std::process::ExitCode {
    crate::exit_code(S::NAME, run_binary::<S>())
}

fn run_binary<S: Service>() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let config = S::Config::load(std::env::args())?;
        let _telemetry = attrsync_telemetry::init(S::NAME, config.platform().telemetry)?;
        if std::env::args().any(|arg| arg == "--migrate-only") {
            return migrate::<S>(&config).await;
        }
        let shutdown = crate::shutdown_on_signal();
        let running = start::<S>(config, shutdown.clone()).await?;
        shutdown.cancelled().await;
        running.stop().await;
        Ok(())
    })
}
