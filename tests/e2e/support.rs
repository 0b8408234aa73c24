//! Finds the workspace's binaries, building them first, so that tests run exactly what a user runs.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The path of a workspace binary, after building every workspace binary once per test process (a no-op when
/// they are fresh) in the same profile as the tests.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status =
            Command::new(cargo).args(["build", "--quiet", "--workspace", "--bins"]).status().expect("cargo runs");
        assert!(status.success(), "building the workspace binaries failed");
    });
    // Tests run from target/<profile>/deps; binaries sit one level up.
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(|deps| deps.parent()).expect("target directory").join(name)
}
