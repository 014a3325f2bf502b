//! qbo-sync in a [`TestStack`]: started on demand (most tests do not need it), in the stack's
//! database, topic prefix and shutdown, pointed at a sandbox's QBO.

use attrsync_config::ServiceConfig as _;
use attrsync_proto::v1::qbo_sync_service_client::QboSyncServiceClient;
use attrsync_runtime::Running;
use tonic::transport::Channel;

use crate::{TestStack, service_env};

/// A qbo-sync started by [`TestStack::start_qbo_sync`].
#[derive(Debug)]
pub struct QboSyncHandle {
    pub client: QboSyncServiceClient<Channel>,
    pub running: Running,
}

impl TestStack {
    /// Starts a qbo-sync in this stack talking to the QBO at `qbo_url` (a sandbox's), with
    /// extra `QBO_SYNC__…` settings. Several may run at once (replicas of one group).
    pub async fn start_qbo_sync(
        &self,
        qbo_url: &str,
        extra: Vec<(String, String)>,
    ) -> anyhow::Result<QboSyncHandle> {
        let mut env = service_env(
            "qbo-sync",
            &self.database.url,
            &self.topic_prefix,
            Some(self.grpc_addrs().mapping),
        );
        let base = qbo_url.trim_end_matches('/');
        env.push(("QBO_SYNC__QBO__API_URL".into(), base.to_owned()));
        env.push((
            "QBO_SYNC__QBO__TOKEN_URL".into(),
            format!("{base}/oauth2/v1/tokens/bearer"),
        ));
        // Quick rounds, so tests see webhooks applied in well under a second.
        env.push(("QBO_SYNC__WEBHOOKS__COALESCE_WINDOW".into(), "100ms".into()));
        env.push(("QBO_SYNC__WEBHOOKS__RETRY_INITIAL".into(), "200ms".into()));
        env.extend(extra);
        let config = qbo_sync::Config::from_env_pairs(env)?;
        let running = qbo_sync::start(config, self.shutdown_token()).await?;
        let client = QboSyncServiceClient::connect(format!("http://{}", running.grpc_addr)).await?;
        Ok(QboSyncHandle { client, running })
    }
}
