//! `shoal daemon` end to end: torrents added over its JSON API and through `transmission-remote`,
//! downloaded from libtorrent and seeded to it, and brought back after SIGKILL.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

const WAIT: Duration = Duration::from_secs(120);

/// A running daemon: its process, API address, token and peer address.
struct Daemon {
    proc: Proc,
    api: String,
    token: String,
    peers: String,
}

fn daemon(state: &Path, downloads: &Path, ip: &str, name: &str, logs: &Path) -> Daemon {
    start_daemon(state, downloads, ip, &[], name, logs)
}

/// `shoal daemon` on `ip` with extra flags; no user config file leaks into the test.
fn start_daemon(
    state: &Path,
    downloads: &Path,
    ip: &str,
    extra: &[&str],
    name: &str,
    logs: &Path,
) -> Daemon {
    let mut cmd = shoal();
    cmd.args(["daemon", "--api", "127.0.0.1:0", "--json", "--no-dht"])
        .args(["--listen", &format!("{ip}:0")])
        .arg("--state")
        .arg(state)
        .arg("--download-dir")
        .arg(downloads)
        .args(extra)
        .env("XDG_CONFIG_HOME", logs.join("no-config"))
        .env_remove("GLIBC_TUNABLES");
    let mut proc = Proc::spawn_shoal(cmd, name, logs);
    let peers = proc.listening_addr();
    let api = proc.wait_for(Duration::from_secs(20), |v| {
        v["event"] == "listening" && v["proto"] == "http"
    })["addr"]
        .as_str()
        .unwrap()
        .to_string();
    let token = std::fs::read_to_string(state.join("token"))
        .unwrap()
        .trim()
        .to_string();
    Daemon {
        proc,
        api,
        token,
        peers,
    }
}

/// One HTTP/1.1 request (Connection: close); returns the status and body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let head_end = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..head_end]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = out[head_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

impl Daemon {
    fn api(&self, method: &str, path: &str, ctype: &str, body: &[u8]) -> (u16, serde_json::Value) {
        let auth = format!("Bearer {}", self.token);
        let (status, body) = http(
            &self.api,
            method,
            path,
            &[("Authorization", &auth), ("Content-Type", ctype)],
            body,
        );
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    fn add_torrent(&self, torrent: &Path) -> serde_json::Value {
        let (status, v) = self.api(
            "POST",
            "/api/v1/torrents",
            "application/x-bittorrent",
            &std::fs::read(torrent).unwrap(),
        );
        assert_eq!(status, 201, "{v}");
        v
    }

    fn torrent(&self, hash: &str) -> serde_json::Value {
        let (status, v) = self.api("GET", &format!("/api/v1/torrents/{hash}"), "", b"");
        assert_eq!(status, 200, "{v}");
        v
    }

    /// Waits until torrent `hash` satisfies `pred`.
    fn wait(&self, hash: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.torrent(hash);
            if pred(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out; last: {v}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A shoal seeder of `torrent`, its data under `DIR/seed`, on `ip`; listening when returned.
fn seeder(dir: &Path, torrent: &Path, ip: &str) -> Proc {
    let mut seed = shoal_seed(torrent, &dir.join("seed"), ip, &[], "seeder", dir);
    seed.listening_addr();
    seed
}

/// A daemon on `ip` with its state in `DIR/state`, downloading into `DIR/dl`, logs in `DIR`.
fn daemon_in(dir: &Path, ip: &str) -> Daemon {
    daemon(&dir.join("state"), &dir.join("dl"), ip, "daemon", dir)
}

fn tracker_torrent(dir: &Path, name: &str, len: usize, port: u16) -> (PathBuf, PathBuf) {
    make_torrent_with_trackers(
        dir,
        name,
        len,
        &[format!("http://127.0.0.1:{port}/announce")],
    )
}

/// A .torrent for the folder `root` = `DIR/seed/NAME` (announcing to the tracker on `port`),
/// written as `DIR/NAME.torrent`, outside the seeder's folder.
fn folder_torrent(root: &Path, piece_size: &str, port: u16) -> PathBuf {
    let name = root.file_name().unwrap().to_str().unwrap();
    let dir = root.parent().and_then(Path::parent).unwrap();
    let torrent = dir.join(format!("{name}.torrent"));
    let out = run_shoal(&[
        "create",
        root.to_str().unwrap(),
        "-o",
        torrent.to_str().unwrap(),
        "--piece-size",
        piece_size,
        "-t",
        &format!("http://127.0.0.1:{port}/announce"),
    ]);
    assert!(out.status.success(), "{out:?}");
    torrent
}

/// The daemon restarts itself once, keeping its pid, to run without glibc's per-thread caches
/// (they held ~2 MiB of a 1,000-torrent daemon's heap); a caller's own choice is kept.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_daemon_runs_without_glibc_thread_caches_unless_told_otherwise() {
    let environ = |d: &Daemon| {
        let raw = std::fs::read(format!("/proc/{}/environ", d.proc.child.id())).unwrap();
        raw.split(|&b| b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok())
            .filter_map(|kv| kv.strip_prefix("GLIBC_TUNABLES="))
            .map(String::from)
            .next()
    };
    let dir = scratch("daemon-tunables");
    let d = daemon_in(&dir, "127.0.0.4");
    assert_eq!(
        environ(&d).as_deref(),
        Some("glibc.malloc.tcache_count=0"),
        "the daemon (pid {}) was not restarted with the tunable",
        d.proc.child.id()
    );
    let (status, _) = d.api("GET", "/api/v1/torrents", "", b"");
    assert_eq!(status, 200, "the restarted daemon serves its API");
    drop(d);
    let mut cmd = shoal();
    cmd.args(["daemon", "--api", "127.0.0.1:0", "--json", "--no-dht"])
        .args(["--listen", "127.0.0.4:0", "--state"])
        .arg(dir.join("state2"))
        .arg("--download-dir")
        .arg(dir.join("dl"))
        .env("XDG_CONFIG_HOME", dir.join("no-config"))
        .env("GLIBC_TUNABLES", "glibc.malloc.tcache_count=3");
    let mut proc = Proc::spawn_shoal(cmd, "daemon-own-tunables", &dir);
    proc.listening_addr();
    let raw = std::fs::read(format!("/proc/{}/environ", proc.child.id())).unwrap();
    let env = String::from_utf8_lossy(&raw);
    assert!(
        env.contains("GLIBC_TUNABLES=glibc.malloc.tcache_count=3\0"),
        "{env}"
    );
    assert!(
        !env.contains("SHOAL_ALLOCATOR_TUNED"),
        "restarted despite the caller's setting"
    );
}

#[test]
fn api_needs_the_token_and_refuses_bad_input() {
    let dir = scratch("daemon-api");
    let d = daemon_in(&dir, "127.0.0.4");
    let (status, _) = http(&d.api, "GET", "/api/v1/torrents", &[], b"");
    assert_eq!(status, 401);
    let (status, _) = http(
        &d.api,
        "GET",
        "/api/v1/torrents",
        &[("Authorization", "Bearer wrong")],
        b"",
    );
    assert_eq!(status, 401);
    let (status, v) = d.api(
        "POST",
        "/api/v1/torrents",
        "application/x-bittorrent",
        b"d4:infoi3ee",
    );
    assert_eq!(status, 400);
    assert!(
        v["error"].as_str().unwrap().contains("not a valid torrent"),
        "{v}"
    );
    let (status, v) = d.api(
        "POST",
        "/api/v1/torrents",
        "application/json",
        br#"{"magnet":"magnet:?dn=x"}"#,
    );
    assert_eq!(status, 400, "{v}");
    let (status, _) = d.api(
        "GET",
        &format!("/api/v1/torrents/{}", "ab".repeat(20)),
        "",
        b"",
    );
    assert_eq!(status, 404);
    let (status, v) = d.api("GET", "/api/v1/torrents", "", b"");
    assert_eq!((status, v), (200, serde_json::json!([])));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("state/token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn daemon_downloads_from_libtorrent_and_seeds_to_libtorrent() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("daemon-lt");
    let logs = dir.clone();
    let (_tracker, port) = shoal_tracker(false, "tracker", &logs);
    let (torrent, data) = tracker_torrent(&dir, "payload.bin", 3 * 1024 * 1024 + 5, port);
    let mut lt_seed = lt_peer(
        "seed",
        &torrent,
        &dir.join("seed"),
        "127.0.0.2",
        &[],
        &["--stay"],
        "lt-seed",
        &logs,
    );
    lt_seed.listening_addr();
    let d = daemon_in(&dir, "127.0.0.4");
    let added = d.add_torrent(&torrent);
    let hash = added["info_hash"].as_str().unwrap().to_string();
    assert_eq!(added["name"], "payload.bin");
    let done = d.wait(&hash, |v| v["state"] == "seeding");
    assert_eq!(done["downloaded"], done["total"]);
    assert!(same_bytes(&data, &dir.join("dl").join("payload.bin")));
    // Now a libtorrent leecher gets it from the daemon alone.
    drop(lt_seed);
    let out = dir.join("lt-out");
    std::fs::create_dir_all(&out).unwrap();
    let mut lt = lt_peer(
        "download",
        &torrent,
        &out,
        "127.0.0.5",
        std::slice::from_ref(&d.peers),
        &[],
        "lt-leech",
        &logs,
    );
    lt.wait_event("complete", WAIT);
    assert!(same_bytes(&data, &out.join("payload.bin")));
    // The status is a snapshot published a few times a second: it catches up.
    d.wait(&hash, |v| {
        v["uploaded"].as_u64().unwrap_or(0) >= 3 * 1024 * 1024
    });
}

#[test]
fn transmission_remote_adds_lists_stops_and_removes() {
    if !tool_available("/usr/bin/transmission-remote", "transmission-cli") {
        return;
    }
    let dir = scratch("daemon-tr");
    let logs = dir.clone();
    let (_tracker, port) = shoal_tracker(false, "tracker", &logs);
    let (torrent, data) = tracker_torrent(&dir, "tr.bin", 2 * 1024 * 1024, port);
    let _seed = seeder(&dir, &torrent, "127.0.0.2");
    let d = daemon_in(&dir, "127.0.0.4");
    let auth = format!("x:{}", d.token);
    let remote = |args: &[&str]| -> String {
        let out = Command::new("/usr/bin/transmission-remote")
            .arg(&d.api)
            .args(["--auth", &auth])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let own = dir.join("own");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(own.join("keep.txt"), b"not shoal's").unwrap();
    let said = remote(&[
        "-a",
        torrent.to_str().unwrap(),
        "--download-dir",
        own.to_str().unwrap(),
    ]);
    assert!(said.contains("success"), "{said}");
    let deadline = Instant::now() + WAIT;
    loop {
        let list = remote(&["-l"]);
        if list.contains("100%") && list.contains("tr.bin") {
            break;
        }
        assert!(Instant::now() < deadline, "never complete: {list}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(same_bytes(&data, &own.join("tr.bin")));
    let info = remote(&["-t", "1", "-i"]);
    assert!(info.contains("tr.bin"), "{info}");
    // Per-torrent and session speed limits, as transmission-remote sends them (kB/s).
    remote(&["-t", "1", "-d", "100", "-u", "50"]);
    let info = remote(&["-t", "1", "-i"]);
    assert!(info.contains("Download Limit: 100 kB/s"), "{info}");
    assert!(info.contains("Upload Limit: 50 kB/s"), "{info}");
    remote(&["-d", "500"]);
    let session = remote(&["-si"]);
    assert!(
        session.contains("Download speed limit: 500 kB/s"),
        "{session}"
    );
    remote(&["-D"]);
    let session = remote(&["-si"]);
    assert!(
        session.contains("Download speed limit: Unlimited"),
        "{session}"
    );
    // Moved with its data; seeding from the new place, nothing fetched again.
    let moved = dir.join("moved");
    remote(&["-t", "1", "--move", moved.to_str().unwrap()]);
    assert!(same_bytes(&data, &moved.join("tr.bin")));
    assert!(!own.join("tr.bin").exists());
    let deadline = Instant::now() + WAIT;
    loop {
        let info = remote(&["-t", "1", "-i"]);
        let (_, list) = d.api("GET", "/api/v1/torrents", "", b"");
        if info.contains(&format!("Location: {}", moved.display())) && list[0]["state"] == "seeding"
        {
            // Its resume data matched the moved file: not a byte fetched again.
            assert_eq!(list[0]["received"], 0, "{list}");
            break;
        }
        assert!(Instant::now() < deadline, "never seeding again: {info}");
        std::thread::sleep(Duration::from_millis(300));
    }
    remote(&["-t", "1", "-S"]);
    let list = remote(&["-l"]);
    assert!(list.contains("Stopped"), "{list}");
    remote(&["-t", "1", "--remove-and-delete"]);
    let list = remote(&["-l"]);
    assert!(!list.contains("tr.bin"), "{list}");
    // Its file is gone; the user's file where it was first saved is not.
    assert!(!moved.join("tr.bin").exists());
    assert_eq!(std::fs::read(own.join("keep.txt")).unwrap(), b"not shoal's");
}

#[test]
fn sigkill_and_restart_resume_every_torrent() {
    let dir = scratch("daemon-kill");
    let logs = dir.clone();
    let (_tracker, port) = shoal_tracker(false, "tracker", &logs);
    let mut torrents = Vec::new();
    for i in 0..3 {
        torrents.push(tracker_torrent(
            &dir,
            &format!("t{i}.bin"),
            6 * 1024 * 1024,
            port,
        ));
    }
    // Slow seeders (512 KiB/s each), so the kill lands mid-download.
    let mut seeds = Vec::new();
    for (i, (t, _)) in torrents.iter().enumerate() {
        let mut s = shoal_seed(
            t,
            &dir.join("seed"),
            &format!("127.0.0.{}", 10 + i),
            &["--max-upload-rate", "512KiB"],
            &format!("seeder{i}"),
            &logs,
        );
        s.listening_addr();
        seeds.push(s);
    }
    let state = dir.join("state");
    let mut d = daemon(&state, &dir.join("dl"), "127.0.0.4", "daemon", &logs);
    let hashes: Vec<String> = torrents
        .iter()
        .map(|(t, _)| d.add_torrent(t)["info_hash"].as_str().unwrap().to_string())
        .collect();
    for h in &hashes {
        d.wait(h, |v| {
            v["downloaded"].as_u64().unwrap_or(0) >= 2 * 1024 * 1024
        });
    }
    // Resume data is written every 5 s: let one round pass, then kill without warning.
    std::thread::sleep(Duration::from_secs(6));
    let before: Vec<u64> = hashes
        .iter()
        .map(|h| d.torrent(h)["downloaded"].as_u64().unwrap())
        .collect();
    d.proc.kill9();
    let d = daemon(&state, &dir.join("dl"), "127.0.0.4", "daemon-again", &logs);
    for (i, h) in hashes.iter().enumerate() {
        let v = d.wait(h, |v| v["state"] == "seeding");
        let total = v["total"].as_u64().unwrap();
        let received = v["received"].as_u64().unwrap();
        eprintln!(
            "torrent {i}: {} of {total} verified before the kill, {received} received after",
            before[i]
        );
        // It resumed: what was verified before the kill was not fetched again.
        assert!(received <= total - before[i] + 1024 * 1024, "{v}");
        assert!(same_bytes(
            &torrents[i].1,
            &dir.join("dl").join(format!("t{i}.bin"))
        ));
    }
}

#[test]
fn remote_cli_adds_lists_pauses_resumes_removes_and_watches() {
    let dir = scratch("daemon-cli");
    let logs = dir.clone();
    let (_tracker, port) = shoal_tracker(false, "tracker", &logs);
    let (torrent, data) = tracker_torrent(&dir, "cli.bin", 1024 * 1024, port);
    let _seed = seeder(&dir, &torrent, "127.0.0.2");
    let d = daemon_in(&dir, "127.0.0.4");
    let token_file = dir.join("state/token");
    let remote = |args: &[&str]| {
        let out = shoal()
            .args(args)
            .args([
                "--api",
                &d.api,
                "--token-file",
                token_file.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let mut watch_cmd = shoal();
    watch_cmd.args([
        "watch",
        "--json",
        "--api",
        &d.api,
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    let mut watch = Proc::spawn(watch_cmd, "watch", &logs);
    std::thread::sleep(Duration::from_millis(300));
    let (code, out, err) = remote(&["add", torrent.to_str().unwrap(), "--paused", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let added: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(added["state"], "paused");
    let hash = added["info_hash"].as_str().unwrap().to_string();
    let (_, out, _) = remote(&["ls", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(listed["info_hash"], hash.as_str());
    assert_eq!(remote(&["resume", "1"]).0, Some(0));
    d.wait(&hash, |v| v["state"] == "seeding");
    assert!(same_bytes(&data, &dir.join("dl/cli.bin")));
    assert_eq!(remote(&["pause", &hash]).0, Some(0));
    assert_eq!(d.torrent(&hash)["state"], "paused");
    // The watcher saw it added, complete and paused.
    watch.wait_for(WAIT, |v| {
        v["event"] == "complete" && v["torrent"]["info_hash"] == hash.as_str()
    });
    watch.wait_for(WAIT, |v| {
        v["event"] == "state" && v["torrent"]["state"] == "paused"
    });
    assert_eq!(remote(&["rm", "1"]).0, Some(0));
    watch.wait_for(WAIT, |v| v["event"] == "removed");
    let (code, _, err) = remote(&["rm", "1"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no such torrent"), "{err}");
    // The data stays (no --delete-data).
    assert!(same_bytes(&data, &dir.join("dl/cli.bin")));
    // A wrong token is refused with one clear line.
    std::fs::write(dir.join("bad-token"), "nope").unwrap();
    let out = shoal()
        .args([
            "ls",
            "--api",
            &d.api,
            "--token-file",
            dir.join("bad-token").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"));
}

/// `shoal daemon` on 127.0.0.4 with extra flags.
fn daemon_with(state: &Path, downloads: &Path, extra: &[&str], name: &str, logs: &Path) -> Daemon {
    start_daemon(state, downloads, "127.0.0.4", extra, name, logs)
}

#[test]
fn the_queue_runs_one_download_at_a_time_and_the_ratio_limit_stops_a_seed() {
    let dir = scratch("daemon-queue");
    let logs = dir.clone();
    let (_tracker, port) = shoal_tracker(false, "tracker", &logs);
    let (t1, d1) = tracker_torrent(&dir, "q1.bin", 3 * 1024 * 1024, port);
    let (t2, d2) = tracker_torrent(&dir, "q2.bin", 1024 * 1024, port);
    let mut seeds = Vec::new();
    for (i, t) in [&t1, &t2].into_iter().enumerate() {
        let mut s = shoal_seed(
            t,
            &dir.join("seed"),
            &format!("127.0.0.{}", 20 + i),
            &["--max-upload-rate", "1MiB"],
            &format!("seeder{i}"),
            &logs,
        );
        s.listening_addr();
        seeds.push(s);
    }
    let d = daemon_with(
        &dir.join("state"),
        &dir.join("dl"),
        &["--max-active-downloads", "1", "--seed-ratio-limit", "0.5"],
        "daemon",
        &logs,
    );
    let h1 = d.add_torrent(&t1)["info_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let h2 = d.add_torrent(&t2)["info_hash"]
        .as_str()
        .unwrap()
        .to_string();
    // The second waits while the first downloads.
    d.wait(&h1, |v| {
        v["state"] == "downloading" && v["downloaded"].as_u64().unwrap() > 0
    });
    assert_eq!(d.torrent(&h2)["state"], "queued");
    d.wait(&h1, |v| v["downloaded"] == v["total"]);
    d.wait(&h2, |v| {
        v["downloaded"] == v["total"] && v["total"].as_u64().unwrap() > 0
    });
    assert!(same_bytes(&d1, &dir.join("dl/q1.bin")));
    assert!(same_bytes(&d2, &dir.join("dl/q2.bin")));
    // A leecher takes q2 from the daemon alone: past half its size uploaded, the daemon stops
    // seeding it (paused, for good).
    drop(seeds);
    let mut leech = shoal_download(
        &t2,
        &dir.join("leech"),
        "127.0.0.30",
        std::slice::from_ref(&d.peers),
        &["--no-trackers"],
        "leecher",
        &logs,
    );
    leech.wait_event("complete", WAIT);
    let v = d.wait(&h2, |v| v["state"] == "paused");
    assert!(v["error"].is_null(), "{v}");
}

#[test]
fn the_watch_folder_adds_torrents_and_survives_garbage() {
    let dir = scratch("daemon-watch");
    let logs = dir.clone();
    let (_tracker, port) = shoal_tracker(false, "tracker", &logs);
    let (torrent, data) = tracker_torrent(&dir, "w.bin", 512 * 1024, port);
    let _seed = seeder(&dir, &torrent, "127.0.0.2");
    let watch = dir.join("watch");
    std::fs::create_dir_all(&watch).unwrap();
    std::fs::write(watch.join("garbage.torrent"), b"this is not bencode").unwrap();
    std::fs::write(watch.join("notes.txt"), b"not a torrent").unwrap();
    let d = daemon_with(
        &dir.join("state"),
        &dir.join("dl"),
        &["--watch", watch.to_str().unwrap()],
        "daemon",
        &logs,
    );
    std::fs::copy(&torrent, watch.join("w.torrent")).unwrap();
    let deadline = Instant::now() + WAIT;
    while !watch.join("w.torrent.added").exists() {
        assert!(Instant::now() < deadline, "never added");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, list) = d.api("GET", "/api/v1/torrents", "", b"");
    let hash = list[0]["info_hash"].as_str().unwrap().to_string();
    d.wait(&hash, |v| v["state"] == "seeding");
    assert!(same_bytes(&data, &dir.join("dl/w.bin")));
    // The garbage is left as it was, and reported.
    assert!(watch.join("garbage.torrent").exists());
    assert!(watch.join("notes.txt").exists());
    let log = std::fs::read_to_string(logs.join("daemon.stderr")).unwrap();
    assert!(log.contains("garbage.torrent not added"), "{log}");
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn print_config_merges_file_flags_and_defaults() {
    let dir = scratch("daemon-config");
    let conf = dir.join("config.toml");
    std::fs::write(
        &conf,
        "api = \"127.0.0.1:7777\"\nmax_active_downloads = 2\nseed_ratio_limit = 1.5\n",
    )
    .unwrap();
    let out = shoal()
        .args([
            "daemon",
            "--print-config",
            "--config",
            conf.to_str().unwrap(),
            "--max-active-downloads",
            "3",
        ])
        .args(["--state", dir.join("s").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("api = \"127.0.0.1:7777\""), "{text}");
    assert!(text.contains("max_active_downloads = 3"), "{text}");
    assert!(text.contains("seed_ratio_limit = 1.5"), "{text}");
    assert!(text.contains("listen = \"0.0.0.0:6881\""), "{text}");
    assert!(text.contains("utp = \"on\""), "{text}");
    std::fs::write(&conf, "no_such_key = 1\n").unwrap();
    let out = shoal()
        .args([
            "daemon",
            "--print-config",
            "--config",
            conf.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no_such_key") && err.lines().count() == 1,
        "{err}"
    );
}

/// One Transmission RPC call (with the session-id exchange).
fn rpc(d: &Daemon, body: serde_json::Value) -> serde_json::Value {
    use base64::Engine;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x:{}", d.token))
    );
    let (status, _) = http(
        &d.api,
        "POST",
        "/transmission/rpc",
        &[("Authorization", &auth)],
        b"{}",
    );
    assert_eq!(status, 409);
    // The id comes in a header; ask once more, reading it from a raw reply.
    let mut s = TcpStream::connect(&d.api).unwrap();
    write!(
        s,
        "POST /transmission/rpc HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let sid = raw
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("x-transmission-session-id:")
                .then(|| l.split(':').nth(1).unwrap().trim().to_string())
        })
        .unwrap();
    let body = body.to_string();
    let (status, reply) = http(
        &d.api,
        "POST",
        "/transmission/rpc",
        &[
            ("Authorization", &auth),
            ("X-Transmission-Session-Id", &sid),
        ],
        body.as_bytes(),
    );
    assert_eq!(status, 200);
    serde_json::from_slice(&reply).unwrap()
}

#[test]
fn file_selection_through_patch_and_torrent_set_and_free_space() {
    let dir = scratch("daemon-files");
    let logs = dir.clone();
    let (_tracker, port) = shoal_tracker(false, "tracker", &logs);
    let root = dir.join("seed").join("set");
    write_random_file(&root.join("a.bin"), 300_000, 1);
    write_random_file(&root.join("b.bin"), 300_000, 2);
    write_random_file(&root.join("c.bin"), 300_000, 3);
    let torrent = folder_torrent(&root, "16KiB", port);
    let _seed = seeder(&dir, &torrent, "127.0.0.2");
    let d = daemon_in(&dir, "127.0.0.4");
    let hash = d.add_paused(&torrent);
    // Only a.bin, through the JSON API; a wrong length is refused.
    let (status, v) = d.api(
        "PATCH",
        &format!("/api/v1/torrents/{hash}"),
        "application/json",
        br#"{"wanted_files":[true]}"#,
    );
    assert_eq!(status, 400, "{v}");
    let (status, v) = d.api(
        "PATCH",
        &format!("/api/v1/torrents/{hash}"),
        "application/json",
        br#"{"wanted_files":[true,false,false],"paused":false}"#,
    );
    assert_eq!(status, 200, "{v}");
    // `total` counts wanted pieces: a.bin's, with the piece it shares with b.bin.
    let first = d.wait(&hash, |v| {
        v["state"] == "seeding" && v["total"].as_u64() > Some(0)
    });
    let first_total = first["total"].as_u64().unwrap();
    assert!(
        (300_000..300_000 + 16_384).contains(&first_total),
        "{first}"
    );
    assert!(same_bytes(&root.join("a.bin"), &dir.join("dl/set/a.bin")));
    // Then c.bin too, through the Transmission RPC.
    let r = rpc(
        &d,
        serde_json::json!({"method": "torrent-set", "arguments": {"ids": [1], "files-wanted": [2]}}),
    );
    assert_eq!(r["result"], "success", "{r}");
    d.wait(&hash, |v| {
        v["state"] == "seeding" && v["total"].as_u64().is_some_and(|t| t >= 600_000)
    });
    assert!(same_bytes(&root.join("c.bin"), &dir.join("dl/set/c.bin")));
    // b.bin's own pieces were never fetched (a piece shared with a wanted file may be).
    let b_len = std::fs::metadata(dir.join("dl/set/b.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    let b_bytes = std::fs::read(dir.join("dl/set/b.bin")).unwrap_or_default();
    assert!(b_len == 0 || b_bytes.iter().skip(16_384).take(250_000).all(|&x| x == 0));
    // What is not supported says so.
    let r = rpc(
        &d,
        serde_json::json!({"method": "torrent-set", "arguments": {"ids": [1], "peer-limit": 5}}),
    );
    assert!(r["result"].as_str().unwrap().contains("peer-limit"), "{r}");
    let r = rpc(
        &d,
        serde_json::json!({"method": "free-space", "arguments": {"path": dir.to_str().unwrap()}}),
    );
    assert_eq!(r["result"], "success", "{r}");
    assert!(r["arguments"]["size-bytes"].as_u64().unwrap() > 0);
    let r = rpc(&d, serde_json::json!({"method": "port-test"}));
    assert_ne!(r["result"], "success");
    // A torrent with BEP 47 pad files: Transmission's indices and the JSON API's count only
    // the real files (a, b, c); the torrent stays paused, its piece hashes do not matter.
    let padded = {
        let mut info = Vec::new();
        info.extend_from_slice(b"d5:filesl");
        for (name, len, pad) in [
            ("a", 10_000, false),
            ("6384", 6_384, true),
            ("b", 16_384, false),
            ("c", 100, false),
        ] {
            let dir = if pad { "4:.pad" } else { "" };
            let attr = if pad { "4:attr1:p" } else { "" };
            info.extend_from_slice(
                format!("d{attr}6:lengthi{len}e4:pathl{dir}{}:{name}ee", name.len()).as_bytes(),
            );
        }
        info.extend_from_slice(b"e4:name6:padded12:piece lengthi16384e6:pieces60:");
        info.extend_from_slice(&[7; 60]);
        info.extend_from_slice(b"e");
        let mut t = b"d4:info".to_vec();
        t.extend_from_slice(&info);
        t.push(b'e');
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(t)
    };
    let (status, added) = d.api(
        "POST",
        "/api/v1/torrents",
        "application/json",
        serde_json::json!({ "torrent": padded, "paused": true })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 201, "{added}");
    let padded_hash = added["info_hash"].as_str().unwrap().to_string();
    let ids = serde_json::json!([padded_hash]);
    let r = rpc(
        &d,
        serde_json::json!({"method": "torrent-set", "arguments": {"ids": ids, "files-unwanted": [1]}}),
    );
    assert_eq!(r["result"], "success", "{r}");
    let r = rpc(
        &d,
        serde_json::json!({"method": "torrent-set", "arguments": {"ids": ids, "files-wanted": [3]}}),
    );
    let e = r["result"].as_str().unwrap();
    assert!(e.contains("no file 3") && e.contains("3 files"), "{r}");
    let r = rpc(
        &d,
        serde_json::json!({"method": "torrent-get", "arguments": {"ids": ids, "fields": ["files", "fileStats", "wanted", "priorities"]}}),
    );
    let t = &r["arguments"]["torrents"][0];
    let names: Vec<&str> = t["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["padded/a", "padded/b", "padded/c"], "{r}");
    assert_eq!(t["wanted"], serde_json::json!([true, false, true]), "{r}");
    assert_eq!(t["fileStats"][1]["wanted"], false, "{r}");
    assert_eq!(t["priorities"], serde_json::json!([0, 0, 0]), "{r}");
    let (status, files) = d.api(
        "GET",
        &format!("/api/v1/torrents/{padded_hash}/files"),
        "application/json",
        b"",
    );
    assert_eq!(status, 200, "{files}");
    assert_eq!(files[1]["path"], "padded/b", "{files}");
    assert_eq!(files[1]["wanted"], false, "{files}");
    // The JSON API numbers files the same way: three flags for three files.
    let (status, v) = d.patch(
        &format!("/api/v1/torrents/{padded_hash}"),
        serde_json::json!({"wanted_files": [false, true, true]}),
    );
    assert_eq!(status, 200, "{v}");
    let r = rpc(
        &d,
        serde_json::json!({"method": "torrent-get", "arguments": {"ids": ids, "fields": ["wanted"]}}),
    );
    assert_eq!(
        r["arguments"]["torrents"][0]["wanted"],
        serde_json::json!([false, true, true]),
        "{r}"
    );
}

impl Daemon {
    /// Adds the .torrent file paused, through the JSON API (base64 in JSON); 201 expected.
    /// Returns the info-hash.
    fn add_paused(&self, torrent: &Path) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(torrent).unwrap());
        let (status, added) = self.api(
            "POST",
            "/api/v1/torrents",
            "application/json",
            serde_json::json!({ "torrent": b64, "paused": true })
                .to_string()
                .as_bytes(),
        );
        assert_eq!(status, 201, "{added}");
        added["info_hash"].as_str().unwrap().to_string()
    }

    fn patch(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.api(
            "PATCH",
            path,
            "application/json",
            body.to_string().as_bytes(),
        )
    }
}

#[test]
fn a_per_torrent_download_limit_holds_and_lifting_it_completes() {
    let dir = scratch("daemon-torrent-limit");
    let logs = dir.clone();
    let (_tracker, port) = shoal_tracker(false, "tracker", &logs);
    let (torrent, data) = tracker_torrent(&dir, "limited.bin", 8 * 1024 * 1024, port);
    let _seed = seeder(&dir, &torrent, "127.0.0.41");
    let d = daemon_in(&dir, "127.0.0.42");
    let hash = d.add_paused(&torrent);
    let limit = 256 * 1024u64;
    let (status, v) = d.patch(
        &format!("/api/v1/torrents/{hash}"),
        serde_json::json!({"download_limit": limit, "paused": false}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["download_limit"], limit, "{v}");
    // Through the RPC, in Transmission's kB/s (1000 bytes).
    let r = rpc(
        &d,
        serde_json::json!({"method": "torrent-get", "arguments": {"ids": [1], "fields": ["downloadLimit", "downloadLimited", "uploadLimited"]}}),
    );
    let t = &r["arguments"]["torrents"][0];
    assert_eq!(t["downloadLimit"], 262, "{r}");
    assert_eq!(t["downloadLimited"], true, "{r}");
    assert_eq!(t["uploadLimited"], false, "{r}");
    let first = d.wait(&hash, |v| v["received"].as_u64().unwrap_or(0) > 0);
    let start = Instant::now();
    let from = first["received"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let v = d.torrent(&hash);
    let secs = start.elapsed().as_secs_f64();
    let got = v["received"].as_u64().unwrap() - from;
    eprintln!("{got} bytes in {secs:.1} s at a limit of {limit} B/s");
    // Unlimited, 8 MiB over loopback take well under a second; limited, about 1 MiB comes in.
    assert!(
        (got as f64) < 3.0 * limit as f64 * secs,
        "{got} in {secs} s"
    );
    assert_ne!(v["state"], "seeding", "{v}");
    // Lifted while it runs: it completes, with the right bytes.
    let (status, v) = d.patch(
        &format!("/api/v1/torrents/{hash}"),
        serde_json::json!({"download_limit": null}),
    );
    assert_eq!(status, 200, "{v}");
    assert!(v["download_limit"].is_null(), "{v}");
    d.wait(&hash, |v| v["state"] == "seeding");
    assert!(same_bytes(&data, &dir.join("dl/limited.bin")));
}

#[test]
fn torrent_set_location_moves_the_data_and_seeds_it_from_there() {
    let dir = scratch("daemon-move");
    let logs = dir.clone();
    let (_tracker, port) = shoal_tracker(false, "tracker", &logs);
    let root = dir.join("seed").join("album");
    write_random_file(&root.join("a.bin"), 700_000, 11);
    write_random_file(&root.join("sub/b.bin"), 500_000, 12);
    let torrent = folder_torrent(&root, "32KiB", port);
    let seed = seeder(&dir, &torrent, "127.0.0.43");
    let d = daemon_in(&dir, "127.0.0.44");
    let hash = d.add_torrent(&torrent)["info_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let done = d.wait(&hash, |v| v["state"] == "seeding");
    let pieces_total = done["pieces_total"].as_u64().unwrap();
    // The only source goes away: whatever the daemon has after the move, it had before.
    drop(seed);
    // Not the torrent's: it stays where it is.
    std::fs::write(dir.join("dl/album/notes.txt"), b"mine").unwrap();
    let moved = dir.join("moved");
    let r = rpc(
        &d,
        serde_json::json!({"method": "torrent-set-location", "arguments": {"ids": [1], "location": moved.to_str().unwrap(), "move": true}}),
    );
    assert_eq!(r["result"], "success", "{r}");
    let v = d.wait(&hash, |v| {
        v["state"] == "seeding" && v["save_path"] == moved.to_str().unwrap()
    });
    assert_eq!(v["pieces"].as_u64(), Some(pieces_total), "{v}");
    assert!(same_bytes(&root.join("a.bin"), &moved.join("album/a.bin")));
    assert!(same_bytes(
        &root.join("sub/b.bin"),
        &moved.join("album/sub/b.bin")
    ));
    assert!(!dir.join("dl/album/a.bin").exists());
    assert!(
        !dir.join("dl/album/sub").exists(),
        "its emptied folder is gone"
    );
    assert_eq!(
        std::fs::read(dir.join("dl/album/notes.txt")).unwrap(),
        b"mine"
    );
    // Resume data matched the moved files: nothing was checked or fetched again.
    let log = std::fs::read_to_string(logs.join("daemon.stderr")).unwrap();
    assert!(!log.contains("resume data ignored"), "{log}");
    // A file in the way is never overwritten: refused, and the torrent stays where it was.
    write_random_file(&dir.join("dl/album/sub/b.bin"), 10, 99);
    let (status, e) = d.patch(
        &format!("/api/v1/torrents/{hash}"),
        serde_json::json!({"save_path": dir.join("dl"), "move_data": true}),
    );
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("already exists"),
        "{e}"
    );
    let v = d.wait(&hash, |v| v["state"] == "seeding");
    assert_eq!(v["save_path"], moved.to_str().unwrap());
    assert!(same_bytes(&root.join("a.bin"), &moved.join("album/a.bin")));
    assert_eq!(
        std::fs::metadata(dir.join("dl/album/sub/b.bin"))
            .unwrap()
            .len(),
        10
    );
    // Without the file in the way, back through the JSON API.
    std::fs::remove_file(dir.join("dl/album/sub/b.bin")).unwrap();
    let (status, v) = d.patch(
        &format!("/api/v1/torrents/{hash}"),
        serde_json::json!({"save_path": dir.join("dl"), "move_data": true}),
    );
    assert_eq!(status, 200, "{v}");
    let v = d.wait(&hash, |v| v["state"] == "seeding");
    assert_eq!(v["pieces"].as_u64(), Some(pieces_total), "{v}");
    assert!(same_bytes(
        &root.join("sub/b.bin"),
        &dir.join("dl/album/sub/b.bin")
    ));
    assert!(!moved.join("album").exists());
}

#[test]
fn session_set_sequential_and_limits_apply_and_survive_a_restart() {
    let dir = scratch("daemon-session-set");
    let logs = dir.clone();
    let (torrent, _) = make_torrent(&dir, "s.bin", 100_000, "16KiB");
    let state = dir.join("state");
    let mut d = daemon(&state, &dir.join("dl"), "127.0.0.45", "daemon", &logs);
    let r = rpc(
        &d,
        serde_json::json!({"method": "session-set", "arguments": {
            "speed-limit-down": 500, "speed-limit-down-enabled": true,
            "speed-limit-up": 40, "speed-limit-up-enabled": false,
            "download-queue-size": 2, "download-queue-enabled": true,
            "seedRatioLimit": 1.5, "seedRatioLimited": true,
            "idle-seeding-limit": 20, "idle-seeding-limit-enabled": true,
            "start-added-torrents": true, "rename-partial-files": true,
            "peer-limit-global": 120, "peer-limit-per-torrent": 30,
        }}),
    );
    assert_eq!(r["result"], "success", "{r}");
    let r = rpc(&d, serde_json::json!({"method": "session-get"}));
    let a = &r["arguments"];
    assert_eq!(a["peer-limit-global"], 120, "{r}");
    assert_eq!(a["peer-limit-per-torrent"], 30, "{r}");
    assert_eq!(a["speed-limit-down"], 500, "{r}");
    assert_eq!(a["speed-limit-down-enabled"], true, "{r}");
    // Remembered while off, as Transmission does.
    assert_eq!(a["speed-limit-up"], 40, "{r}");
    assert_eq!(a["speed-limit-up-enabled"], false, "{r}");
    assert_eq!(a["download-queue-size"], 2, "{r}");
    assert_eq!(a["seedRatioLimit"], 1.5, "{r}");
    assert_eq!(a["idle-seeding-limit"], 20, "{r}");
    assert_eq!(a["units"]["speed-bytes"], 1000, "{r}");
    // A key that would change what shoal does is refused by name, and nothing changes.
    let r = rpc(
        &d,
        serde_json::json!({"method": "session-set", "arguments": {"speed-limit-down": 9, "alt-speed-down": 50}}),
    );
    assert!(
        r["result"].as_str().unwrap().contains("alt-speed-down"),
        "{r}"
    );
    let (_, s) = d.api("GET", "/api/v1/session", "", b"");
    assert_eq!(s["max_download_rate"], 500_000, "{s}");
    assert_eq!(s["max_active_downloads"], 2, "{s}");
    assert_eq!(s["seed_ratio_limit"], 1.5, "{s}");
    assert_eq!(s["seed_idle_minutes"], 20, "{s}");
    // shoal's names, in bytes per second.
    let (status, s) = d.patch(
        "/api/v1/session",
        serde_json::json!({"max_upload_rate": 1_048_576, "seed_idle_minutes": 0}),
    );
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["max_upload_rate"], 1_048_576, "{s}");
    assert_eq!(s["seed_idle_minutes"], 0, "{s}");
    assert_eq!(s["max_connections"], 120, "{s}");
    let (status, s) = d.patch(
        "/api/v1/session",
        serde_json::json!({"max_connections": 90}),
    );
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["max_connections"], 90, "{s}");
    assert_eq!(s["max_peers_per_torrent"], 30, "{s}");
    let r = rpc(
        &d,
        serde_json::json!({"method": "session-set", "arguments": {"peer-limit-per-torrent": 0}}),
    );
    assert!(
        r["result"]
            .as_str()
            .unwrap()
            .contains("peer-limit-per-torrent"),
        "{r}"
    );
    let (status, e) = d.patch(
        "/api/v1/session",
        serde_json::json!({"download_dir": "relative"}),
    );
    assert_eq!(status, 400, "{e}");
    let (status, e) = d.patch("/api/v1/session", serde_json::json!({"no_such": 1}));
    assert_eq!(status, 400, "{e}");
    // Sequential mode through both APIs.
    let hash = d.add_torrent(&torrent)["info_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let r = rpc(
        &d,
        serde_json::json!({"method": "torrent-set", "arguments": {"ids": [hash], "sequential_download": true, "uploadLimit": 100, "uploadLimited": true}}),
    );
    assert_eq!(r["result"], "success", "{r}");
    let r = rpc(
        &d,
        serde_json::json!({"method": "torrent-get", "arguments": {"fields": ["sequential_download", "uploadLimit", "uploadLimited"]}}),
    );
    let t = &r["arguments"]["torrents"][0];
    assert_eq!(t["sequential_download"], true, "{r}");
    assert_eq!(t["uploadLimit"], 100, "{r}");
    assert_eq!(t["uploadLimited"], true, "{r}");
    let v = d.torrent(&hash);
    assert_eq!(v["sequential"], true, "{v}");
    assert_eq!(v["upload_limit"], 100_000, "{v}");
    let (status, v) = d.patch(
        &format!("/api/v1/torrents/{hash}"),
        serde_json::json!({"sequential": false}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["sequential"], false, "{v}");
    let (_, v) = d.patch(
        &format!("/api/v1/torrents/{hash}"),
        serde_json::json!({"sequential": true}),
    );
    assert_eq!(v["sequential"], true, "{v}");
    // After a restart: the session's settings win over the (absent) config file, the torrent
    // keeps its own.
    d.proc.kill9();
    let d = daemon(&state, &dir.join("dl"), "127.0.0.45", "daemon-again", &logs);
    let (_, s) = d.api("GET", "/api/v1/session", "", b"");
    assert_eq!(s["max_download_rate"], 500_000, "{s}");
    assert_eq!(s["max_upload_rate"], 1_048_576, "{s}");
    assert_eq!(s["max_active_downloads"], 2, "{s}");
    assert_eq!(s["seed_ratio_limit"], 1.5, "{s}");
    assert_eq!(s["max_connections"], 90, "{s}");
    let r = rpc(&d, serde_json::json!({"method": "session-get"}));
    assert_eq!(r["arguments"]["peer-limit-global"], 90, "{r}");
    assert_eq!(r["arguments"]["peer-limit-per-torrent"], 30, "{r}");
    let v = d.torrent(&hash);
    assert_eq!(v["sequential"], true, "{v}");
    assert_eq!(v["upload_limit"], 100_000, "{v}");
    let r = rpc(
        &d,
        serde_json::json!({"method": "torrent-get", "arguments": {"fields": ["sequentialDownload"]}}),
    );
    assert_eq!(
        r["arguments"]["torrents"][0]["sequentialDownload"], true,
        "{r}"
    );
    // --print-config tells the truth: the saved settings, and where they come from.
    let out = shoal()
        .args([
            "daemon",
            "--print-config",
            "--state",
            state.to_str().unwrap(),
        ])
        .env("XDG_CONFIG_HOME", logs.join("no-config"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("session.json"), "{text}");
    assert!(text.contains("max_download_rate = \"500000\""), "{text}");
    assert!(text.contains("max_active_downloads = 2"), "{text}");
    // A flag still wins over them.
    let out = shoal()
        .args([
            "daemon",
            "--print-config",
            "--state",
            state.to_str().unwrap(),
        ])
        .args(["--max-active-downloads", "7"])
        .env("XDG_CONFIG_HOME", logs.join("no-config"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("max_active_downloads = 7"), "{text}");
}

#[test]
fn a_session_cap_set_at_run_time_holds_and_is_shared_between_torrents_not_connections() {
    let dir = scratch("daemon-fair");
    let logs = dir.clone();
    let (_tracker, port) = shoal_tracker(false, "tracker", &logs);
    let (ta, _) = tracker_torrent(&dir, "many.bin", 16 * 1024 * 1024, port);
    let (tb, _) = tracker_torrent(&dir, "one.bin", 16 * 1024 * 1024, port);
    // Torrent A has four seeders, torrent B one: shared per connection, B would get a fifth.
    let mut seeds = Vec::new();
    for (i, (t, ip)) in [
        (&ta, "127.0.0.50"),
        (&ta, "127.0.0.51"),
        (&ta, "127.0.0.52"),
        (&ta, "127.0.0.53"),
        (&tb, "127.0.0.54"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = shoal_seed(t, &dir.join("seed"), ip, &[], &format!("seeder{i}"), &logs);
        s.listening_addr();
        seeds.push(s);
    }
    let d = daemon_in(&dir, "127.0.0.55");
    let r = rpc(
        &d,
        serde_json::json!({"method": "session-set", "arguments": {"speed-limit-down": 1000, "speed-limit-down-enabled": true}}),
    );
    assert_eq!(r["result"], "success", "{r}");
    let ha = d.add_torrent(&ta)["info_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let hb = d.add_torrent(&tb)["info_hash"]
        .as_str()
        .unwrap()
        .to_string();
    d.wait(&ha, |v| {
        v["peers"].as_u64() >= Some(4) && v["received"].as_u64() > Some(0)
    });
    d.wait(&hb, |v| v["received"].as_u64() > Some(0));
    let received = |h: &str| d.torrent(h)["received"].as_u64().unwrap();
    let (a0, b0, start) = (received(&ha), received(&hb), Instant::now());
    std::thread::sleep(Duration::from_secs(6));
    let (a, b) = (received(&ha) - a0, received(&hb) - b0);
    let secs = start.elapsed().as_secs_f64();
    let total = (a + b) as f64 / secs;
    let share_b = b as f64 / (a + b).max(1) as f64;
    eprintln!(
        "cap 1,000,000 B/s: {:.0} B/s in all; four connections {:.0} B/s, one {:.0} B/s ({:.0} % of it)",
        total,
        a as f64 / secs,
        b as f64 / secs,
        share_b * 100.0
    );
    assert!(total < 1_500_000.0, "{total}");
    assert!((0.35..0.65).contains(&share_b), "{share_b}");
}

/// `shoal daemon --utp only` downloads from a shoal seeder that speaks uTP only (found through
/// the tracker), tells Transmission clients uTP is on, and lists the peer as a uTP one (its own
/// API's `peers_utp` and `peer_list`, Transmission's `peers` with `isUTP`).
#[test]
fn a_utp_only_daemon_downloads_over_utp() {
    let dir = scratch("daemon-utp");
    let logs = dir.clone();
    let (_tracker, port) = shoal_tracker(false, "tracker", &logs);
    let (torrent, data) = tracker_torrent(&dir, "utp.bin", 2 * 1024 * 1024 + 77, port);
    // Capped, so the download lasts while the peer is looked at.
    let mut seed = shoal_seed(
        &torrent,
        &dir.join("seed"),
        "127.0.0.46",
        &["--utp", "only", "--max-upload-rate", "256KiB"],
        "seeder",
        &logs,
    );
    seed.listening_addr();
    let d = start_daemon(
        &dir.join("state"),
        &dir.join("dl"),
        "127.0.0.47",
        &["--utp", "only"],
        "daemon",
        &logs,
    );
    let r = rpc(&d, serde_json::json!({"method": "session-get"}));
    assert_eq!(r["arguments"]["utp-enabled"], true, "{r}");
    let hash = d.add_torrent(&torrent)["info_hash"]
        .as_str()
        .unwrap()
        .to_string();
    let v = d.wait(&hash, |v| v["peers_utp"] == 1);
    assert_eq!(v["peers_tcp"], 0, "{v}");
    assert_eq!(v["peer_list"][0]["transport"], "utp", "{v}");
    let r = rpc(
        &d,
        serde_json::json!({"method": "torrent-get", "arguments": {"fields": ["id", "peers"]}}),
    );
    let peers = &r["arguments"]["torrents"][0]["peers"];
    assert_eq!(peers[0]["isUTP"], true, "{r}");
    assert_eq!(peers[0]["address"], "127.0.0.46", "{r}");
    d.wait(&hash, |v| v["state"] == "seeding");
    assert!(same_bytes(&data, &dir.join("dl/utp.bin")));
}

#[test]
fn a_sleeping_seed_is_announced_wakes_for_each_leecher_and_sleeps_again() {
    let dir = scratch("daemon-sleep");
    let (_tracker, port) = shoal_tracker(false, "tracker", &dir);
    let len = (1 << 20) + 77;
    let (torrent, data) = tracker_torrent(&dir, "sleepy.bin", len, port);
    // The data is in the download folder already: the torrent is complete at its check.
    let d = start_daemon(
        &dir.join("state"),
        &dir.join("seed"),
        "127.0.0.4",
        &["--sleep-after", "2"],
        "daemon",
        &dir,
    );
    let hash = d.add_torrent(&torrent)["info_hash"]
        .as_str()
        .unwrap()
        .to_string();
    // Complete with no peer: asleep at once, and listed as any seed is.
    let v = d.wait(&hash, |v| v["state"] == "seeding" && v["asleep"] == true);
    assert_eq!(v["downloaded"], v["total"]);
    assert_eq!(v["total"], len as u64);
    assert_eq!(
        (v["peers"].as_u64(), v["up_rate"].as_u64()),
        (Some(0), Some(0))
    );
    let (status, body) = http(
        &d.api,
        "GET",
        "/metrics",
        &[("Authorization", &format!("Bearer {}", d.token))],
        b"",
    );
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&body).contains("\nshoal_torrents_asleep 1\n"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // A shoal leecher that knows only the tracker finds the sleeping seed there (the
    // announcer announced it) and connects under MSE (routed by the req2 hash), which wakes it.
    let out = dir.join("dl-mse");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "127.0.0.5",
        &[],
        &["--no-dht", "--encryption", "require"],
        "dl-mse",
        &dir,
    );
    dl.wait_event("complete", WAIT);
    assert!(same_bytes(&data, &out.join("sleepy.bin")));
    drop(dl);
    // Once the leecher is gone it sleeps again, with its upload counted.
    d.wait(&hash, |v| {
        v["asleep"] == true && v["uploaded"].as_u64().unwrap_or(0) >= len as u64
    });
    // A plaintext libtorrent leecher given the daemon's address wakes it the same way.
    if libtorrent_available() {
        let out = dir.join("lt-out");
        std::fs::create_dir_all(&out).unwrap();
        let mut lt = lt_peer(
            "download",
            &torrent,
            &out,
            "127.0.0.6",
            std::slice::from_ref(&d.peers),
            &[],
            "lt-leech",
            &dir,
        );
        lt.wait_event("complete", WAIT);
        assert!(same_bytes(&data, &out.join("sleepy.bin")));
        drop(lt);
        d.wait(&hash, |v| {
            v["asleep"] == true && v["uploaded"].as_u64().unwrap_or(0) >= 2 * len as u64
        });
    }
    // Verify, pause, resume and remove all work on a sleeping torrent.
    let path = format!("/api/v1/torrents/{hash}");
    assert_eq!(d.api("POST", &format!("{path}/verify"), "", b"").0, 204);
    d.wait(&hash, |v| v["state"] == "seeding" && v["asleep"] == true);
    assert_eq!(d.api("POST", &format!("{path}/stop"), "", b"").0, 204);
    let v = d.wait(&hash, |v| v["state"] == "paused");
    assert_eq!(v["asleep"], false);
    assert_eq!(d.api("POST", &format!("{path}/start"), "", b"").0, 204);
    d.wait(&hash, |v| v["state"] == "seeding" && v["asleep"] == true);
    assert_eq!(d.api("DELETE", &path, "", b"").0, 204);
    assert_eq!(d.api("GET", &path, "", b"").0, 404);
    assert!(same_bytes(&data, &dir.join("seed/sleepy.bin")));
}

#[test]
fn a_sleeping_hybrid_seed_is_woken_by_a_peer_using_its_v2_hash() {
    let dir = scratch("daemon-sleep-hybrid");
    let seed = dir.join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(seed.join("hyb.bin"), &data).unwrap();
    let torrent = dir.join("hyb.torrent");
    let out = run_shoal(&[
        "create",
        seed.join("hyb.bin").to_str().unwrap(),
        "-o",
        torrent.to_str().unwrap(),
        "--piece-size",
        "64KiB",
        "--hybrid",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = run_shoal(&["info", torrent.to_str().unwrap(), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let v2 = info["info_hash_v2"].as_str().unwrap().to_string();
    let d = start_daemon(
        &dir.join("state"),
        &seed,
        "127.0.0.48",
        &["--sleep-after", "2"],
        "daemon",
        &dir,
    );
    let hash = d.add_torrent(&torrent)["info_hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(hash, v2[..40]);
    d.wait(&hash, |v| v["state"] == "seeding" && v["asleep"] == true);
    // A peer of the v2 swarm names the torrent by its truncated SHA-256 (BEP 52).
    let truncated: Vec<u8> = (0..20)
        .map(|i| u8::from_str_radix(&v2[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut hs = vec![19u8];
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x10]);
    hs.extend_from_slice(&truncated);
    hs.extend_from_slice(b"-XX0000-v2peer-test0");
    let mut peer = TcpStream::connect(&d.peers).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    peer.write_all(&hs).unwrap();
    let mut answer = [0u8; 68];
    peer.read_exact(&mut answer).unwrap();
    // Answered in the v2 swarm's hash, saying it speaks v2.
    assert_eq!(&answer[28..48], &truncated[..]);
    assert_ne!(answer[27] & 0x10, 0, "no v2 bit: {answer:?}");
    // The torrent woke for it and tells it which pieces it has: all of them.
    let mut len = [0u8; 4];
    peer.read_exact(&mut len).unwrap();
    let mut msg = vec![0u8; u32::from_be_bytes(len) as usize];
    peer.read_exact(&mut msg).unwrap();
    assert_eq!(msg[0], 5, "not a bitfield: {msg:?}");
    let pieces = data.len().div_ceil(1 << 16);
    assert_eq!(msg.len(), 1 + pieces.div_ceil(8));
    assert_eq!(d.torrent(&hash)["asleep"], false);
    // Once the peer is gone it sleeps again.
    drop(peer);
    d.wait(&hash, |v| v["asleep"] == true);
}

#[test]
fn a_v2_magnet_is_fetched_with_its_piece_layers_which_survive_a_restart() {
    // A v2-only torrent of two files of many pieces and one small one, seeded by shoal; the
    // daemon gets only the btmh link. The metadata and the piece layers come from the seeder
    // (hash requests proven against the file roots) and are kept as the torrent's .torrent, so
    // after a restart with the seeder gone the torrent is whole again without any peer.
    let dir = scratch("daemon-v2-magnet");
    let logs = dir.clone();
    let data = dir.join("seed").join("v2set");
    for (name, len) in [("a.bin", 1_500_000), ("b.bin", 2_000), ("c.bin", 900_000)] {
        write_random_file(&data.join(name), len, len as u64);
    }
    let torrent = dir.join("v2set.torrent");
    let out = run_shoal(&[
        "create",
        data.to_str().unwrap(),
        "-o",
        torrent.to_str().unwrap(),
        "--piece-size",
        "32KiB",
        "--no-date",
        "--v2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let v2 = created["info_hash_v2"].as_str().unwrap().to_string();
    let mut seed = shoal_seed(
        &torrent,
        &dir.join("seed"),
        "127.0.0.2",
        &[],
        "seeder",
        &logs,
    );
    let seed_addr = seed.listening_addr();
    let state = dir.join("state");
    let dl = dir.join("dl");
    let mut d = daemon(&state, &dl, "127.0.0.4", "daemon", &logs);
    let magnet = format!("magnet:?xt=urn:btmh:1220{v2}&x.pe={seed_addr}");
    let (status, v) = d.api(
        "POST",
        "/api/v1/torrents",
        "application/json",
        serde_json::json!({ "magnet": magnet })
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 201, "{v}");
    let hash = v["info_hash"].as_str().unwrap().to_string();
    // The swarm knows a v2-only torrent by its SHA-256 cut to 20 bytes.
    assert_eq!(hash, v2[..40]);
    d.wait(&hash, |v| v["state"] == "seeding");
    for name in ["a.bin", "b.bin", "c.bin"] {
        assert!(
            same_bytes(&data.join(name), &dl.join("v2set").join(name)),
            "{name}"
        );
    }
    seed.term();
    d.proc.kill9();
    let d = daemon(&state, &dl, "127.0.0.4", "daemon-again", &logs);
    let v = d.wait(&hash, |v| v["state"] == "seeding");
    assert_eq!(v["downloaded"], v["total"], "{v}");
    assert_eq!(v["pieces"], v["pieces_total"], "{v}");
    assert!(v["error"].is_null(), "{v}");
}
