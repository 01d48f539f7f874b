//! Trackers as a peer source, end to end: shoal's embedded tracker (HTTP and UDP), opentracker,
//! tier failover, and trackers that misbehave.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(120);

fn trackers_ok(v: &serde_json::Value) -> bool {
    v["trackers"]
        .as_array()
        .is_some_and(|t| t.iter().any(|r| r["ok"] == true))
}

/// Seeds with shoal, then downloads with shoal (and libtorrent when available), with no peer
/// given: everyone finds everyone through `tracker_url`.
fn swarm_through_tracker(dir: &Path, tracker_url: &str) {
    let (torrent, data) =
        make_torrent_with_trackers(dir, "t.bin", (2 << 20) + 5, &[tracker_url.to_string()]);
    let mut seed = shoal_seed(&torrent, &data, "127.0.0.2", &[], "seed", dir);
    seed.listening_addr();
    // The seeder's first announce is in before anyone asks for peers.
    seed.wait_for(LONG, trackers_ok);
    let out = dir.join("dl");
    let mut dl = shoal_download(&torrent, &out, "127.0.0.3", &[], &[], "dl", dir);
    dl.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("t.bin")));
    if libtorrent_available() {
        let lt_out = dir.join("lt");
        std::fs::create_dir_all(&lt_out).unwrap();
        let mut lt = lt_peer(
            "download",
            &torrent,
            &lt_out,
            "127.0.0.5",
            &[],
            &["--timeout", "100"],
            "lt",
            dir,
        );
        lt.wait_event("complete", LONG);
        assert!(same_bytes(&data, &lt_out.join("t.bin")));
    }
}

#[test]
fn shoal_and_libtorrent_find_a_seeder_through_the_embedded_http_tracker() {
    let dir = scratch("tracker_http");
    let (_tracker, port) = shoal_tracker(false, "tracker", &dir);
    swarm_through_tracker(&dir, &format!("http://127.0.0.1:{port}/announce"));
}

#[test]
fn shoal_and_libtorrent_find_a_seeder_through_the_embedded_udp_tracker() {
    let dir = scratch("tracker_udp");
    let (_tracker, port) = shoal_tracker(true, "tracker", &dir);
    swarm_through_tracker(&dir, &format!("udp://127.0.0.1:{port}/announce"));
}

/// A raw HTTP scrape: the number after `8:completei` for our hash.
fn scrape_complete(port: u16, hash_hex: &str) -> Option<u64> {
    scrape(port, hash_hex).map(|(complete, _, _)| complete)
}

/// A raw HTTP scrape of our hash: (complete, downloaded, incomplete).
fn scrape(port: u16, hash_hex: &str) -> Option<(u64, u64, u64)> {
    let enc: String = (0..20)
        .map(|i| format!("%{}", &hash_hex[2 * i..2 * i + 2]))
        .collect();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET /scrape?info_hash={enc} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .ok()?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).ok()?;
    let text = String::from_utf8_lossy(&body);
    let field =
        |key: &str| -> Option<u64> { text.split(key).nth(1)?.split('e').next()?.parse().ok() };
    Some((
        field("8:completei")?,
        field("10:downloadedi")?,
        field("10:incompletei")?,
    ))
}

#[test]
fn completion_is_reported_when_it_happens_and_exit_waits_only_for_stopped() {
    let dir = scratch("tracker_event_order");
    let (_tracker, port) = shoal_tracker(false, "tracker", &dir);
    let url = format!("http://127.0.0.1:{port}/announce");
    let (torrent, data) = make_torrent_with_trackers(&dir, "o.bin", (1 << 20) + 7, &[url]);
    let hash = info_hash(&torrent);
    let mut seed = shoal_seed(&torrent, &data, "127.0.0.2", &[], "seed", &dir);
    seed.listening_addr();
    seed.wait_for(LONG, trackers_ok);
    let out = dir.join("dl");
    let mut dl = shoal_download(&torrent, &out, "127.0.0.3", &[], &["--no-dht"], "dl", &dir);
    assert_eq!(dl.wait_exit(LONG), Some(0));
    assert!(same_bytes(&data, &out.join("o.bin")));
    // The lines, in order: listening, ready, progress..., complete, and nothing after.
    let names: Vec<&str> = dl
        .seen
        .iter()
        .map(|v| v["event"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names.first(), Some(&"listening"), "{names:?}");
    assert_eq!(names.get(1), Some(&"ready"), "{names:?}");
    assert_eq!(names.last(), Some(&"complete"), "{names:?}");
    assert!(
        names[2..names.len() - 1].iter().all(|n| *n == "progress"),
        "{names:?}"
    );
    let complete = dl.last_event("complete").unwrap();
    assert_eq!(complete["downloaded"], complete["total"]);
    assert_eq!(complete["pieces"], complete["pieces_total"]);
    // Before it exited, the tracker heard `completed` and then `stopped`: one completed
    // download, and only the seeder left in the swarm.
    assert_eq!(scrape(port, &hash), Some((1, 1, 0)));
}

#[test]
fn opentracker_swarm_over_http_and_udp() {
    if !opentracker_available() {
        return;
    }
    let dir = scratch("opentracker_swarm");
    for (i, scheme) in ["http", "udp"].iter().enumerate() {
        let sub = dir.join(scheme);
        std::fs::create_dir_all(&sub).unwrap();
        // Make the torrent first to learn its hash, then whitelist it.
        let probe = make_torrent_with_trackers(
            &sub,
            "o.bin",
            (1 << 20) + i,
            &["http://127.0.0.1:1/announce".into()],
        );
        let hash = info_hash(&probe.0);
        let ot_port = free_port("127.0.0.1");
        let _ot = start_opentracker(&sub, ot_port, std::slice::from_ref(&hash));
        let url = format!("{scheme}://127.0.0.1:{ot_port}/announce");
        let (torrent, data) = make_torrent_with_trackers(&sub, "o.bin", (1 << 20) + i, &[url]);
        assert_eq!(
            info_hash(&torrent),
            hash,
            "trackers are outside the info dict"
        );
        let mut seed = shoal_seed(&torrent, &data, "127.0.0.2", &[], "seed", &sub);
        seed.wait_for(LONG, trackers_ok);
        let out = sub.join("dl");
        let mut dl = shoal_download(&torrent, &out, "127.0.0.3", &[], &[], "dl", &sub);
        dl.wait_event("complete", LONG);
        assert_eq!(dl.wait_exit(Duration::from_secs(20)), Some(0));
        assert!(same_bytes(&data, &out.join("o.bin")));
        if libtorrent_available() {
            let lt_out = sub.join("lt");
            std::fs::create_dir_all(&lt_out).unwrap();
            let mut lt = lt_peer(
                "download",
                &torrent,
                &lt_out,
                "127.0.0.5",
                &[],
                &["--timeout", "100"],
                "lt",
                &sub,
            );
            lt.wait_event("complete", LONG);
            assert!(same_bytes(&data, &lt_out.join("o.bin")));
        }
        // The seeder is a seed in opentracker's eyes (the leecher sent `completed`, then
        // `stopped` when it exited).
        let complete = scrape_complete(ot_port, &hash);
        assert!(complete >= Some(1), "scrape says complete = {complete:?}");
    }
}

#[test]
fn failover_to_the_next_tier_when_trackers_are_down() {
    let dir = scratch("tracker_failover");
    let (_tracker, port) = shoal_tracker(false, "tracker", &dir);
    // Tier 1: nothing listens there. Tier 2: a UDP port that never answers. Tier 3: works.
    let dead_http = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        drop(l);
        format!("http://127.0.0.1:{p}/announce")
    };
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_url = format!(
        "udp://127.0.0.1:{}/announce",
        silent.local_addr().unwrap().port()
    );
    let good = format!("http://127.0.0.1:{port}/announce");
    let (torrent, data) =
        make_torrent_with_trackers(&dir, "f.bin", 1 << 20, &[dead_http, silent_url, good]);
    let mut seed = shoal_seed(
        &torrent,
        &data,
        "127.0.0.2",
        &["--tracker-timeout", "2"],
        "seed",
        &dir,
    );
    seed.wait_for(LONG, trackers_ok);
    let out = dir.join("dl");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "127.0.0.3",
        &[],
        &["--tracker-timeout", "2"],
        "dl",
        &dir,
    );
    let done = dl.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("f.bin")));
    let reports = done["trackers"].as_array().unwrap();
    assert!(
        reports.iter().any(|r| r["ok"] == false),
        "the dead trackers were tried: {reports:?}"
    );
    assert!(reports.iter().any(|r| r["ok"] == true));
}

/// An HTTP "tracker" that answers every request with `reply`.
fn bad_tracker(reply: Vec<u8>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/announce",
        l.local_addr().unwrap().port()
    );
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(&reply);
        }
    });
    url
}

#[test]
fn misbehaving_trackers_are_reported_and_the_download_continues() {
    let dir = scratch("tracker_bad");
    let garbage = bad_tracker(b"HTTP/1.0 200 OK\r\n\r\nthis is not bencode".to_vec());
    let mut huge = b"HTTP/1.0 200 OK\r\nContent-Length: 5000000\r\n\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 5_000_000));
    let huge = bad_tracker(huge);
    let refusal =
        bad_tracker(b"HTTP/1.0 200 OK\r\n\r\nd14:failure reason17:torrent not founde".to_vec());
    let (torrent, data) =
        make_torrent_with_trackers(&dir, "b.bin", 1 << 20, &[garbage, huge, refusal]);
    let mut seed = shoal_seed(
        &torrent,
        &data,
        "127.0.0.2",
        &["--no-trackers"],
        "seed",
        &dir,
    );
    let seed_addr = seed.listening_addr();
    let out = dir.join("dl");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "127.0.0.3",
        &[seed_addr],
        &["--tracker-timeout", "5", "--seed"],
        "dl",
        &dir,
    );
    dl.wait_for(LONG, |v| {
        v["total"].as_u64() > Some(0) && v["downloaded"] == v["total"]
    });
    assert!(same_bytes(&data, &out.join("b.bin")));
    // Every bad tracker got its turn and a clear message; none stopped the download.
    let seen = dl.wait_for(LONG, |v| {
        v["trackers"].as_array().is_some_and(|t| t.len() >= 3)
    });
    let reports = seen["trackers"].as_array().unwrap();
    assert!(reports.iter().all(|r| r["ok"] == false), "{reports:?}");
    let messages: Vec<&str> = reports
        .iter()
        .filter_map(|r| r["message"].as_str())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("torrent not found")),
        "{messages:?}"
    );
    assert!(messages.iter().all(|m| !m.is_empty()));
}
