//! Rebuilds the binary when the embedded web files change.
fn main() {
    println!("cargo:rerun-if-changed=web");
}
