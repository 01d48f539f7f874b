//! BEP 7 in announces: a client listening on an IPv6 address tells an IPv4 tracker with
//! `ipv6=`, and the tracker hands that address to others in `peers6`. Loopback only.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(120);

/// A raw compact announce to the tracker at `127.0.0.1:port`; returns the reply body.
fn raw_announce(port: u16, info_hash_hex: &str) -> Vec<u8> {
    let hash: String = (0..info_hash_hex.len())
        .step_by(2)
        .map(|i| format!("%{}", &info_hash_hex[i..i + 2]))
        .collect();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /announce?info_hash={hash}&peer_id=-XX0000-000000000000&port=9&left=1&compact=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let at = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP reply");
    reply[at + 4..].to_vec()
}

#[test]
fn a_dual_stack_seeder_reaches_ipv6_peers_through_an_ipv4_tracker() {
    let dir = scratch("bep7_ipv6_param");
    let (_tracker, port) = shoal_tracker(false, "tracker", &dir);
    let url = format!("http://127.0.0.1:{port}/announce");
    let (torrent, data) = make_torrent_with_trackers(&dir, "b7.bin", 1 << 20, &[url]);
    // One address per family: the tracker is reached over IPv4, the IPv6 one goes in `ipv6=`.
    let mut seed = shoal_seed(
        &torrent,
        &data,
        "0.0.0.0",
        &["--bind", "127.0.0.1", "--bind", "::1"],
        "seed",
        &dir,
    );
    let listen = seed.listening_addr();
    let seed_port: u16 = listen.rsplit(':').next().unwrap().parse().unwrap();
    seed.wait_for(LONG, |v| {
        v["trackers"]
            .as_array()
            .is_some_and(|t| t.iter().any(|r| r["ok"] == true))
    });
    let body = raw_announce(port, &info_hash(&torrent));
    let six = b"6:peers618:";
    let at = body
        .windows(six.len())
        .position(|w| w == six)
        .unwrap_or_else(|| panic!("no peers6: {}", String::from_utf8_lossy(&body)))
        + six.len();
    let mut one = [0u8; 16];
    one[15] = 1;
    assert_eq!(&body[at..at + 16], &one);
    assert_eq!(&body[at + 16..at + 18], &seed_port.to_be_bytes());
    // And an IPv6-only leecher, which cannot reach the IPv4 tracker, downloads from the
    // seeder's IPv6 address, given as it would come from another leecher's `peers6`.
    let out = dir.join("dl");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "[::1]",
        &[format!("[::1]:{seed_port}")],
        &["--bind", "::1"],
        "dl",
        &dir,
    );
    dl.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("b7.bin")));
}
