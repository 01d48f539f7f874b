//! Magnet links: the metadata comes from peers (BEP 9), checked against the info-hash.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(120);

/// A peer that speaks ut_metadata (in plaintext only) but sends `size` bytes of garbage as the
/// info dictionary.
fn lying_metadata_peer(ip: &str, size: usize) -> String {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut hs = [0u8; 68];
                if s.read_exact(&mut hs).is_err() {
                    return;
                }
                // Plaintext only, like any peer without MSE: anything else is hung up on (a
                // `prefer` dialler then redials in plaintext).
                if &hs[..20] != b"\x13BitTorrent protocol" {
                    return;
                }
                let mut reply = hs;
                reply[20..28].copy_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0]);
                reply[48..68].copy_from_slice(b"-LIAR0-liarliarliar1");
                let ext = format!("d1:md11:ut_metadatai2ee13:metadata_sizei{size}ee");
                let mut msg = ((ext.len() + 2) as u32).to_be_bytes().to_vec();
                msg.extend_from_slice(&[20, 0]);
                msg.extend_from_slice(ext.as_bytes());
                let _ = s.write_all(&reply);
                let _ = s.write_all(&msg);
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).is_err() {
                        return;
                    }
                    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
                    if s.read_exact(&mut body).is_err() {
                        return;
                    }
                    // A ut_metadata request (to our id 2): answer every piece with zeros.
                    if body.len() > 2 && body[0] == 20 && body[1] == 2 {
                        let text = String::from_utf8_lossy(&body[2..]).to_string();
                        let piece: usize = text
                            .split("5:piecei")
                            .nth(1)
                            .and_then(|r| r.split('e').next())
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(0);
                        let len = (size - piece * 16384).min(16384);
                        let dict = format!("d8:msg_typei1e5:piecei{piece}e10:total_sizei{size}ee");
                        let mut out = ((dict.len() + 2 + len) as u32).to_be_bytes().to_vec();
                        out.extend_from_slice(&[20, 3]);
                        out.extend_from_slice(dict.as_bytes());
                        out.extend(std::iter::repeat_n(b'x', len));
                        if s.write_all(&out).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn magnet_download_from_a_shoal_seeder() {
    let dir = scratch("magnet_shoal");
    let (torrent, data) = make_torrent(&dir, "m.bin", 3 << 20 | 99, "32KiB");
    let mut seed = shoal_seed(&torrent, &data, "127.0.0.2", &[], "seed", &dir);
    let seed_addr = seed.listening_addr();
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&dn=m.bin&x.pe={seed_addr}",
        info_hash(&torrent)
    );
    let out = dir.join("dl");
    let mut cmd = shoal();
    cmd.args([
        "download",
        &magnet,
        "-o",
        out.to_str().unwrap(),
        "--listen",
        "127.0.0.3:0",
        "--json",
        "--no-dht",
    ]);
    let mut dl = Proc::spawn_shoal(cmd, "dl", &dir);
    let meta = dl.wait_event("metadata", LONG);
    assert_eq!(meta["name"], "m.bin");
    dl.wait_event("complete", LONG);
    assert_eq!(dl.wait_exit(LONG), Some(0));
    assert!(same_bytes(&data, &out.join("m.bin")));

    // The fetched metadata is kept beside the download, as a .torrent of this info-hash.
    let kept = out.join(format!(".{}.shoal-torrent", info_hash(&torrent)));
    let shown = run_shoal(&["info", kept.to_str().unwrap(), "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["info_hash"], info_hash(&torrent));

    // A rerun with the seeder gone needs no peer: the metadata is the kept one, the data is
    // checked against it, and the download is complete.
    seed.term();
    let rerun = |name: &str| {
        let mut cmd = shoal();
        cmd.args(["download", &magnet, "-o", out.to_str().unwrap()])
            .args(["--listen", "127.0.0.3:0", "--json", "--no-dht"]);
        Proc::spawn_shoal(cmd, name, &dir)
    };
    let mut again = rerun("dl-again");
    assert_eq!(again.wait_exit(LONG), Some(0), "the rerun did not complete");
    assert!(again.last_event("complete").is_some());
    assert!(same_bytes(&data, &out.join("m.bin")));

    // Anything else under that name is not trusted: another torrent's metadata is ignored,
    // and with no peer to fetch from the run fails instead of using it.
    let (other, _) = make_torrent(&dir, "other.bin", 40_000, "32KiB");
    std::fs::copy(&other, &kept).unwrap();
    let mut cmd = shoal();
    cmd.args(["download", &magnet, "-o", out.to_str().unwrap()])
        .args(["--listen", "127.0.0.3:0", "--no-dht", "--json"]);
    let mut wrong = Proc::spawn_shoal(cmd, "dl-wrong", &dir);
    wrong.wait_for(Duration::from_secs(30), |v| v["event"] == "listening");
    wrong.drain(Duration::from_secs(1));
    assert!(
        wrong.last_event("metadata").is_none(),
        "another torrent's metadata was used"
    );
    wrong.kill9();
}

#[test]
fn magnet_download_from_libtorrent() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("magnet_lt");
    let (torrent, data) = make_torrent(&dir, "lt.bin", 2 << 20, "16KiB");
    let mut lt = lt_peer(
        "seed",
        &torrent,
        &dir.join("seed"),
        "127.0.0.4",
        &[],
        &["--timeout", "100"],
        "lt",
        &dir,
    );
    let lt_addr = lt.listening_addr();
    let magnet = format!("magnet:?xt=urn:btih:{}", info_hash(&torrent));
    let out = dir.join("dl");
    let mut dl = shoal_download(
        std::path::Path::new(&magnet),
        &out,
        "127.0.0.3",
        &[lt_addr],
        &[],
        "dl",
        &dir,
    );
    dl.wait_event("metadata", LONG);
    dl.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("lt.bin")));
}

#[test]
fn peer_with_corrupt_metadata_is_dropped_and_download_completes() {
    let dir = scratch("magnet_liar");
    let (torrent, data) = make_torrent(&dir, "x.bin", 1 << 20, "16KiB");
    let size = {
        // The info dictionary's size: what an honest peer announces.
        let bytes = std::fs::read(&torrent).unwrap();
        let start = bytes.windows(6).position(|w| w == b"4:info").unwrap() + 6;
        bytes.len() - start - 1
    };
    let liar = lying_metadata_peer("127.0.0.70", size);
    let magnet = format!("magnet:?xt=urn:btih:{}", info_hash(&torrent));
    let out = dir.join("dl");
    // The honest seeder starts only after the liar has had its say (shoal retries the seeder's
    // address until it listens), so the liar is always caught, not merely outrun.
    let seed_addr = "127.0.0.71:7391".to_string();
    let mut dl = shoal_download(
        std::path::Path::new(&magnet),
        &out,
        "127.0.0.3",
        &[liar, seed_addr],
        &[],
        "dl",
        &dir,
    );
    dl.wait_event("listening", LONG);
    std::thread::sleep(Duration::from_millis(1500));
    let mut cmd = shoal();
    cmd.args([
        "seed",
        torrent.to_str().unwrap(),
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.71:7391",
        "--json",
        "--no-dht",
    ])
    .env("XDG_STATE_HOME", dir.join("seed-state"));
    let mut seed = Proc::spawn_shoal(cmd, "seed", &dir);
    seed.listening_addr();
    dl.wait_event("metadata", LONG);
    dl.wait_event("complete", LONG);
    assert!(same_bytes(&data, &out.join("x.bin")));
    // The liar was found out (shoal logs a warning naming it on stderr).
    let log = std::fs::read_to_string(dir.join("dl.stderr")).unwrap_or_default();
    assert!(log.contains("127.0.0.70"), "the lying peer is named: {log}");
}
