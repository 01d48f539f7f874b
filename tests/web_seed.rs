//! Web seeds (BEP 19) end to end: a local HTTP server (tests/interop/web_server.py, ranges and
//! keep-alive like nginx) on 127.0.0.9 serves the files; shoal downloads from it alone, beside a
//! peer, from a magnet's `ws=`, and bans it when it serves a corrupted range.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

const WAIT: Duration = Duration::from_secs(90);

/// Starts the test web server on `ip` serving `root`; returns it and its `IP:PORT`.
fn web_server(root: &Path, ip: &str, extra: &[&str], name: &str, logs: &Path) -> (Proc, String) {
    let mut cmd = Command::new("python3");
    cmd.arg(repo_root().join("tests/interop/web_server.py"))
        .arg(root)
        .args(["--bind", ip])
        .args(extra);
    let mut p = Proc::spawn(cmd, name, logs);
    let addr = p.listening_addr();
    (p, addr)
}

/// `shoal create PATH -o OUT --piece-size PIECE --web-seed URL…`.
fn create_with_web_seeds(path: &Path, out: &Path, piece: &str, urls: &[String]) {
    let mut args = vec![
        "create".to_string(),
        path.to_str().unwrap().to_string(),
        "-o".into(),
        out.to_str().unwrap().to_string(),
        "--piece-size".into(),
        piece.into(),
        "--force".into(),
        "--no-date".into(),
    ];
    for u in urls {
        args.push("--web-seed".into());
        args.push(u.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_shoal(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn web_seed_bytes(ev: &serde_json::Value) -> u64 {
    ev["web_seeds"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| w["downloaded"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

fn requests(server: &mut Proc) -> usize {
    server.drain(Duration::from_millis(300));
    server
        .seen
        .iter()
        .filter(|v| v["event"] == "request")
        .count()
}

#[test]
fn downloads_from_a_web_seed_alone() {
    let dir = scratch("ws-alone");
    let logs = dir.clone();
    let data = dir.join("srv").join("payload.bin");
    write_random_file(&data, 5 * 1024 * 1024 + 777, 41);
    let (mut server, addr) = web_server(&dir.join("srv"), "127.0.0.9", &[], "server", &logs);
    // A folder URL: BEP 19 adds the torrent's name.
    let torrent = dir.join("ws.torrent");
    create_with_web_seeds(&data, &torrent, "64KiB", &[format!("http://{addr}/")]);
    let out = dir.join("out");
    let mut dl = shoal_download(&torrent, &out, "127.0.0.3", &[], &[], "leecher", &logs);
    let done = dl.wait_event("complete", WAIT);
    assert_eq!(dl.wait_exit(WAIT), Some(0));
    assert!(same_bytes(&data, &out.join("payload.bin")));
    assert_eq!(web_seed_bytes(&done), 5 * 1024 * 1024 + 777);
    assert_eq!(done["web_seeds"][0]["url"], format!("http://{addr}/"));
    // Blocks were joined into range requests: far fewer requests than 16 KiB blocks (321).
    let n = requests(&mut server);
    assert!(n > 0 && n < 321, "{n} requests");
}

#[test]
fn multi_file_torrent_from_a_web_seed_folder() {
    let dir = scratch("ws-multi");
    let logs = dir.clone();
    let root = dir.join("srv").join("my set");
    let files: Vec<(PathBuf, usize)> = vec![
        (root.join("a.bin"), 100_000),
        (root.join("sub dir").join("b #1.bin"), 300_001),
        (root.join("sub dir").join("c.bin"), 5),
        (root.join("z.bin"), 1_000_000),
    ];
    for (i, (p, len)) in files.iter().enumerate() {
        write_random_file(p, *len, i as u64 + 7);
    }
    let (_server, addr) = web_server(&dir.join("srv"), "127.0.0.9", &[], "server", &logs);
    let torrent = dir.join("multi.torrent");
    // Without the trailing slash: a multi-file entry is the folder anyway.
    create_with_web_seeds(&root, &torrent, "32KiB", &[format!("http://{addr}")]);
    let out = dir.join("out");
    let mut dl = shoal_download(&torrent, &out, "127.0.0.3", &[], &[], "leecher", &logs);
    dl.wait_event("complete", WAIT);
    assert_eq!(dl.wait_exit(WAIT), Some(0));
    for (p, _) in &files {
        let rel = p.strip_prefix(dir.join("srv")).unwrap();
        assert!(same_bytes(p, &out.join(rel)), "{}", rel.display());
    }
}

#[test]
fn web_seed_and_peer_both_serve_a_magnet() {
    let dir = scratch("ws-magnet");
    let logs = dir.clone();
    let data = dir.join("srv").join("payload.bin");
    write_random_file(&data, 6 * 1024 * 1024, 42);
    let (_server, addr) = web_server(&dir.join("srv"), "127.0.0.9", &[], "server", &logs);
    // The peer's torrent has no web seed; the magnet brings it (`ws=`).
    let torrent = dir.join("plain.torrent");
    create_with_web_seeds(&data, &torrent, "64KiB", &[]);
    // A slow seeder (1 MiB/s): the web seed has to carry much of it, the peer some.
    let mut seed = shoal_seed(
        &torrent,
        &dir.join("srv"),
        "127.0.0.2",
        &["--max-upload-rate", "1MiB"],
        "seeder",
        &logs,
    );
    let seed_addr = seed.listening_addr();
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&ws={}&x.pe={seed_addr}",
        info_hash(&torrent),
        shoal_metainfo::percent_encode(format!("http://{addr}/payload.bin").as_bytes()),
    );
    let out = dir.join("out");
    let mut cmd = shoal();
    cmd.args(["download", &magnet, "-o", out.to_str().unwrap()])
        .args(["--listen", "127.0.0.3:0", "--json", "--no-dht"]);
    let mut dl = Proc::spawn_shoal(cmd, "leecher", &logs);
    let done = dl.wait_event("complete", WAIT);
    assert_eq!(dl.wait_exit(WAIT), Some(0));
    assert!(same_bytes(&data, &out.join("payload.bin")));
    let from_web = web_seed_bytes(&done);
    let received = done["received"].as_u64().unwrap();
    assert!(from_web > 0, "the web seed served nothing: {done}");
    assert!(received > from_web, "the peer served nothing: {done}");
}

#[test]
fn a_web_seed_serving_bad_data_is_banned() {
    let dir = scratch("ws-corrupt");
    let logs = dir.clone();
    let data = dir.join("srv").join("payload.bin");
    write_random_file(&data, 4 * 1024 * 1024, 43);
    // Every answer covering byte 1,000,000 (piece 15 at 64 KiB) has it flipped.
    let (_server, addr) = web_server(
        &dir.join("srv"),
        "127.0.0.9",
        &["--corrupt", "payload.bin:1000000"],
        "server",
        &logs,
    );
    let torrent = dir.join("ws.torrent");
    create_with_web_seeds(&data, &torrent, "64KiB", &[format!("http://{addr}/")]);
    let mut seed = shoal_seed(
        &torrent,
        &dir.join("srv"),
        "127.0.0.2",
        &["--max-upload-rate", "2MiB"],
        "seeder",
        &logs,
    );
    let seed_addr = seed.listening_addr();
    let out = dir.join("out");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "127.0.0.3",
        &[seed_addr],
        &[],
        "leecher",
        &logs,
    );
    let done = dl.wait_event("complete", WAIT);
    assert_eq!(dl.wait_exit(WAIT), Some(0));
    assert!(same_bytes(&data, &out.join("payload.bin")));
    let banned: Vec<&str> = done["banned"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(banned, vec!["127.0.0.9"], "{done}");
    assert!(done["hash_failures"].as_u64().unwrap() >= 1);
}

#[test]
fn an_unreachable_web_seed_is_reported_and_peers_finish() {
    let dir = scratch("ws-down");
    let logs = dir.clone();
    let (torrent_plain, data) = make_torrent(&dir, "payload.bin", 1024 * 1024, "64KiB");
    let port = free_port("127.0.0.9");
    let torrent = dir.join("ws.torrent");
    create_with_web_seeds(
        &data,
        &torrent,
        "64KiB",
        &[format!("http://127.0.0.9:{port}/")],
    );
    assert_eq!(info_hash(&torrent), info_hash(&torrent_plain));
    let mut seed = shoal_seed(
        &torrent,
        &dir.join("seed"),
        "127.0.0.2",
        &[],
        "seeder",
        &logs,
    );
    let seed_addr = seed.listening_addr();
    let out = dir.join("out");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "127.0.0.3",
        &[seed_addr],
        &[],
        "leecher",
        &logs,
    );
    let done = dl.wait_event("complete", WAIT);
    assert_eq!(dl.wait_exit(WAIT), Some(0));
    assert!(same_bytes(&data, &out.join("payload.bin")));
    let ws = &done["web_seeds"][0];
    assert_eq!(ws["connected"], false);
    assert_eq!(ws["downloaded"], 0);
    // Its failure was shown (the refusal is immediate; the first lines may predate it).
    let reported = dl.seen.iter().any(|v| {
        v["web_seeds"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("retrying in"))
    });
    assert!(reported, "{:?}", dl.seen.last());
}

/// libtorrent reads the `url-list` shoal writes and finds the same files on the same server:
/// BEP 19's URL rules agree (multi-file, names that need escaping).
#[test]
fn libtorrent_downloads_a_shoal_web_seed_torrent() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("ws-lt");
    let logs = dir.clone();
    let root = dir.join("srv").join("lt set");
    let files = [
        (root.join("one.bin"), 700_000),
        (root.join("two words").join("#2.bin"), 1_300_000),
    ];
    for (i, (p, len)) in files.iter().enumerate() {
        write_random_file(p, *len, i as u64 + 70);
    }
    let (mut server, addr) = web_server(&dir.join("srv"), "127.0.0.9", &[], "server", &logs);
    let torrent = dir.join("lt.torrent");
    create_with_web_seeds(&root, &torrent, "64KiB", &[format!("http://{addr}/")]);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut lt = lt_peer(
        "download",
        &torrent,
        &out,
        "127.0.0.5",
        &[],
        &[],
        "lt",
        &logs,
    );
    lt.wait_event("complete", WAIT);
    for (p, _) in &files {
        let rel = p.strip_prefix(dir.join("srv")).unwrap();
        assert!(same_bytes(p, &out.join(rel)), "{}", rel.display());
    }
    assert!(requests(&mut server) > 0);
}

/// An `https://` web seed: the range server behind stunnel with a certificate from the test's CA
/// (trusted through `SSL_CERT_FILE`); one with an expired certificate is reported as such.
#[test]
fn https_web_seed_and_a_bad_certificate() {
    if !support::tls::stunnel_available() {
        return;
    }
    let dir = scratch("ws-https");
    let logs = dir.clone();
    let data = dir.join("srv").join("payload.bin");
    write_random_file(&data, 3 * 1024 * 1024, 44);
    let (_server, addr) = web_server(&dir.join("srv"), "127.0.0.9", &[], "server", &logs);
    let ca = support::tls::Ca::new(&dir);
    let ip = rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap());
    let good = ca.server(&dir, "good", ip.clone(), (2020, 2100));
    let expired = ca.server(&dir, "expired", ip, (2000, 2001));
    let (_tls, port) = support::tls::stunnel(&dir, "good", &good, &addr);
    let (_tls_bad, bad_port) = support::tls::stunnel(&dir, "expired", &expired, &addr);
    let torrent = dir.join("ws.torrent");
    create_with_web_seeds(
        &data,
        &torrent,
        "64KiB",
        &[
            format!("https://127.0.0.1:{port}/"),
            format!("https://127.0.0.1:{bad_port}/"),
        ],
    );
    let out = dir.join("out");
    let mut cmd = shoal();
    cmd.args([
        "download",
        torrent.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ])
    .args(["--listen", "127.0.0.3:0", "--json", "--no-dht"])
    .env("SSL_CERT_FILE", &ca.pem);
    let mut dl = Proc::spawn_shoal(cmd, "leecher", &logs);
    let done = dl.wait_event("complete", WAIT);
    assert_eq!(dl.wait_exit(WAIT), Some(0));
    assert!(same_bytes(&data, &out.join("payload.bin")));
    assert_eq!(done["web_seeds"][0]["downloaded"], 3 * 1024 * 1024);
    let expired_reported = dl.seen.iter().any(|v| {
        v["web_seeds"][1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired"))
    });
    assert!(expired_reported, "{:?}", dl.seen.last());
}
