//! Durability under a fault (issue 6): a webhook ingest answered 200 is in its inbox after
//! PostgreSQL stops immediately (`pg_ctl stop -m immediate`: no shutdown checkpoint, as if it
//! crashed) and starts again, in the middle of steady load.
//!
//! The test runs its own PostgreSQL cluster through `deploy/stack.sh` (its own `STACK_DIR`
//! and port, the durable profile whatever the shared stack runs, Kafka left to the shared
//! stack), so stopping it disturbs no other test. mapping and ingest run in this process
//! against that cluster and the shared Kafka, isolated by a topic prefix of their own.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use attrsync_config::ServiceConfig as _;
use attrsync_db::diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use attrsync_e2e::{
    eventually, kafka_bootstrap,
    scratch::{ScratchStack, free_port},
    service_env,
};
use attrsync_proto::v1::{
    CreateWorkspaceRequest, GetWebhookEndpointRequest, ingest_service_client::IngestServiceClient,
    mapping_service_client::MappingServiceClient,
};
use diesel::{QueryableByName, sql_types::Text};
use serde_json::{Value, json};
use tokio::{sync::Semaphore, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;

/// Webhooks sent under load, at `RATE` per second with at most `IN_FLIGHT` unanswered.
const TOTAL: usize = 3_000;
const RATE: u64 = 150;
const IN_FLIGHT: usize = 48;
/// When, into the load, PostgreSQL is stopped, and how long it stays down before `up`.
const STOP_AFTER: Duration = Duration::from_secs(6);
const DOWN_FOR: Duration = Duration::from_millis(1500);
/// A sender gives up on one request after this long (it then counts as refused).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// No webhook is sent after this long (a slow machine sends fewer), and the last answer must
/// have come `REQUEST_TIMEOUT` later.
const LOAD_BUDGET: Duration = Duration::from_secs(40);

/// A PostgreSQL cluster of this test's own, in the durable profile, through `deploy/stack.sh`.
struct Cluster {
    stack: ScratchStack,
    port: u16,
}

impl Cluster {
    fn new() -> Self {
        let port = free_port(&[]);
        // A port nothing listens on, so the stack's Kafka address differs from
        // `KAFKA_BOOTSTRAP` and stack.sh leaves Kafka alone.
        let kafka_port = free_port(&[port]);
        let env = vec![
            ("STACK_PG_PORT".to_owned(), port.to_string()),
            ("STACK_PG_PROFILE".to_owned(), "durable".to_owned()),
            ("STACK_KAFKA_PORT".to_owned(), kafka_port.to_string()),
            ("KAFKA_BOOTSTRAP".to_owned(), kafka_bootstrap()),
        ];
        // `make test` exports the shared stack's URL; set, stack.sh would use it instead.
        Self {
            stack: ScratchStack::new("durability", env, &["DATABASE_URL"]),
            port,
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    async fn run(&self, args: &[&str]) -> anyhow::Result<()> {
        self.stack.run(args).await
    }
}

/// The outcome of one webhook: its category id, the HTTP status (0: no answer) and, when
/// answered 200, the delivery id.
struct Sent {
    category_id: i64,
    status: u16,
    delivery_id: Option<String>,
    sent_at: Instant,
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    org: &str,
    category_id: i64,
    updated_at: &str,
) -> Sent {
    let body = json!({
        "action": "CREATED",
        "resource": "CATEGORY",
        "data": {"id": category_id, "org_id": org, "name": "Travel",
                 "sub_category": format!("Sub {category_id}"), "is_enabled": true,
                 "updated_at": updated_at},
    });
    let sent_at = Instant::now();
    let (status, delivery_id) = match http.post(url).json(&body).send().await {
        Ok(response) if response.status() == 200 => match response.json::<Value>().await {
            Ok(answer) => (200, answer["delivery_id"].as_str().map(str::to_owned)),
            // Answered 200 but the body was lost on the way: not an acknowledgement we saw.
            Err(_) => (0, None),
        },
        Ok(response) => (response.status().as_u16(), None),
        Err(_) => (0, None),
    };
    Sent {
        category_id,
        status,
        delivery_id,
        sent_at,
    }
}

#[derive(QueryableByName)]
struct Settings {
    #[diesel(sql_type = Text)]
    fsync: String,
    #[diesel(sql_type = Text)]
    synchronous_commit: String,
    #[diesel(sql_type = Text)]
    full_page_writes: String,
}

#[derive(QueryableByName)]
struct InboxRow {
    #[diesel(sql_type = Text)]
    delivery_id: String,
    #[diesel(sql_type = Text)]
    category_id: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_webhooks_survive_an_immediate_postgres_stop_and_restart_under_load() {
    attrsync_telemetry::init_for_tests();
    let cluster = Arc::new(Cluster::new());
    std::fs::create_dir_all(&cluster.stack.dir).unwrap();
    cluster.run(&["up"]).await.unwrap();

    let mut conn = AsyncPgConnection::establish(&cluster.url()).await.unwrap();
    let settings: Settings = diesel::sql_query(
        "SELECT current_setting('fsync') AS fsync, \
         current_setting('synchronous_commit') AS synchronous_commit, \
         current_setting('full_page_writes') AS full_page_writes",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    drop(conn);
    assert_eq!(
        (
            settings.fsync.as_str(),
            settings.synchronous_commit.as_str(),
            settings.full_page_writes.as_str()
        ),
        ("on", "on", "on"),
        "the test's cluster runs the durable profile"
    );

    // mapping and ingest against the cluster; ingest answers quickly while it is down.
    let topic_prefix = format!("t{}.", ulid::Ulid::new().to_string().to_lowercase());
    let shutdown = CancellationToken::new();
    let mapping_running = mapping::start(
        mapping::Config::from_env_pairs(service_env(
            "mapping",
            &cluster.url(),
            &topic_prefix,
            None,
        ))
        .unwrap(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let mut ingest_env = service_env(
        "ingest",
        &cluster.url(),
        &topic_prefix,
        Some(mapping_running.grpc_addr),
    );
    ingest_env.extend(
        [
            ("INGEST__DATABASE__POOL_SIZE", "8"),
            ("INGEST__DATABASE__CONNECT_TIMEOUT", "1s"),
            ("INGEST__DATABASE__CHECKOUT_TIMEOUT", "1s"),
            ("INGEST__DATABASE__QUERY_TIMEOUT", "2s"),
            ("INGEST__RATE_LIMIT__PER_WORKSPACE_PER_SECOND", "100000"),
            ("INGEST__RATE_LIMIT__BURST", "100000"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let ingest_running = ingest::start(
        ingest::Config::from_env_pairs(ingest_env).unwrap(),
        shutdown.clone(),
    )
    .await
    .unwrap();

    let org = format!("or{}", &ulid::Ulid::new().to_string()[14..]);
    let workspace_id =
        MappingServiceClient::connect(format!("http://{}", mapping_running.grpc_addr))
            .await
            .unwrap()
            .create_workspace(CreateWorkspaceRequest {
                name: format!("Workspace of {org}"),
                fyle_org_id: org.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .workspace
            .unwrap()
            .id;
    // The URL ingest hands out for the workspace (its token included), on this ingest.
    let ingest_api = IngestServiceClient::connect(format!("http://{}", ingest_running.grpc_addr))
        .await
        .unwrap();
    let endpoint = eventually(
        Duration::from_secs(20),
        "ingest to hand out the workspace's webhook URL",
        || {
            let mut ingest_api = ingest_api.clone();
            async move {
                Ok(ingest_api
                    .get_webhook_endpoint(GetWebhookEndpointRequest { workspace_id })
                    .await
                    .ok()
                    .map(|r| r.into_inner().url))
            }
        },
    )
    .await
    .unwrap();
    let (_, path) = endpoint.split_once("/workspaces/").unwrap();
    let url = format!("http://{}/workspaces/{path}", ingest_running.http_addr);
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap();
    let base = chrono::DateTime::parse_from_rfc3339("2024-05-02T10:00:00+00:00").unwrap();
    let updated_at = move |i: i64| (base + chrono::Duration::milliseconds(i)).to_rfc3339();

    // One webhook first, so ingest's projection knows the workspace before the load.
    let warm_up = eventually(
        Duration::from_secs(20),
        "ingest to accept a first webhook",
        || async {
            Ok(Some(post(&http, &url, &org, 1, &updated_at(1)).await).filter(|s| s.status == 200))
        },
    )
    .await
    .unwrap();

    // The fault: PostgreSQL stopped immediately in the middle of the load, then started again.
    let fault = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            tokio::time::sleep(STOP_AFTER).await;
            let stopped_at = Instant::now();
            cluster.run(&["pg-stop-immediate"]).await?;
            tokio::time::sleep(DOWN_FOR).await;
            cluster.run(&["up"]).await?;
            anyhow::Ok((stopped_at, Instant::now()))
        })
    };

    // The load: TOTAL distinct, versioned webhooks at RATE per second, IN_FLIGHT at most,
    // none sent after LOAD_BUDGET.
    let budget = Instant::now() + LOAD_BUDGET;
    let load = async {
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut senders = JoinSet::new();
        for i in 0..TOTAL as i64 {
            ticks.tick().await;
            let Ok(permit) = tokio::time::timeout_at(budget, permits.clone().acquire_owned()).await
            else {
                break;
            };
            let permit = permit.unwrap();
            let (http, url, org) = (http.clone(), url.clone(), org.clone());
            let category_id = 1_000 + i;
            let updated_at = updated_at(category_id);
            senders.spawn(async move {
                let sent = post(&http, &url, &org, category_id, &updated_at).await;
                drop(permit);
                sent
            });
        }
        senders.join_all().await
    };
    let mut sent = tokio::time::timeout_at(budget + REQUEST_TIMEOUT + Duration::from_secs(5), load)
        .await
        .expect("every request is answered or timed out");
    let (stopped_at, restarted_at) = fault.await.unwrap().unwrap();
    sent.push(warm_up);

    // Every acknowledged webhook is in the inbox, with its body: read from the cluster itself.
    let mut conn = AsyncPgConnection::establish(&cluster.url()).await.unwrap();
    let rows: Vec<InboxRow> = diesel::sql_query(
        "SELECT delivery_id, body->'data'->>'id' AS category_id FROM ingest.inbox",
    )
    .load(&mut conn)
    .await
    .unwrap();
    drop(conn);
    let inbox: HashMap<String, String> = rows
        .into_iter()
        .map(|r| (r.delivery_id, r.category_id))
        .collect();

    let acknowledged: Vec<&Sent> = sent.iter().filter(|s| s.status == 200).collect();
    let lost: Vec<(i64, Option<&str>)> = acknowledged
        .iter()
        .filter(|s| {
            s.delivery_id.as_ref().and_then(|id| inbox.get(id)) != Some(&s.category_id.to_string())
        })
        .map(|s| (s.category_id, s.delivery_id.as_deref()))
        .collect();
    let mut refused: BTreeMap<u16, usize> = BTreeMap::new();
    for s in sent.iter().filter(|s| s.status != 200) {
        *refused.entry(s.status).or_default() += 1;
    }
    let refused_total: usize = refused.values().sum();
    let refused_in_outage = sent
        .iter()
        .filter(|s| s.status != 200 && (stopped_at..restarted_at).contains(&s.sent_at))
        .count();
    let acknowledged_after_restart = acknowledged
        .iter()
        .filter(|s| s.sent_at >= restarted_at)
        .count();
    println!(
        "durability: sent {}, acknowledged {}, found in the inbox {}, lost {}, refused {} \
         (by status, 0 = no answer: {refused:?}; {refused_in_outage} sent during the outage of \
         {:?}), acknowledged after the restart {}, inbox rows {}",
        sent.len(),
        acknowledged.len(),
        acknowledged.len() - lost.len(),
        lost.len(),
        refused_total,
        restarted_at - stopped_at,
        acknowledged_after_restart,
        inbox.len(),
    );

    assert!(
        lost.is_empty(),
        "{} acknowledged webhooks are not in the inbox after the restart (category id, \
         delivery id), the first: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    assert!(
        refused_in_outage > 0,
        "no request was refused while PostgreSQL was down: the load did not cross the outage"
    );
    assert!(
        acknowledged_after_restart > 0,
        "ingest accepted nothing after PostgreSQL came back"
    );

    shutdown.cancel();
    ingest_running.stop().await;
    mapping_running.stop().await;
}
