//! `sandbox`: runs the Fyle and QBO simulators until SIGINT/SIGTERM.
//!
//! At start it prints one JSON line on stdout with both base URLs and every client credential
//! (Fyle clients per org, the QBO app, realm refresh tokens, the webhook verifier token), so a
//! script (`make run`) can read it. Configuration: see `attrsync_sandbox::cli`.

use attrsync_sandbox::{Sandbox, cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match cli::parse(&args, |k| std::env::var(k).ok()) {
        Ok(Some(c)) => c,
        Ok(None) => {
            println!("{}", cli::USAGE);
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sandbox: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let sandbox = match Sandbox::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sandbox: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match serde_json::to_string(&sandbox.credentials()) {
        Ok(line) => println!("{line}"),
        Err(e) => eprintln!("sandbox: cannot print credentials: {e}"),
    }
    wait_for_signal().await;
    eprintln!("sandbox: stopping");
    sandbox.stop().await;
    std::process::ExitCode::SUCCESS
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
