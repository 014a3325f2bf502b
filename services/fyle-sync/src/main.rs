//! The fyle_sync service binary.

use fyle_sync::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load(std::env::args())?;
    let _telemetry = attrsync_telemetry::init("fyle-sync", &config.telemetry)?;
    if std::env::args().any(|arg| arg == "--migrate-only") {
        return fyle_sync::migrate(&config).await;
    }
    let shutdown = attrsync_runtime::shutdown_on_signal();
    let running = fyle_sync::start(config, shutdown.clone()).await?;
    shutdown.cancelled().await;
    running.stop().await;
    Ok(())
}
