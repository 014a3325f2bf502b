//! The mapping service binary.

fn main() -> std::process::ExitCode {
    attrsync_runtime::service::main::<mapping::Mapping>()
}
