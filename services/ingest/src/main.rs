//! The ingest service binary.

use attrsync_config::ServiceConfig as _;
use ingest::Config;

fn main() -> std::process::ExitCode {
    attrsync_runtime::exit_code("ingest", run())
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
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
