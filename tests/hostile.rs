//! Hostile and failing peers, played by a scripted fake peer: the download still completes, the
//! culprits are detected, and memory stays bounded.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Serves this many blocks correctly, then keeps the connection open and answers nothing.
    GoesSilentAfter(u32),
    /// Serves every block with its bytes flipped.
    Corrupt,
    /// Sends 16 blocks nobody asked for (garbage) right after unchoking, then serves every
    /// requested block with some of its bytes flipped.
    JunkThenCorrupt,
    /// Sends a 4 GiB length prefix right after the handshake.
    HugePrefix,
    /// Answers the first request with its bytes flipped, never answers another request of that
    /// piece (so honest peers send the rest of it), and serves every other piece correctly.
    OneBadBlock,
}

/// What the fake peer saw.
#[derive(Default)]
struct FakeReport {
    served: AtomicU32,
    unanswered: AtomicU32,
    closed_by_shoal: AtomicBool,
}

fn read_exact_or_eof(s: &mut TcpStream, buf: &mut [u8]) -> bool {
    s.read_exact(buf).is_ok()
}

/// A fake seeder on `ip` that has every piece of `data` (a single-file torrent with
/// `piece_len`-byte pieces) and behaves as told.
fn fake_seeder(
    ip: &str,
    data: Vec<u8>,
    piece_len: usize,
    behaviour: Behaviour,
) -> (String, Arc<FakeReport>) {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let report = Arc::new(FakeReport::default());
    let data = Arc::new(data);
    let r = report.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let data = data.clone();
            let r = r.clone();
            std::thread::spawn(move || serve(&mut s, &data, piece_len, behaviour, &r));
        }
    });
    (addr, report)
}

fn serve(
    s: &mut TcpStream,
    data: &[u8],
    piece_len: usize,
    behaviour: Behaviour,
    report: &FakeReport,
) {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut hs = [0u8; 68];
    if !read_exact_or_eof(s, &mut hs) {
        return;
    }
    // Echo the protocol and info-hash with no extensions, and our own peer id.
    let mut reply = hs;
    reply[20..28].fill(0);
    reply[48..68].copy_from_slice(b"-FAKE0-fakefakefake1");
    s.write_all(&reply).unwrap();
    if behaviour == Behaviour::HugePrefix {
        let _ = s.write_all(&[0xff, 0xff, 0xff, 0xff, 7]);
        let _ = s.write_all(&vec![0xAB; 1 << 20]);
        // shoal must close the connection: reading ends with EOF or an error, not a timeout.
        let mut sink = [0u8; 4096];
        loop {
            match s.read(&mut sink) {
                Ok(0) => break report.closed_by_shoal.store(true, Ordering::SeqCst),
                Ok(_) => continue,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return
                }
                Err(_) => break report.closed_by_shoal.store(true, Ordering::SeqCst),
            }
        }
        return;
    }
    let pieces = data.len().div_ceil(piece_len);
    let mut bits = vec![0u8; pieces.div_ceil(8)];
    for i in 0..pieces {
        bits[i / 8] |= 0x80 >> (i % 8);
    }
    let mut msg = ((bits.len() + 1) as u32).to_be_bytes().to_vec();
    msg.push(5);
    msg.extend_from_slice(&bits);
    msg.extend_from_slice(&[0, 0, 0, 1, 1]); // unchoke
    if behaviour == Behaviour::JunkThenCorrupt {
        // Blocks of the first pieces, never requested from us: they must never be written
        // (an honest seeder completing those pieces would otherwise share the blame).
        for i in 0..16u32 {
            let (piece, begin) = (i / 4, (i % 4) * 16384);
            if (piece as usize) * piece_len + begin as usize + 16384 > data.len() {
                break;
            }
            msg.extend_from_slice(&(9 + 16384u32).to_be_bytes());
            msg.push(7);
            msg.extend_from_slice(&piece.to_be_bytes());
            msg.extend_from_slice(&begin.to_be_bytes());
            msg.extend_from_slice(&[0xEE; 16384]);
        }
    }
    s.write_all(&msg).unwrap();
    let mut bad_piece = None;
    loop {
        let mut len = [0u8; 4];
        if !read_exact_or_eof(s, &mut len) {
            return;
        }
        let len = u32::from_be_bytes(len) as usize;
        let mut body = vec![0u8; len.min(1 << 20)];
        if len > body.len() || !read_exact_or_eof(s, &mut body) {
            return;
        }
        if len != 13 || body[0] != 6 {
            continue;
        }
        let field = |i: usize| u32::from_be_bytes(body[i..i + 4].try_into().unwrap()) as usize;
        let (piece, begin, length) = (field(1), field(5), field(9));
        if let Behaviour::GoesSilentAfter(n) = behaviour {
            if report.served.load(Ordering::SeqCst) >= n {
                report.unanswered.fetch_add(1, Ordering::SeqCst);
                continue;
            }
        }
        let start = piece * piece_len + begin;
        let mut block = data[start..start + length].to_vec();
        if behaviour == Behaviour::OneBadBlock {
            if bad_piece == Some(piece) {
                report.unanswered.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            if bad_piece.is_none() {
                bad_piece = Some(piece);
                block[length / 3] ^= 0x40;
            }
        }
        if behaviour == Behaviour::Corrupt {
            block.iter_mut().for_each(|b| *b ^= 0x5a);
        }
        if behaviour == Behaviour::JunkThenCorrupt {
            block[length / 2] ^= 0x01;
        }
        let mut out = ((9 + length) as u32).to_be_bytes().to_vec();
        out.push(7);
        out.extend_from_slice(&(piece as u32).to_be_bytes());
        out.extend_from_slice(&(begin as u32).to_be_bytes());
        out.extend_from_slice(&block);
        if s.write_all(&out).is_err() {
            return;
        }
        report.served.fetch_add(1, Ordering::SeqCst);
    }
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn peer_that_stops_answering_mid_piece_is_routed_around() {
    let dir = scratch("hostile_silent");
    let (torrent, data) = make_torrent(&dir, "f.bin", 4 << 20, "256KiB");
    let bytes = std::fs::read(&data).unwrap();
    // The fake answers 5 blocks (the middle of its first piece), then nothing.
    let (fake, report) = fake_seeder(
        "127.0.0.66",
        bytes,
        256 << 10,
        Behaviour::GoesSilentAfter(5),
    );
    let mut seed = shoal_seed(
        &torrent,
        &data,
        "127.0.0.2",
        &["--max-upload-rate", "2MiB"],
        "seed",
        &dir,
    );
    let seed_addr = seed.listening_addr();
    let out = dir.join("dl");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "127.0.0.3",
        &[fake, seed_addr],
        &[],
        "dl",
        &dir,
    );
    dl.wait_event("complete", LONG);
    assert_eq!(dl.wait_exit(Duration::from_secs(20)), Some(0));
    assert!(same_bytes(&data, &out.join("f.bin")));
    assert_eq!(report.served.load(Ordering::SeqCst), 5);
    assert!(
        report.unanswered.load(Ordering::SeqCst) > 0,
        "the silent peer held requests, which had to be re-requested elsewhere"
    );
}

/// A shoal seeder on 127.0.0.2 (upload capped at `seed_rate`) and a fake seeder on `fake_ip`
/// behaving as told; a shoal leecher downloads from both. Returns the leecher's `complete`
/// line, the banned IPs in it, and what the fake saw; the file is checked byte for byte.
fn download_beside_a_fake(
    name: &str,
    fake_ip: &str,
    behaviour: Behaviour,
    piece: usize,
    seed_rate: &str,
) -> (serde_json::Value, Vec<String>, Arc<FakeReport>) {
    let dir = scratch(name);
    let (torrent, data) = make_torrent(&dir, "f.bin", 4 << 20, &format!("{}KiB", piece >> 10));
    let bytes = std::fs::read(&data).unwrap();
    let (fake, report) = fake_seeder(fake_ip, bytes, piece, behaviour);
    let mut seed = shoal_seed(
        &torrent,
        &data,
        "127.0.0.2",
        &["--max-upload-rate", seed_rate],
        "seed",
        &dir,
    );
    let seed_addr = seed.listening_addr();
    let out = dir.join("dl");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "127.0.0.3",
        &[fake, seed_addr],
        &[],
        "dl",
        &dir,
    );
    let done = dl.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("f.bin")));
    let banned = done["banned"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    (done, banned, report)
}

#[test]
fn peer_sending_corrupt_blocks_is_banned_and_download_completes() {
    let (done, banned, report) = download_beside_a_fake(
        "hostile_corrupt",
        "127.0.0.67",
        Behaviour::Corrupt,
        64 << 10,
        "1MiB",
    );
    assert!(
        report.served.load(Ordering::SeqCst) > 0,
        "the corrupt peer did send data"
    );
    assert!(done["hash_failures"].as_u64().unwrap() >= 1);
    assert_eq!(banned, ["127.0.0.67"]);
}

#[test]
fn a_hostile_peer_never_gets_the_honest_seeder_banned() {
    // The fault found with a hostile peer: have-all, unchoke, 16 blocks nobody requested, then
    // bad data. Unrequested blocks are never written; bans need per-block evidence, so the
    // honest seeder whose blocks complete the same pieces is never banned.
    let (_, banned, report) = download_beside_a_fake(
        "hostile_mixing",
        "127.0.0.68",
        Behaviour::JunkThenCorrupt,
        64 << 10,
        "512KiB",
    );
    assert!(report.served.load(Ordering::SeqCst) > 0);
    assert!(
        !banned.iter().any(|b| b == "127.0.0.2"),
        "the honest seeder was banned: {banned:?}"
    );
    assert_eq!(banned, ["127.0.0.68"]);
}

/// Waits (30 s at most) for the leecher's log to show a block named bad by its proven hash, and
/// says whether that came before the ban (the ban then came from that block alone, not from
/// the piece passing later).
fn banned_from_proven_hashes(log_path: &std::path::Path) -> bool {
    for _ in 0..300 {
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        if let (Some(named), Some(banned)) = (
            log.find("differs from its proven hash"),
            log.find("banning peer"),
        ) {
            return named < banned;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn v2_peer_sending_one_bad_block_is_banned_from_that_block_alone() {
    // A v2-only torrent: the piece holding the bad block fails with blocks from several peers;
    // the leecher asks a shoal seeder for the piece's leaf hashes (BEP 52 hash request), proves
    // them against the piece layer and bans exactly the bad block's sender.
    let dir = scratch("hostile_v2_block");
    let data = dir.join("seed").join("f.bin");
    write_random_file(&data, 4 << 20, 0x52b);
    let torrent = dir.join("f.torrent");
    let out = run_shoal(&[
        "create",
        data.to_str().unwrap(),
        "-o",
        torrent.to_str().unwrap(),
        "--piece-size",
        "256KiB",
        "--no-date",
        "--v2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&data).unwrap();
    let (fake, report) = fake_seeder("127.0.0.69", bytes, 256 << 10, Behaviour::OneBadBlock);
    let mut seeds = Vec::new();
    let mut peers = vec![fake];
    for (i, ip) in ["127.0.0.2", "127.0.0.4"].iter().enumerate() {
        let name = format!("seed{i}");
        let mut seed = shoal_seed(
            &torrent,
            &data,
            ip,
            &["--max-upload-rate", "1MiB"],
            &name,
            &dir,
        );
        peers.push(seed.listening_addr());
        seeds.push(seed);
    }
    let out = dir.join("dl");
    let mut dl = shoal_download(&torrent, &out, "127.0.0.3", &peers, &["--seed"], "dl", &dir);
    let done = dl.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("f.bin")));
    assert!(report.served.load(Ordering::SeqCst) > 0);
    assert_eq!(done["hash_failures"], 1, "{done}");
    let seen = dl.wait_for(LONG, |v| {
        v["banned"].as_array().is_some_and(|b| !b.is_empty())
    });
    assert_eq!(seen["banned"], serde_json::json!(["127.0.0.69"]), "{seen}");
    // Named from the proven leaf hashes, not from the piece passing later.
    let log_path = dir.join("dl.stderr");
    let proven = banned_from_proven_hashes(&log_path);
    dl.term();
    assert!(proven, "{}", std::fs::read_to_string(&log_path).unwrap());
}

#[test]
fn v2_bad_block_beside_a_libtorrent_seeder() {
    // The same hostile peer, with libtorrent 2.0 as the honest seeder: libtorrent answers the
    // leaf-layer hash request with hashes that prove out, and the hostile peer alone is banned
    // from them.
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("hostile_v2_lt");
    let data = dir.join("seed").join("f.bin");
    write_random_file(&data, 4 << 20, 0x52c);
    let torrent = dir.join("f.torrent");
    let out = run_shoal(&[
        "create",
        data.to_str().unwrap(),
        "-o",
        torrent.to_str().unwrap(),
        "--piece-size",
        "256KiB",
        "--no-date",
        "--v2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&data).unwrap();
    let (fake, report) = fake_seeder("127.0.0.70", bytes, 256 << 10, Behaviour::OneBadBlock);
    let mut lt = lt_peer(
        "seed",
        &torrent,
        &dir.join("seed"),
        "127.0.0.4",
        &[],
        &["--timeout", "120"],
        "lt",
        &dir,
    );
    let lt_addr = lt.listening_addr();
    let out = dir.join("dl");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "127.0.0.3",
        &[fake, lt_addr],
        &["--seed"],
        "dl",
        &dir,
    );
    dl.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("f.bin")));
    assert!(report.served.load(Ordering::SeqCst) > 0);
    // The ban may land just after the last piece: wait for a status line that shows it.
    let seen = dl.wait_for(LONG, |v| {
        v["banned"].as_array().is_some_and(|b| !b.is_empty())
    });
    assert_eq!(seen["banned"], serde_json::json!(["127.0.0.70"]), "{seen}");
    // libtorrent answers the leaf-layer request, and its hashes prove the bad block.
    let log_path = dir.join("dl.stderr");
    let proven = banned_from_proven_hashes(&log_path);
    dl.term();
    lt.term();
    assert!(proven, "{}", std::fs::read_to_string(&log_path).unwrap());
}

#[test]
fn huge_length_prefix_disconnects_without_allocating() {
    let dir = scratch("hostile_prefix");
    let (torrent, data) = make_torrent(&dir, "f.bin", 2 << 20, "64KiB");
    let (fake, report) = fake_seeder("127.0.0.68", Vec::new(), 64 << 10, Behaviour::HugePrefix);
    let mut seed = shoal_seed(&torrent, &data, "127.0.0.2", &[], "seed", &dir);
    let seed_addr = seed.listening_addr();
    let out = dir.join("dl");
    let mut dl = shoal_download(
        &torrent,
        &out,
        "127.0.0.3",
        &[fake, seed_addr],
        &["--seed"],
        "dl",
        &dir,
    );
    dl.wait_for(LONG, |v| {
        v["total"].as_u64() > Some(0) && v["downloaded"] == v["total"]
    });
    assert!(same_bytes(&data, &out.join("f.bin")));
    for _ in 0..100 {
        if report.closed_by_shoal.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        report.closed_by_shoal.load(Ordering::SeqCst),
        "shoal closed the connection"
    );
    // A 4 GiB allocation (or even the 1 MiB junk) would show in the peak: stay far below.
    let hwm = vm_hwm_kib(dl.child.id());
    assert!(hwm > 0 && hwm < 64 * 1024, "peak RSS {hwm} KiB");
}

#[test]
fn peer_that_reconnects_repeatedly_does_not_disturb_the_seeder() {
    let dir = scratch("hostile_flap");
    let (torrent, data) = make_torrent(&dir, "f.bin", 2 << 20, "64KiB");
    let meta = run_shoal(&["info", torrent.to_str().unwrap(), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&meta.stdout).unwrap();
    let hash = shoal_core_hex(info["info_hash"].as_str().unwrap());
    let mut seed = shoal_seed(&torrent, &data, "127.0.0.2", &[], "seed", &dir);
    let seed_addr = seed.listening_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let flaps = Arc::new(AtomicU32::new(0));
    let flapper = {
        let (stop, flaps, seed_addr) = (stop.clone(), flaps.clone(), seed_addr.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) && flaps.load(Ordering::SeqCst) < 300 {
                let Ok(mut s) = std::net::TcpStream::connect(&seed_addr) else {
                    continue;
                };
                let mut hs = vec![19u8];
                hs.extend_from_slice(b"BitTorrent protocol");
                hs.extend_from_slice(&[0; 8]);
                hs.extend_from_slice(&hash);
                hs.extend_from_slice(b"-FLAP0-flapflapflap1");
                let _ = s.write_all(&hs);
                let _ = s.write_all(&[0, 0, 0, 1, 2]); // interested, then gone
                drop(s);
                flaps.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let out = dir.join("dl");
    let mut dl = shoal_download(&torrent, &out, "127.0.0.3", &[seed_addr], &[], "dl", &dir);
    dl.wait_event("complete", LONG);
    stop.store(true, Ordering::SeqCst);
    flapper.join().unwrap();
    assert!(same_bytes(&data, &out.join("f.bin")));
    assert!(
        flaps.load(Ordering::SeqCst) >= 10,
        "the flapping peer connected many times"
    );
    assert!(
        seed.child.try_wait().unwrap().is_none(),
        "seeder still running"
    );
}

fn shoal_core_hex(hex: &str) -> Vec<u8> {
    (0..20)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn killed_leecher_resumes_without_downloading_verified_pieces_again() {
    let dir = scratch("resume_kill");
    let (torrent, data) = make_torrent(&dir, "f.bin", 16 << 20, "64KiB");
    let total = 16u64 << 20;
    let mut seed = shoal_seed(
        &torrent,
        &data,
        "127.0.0.2",
        &["--max-upload-rate", "4MiB"],
        "seed",
        &dir,
    );
    let seed_addr = seed.listening_addr();
    let out = dir.join("dl");
    let mut first = shoal_download(
        &torrent,
        &out,
        "127.0.0.3",
        std::slice::from_ref(&seed_addr),
        &[],
        "dl1",
        &dir,
    );
    let half = first.wait_for(LONG, |v| {
        v["event"] == "progress" && v["downloaded"].as_u64() >= Some(total / 2)
    });
    first.kill9();
    let verified_before = half["downloaded"].as_u64().unwrap();

    let mut second = shoal_download(&torrent, &out, "127.0.0.3", &[seed_addr], &[], "dl2", &dir);
    let start = second.wait_event("progress", LONG);
    let resumed = start["downloaded"].as_u64().unwrap();
    assert!(
        resumed >= verified_before,
        "resumed with {resumed} bytes, {verified_before} were verified"
    );
    let done = second.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("f.bin")));
    let received = done["received"].as_u64().unwrap();
    // Only what was missing comes again (plus at most a few blocks of endgame duplicates).
    assert!(
        received <= total - resumed + (256 << 10),
        "received {received} after resuming {resumed}"
    );
}
