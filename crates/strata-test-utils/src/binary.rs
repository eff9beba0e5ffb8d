//! Another package's binary, for tests that run it as a process of its own
//! (on another "machine", in a network namespace). Cargo hands a test only
//! its own package's binaries (`CARGO_BIN_EXE_<name>`); these live beside
//! them in the same target directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The path of `bin` from the workspace package `package`, in the target
/// directory and profile this test binary was built in; built with
/// `cargo build -p <package> --bin <bin>` first if it is not there. A binary
/// already there is used as it is: the workspace's test run
/// (`scripts/test`) builds every binary afresh, and a test run of one crate
/// alone should not wait on the build lock while others compile.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let test_exe = std::env::current_exe().expect("the test binary's path");
    // <target>/<profile>/deps/<test binary>
    let profile_dir = test_exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps");
    let path = profile_dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    if path.exists() {
        return path;
    }
    let target_dir = profile_dir
        .parent()
        .expect("the profile directory lives in the target directory");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "-p", package, "--bin", bin, "--target-dir"])
        .arg(target_dir);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cargo.arg("--release");
        }
        Some(profile) => {
            cargo.args(["--profile", profile]);
        }
    }
    let status = cargo
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build {bin}: {e}"));
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin} failed"
    );
    assert!(
        path.exists(),
        "cargo built {bin} but not at {}",
        path.display()
    );
    path
}
