//! `shoal verify` end to end: a torrent made by `shoal create`, data intact, corrupted, partly
//! missing, given as the save folder or as the data itself; exit status only fails when it could
//! not check.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run_shoal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .output()
        .expect("run shoal")
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// `len` pseudo-random bytes (xorshift from `seed`) at `path`.
fn write_random_file(path: &Path, len: usize, seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        data.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    data.truncate(len);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("create parent");
    std::fs::write(path, data).expect("write payload");
}

fn verify_json(torrent: &Path, path: &Path) -> serde_json::Value {
    let out = run_shoal(&[
        "verify",
        torrent.to_str().unwrap(),
        path.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "verify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.trim().lines().count(), 1, "one JSON object: {text}");
    serde_json::from_str(text.trim()).unwrap()
}

#[test]
fn verify_reports_valid_bad_and_missing() {
    let dir = scratch("verify_cli");
    let data = dir.join("payload");
    // 3 files of 100,000 bytes with 32 KiB pieces: pieces straddle files.
    for i in 0..3 {
        write_random_file(&data.join(format!("f{i}.bin")), 100_000, i);
    }
    let torrent = dir.join("payload.torrent");
    let out = run_shoal(&[
        "create",
        data.to_str().unwrap(),
        "-o",
        torrent.to_str().unwrap(),
        "--piece-size",
        "32KiB",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Intact, given as the save folder and as the data folder itself.
    for path in [&dir, &data] {
        let v = verify_json(&torrent, path);
        assert_eq!(v["pieces_total"], 10);
        assert_eq!(v["pieces_valid"], 10);
        assert_eq!(v["bad_pieces"], serde_json::json!([]));
        assert_eq!(v["missing_pieces"], 0);
        assert_eq!(v["bytes_checked"], 300_000);
        assert!(v["seconds"].as_f64().unwrap() >= 0.0);
    }

    // One byte flipped in f1 at 10,000 (stream offset 110,000: piece 3), f2 removed.
    let f1 = data.join("f1.bin");
    let mut bytes = std::fs::read(&f1).unwrap();
    bytes[10_000] ^= 1;
    std::fs::write(&f1, bytes).unwrap();
    std::fs::remove_file(data.join("f2.bin")).unwrap();
    let v = verify_json(&torrent, &dir);
    assert_eq!(v["bad_pieces"], serde_json::json!([3]));
    // f2 covers stream bytes 200,000..300,000: pieces 6 (shared with f1) to 9.
    assert_eq!(v["missing_pieces"], 4);
    assert_eq!(v["pieces_valid"], 5);

    // Human output still exits 0 and names the bad piece.
    let out = run_shoal(&["verify", torrent.to_str().unwrap(), dir.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("5/10 pieces valid"), "{text}");
    assert!(text.contains("bad pieces: 3"), "{text}");

    // Could not check: path missing, torrent unreadable.
    let out = run_shoal(&[
        "verify",
        torrent.to_str().unwrap(),
        dir.join("nowhere").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let junk = dir.join("junk.torrent");
    std::fs::write(&junk, b"not bencode").unwrap();
    let out = run_shoal(&["verify", junk.to_str().unwrap(), dir.to_str().unwrap()]);
    assert!(!out.status.success());
}

#[test]
fn verify_checks_v2_and_hybrid_torrents_by_their_merkle_trees() {
    for flag in ["--v2", "--hybrid"] {
        let dir = scratch(&format!("verify_cli{flag}"));
        let data = dir.join("payload");
        // 3 files of 100,000 bytes with 32 KiB pieces: each file starts a piece, 4 pieces each.
        for i in 0..3 {
            write_random_file(&data.join(format!("f{i}.bin")), 100_000, i);
        }
        let torrent = dir.join("payload.torrent");
        let out = run_shoal(&[
            "create",
            data.to_str().unwrap(),
            "-o",
            torrent.to_str().unwrap(),
            "--piece-size",
            "32KiB",
            flag,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = verify_json(&torrent, &dir);
        assert_eq!(v["pieces_total"], 12, "{flag}");
        assert_eq!(v["pieces_valid"], 12, "{flag}");
        // One byte flipped in f1's second piece (piece 5 of the aligned layout).
        let f1 = data.join("f1.bin");
        let mut bytes = std::fs::read(&f1).unwrap();
        bytes[40_000] ^= 1;
        std::fs::write(&f1, bytes).unwrap();
        let v = verify_json(&torrent, &dir);
        assert_eq!(v["bad_pieces"], serde_json::json!([5]), "{flag}");
        assert_eq!(v["pieces_valid"], 11, "{flag}");
    }
}
