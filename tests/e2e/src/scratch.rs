//! A stack of a fault test's own: `deploy/stack.sh` run with its own `STACK_DIR` and ports, so
//! a test can stop and start a server (PostgreSQL, Kafka) without disturbing the shared stack
//! every other test uses. Dropping it runs `stack.sh down` for that directory (which stops only
//! what it started) and removes the directory, also when the test fails.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Command, Output, Stdio},
};

const STACK_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/stack.sh");

/// `deploy/stack.sh` bound to one test's directory and environment.
#[derive(Debug)]
pub struct ScratchStack {
    pub dir: PathBuf,
    env: Vec<(String, String)>,
    unset: Vec<&'static str>,
}

impl ScratchStack {
    /// A stack in a fresh temporary directory named after `name`, with `env` set and `unset`
    /// removed for every `stack.sh` call (e.g. the shared stack's `DATABASE_URL`, which would
    /// make stack.sh use it instead of starting its own).
    pub fn new(name: &str, env: Vec<(String, String)>, unset: &[&'static str]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "attrsync-{name}-{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ));
        Self {
            dir,
            env,
            unset: unset.to_vec(),
        }
    }

    /// `stack.sh <args>` as a command, ready to run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("bash");
        command
            .arg(STACK_SH)
            .args(args)
            .env("STACK_DIR", &self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        for name in &self.unset {
            command.env_remove(name);
        }
        command
    }

    /// Runs `stack.sh <args>` without blocking the runtime; fails with its stderr.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<()> {
        let output = tokio::process::Command::from(self.command(args))
            .output()
            .await?;
        checked(args, &output)
    }
}

impl Drop for ScratchStack {
    fn drop(&mut self) {
        match self.command(&["down"]).output() {
            Ok(output) => {
                if let Err(e) = checked(&["down"], &output) {
                    eprintln!("{e}");
                }
            }
            Err(e) => eprintln!("deploy/stack.sh down could not run: {e}"),
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn checked(args: &[&str], output: &Output) -> anyhow::Result<()> {
    anyhow::ensure!(
        output.status.success(),
        "deploy/stack.sh {} failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// A free local port outside the kernel's ephemeral range (which the tests' own outgoing
/// connections draw from), and not one of `except`.
pub fn free_port(except: &[u16]) -> u16 {
    let seed = ulid::Ulid::new().random();
    (0..2_000u128)
        .map(|i| 20_000 + ((seed + i * 7_919) % 10_000) as u16)
        .find(|port| !except.contains(port) && TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port between 20000 and 30000")
}
