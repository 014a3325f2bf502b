//! The qbo-sync service binary.

use qbo_sync::Config;

fn main() -> std::process::ExitCode {
    attrsync_runtime::exit_code("qbo-sync", run())
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let config = Config::load(std::env::args())?;
    let _telemetry = attrsync_telemetry::init("qbo-sync", &config.telemetry)?;
    let shutdown = attrsync_runtime::shutdown_on_signal();
    let (_, server) = qbo_sync::start(config, shutdown).await?;
    server.await?;
    Ok(())
}
