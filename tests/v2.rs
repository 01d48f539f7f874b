//! BitTorrent v2 (BEP 52) with libtorrent 2.0 both ways: libtorrent creates a v2-only and a
//! hybrid torrent and seeds them, shoal downloads each (pieces verified by their merkle trees);
//! shoal creates and seeds each, libtorrent downloads. Bytes compared every time.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(120);
const FILES: [(&str, usize); 3] = [("a.bin", 1_300_000), ("b.bin", 3_000), ("c.bin", 700_000)];

/// A folder `dir/seed/payload` of three files: one of many pieces with a short last one, one
/// smaller than a block, one of a few pieces.
fn payload(dir: &Path) -> PathBuf {
    let data = dir.join("seed").join("payload");
    for (i, (name, len)) in FILES.iter().enumerate() {
        write_random_file(&data.join(name), *len, 52 + i as u64);
    }
    data
}

fn assert_same_payload(seed: &Path, got: &Path, what: &str) {
    for (name, _) in FILES {
        assert!(
            same_bytes(&seed.join(name), &got.join(name)),
            "{what}: {name} differs"
        );
    }
}

/// libtorrent's create_torrent of `data` (tests/interop/lt_create.py) as `kind`.
fn lt_create(data: &Path, kind: &str, out: &Path) -> serde_json::Value {
    let o = std::process::Command::new("/usr/bin/python3")
        .arg(repo_root().join("tests/interop/lt_create.py"))
        .args([data.to_str().unwrap(), "65536", kind, out.to_str().unwrap()])
        .output()
        .expect("run lt_create.py");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn shoal_downloads_v2_and_hybrid_torrents_from_libtorrent() {
    if !libtorrent_available() {
        return;
    }
    for kind in ["v2", "hybrid"] {
        let dir = scratch(&format!("v2_lt_seeds_{kind}"));
        let data = payload(&dir);
        let torrent = dir.join(format!("{kind}.torrent"));
        let made = lt_create(&data, kind, &torrent);
        assert!(made["info_hash_v2"].is_string(), "{made}");
        assert_eq!(made["info_hash_v1"].is_string(), kind == "hybrid");
        let mut lt = lt_peer(
            "seed",
            &torrent,
            &dir.join("seed"),
            "127.0.0.4",
            &[],
            &["--timeout", "120"],
            &format!("lt-seed-{kind}"),
            &dir,
        );
        let lt_addr = lt.listening_addr();
        let out = dir.join("dl");
        let mut dl = shoal_download(
            &torrent,
            &out,
            "127.0.0.3",
            std::slice::from_ref(&lt_addr),
            &[],
            &format!("shoal-dl-{kind}"),
            &dir,
        );
        let done = dl.wait_event("complete", LONG);
        assert_eq!(dl.wait_exit(Duration::from_secs(30)), Some(0), "{kind}");
        assert_same_payload(&data, &out.join("payload"), kind);
        // No piece failed either check.
        assert_eq!(done["hash_failures"], 0, "{kind}: {done}");
        // The torrent is known by its v2 hash (truncated) when v2-only, by its SHA-1 if hybrid.
        let expect = match kind {
            "v2" => made["info_hash_v2"].as_str().unwrap()[..40].to_string(),
            _ => made["info_hash_v1"].as_str().unwrap().to_string(),
        };
        assert_eq!(info_hash(&torrent), expect, "{kind}");
        lt.term();
    }
}

#[test]
fn libtorrent_downloads_v2_and_hybrid_torrents_shoal_created_and_seeds() {
    if !libtorrent_available() {
        return;
    }
    for flag in ["--v2", "--hybrid"] {
        let dir = scratch(&format!("v2_shoal_seeds{flag}"));
        let data = payload(&dir);
        let torrent = dir.join("payload.torrent");
        let out = run_shoal(&[
            "create",
            data.to_str().unwrap(),
            "-o",
            torrent.to_str().unwrap(),
            "--piece-size",
            "64KiB",
            "--no-date",
            flag,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut seed = shoal_seed(
            &torrent,
            &dir.join("seed"),
            "127.0.0.5",
            &[],
            &format!("shoal-seed{flag}"),
            &dir,
        );
        let addr = seed.listening_addr();
        let save = dir.join("lt-dl");
        let mut lt = lt_peer(
            "download",
            &torrent,
            &save,
            "127.0.0.6",
            std::slice::from_ref(&addr),
            &["--timeout", "120"],
            &format!("lt-dl{flag}"),
            &dir,
        );
        lt.wait_event("complete", LONG);
        assert_same_payload(&data, &save.join("payload"), flag);
        seed.term();
        seed.wait_exit(Duration::from_secs(20));
    }
}

/// A libtorrent seeder of `kind` (v2 or hybrid) created by libtorrent from the payload, with
/// `extra` arguments (the DHT); returns the seeder, the link naming the torrent by its hashes
/// (`btmh`, and `btih` for a hybrid) and the payload folder.
fn lt_seed_for_magnet(dir: &Path, kind: &str, extra: &[&str]) -> (Proc, String, PathBuf) {
    let data = payload(dir);
    let torrent = dir.join(format!("{kind}.torrent"));
    let made = lt_create(&data, kind, &torrent);
    let v2 = made["info_hash_v2"].as_str().unwrap().to_string();
    let mut args = vec!["--timeout", "120"];
    args.extend_from_slice(extra);
    let lt = lt_peer(
        "seed",
        &torrent,
        &dir.join("seed"),
        "127.0.0.4",
        &[],
        &args,
        &format!("lt-seed-{kind}"),
        dir,
    );
    let magnet = match made["info_hash_v1"].as_str() {
        Some(v1) => format!("magnet:?xt=urn:btih:{v1}&xt=urn:btmh:1220{v2}"),
        None => format!("magnet:?xt=urn:btmh:1220{v2}"),
    };
    (lt, magnet, data)
}

#[test]
fn shoal_downloads_v2_and_hybrid_magnets_from_libtorrent() {
    if !libtorrent_available() {
        return;
    }
    for kind in ["v2", "hybrid"] {
        let dir = scratch(&format!("v2_magnet_{kind}"));
        let (mut lt, magnet, data) = lt_seed_for_magnet(&dir, kind, &[]);
        let magnet = format!("{magnet}&x.pe={}", lt.listening_addr());
        let out = dir.join("dl");
        let mut dl = shoal_download(
            Path::new(&magnet),
            &out,
            "127.0.0.3",
            &[],
            &[],
            &format!("shoal-dl-{kind}"),
            &dir,
        );
        // The metadata (checked against the SHA-256) and the piece layers (proven against the
        // file roots) come from libtorrent; every piece is then verified by its merkle tree.
        let meta = dl.wait_event("metadata", LONG);
        assert_eq!(meta["name"], "payload", "{kind}");
        let done = dl.wait_event("complete", LONG);
        assert_eq!(dl.wait_exit(Duration::from_secs(30)), Some(0), "{kind}");
        assert_same_payload(&data, &out.join("payload"), kind);
        assert_eq!(done["hash_failures"], 0, "{kind}: {done}");
        lt.term();
    }
}

#[test]
fn shoal_downloads_a_v2_magnet_from_libtorrent_found_through_the_dht() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("v2_magnet_dht");
    let (_node, node) = dht_node(&dir);
    let (mut lt, magnet, data) = lt_seed_for_magnet(&dir, "v2", &["--dht-bootstrap", &node]);
    lt.listening_addr();
    let out = dir.join("dl");
    // No peer given: the DHT's get_peers for the truncated v2 hash finds libtorrent.
    let mut dl = shoal_download(
        Path::new(&magnet),
        &out,
        "127.0.0.3",
        &[],
        &["--dht-bootstrap", &node],
        "shoal-dl-dht",
        &dir,
    );
    dl.wait_event("metadata", LONG);
    let done = dl.wait_event("complete", LONG);
    assert_same_payload(&data, &out.join("payload"), "dht");
    assert_eq!(done["hash_failures"], 0, "{done}");
    lt.term();
}
