//! The qbo-sync service binary.

use qbo_sync::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load(std::env::args())?;
    let _telemetry = attrsync_telemetry::init("qbo-sync", &config.telemetry)?;
    let shutdown = attrsync_runtime::shutdown_on_signal();
    let (_, server) = qbo_sync::start(config, shutdown).await?;
    server.await?;
    Ok(())
}
