//! Every .torrent in the conformance set (libtorrent's and webtorrent's test torrents, with what
//! libtorrent 2.0.8 reports of each) must load or be refused as libtorrent says, v2 and hybrid
//! torrents (BEP 52) included, with both info-hashes.

use std::path::PathBuf;

use shoal_metainfo::{merkle, Metainfo, MetainfoError, Version};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/conformance/metainfo")
}

fn unescape(s: &str) -> String {
    s.replace("\\t", "\t")
        .replace("\\n", "\n")
        .replace("\\\\", "\\")
}

/// `file_path(N)=a/b` claims from the note column.
fn file_path_claims(note: &str) -> Vec<(usize, String)> {
    note.split(';')
        .filter_map(|part| {
            let part = part.trim();
            let rest = part.strip_prefix("file_path(")?;
            let (index, path) = rest.split_once(")=")?;
            // "a/b, renamed to a/b.1": the final path is the renamed one.
            let path = match path.split_once(", renamed to ") {
                Some((_, renamed)) => renamed,
                None => path.split(',').next()?,
            }
            .trim();
            Some((index.parse().ok()?, path.to_string()))
        })
        .collect()
}

/// `name=` from the note column: libtorrent's name where it differs from 2.0.8's `lt_name`.
fn name_claim(note: &str) -> Option<String> {
    note.split("; ")
        .find_map(|part| part.strip_prefix("name="))
        .map(unescape)
}

/// `flags(N)=plxh` claims from the note column (pad, symlink, executable, hidden).
fn flag_claims(note: &str) -> Vec<(usize, String)> {
    note.split("; ")
        .filter_map(|part| {
            let (index, flags) = part.strip_prefix("flags(")?.split_once(")=")?;
            Some((index.parse().ok()?, flags.to_string()))
        })
        .collect()
}

fn flags_of(f: &shoal_metainfo::FileEntry) -> String {
    [
        (f.attr.pad, 'p'),
        (f.attr.symlink, 'l'),
        (f.attr.executable, 'x'),
        (f.attr.hidden, 'h'),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, c)| *c)
    .collect()
}

/// `root(N)=hex` (a v2 file's pieces root) and `symlink(N)=a/b` claims from the note column.
fn indexed_claims<'a>(note: &'a str, what: &str) -> Vec<(usize, &'a str)> {
    note.split("; ")
        .filter_map(|part| {
            let (index, value) = part
                .strip_prefix(what)?
                .strip_prefix('(')?
                .split_once(")=")?;
            Some((index.parse().ok()?, value))
        })
        .collect()
}

/// The libtorrent message an error row's note quotes (`errors::x: "message"`).
fn quoted_error(note: &str) -> Option<&str> {
    let rest = &note[note.find("errors::")?..];
    let start = rest.find(": \"")? + 3;
    let len = rest[start..].find('"')?;
    Some(&rest[start..start + len])
}

#[test]
fn conformance_manifest_agrees_with_libtorrent() {
    let manifest = std::fs::read_to_string(data_dir().join("manifest.tsv")).unwrap();
    let mut rows = 0;
    let mut agree = 0;
    let mut failures = Vec::new();
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [file, expect, note, hash, num_files, total, piece_len, num_pieces, name, ..] =
            cols[..]
        else {
            panic!("bad manifest line {line:?}");
        };
        let hash_v2 = cols.get(10).copied().unwrap_or_default();
        rows += 1;
        let result = Metainfo::from_file(&data_dir().join(file));
        let verdict: Result<(), String> = match (expect, &result) {
            // Crafted and BEP 52 rows also pin the reason: shoal's message starts with
            // libtorrent's.
            ("error", Err(e)) if file.starts_with("crafted/") || note.starts_with("BEP52") => {
                match quoted_error(note) {
                    Some(want) if e.to_string().starts_with(want) => Ok(()),
                    // Bencoding errors carry libtorrent's `bdecode` message inside.
                    Some(want) if matches!(e, MetainfoError::Bencode(b) if b.to_string().starts_with(want)) => {
                        Ok(())
                    }
                    Some(want) => Err(format!("refused with {e:?}, not {want:?}")),
                    None => Err(format!("no libtorrent message quoted in the note ({e})")),
                }
            }
            ("error", Err(_)) => Ok(()),
            ("error", Ok(m)) => Err(format!(
                "loaded, expected an error ({note}); got {:?}",
                m.info_hash
            )),
            ("ok", Err(e)) => Err(format!("refused: {e}")),
            ("ok", Ok(m)) => {
                let mut problems = Vec::new();
                let i = &m.info;
                let v1 = m.info_hash_v1().map(|h| h.to_hex()).unwrap_or_default();
                if v1 != hash {
                    problems.push(format!("v1 info-hash {v1:?} != {hash:?}"));
                }
                let v2 = m.info_hash_v2.map(|h| h.to_hex()).unwrap_or_default();
                if v2 != hash_v2 {
                    problems.push(format!("v2 info-hash {v2:?} != {hash_v2:?}"));
                }
                let version = match (hash.is_empty(), hash_v2.is_empty()) {
                    (false, true) => Version::V1,
                    (true, false) => Version::V2,
                    _ => Version::Hybrid,
                };
                if m.version() != version {
                    problems.push(format!("version {} != {version}", m.version()));
                }
                for (index, want) in indexed_claims(note, "root") {
                    let got = m.info.pieces_root(index).map(|r| r.to_hex());
                    if got.as_deref() != Some(want) {
                        problems.push(format!("root({index}) {got:?} != {want:?}"));
                    }
                }
                // Only the BEP 52 rows: v1 symlink targets are not yet resolved relative to the
                // link's folder as libtorrent's `sanitize_symlinks` does (symlink2.torrent).
                let v2_row = note.starts_with("BEP52");
                for (index, want) in indexed_claims(note, "symlink")
                    .into_iter()
                    .filter(|_| v2_row)
                {
                    let got = m
                        .info
                        .files
                        .get(index)
                        .and_then(|f| f.symlink_target.clone());
                    if got.as_ref().map(|t| t.join("/")).as_deref() != Some(want) {
                        problems.push(format!("symlink({index}) {got:?} != {want:?}"));
                    }
                }
                if i.total_length.to_string() != total {
                    problems.push(format!("total {} != {total}", i.total_length));
                }
                if i.piece_length.to_string() != piece_len {
                    problems.push(format!("piece length {} != {piece_len}", i.piece_length));
                }
                if i.num_pieces().to_string() != num_pieces {
                    problems.push(format!("pieces {} != {num_pieces}", i.num_pieces()));
                }
                if i.files.len().to_string() != num_files {
                    problems.push(format!("files {} != {num_files}", i.files.len()));
                }
                let want_name = name_claim(note).unwrap_or_else(|| unescape(name));
                if i.name != want_name {
                    problems.push(format!("name {:?} != {want_name:?}", i.name));
                }
                for (index, want) in flag_claims(note) {
                    let got = i.files.get(index).map(flags_of);
                    if got.as_deref() != Some(want.as_str()) {
                        problems.push(format!("flags({index}) {got:?} != {want:?}"));
                    }
                }
                for (index, want) in file_path_claims(note) {
                    let got = i.files.get(index).map(|f| f.display_path());
                    if got.as_deref() != Some(want.as_str()) {
                        problems.push(format!("file_path({index}) {got:?} != {want:?}"));
                    }
                }
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(problems.join("; "))
                }
            }
            _ => Err(format!("unknown expectation {expect:?}")),
        };
        match verdict {
            Ok(()) => agree += 1,
            Err(why) => failures.push(format!("{file}: {why}")),
        }
    }
    println!("metainfo conformance: {agree}/{rows} files agree with libtorrent");
    assert!(rows > 50, "manifest has only {rows} rows");
    assert!(
        failures.is_empty(),
        "disagreements:\n{}",
        failures.join("\n")
    );
}

#[test]
fn refusals_give_precise_errors() {
    let load = |f: &str| Metainfo::from_file(&data_dir().join("libtorrent").join(f)).unwrap_err();
    assert!(matches!(
        load("no_name.torrent"),
        MetainfoError::MissingName
    ));
    assert!(matches!(load("no_files.torrent"), MetainfoError::NoFiles));
    assert!(matches!(
        load("negative_size.torrent"),
        MetainfoError::InvalidLength(_)
    ));
    assert!(matches!(
        load("missing_piece_len.torrent"),
        MetainfoError::PieceLength(_)
    ));
    assert!(matches!(
        load("many_pieces.torrent"),
        MetainfoError::TooManyPieces(_)
    ));
    assert!(matches!(
        load("invalid_info.torrent"),
        MetainfoError::MissingInfo
    ));
    assert!(load("v2_deep_recursion.torrent")
        .to_string()
        .contains("depth"));
    assert!(matches!(
        load("v2_piece_size.torrent"),
        MetainfoError::PieceLength(_)
    ));
    let missing = Metainfo::from_file(&data_dir().join("does-not-exist.torrent")).unwrap_err();
    assert!(missing.to_string().contains("does-not-exist.torrent"));
}

#[test]
fn libtorrent_size_limits() {
    // libtorrent's load_torrent_limits::max_buffer_size: 10,000,000 bytes.
    let mut big = b"d4:info".to_vec();
    big.resize(10_000_001, b' ');
    assert!(matches!(
        Metainfo::from_bytes(&big),
        Err(MetainfoError::TooLarge { .. })
    ));
    // max_decode_tokens: 3,000,000 values; far fewer bytes than the size limit.
    let mut many = b"d4:infod4:name1:a6:lengthi5e12:piece lengthi16384e6:pieces20:".to_vec();
    many.extend([0x11; 20]);
    many.extend(b"e3:padl");
    many.extend(b"le".repeat(1_500_000));
    many.extend(b"ee");
    let err = Metainfo::from_bytes(&many).unwrap_err();
    assert!(err.to_string().contains("tokens"), "{err}");
    many.truncate(many.len() - 2 - 2 * 1_000);
    many.extend(b"ee");
    assert!(Metainfo::from_bytes(&many).is_ok());
}

#[test]
fn v2_torrents_model_their_files_and_piece_layers() {
    let load = |f: &str| Metainfo::from_file(&data_dir().join("libtorrent").join(f)).unwrap();

    // A v2-only torrent is known to the swarm by its truncated SHA-256.
    let m = load("v2_multiple_files.torrent");
    assert_eq!(m.version(), Version::V2);
    assert!(m.info.pieces.is_empty() && m.info_hash_v1().is_none());
    let v2 = m.info_hash_v2.unwrap();
    assert_eq!(m.info_hash, v2.truncated());
    // Three files of about 1000 pieces, each followed by its pad; every one has its layer,
    // and each layer hashes up to the file's root.
    let real: Vec<usize> = (0..m.info.files.len())
        .filter(|&i| !m.info.files[i].is_pad())
        .collect();
    assert_eq!(real.len(), 3);
    assert_eq!(m.piece_layers.len(), 3);
    for i in real {
        let f = &m.info.files[i];
        assert_eq!(
            f.offset % u64::from(m.info.piece_length),
            0,
            "files are piece-aligned"
        );
        let layer = m.piece_layer(i).expect("a piece layer");
        assert_eq!(layer.len() as u64, f.length.div_ceil(1 << 20));
        let root = merkle::root_from_piece_layer(layer, u64::from(m.info.piece_length));
        assert_eq!(Some(&root), m.info.pieces_root(i));
    }
    assert!(m
        .info
        .files
        .iter()
        .filter(|f| f.is_pad())
        .all(|f| f.path[1] == ".pad"));

    // Layers may be missing: such files get their hashes from peers later.
    let m = load("v2_incomplete_piece_layer.torrent");
    assert_eq!(m.version(), Version::V2);
    let with_layer = (0..m.info.files.len())
        .filter(|&i| m.piece_layer(i).is_some())
        .count();
    assert!(with_layer < 3, "{with_layer}");
    let m = load("v2_no_piece_layers.torrent");
    assert!(m.piece_layers.is_empty() && m.piece_layer(0).is_none());
    assert!(m.info.pieces_root(0).is_some());

    // A hybrid keeps its SHA-1 pieces and its v1 info-hash for the swarm.
    let m = load("v2_hybrid.torrent");
    assert_eq!(m.version(), Version::Hybrid);
    assert_eq!(m.info_hash_v1(), Some(m.info_hash));
    assert_eq!(m.info.pieces.len() as u32, m.info.num_pieces());
    assert!(m.info_hash_v2.is_some());

    // A single-file v2 torrent: one file, no pad, named by its key in the tree.
    let m = load("v2_multipiece_file.torrent");
    assert!(!m.info.multi_file);
    assert_eq!(m.info.files.len(), 1);
    assert_eq!(m.info.files[0].path, ["test1MB"]);
    assert_eq!(m.piece_layer(0).map(<[_]>::len), Some(16));
}

#[test]
fn v2_and_hybrid_torrents_make_btmh_magnets() {
    let load = |f: &str| Metainfo::from_file(&data_dir().join("libtorrent").join(f)).unwrap();
    let hybrid = load("v2_hybrid.torrent");
    let link = hybrid.magnet().to_string();
    assert!(link.starts_with(&format!(
        "magnet:?xt=urn:btih:514c76c1f27ec61ca8b37851bcd1cbf0b26cf120&xt=urn:btmh:1220{}",
        "518fbaf39b37020c896e8768a967da6d76bbd5ef7a02c761021b65a72c6cfa11"
    )));
    let back = shoal_metainfo::Magnet::parse(&link).unwrap();
    assert_eq!(back.info_hash, hybrid.info_hash);
    assert_eq!(back.info_hash_v2, hybrid.info_hash_v2);

    let v2 = load("v2_no_piece_layers.torrent");
    let link = v2.magnet().to_string();
    assert!(link.starts_with(
        "magnet:?xt=urn:btmh:122095e04d0c4bad94ab206efa884666fd89777dbe4f7bd9945af1829037a85c6192&"
    ));
    let back = shoal_metainfo::Magnet::parse(&link).unwrap();
    assert!(back.is_v2_only());
    assert_eq!(back.info_hash, v2.info_hash);
}

#[test]
fn v2_refusals_give_precise_errors() {
    let load = |f: &str| Metainfo::from_file(&data_dir().join("libtorrent").join(f)).unwrap_err();
    for f in [
        "v2_invalid_piece_layer.torrent",
        "v2_invalid_piece_layer_root.torrent",
        "v2_unknown_piece_layer_entry.torrent",
        "v2_piece_layer_invalid_file_hash.torrent",
    ] {
        assert!(
            matches!(load(f), MetainfoError::InvalidPieceLayer(_)),
            "{f}"
        );
    }
    assert!(matches!(
        load("v2_zero_root.torrent"),
        MetainfoError::MissingPiecesRoot
    ));
    assert!(matches!(
        load("v2_invalid_pad_file.torrent"),
        MetainfoError::InvalidPadFile
    ));
    assert!(matches!(
        load("v2_bad_file_alignment.torrent"),
        MetainfoError::InconsistentHybrid(_)
    ));
    assert!(matches!(
        load("v2_no_power2_piece.torrent"),
        MetainfoError::PieceLength(_)
    ));
    assert!(matches!(
        load("v2_unordered_files.torrent"),
        MetainfoError::NonCanonicalV2
    ));
}
