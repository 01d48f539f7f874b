//! Every .torrent in the conformance set (libtorrent's and webtorrent's test torrents, with what
//! libtorrent 2.0.8 reports of each) must load or be refused as libtorrent says.

use std::path::PathBuf;

use shoal_metainfo::{Metainfo, MetainfoError};

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
        rows += 1;
        let result = Metainfo::from_file(&data_dir().join(file));
        let verdict: Result<(), String> = match (expect, &result) {
            // Crafted rows also pin the reason: shoal's message starts with libtorrent's.
            ("error", Err(e)) if file.starts_with("crafted/") => match quoted_error(note) {
                Some(want) if e.to_string().starts_with(want) => Ok(()),
                Some(want) => Err(format!("refused with {e:?}, not {want:?}")),
                None => Err(format!("no libtorrent message quoted in the note ({e})")),
            },
            ("error", Err(_)) => Ok(()),
            ("error", Ok(m)) => Err(format!(
                "loaded, expected an error ({note}); got {:?}",
                m.info_hash
            )),
            // v2-only torrents may be refused as unsupported, with an error that says so.
            ("ok", Err(MetainfoError::V2Only)) if hash.is_empty() => Ok(()),
            ("ok", Err(e)) => Err(format!("refused: {e}")),
            ("ok", Ok(m)) => {
                let mut problems = Vec::new();
                let i = &m.info;
                if m.info_hash.to_hex() != hash {
                    problems.push(format!("info-hash {} != {hash}", m.info_hash));
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
