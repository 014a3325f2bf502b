//! fyle-sync's Fyle connection against the Fyle sandbox in process: ConnectFyle stores the
//! refresh token sealed and learns org and cluster, a token of another org is refused,
//! GetAccessToken serves a token the data host accepts, and credentials Fyle stops accepting
//! mark the connection broken until it is reconnected — each change announced once on
//! `sync.connections.v1`.

use std::time::Duration;

use attrsync_db::diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use attrsync_e2e::TestStack;
use attrsync_proto::v1::{
    ConnectFyleRequest, GetAccessTokenRequest, GetFyleSyncStatusRequest, SyncFyleDimensionsRequest,
};
use attrsync_sandbox::{
    DEMO_ORG_ID, FaultAction, FaultRule, Sandbox, SandboxConfig, SandboxHandle, Seed, Side,
};
use diesel::{
    QueryableByName,
    sql_types::{Binary, Text},
};
use serde_json::json;

use crate::kafka_reader::{assert_broken_then_reconnected, connection_events_until_reconnected};

const WAIT: Duration = Duration::from_secs(60);

/// The demo sandbox (Fyle's 10 requests/second on), one worker per host.
pub(crate) async fn demo_sandbox() -> SandboxHandle {
    Sandbox::start(SandboxConfig {
        seed: Seed::Demo,
        workers: 1,
        ..SandboxConfig::default()
    })
    .await
    .unwrap()
}

/// A stack whose fyle-sync connects to `sb`'s accounts host (its default Fyle app is the
/// sandbox's demo-org client).
pub(crate) async fn stack_for(sb: &SandboxHandle) -> TestStack {
    TestStack::start_with_env(
        Vec::new(),
        vec![(
            "FYLE_SYNC__FYLE__ACCOUNTS_URL".into(),
            sb.fyle_accounts_url().to_owned(),
        )],
    )
    .await
    .unwrap()
}

/// The demo org's refresh token.
pub(crate) fn demo_refresh_token(sb: &SandboxHandle) -> String {
    sb.credentials()
        .fyle
        .into_iter()
        .find(|c| c.org_id == DEMO_ORG_ID)
        .unwrap()
        .refresh_token
}

/// Connects `workspace_id` (of the demo org) to Fyle with the demo org's refresh token.
pub(crate) async fn connect_demo_org(stack: &TestStack, sb: &SandboxHandle, workspace_id: i64) {
    stack
        .fyle_sync
        .clone()
        .connect_fyle(ConnectFyleRequest {
            workspace_id,
            refresh_token: Some(demo_refresh_token(sb)),
            authorization_code: None,
        })
        .await
        .unwrap();
}

/// A workspace of the demo org, connected to Fyle.
pub(crate) async fn connected_workspace(stack: &TestStack, sb: &SandboxHandle) -> i64 {
    let workspace_id = stack.create_workspace_for_org(DEMO_ORG_ID).await.unwrap();
    connect_demo_org(stack, sb, workspace_id).await;
    workspace_id
}

async fn connection_status(stack: &TestStack, workspace_id: i64) -> (String, String) {
    let s = stack
        .fyle_sync
        .clone()
        .get_sync_status(GetFyleSyncStatusRequest { workspace_id })
        .await
        .unwrap()
        .into_inner();
    (s.fyle_connection, s.fyle_connection_reason)
}

#[derive(QueryableByName)]
struct StoredToken {
    #[diesel(sql_type = Text)]
    key_id: String,
    #[diesel(sql_type = Binary)]
    ciphertext: Vec<u8>,
    #[diesel(sql_type = Text)]
    org_id: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fyle_stores_the_refresh_token_sealed_and_serves_access_tokens() {
    let sb = demo_sandbox().await;
    let stack = stack_for(&sb).await;
    let workspace_id = stack.create_workspace_for_org(DEMO_ORG_ID).await.unwrap();
    assert_eq!(
        connection_status(&stack, workspace_id).await.0,
        "NOT_CONNECTED"
    );
    let refresh_token = demo_refresh_token(&sb);
    let connected = stack
        .fyle_sync
        .clone()
        .connect_fyle(ConnectFyleRequest {
            workspace_id,
            refresh_token: Some(refresh_token.clone()),
            authorization_code: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(connected.org_id, DEMO_ORG_ID);
    assert_eq!(
        connected.cluster_domain,
        sb.fyle_url(),
        "the cluster comes from the accounts host"
    );
    assert_eq!(connection_status(&stack, workspace_id).await.0, "CONNECTED");

    // At rest: sealed under the named key, never the token itself.
    let url = attrsync_db::url_with_schema(&stack.database.url, "fyle_sync").unwrap();
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let stored: StoredToken = diesel::sql_query(
        "SELECT key_id, ciphertext, org_id FROM fyle_connections WHERE workspace_id = $1",
    )
    .bind::<diesel::sql_types::BigInt, _>(workspace_id)
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(stored.key_id, "dev");
    assert_eq!(stored.org_id, DEMO_ORG_ID);
    let token_bytes = refresh_token.as_bytes();
    assert!(
        !stored
            .ciphertext
            .windows(token_bytes.len())
            .any(|w| w == token_bytes),
        "the refresh token is not stored in clear"
    );

    // GetAccessToken serves a token the data host accepts.
    let token = stack
        .fyle_sync
        .clone()
        .get_access_token(GetAccessTokenRequest { workspace_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(token.cluster_domain, sb.fyle_url());
    let profile = reqwest::Client::new()
        .get(format!(
            "{}/platform/v1/spender/my_profile",
            token.cluster_domain
        ))
        .bearer_auth(&token.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(profile.status(), 200);
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_of_another_org_is_refused_and_nothing_is_stored() {
    let sb = demo_sandbox().await;
    let stack = stack_for(&sb).await;
    // The workspace belongs to some other org; the token is the demo org's.
    let (workspace_id, _org) = stack.create_workspace().await.unwrap();
    let refused = stack
        .fyle_sync
        .clone()
        .connect_fyle(ConnectFyleRequest {
            workspace_id,
            refresh_token: Some(demo_refresh_token(&sb)),
            authorization_code: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains(DEMO_ORG_ID),
        "{}",
        refused.message()
    );
    assert_eq!(
        connection_status(&stack, workspace_id).await.0,
        "NOT_CONNECTED"
    );
    // A token Fyle does not know is the caller's mistake.
    let demo_workspace = stack.create_workspace_for_org(DEMO_ORG_ID).await.unwrap();
    let wrong = stack
        .fyle_sync
        .clone()
        .connect_fyle(ConnectFyleRequest {
            workspace_id: demo_workspace,
            refresh_token: Some("not-a-token".into()),
            authorization_code: None,
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::InvalidArgument);
    assert!(!wrong.message().contains("not-a-token"));
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_credentials_mark_the_connection_broken_until_it_is_reconnected() {
    let sb = demo_sandbox().await;
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    // Connecting a working connection again changes nothing worth announcing.
    connect_demo_org(&stack, &sb, workspace_id).await;
    // Fyle now refuses the refresh token (revoked) and the access tokens it issued end: the
    // client fyle-sync keeps for the workspace finds out on its next call.
    sb.fyle().expire_tokens();
    sb.faults().add(FaultRule {
        side: Some(Side::Fyle),
        endpoint: "POST /oauth/token".into(),
        action: FaultAction::Status {
            status: 401,
            body: Some(json!({"message": "Wrong client secret or/and refresh token"})),
            retry_after: None,
        },
        skip: 0,
        times: None,
    });
    let sync = |force| {
        let mut client = stack.fyle_sync.clone();
        async move {
            client
                .sync_dimensions(SyncFyleDimensionsRequest {
                    workspace_id,
                    force,
                    attribute_types: vec!["CATEGORY".into()],
                    incremental: false,
                })
                .await
        }
    };
    let failed = sync(true).await.unwrap_err();
    assert_eq!(failed.code(), tonic::Code::FailedPrecondition);
    let (status, reason) = connection_status(&stack, workspace_id).await;
    assert_eq!(status, "BROKEN");
    assert!(reason.contains("401"), "{reason}");
    let metrics = stack
        .http
        .get(format!(
            "http://{}/metrics",
            stack.fyle_sync_running().http_addr
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("fyle_sync_connection_broken_total"),
        "{metrics}"
    );

    // Broken: no more calls to Fyle for this workspace, whatever is asked.
    let token_calls = sb.stats().count(Side::Fyle, "POST /oauth/token");
    assert_eq!(
        sync(true).await.unwrap_err().code(),
        tonic::Code::FailedPrecondition
    );
    let access = stack
        .fyle_sync
        .clone()
        .get_access_token(GetAccessTokenRequest { workspace_id })
        .await
        .unwrap_err();
    assert_eq!(access.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        sb.stats().count(Side::Fyle, "POST /oauth/token"),
        token_calls,
        "a broken connection does not hammer Fyle"
    );

    // Reconnected with working credentials: back to normal.
    sb.faults().clear();
    connect_demo_org(&stack, &sb, workspace_id).await;
    assert_eq!(connection_status(&stack, workspace_id).await.0, "CONNECTED");
    assert!(sync(true).await.unwrap().into_inner().pulled);

    // Each change of state was announced once, in order, and nothing else: the events of one
    // workspace share a partition, so a repeat of the first or second would come before the
    // reconnection read last.
    let events = connection_events_until_reconnected(&stack, workspace_id, WAIT).await;
    assert_broken_then_reconnected(&events, "fyle", DEMO_ORG_ID, "401");
    stack.stop().await;
    sb.stop().await;
}

/// Pulls reuse the workspace's connected client: a pull per webhook or import must not cost a
/// token exchange, a cluster lookup and a profile call each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_pulls_reuse_the_connected_client_instead_of_connecting_again() {
    let sb = demo_sandbox().await;
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    let pull = || {
        let mut client = stack.fyle_sync.clone();
        async move {
            client
                .sync_dimensions(SyncFyleDimensionsRequest {
                    workspace_id,
                    force: true,
                    attribute_types: vec!["CATEGORY".into()],
                    incremental: true,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    assert!(pull().await.pulled);
    let connecting = |sb: &SandboxHandle| {
        (
            sb.stats().count(Side::Fyle, "POST /oauth/token"),
            sb.stats().count(Side::Fyle, "POST /oauth/cluster"),
            sb.stats()
                .count(Side::Fyle, "GET /platform/v1/spender/my_profile"),
        )
    };
    let before = connecting(&sb);
    let categories = sb
        .stats()
        .count(Side::Fyle, "GET /platform/v1/admin/categories");
    for _ in 0..3 {
        assert!(pull().await.pulled);
    }
    assert_eq!(connecting(&sb), before, "no connecting again");
    assert!(
        sb.stats()
            .count(Side::Fyle, "GET /platform/v1/admin/categories")
            >= categories + 3,
        "each pull read Fyle"
    );
    stack.stop().await;
    sb.stop().await;
}
