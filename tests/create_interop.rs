//! `shoal create` and `shoal info` end to end, and the torrents they make checked by libtorrent.

mod support;

use serde_json::Value;
use support::*;

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "shoal failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout.clone()).expect("utf-8 stdout");
    let mut lines = stdout.lines();
    let v: Value = serde_json::from_str(lines.next().expect("a JSON line")).expect("valid JSON");
    assert!(lines.next().is_none(), "exactly one JSON object on stdout");
    v
}

/// Creates a torrent of `data` with shoal and returns `shoal info --json` of it.
fn create(
    dir: &std::path::Path,
    data: &std::path::Path,
    extra: &[&str],
) -> (std::path::PathBuf, Value) {
    let torrent = dir.join("out.torrent");
    let mut args = vec![
        "create",
        data.to_str().unwrap(),
        "-o",
        torrent.to_str().unwrap(),
        "--json",
        "--force",
    ];
    args.extend_from_slice(extra);
    let created = json_of(&run_shoal(&args));
    let info = json_of(&run_shoal(&["info", torrent.to_str().unwrap(), "--json"]));
    assert_eq!(created["info_hash"], info["info_hash"]);
    (torrent, info)
}

fn libtorrent_check(torrent: &std::path::Path, save: &std::path::Path) -> Value {
    let out = std::process::Command::new(SYSTEM_PYTHON)
        .arg(repo_root().join("tests/interop/lt_check.py"))
        .arg(torrent)
        .arg(save)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "lt_check.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("lt_check JSON")
}

#[test]
fn info_json_has_the_documented_fields() {
    let dir = scratch("info_json");
    let data = dir.join("payload.bin");
    write_random_file(&data, 100_000, 1);
    let (_, info) = create(
        &dir,
        &data,
        &[
            "-t",
            "http://127.0.0.1:6969/announce",
            "-t",
            "udp://127.0.0.1:6969",
            "--private",
            "--piece-size",
            "16KiB",
            "--comment",
            "hi",
            "--node",
            "127.0.0.1:6881",
        ],
    );
    assert_eq!(info["info_hash"].as_str().unwrap().len(), 40);
    assert_eq!(info["name"], "payload.bin");
    assert_eq!(info["total_size"], 100_000);
    assert_eq!(info["piece_length"], 16384);
    assert_eq!(info["num_pieces"], 7);
    assert_eq!(info["private"], true);
    assert_eq!(info["comment"], "hi");
    assert_eq!(info["nodes"][0], "127.0.0.1:6881");
    assert_eq!(
        info["trackers"],
        serde_json::json!([["http://127.0.0.1:6969/announce"], ["udp://127.0.0.1:6969"]])
    );
    assert_eq!(info["files"][0]["path"], "payload.bin");
    assert_eq!(info["files"][0]["length"], 100_000);
    assert_eq!(info["files"][0]["pad"], false);
    assert!(info["magnet"]
        .as_str()
        .unwrap()
        .starts_with("magnet:?xt=urn:btih:"));
    // The magnet link round-trips through `shoal info`.
    let m = json_of(&run_shoal(&[
        "info",
        info["magnet"].as_str().unwrap(),
        "--json",
    ]));
    assert_eq!(m["info_hash"], info["info_hash"]);
}

#[test]
fn same_input_same_info_hash() {
    let dir = scratch("deterministic");
    let data = dir.join("tree");
    write_random_file(&data.join("b/2.bin"), 70_000, 2);
    write_random_file(&data.join("a.bin"), 50_000, 3);
    write_random_file(&data.join("b/1.bin"), 10, 4);
    let (_, first) = create(&dir, &data, &["--no-date"]);
    let (_, second) = create(&dir, &data, &["--no-date"]);
    assert_eq!(first["info_hash"], second["info_hash"]);
    let paths: Vec<&str> = first["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["tree/a.bin", "tree/b/1.bin", "tree/b/2.bin"]);
}

#[test]
fn bad_input_gives_one_clear_line_and_nonzero_exit() {
    let dir = scratch("bad_input");
    let garbage = dir.join("garbage.torrent");
    std::fs::write(&garbage, b"d4:infoi5ee").unwrap();
    for args in [
        vec!["info", garbage.to_str().unwrap()],
        vec!["info", "/nonexistent/x.torrent"],
        vec!["info", "magnet:?xt=urn:btih:nothex"],
        vec!["create", "/nonexistent/data"],
        vec!["create", dir.to_str().unwrap(), "--piece-size", "1000"],
    ] {
        let out = run_shoal(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(!err.contains("panicked"));
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn libtorrent_loads_shoal_torrents_and_finds_every_piece_valid() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("lt_interop");
    // A single file with a short last piece, and a folder with nested, empty and tiny files.
    let single = dir.join("single/movie.bin");
    write_random_file(&single, 3 * 32768 + 1234, 10);
    let folder = dir.join("multi/album");
    write_random_file(&folder.join("cd1/track1.flac"), 100_000, 11);
    write_random_file(&folder.join("cd1/track2.flac"), 1, 12);
    write_random_file(&folder.join("cover.jpg"), 40_000, 13);
    std::fs::write(folder.join("empty.txt"), b"").unwrap();
    for (data, piece) in [(&single, "auto"), (&folder, "16KiB"), (&folder, "64KiB")] {
        let (torrent, info) = create(
            &dir,
            data,
            &["--piece-size", piece, "-t", "http://127.0.0.1:1/announce"],
        );
        let save = data.parent().unwrap();
        let lt = libtorrent_check(&torrent, save);
        assert_eq!(
            lt["info_hash"], info["info_hash"],
            "libtorrent computes the same info-hash"
        );
        assert_eq!(lt["total_size"], info["total_size"]);
        assert_eq!(lt["num_pieces"], info["num_pieces"]);
        assert_eq!(
            lt["pieces_valid"], info["num_pieces"],
            "libtorrent's recheck finds every piece valid: {lt}"
        );
    }
    // And a corrupted copy is caught by libtorrent: the check is real.
    let (torrent, info) = create(&dir, &single, &["--piece-size", "32KiB"]);
    let mut bytes = std::fs::read(&single).unwrap();
    bytes[40_000] ^= 0xff;
    std::fs::write(&single, bytes).unwrap();
    let lt = libtorrent_check(&torrent, single.parent().unwrap());
    assert_eq!(
        lt["pieces_valid"].as_u64().unwrap(),
        info["num_pieces"].as_u64().unwrap() - 1
    );
}

/// libtorrent's `create_torrent` of `data` (v2-only or hybrid) as lt_create.py reports it.
fn libtorrent_create(data: &std::path::Path, piece: u32, kind: &str) -> Value {
    let out = std::process::Command::new(SYSTEM_PYTHON)
        .arg(repo_root().join("tests/interop/lt_create.py"))
        .arg(data)
        .arg(piece.to_string())
        .arg(kind)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "lt_create.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("lt_create JSON")
}

#[test]
fn created_torrents_have_libtorrents_info_hashes() {
    if !libtorrent_available() {
        return;
    }
    let dir = scratch("v2_create_interop");
    // A folder with nested, empty, tiny, one-piece and many-piece files; a single file with a
    // short last piece; a single file smaller than one piece; a folder holding one file.
    let folder = dir.join("album");
    write_random_file(&folder.join("cd1/track1.flac"), 300_000, 21);
    write_random_file(&folder.join("cd1/track2.flac"), 1, 22);
    write_random_file(&folder.join("cover.jpg"), 40_000, 23);
    write_random_file(&folder.join("cd10/a.bin"), 65_536, 24);
    write_random_file(&folder.join("cd1.txt"), 16_384, 25);
    std::fs::write(folder.join("empty.txt"), b"").unwrap();
    let single = dir.join("single/movie.bin");
    write_random_file(&single, 5 * 65_536 + 1234, 26);
    let small = dir.join("small/note.txt");
    write_random_file(&small, 20_000, 27);
    let lonely = dir.join("lonely");
    write_random_file(&lonely.join("only.bin"), 100_000, 28);
    // Executable files are marked `x` (BEP 47) by both, in every format.
    write_random_file(&folder.join("cd1/play.sh"), 20_000, 29);
    make_executable(&folder.join("cd1/play.sh"));
    let tool = dir.join("tool/run");
    write_random_file(&tool, 70_000, 30);
    make_executable(&tool);
    let mut checked = 0;
    for (data, piece) in [
        (&folder, 16_384),
        (&folder, 65_536),
        (&folder, 1 << 20),
        (&single, 32_768),
        (&small, 65_536),
        (&lonely, 16_384),
        (&tool, 32_768),
    ] {
        // libtorrent lists a v1 folder's files in the order the folder is read (shoal sorts
        // them, as v2 requires), so v1 info-hashes can only agree for a single file or folder
        // of one.
        let kinds: &[&str] = if data == &folder {
            &["v2", "hybrid"]
        } else {
            &["v1", "v2", "hybrid"]
        };
        for &kind in kinds {
            let size = format!("{piece}");
            let version = if kind == "v1" {
                vec![]
            } else {
                vec![format!("--{kind}")]
            };
            let mut args: Vec<&str> = version.iter().map(String::as_str).collect();
            args.extend(["--piece-size", &size, "--no-date"]);
            let (torrent, info) = create(&dir, data, &args);
            let lt = libtorrent_create(data, piece, kind);
            let what = format!("{} {kind} {piece}", data.display());
            assert_eq!(info["info_hash_v2"], lt["info_hash_v2"], "{what}");
            assert_eq!(info["version"], kind, "{what}");
            if kind == "v1" || kind == "hybrid" {
                assert_eq!(info["info_hash"], lt["info_hash_v1"], "{what}");
            } else {
                let v2 = lt["info_hash_v2"].as_str().unwrap();
                assert_eq!(info["info_hash"].as_str().unwrap(), &v2[..40], "{what}");
            }
            assert_eq!(info["num_pieces"], lt["num_pieces"], "{what}");
            assert_eq!(info["total_size"], lt["total_size"], "{what}");
            assert_eq!(
                info["files"].as_array().unwrap().len() as u64,
                lt["num_files"].as_u64().unwrap(),
                "{what}"
            );
            // And libtorrent's recheck of the data finds every piece of shoal's torrent valid.
            // A v2-only torrent of a folder holding one file loads (in libtorrent and shoal
            // alike) as that single file: its data then sits in the folder itself.
            let name = data.file_name().unwrap().to_str().unwrap();
            let save = if info["name"] == name {
                data.parent().unwrap()
            } else {
                data.as_path()
            };
            let check = libtorrent_check(&torrent, save);
            assert_eq!(check["pieces_valid"], info["num_pieces"], "{what}: {check}");
            checked += 1;
        }
    }
    assert_eq!(checked, 18);
}

#[cfg(unix)]
fn make_executable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[cfg(not(unix))]
fn make_executable(_: &std::path::Path) {}

/// A file marked `x` is downloaded executable; the others are not.
#[cfg(unix)]
#[test]
fn an_executable_file_is_marked_and_downloaded_executable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("executable");
    let data = dir.join("seed/pkg");
    write_random_file(&data.join("bin/tool"), 50_000, 31);
    write_random_file(&data.join("README"), 3_000, 32);
    make_executable(&data.join("bin/tool"));
    let (torrent, info) = create(&dir, &data, &["--no-date"]);
    let executable: Vec<(&str, bool)> = info["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["executable"] == true))
        .collect();
    assert_eq!(executable, [("pkg/README", false), ("pkg/bin/tool", true)]);
    let mut seed = shoal_seed(&torrent, &dir.join("seed"), "127.0.0.2", &[], "seed", &dir);
    let addr = seed.listening_addr();
    let out = dir.join("dl");
    let mut dl = shoal_download(&torrent, &out, "127.0.0.3", &[addr], &[], "dl", &dir);
    assert_eq!(dl.wait_exit(std::time::Duration::from_secs(60)), Some(0));
    let mode = |p: &str| std::fs::metadata(out.join(p)).unwrap().permissions().mode();
    assert!(same_bytes(
        &data.join("bin/tool"),
        &out.join("pkg/bin/tool")
    ));
    assert_ne!(
        mode("pkg/bin/tool") & 0o100,
        0,
        "the tool is not executable"
    );
    assert_eq!(mode("pkg/README") & 0o111, 0, "the README is executable");
}
