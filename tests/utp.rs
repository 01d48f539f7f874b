//! Peers over uTP on loopback: a shoal seeder and a shoal downloader, both `--utp only` (no TCP
//! listener, no TCP dial), with MSE required so the encrypted handshake runs over uTP too;
//! libtorrent over uTP both ways; a magnet over uTP; a seeder that vanishes mid-transfer (frozen
//! or killed: nothing closes its uTP connection, which must time out). Bytes compared; each
//! side's `peer_encryption` names the transport.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(120);

/// Waits until the download has every byte.
fn wait_complete(dl: &mut Proc) {
    dl.wait_for(LONG, |v| {
        v["event"] == "complete"
            || (v["event"] == "progress"
                && v["total"].as_u64() > Some(0)
                && v["downloaded"] == v["total"])
    });
}

/// Waits for a progress line that lists a peer (to see what carried it).
fn wait_peer_listed(dl: &mut Proc) {
    dl.wait_for(Duration::from_secs(10), |v| {
        v["peer_encryption"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
}

/// The transports shoal's last progress-like line with peers reports.
fn peer_transports(p: &Proc) -> Vec<(String, String)> {
    p.seen
        .iter()
        .rev()
        .filter_map(|v| v["peer_encryption"].as_array())
        .find(|a| !a.is_empty())
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["transport"].as_str().unwrap_or("").to_string(),
                        e["encryption"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn shoal_seeds_shoal_downloads_over_utp_only() {
    let dir = scratch("utp_only");
    let (torrent, data) = make_torrent(&dir, "utp.bin", 3 << 20 | 777, "32KiB");
    let only = ["--utp", "only", "--encryption", "require"];
    let mut seed = shoal_seed(&torrent, &data, "127.0.0.2", &only, "seed", &dir);
    let seed_addr = seed.listening_addr();
    // `only`: nothing accepts TCP on the listen address (uTP has its port number, over UDP).
    assert!(
        std::net::TcpStream::connect(&seed_addr).is_err(),
        "the uTP-only seeder accepted TCP on {seed_addr}"
    );
    let out = dir.join("dl");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "127.0.0.3",
        std::slice::from_ref(&seed_addr),
        &["--utp", "only", "--encryption", "require", "--seed"],
        "dl",
        &dir,
    );
    wait_complete(&mut dl);
    assert!(same_bytes(&data, &out.join("utp.bin")), "bytes differ");
    // A progress line with the peer listed, to see what carried it.
    wait_peer_listed(&mut dl);
    let transports = peer_transports(&dl);
    assert_eq!(
        transports,
        vec![("utp".to_string(), "rc4".to_string())],
        "the downloader's peer"
    );
    // Counted by transport too.
    let counted = dl
        .seen
        .iter()
        .rev()
        .find(|v| v["peers_utp"].as_u64() > Some(0))
        .expect("a line counting the uTP peer");
    assert_eq!(counted["peers_utp"], 1, "{counted}");
    assert_eq!(counted["peers_tcp"], 0, "{counted}");
    dl.term();
    dl.wait_exit(Duration::from_secs(20));
    seed.term();
    seed.wait_exit(Duration::from_secs(20));
}

/// libtorrent with TCP off both ways and uTP on seeds; shoal downloads with `--utp only`.
#[test]
fn libtorrent_utp_only_seeds_shoal_downloads() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("utp_lt_seeds");
    let (torrent, data) = make_torrent(&dir, "utp-lt.bin", 3 << 20 | 4321, "32KiB");
    let mut lt = lt_peer(
        "seed",
        &torrent,
        &dir.join("seed"),
        "127.0.0.4",
        &[],
        &["--timeout", "120", "--transport", "utp"],
        "lt-seed",
        &dir,
    );
    let lt_addr = lt.listening_addr();
    let out = dir.join("dl");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "127.0.0.3",
        std::slice::from_ref(&lt_addr),
        &["--utp", "only", "--seed"],
        "shoal-dl",
        &dir,
    );
    wait_complete(&mut dl);
    assert!(same_bytes(&data, &out.join("utp-lt.bin")), "bytes differ");
    wait_peer_listed(&mut dl);
    let transports: Vec<String> = peer_transports(&dl).into_iter().map(|(t, _)| t).collect();
    assert_eq!(transports, vec!["utp"]);
    dl.term();
    dl.wait_exit(Duration::from_secs(20));
}

/// shoal seeds with `--utp only`; libtorrent with TCP off both ways dials it over uTP.
#[test]
fn shoal_utp_only_seeds_libtorrent_utp_only() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("utp_shoal_seeds_lt");
    let (torrent, data) = make_torrent(&dir, "utp-lt2.bin", 3 << 20 | 99, "16KiB");
    let mut seed = shoal_seed(
        &torrent,
        &data,
        "127.0.0.2",
        &["--utp", "only"],
        "seed",
        &dir,
    );
    let seed_addr = seed.listening_addr();
    let mut lt = lt_peer(
        "download",
        &torrent,
        &dir.join("lt"),
        "127.0.0.5",
        std::slice::from_ref(&seed_addr),
        &["--timeout", "100", "--transport", "utp"],
        "lt-dl",
        &dir,
    );
    lt.wait_event("complete", LONG);
    assert!(
        same_bytes(&data, &dir.join("lt").join("utp-lt2.bin")),
        "bytes differ"
    );
    lt.wait_exit(Duration::from_secs(20));
    seed.term();
    seed.wait_exit(Duration::from_secs(20));
}

/// A magnet link with `--utp only`: the metadata comes over uTP too (the seeder has no TCP).
#[test]
fn magnet_over_utp_only() {
    let dir = scratch("utp_magnet");
    let (torrent, data) = make_torrent(&dir, "m.bin", 2 << 20 | 99, "32KiB");
    let mut seed = shoal_seed(
        &torrent,
        &data,
        "127.0.0.2",
        &["--utp", "only"],
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
        &["--utp", "only"],
        "dl",
        &dir,
    );
    dl.wait_event("metadata", LONG);
    dl.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("m.bin")));
    seed.term();
    seed.wait_exit(Duration::from_secs(20));
}

/// How a seeder vanishes in [`a_utp_seeder_vanishes_mid_download`].
#[derive(Clone, Copy, Debug)]
enum Vanish {
    /// SIGSTOP: the process keeps its socket but answers nothing.
    Freeze,
    /// SIGKILL: the socket is gone; over UDP nothing tells the peer.
    Kill,
}

/// Two shoal seeders, both `--utp only` with their upload capped so the download lasts; one
/// vanishes once a quarter is verified. Over UDP no RST or FIN arrives: the downloader's uTP
/// connection to it must time out on its own while the missed request deadlines hand its blocks
/// to the other seeder. The download completes with the same bytes, and the vanished seeder
/// leaves the downloader's peer list (its connection ended).
fn a_utp_seeder_vanishes_mid_download(how: Vanish, ips: [&str; 3]) {
    let dir = scratch(&format!("utp_vanish_{how:?}"));
    let (torrent, data) = make_torrent(&dir, "v.bin", 12 << 20, "256KiB");
    // 1 MiB/s each: after the first quarter the survivor alone needs ~9 s, longer than the uTP
    // timeout (3 resends from a 500 ms floor, ~7.5 s), so both failure paths are exercised.
    let seed_args = ["--utp", "only", "--max-upload-rate", "1MiB"];
    let mut a = shoal_seed(&torrent, &data, ips[0], &seed_args, "seed-a", &dir);
    let mut b = shoal_seed(&torrent, &data, ips[1], &seed_args, "seed-b", &dir);
    let a_addr = a.listening_addr();
    let peers = vec![a_addr.clone(), b.listening_addr()];
    let out = dir.join("dl");
    let mut dl = shoal_download(
        &torrent,
        &out,
        ips[2],
        &peers,
        &["--utp", "only", "--seed"],
        "dl",
        &dir,
    );
    // Both seeders connected and a quarter verified.
    dl.wait_for(LONG, |v| {
        let total = v["total"].as_u64().unwrap_or(0);
        let both = v["peer_encryption"]
            .as_array()
            .is_some_and(|a| a.len() == 2);
        both && total > 0 && v["downloaded"].as_u64().unwrap_or(0) * 4 >= total
    });
    match how {
        Vanish::Freeze => {
            let _ = Command::new("kill")
                .args(["-STOP", &a.child.id().to_string()])
                .status();
        }
        Vanish::Kill => a.kill9(),
    }
    let lists_a = |v: &serde_json::Value| {
        v["peer_encryption"]
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["addr"] == a_addr.as_str()))
    };
    dl.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("v.bin")), "bytes differ");
    // Its connection ended: progress lines (the downloader seeds on) stop listing it.
    dl.wait_for(Duration::from_secs(60), |v| {
        v["event"] == "progress" && !lists_a(v)
    });
    if let Vanish::Freeze = how {
        let _ = Command::new("kill")
            .args(["-CONT", &a.child.id().to_string()])
            .status();
    }
    dl.term();
    dl.wait_exit(Duration::from_secs(20));
    b.term();
    b.wait_exit(Duration::from_secs(20));
}

#[test]
fn a_frozen_utp_seeder_times_out_and_its_blocks_go_to_the_other() {
    a_utp_seeder_vanishes_mid_download(Vanish::Freeze, ["127.0.0.50", "127.0.0.51", "127.0.0.52"]);
}

#[test]
fn a_killed_utp_seeder_times_out_and_its_blocks_go_to_the_other() {
    a_utp_seeder_vanishes_mid_download(Vanish::Kill, ["127.0.0.53", "127.0.0.54", "127.0.0.55"]);
}

/// With uTP and the DHT both on, one UDP socket carries both (as libtorrent does): the DHT node
/// reports the uTP listener's address, answers a KRPC ping sent there, and a uTP download from
/// that same address works.
#[test]
fn the_dht_shares_the_utp_socket() {
    let dir = scratch("utp_dht_shared");
    let (boot, boot_addr) = dht_node(&dir);
    let (torrent, data) = make_torrent(&dir, "d.bin", 2 << 20 | 5, "32KiB");
    let mut seed = shoal_seed(
        &torrent,
        &data,
        "127.0.0.60",
        &["--utp", "only", "--dht-bootstrap", &boot_addr],
        "seed",
        &dir,
    );
    let utp_addr = seed.listening_addr();
    let dht = seed.wait_event("dht", Duration::from_secs(20));
    assert_eq!(
        dht["addr"],
        utp_addr.as_str(),
        "the DHT is not on uTP's socket"
    );

    // A KRPC ping (BEP 5) to that port gets the node's answer.
    let udp = std::net::UdpSocket::bind("127.0.0.61:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
    let mut reply = None;
    let mut buf = [0u8; 1500];
    // A few tries: UDP, and the node may still be starting. The node may also query us (it
    // pings a node it has not seen): only the reply to our transaction id counts.
    'tries: for _ in 0..3 {
        udp.send_to(ping, &utp_addr).unwrap();
        for _ in 0..8 {
            let Ok((n, from)) = udp.recv_from(&mut buf) else {
                continue 'tries;
            };
            assert_eq!(from.to_string(), utp_addr, "an answer from another port");
            let d = &buf[..n];
            let is = |needle: &[u8]| d.windows(needle.len()).any(|w| w == needle);
            if d.starts_with(b"d") && is(b"1:t2:aa") && is(b"1:y1:r") {
                reply = Some(d.to_vec());
                break 'tries;
            }
        }
    }
    let reply = reply.expect("no answer to a KRPC ping on the uTP port");
    // The reply carries the node's id.
    assert!(
        reply.windows(11).any(|w| w == b"1:rd2:id20:"),
        "not a ping reply: {}",
        String::from_utf8_lossy(&reply)
    );

    // And uTP from that same address.
    let out = dir.join("dl");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "127.0.0.62",
        std::slice::from_ref(&utp_addr),
        &["--utp", "only"],
        "dl",
        &dir,
    );
    dl.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("d.bin")), "bytes differ");
    dl.wait_exit(Duration::from_secs(20));
    seed.term();
    seed.wait_exit(Duration::from_secs(20));
    drop(boot);
}
