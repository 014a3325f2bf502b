//! Rebuilds the binary when a migration is added: they are embedded with `embed_migrations!`.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations/import-to-fyle");
}
