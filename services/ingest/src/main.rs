//! The ingest service binary.

use ingest::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load(std::env::args())?;
    let _telemetry = attrsync_telemetry::init("ingest", &config.telemetry)?;
    if std::env::args().any(|arg| arg == "--migrate-only") {
        return ingest::migrate(&config).await;
    }
    let shutdown = attrsync_runtime::shutdown_on_signal();
    let running = ingest::start(config, shutdown.clone()).await?;
    shutdown.cancelled().await;
    running.stop().await;
    Ok(())
}
