//! `shoal share --super-seed` (BEP 16) with real processes on 127.0.0.x: the seeder says when
//! the swarm is self-sufficient, stops then, and every leecher still completes.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(120);

/// `shoal share DATA --super-seed` on 127.0.0.2, upload capped so the leechers trade; returns
/// the process, its listen address and the .torrent it wrote. Its first line is `listening`:
/// the listener is up before the data is hashed.
fn share(dir: &Path, len: usize) -> (Proc, String, PathBuf, PathBuf) {
    let data = dir.join("seed").join("shared.bin");
    write_random_file(&data, len, 0x5eed);
    let torrent = dir.join("shared.torrent");
    let mut cmd = shoal();
    cmd.args(["share", data.to_str().unwrap(), "--super-seed"])
        .args(["-o", torrent.to_str().unwrap(), "--piece-size", "64KiB"])
        .args(["--listen", "127.0.0.2:0", "--json", "--no-dht"])
        .args(["--max-upload-rate", "4MiB"])
        .env("XDG_STATE_HOME", dir.join("seed-state"));
    let mut p = Proc::spawn_shoal(cmd, "seed", dir);
    let first = p.wait_for(Duration::from_secs(20), |_| true);
    assert_eq!(first["event"], "listening", "{first}");
    let addr = first["addr"].as_str().expect("addr").to_string();
    let created = p.wait_event("created", Duration::from_secs(60));
    assert_eq!(created["torrent"], torrent.to_str().unwrap());
    assert!(created["magnet"]
        .as_str()
        .is_some_and(|m| m.starts_with("magnet:?xt=urn:btih:")));
    p.wait_event("ready", Duration::from_secs(60));
    (p, addr, torrent, data)
}

/// Waits for the seeder's `self_sufficient` line, stops the seeder and returns its upload then,
/// in copies of the file.
fn stop_at_self_sufficiency(seed: &mut Proc) -> f64 {
    let v = seed.wait_event("self_sufficient", LONG);
    seed.term();
    assert_eq!(seed.wait_exit(Duration::from_secs(20)), Some(0));
    let copies = v["uploaded"].as_f64().unwrap() / v["total"].as_f64().unwrap();
    assert!(v["distributed_copies"].as_f64().unwrap() >= 1.0, "{v}");
    // Super-seeding had ended: the peers held every piece.
    assert_eq!(v["super_seeding"], false, "{v}");
    copies
}

/// A leecher of `kind` ("shoal" or "lt") on `ip`, told of `peers`; it keeps serving once done.
fn leecher(
    kind: &str,
    torrent: &Path,
    dir: &Path,
    i: usize,
    peers: &[String],
) -> (Proc, PathBuf, String) {
    let ip = format!("127.0.0.{}", 11 + i);
    let out = dir.join(format!("{kind}{i}"));
    std::fs::create_dir_all(&out).unwrap();
    let name = format!("{kind}{i}");
    let mut p = if kind == "shoal" {
        shoal_download(torrent, &out, &ip, peers, &["--seed"], &name, dir)
    } else {
        lt_peer(
            "download",
            torrent,
            &out,
            &ip,
            peers,
            &["--timeout", "150", "--stay"],
            &name,
            dir,
        )
    };
    let addr = p.listening_addr();
    (p, out, addr)
}

fn swarm(kinds: &[&str], name: &str) {
    let dir = scratch(name);
    let (mut seed, seed_addr, torrent, data) = share(&dir, 8 << 20);
    let mut addrs = vec![seed_addr];
    let mut leechers = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        let (p, out, addr) = leecher(kind, &torrent, &dir, i, &addrs);
        addrs.push(addr);
        leechers.push((p, out));
    }
    let copies = stop_at_self_sufficiency(&mut seed);
    println!(
        "{name}: the seeder uploaded {copies:.3} copies before the swarm held every piece, and \
         stopped then"
    );
    for (l, out) in &mut leechers {
        l.wait_for(LONG, |v| {
            v["event"] == "complete"
                || (v["event"] == "progress"
                    && v["total"].as_u64() > Some(0)
                    && v["downloaded"] == v["total"])
        });
        assert!(
            same_bytes(&data, &out.join("shared.bin")),
            "{}: bytes differ",
            l.name
        );
    }
    // Each piece went out about once (BEP 16's figure for a large swarm is 1.05).
    assert!(copies <= 1.05, "the seeder uploaded {copies:.3} copies");
}

#[test]
fn share_super_seeds_eight_shoal_leechers_that_finish_without_it() {
    swarm(&["shoal"; 8], "super_seed_shoal");
}

#[test]
fn share_super_seeds_shoal_and_libtorrent_leechers_that_finish_without_it() {
    if !libtorrent_available() {
        return;
    }
    swarm(
        &["shoal", "lt", "shoal", "lt", "shoal", "shoal"],
        "super_seed_mixed",
    );
}

#[test]
fn a_libtorrent_leecher_alone_completes_from_a_shoal_super_seeder() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("super_seed_lt_alone");
    let (mut seed, seed_addr, torrent, data) = share(&dir, 4 << 20);
    let (mut lt, out, _) = leecher("lt", &torrent, &dir, 0, &[seed_addr]);
    lt.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("shared.bin")));
    // Alone, it got every piece from the seeder, once each.
    seed.term();
    assert_eq!(seed.wait_exit(Duration::from_secs(20)), Some(0));
    let stopped = seed.last_event("stopped").expect("a stopped line").clone();
    let copies = stopped["uploaded"].as_f64().unwrap() / stopped["total"].as_f64().unwrap();
    println!("a lone libtorrent leecher: the super-seeder uploaded {copies:.3} copies");
    assert!(copies <= 1.1, "the seeder uploaded {copies:.3} copies");
}
