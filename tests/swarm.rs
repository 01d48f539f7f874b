//! Whole swarms on 127.0.0.x: shoal with shoal, shoal with libtorrent, in both directions.

mod support;

use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(120);

#[test]
fn shoal_seeds_three_shoal_leechers_that_trade_with_each_other() {
    let dir = scratch("swarm_three");
    let (torrent, data) = make_torrent(&dir, "payload.bin", 8 << 20, "64KiB");
    // A slow seeder, so the leechers get most pieces from each other.
    let mut seed = shoal_seed(
        &torrent,
        &data,
        "127.0.0.2",
        &["--max-upload-rate", "2MiB"],
        "seed",
        &dir,
    );
    let seed_addr = seed.listening_addr();
    let mut leechers = Vec::new();
    let mut addrs = vec![seed_addr];
    for i in 0..3 {
        let ip = format!("127.0.0.{}", 11 + i);
        let out = dir.join(format!("l{i}"));
        // --seed keeps finished leechers serving the others until the test ends.
        let mut l = shoal_download(
            &torrent,
            &out,
            &ip,
            &addrs,
            &["--seed"],
            &format!("leecher{i}"),
            &dir,
        );
        addrs.push(l.listening_addr());
        leechers.push((l, out));
    }
    for (l, out) in &mut leechers {
        l.wait_for(LONG, |v| {
            v["event"] == "progress"
                && v["total"].as_u64() > Some(0)
                && v["downloaded"] == v["total"]
        });
        assert!(
            same_bytes(&data, &out.join("payload.bin")),
            "{}: bytes differ",
            l.name
        );
    }
    // Leechers uploaded to each other: more than the seeder alone could have sent them.
    let mut uploaded_by_leechers = 0;
    for (l, _) in &mut leechers {
        l.term();
        l.wait_exit(Duration::from_secs(20));
        uploaded_by_leechers += l
            .last_event("stopped")
            .map_or(0, |v| v["uploaded"].as_u64().unwrap_or(0));
    }
    assert!(
        uploaded_by_leechers > 0,
        "the leechers did not trade pieces"
    );
    println!("leechers uploaded {uploaded_by_leechers} bytes to each other");
    seed.term();
    assert_eq!(seed.wait_exit(Duration::from_secs(20)), Some(0));
}

#[test]
fn libtorrent_seeds_shoal_downloads() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("lt_seeds");
    let (torrent, data) = make_torrent(&dir, "movie.bin", 6 << 20 | 12345, "32KiB");
    let mut lt = lt_peer(
        "seed",
        &torrent,
        &dir.join("seed"),
        "127.0.0.4",
        &[],
        &["--timeout", "120"],
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
        &[],
        "shoal-dl",
        &dir,
    );
    dl.wait_event("complete", LONG);
    assert_eq!(dl.wait_exit(Duration::from_secs(20)), Some(0));
    assert!(same_bytes(&data, &out.join("movie.bin")));
}

#[test]
fn shoal_seeds_libtorrent_downloads() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("shoal_seeds_lt");
    let (torrent, data) = make_torrent(&dir, "album.bin", 6 << 20 | 777, "16KiB");
    let mut seed = shoal_seed(&torrent, &data, "127.0.0.2", &[], "seed", &dir);
    let seed_addr = seed.listening_addr();
    let out = dir.join("lt");
    std::fs::create_dir_all(&out).unwrap();
    let mut lt = lt_peer(
        "download",
        &torrent,
        &out,
        "127.0.0.5",
        &[seed_addr],
        &["--timeout", "100"],
        "lt-dl",
        &dir,
    );
    lt.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("album.bin")));
    seed.term();
    seed.wait_exit(Duration::from_secs(20));
    let uploaded = seed
        .last_event("stopped")
        .and_then(|v| v["uploaded"].as_u64())
        .unwrap_or(0);
    assert!(
        uploaded >= 6 << 20,
        "seed reports {uploaded} bytes uploaded"
    );
}

#[test]
fn mixed_swarm_of_shoal_and_libtorrent() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("mixed");
    let (torrent, data) = make_torrent(&dir, "mixed.bin", 8 << 20, "64KiB");
    let mut seed = shoal_seed(
        &torrent,
        &data,
        "127.0.0.2",
        &["--max-upload-rate", "3MiB"],
        "seed",
        &dir,
    );
    let seed_addr = seed.listening_addr();
    let lt_out = dir.join("lt");
    std::fs::create_dir_all(&lt_out).unwrap();
    let mut lt = lt_peer(
        "download",
        &torrent,
        &lt_out,
        "127.0.0.6",
        std::slice::from_ref(&seed_addr),
        &["--timeout", "110", "--stay"],
        "lt-dl",
        &dir,
    );
    let lt_addr = lt.listening_addr();
    let out = dir.join("shoal");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "127.0.0.7",
        &[seed_addr, lt_addr],
        &[],
        "shoal-dl",
        &dir,
    );
    dl.wait_event("complete", LONG);
    lt.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("mixed.bin")));
    assert!(same_bytes(&data, &lt_out.join("mixed.bin")));
}

#[test]
fn upload_cap_limits_the_seeder() {
    let dir = scratch("rate_cap");
    let (torrent, data) = make_torrent(&dir, "capped.bin", 4 << 20, "64KiB");
    let mut seed = shoal_seed(
        &torrent,
        &data,
        "127.0.0.2",
        &["--max-upload-rate", "1MiB"],
        "seed",
        &dir,
    );
    let seed_addr = seed.listening_addr();
    let started = std::time::Instant::now();
    let out = dir.join("dl");
    let mut dl = shoal_download(&torrent, &out, "127.0.0.3", &[seed_addr], &[], "dl", &dir);
    dl.wait_event("complete", LONG);
    // 4 MiB at 1 MiB/s, less the initial burst of a quarter second, cannot take under 3 s.
    // (Only a lower bound: a slow machine makes this slower, never faster.)
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "4 MiB arrived in {took:?} despite a 1 MiB/s cap"
    );
    assert!(same_bytes(&data, &out.join("capped.bin")));
}

#[test]
fn leechers_that_only_know_the_seeder_meet_through_peer_exchange() {
    let dir = scratch("pex");
    let (torrent, data) = make_torrent(&dir, "pex.bin", 6 << 20, "64KiB");
    let mut seed = shoal_seed(
        &torrent,
        &data,
        "127.0.0.2",
        &["--max-upload-rate", "1MiB"],
        "seed",
        &dir,
    );
    let seed_addr = seed.listening_addr();
    // Each leecher is told only of the seeder; the seeder's ut_pex introduces them.
    let mut a = shoal_download(
        &torrent,
        &dir.join("a"),
        "127.0.0.31",
        std::slice::from_ref(&seed_addr),
        &["--seed"],
        "a",
        &dir,
    );
    let mut b = shoal_download(
        &torrent,
        &dir.join("b"),
        "127.0.0.32",
        std::slice::from_ref(&seed_addr),
        &["--seed"],
        "b",
        &dir,
    );
    a.wait_for(LONG, |v| v["peers"].as_u64() >= Some(2));
    for l in [&mut a, &mut b] {
        l.wait_for(LONG, |v| {
            v["total"].as_u64() > Some(0) && v["downloaded"] == v["total"]
        });
    }
    assert!(same_bytes(&data, &dir.join("a/pex.bin")));
    assert!(same_bytes(&data, &dir.join("b/pex.bin")));
    let mut traded = 0;
    for l in [&mut a, &mut b] {
        l.term();
        l.wait_exit(Duration::from_secs(20));
        traded += l
            .last_event("stopped")
            .and_then(|v| v["uploaded"].as_u64())
            .unwrap_or(0);
    }
    assert!(
        traded > 0,
        "the leechers never traded: peer exchange did not introduce them"
    );
}

#[test]
fn selected_files_only_and_skipped_files_are_never_created() {
    let dir = scratch("select");
    let folder = dir.join("seed/album");
    write_random_file(&folder.join("a.bin"), 100_000, 1);
    write_random_file(&folder.join("b.bin"), 300_000, 2);
    write_random_file(&folder.join("c.bin"), 100_000, 3);
    let torrent = dir.join("album.torrent");
    let out = run_shoal(&[
        "create",
        folder.to_str().unwrap(),
        "-o",
        torrent.to_str().unwrap(),
        "--piece-size",
        "32KiB",
    ]);
    assert!(out.status.success());
    let mut seed = shoal_seed(&torrent, &dir.join("seed"), "127.0.0.2", &[], "seed", &dir);
    let seed_addr = seed.listening_addr();
    let dl_dir = dir.join("dl");
    let mut dl = shoal_download(
        &torrent,
        &dl_dir,
        "127.0.0.3",
        &[seed_addr],
        &["--files", "1"],
        "dl",
        &dir,
    );
    let done = dl.wait_event("complete", LONG);
    assert_eq!(dl.wait_exit(Duration::from_secs(20)), Some(0));
    assert!(same_bytes(
        &folder.join("b.bin"),
        &dl_dir.join("album/b.bin")
    ));
    // The files around it share pieces with it, but are never created: their bytes of the shared
    // pieces live in the hidden part file.
    assert!(!dl_dir.join("album/a.bin").exists());
    assert!(!dl_dir.join("album/c.bin").exists());
    assert!(
        done["total"].as_u64().unwrap() < 500_000,
        "only the wanted pieces count: {done}"
    );
    // A file index that does not exist is a clear error.
    let bad = run_shoal(&[
        "download",
        torrent.to_str().unwrap(),
        "-o",
        dir.join("x").to_str().unwrap(),
        "--files",
        "7",
        "--no-dht",
        "--listen",
        "127.0.0.3:0",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no file 7"));
}
