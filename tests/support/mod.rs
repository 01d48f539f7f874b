//! Helpers shared by the end-to-end tests: the shoal binary, scratch folders, reference peers.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The shoal binary built for these tests.
pub fn shoal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
}

/// Runs shoal with `args` and returns its output, failing the test if it cannot start.
pub fn run_shoal(args: &[&str]) -> Output {
    shoal().args(args).output().expect("run shoal")
}

/// A fresh scratch folder under the target dir, removed first if it exists.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Writes `len` deterministic pseudo-random bytes to `path`.
pub fn write_random_file(path: &Path, len: usize, seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        // xorshift64*: cheap, deterministic, good enough for test payloads.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        data.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    data.truncate(len);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create parent");
    }
    std::fs::write(path, data).expect("write payload");
}

/// Debian's python3, which is the one that can import python3-libtorrent.
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Whether python3-libtorrent is importable. In CI (`CI=true`) a missing reference peer is a
/// failure, not a skip.
pub fn libtorrent_available() -> bool {
    let ok = Command::new(SYSTEM_PYTHON)
        .args(["-c", "import libtorrent"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("python3-libtorrent is required in CI (apt-get install python3-libtorrent)");
    }
    if !ok {
        eprintln!("SKIPPED: python3-libtorrent is not installed (scripts/test.sh installs it)");
    }
    ok
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
