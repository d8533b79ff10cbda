//! The built `kubedns`, `dnsmasq-rs` and `healthz` executables.
//!
//! They are not this package's binaries, so cargo gives no `CARGO_BIN_EXE_*` for them. They are
//! taken from the target directory this test runs from (`target/<profile>/`, found from the test
//! executable's own path, so `CARGO_TARGET_DIR` and `--release` work). `cargo test --workspace`
//! has built them already: their packages have integration tests, and cargo builds a package's
//! binaries before its integration tests. Run alone (`cargo test -p integration-tests`), a
//! binary may be missing or older than its sources; then [`path`] runs
//! `cargo build -p kubedns -p dnsmasq-rs -p healthz --bins` first, once per test process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::container::Binary;
use crate::repo_root;

/// The crates whose sources go into the three binaries.
const SOURCES: &[&str] = &[
    "crates/kubedns",
    "crates/dnsmasq-rs",
    "crates/healthz",
    "crates/net",
    "crates/daemon",
    "crates/config",
];

/// The path of `binary`'s executable, built first if it is missing or out of date.
///
/// # Panics
/// If it cannot be built.
pub fn path(binary: Binary) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(build_if_stale);
    let path = profile_dir().join(binary.name());
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// The target directory this test runs from (`target/`, or `CARGO_TARGET_DIR`), for reports.
pub fn target_dir() -> PathBuf {
    let profile = profile_dir();
    profile.parent().map_or(profile.clone(), Path::to_path_buf)
}

/// `target/<profile>`: the test executable lives in its `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test executable is in target/<profile>/deps")
        .to_path_buf()
}

fn build_if_stale() {
    let dir = profile_dir();
    let newest_source = newest_source();
    let stale: Vec<&str> = Binary::ALL
        .iter()
        .map(|binary| binary.name())
        .filter(|name| modified(&dir.join(name)).is_none_or(|built| built < newest_source))
        .collect();
    if stale.is_empty() {
        return;
    }
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    eprintln!(
        "building {} ({profile} profile): missing or older than their sources",
        stale.join(", ")
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let status = Command::new(cargo)
        .current_dir(repo_root())
        .args(["build", "--profile", &profile, "--bins"])
        .args(["-p", "kubedns", "-p", "dnsmasq-rs", "-p", "healthz"])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build of the binaries failed");
}

/// The latest modification time of the binaries' sources, manifests and the lock file.
fn newest_source() -> SystemTime {
    let root = repo_root();
    let mut newest = modified(&root.join("Cargo.lock")).unwrap_or(SystemTime::UNIX_EPOCH);
    for krate in SOURCES {
        let dir = root.join(krate);
        for file in [dir.join("Cargo.toml")]
            .into_iter()
            .chain(files_under(&dir.join("src")))
        {
            if let Some(time) = modified(&file) {
                newest = newest.max(time);
            }
        }
    }
    newest
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
