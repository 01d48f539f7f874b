//! `--bind`: every socket of a download (peer listen and dials, HTTP and UDP trackers, DHT)
//! uses the bound address, and a bind to an address this machine does not have fails at once
//! with one clear error, before anything is sent.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

const LONG: Duration = Duration::from_secs(120);
const BOUND: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);

/// The socket inodes among the open descriptors of process `pid`.
fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_str()?.to_string();
            l.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// `0500007F:1F90` (IPv4) or the 32-digit IPv6 form, as /proc/net/* writes them.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.to_le_bytes(),
        )),
        32 => {
            let mut b = [0u8; 16];
            for (i, chunk) in b.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// A socket of the process: protocol table, local and remote address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Sock {
    table: &'static str,
    local: SocketAddr,
    remote: SocketAddr,
}

/// Every TCP and UDP socket (both families) that process `pid` holds right now.
fn sockets_of(pid: u32) -> Vec<Sock> {
    let inodes = socket_inodes(pid);
    let mut out = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(inode)) = (
                f.get(1).and_then(|s| parse_addr(s)),
                f.get(2).and_then(|s| parse_addr(s)),
                f.get(9).and_then(|s| s.parse::<u64>().ok()),
            ) else {
                continue;
            };
            if inode != 0 && inodes.contains(&inode) {
                out.push(Sock {
                    table,
                    local,
                    remote,
                });
            }
        }
    }
    out
}

/// `%XX` for every byte.
fn url_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("%{x:02X}")).collect()
}

/// Announces to the HTTP tracker as another peer and returns the compact IPv4 peers it gives.
fn tracker_peers(port: u16, info_hash_hex: &str) -> Vec<SocketAddr> {
    let hash: Vec<u8> = (0..20)
        .map(|i| u8::from_str_radix(&info_hash_hex[i * 2..i * 2 + 2], 16).unwrap())
        .collect();
    let query = format!(
        "/announce?info_hash={}&peer_id=-TB0001-bindtestpeer&port=9&uploaded=0&downloaded=0&left=1000&compact=1&numwant=50",
        url_bytes(&hash)
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("tracker");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    // …5:peers<len>:<6 bytes each>…
    let key = b"5:peers";
    let Some(at) = reply.windows(key.len()).position(|w| w == key) else {
        panic!("no peers in {}", String::from_utf8_lossy(&reply));
    };
    let rest = &reply[at + key.len()..];
    let colon = rest.iter().position(|b| *b == b':').expect("length");
    let len: usize = std::str::from_utf8(&rest[..colon])
        .unwrap()
        .parse()
        .unwrap();
    rest[colon + 1..colon + 1 + len]
        .chunks(6)
        .map(|c| {
            SocketAddr::new(
                Ipv4Addr::new(c[0], c[1], c[2], c[3]).into(),
                u16::from_be_bytes([c[4], c[5]]),
            )
        })
        .collect()
}

#[test]
fn every_socket_of_a_bound_download_is_on_the_bound_address() {
    let dir = scratch("bind_all_sockets");
    let (_node, node) = dht_node(&dir);
    let (_tracker, port) = shoal_tracker(true, "tracker", &dir);
    let (torrent, data) = make_torrent_with_trackers(
        &dir,
        "b.bin",
        2 << 20,
        &[
            format!("http://127.0.0.1:{port}/announce"),
            format!("udp://127.0.0.1:{port}/announce"),
        ],
    );
    let boot = ["--dht-bootstrap", node.as_str()];
    let mut seed = shoal_seed(&torrent, &data, "127.0.0.2", &boot, "seed", &dir);
    seed.wait_event("dht", LONG);
    // No --peer: the seeder is found through the tracker and the DHT. The rate cap keeps the
    // download running while its sockets are listed.
    let out = dir.join("out");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "0.0.0.0",
        &[],
        &[
            "--bind",
            "127.0.0.5",
            "--dht-bootstrap",
            &node,
            "--max-download-rate",
            "512KiB",
            // Stays after completing, so the tracker still lists it below.
            "--seed",
        ],
        "download",
        &dir,
    );
    let listen: SocketAddr = dl.listening_addr().parse().expect("listen addr");
    assert_eq!(
        listen.ip(),
        IpAddr::V4(BOUND),
        "listens on the bound address"
    );
    let pid = dl.child.id();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + LONG;
    let mut completed = false;
    while Instant::now() < deadline {
        seen.extend(sockets_of(pid));
        if let Ok(Some(status)) = dl.child.try_wait() {
            panic!("the download exited early: {status}");
        }
        if std::fs::metadata(out.join("b.bin")).is_ok() && same_bytes(&data, &out.join("b.bin")) {
            completed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(completed, "the download completes");
    seen.extend(sockets_of(pid));
    for s in &seen {
        assert_eq!(
            s.local.ip(),
            IpAddr::V4(BOUND),
            "a socket not on 127.0.0.5: {s:?}"
        );
    }
    let has = |table: &str, pred: &dyn Fn(&Sock) -> bool| {
        seen.iter().any(|s| s.table == table && pred(s))
    };
    assert!(
        has("tcp", &|s| s.local == listen && s.remote.port() == 0),
        "the peer listener was seen: {seen:?}"
    );
    assert!(
        has("tcp", &|s| s.remote.ip()
            == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))),
        "a connection to the seeder was seen: {seen:?}"
    );
    assert!(has("udp", &|_| true), "the DHT socket was seen: {seen:?}");
    // The tracker knows the download by the address its announces came from.
    let peers = tracker_peers(port, &info_hash(&torrent));
    assert!(
        peers.contains(&listen),
        "the tracker lists the download at {listen}: {peers:?}"
    );
    assert!(
        peers
            .iter()
            .all(|p| p.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "nothing announced from 127.0.0.1: {peers:?}"
    );
}

/// Runs `shoal download` with `args` and returns (exit code, stderr lines).
fn download_fails(dir: &Path, args: &[&str]) -> (Option<i32>, Vec<String>) {
    let (torrent, _) = make_torrent(dir, "f.bin", 64 << 10, "16KiB");
    let out = dir.join("out");
    let mut cmd = shoal();
    cmd.args([
        "download",
        torrent.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--no-dht",
        "--no-trackers",
    ])
    .args(args);
    let o = cmd.output().expect("run shoal");
    let err = String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    (o.status.code(), err)
}

#[test]
fn a_bind_to_an_address_this_machine_lacks_fails_with_one_line() {
    let dir = scratch("bind_missing");
    // 192.0.2.1 (TEST-NET-1) is not on this machine: the bind fails locally, nothing is sent.
    let (code, err) = download_fails(&dir, &["--bind", "192.0.2.1", "--listen", "0.0.0.0:0"]);
    assert_ne!(code, Some(0));
    assert_eq!(err.len(), 1, "one error line: {err:?}");
    assert!(
        err[0].starts_with("error:") && err[0].contains("192.0.2.1"),
        "{err:?}"
    );
}

#[test]
fn bad_bind_arguments_are_refused() {
    let dir = scratch("bind_bad_args");
    let (code, err) = download_fails(&dir, &["--bind", "127.0.0.5", "--bind", "127.0.0.6"]);
    assert_ne!(code, Some(0));
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(err[0].contains("one address per family"), "{err:?}");
    let (code, err) = download_fails(&dir, &["--bind", "127.0.0.5", "--listen", "127.0.0.6:0"]);
    assert_ne!(code, Some(0));
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(err[0].contains("not on a --bind address"), "{err:?}");
}

#[test]
fn a_bound_magnet_download_dials_from_the_bound_address() {
    let dir = scratch("bind_magnet_dial");
    let (torrent, data) = make_torrent(&dir, "m.bin", 1 << 20, "32KiB");
    // The seeder has no tracker and no DHT: it never dials, so every connection is ours.
    let mut seed = shoal_seed(&torrent, &data, "127.0.0.2", &[], "seed", &dir);
    let seeder: SocketAddr = seed.listening_addr().parse().expect("seeder addr");
    let magnet = format!("magnet:?xt=urn:btih:{}&x.pe={seeder}", info_hash(&torrent));
    let out = dir.join("out");
    let mut dl = shoal_download(
        Path::new(&magnet),
        &out,
        "0.0.0.0",
        &[],
        &[
            "--bind",
            "127.0.0.5",
            "--max-download-rate",
            "256KiB",
            "--seed",
        ],
        "download",
        &dir,
    );
    let listen: SocketAddr = dl.listening_addr().parse().expect("listen addr");
    let pid = dl.child.id();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + LONG;
    while Instant::now() < deadline && !same_bytes(&data, &out.join("m.bin")) {
        seen.extend(sockets_of(pid));
        if let Ok(Some(status)) = dl.child.try_wait() {
            panic!("the download exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        same_bytes(&data, &out.join("m.bin")),
        "the download completes"
    );
    for s in &seen {
        assert_eq!(
            s.local.ip(),
            IpAddr::V4(BOUND),
            "a socket not on 127.0.0.5: {s:?}"
        );
    }
    assert!(
        seen.iter()
            .any(|s| s.table == "tcp" && s.remote == seeder && s.local.port() != listen.port()),
        "an outgoing connection to the seeder was seen: {seen:?}"
    );
}

#[test]
fn one_bind_per_family_listens_on_both_and_nothing_else() {
    let dir = scratch("bind_two_families");
    let (torrent, data) = make_torrent(&dir, "two.bin", (2 << 20) + 2, "32KiB");
    let mut seed = shoal_seed(
        &torrent,
        &data,
        "0.0.0.0",
        &["--bind", "127.0.0.5", "--bind", "::1"],
        "seed",
        &dir,
    );
    let addr: SocketAddr = seed.listening_addr().parse().expect("listen addr");
    let port = addr.port();
    let pid = seed.child.id();
    // Listeners on both bound addresses at the same port; no socket anywhere else.
    let socks = sockets_of(pid);
    let v6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
    for want in [
        SocketAddr::new(IpAddr::V4(BOUND), port),
        SocketAddr::new(v6, port),
    ] {
        assert!(
            socks.iter().any(|s| s.local == want),
            "no listener on {want}: {socks:?}"
        );
    }
    for s in &socks {
        assert!(
            s.local.ip() == IpAddr::V4(BOUND) || s.local.ip() == v6,
            "socket on {}: {socks:?}",
            s.local
        );
    }
    // A peer of each family downloads.
    let out4 = dir.join("dl4");
    let mut dl4 = shoal_download(
        &torrent,
        &out4,
        "127.0.0.3",
        &[format!("127.0.0.5:{port}")],
        &[],
        "dl4",
        &dir,
    );
    dl4.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out4.join("two.bin")));
    let out6 = dir.join("dl6");
    let mut dl6 = shoal_download(
        &torrent,
        &out6,
        "[::1]",
        &[format!("[::1]:{port}")],
        &[],
        "dl6",
        &dir,
    );
    dl6.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out6.join("two.bin")));
}
