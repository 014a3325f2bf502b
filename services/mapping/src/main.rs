//! The mapping service binary.

use attrsync_config::ServiceConfig as _;
use mapping::Config;

fn main() -> std::process::ExitCode {
    attrsync_runtime::exit_code("mapping", run())
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let config = Config::load(std::env::args())?;
    let _telemetry = attrsync_telemetry::init("mapping", &config.telemetry)?;
    if std::env::args().any(|arg| arg == "--migrate-only") {
        return mapping::migrate(&config).await;
    }
    let shutdown = attrsync_runtime::shutdown_on_signal();
    let running = mapping::start(config, shutdown.clone()).await?;
    shutdown.cancelled().await;
    running.stop().await;
    Ok(())
}
