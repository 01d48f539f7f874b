//! Parsing and validating .torrent files, with libtorrent's loading rules.
//!
//! The bytes are read by the lenient, bounded [`crate::value`] reader (libtorrent's `bdecode`
//! tolerances and limits), then validated into a [`Metainfo`] following libtorrent's
//! `torrent_info::parse_info_section` rule by rule: limits on piece length, piece count, file
//! sizes and path depth; name and path sanitising; duplicate file names; and, for hybrid (v1 + v2)
//! torrents, that both file lists describe the same files.

use std::path::Path;

use sha1::{Digest, Sha1};
use shoal_core::Id20;

use crate::bencode;
use crate::model::{FileAttr, FileEntry, Info, Metainfo};
use crate::sanitize::{lossy_utf8, make_unique, sanitize_element, sanitize_path_element};
use crate::value::{self, Val};
use crate::MetainfoError;

/// Largest .torrent file read (libtorrent's `load_torrent_limits::max_buffer_size`).
pub const MAX_TORRENT_FILE_SIZE: u64 = 10_000_000;
/// Most pieces accepted (libtorrent's `load_torrent_limits::max_pieces`).
pub const MAX_PIECES: u64 = 0x20_0000;
/// Largest piece length accepted (libtorrent's `file_storage::max_piece_size`: 32767 blocks).
pub const MAX_PIECE_LENGTH: i64 = 32767 * 16384;
/// Largest file (libtorrent's `file_storage::max_file_size`: a merkle tree indexed by `int`).
pub const MAX_FILE_SIZE: i64 = (i32::MAX as i64 / 2) * 16384;
/// Largest total size (libtorrent's `file_storage::max_file_offset`).
pub const MAX_TOTAL_SIZE: u64 = (1 << 48) - 1;
/// Most elements in a file path or symlink target (libtorrent's `max_directory_depth`).
pub const MAX_PATH_DEPTH: usize = 100;
/// Most files accepted in one torrent (a backstop: the token limit is reached first).
pub const MAX_FILES: usize = 1 << 20;

const BLOCK: i64 = 16384;

impl Metainfo {
    /// Reads and parses a .torrent file.
    pub fn from_file(path: &Path) -> Result<Metainfo, MetainfoError> {
        let io = |source| MetainfoError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.is_dir() {
            return Err(io(std::io::Error::other(
                "it is a folder, not a .torrent file",
            )));
        }
        if meta.len() > MAX_TORRENT_FILE_SIZE {
            return Err(MetainfoError::TooLarge {
                size: meta.len(),
                limit: MAX_TORRENT_FILE_SIZE,
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Metainfo::from_bytes(&bytes)
    }

    /// Parses and validates the bytes of a .torrent file. Bytes after the top-level dictionary
    /// are ignored, as libtorrent ignores them.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        if bytes.len() as u64 > MAX_TORRENT_FILE_SIZE {
            return Err(MetainfoError::TooLarge {
                size: bytes.len() as u64,
                limit: MAX_TORRENT_FILE_SIZE,
            });
        }
        let top = value::decode(bytes)?.value;
        if top.dict().is_none() {
            return Err(MetainfoError::NotADictionary);
        }
        let info = top.get_dict(b"info").ok_or(MetainfoError::MissingInfo)?;
        let info_bytes = &bytes[info.span.clone()];
        let parsed = parse_info(info_bytes)?;
        Ok(Metainfo {
            info_hash: info_hash_of(info_bytes),
            info: parsed,
            info_bytes: info_bytes.to_vec(),
            trackers: trackers(&top),
            nodes: nodes(&top),
            url_list: url_list(&top),
            // libtorrent keeps only a non-negative date.
            creation_date: top.get_int(b"creation date").filter(|d| *d >= 0),
            comment: text(&top, b"comment.utf-8").or_else(|| text(&top, b"comment")),
            created_by: text(&top, b"created by.utf-8").or_else(|| text(&top, b"created by")),
        })
    }

    /// Builds a metainfo from a bare info dictionary (as received by BEP 9 metadata exchange),
    /// with trackers taken from elsewhere (a magnet link). Nothing may follow the dictionary.
    pub fn from_info_bytes(
        info_bytes: &[u8],
        trackers: Vec<Vec<String>>,
    ) -> Result<Metainfo, MetainfoError> {
        let decoded = value::decode(info_bytes)?;
        if decoded.value.span.end != info_bytes.len() {
            return Err(bencode::BencodeError::TrailingData(decoded.value.span.end).into());
        }
        if decoded.value.dict().is_none() {
            return Err(MetainfoError::MissingInfo);
        }
        Ok(Metainfo {
            info_hash: info_hash_of(info_bytes),
            info: parse_info(info_bytes)?,
            info_bytes: info_bytes.to_vec(),
            trackers,
            nodes: Vec::new(),
            url_list: Vec::new(),
            creation_date: None,
            comment: None,
            created_by: None,
        })
    }
}

/// SHA-1 of the info dictionary's bytes.
pub fn info_hash_of(info_bytes: &[u8]) -> Id20 {
    Id20(Sha1::digest(info_bytes).into())
}

/// A non-empty string value as text (libtorrent treats an empty one as absent).
fn text(d: &Val, key: &[u8]) -> Option<String> {
    d.get_bytes(key).filter(|b| !b.is_empty()).map(lossy_utf8)
}

/// Announce tiers: `announce-list` (BEP 12) if it has any URL, else `announce`. URLs are trimmed,
/// empty ones and empty tiers dropped, duplicates removed.
fn trackers(top: &Val) -> Vec<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut tiers = Vec::new();
    for tier in top.get_list(b"announce-list").unwrap_or_default() {
        let urls: Vec<String> = tier
            .list()
            .unwrap_or_default()
            .iter()
            .filter_map(Val::bytes)
            .map(|b| lossy_utf8(b).trim().to_string())
            .filter(|u| !u.is_empty() && seen.insert(u.clone()))
            .collect();
        if !urls.is_empty() {
            tiers.push(urls);
        }
    }
    if tiers.is_empty() {
        if let Some(url) = top.get_bytes(b"announce") {
            let url = lossy_utf8(url).trim().to_string();
            if !url.is_empty() {
                tiers.push(vec![url]);
            }
        }
    }
    tiers
}

/// `nodes`: a list of `[host, port]` pairs (BEP 5).
fn nodes(top: &Val) -> Vec<(String, u16)> {
    top.get_list(b"nodes")
        .unwrap_or_default()
        .iter()
        .filter_map(|pair| {
            let pair = pair.list()?;
            let host = lossy_utf8(pair.first()?.bytes()?);
            let port = u16::try_from(pair.get(1)?.int()?).ok()?;
            (!host.is_empty()).then_some((host, port))
        })
        .collect()
}

/// `url-list`: one URL or a list of them (BEP 19).
fn url_list(top: &Val) -> Vec<String> {
    let urls: Vec<String> = match top.get(b"url-list").map(|v| &v.kind) {
        Some(value::Kind::Bytes(b)) => vec![lossy_utf8(b)],
        Some(value::Kind::List(l)) => l.iter().filter_map(Val::bytes).map(lossy_utf8).collect(),
        _ => Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    urls.into_iter()
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty() && seen.insert(u.clone()))
        .collect()
}

fn parse_attr(d: &Val) -> FileAttr {
    let bytes = d.get_bytes(b"attr").unwrap_or_default();
    FileAttr {
        pad: bytes.contains(&b'p'),
        executable: bytes.contains(&b'x'),
        hidden: bytes.contains(&b'h'),
        symlink: bytes.contains(&b'l'),
    }
}

/// A file's `length` (0 for a symlink, whatever it says), within libtorrent's limits.
fn file_length(d: &Val, symlink: bool, v2: bool) -> Result<u64, MetainfoError> {
    if symlink {
        return Ok(0);
    }
    let n = match d.get(b"length").map(|v| &v.kind) {
        Some(value::Kind::Int(n)) => *n,
        Some(_) => {
            return Err(MetainfoError::InvalidLength(
                "file length is not an integer".into(),
            ))
        }
        None => return Err(MetainfoError::InvalidLength("file has no length".into())),
    };
    // v2 files are bounded by the number of pieces a merkle tree can index, v1 files by half of
    // that; both by the largest file.
    let block_limit = if v2 {
        (1i64 << 30) - 1
    } else {
        i32::MAX as i64 / 2
    };
    if n < 0 {
        return Err(MetainfoError::InvalidLength(format!(
            "file length {n} is negative"
        )));
    }
    if n / BLOCK >= block_limit || n > MAX_FILE_SIZE {
        return Err(MetainfoError::InvalidLength(format!(
            "file length {n} is larger than the limit of {MAX_FILE_SIZE}"
        )));
    }
    Ok(n as u64)
}

/// A path list: at most [`MAX_PATH_DEPTH`] elements, every one a string.
fn path_elements<'a>(list: &[Val<'a>], what: &'static str) -> Result<Vec<&'a [u8]>, MetainfoError> {
    if list.len() > MAX_PATH_DEPTH {
        return Err(MetainfoError::DirectoryTooDeep(list.len()));
    }
    list.iter()
        .map(|e| {
            e.bytes().ok_or_else(|| MetainfoError::InvalidPath {
                what,
                detail: "an element is not a string".into(),
            })
        })
        .collect()
}

/// A symlink target: `.` and `..` are dropped, every other element gives one.
fn symlink_target(list: &[Val]) -> Result<Vec<String>, MetainfoError> {
    Ok(path_elements(list, "symlink path")?
        .into_iter()
        .filter(|e| *e != b"." && *e != b"..")
        .filter_map(|e| sanitize_path_element(e, true))
        .collect())
}

/// The file list as built so far, with libtorrent's bound on the total size.
#[derive(Default)]
struct Files {
    list: Vec<FileEntry>,
    total: u64,
}

impl Files {
    fn add(&mut self, mut f: FileEntry) -> Result<(), MetainfoError> {
        if MAX_TOTAL_SIZE - self.total < f.length {
            return Err(MetainfoError::InvalidLength(format!(
                "the files add up to more than {MAX_TOTAL_SIZE} bytes"
            )));
        }
        f.offset = self.total;
        self.total += f.length;
        self.list.push(f);
        Ok(())
    }
}

/// Parses and validates an info dictionary.
pub(crate) fn parse_info(info_bytes: &[u8]) -> Result<Info, MetainfoError> {
    let decoded = value::decode(info_bytes)?;
    let info = &decoded.value;
    if info.dict().is_none() {
        return Err(MetainfoError::MissingInfo);
    }

    let version = info.get_int(b"meta version").unwrap_or(-1);
    if version > 0 && decoded.soft_error {
        return Err(MetainfoError::NonCanonicalV2);
    }
    if version > 2 {
        return Err(MetainfoError::UnknownMetaVersion(version));
    }
    let is_v2 = version >= 2;

    let piece_length = match info.get(b"piece length").map(|v| &v.kind) {
        Some(value::Kind::Int(n)) if *n > 0 && *n <= MAX_PIECE_LENGTH => *n,
        Some(value::Kind::Int(n)) => {
            return Err(MetainfoError::PieceLength(format!(
                ": {n} is not between 1 and {MAX_PIECE_LENGTH}"
            )))
        }
        _ => return Err(MetainfoError::PieceLength(String::new())),
    };
    // BEP 52: a power of two, at least 16 KiB.
    if is_v2 && (piece_length < BLOCK || piece_length & (piece_length - 1) != 0) {
        return Err(MetainfoError::PieceLength(format!(
            ": {piece_length} is not a power of two of at least 16 KiB, as a v2 torrent needs"
        )));
    }
    let piece_length = piece_length as u64;

    let name_raw = info
        .get_bytes(b"name.utf-8")
        .or_else(|| info.get_bytes(b"name"))
        .ok_or(MetainfoError::MissingName)?;
    // A name that sanitises to nothing ("..", "/") names a multi-file torrent's folder by the
    // info-hash; a single-file torrent cannot do without it.
    let name = sanitize_element(name_raw);

    let file_tree = info.get_dict(b"file tree");
    if is_v2 && file_tree.is_none() {
        return Err(MetainfoError::MissingFileTree);
    }
    if !is_v2 && file_tree.is_some() {
        return Err(MetainfoError::MissingMetaVersion);
    }
    if is_v2 && info.get(b"pieces").is_none() {
        return Err(MetainfoError::V2Only);
    }

    let files_list = info.get_list(b"files");
    let multi_file = files_list.is_some();
    let mut files = Files::default();
    let name = match files_list {
        Some(list) => {
            let name = name.unwrap_or_else(|| info_hash_of(info_bytes).to_hex());
            if list.is_empty() {
                return Err(MetainfoError::NoFiles);
            }
            if list.len() > MAX_FILES {
                return Err(MetainfoError::Structure(format!(
                    "{} files, more than the limit of {MAX_FILES}",
                    list.len()
                )));
            }
            for f in list {
                files.add(v1_file(f, &name)?)?;
            }
            name
        }
        None => {
            if name_raw.is_empty() {
                return Err(MetainfoError::MissingName);
            }
            let name = name.ok_or(MetainfoError::MissingName)?;
            let mut attr = parse_attr(info);
            // A symlink has no data, so a single-file symlink is refused below as empty.
            let length = file_length(info, attr.symlink, false)?;
            attr.symlink = false;
            files.add(FileEntry {
                path: vec![name.clone()],
                length,
                offset: 0,
                attr,
                symlink_target: None,
            })?;
            name
        }
    };

    if let Some(tree) = file_tree {
        check_hybrid(&files.list, tree, &name, multi_file, piece_length)?;
    }

    let total = files.total;
    if total / piece_length > (1 << 30) - 1 {
        return Err(MetainfoError::TooManyPieces(total / piece_length));
    }
    let expected = total.div_ceil(piece_length);
    if expected > MAX_PIECES {
        return Err(MetainfoError::TooManyPieces(expected));
    }
    let pieces_raw = info
        .get_bytes(b"pieces")
        .ok_or(MetainfoError::MissingPieces)?;
    if pieces_raw.len() % 20 != 0 {
        return Err(MetainfoError::PiecesNotMultipleOf20(pieces_raw.len()));
    }
    if (pieces_raw.len() / 20) as u64 != expected {
        return Err(MetainfoError::PieceCountMismatch {
            found: pieces_raw.len() / 20,
            expected,
            total,
            piece_length,
        });
    }
    if total == 0 {
        return Err(MetainfoError::InvalidLength(
            "the torrent has no data".into(),
        ));
    }
    let pieces = pieces_raw
        .chunks_exact(20)
        .filter_map(Id20::from_slice)
        .collect();

    let mut files = files.list;
    let names: Vec<(Vec<String>, Option<u64>)> = files
        .iter()
        .map(|f| (f.path.clone(), f.attr.pad.then_some(f.length)))
        .collect();
    for (i, path) in make_unique(&names)? {
        files[i].path = path;
    }

    Ok(Info {
        name,
        piece_length: piece_length as u32,
        pieces,
        files,
        total_length: total,
        private: info.get_int(b"private").is_some_and(|p| p != 0),
        multi_file,
    })
}

/// One entry of a v1 `files` list.
fn v1_file(f: &Val, name: &str) -> Result<FileEntry, MetainfoError> {
    if f.dict().is_none() {
        return Err(MetainfoError::FileParseFailed(
            "a file entry is not a dictionary".into(),
        ));
    }
    let mut attr = parse_attr(f);
    let length = file_length(f, attr.symlink, false)?;
    // `path.utf-8` is preferred when it is a list; an empty list counts as none.
    let elements = f
        .get_list(b"path.utf-8")
        .or_else(|| f.get_list(b"path"))
        .filter(|l| !l.is_empty());
    let path = match elements {
        Some(list) => {
            let mut path = vec![name.to_string()];
            path.extend(
                path_elements(list, "path")?
                    .into_iter()
                    .filter_map(|e| sanitize_path_element(e, true)),
            );
            path
        }
        // BEP 47 pad files may omit the path; name them as libtorrent does. They are never
        // written, so the path is only a label.
        None if attr.pad => vec![".pad".to_string(), length.to_string()],
        None => return Err(MetainfoError::MissingName),
    };
    // BitComet's pad files carry no attribute, only this name.
    if path.join("/").contains("_____padding_file_") {
        attr.pad = true;
    }
    let symlink_target = if attr.symlink {
        match f.get_list(b"symlink path") {
            Some(list) => {
                let target = symlink_target(list)?;
                (!target.is_empty()).then(|| {
                    let mut t = vec![name.to_string()];
                    t.extend(target);
                    t
                })
            }
            None => None,
        }
    } else {
        None
    };
    // Without a target, a symlink is an ordinary (empty) file.
    attr.symlink = symlink_target.is_some();
    Ok(FileEntry {
        path,
        length,
        offset: 0,
        attr,
        symlink_target,
    })
}

/// One file of a v2 `file tree`, as libtorrent lays them out: each file is followed by a pad
/// file up to the next piece boundary.
struct V2File {
    path: String,
    length: u64,
    offset: u64,
    pad: bool,
    symlink_target: Option<String>,
}

/// A hybrid torrent (BEP 52 + v1) is loaded as v1, but its two file lists must describe the same
/// files in the same places, as libtorrent's `files_compatible` requires: the same number of
/// files (pad files included; a v1 list may lack the last pad), the same total size, and the same
/// path, size and offset for every file that is neither a pad file nor empty.
fn check_hybrid(
    v1: &[FileEntry],
    tree: &Val,
    name: &str,
    multi_file: bool,
    piece_length: u64,
) -> Result<(), MetainfoError> {
    let mut v2 = v2_files(tree, name, multi_file, piece_length)?;
    if v2.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    // Hybrid torrents from libtorrent 2.0.0-2.0.7 have no pad after the last file.
    if v2.len() == v1.len() + 1 {
        if let Some(last) = v2.iter().rposition(|f| f.length > 0) {
            if v2[last].pad {
                v2.remove(last);
                let mut offset = v2
                    .get(last.wrapping_sub(1))
                    .map_or(0, |f| f.offset + f.length);
                for f in &mut v2[last..] {
                    f.offset = offset;
                    offset += f.length;
                }
            }
        }
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
    let v2_total: u64 = v2.iter().map(|f| f.length).sum();
    if v1_total != v2_total {
        return Err(bad(format!(
            "{v1_total} bytes in v1 but {v2_total} bytes in v2"
        )));
    }
    for (a, b) in v1.iter().zip(&v2) {
        let a_relevant = !a.attr.pad && a.length > 0;
        let b_relevant = !b.pad && b.length > 0;
        if a_relevant != b_relevant {
            return Err(bad(format!(
                "{} and {} differ in being a pad file or empty",
                a.display_path(),
                b.path
            )));
        }
        if !a_relevant {
            continue;
        }
        if a.display_path() != b.path || a.length != b.length || a.offset != b.offset {
            return Err(bad(format!(
                "v1 has {} ({} bytes at {}), v2 has {} ({} bytes at {})",
                a.display_path(),
                a.length,
                a.offset,
                b.path,
                b.length,
                b.offset
            )));
        }
        let a_target = a.symlink_target.as_ref().map(|t| t.join("/"));
        if b.symlink_target.is_some() && a_target != b.symlink_target {
            return Err(bad(format!("{} differs in symlink target", b.path)));
        }
    }
    Ok(())
}

/// The files of a v2 `file tree`, in order, with libtorrent's checks and its pad files.
fn v2_files(
    tree: &Val,
    name: &str,
    multi_file: bool,
    piece_length: u64,
) -> Result<Vec<V2File>, MetainfoError> {
    let parse_failed = |m: &str| MetainfoError::FileParseFailed(m.to_string());
    let mut out: Vec<V2File> = Vec::new();
    let mut total: u64 = 0;
    // Explicit stack of (directory, its path, next entry); depth is bounded by the reader.
    let mut stack: Vec<(&Val, String, usize)> = vec![(tree, name.to_string(), 0)];
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
            element
        } else {
            format!("{dir_path}/{element}")
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
        let attr = parse_attr(f);
        if attr.pad {
            return Err(MetainfoError::InvalidPadFile);
        }
        let length = file_length(f, attr.symlink, true)?;
        let symlink_target = match (attr.symlink, f.get_list(b"symlink path")) {
            (true, Some(list)) => {
                let target = symlink_target(list)?;
                (!target.is_empty()).then(|| format!("{name}/{}", target.join("/")))
            }
            _ => None,
        };
        if symlink_target.is_none() && length > 0 {
            let root = f.get_bytes(b"pieces root");
            if !root.is_some_and(|r| r.len() == 32 && r.iter().any(|&b| b != 0)) {
                return Err(MetainfoError::MissingPiecesRoot);
            }
        }
        if MAX_TOTAL_SIZE - total < length {
            return Err(MetainfoError::InvalidLength(format!(
                "the files add up to more than {MAX_TOTAL_SIZE} bytes"
            )));
        }
        out.push(V2File {
            path,
            length,
            offset: total,
            pad: false,
            symlink_target,
        });
        total += length;
        if !total.is_multiple_of(piece_length) {
            let pad = piece_length - total % piece_length;
            out.push(V2File {
                path: format!("{name}/.pad/{pad}"),
                length: pad,
                offset: total,
                pad: true,
                symlink_target: None,
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
