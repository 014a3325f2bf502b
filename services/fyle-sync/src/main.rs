//! The fyle-sync service binary.

fn main() -> std::process::ExitCode {
    attrsync_runtime::service::main::<fyle_sync::FyleSync>()
}
