//! Trackerless swarms: peers found through a local Mainline DHT (shoal's own node as the
//! rendezvous), with shoal and libtorrent, and magnet links whose metadata comes from peers.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(120);

#[test]
fn shoal_swarm_with_no_tracker_finds_peers_through_the_dht() {
    let dir = scratch("dht_shoal");
    let (_node, node) = dht_node(&dir);
    let (torrent, data) = make_torrent(&dir, "d.bin", 3 << 20, "32KiB");
    let boot = ["--dht-bootstrap", node.as_str()];
    let mut seed = shoal_seed(&torrent, &data, "127.0.0.2", &boot, "seed", &dir);
    seed.wait_event("dht", LONG);
    let mut leechers = Vec::new();
    for i in 0..2 {
        let out = dir.join(format!("l{i}"));
        let ip = format!("127.0.0.{}", 21 + i);
        let l = shoal_download(&torrent, &out, &ip, &[], &boot, &format!("l{i}"), &dir);
        leechers.push((l, out));
    }
    for (l, out) in &mut leechers {
        l.wait_event("complete", LONG);
        assert!(same_bytes(&data, &out.join("d.bin")));
    }
    // And the debugging tool sees the swarm in the DHT.
    let out = run_shoal(&[
        "dht",
        "get-peers",
        &info_hash(&torrent),
        "--bootstrap",
        &node,
        "--listen",
        "127.0.0.9:0",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("127.0.0.2:"),
        "the seeder is in the DHT: {text}"
    );
}

#[test]
fn libtorrent_finds_a_shoal_seeder_through_the_dht() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("dht_lt_leech");
    let (_node, node) = dht_node(&dir);
    let (torrent, data) = make_torrent(&dir, "l.bin", 2 << 20, "32KiB");
    let mut seed = shoal_seed(
        &torrent,
        &data,
        "127.0.0.2",
        &["--dht-bootstrap", &node],
        "seed",
        &dir,
    );
    seed.wait_event("dht", LONG);
    let out = dir.join("lt");
    std::fs::create_dir_all(&out).unwrap();
    let mut lt = lt_peer(
        "download",
        &torrent,
        &out,
        "127.0.0.5",
        &[],
        &["--dht-bootstrap", &node, "--timeout", "110"],
        "lt",
        &dir,
    );
    lt.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("l.bin")));
}

#[test]
fn shoal_downloads_a_magnet_from_libtorrent_found_through_the_dht() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("dht_lt_seed");
    let (_node, node) = dht_node(&dir);
    let (torrent, data) = make_torrent(&dir, "m.bin", 2 << 20, "16KiB");
    let mut lt = lt_peer(
        "seed",
        &torrent,
        &dir.join("seed"),
        "127.0.0.4",
        &[],
        &["--dht-bootstrap", &node, "--timeout", "110"],
        "lt",
        &dir,
    );
    lt.listening_addr();
    let magnet = format!("magnet:?xt=urn:btih:{}", info_hash(&torrent));
    let out = dir.join("dl");
    let mut dl = shoal_download(
        Path::new(&magnet),
        &out,
        "127.0.0.3",
        &[],
        &["--dht-bootstrap", &node],
        "dl",
        &dir,
    );
    let meta = dl.wait_event("metadata", LONG);
    assert_eq!(meta["name"], "m.bin");
    dl.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("m.bin")));
}

#[test]
fn magnet_with_a_tracker_finds_peers_through_it() {
    let dir = scratch("magnet_tr");
    let (_tracker, port) = shoal_tracker(false, "tracker", &dir);
    let url = format!("http://127.0.0.1:{port}/announce");
    let (torrent, data) =
        make_torrent_with_trackers(&dir, "tr.bin", 1 << 20, std::slice::from_ref(&url));
    let mut seed = shoal_seed(&torrent, &data, "127.0.0.2", &[], "seed", &dir);
    seed.wait_for(LONG, |v| {
        v["trackers"]
            .as_array()
            .is_some_and(|t| t.iter().any(|r| r["ok"] == true))
    });
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&tr={}",
        info_hash(&torrent),
        shoal_metainfo_encode(&url)
    );
    let out = dir.join("dl");
    let mut dl = shoal_download(Path::new(&magnet), &out, "127.0.0.3", &[], &[], "dl", &dir);
    dl.wait_event("metadata", LONG);
    dl.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("tr.bin")));
}

fn shoal_metainfo_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn shoal_swarm_runs_a_whole_local_swarm() {
    let dir = scratch("swarm_cmd");
    let work = dir.join("swarm");
    let out = run_shoal(&[
        "swarm",
        "--leechers",
        "3",
        "--size",
        "4MiB",
        "--seed-rate",
        "2MiB",
        "--dir",
        work.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON summary");
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["leechers"], 3);
    assert!(summary["seeder_uploaded"].as_u64().unwrap() > 0);
    for l in summary["per_leecher"].as_array().unwrap() {
        assert!(l["seconds"].as_f64().is_some(), "{l}");
    }
    // Every leecher's copy is the seeder's file.
    let data = work.join("seed/swarm.bin");
    for i in 1..=3 {
        assert!(same_bytes(
            &data,
            &work.join(format!("leecher{i}/swarm.bin"))
        ));
    }
}
