// The suites and the cluster files are embedded in the binary; rebuild when anything in
// those folders changes, including files added or removed (which include_dir alone misses).
fn main() {
    println!("cargo:rerun-if-changed=../suites");
    println!("cargo:rerun-if-changed=../clusters");
}
