//! Seeders that fail under a shoal leecher, with real libtorrent processes: one of two seeders
//! frozen with SIGSTOP mid-download, and the only seeder killed mid-download and replaced by a
//! new one. The download completes and the file matches. (How many seconds each costs, against
//! libtorrent's own leecher in the same run, is measured by `benches/faults.sh`, not asserted.)

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(120);
/// Each seeder's upload cap (bytes per second), so the download lasts long enough to fail.
const SEED_RATE: &str = "4000000";

fn signal(p: &Proc, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &p.child.id().to_string()])
        .status();
}

fn lt_seed(
    torrent: &std::path::Path,
    data: &std::path::Path,
    ip: &str,
    extra: &[&str],
    name: &str,
    dir: &std::path::Path,
) -> Proc {
    let mut args = vec!["--upload-limit", SEED_RATE, "--timeout", "200"];
    args.extend_from_slice(extra);
    lt_peer(
        "seed",
        torrent,
        data.parent().unwrap(),
        ip,
        &[],
        &args,
        name,
        dir,
    )
}

/// Waits until the shoal leecher has verified at least `fraction` of the data.
fn wait_progress(dl: &mut Proc, fraction: f64) {
    dl.wait_for(LONG, |v| {
        let total = v["total"].as_u64().unwrap_or(0);
        total > 0 && v["downloaded"].as_u64().unwrap_or(0) as f64 >= fraction * total as f64
    });
}

#[test]
fn a_seeder_frozen_mid_download_is_routed_around() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("fault_frozen");
    let (torrent, data) = make_torrent(&dir, "f.bin", 24 << 20, "256KiB");
    let mut a = lt_seed(&torrent, &data, "127.0.0.40", &[], "seed-a", &dir);
    let mut b = lt_seed(&torrent, &data, "127.0.0.41", &[], "seed-b", &dir);
    let peers = vec![a.listening_addr(), b.listening_addr()];
    let out = dir.join("dl");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "127.0.0.42",
        &peers,
        &["--no-dht"],
        "dl",
        &dir,
    );
    wait_progress(&mut dl, 0.3);
    // SIGSTOP: its connections stay open and silent, the hardest failure to notice.
    signal(&a, "-STOP");
    dl.wait_event("complete", LONG);
    signal(&a, "-CONT");
    assert_eq!(dl.wait_exit(Duration::from_secs(30)), Some(0));
    assert!(same_bytes(&data, &out.join("f.bin")));
    let _ = (&mut a, &mut b);
}

#[test]
fn the_only_seeder_killed_and_replaced_mid_download() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("fault_replaced");
    let (torrent, data) = make_torrent(&dir, "f.bin", 24 << 20, "256KiB");
    let mut a = lt_seed(&torrent, &data, "127.0.0.43", &[], "seed-a", &dir);
    let a_addr = a.listening_addr();
    let out = dir.join("dl");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "127.0.0.44",
        &[a_addr],
        &["--no-dht"],
        "dl",
        &dir,
    );
    let dl_addr = dl.listening_addr();
    wait_progress(&mut dl, 0.4);
    a.kill9();
    // A new seeder elsewhere, which finds the leecher by dialling it.
    let _b = lt_seed(
        &torrent,
        &data,
        "127.0.0.45",
        &["--peer", &dl_addr],
        "seed-b",
        &dir,
    );
    dl.wait_event("complete", LONG);
    assert_eq!(dl.wait_exit(Duration::from_secs(30)), Some(0));
    assert!(same_bytes(&data, &out.join("f.bin")));
}
