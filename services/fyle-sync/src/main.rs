//! The fyle-sync service binary.

use attrsync_config::ServiceConfig as _;
use fyle_sync::Config;

fn main() -> std::process::ExitCode {
    attrsync_runtime::exit_code("fyle-sync", run())
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
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
