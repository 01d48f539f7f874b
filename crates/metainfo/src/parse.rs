//! Parsing and validating .torrent files, with libtorrent's loading rules.
//!
//! The bytes are read by the lenient, bounded [`crate::value`] reader (libtorrent's `bdecode`
//! tolerances and limits), then validated into a [`Metainfo`] following libtorrent's
//! `torrent_info::parse_info_section` rule by rule: limits on piece length, piece count, file
//! sizes and path depth; name and path sanitising; duplicate file names; and, for hybrid (v1 + v2)
//! torrents, that both file lists describe the same files.

use std::collections::BTreeMap;
use std::path::Path;

use sha1::{Digest, Sha1};
use sha2::Sha256;
use shoal_core::{Id20, Id32};

use crate::bencode;
use crate::model::{FileAttr, FileEntry, Info, InfoV2, Metainfo};
use crate::sanitize::{lossy_utf8, make_unique, sanitize_element, sanitize_path_element};
use crate::value::{self, Val};
use crate::{v2, MetainfoError};

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
        // A v2 torrent's piece layers, if it has them, must be right.
        let piece_layers = match (&parsed.v2, top.get_dict(b"piece layers")) {
            (Some(v2), Some(layers)) => v2::piece_layers(
                layers,
                &parsed.files,
                &v2.pieces_roots,
                u64::from(parsed.piece_length),
            )?,
            _ => BTreeMap::new(),
        };
        let (info_hash, info_hash_v2) = info_hashes(info_bytes, &parsed);
        Ok(Metainfo {
            info_hash,
            info_hash_v2,
            piece_layers,
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
        let info = parse_info(info_bytes)?;
        let (info_hash, info_hash_v2) = info_hashes(info_bytes, &info);
        Ok(Metainfo {
            info_hash,
            info_hash_v2,
            piece_layers: BTreeMap::new(),
            info,
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

/// SHA-256 of the info dictionary's bytes: the v2 info-hash (BEP 52).
pub fn info_hash_v2_of(info_bytes: &[u8]) -> Id32 {
    Id32(Sha256::digest(info_bytes).into())
}

/// The 20-byte info-hash the swarm knows (SHA-1, or for a v2-only torrent the truncated SHA-256)
/// and the v2 info-hash of a v2 or hybrid torrent.
fn info_hashes(info_bytes: &[u8], info: &Info) -> (Id20, Option<Id32>) {
    let v2 = info.version().has_v2().then(|| info_hash_v2_of(info_bytes));
    let swarm = match v2 {
        Some(h) if !info.version().has_v1() => h.truncated(),
        _ => info_hash_of(info_bytes),
    };
    (swarm, v2)
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

pub(crate) fn parse_attr(d: &Val) -> FileAttr {
    let bytes = d.get_bytes(b"attr").unwrap_or_default();
    FileAttr {
        pad: bytes.contains(&b'p'),
        executable: bytes.contains(&b'x'),
        hidden: bytes.contains(&b'h'),
        symlink: bytes.contains(&b'l'),
    }
}

/// A file's `length` (0 for a symlink, whatever it says), within libtorrent's limits.
pub(crate) fn file_length(d: &Val, symlink: bool, v2: bool) -> Result<u64, MetainfoError> {
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
pub(crate) fn symlink_target(list: &[Val]) -> Result<Vec<String>, MetainfoError> {
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

    let files_list = info.get_list(b"files");
    // A v2 torrent has a v1 part (it is a hybrid) if it has a `files` list or a `length`.
    let has_v1_files = files_list.is_some() || !is_v2 || info.get(b"length").is_some();
    let mut v1 = Files::default();
    let name = match files_list {
        Some(list) => {
            let name = name.unwrap_or_else(|| info_hash_of(info_bytes).to_hex());
            if list.is_empty() && !is_v2 {
                return Err(MetainfoError::NoFiles);
            }
            if list.len() > MAX_FILES {
                return Err(MetainfoError::Structure(format!(
                    "{} files, more than the limit of {MAX_FILES}",
                    list.len()
                )));
            }
            for f in list {
                v1.add(v1_file(f, &name)?)?;
            }
            name
        }
        None if has_v1_files => {
            if name_raw.is_empty() {
                return Err(MetainfoError::MissingName);
            }
            let name = name.ok_or(MetainfoError::MissingName)?;
            let mut attr = parse_attr(info);
            // A symlink has no data, so a single-file symlink is refused below as empty.
            let length = file_length(info, attr.symlink, false)?;
            attr.symlink = false;
            v1.add(FileEntry {
                path: vec![name.clone()],
                length,
                offset: 0,
                attr,
                symlink_target: None,
            })?;
            name
        }
        None => name.unwrap_or_else(|| info_hash_of(info_bytes).to_hex()),
    };

    // A v2 torrent's files come from its `file tree` (a hybrid's v1 list must match them).
    let (files, total, roots) = match file_tree {
        Some(tree) => {
            let mut v2 = v2::v2_files(tree, &name, files_list.is_some(), piece_length)?;
            if v2.is_empty() {
                return Err(MetainfoError::NoFiles);
            }
            if has_v1_files {
                v2::check_hybrid(&v1.list, &mut v2)?;
            }
            let total = v2.iter().map(|f| f.entry.length).sum();
            let (files, roots) = v2.into_iter().map(|f| (f.entry, f.root)).unzip();
            (files, total, Some(roots))
        }
        None => {
            if v1.list.is_empty() {
                return Err(MetainfoError::NoFiles);
            }
            (v1.list, v1.total, None)
        }
    };
    // A v2 torrent is named after its first file's first path element, as libtorrent does: the
    // `name` for a folder, the file's own name (its key in the tree) for a single file.
    let name = match (&roots, files.first()) {
        (Some(_), Some(f)) => f.path.first().cloned().unwrap_or(name),
        _ => name,
    };
    let multi_file = files_list.is_some() || files.iter().any(|f| f.path.len() > 1);

    if total / piece_length > (1 << 30) - 1 {
        return Err(MetainfoError::TooManyPieces(total / piece_length));
    }
    let expected = total.div_ceil(piece_length);
    if expected > MAX_PIECES {
        return Err(MetainfoError::TooManyPieces(expected));
    }
    let pieces_raw = info.get_bytes(b"pieces");
    if pieces_raw.is_none() && !is_v2 {
        return Err(MetainfoError::MissingPieces);
    }
    if let Some(raw) = pieces_raw {
        if raw.len() % 20 != 0 {
            return Err(MetainfoError::PiecesNotMultipleOf20(raw.len()));
        }
        if (raw.len() / 20) as u64 != expected {
            return Err(MetainfoError::PieceCountMismatch {
                found: raw.len() / 20,
                expected,
                total,
                piece_length,
            });
        }
    }
    if total == 0 {
        return Err(MetainfoError::InvalidLength(
            "the torrent has no data".into(),
        ));
    }
    // SHA-1 piece hashes count only with a v1 file list: without one the torrent is v2-only.
    let pieces = match pieces_raw {
        Some(raw) if has_v1_files => raw.chunks_exact(20).filter_map(Id20::from_slice).collect(),
        _ => Vec::new(),
    };

    let mut files = files;
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
        v2: roots.map(|pieces_roots| InfoV2 { pieces_roots }),
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
