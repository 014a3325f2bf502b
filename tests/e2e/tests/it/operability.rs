//! What operators and standard tools rely on: gRPC health and reflection on every service,
//! and trace context carried from the HTTP request into Kafka.

use attrsync_config::ServiceConfig as _;
use std::time::Duration;

use attrsync_e2e::TestStack;
use attrsync_kafka::{envelope, topics};
use serde_json::json;
use tokio_stream::StreamExt;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use crate::kafka_reader::read_until;

async fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn serving(addr: std::net::SocketAddr, service: &str) -> ServingStatus {
    let mut client = HealthClient::new(channel(addr).await);
    let response = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap();
    response.into_inner().status()
}

async fn reflected_services(addr: std::net::SocketAddr) -> Vec<String> {
    let mut client = ServerReflectionClient::new(channel(addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    match stream.next().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_serves_grpc_health_and_reflection() {
    let stack = TestStack::start().await.unwrap();
    let addrs = stack.grpc_addrs();
    for (addr, service) in [
        (addrs.mapping, "attrsync.v1.MappingService"),
        (addrs.ingest, "attrsync.v1.IngestService"),
        (addrs.fyle_sync, "attrsync.v1.FyleSyncService"),
    ] {
        assert_eq!(serving(addr, "").await, ServingStatus::Serving);
        assert_eq!(
            serving(addr, service).await,
            ServingStatus::Serving,
            "{service}"
        );
        let services = reflected_services(addr).await;
        assert!(
            services.contains(&service.to_owned()),
            "{service} not in {services:?}"
        );
        assert!(services.contains(&"grpc.health.v1.Health".to_owned()));
    }
    // qbo-sync and import-to-fyle start through the same skeleton.
    let shutdown = tokio_util::sync::CancellationToken::new();
    let env = |service| {
        attrsync_e2e::service_env(
            service,
            &stack.database.url,
            &stack.topic_prefix,
            Some(addrs.mapping),
        )
    };
    let qbo = qbo_sync::start(
        qbo_sync::Config::from_env_pairs(env("qbo-sync")).unwrap(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let import = import_to_fyle::start(
        import_to_fyle::Config::from_env_pairs(env("import-to-fyle")).unwrap(),
        shutdown.clone(),
    )
    .await
    .unwrap();
    for running in [&qbo, &import] {
        assert_eq!(serving(running.grpc_addr, "").await, ServingStatus::Serving);
        let readyz = stack
            .http
            .get(format!("http://{}/readyz", running.http_addr))
            .send()
            .await
            .unwrap();
        assert_eq!(readyz.status(), 200);
    }
    assert!(
        reflected_services(qbo.grpc_addr)
            .await
            .contains(&"grpc.reflection.v1.ServerReflection".to_owned())
    );
    qbo.stop().await;
    import.stop().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_trace_continues_into_the_kafka_message() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let body = serde_json::to_vec(
        &json!({"action": "DELETED", "resource": "PROJECT", "data": {"id": 1, "org_id": org}}),
    )
    .unwrap();
    let response = stack
        .http
        .post(stack.webhook_url(workspace_id).await.unwrap())
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let messages = read_until(
        &stack.topic(topics::FYLE_ATTRIBUTE_WEBHOOKS),
        Duration::from_secs(60),
        |s| !s.is_empty(),
    )
    .await
    .unwrap();
    let envelope = envelope::decode(&messages[0].payload).unwrap();
    let traceparent = envelope
        .trace_context
        .get("traceparent")
        .expect("trace context in the envelope");
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-")),
        "{traceparent}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_callers_trace_continues_into_the_snapshot_it_causes() {
    let stack = TestStack::start().await.unwrap();
    let trace_id = "5b8efff798038103d269b633813fc60c";
    let mut request = tonic::Request::new(attrsync_proto::v1::CreateWorkspaceRequest {
        name: "Traced".into(),
        fyle_org_id: "orTraced1".into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-eee19b7ec3c1b174-01")
            .parse()
            .unwrap(),
    );
    stack
        .mapping
        .clone()
        .create_workspace(request)
        .await
        .unwrap();
    let messages = read_until(
        &stack.topic(topics::WORKSPACE_SETTINGS),
        Duration::from_secs(60),
        |s| !s.is_empty(),
    )
    .await
    .unwrap();
    let envelope = envelope::decode(&messages[0].payload).unwrap();
    let traceparent = envelope
        .trace_context
        .get("traceparent")
        .expect("trace context in the envelope");
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-")),
        "{traceparent}"
    );
    stack.stop().await;
}

/// `pg_class.reltuples` of `first_stats.t` in the database at `url` (−1: no statistics).
async fn reltuples(db: &mut attrsync_db::diesel_async::AsyncPgConnection) -> f32 {
    use attrsync_db::diesel_async::RunQueryDsl as _;
    #[derive(diesel::QueryableByName)]
    struct Tuples {
        #[diesel(sql_type = diesel::sql_types::Float4)]
        reltuples: f32,
    }
    diesel::sql_query("SELECT reltuples FROM pg_class WHERE oid = 'first_stats.t'::regclass")
        .get_result::<Tuples>(db)
        .await
        .expect("reltuples")
        .reltuples
}

/// First statistics (`attrsync_runtime::statistics`): a pass that comes while a table's first
/// rows are still uncommitted counts none, so the next pass after they commit analyses it
/// again — a bounded number of times — and an empty table is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_statistics_taken_before_the_first_rows_committed_are_taken_again() {
    use attrsync_db::diesel_async::{
        AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _, SimpleAsyncConnection as _,
    };
    use attrsync_runtime::statistics::{MAX_REPEATS, analyse_new_tables};
    let database = attrsync_e2e::test_database().await;
    let url = attrsync_db::url_with_schema(&database.url, "first_stats").unwrap();
    let mut admin = AsyncPgConnection::establish(&database.url).await.unwrap();
    admin
        .batch_execute(
            "CREATE SCHEMA first_stats; \
             CREATE TABLE first_stats.t (id bigint PRIMARY KEY, v text NOT NULL) \
                 WITH (autovacuum_enabled = false); \
             CREATE TABLE first_stats.empty (id bigint PRIMARY KEY)",
        )
        .await
        .unwrap();
    let (mut writer, mut service) = (
        AsyncPgConnection::establish(&url).await.unwrap(),
        AsyncPgConnection::establish(&url).await.unwrap(),
    );
    let mut repeats = std::collections::HashMap::new();
    assert!(
        analyse_new_tables(&mut service, &mut repeats)
            .await
            .unwrap()
            .analysed
            .is_empty(),
        "tables without pages are left alone"
    );

    // The first rows, written but not committed: the pass analyses and counts none.
    diesel::sql_query("BEGIN")
        .execute(&mut writer)
        .await
        .unwrap();
    diesel::sql_query("INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 5000) g")
        .execute(&mut writer)
        .await
        .unwrap();
    let early = analyse_new_tables(&mut service, &mut repeats)
        .await
        .unwrap();
    assert_eq!(early.analysed, ["t"], "{early:?}");
    assert_eq!(reltuples(&mut service).await, 0.0);
    diesel::sql_query("COMMIT")
        .execute(&mut writer)
        .await
        .unwrap();

    // Once the commit is counted, the next pass analyses the table again and counts its rows.
    let again = attrsync_e2e::eventually(
        Duration::from_secs(20),
        "a pass that analyses the committed rows",
        || {
            let (url, mut repeats) = (url.clone(), repeats.clone());
            async move {
                let mut service = AsyncPgConnection::establish(&url).await?;
                let pass = analyse_new_tables(&mut service, &mut repeats).await?;
                Ok((!pass.analysed.is_empty()).then_some((reltuples(&mut service).await, repeats)))
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(again.0, 5000.0);
    assert_eq!(again.1.get("t"), Some(&1));

    // A table whose statistics count no rows while rows were committed since is analysed
    // again at most MAX_REPEATS times per process.
    writer
        .batch_execute("DELETE FROM t; ANALYZE t; INSERT INTO t VALUES (1, 'one')")
        .await
        .unwrap();
    attrsync_e2e::eventually(Duration::from_secs(20), "the insert counted", || {
        let url = url.clone();
        async move {
            #[derive(diesel::QueryableByName)]
            struct Live {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n_live_tup: i64,
            }
            let mut db = AsyncPgConnection::establish(&url).await?;
            let live: Live = diesel::sql_query(
                "SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = 'first_stats.t'::regclass",
            )
            .get_result(&mut db)
            .await?;
            Ok((live.n_live_tup > 0).then_some(()))
        }
    })
    .await
    .unwrap();
    let mut exhausted = std::collections::HashMap::from([("t".to_owned(), MAX_REPEATS)]);
    let pass = analyse_new_tables(&mut service, &mut exhausted)
        .await
        .unwrap();
    assert!(pass.analysed.is_empty(), "{pass:?}");
    assert_eq!(reltuples(&mut service).await, 0.0);
    let pass = analyse_new_tables(&mut service, &mut again.1.clone())
        .await
        .unwrap();
    assert_eq!(
        pass.analysed,
        ["t"],
        "below the cap it is analysed: {pass:?}"
    );
    assert_eq!(reltuples(&mut service).await, 1.0);
}
