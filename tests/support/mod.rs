//! Helpers shared by the end-to-end tests: the shoal binary, scratch folders, reference peers.

#![allow(dead_code)]

pub mod tls;
pub mod webdriver;

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

use std::io::{BufRead, BufReader};

use shoal_engine::events::JsonEvent;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Marks a line that does not parse as a [`JsonEvent`].
const CONTRACT_VIOLATION: &str = "test-support: contract violation";

/// A running process (shoal or a libtorrent peer) whose stdout JSON lines are collected; killed
/// when dropped.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
    /// Every JSON line seen so far.
    pub seen: Vec<serde_json::Value>,
    pub name: String,
}

impl Proc {
    /// Starts `cmd` with stdout piped (stderr goes to a file in `log_dir`).
    pub fn spawn(cmd: Command, name: &str, log_dir: &Path) -> Proc {
        Self::spawn_inner(cmd, name, log_dir, false)
    }

    /// Starts shoal: as [`Proc::spawn`], and every line must follow the `--json` contract
    /// (`shoal_engine::events::JsonEvent`); a line that does not fails the test when seen.
    pub fn spawn_shoal(cmd: Command, name: &str, log_dir: &Path) -> Proc {
        Self::spawn_inner(cmd, name, log_dir, true)
    }

    fn spawn_inner(mut cmd: Command, name: &str, log_dir: &Path, typed: bool) -> Proc {
        let err = std::fs::File::create(log_dir.join(format!("{name}.stderr"))).expect("log file");
        cmd.stdout(Stdio::piped()).stderr(err).stdin(Stdio::null());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if typed {
                    if let Err(e) = serde_json::from_str::<JsonEvent>(&line) {
                        let _ = tx.send(serde_json::json!({
                            "event": CONTRACT_VIOLATION, "line": line, "error": e.to_string(),
                        }));
                        continue;
                    }
                }
                if let Ok(v) = serde_json::from_str(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        Proc {
            child,
            lines: rx,
            seen: Vec::new(),
            name: name.to_string(),
        }
    }

    /// Waits until a line satisfies `pred` (bounded by `timeout`); panics with the history if not.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    assert!(
                        v["event"] != CONTRACT_VIOLATION,
                        "{}: a line breaks the --json contract: {v}",
                        self.name
                    );
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "{}: timed out after {timeout:?}; last lines: {:?}",
                    self.name,
                    self.seen.iter().rev().take(3).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Waits for `{"event": event}`.
    pub fn wait_event(&mut self, event: &str, timeout: Duration) -> serde_json::Value {
        self.wait_for(timeout, |v| v["event"] == event)
    }

    /// The address from the `listening` event.
    pub fn listening_addr(&mut self) -> String {
        let v = self.wait_event("listening", Duration::from_secs(20));
        v["addr"].as_str().expect("addr").to_string()
    }

    /// Waits for the process to exit (bounded) and returns its status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Drain what is left so `seen` is complete.
                while let Ok(v) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(v);
                }
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{}: did not exit within {timeout:?}", self.name);
    }

    /// Collects the lines that arrive within `quiet` of each other (never panics).
    pub fn drain(&mut self, quiet: Duration) {
        while let Ok(v) = self.lines.recv_timeout(quiet) {
            self.seen.push(v);
        }
    }

    /// Every line seen so far, typed (for shoal processes).
    pub fn events(&self) -> Vec<JsonEvent> {
        self.seen
            .iter()
            .filter_map(|v| serde_json::from_value(v.clone()).ok())
            .collect()
    }

    /// The last line with `{"event": event}` seen so far.
    pub fn last_event(&self, event: &str) -> Option<&serde_json::Value> {
        self.seen.iter().rev().find(|v| v["event"] == event)
    }

    /// Sends SIGKILL.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (a clean stop).
    pub fn term(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tests never let shoal reach the public DHT routers: the DHT is off unless the test gives
/// its own (loopback) bootstrap node.
pub fn no_dht_unless_asked(extra: &[&str]) -> Vec<&'static str> {
    if extra.contains(&"--dht-bootstrap") || extra.contains(&"--no-dht") {
        Vec::new()
    } else {
        vec!["--no-dht"]
    }
}

/// `shoal seed TORRENT DATA --listen IP:0 --json` plus `extra`.
pub fn shoal_seed(
    torrent: &Path,
    data: &Path,
    ip: &str,
    extra: &[&str],
    name: &str,
    logs: &Path,
) -> Proc {
    let mut cmd = shoal();
    cmd.args(["seed", torrent.to_str().unwrap(), data.to_str().unwrap()])
        .args(["--listen", &format!("{ip}:0"), "--json"])
        .args(no_dht_unless_asked(extra))
        .args(extra)
        .env("XDG_STATE_HOME", logs.join(format!("{name}-state")));
    Proc::spawn_shoal(cmd, name, logs)
}

/// `shoal download TORRENT -o OUT --listen IP:0 --json --peer …` plus `extra`.
pub fn shoal_download(
    torrent: &Path,
    out: &Path,
    ip: &str,
    peers: &[String],
    extra: &[&str],
    name: &str,
    logs: &Path,
) -> Proc {
    let mut cmd = shoal();
    cmd.args([
        "download",
        torrent.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ])
    .args(["--listen", &format!("{ip}:0"), "--json"])
    // Never the public DHT routers: tests stay on loopback.
    .args(no_dht_unless_asked(extra))
    .args(extra);
    for p in peers {
        cmd.args(["--peer", p]);
    }
    Proc::spawn_shoal(cmd, name, logs)
}

/// A libtorrent peer (tests/interop/lt_peer.py).
#[allow(clippy::too_many_arguments)] // mirrors the script's command line one to one
pub fn lt_peer(
    mode: &str,
    torrent: &Path,
    save: &Path,
    ip: &str,
    peers: &[String],
    extra: &[&str],
    name: &str,
    logs: &Path,
) -> Proc {
    let mut cmd = Command::new(SYSTEM_PYTHON);
    cmd.arg(repo_root().join("tests/interop/lt_peer.py"))
        .args([mode, torrent.to_str().unwrap(), save.to_str().unwrap(), ip])
        .args(extra);
    for p in peers {
        cmd.args(["--peer", p]);
    }
    Proc::spawn(cmd, name, logs)
}

/// Makes `name` (a file of `len` random bytes) in `dir/seed/` and a torrent of it with the given
/// piece size; returns (torrent path, data file path).
pub fn make_torrent(dir: &Path, name: &str, len: usize, piece: &str) -> (PathBuf, PathBuf) {
    let data = dir.join("seed").join(name);
    write_random_file(&data, len, len as u64 ^ 0xfeed);
    let torrent = dir.join(format!("{name}.torrent"));
    let out = run_shoal(&[
        "create",
        data.to_str().unwrap(),
        "-o",
        torrent.to_str().unwrap(),
        "--piece-size",
        piece,
        "--force",
        "--no-date",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (torrent, data)
}

/// Whether two files have the same bytes.
pub fn same_bytes(a: &Path, b: &Path) -> bool {
    match (std::fs::read(a), std::fs::read(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// `shoal tracker --listen 127.0.0.1:0 [--udp] --json`; returns the process and its port.
pub fn shoal_tracker(udp: bool, name: &str, logs: &Path) -> (Proc, u16) {
    let mut cmd = shoal();
    cmd.args(["tracker", "--listen", "127.0.0.1:0", "--json"]);
    if udp {
        cmd.arg("--udp");
    }
    let mut p = Proc::spawn_shoal(cmd, name, logs);
    let addr = p.listening_addr();
    let port = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    (p, port)
}

/// Makes a torrent of a fresh random file with the given tracker URLs (one tier each).
pub fn make_torrent_with_trackers(
    dir: &Path,
    name: &str,
    len: usize,
    trackers: &[String],
) -> (PathBuf, PathBuf) {
    let data = dir.join("seed").join(name);
    write_random_file(&data, len, len as u64 ^ 0xbeef);
    let torrent = dir.join(format!("{name}.torrent"));
    let mut args = vec![
        "create".to_string(),
        data.to_str().unwrap().to_string(),
        "-o".into(),
        torrent.to_str().unwrap().to_string(),
        "--piece-size".into(),
        "32KiB".into(),
        "--force".into(),
    ];
    for t in trackers {
        args.push("-t".into());
        args.push(t.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_shoal(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (torrent, data)
}

/// Whether the program at `path` (Debian package `package`) is installed; under `CI=true` its
/// absence fails the test instead of skipping it.
pub fn tool_available(path: &str, package: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{path} is required in CI (apt-get install {package})");
    }
    eprintln!("SKIPPED: {package} is not installed (scripts/test.sh installs it)");
    false
}

/// Whether opentracker is installed; under `CI=true` its absence fails the test.
pub fn opentracker_available() -> bool {
    tool_available("/usr/bin/opentracker", "opentracker")
}

/// A child process, killed and reaped when dropped.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port free on `ip` right now.
pub fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (bounded) until something accepts TCP connections on `addr`.
pub fn wait_listening(addr: &str) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on {addr}");
}

/// opentracker on `127.0.0.1:port` (TCP and UDP) with `hashes` whitelisted (Debian's build is
/// whitelist-only); killed on drop.
pub fn start_opentracker(dir: &Path, port: u16, hashes: &[String]) -> Killed {
    use std::os::unix::fs::PermissionsExt;
    let chroot = dir.join("opentracker");
    std::fs::create_dir_all(&chroot).unwrap();
    std::fs::write(chroot.join("whitelist.txt"), hashes.join("\n") + "\n").unwrap();
    // Started as root it chroots there and drops privileges: everyone must be able to read.
    let mut p = chroot.clone();
    loop {
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
        if !p.pop() || p.as_os_str().len() < 2 {
            break;
        }
    }
    let list = chroot.join("whitelist.txt");
    std::fs::set_permissions(list, std::fs::Permissions::from_mode(0o644)).unwrap();
    let port_s = port.to_string();
    let child = Command::new("/usr/bin/opentracker")
        .args(["-i", "127.0.0.1", "-p", &port_s, "-P", &port_s, "-d"])
        .arg(&chroot)
        .args(["-w", "whitelist.txt"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start opentracker");
    let t = Killed(child);
    wait_listening(&format!("127.0.0.1:{port}"));
    // It loads the whitelist just after it starts listening.
    std::thread::sleep(std::time::Duration::from_millis(500));
    t
}

/// `shoal dht node` on a loopback address: the bootstrap node of a test's DHT.
pub fn dht_node(dir: &Path) -> (Proc, String) {
    let mut cmd = shoal();
    cmd.args(["dht", "node", "--listen", "127.0.0.1:0", "--json"]);
    let mut p = Proc::spawn_shoal(cmd, "dht-node", dir);
    let addr = p.listening_addr();
    (p, addr)
}

/// The info-hash of a .torrent, as `shoal info --json` reports it.
pub fn info_hash(torrent: &Path) -> String {
    let out = run_shoal(&["info", torrent.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("shoal info --json");
    v["info_hash"].as_str().expect("info_hash").to_string()
}
