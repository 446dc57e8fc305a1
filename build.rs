// The migrations are compiled into the binary (`sqlx::migrate!`): build again when one
// is added or changed, not only when Rust code changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
