//! The qbo-sync service binary.

use attrsync_config::ServiceConfig as _;
use qbo_sync::Config;

fn main() -> std::process::ExitCode {
    attrsync_runtime::exit_code("qbo-sync", run())
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let config = Config::load(std::env::args())?;
    let _telemetry = attrsync_telemetry::init("qbo-sync", &config.telemetry)?;
    let shutdown = attrsync_runtime::shutdown_on_signal();
    let (_, mut tasks) = qbo_sync::start(config, shutdown).await?;
    while tasks.join_next().await.is_some() {}
    Ok(())
}
