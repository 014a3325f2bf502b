//! The import-to-fyle service binary.

use attrsync_config::ServiceConfig as _;
use import_to_fyle::Config;

fn main() -> std::process::ExitCode {
    attrsync_runtime::exit_code("import-to-fyle", run())
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let config = Config::load(std::env::args())?;
    let _telemetry = attrsync_telemetry::init("import-to-fyle", &config.telemetry)?;
    let shutdown = attrsync_runtime::shutdown_on_signal();
    let (_, mut tasks) = import_to_fyle::start(config, shutdown).await?;
    while tasks.join_next().await.is_some() {}
    Ok(())
}
