//! The ingest service binary.

fn main() -> std::process::ExitCode {
    attrsync_runtime::service::main::<ingest::Ingest>()
}
