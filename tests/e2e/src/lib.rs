//! A test harness that runs mapping, ingest and fyle-sync in this process, against the real
//! PostgreSQL and Apache Kafka of the local stack (`deploy/stack.sh up`).
//!
//! Each [`TestStack`] is isolated: its own database cloned from a migrated template, its own
//! topic prefix and consumer groups, its own ports. Tests therefore run in parallel and leave
//! nothing behind that another test could see.
//!
//! Topics are not deleted when a test ends (its consumers may still be closing); instead the
//! first stack of each test process deletes the topics of test stacks and benchmarks started
//! over an hour ago ([`purge_stale_test_topics`]), so a long-lived local Kafka does not pile up
//! tens of thousands of partitions across runs (which made it slow to start, then fall over).
//! A benchmark purges those older than ten minutes first: a broker carrying a few thousand
//! leftover partitions measured a relay lag ten times its own.

pub mod bench;
pub mod import;
pub mod proxy;
pub mod qbo;
pub mod scratch;

use attrsync_config::ServiceConfig as _;
use std::time::Duration;

use attrsync_db::testing::{Template, TestDatabase};
use attrsync_proto::v1::{
    CreateWorkspaceRequest, GetWebhookEndpointRequest, WorkspaceSnapshot,
    fyle_sync_service_client::FyleSyncServiceClient, ingest_service_client::IngestServiceClient,
    mapping_service_client::MappingServiceClient,
};
use attrsync_runtime::Running;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// The local stack's PostgreSQL, unless `DATABASE_URL` names another.
pub fn admin_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:54329/postgres".to_owned())
}

/// A database of the test's own, created from the migrated [`TEMPLATE`] on the local stack's
/// PostgreSQL and dropped with the handle.
pub async fn test_database() -> TestDatabase {
    TestDatabase::create(&admin_database_url(), &TEMPLATE)
        .await
        .expect("a test database from the e2e template")
}

/// The local stack's Kafka, unless `KAFKA_BOOTSTRAP` names another.
pub fn kafka_bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:61092".to_owned())
}

/// How old a test stack's topics must be before a later test process deletes them.
const STALE_TEST_TOPICS_AFTER: Duration = Duration::from_secs(3600);

/// The creation time of a test stack's or a benchmark's topic (`t<ulid>.<name>`,
/// `bench<ulid>.<name>`), if `topic` is one.
fn test_topic_created_at(topic: &str) -> Option<std::time::SystemTime> {
    let (prefix, _) = topic.split_once('.')?;
    let ulid = prefix
        .strip_prefix("bench")
        .or_else(|| prefix.strip_prefix('t'))?;
    ulid::Ulid::from_string(&ulid.to_uppercase())
        .ok()
        .map(|u| u.datetime())
}

/// Deletes the topics of test stacks and benchmarks started more than `older_than` ago (best
/// effort: a failure is logged and the caller goes on); how many it deleted.
pub async fn purge_stale_test_topics(bootstrap: String, older_than: Duration) -> usize {
    use rdkafka::{
        ClientConfig,
        admin::{AdminClient, AdminOptions},
        client::DefaultClientContext,
    };
    let listed = async {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()?;
        // Metadata is a blocking call in librdkafka.
        let (admin, names) = tokio::task::spawn_blocking(move || {
            let names: Vec<String> = admin
                .inner()
                .fetch_metadata(None, Duration::from_secs(20))?
                .topics()
                .iter()
                .map(|t| t.name().to_owned())
                .collect();
            anyhow::Ok((admin, names))
        })
        .await??;
        let now = std::time::SystemTime::now();
        let stale: Vec<String> = names
            .into_iter()
            .filter(|name| {
                test_topic_created_at(name)
                    .and_then(|created| now.duration_since(created).ok())
                    .is_some_and(|age| age > older_than)
            })
            .collect();
        anyhow::Ok((admin, stale))
    };
    let (admin, stale) = match listed.await {
        Ok(listed) => listed,
        Err(e) => {
            eprintln!("e2e: could not list old test topics (going on): {e}");
            return 0;
        }
    };
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
    let mut deleted = 0;
    for chunk in stale.chunks(500) {
        let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
        match admin.delete_topics(&names, &options).await {
            Ok(results) => deleted += results.iter().filter(|r| r.is_ok()).count(),
            Err(e) => {
                eprintln!("e2e: could not delete all old test topics (going on): {e}");
                break;
            }
        }
    }
    if deleted > 0 {
        eprintln!(
            "e2e: deleted {deleted} topics of test stacks and benchmarks older than {older_than:?}"
        );
    }
    deleted
}

/// Every service schema the end-to-end tests need, migrated once into a template.
pub const TEMPLATE: Template = Template {
    name: "e2e",
    schemas: &[
        ("mapping", &mapping::MIGRATIONS),
        ("ingest", &ingest::MIGRATIONS),
        ("fyle_sync", &fyle_sync::MIGRATIONS),
        ("qbo_sync", &qbo_sync::MIGRATIONS),
        ("import_to_fyle", &import_to_fyle::MIGRATIONS),
    ],
};

/// One service of `helm/attrsync/services.json`, the one list of services (also read by
/// `deploy/run.sh` and the Helm chart).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ServiceEntry {
    pub name: String,
    pub env_prefix: String,
    pub schema: String,
}

#[derive(serde::Deserialize)]
struct ServiceList {
    services: Vec<ServiceEntry>,
}

/// The entry of the service called `name` in `helm/attrsync/services.json`.
pub fn service_entry(name: &str) -> ServiceEntry {
    let list: ServiceList =
        serde_json::from_str(include_str!("../../../helm/attrsync/services.json"))
            .expect("helm/attrsync/services.json is valid");
    list.services
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} is not in helm/attrsync/services.json"))
}

/// mapping, ingest and fyle-sync, running in this process.
#[derive(Debug)]
pub struct TestStack {
    pub database: TestDatabase,
    /// This stack's topic prefix (e.g. `t01j….`).
    pub topic_prefix: String,
    pub ingest_url: String,
    pub mapping: MappingServiceClient<Channel>,
    pub fyle_sync: FyleSyncServiceClient<Channel>,
    pub ingest: IngestServiceClient<Channel>,
    pub http: reqwest::Client,
    /// Where [`TestStack::start_import_to_fyle`] listens (mapping calls it there).
    pub import_to_fyle_port: u16,
    running: Option<(Running, Running, Running)>,
    shutdown: CancellationToken,
}

/// The settings that isolate one service of one test: its schema in the test's database, the
/// test's topic prefix and consumer groups, free ports, quick retries, and mapping's address.
pub fn service_env(
    service: &str,
    database_url: &str,
    topic_prefix: &str,
    mapping_addr: Option<std::net::SocketAddr>,
) -> Vec<(String, String)> {
    let entry = service_entry(service);
    let prefix = entry.env_prefix.as_str();
    let mut env = vec![
        ("DATABASE_URL".into(), database_url.into()),
        ("KAFKA_BOOTSTRAP".into(), kafka_bootstrap()),
        (format!("{prefix}__DATABASE__SCHEMA"), entry.schema.clone()),
        (format!("{prefix}__GRPC__LISTEN"), "127.0.0.1:0".into()),
        (format!("{prefix}__HTTP__LISTEN"), "127.0.0.1:0".into()),
        (
            format!("{prefix}__KAFKA__TOPIC_PREFIX"),
            topic_prefix.into(),
        ),
        (
            format!("{prefix}__KAFKA__GROUP_ID"),
            format!("{topic_prefix}{service}"),
        ),
        (format!("{prefix}__KAFKA__PARTITIONS"), "1".into()),
        (format!("{prefix}__KAFKA__RETRY_BACKOFF"), "50ms".into()),
        (format!("{prefix}__DATABASE__POOL_SIZE"), "4".into()),
    ];
    if let Some(addr) = mapping_addr {
        env.push((
            format!("{prefix}__MAPPING__ENDPOINT"),
            format!("http://{addr}"),
        ));
    }
    env
}

impl TestStack {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with_env(Vec::new(), Vec::new()).await
    }

    /// Starts the stack with extra `INGEST__…` settings (e.g. a tight rate limit).
    pub async fn start_with_ingest_env(extra: Vec<(String, String)>) -> anyhow::Result<Self> {
        Self::start_with_env(extra, Vec::new()).await
    }

    /// Starts the stack with extra `INGEST__…` and `FYLE_SYNC__…` settings (`MAPPING__…` ones in
    /// either list go to mapping).
    pub async fn start_with_env(
        extra: Vec<(String, String)>,
        fyle_sync_extra: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        Self::start_inner(extra, fyle_sync_extra, None, None).await
    }

    /// Starts the stack against the Kafka at `bootstrap` (e.g. a broker of the test's own)
    /// instead of the shared one, with extra `INGEST__…` settings.
    pub async fn start_with_kafka(
        bootstrap: &str,
        extra: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        Self::start_inner(extra, Vec::new(), None, Some(bootstrap)).await
    }

    /// Starts the stack with ingest reaching PostgreSQL through `via` (e.g. a
    /// [`proxy::SilentProxy`]) and extra `INGEST__…` settings.
    pub async fn start_with_ingest_database_via(
        via: std::net::SocketAddr,
        extra: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        Self::start_inner(extra, Vec::new(), Some(via), None).await
    }

    async fn start_inner(
        extra: Vec<(String, String)>,
        fyle_sync_extra: Vec<(String, String)>,
        ingest_database_via: Option<std::net::SocketAddr>,
        kafka: Option<&str>,
    ) -> anyhow::Result<Self> {
        let service_env = |service: &str, url: &str, prefix: &str, mapping| {
            let mut env = service_env(service, url, prefix, mapping);
            if let Some(bootstrap) = kafka {
                env.retain(|(name, _)| name != "KAFKA_BOOTSTRAP");
                env.push(("KAFKA_BOOTSTRAP".into(), bootstrap.into()));
            }
            env
        };
        attrsync_telemetry::init_for_tests();
        static PURGED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
        PURGED
            .get_or_init(|| async {
                purge_stale_test_topics(
                    kafka.map_or_else(kafka_bootstrap, str::to_owned),
                    STALE_TEST_TOPICS_AFTER,
                )
                .await;
            })
            .await;
        let database = TestDatabase::create(&admin_database_url(), &TEMPLATE).await?;
        let topic_prefix = format!("t{}.", ulid::Ulid::new().to_string().to_lowercase());
        let shutdown = CancellationToken::new();

        // import-to-fyle starts on demand, later, and fyle-sync after mapping; mapping is told
        // where they will listen. Settings for mapping (`MAPPING__…`) given with the others'
        // go to mapping.
        let import_to_fyle_port = scratch::free_port(&[]);
        let fyle_sync_port = scratch::free_port(&[import_to_fyle_port]);
        let (for_mapping, extra): (Vec<_>, Vec<_>) = extra
            .into_iter()
            .partition(|(k, _)| k.starts_with("MAPPING__"));
        let (for_mapping_too, fyle_sync_extra): (Vec<_>, Vec<_>) = fyle_sync_extra
            .into_iter()
            .partition(|(k, _)| k.starts_with("MAPPING__"));
        let mut mapping_env = service_env("mapping", &database.url, &topic_prefix, None);
        mapping_env.push((
            "MAPPING__IMPORT_TO_FYLE__ENDPOINT".into(),
            format!("http://127.0.0.1:{import_to_fyle_port}"),
        ));
        mapping_env.push((
            "MAPPING__FYLE_SYNC__ENDPOINT".into(),
            format!("http://127.0.0.1:{fyle_sync_port}"),
        ));
        // A setting given for mapping replaces the harness's own (e.g. its partitions).
        let for_mapping: Vec<_> = for_mapping.into_iter().chain(for_mapping_too).collect();
        mapping_env.retain(|(k, _)| !for_mapping.iter().any(|(given, _)| given == k));
        mapping_env.extend(for_mapping);
        let mapping_config = mapping::Config::from_env_pairs(mapping_env)?;
        let mapping_running = mapping::start(mapping_config, shutdown.clone()).await?;
        let mapping_addr = Some(mapping_running.grpc_addr);

        let ingest_url = match ingest_database_via {
            Some(via) => {
                let mut url = url::Url::parse(&database.url)?;
                url.set_ip_host(via.ip())
                    .map_err(|()| anyhow::anyhow!("cannot set the proxy's host"))?;
                url.set_port(Some(via.port()))
                    .map_err(|()| anyhow::anyhow!("cannot set the proxy's port"))?;
                url.to_string()
            }
            None => database.url.clone(),
        };
        let mut ingest_env = service_env("ingest", &ingest_url, &topic_prefix, mapping_addr);
        ingest_env.push(("INGEST__HTTP__MAX_BODY_BYTES".into(), "65536".into()));
        ingest_env.extend(extra);
        let ingest_running = ingest::start(
            ingest::Config::from_env_pairs(ingest_env)?,
            shutdown.clone(),
        )
        .await?;

        let mut fyle_env = service_env("fyle-sync", &database.url, &topic_prefix, mapping_addr);
        fyle_env.retain(|(k, _)| k != "FYLE_SYNC__GRPC__LISTEN");
        fyle_env.push((
            "FYLE_SYNC__GRPC__LISTEN".into(),
            format!("127.0.0.1:{fyle_sync_port}"),
        ));
        // ConnectFyle asks this stack's ingest for the webhook URL it registers with Fyle.
        fyle_env.push((
            "FYLE_SYNC__INGEST__ENDPOINT".into(),
            format!("http://{}", ingest_running.grpc_addr),
        ));
        fyle_env.extend(fyle_sync_extra);
        let fyle_config = fyle_sync::Config::from_env_pairs(fyle_env)?;
        let fyle_running = fyle_sync::start(fyle_config, shutdown.clone()).await?;

        let mapping =
            MappingServiceClient::connect(format!("http://{}", mapping_running.grpc_addr)).await?;
        let fyle_sync =
            FyleSyncServiceClient::connect(format!("http://{}", fyle_running.grpc_addr)).await?;
        let ingest =
            IngestServiceClient::connect(format!("http://{}", ingest_running.grpc_addr)).await?;
        Ok(Self {
            database,
            topic_prefix,
            ingest_url: format!("http://{}", ingest_running.http_addr),
            mapping,
            fyle_sync,
            ingest,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()?,
            import_to_fyle_port,
            running: Some((mapping_running, ingest_running, fyle_running)),
            shutdown,
        })
    }

    /// The token that stops everything this stack started (services started later with it
    /// stop with the stack).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// A workspace for a fresh, unique Fyle org.
    pub async fn create_workspace(&self) -> anyhow::Result<(i64, String)> {
        self.create_workspace_with_realm(None).await
    }

    /// A workspace for the given Fyle org (e.g. a sandbox org, so the workspace can connect to it).
    pub async fn create_workspace_for_org(&self, org: &str) -> anyhow::Result<i64> {
        let snapshot: WorkspaceSnapshot = self
            .mapping
            .clone()
            .create_workspace(CreateWorkspaceRequest {
                name: format!("Workspace of {org}"),
                fyle_org_id: org.to_owned(),
                ..Default::default()
            })
            .await?
            .into_inner();
        snapshot
            .workspace
            .map(|w| w.id)
            .ok_or_else(|| anyhow::anyhow!("snapshot without workspace"))
    }

    /// A workspace for a fresh, unique Fyle org, connected to QBO company `realm`.
    pub async fn create_workspace_with_realm(
        &self,
        realm: Option<&str>,
    ) -> anyhow::Result<(i64, String)> {
        let org = format!("or{}", &ulid::Ulid::new().to_string()[14..]);
        let snapshot: WorkspaceSnapshot = self
            .mapping
            .clone()
            .create_workspace(CreateWorkspaceRequest {
                name: format!("Workspace of {org}"),
                fyle_org_id: org.clone(),
                qbo_realm_id: realm.map(str::to_owned),
                ..Default::default()
            })
            .await?
            .into_inner();
        let id = snapshot
            .workspace
            .map(|w| w.id)
            .ok_or_else(|| anyhow::anyhow!("snapshot without workspace"))?;
        Ok((id, org))
    }

    /// Waits until the workspace projection in `schema` (a service's own copy of the
    /// registry, milliseconds behind mapping) holds `count` live workspaces of QBO company
    /// `realm`.
    pub async fn wait_for_realm_in_projection(
        &self,
        schema: &str,
        realm: &str,
        count: i64,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let url = attrsync_db::url_with_schema(&self.database.url, schema)?;
        let what = format!("{count} workspaces of realm {realm} in {schema}'s projection");
        eventually(timeout, &what, || {
            let url = url.clone();
            async move {
                let mut conn = AsyncPgConnection::establish(&url).await?;
                let found: Count = diesel::sql_query(
                    "SELECT count(*) AS n FROM workspace_projection \
                     WHERE qbo_realm_id = $1 AND NOT deleted",
                )
                .bind::<diesel::sql_types::Text, _>(realm)
                .get_result(&mut conn)
                .await?;
                Ok((found.n == count).then_some(()))
            }
        })
        .await
    }

    /// The gRPC addresses of the running services.
    pub fn grpc_addrs(&self) -> GrpcAddrs {
        let (m, i, f) = self
            .running
            .as_ref()
            .map(|(m, i, f)| (m.grpc_addr, i.grpc_addr, f.grpc_addr))
            .unwrap_or_else(|| {
                let none = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                (none, none, none)
            });
        GrpcAddrs {
            mapping: m,
            ingest: i,
            fyle_sync: f,
        }
    }

    /// The full name of a topic of this stack.
    pub fn topic<P>(&self, topic: attrsync_kafka::topics::Topic<P>) -> String {
        format!("{}{}", self.topic_prefix, topic.name())
    }

    /// Writes a `payload` for `workspace_id` straight onto `topic` of this stack, keyed by the
    /// workspace, as any producer could — bypassing ingest's checks.
    pub async fn publish_directly<P: attrsync_kafka::topics::TopicPayload>(
        &self,
        topic: attrsync_kafka::topics::Topic<P>,
        workspace_id: i64,
        payload: P,
    ) -> anyhow::Result<()> {
        self.publish_all_directly(topic, workspace_id, vec![payload])
            .await
    }

    /// Like [`TestStack::publish_directly`] for many payloads, sent at once through one
    /// producer (in order), so they reach the broker together.
    pub async fn publish_all_directly<P: attrsync_kafka::topics::TopicPayload>(
        &self,
        topic: attrsync_kafka::topics::Topic<P>,
        workspace_id: i64,
        payloads: Vec<P>,
    ) -> anyhow::Result<()> {
        let each = payloads.into_iter().map(|p| (workspace_id, p)).collect();
        self.publish_each_directly(topic, each).await
    }

    /// [`publish_all_directly`](Self::publish_all_directly) for payloads of several
    /// workspaces, each `(workspace_id, payload)`, in order.
    pub async fn publish_each_directly<P: attrsync_kafka::topics::TopicPayload>(
        &self,
        topic: attrsync_kafka::topics::Topic<P>,
        payloads: Vec<(i64, P)>,
    ) -> anyhow::Result<()> {
        let producer = self.direct_producer()?;
        let envelopes: Vec<_> = payloads
            .into_iter()
            .map(|(workspace_id, payload)| {
                attrsync_kafka::envelope::new(
                    workspace_id,
                    "test",
                    attrsync_proto::time::now(),
                    payload.into_payload(),
                )
            })
            .collect();
        let sends = envelopes
            .iter()
            .map(|envelope| producer.publish(topic.name(), envelope));
        for sent in futures::future::join_all(sends).await {
            sent?;
        }
        Ok(())
    }

    /// A producer onto this stack's topics (its prefix), as any producer could hold one —
    /// bypassing ingest's checks; for callers that publish many envelopes over time.
    pub fn direct_producer(&self) -> anyhow::Result<attrsync_kafka::Producer> {
        let config = attrsync_config::KafkaConfig {
            bootstrap: kafka_bootstrap(),
            topic_prefix: self.topic_prefix.clone(),
            group_id: format!("{}writer", self.topic_prefix),
            partitions: 1,
            replication_factor: 1,
            max_attempts: 3,
            retry_backoff: Duration::from_millis(10),
            max_batch: 200,
        };
        Ok(attrsync_kafka::Producer::new(&config)?)
    }

    /// The running fyle-sync (its consumers' progress, its health).
    pub fn fyle_sync_running(&self) -> &Running {
        &self.running.as_ref().expect("stack running").2
    }

    /// The running ingest.
    pub fn ingest_running(&self) -> &Running {
        &self.running.as_ref().expect("stack running").1
    }

    /// How many batches of `topic` did not commit whole because their transaction failed
    /// (`consumer_batches_split_total{reason="the batch failed"}`), from `/metrics`. The
    /// recorder is process-wide; the topic's prefix makes the series this stack's own.
    pub async fn failed_batches<P>(
        &self,
        topic: attrsync_kafka::topics::Topic<P>,
    ) -> anyhow::Result<u64> {
        let url = format!("http://{}/metrics", self.fyle_sync_running().http_addr);
        let text = self.http.get(url).send().await?.text().await?;
        let topic = format!("topic=\"{}\"", self.topic(topic));
        Ok(text
            .lines()
            .filter(|line| {
                line.starts_with("consumer_batches_split_total{")
                    && line.contains(&topic)
                    && line.contains("reason=\"the batch failed\"")
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum())
    }

    /// The URL ingest hands out for the workspace's Fyle webhooks (with its token), rebased on
    /// this stack's ingest address.
    pub async fn webhook_url(&self, workspace_id: i64) -> anyhow::Result<String> {
        let endpoint = self
            .ingest
            .clone()
            .get_webhook_endpoint(GetWebhookEndpointRequest { workspace_id })
            .await?
            .into_inner();
        let path = endpoint
            .url
            .split_once("/workspaces/")
            .map(|(_, rest)| rest)
            .ok_or_else(|| anyhow::anyhow!("unexpected endpoint {}", endpoint.url))?;
        Ok(format!("{}/workspaces/{path}", self.ingest_url))
    }

    /// POSTs a Fyle webhook body to the workspace's registered URL (token included).
    pub async fn post_fyle_webhook(
        &self,
        workspace_id: i64,
        body: &[u8],
    ) -> anyhow::Result<reqwest::Response> {
        let url = self.webhook_url(workspace_id).await?;
        self.post_to(&url, body).await
    }

    /// POSTs a body to `url` as Fyle would, with no credentials but what the URL carries.
    pub async fn post_to(&self, url: &str, body: &[u8]) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await?)
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some((m, i, f)) = self.running.take() {
            f.stop().await;
            i.stop().await;
            m.stop().await;
        }
    }
}

/// Where each service's gRPC API listens.
#[derive(Debug, Clone, Copy)]
pub struct GrpcAddrs {
    pub mapping: std::net::SocketAddr,
    pub ingest: std::net::SocketAddr,
    pub fyle_sync: std::net::SocketAddr,
}

/// Polls `check` until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(found) = check().await? {
            return Ok(found);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
