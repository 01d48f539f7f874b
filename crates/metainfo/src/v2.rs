//! The BEP 52 parts of a torrent, with libtorrent's loading rules: the `file tree` (walked
//! without recursion, its depth bounded), the pad files a v2 layout implies, the compatibility of
//! a hybrid torrent's two file lists, and the `piece layers` checked against each file's root.

use std::collections::BTreeMap;

use shoal_core::Id32;

use crate::merkle;
use crate::model::FileEntry;
use crate::parse::MAX_TOTAL_SIZE;
use crate::parse::{file_length, parse_attr, symlink_target, MAX_FILES, MAX_PATH_DEPTH};
use crate::sanitize::sanitize_path_element;
use crate::value::Val;
use crate::MetainfoError;

/// One file of a v2 `file tree` with its merkle root, or a pad file the layout implies.
pub(crate) struct V2File {
    pub entry: FileEntry,
    pub root: Option<Id32>,
}

/// The files of a v2 `file tree`, in order, as libtorrent lays them out: each non-empty file is
/// followed by a pad file up to the next piece boundary, the last one included. `multi_file` is
/// whether the info dictionary has a v1 `files` list; without one, a tree of a single file is a
/// single-file torrent whose path is that file's name alone.
pub(crate) fn v2_files(
    tree: &Val,
    name: &str,
    multi_file: bool,
    piece_length: u64,
) -> Result<Vec<V2File>, MetainfoError> {
    let parse_failed = |m: &str| MetainfoError::FileParseFailed(m.to_string());
    let mut out: Vec<V2File> = Vec::new();
    let mut total: u64 = 0;
    // Explicit stack of (directory, its path, next entry); the reader bounds the nesting too.
    let mut stack: Vec<(&Val, Vec<String>, usize)> = vec![(tree, vec![name.to_string()], 0)];
    let mut top = !multi_file;
    while let Some((dir, dir_path, index)) = stack.pop() {
        let entries = dir
            .dict()
            .ok_or_else(|| parse_failed("a 'file tree' node is not a dictionary"))?;
        let Some((key, node)) = entries.get(index) else {
            continue;
        };
        stack.push((dir, dir_path.clone(), index + 1));
        let Some(node_entries) = node.dict() else {
            return Err(parse_failed("a 'file tree' node is not a dictionary"));
        };
        if key.is_empty() {
            return Err(parse_failed("a 'file tree' directory has an empty name"));
        }
        let leaf = node_entries.len() == 1 && node_entries[0].0.is_empty();
        let single_file = leaf && top && entries.len() == 1;
        top = false;
        let element = sanitize_path_element(key, true).unwrap_or_else(|| "_".to_string());
        let path = if single_file {
            vec![element]
        } else {
            let mut p = dir_path;
            p.push(element);
            p
        };
        if !leaf {
            if stack.len() > MAX_PATH_DEPTH {
                return Err(MetainfoError::DirectoryTooDeep(stack.len()));
            }
            if !node_entries.is_empty() {
                stack.push((node, path, 0));
            }
            continue;
        }
        let f = &node_entries[0].1;
        if f.dict().is_none() {
            return Err(parse_failed("a v2 file entry is not a dictionary"));
        }
        let mut attr = parse_attr(f);
        if attr.pad {
            return Err(MetainfoError::InvalidPadFile);
        }
        let length = file_length(f, attr.symlink, true)?;
        let symlink_target = match (attr.symlink, f.get_list(b"symlink path")) {
            (true, Some(list)) => {
                let target = symlink_target(list)?;
                (!target.is_empty()).then(|| {
                    let mut t = vec![name.to_string()];
                    t.extend(target);
                    t
                })
            }
            _ => None,
        };
        attr.symlink = symlink_target.is_some();
        let root = if symlink_target.is_none() && length > 0 {
            let root = f
                .get_bytes(b"pieces root")
                .and_then(Id32::from_slice)
                .filter(|r| !r.is_zero());
            Some(root.ok_or(MetainfoError::MissingPiecesRoot)?)
        } else {
            None
        };
        if MAX_TOTAL_SIZE - total < length {
            return Err(MetainfoError::InvalidLength(format!(
                "the files add up to more than {MAX_TOTAL_SIZE} bytes"
            )));
        }
        out.push(V2File {
            entry: FileEntry {
                path,
                length,
                offset: total,
                attr,
                symlink_target,
            },
            root,
        });
        total += length;
        if !total.is_multiple_of(piece_length) {
            let pad = piece_length - total % piece_length;
            if MAX_TOTAL_SIZE - total < pad {
                return Err(MetainfoError::InvalidLength(format!(
                    "the files add up to more than {MAX_TOTAL_SIZE} bytes"
                )));
            }
            out.push(V2File {
                entry: pad_entry(name, pad, total),
                root: None,
            });
            total += pad;
        }
        if out.len() > MAX_FILES {
            return Err(MetainfoError::Structure(format!(
                "more than {MAX_FILES} files"
            )));
        }
    }
    Ok(out)
}

/// The pad file of `length` bytes at `offset` that a v2 layout implies (named as libtorrent does).
fn pad_entry(name: &str, length: u64, offset: u64) -> FileEntry {
    FileEntry {
        path: vec![name.to_string(), ".pad".to_string(), length.to_string()],
        length,
        offset,
        attr: crate::model::FileAttr {
            pad: true,
            ..Default::default()
        },
        symlink_target: None,
    }
}

/// A hybrid torrent's two file lists must describe the same files in the same places, as
/// libtorrent's `files_compatible` requires: the same number of files (pad files included; a v1
/// list may lack the last pad, as libtorrent 2.0.0-2.0.7 made them, and then the v2 list drops
/// it too), the same total size, and the same path, size and offset for every file that is
/// neither a pad file nor empty.
pub(crate) fn check_hybrid(v1: &[FileEntry], v2: &mut Vec<V2File>) -> Result<(), MetainfoError> {
    if v2.len() == v1.len() + 1 {
        remove_tail_padding(v2);
    }
    let bad = |m: String| MetainfoError::InconsistentHybrid(m);
    if v1.len() != v2.len() {
        return Err(bad(format!(
            "{} v1 files but {} v2 files (pad files included)",
            v1.len(),
            v2.len()
        )));
    }
    let v1_total: u64 = v1.iter().map(|f| f.length).sum();
    let v2_total: u64 = v2.iter().map(|f| f.entry.length).sum();
    if v1_total != v2_total {
        return Err(bad(format!(
            "{v1_total} bytes in v1 but {v2_total} bytes in v2"
        )));
    }
    for (a, b) in v1.iter().zip(v2.iter().map(|f| &f.entry)) {
        let a_relevant = !a.attr.pad && a.length > 0;
        let b_relevant = !b.attr.pad && b.length > 0;
        if a_relevant != b_relevant {
            return Err(bad(format!(
                "{} and {} differ in being a pad file or empty",
                a.display_path(),
                b.display_path()
            )));
        }
        if !a_relevant {
            continue;
        }
        if a.path != b.path || a.length != b.length || a.offset != b.offset {
            return Err(bad(format!(
                "v1 has {} ({} bytes at {}), v2 has {} ({} bytes at {})",
                a.display_path(),
                a.length,
                a.offset,
                b.display_path(),
                b.length,
                b.offset
            )));
        }
        if b.attr.symlink && a.symlink_target != b.symlink_target {
            return Err(bad(format!(
                "{} differs in symlink target",
                b.display_path()
            )));
        }
    }
    Ok(())
}

/// Drops the pad file after the last non-empty file, if there is one, and moves the empty files
/// after it back.
fn remove_tail_padding(v2: &mut Vec<V2File>) {
    let Some(last) = v2.iter().rposition(|f| f.entry.length > 0) else {
        return;
    };
    if !v2[last].entry.attr.pad {
        return;
    }
    let removed = v2.remove(last);
    for f in &mut v2[last..] {
        f.entry.offset = removed.entry.offset;
    }
}

/// Validates `piece layers` (BEP 52) as libtorrent does: every key is the root of a file of more
/// than one piece (each such file at most once), and every value is that file's piece layer, one
/// hash per piece, hashing up to the root. Files without a layer are allowed.
pub(crate) fn piece_layers(
    layers: &Val,
    files: &[FileEntry],
    roots: &[Option<Id32>],
    piece_length: u64,
) -> Result<BTreeMap<Id32, Vec<Id32>>, MetainfoError> {
    let bad = |m: String| MetainfoError::InvalidPieceLayer(m);
    let Some(entries) = layers.dict() else {
        return Ok(BTreeMap::new());
    };
    // Roots of the files that need a layer; the first file with a root wins, as in libtorrent.
    let mut wanted: BTreeMap<Id32, u64> = BTreeMap::new();
    for (f, root) in files.iter().zip(roots) {
        if let Some(root) = root {
            if merkle::has_piece_layer(f.length, piece_length) {
                wanted.entry(*root).or_insert(f.length);
            }
        }
    }
    let mut out = BTreeMap::new();
    for (key, value) in entries {
        let (Some(root), Some(layer)) = (Id32::from_slice(key), value.bytes()) else {
            return Err(bad(
                "a key is not a 32-byte root or a value not a string".into()
            ));
        };
        if layer.len() % 32 != 0 {
            return Err(bad(format!(
                "the layer of {root} is {} bytes, not a multiple of 32",
                layer.len()
            )));
        }
        let Some(length) = wanted.remove(&root) else {
            return Err(bad(format!(
                "{root} is not the root of a file of more than one piece (or is repeated)"
            )));
        };
        let hashes: Vec<Id32> = layer
            .chunks_exact(32)
            .filter_map(Id32::from_slice)
            .collect();
        let expected = merkle::file_num_pieces(length, piece_length);
        if hashes.len() as u64 != expected {
            return Err(bad(format!(
                "the layer of {root} has {} hashes, the file has {expected} pieces",
                hashes.len()
            )));
        }
        if !merkle::piece_layer_matches(&hashes, length, piece_length, &root) {
            return Err(bad(format!("the layer of {root} does not hash to it")));
        }
        out.insert(root, hashes);
    }
    Ok(out)
}
