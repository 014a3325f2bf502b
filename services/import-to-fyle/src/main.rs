//! The import-to-fyle service binary.

fn main() -> std::process::ExitCode {
    attrsync_runtime::service::main::<import_to_fyle::ImportToFyle>()
}
