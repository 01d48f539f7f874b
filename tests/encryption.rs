//! MSE/PE on loopback: libtorrent with encryption forced in both roles, shoal to shoal under
//! `require`, a plaintext-only peer refused under `require` and served under `prefer`, and a
//! magnet's metadata fetched over an encrypted connection. Bytes compared every time.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

const LONG: Duration = Duration::from_secs(120);
/// How long a refused peer is watched for any progress before the refusal is believed.
const REFUSAL_WATCH: Duration = Duration::from_secs(8);

/// The encryption shoal's last progress-like line reports for its peers.
/// How `p`'s connections are encrypted, once a progress line lists a peer (waits up to 10 s).
fn agreed_encryption(p: &mut Proc) -> Vec<String> {
    p.wait_for(Duration::from_secs(10), |v| {
        v["peer_encryption"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    peer_encryptions(p)
}

fn peer_encryptions(p: &Proc) -> Vec<String> {
    p.seen
        .iter()
        .rev()
        .filter_map(|v| v["peer_encryption"].as_array())
        .find(|a| !a.is_empty())
        .map(|a| {
            a.iter()
                .filter_map(|e| e["encryption"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for a shoal download to complete, keeping the lines (and so `peer_encryption`).
fn wait_complete(p: &mut Proc) {
    p.wait_for(LONG, |v| {
        v["event"] == "complete"
            || (v["event"] == "progress"
                && v["total"].as_u64() > Some(0)
                && v["downloaded"] == v["total"])
    });
}

#[test]
fn libtorrent_forced_seeds_shoal_downloads() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("enc_lt_seeds");
    let (torrent, data) = make_torrent(&dir, "enc.bin", 5 << 20 | 4321, "32KiB");
    let mut lt = lt_peer(
        "seed",
        &torrent,
        &dir.join("seed"),
        "127.0.0.4",
        &[],
        &["--timeout", "120", "--encryption", "forced"],
        "lt-seed",
        &dir,
    );
    let lt_addr = lt.listening_addr();
    for policy in ["require", "prefer"] {
        let out = dir.join(format!("dl-{policy}"));
        let mut dl = shoal_download(
            &torrent,
            &out,
            "127.0.0.3",
            std::slice::from_ref(&lt_addr),
            &["--no-dht", "--seed", "--encryption", policy],
            &format!("shoal-dl-{policy}"),
            &dir,
        );
        wait_complete(&mut dl);
        assert_eq!(agreed_encryption(&mut dl), vec!["rc4"], "{policy}");
        assert!(
            same_bytes(&data, &out.join("enc.bin")),
            "{policy}: bytes differ"
        );
        dl.term();
        dl.wait_exit(Duration::from_secs(20));
    }
}

#[test]
fn shoal_require_seeds_libtorrent_forced_downloads() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("enc_shoal_seeds_lt");
    let (torrent, data) = make_torrent(&dir, "enc2.bin", 4 << 20 | 99, "16KiB");
    let mut seed = shoal_seed(
        &torrent,
        &data,
        "127.0.0.2",
        &["--encryption", "require"],
        "seed",
        &dir,
    );
    let seed_addr = seed.listening_addr();
    let out = dir.join("lt");
    std::fs::create_dir_all(&out).unwrap();
    let mut lt = lt_peer(
        "download",
        &torrent,
        &out,
        "127.0.0.5",
        &[seed_addr],
        &["--timeout", "100", "--encryption", "forced"],
        "lt-dl",
        &dir,
    );
    let done = lt.wait_event("complete", LONG);
    // libtorrent itself saw the connection RC4-encrypted.
    assert_eq!(done["rc4_seen"], true, "{done}");
    assert!(same_bytes(&data, &out.join("enc2.bin")));
    seed.term();
    seed.wait_exit(Duration::from_secs(20));
}

/// A shoal seeder on 127.0.0.2 and a shoal leecher on `leecher_ip`, both `--encryption
/// require`: the leecher completes over RC4 with the bytes equal; both then stop.
fn download_over_rc4(dir: &Path, torrent: &Path, data: &Path, leecher_ip: &str) {
    let require = ["--encryption", "require"];
    let mut seed = shoal_seed(torrent, data, "127.0.0.2", &require, "seed", dir);
    let seed_addr = seed.listening_addr();
    let out = dir.join("dl");
    let extra = ["--no-dht", "--seed", "--encryption", "require"];
    let mut dl = shoal_download(torrent, &out, leecher_ip, &[seed_addr], &extra, "dl", dir);
    wait_complete(&mut dl);
    assert_eq!(agreed_encryption(&mut dl), vec!["rc4"]);
    assert!(same_bytes(data, &out.join(data.file_name().unwrap())));
    dl.term();
    dl.wait_exit(Duration::from_secs(20));
    seed.term();
    seed.wait_exit(Duration::from_secs(20));
}

#[test]
fn shoal_to_shoal_require() {
    let dir = scratch("enc_shoal_shoal");
    let (torrent, data) = make_torrent(&dir, "enc3.bin", 6 << 20 | 5, "64KiB");
    download_over_rc4(&dir, &torrent, &data, "127.0.0.6");
}

/// A plaintext-only shoal (`disable`) against a `require` seeder gets nothing; against a
/// `prefer` seeder it downloads (the seeder accepts plaintext on the same port).
#[test]
fn plaintext_peer_refused_under_require_accepted_under_prefer() {
    let dir = scratch("enc_refuse_shoal");
    let (torrent, data) = make_torrent(&dir, "enc4.bin", 2 << 20 | 17, "32KiB");
    for (policy, served) in [("require", false), ("prefer", true)] {
        let mut seed = shoal_seed(
            &torrent,
            &data,
            "127.0.0.2",
            &["--encryption", policy],
            &format!("seed-{policy}"),
            &dir,
        );
        let seed_addr = seed.listening_addr();
        let out = dir.join(format!("dl-{policy}"));
        let mut dl = shoal_download(
            &torrent,
            &out,
            "127.0.0.7",
            &[seed_addr],
            &["--no-dht", "--encryption", "disable"],
            &format!("dl-{policy}"),
            &dir,
        );
        if served {
            wait_complete(&mut dl);
            assert!(same_bytes(&data, &out.join("enc4.bin")));
            dl.wait_exit(Duration::from_secs(20));
        } else {
            watch_refused(&mut dl);
            dl.term();
            dl.wait_exit(Duration::from_secs(20));
        }
        seed.term();
        seed.wait_exit(Duration::from_secs(20));
    }
}

/// Watches a shoal download for [`REFUSAL_WATCH`]: it must connect to no one and get nothing.
fn watch_refused(dl: &mut Proc) {
    let until = Instant::now() + REFUSAL_WATCH;
    while Instant::now() < until {
        let v = dl.wait_event("progress", Duration::from_secs(5));
        assert_eq!(
            v["peers"], 0,
            "{}: a refused peer got connected: {v}",
            dl.name
        );
        assert_eq!(
            v["received"], 0,
            "{}: a refused peer got data: {v}",
            dl.name
        );
    }
}

/// libtorrent with encryption disabled (plaintext only): shoal under `require` refuses it in
/// both directions; under `prefer` shoal's encrypted dial fails and it redials in plaintext,
/// and libtorrent's plaintext dial to shoal is accepted.
#[test]
fn plaintext_libtorrent_refused_under_require_accepted_under_prefer() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("enc_refuse_lt");
    let (torrent, data) = make_torrent(&dir, "enc5.bin", 2 << 20 | 3, "32KiB");
    let mut lt = lt_peer(
        "seed",
        &torrent,
        &dir.join("seed"),
        "127.0.0.4",
        &[],
        &["--timeout", "120", "--encryption", "disabled"],
        "lt-seed",
        &dir,
    );
    let lt_addr = lt.listening_addr();
    // shoal dials libtorrent.
    for (policy, served) in [("require", false), ("prefer", true)] {
        let out = dir.join(format!("dl-{policy}"));
        let mut dl = shoal_download(
            &torrent,
            &out,
            "127.0.0.3",
            std::slice::from_ref(&lt_addr),
            &["--no-dht", "--seed", "--encryption", policy],
            &format!("dl-{policy}"),
            &dir,
        );
        if served {
            wait_complete(&mut dl);
            assert_eq!(agreed_encryption(&mut dl), vec!["plaintext"]);
            assert!(same_bytes(&data, &out.join("enc5.bin")));
        } else {
            watch_refused(&mut dl);
        }
        dl.term();
        dl.wait_exit(Duration::from_secs(20));
    }
    // libtorrent dials shoal.
    for (policy, served) in [("require", false), ("prefer", true)] {
        let mut seed = shoal_seed(
            &torrent,
            &data,
            "127.0.0.2",
            &["--encryption", policy],
            &format!("seed-{policy}"),
            &dir,
        );
        let seed_addr = seed.listening_addr();
        let out = dir.join(format!("lt-{policy}"));
        std::fs::create_dir_all(&out).unwrap();
        let mut ltd = lt_peer(
            "download",
            &torrent,
            &out,
            "127.0.0.5",
            &[seed_addr],
            &["--timeout", "60", "--encryption", "disabled"],
            &format!("lt-dl-{policy}"),
            &dir,
        );
        if served {
            ltd.wait_event("complete", LONG);
            assert!(same_bytes(&data, &out.join("enc5.bin")));
        } else {
            let until = Instant::now() + REFUSAL_WATCH;
            while Instant::now() < until {
                let v = ltd.wait_event("progress", Duration::from_secs(5));
                assert_eq!(v["downloaded"], 0, "refused libtorrent got data: {v}");
            }
        }
        seed.term();
        seed.wait_exit(Duration::from_secs(20));
    }
}

/// A magnet link under `require`: the metadata comes over an encrypted connection too.
#[test]
fn magnet_download_with_encryption_required() {
    let dir = scratch("enc_magnet");
    let (torrent, data) = make_torrent(&dir, "m.bin", 3 << 20 | 99, "32KiB");
    let mut seed = shoal_seed(
        &torrent,
        &data,
        "127.0.0.2",
        &["--encryption", "require"],
        "seed",
        &dir,
    );
    let seed_addr = seed.listening_addr();
    let magnet = format!("magnet:?xt=urn:btih:{}&dn=m.bin", info_hash(&torrent));
    let out = dir.join("dl");
    let mut dl = shoal_download(
        std::path::Path::new(&magnet),
        &out,
        "127.0.0.3",
        &[seed_addr],
        &["--no-dht", "--encryption", "require"],
        "dl",
        &dir,
    );
    dl.wait_event("metadata", LONG);
    dl.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("m.bin")));
    seed.term();
    seed.wait_exit(Duration::from_secs(20));
}

/// A private torrent (BEP 27) under `require`, peers from the command line: the same dialling
/// (the handshake without the DHT bit travels inside MSE).
#[test]
fn private_torrent_with_encryption_required() {
    let dir = scratch("enc_private");
    let data = dir.join("seed").join("p.bin");
    write_random_file(&data, 2 << 20 | 11, 77);
    let torrent = dir.join("p.torrent");
    let out = run_shoal(&[
        "create",
        data.to_str().unwrap(),
        "-o",
        torrent.to_str().unwrap(),
        "--private",
        "--piece-size",
        "32KiB",
        "--force",
        "--no-date",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    download_over_rc4(&dir, &torrent, &data, "127.0.0.8");
}

/// A peer that sends an MSE public key and then garbage, never the synchronisation hash: the
/// seeder answers with its key and padding (at most 96 + 512 bytes) and closes the connection
/// once PadA's bound is past, long before the handshake timeout.
#[test]
fn peer_without_sync_hash_is_dropped_at_the_bound() {
    use std::io::{Read, Write};
    let dir = scratch("enc_no_sync");
    let (torrent, data) = make_torrent(&dir, "s.bin", 1 << 20, "32KiB");
    let mut seed = shoal_seed(&torrent, &data, "127.0.0.2", &[], "seed", &dir);
    let addr = seed.listening_addr();
    seed.wait_event("ready", LONG);
    let mut s = std::net::TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    // 96 bytes that are a valid key (2 <= Y < P: P's top 64 bits are all ones), then junk.
    let mut key = [0x11u8; 96];
    key[0] = 0x7f;
    s.write_all(&key).unwrap();
    let _ = s.write_all(&[0x5a; 2000]);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got); // ends at the seeder's close (EOF or reset)
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "dropped after {:?}",
        started.elapsed()
    );
    assert!(got.len() <= 96 + 512, "the seeder sent {} bytes", got.len());
    seed.term();
    seed.wait_exit(Duration::from_secs(20));
}

/// libtorrent with its default policy (MSE enabled, plaintext and RC4 allowed, `prefer_rc4`
/// off): dialled by shoal under `prefer` it selects plaintext after the MSE handshake
/// (`mse-plaintext`: the handshake travels RC4-encrypted in IA, the stream after it does not);
/// dialling shoal, it offers both and shoal selects plaintext too, as libtorrent does.
#[test]
fn libtorrent_defaults_meet_shoal_prefer() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("enc_lt_enabled");
    let (torrent, data) = make_torrent(&dir, "e.bin", 3 << 20 | 1, "32KiB");
    let mut lt = lt_peer(
        "seed",
        &torrent,
        &dir.join("seed"),
        "127.0.0.4",
        &[],
        &["--timeout", "120", "--encryption", "enabled"],
        "lt-seed",
        &dir,
    );
    let lt_addr = lt.listening_addr();
    let out = dir.join("dl");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "127.0.0.3",
        &[lt_addr],
        &["--no-dht", "--seed"],
        "dl",
        &dir,
    );
    wait_complete(&mut dl);
    assert_eq!(agreed_encryption(&mut dl), vec!["mse-plaintext"]);
    assert!(same_bytes(&data, &out.join("e.bin")));
    dl.term();
    dl.wait_exit(Duration::from_secs(20));

    let mut seed = shoal_seed(&torrent, &data, "127.0.0.2", &[], "seed", &dir);
    let seed_addr = seed.listening_addr();
    let lt_out = dir.join("lt");
    std::fs::create_dir_all(&lt_out).unwrap();
    let mut ltd = lt_peer(
        "download",
        &torrent,
        &lt_out,
        "127.0.0.5",
        &[seed_addr],
        &["--timeout", "100", "--encryption", "enabled"],
        "lt-dl",
        &dir,
    );
    let done = ltd.wait_event("complete", LONG);
    assert_eq!(done["rc4_seen"], false, "{done}");
    assert!(same_bytes(&data, &lt_out.join("e.bin")));
    // If a progress line caught the connection, it says plaintext after the MSE handshake (the
    // transfer may be over before the first line lists it).
    let seen = peer_encryptions(&seed);
    assert!(seen.iter().all(|e| e == "mse-plaintext"), "{seen:?}");
    seed.term();
    seed.wait_exit(Duration::from_secs(20));
}
