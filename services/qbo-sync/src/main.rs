//! The qbo-sync service binary.

fn main() -> std::process::ExitCode {
    attrsync_runtime::service::main::<qbo_sync::QboSync>()
}
