//! IPv6 peers: shoal and libtorrent on `[::1]`, each way (part of issue 13's IPv6 checks; the
//! dual-stack listener, BEP 7 announces and the BEP 32 DHT are still to come).

mod support;

use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(120);

#[test]
fn shoal_and_libtorrent_trade_over_ipv6_loopback() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("ipv6_lt");
    let (torrent, data) = make_torrent(&dir, "six.bin", (3 << 20) + 6, "32KiB");

    // shoal seeds on [::1], libtorrent downloads.
    let mut seed = shoal_seed(&torrent, &data, "[::1]", &[], "seed", &dir);
    let seed_addr = seed.listening_addr();
    assert!(seed_addr.starts_with("[::1]:"), "{seed_addr}");
    let lt_out = dir.join("lt");
    std::fs::create_dir_all(&lt_out).unwrap();
    let mut lt = lt_peer(
        "download",
        &torrent,
        &lt_out,
        "::1",
        &[seed_addr],
        &["--timeout", "100"],
        "lt-dl",
        &dir,
    );
    lt.wait_event("complete", LONG);
    assert!(same_bytes(&data, &lt_out.join("six.bin")));
    seed.term();
    seed.wait_exit(Duration::from_secs(20));

    // libtorrent seeds on [::1], shoal downloads.
    let mut lt_seed = lt_peer(
        "seed",
        &torrent,
        data.parent().unwrap(),
        "::1",
        &[],
        &["--timeout", "100"],
        "lt-seed",
        &dir,
    );
    let lt_addr = lt_seed.listening_addr();
    let out = dir.join("dl");
    let mut dl = shoal_download(&torrent, &out, "[::1]", &[lt_addr], &[], "dl", &dir);
    dl.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("six.bin")));
}

#[test]
fn the_default_unspecified_listen_address_takes_ipv6_peers_too() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("ipv6_dual_stack");
    let (torrent, data) = make_torrent(&dir, "dual.bin", (2 << 20) + 9, "32KiB");
    // `--listen 0.0.0.0:PORT` (the default's address): an IPv6-only socket on [::] at the same
    // port takes IPv6 peers.
    let mut seed = shoal_seed(&torrent, &data, "0.0.0.0", &[], "seed", &dir);
    let addr = seed.listening_addr();
    let port = addr.rsplit(':').next().unwrap();
    let lt_out = dir.join("lt");
    std::fs::create_dir_all(&lt_out).unwrap();
    let mut lt = lt_peer(
        "download",
        &torrent,
        &lt_out,
        "::1",
        &[format!("[::1]:{port}")],
        &["--timeout", "100"],
        "lt-dl",
        &dir,
    );
    lt.wait_event("complete", LONG);
    assert!(same_bytes(&data, &lt_out.join("dual.bin")));
}

#[test]
fn peers6_from_the_embedded_tracker_over_ipv6() {
    let dir = scratch("ipv6_tracker");
    let mut cmd = shoal();
    cmd.args(["tracker", "--listen", "[::1]:0", "--json"]);
    let mut tracker = Proc::spawn_shoal(cmd, "tracker", &dir);
    let tracker_addr = tracker.listening_addr();
    let (torrent, data) = make_torrent_with_trackers(
        &dir,
        "t6.bin",
        (2 << 20) + 60,
        &[format!("http://{tracker_addr}/announce")],
    );
    let mut seed = shoal_seed(&torrent, &data, "[::1]", &[], "seed", &dir);
    seed.listening_addr();
    seed.wait_for(LONG, |v| {
        v["trackers"]
            .as_array()
            .is_some_and(|t| t.iter().any(|r| r["ok"] == true))
    });
    // No --peer: the leecher learns the seeder from the tracker's `peers6`.
    let out = dir.join("dl");
    let mut dl = shoal_download(&torrent, &out, "[::1]", &[], &[], "dl", &dir);
    let done = dl.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("t6.bin")));
    let peers = done["peer_encryption"].as_array().unwrap();
    assert!(
        !peers.is_empty()
            && peers
                .iter()
                .all(|p| p["addr"].as_str().unwrap().starts_with("[::1]:")),
        "{done}"
    );
}
