//! import-to-fyle in a [`TestStack`]: started on demand, in the stack's database, topic prefix
//! and shutdown, asking this stack's fyle-sync for Fyle access tokens and values, listening
//! where the stack's mapping expects it (one per stack).

use attrsync_config::ServiceConfig as _;
use attrsync_proto::v1::import_to_fyle_service_client::ImportToFyleServiceClient;
use attrsync_runtime::Running;
use tonic::transport::Channel;

use crate::{TestStack, service_env};

/// An import-to-fyle started by [`TestStack::start_import_to_fyle`].
#[derive(Debug)]
pub struct ImportHandle {
    pub client: ImportToFyleServiceClient<Channel>,
    pub running: Running,
}

impl TestStack {
    /// Starts an import-to-fyle in this stack with extra `IMPORT_TO_FYLE__…` settings.
    pub async fn start_import_to_fyle(
        &self,
        extra: Vec<(String, String)>,
    ) -> anyhow::Result<ImportHandle> {
        let addrs = self.grpc_addrs();
        let mut env = service_env(
            "import-to-fyle",
            &self.database.url,
            &self.topic_prefix,
            Some(addrs.mapping),
        );
        env.retain(|(name, _)| name != "IMPORT_TO_FYLE__GRPC__LISTEN");
        env.push((
            "IMPORT_TO_FYLE__GRPC__LISTEN".into(),
            format!("127.0.0.1:{}", self.import_to_fyle_port),
        ));
        env.push((
            "IMPORT_TO_FYLE__FYLE_SYNC__ENDPOINT".into(),
            format!("http://{}", addrs.fyle_sync),
        ));
        // Quick rounds, so tests see a QBO change imported in well under a second.
        env.push((
            "IMPORT_TO_FYLE__RUNS__COALESCE_WINDOW".into(),
            "100ms".into(),
        ));
        env.push(("IMPORT_TO_FYLE__RUNS__RETRY_INITIAL".into(), "200ms".into()));
        env.extend(extra);
        let config = import_to_fyle::Config::from_env_pairs(env)?;
        let running = import_to_fyle::start(config, self.shutdown_token()).await?;
        let client =
            ImportToFyleServiceClient::connect(format!("http://{}", running.grpc_addr)).await?;
        Ok(ImportHandle { client, running })
    }
}
