//! Parsing and validating .torrent files.
//!
//! The bytes first go through the bounded [`crate::bencode`] scanner (depth limit, strict integers,
//! no trailing data, the raw span of `info`); only then does serde_bencode turn them into the typed
//! raw structures below, which are validated into a [`Metainfo`].

use std::path::Path;

use serde::Deserialize;
use serde_bencode::value::Value;
use sha1::{Digest, Sha1};
use shoal_core::Id20;

use crate::bencode;
use crate::model::{FileAttr, FileEntry, Info, Metainfo};
use crate::sanitize::{lossy_utf8, make_unique, sanitize_element, sanitize_path};
use crate::MetainfoError;

/// Largest .torrent file read (libtorrent's default `max_torrent_file_size`-like guard; the
/// largest real torrents are a few MB).
pub const MAX_TORRENT_FILE_SIZE: u64 = 64 << 20;
/// Most pieces accepted (16 Mi pieces: a 320 MB hash list).
pub const MAX_PIECES: u64 = 1 << 24;
/// Largest piece length accepted (libtorrent accepts up to about 512 MiB).
pub const MAX_PIECE_LENGTH: i64 = 1 << 30;
/// Most files accepted in one torrent.
pub const MAX_FILES: usize = 1 << 20;

/// The parts of the top-level dictionary shoal reads; wrongly typed optional fields are ignored,
/// as libtorrent ignores them, so they are kept as untyped values here.
#[derive(Deserialize, Default)]
struct RawTorrent {
    #[serde(default)]
    announce: Option<Value>,
    #[serde(default, rename = "announce-list")]
    announce_list: Option<Value>,
    #[serde(default)]
    nodes: Option<Value>,
    #[serde(default, rename = "url-list")]
    url_list: Option<Value>,
    #[serde(default, rename = "creation date")]
    creation_date: Option<Value>,
    #[serde(default)]
    comment: Option<Value>,
    #[serde(default, rename = "comment.utf-8")]
    comment_utf8: Option<Value>,
    #[serde(default, rename = "created by")]
    created_by: Option<Value>,
}

/// The info dictionary as serde_bencode reads it.
#[derive(Deserialize)]
struct RawInfo {
    #[serde(default)]
    name: Option<Value>,
    #[serde(default, rename = "name.utf-8")]
    name_utf8: Option<Value>,
    #[serde(default, rename = "piece length")]
    piece_length: Option<Value>,
    #[serde(default)]
    pieces: Option<Value>,
    #[serde(default)]
    length: Option<Value>,
    #[serde(default)]
    files: Option<Value>,
    #[serde(default)]
    private: Option<Value>,
    #[serde(default, rename = "meta version")]
    meta_version: Option<Value>,
    #[serde(default, rename = "file tree")]
    file_tree: Option<Value>,
    #[serde(default)]
    attr: Option<Value>,
}

fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Bytes(b) => Some(b),
        _ => None,
    }
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn as_list(v: &Value) -> Option<&[Value]> {
    match v {
        Value::List(l) => Some(l),
        _ => None,
    }
}

fn dict_get<'a>(v: &'a Value, key: &[u8]) -> Option<&'a Value> {
    match v {
        Value::Dict(d) => d.get(key),
        _ => None,
    }
}

fn text(v: &Option<Value>) -> Option<String> {
    v.as_ref().and_then(as_bytes).map(lossy_utf8)
}

fn structure(e: serde_bencode::Error) -> MetainfoError {
    MetainfoError::Structure(e.to_string())
}

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

    /// Parses and validates the bytes of a .torrent file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        if bytes.len() as u64 > MAX_TORRENT_FILE_SIZE {
            return Err(MetainfoError::TooLarge {
                size: bytes.len() as u64,
                limit: MAX_TORRENT_FILE_SIZE,
            });
        }
        let scanned = bencode::scan_prefix(bytes, 0, bencode::DEFAULT_MAX_DEPTH)?;
        // Trailing whitespace (an editor's final newline) is tolerated, as libtorrent does;
        // any other trailing data is refused.
        let trailing = &bytes[scanned.span.end..];
        if !trailing.iter().all(u8::is_ascii_whitespace) {
            return Err(bencode::BencodeError::TrailingData(scanned.span.end).into());
        }
        if !scanned.is_dict(bytes) {
            return Err(MetainfoError::NotADictionary);
        }
        let info_span = scanned
            .get(bytes, b"info")
            .ok_or(MetainfoError::MissingInfo)?;
        let info_bytes = &bytes[info_span];
        if info_bytes.first() != Some(&b'd') {
            return Err(MetainfoError::MissingInfo);
        }
        let info = parse_info(info_bytes)?;
        let raw: RawTorrent = serde_bencode::from_bytes(bytes).map_err(structure)?;
        Ok(Metainfo {
            info_hash: info_hash_of(info_bytes),
            info,
            info_bytes: info_bytes.to_vec(),
            trackers: trackers(&raw),
            nodes: nodes(&raw),
            url_list: url_list(&raw),
            creation_date: raw.creation_date.as_ref().and_then(as_int),
            comment: text(&raw.comment_utf8).or_else(|| text(&raw.comment)),
            created_by: text(&raw.created_by),
        })
    }

    /// Builds a metainfo from a bare info dictionary (as received by BEP 9 metadata exchange),
    /// with trackers taken from elsewhere (a magnet link).
    pub fn from_info_bytes(
        info_bytes: &[u8],
        trackers: Vec<Vec<String>>,
    ) -> Result<Metainfo, MetainfoError> {
        let scanned = bencode::scan(info_bytes)?;
        if !scanned.is_dict(info_bytes) {
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

/// Announce tiers: `announce-list` (BEP 12) if it has any URL, else `announce`. URLs are trimmed,
/// empty ones and empty tiers dropped, duplicates removed.
fn trackers(raw: &RawTorrent) -> Vec<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut tiers = Vec::new();
    if let Some(list) = raw.announce_list.as_ref().and_then(as_list) {
        for tier in list {
            let urls: Vec<String> = as_list(tier)
                .unwrap_or_default()
                .iter()
                .filter_map(as_bytes)
                .map(|b| lossy_utf8(b).trim().to_string())
                .filter(|u| !u.is_empty() && seen.insert(u.clone()))
                .collect();
            if !urls.is_empty() {
                tiers.push(urls);
            }
        }
    }
    if tiers.is_empty() {
        if let Some(url) = text(&raw.announce) {
            let url = url.trim().to_string();
            if !url.is_empty() {
                tiers.push(vec![url]);
            }
        }
    }
    tiers
}

/// `nodes`: a list of `[host, port]` pairs (BEP 5).
fn nodes(raw: &RawTorrent) -> Vec<(String, u16)> {
    let Some(list) = raw.nodes.as_ref().and_then(as_list) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|pair| {
            let pair = as_list(pair)?;
            let host = lossy_utf8(as_bytes(pair.first()?)?);
            let port = u16::try_from(as_int(pair.get(1)?)?).ok()?;
            (!host.is_empty()).then_some((host, port))
        })
        .collect()
}

/// `url-list`: one URL or a list of them (BEP 19).
fn url_list(raw: &RawTorrent) -> Vec<String> {
    let urls: Vec<String> = match &raw.url_list {
        Some(Value::Bytes(b)) => vec![lossy_utf8(b)],
        Some(Value::List(l)) => l.iter().filter_map(as_bytes).map(lossy_utf8).collect(),
        _ => Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    urls.into_iter()
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty() && seen.insert(u.clone()))
        .collect()
}

fn parse_attr(v: Option<&Value>) -> FileAttr {
    let bytes = v.and_then(as_bytes).unwrap_or_default();
    FileAttr {
        pad: bytes.contains(&b'p'),
        executable: bytes.contains(&b'x'),
        hidden: bytes.contains(&b'h'),
        symlink: bytes.contains(&b'l'),
    }
}

fn file_length(v: Option<&Value>) -> Result<u64, MetainfoError> {
    match v {
        Some(Value::Int(n)) if *n >= 0 => Ok(*n as u64),
        Some(Value::Int(n)) => Err(MetainfoError::InvalidLength(format!(
            "file length {n} is negative"
        ))),
        Some(_) => Err(MetainfoError::InvalidLength(
            "file length is not an integer".into(),
        )),
        None => Err(MetainfoError::InvalidLength("file has no length".into())),
    }
}

/// Path elements of a `path` list (every element must be a byte string).
fn path_elements<'a>(v: &'a Value, what: &'static str) -> Result<Vec<&'a [u8]>, MetainfoError> {
    let list = as_list(v).ok_or_else(|| MetainfoError::InvalidPath {
        what,
        detail: "not a list".into(),
    })?;
    list.iter()
        .map(|e| {
            as_bytes(e).ok_or_else(|| MetainfoError::InvalidPath {
                what,
                detail: "an element is not a string".into(),
            })
        })
        .collect()
}

/// Parses and validates an info dictionary (the bytes must already have passed the scanner).
pub(crate) fn parse_info(info_bytes: &[u8]) -> Result<Info, MetainfoError> {
    let raw: RawInfo = serde_bencode::from_bytes(info_bytes).map_err(structure)?;
    let is_v2 = raw.meta_version.as_ref().and_then(as_int) == Some(2);
    if is_v2 && raw.pieces.is_none() {
        return Err(MetainfoError::V2Only);
    }

    let name_raw = raw
        .name_utf8
        .as_ref()
        .and_then(as_bytes)
        .or_else(|| raw.name.as_ref().and_then(as_bytes))
        .ok_or(MetainfoError::MissingName)?;
    let name = sanitize_element(name_raw).ok_or_else(|| MetainfoError::InvalidPath {
        what: "name",
        detail: format!("{:?} cannot be used as a file name", lossy_utf8(name_raw)),
    })?;

    let piece_length = match raw.piece_length.as_ref() {
        Some(Value::Int(n)) if *n > 0 && *n <= MAX_PIECE_LENGTH => *n as u64,
        Some(Value::Int(n)) => {
            return Err(MetainfoError::PieceLength(format!(
                ": {n} is not between 1 and {MAX_PIECE_LENGTH}"
            )))
        }
        _ => return Err(MetainfoError::PieceLength(String::new())),
    };

    let mut files = Vec::new();
    let multi_file = raw.files.is_some();
    if let Some(list_value) = &raw.files {
        let list = as_list(list_value)
            .ok_or_else(|| MetainfoError::Structure("'files' is not a list".into()))?;
        if list.is_empty() {
            return Err(MetainfoError::NoFiles);
        }
        if list.len() > MAX_FILES {
            return Err(MetainfoError::Structure(format!(
                "{} files, more than the limit of {MAX_FILES}",
                list.len()
            )));
        }
        let mut paths = Vec::with_capacity(list.len());
        for f in list {
            if !matches!(f, Value::Dict(_)) {
                return Err(MetainfoError::Structure(
                    "a file entry is not a dictionary".into(),
                ));
            }
            let attr = parse_attr(dict_get(f, b"attr"));
            // A symlink has no data of its own, whatever its length says (it may have none).
            let length = if attr.symlink {
                0
            } else {
                file_length(dict_get(f, b"length"))?
            };
            let path_value = dict_get(f, b"path.utf-8").or_else(|| dict_get(f, b"path"));
            let mut path = vec![name.clone()];
            match path_value {
                Some(v) => path.extend(sanitize_path(path_elements(v, "path")?)),
                // BEP 47 pad files may omit the path; name them as libtorrent does. They are
                // never written, so the path is only a label.
                None if attr.pad => path = vec![".pad".to_string(), length.to_string()],
                None => {
                    return Err(MetainfoError::InvalidPath {
                        what: "path",
                        detail: "a file has no path".into(),
                    })
                }
            }
            let symlink_target = match (attr.symlink, dict_get(f, b"symlink path")) {
                (true, Some(v)) => {
                    let mut target = vec![name.clone()];
                    target.extend(sanitize_path(path_elements(v, "symlink path")?));
                    Some(target)
                }
                _ => None,
            };
            paths.push(path);
            files.push(FileEntry {
                path: Vec::new(),
                // A symlink has no data of its own, whatever its length says.
                length,
                offset: 0,
                attr,
                symlink_target,
            });
        }
        make_unique(&mut paths);
        for (f, p) in files.iter_mut().zip(paths) {
            f.path = p;
        }
    } else {
        let length = file_length(raw.length.as_ref())?;
        files.push(FileEntry {
            path: vec![name.clone()],
            length,
            offset: 0,
            attr: parse_attr(raw.attr.as_ref()),
            symlink_target: None,
        });
    }

    let mut total: u64 = 0;
    for f in &mut files {
        f.offset = total;
        total = total
            .checked_add(f.length)
            .filter(|t| *t <= i64::MAX as u64)
            .ok_or_else(|| MetainfoError::InvalidLength("total size overflows".into()))?;
    }
    if total == 0 {
        return Err(MetainfoError::InvalidLength(
            "the torrent has no data".into(),
        ));
    }

    let expected = total.div_ceil(piece_length);
    if expected > MAX_PIECES {
        return Err(MetainfoError::TooManyPieces(expected));
    }
    let pieces_raw = raw
        .pieces
        .as_ref()
        .and_then(as_bytes)
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
    let pieces = pieces_raw
        .chunks_exact(20)
        .filter_map(Id20::from_slice)
        .collect();

    let info = Info {
        name,
        piece_length: piece_length as u32,
        pieces,
        files,
        total_length: total,
        private: raw
            .private
            .as_ref()
            .and_then(as_int)
            .is_some_and(|p| p != 0),
        multi_file,
    };
    if is_v2 {
        check_hybrid(&info, raw.file_tree.as_ref())?;
    }
    Ok(info)
}

/// A hybrid torrent (BEP 52 + v1) is loaded as v1, but its two file lists must describe the same
/// files, and each v1 file must start on a piece boundary, or the two swarms would disagree.
fn check_hybrid(info: &Info, file_tree: Option<&Value>) -> Result<(), MetainfoError> {
    let bad = |m: &str| MetainfoError::InconsistentHybrid(m.to_string());
    let tree = file_tree.ok_or_else(|| bad("no 'file tree'"))?;
    // Walk the tree with an explicit stack (depth is already bounded by the scanner).
    let mut v2_files: Vec<(Vec<Vec<u8>>, u64)> = Vec::new();
    let mut stack: Vec<(Vec<Vec<u8>>, &Value)> = vec![(Vec::new(), tree)];
    while let Some((path, node)) = stack.pop() {
        let Value::Dict(entries) = node else {
            return Err(bad("a 'file tree' node is not a dictionary"));
        };
        if let Some(leaf) = entries.get(&b""[..]) {
            let len = dict_get(leaf, b"length")
                .and_then(as_int)
                .filter(|n| *n >= 0)
                .ok_or_else(|| bad("a v2 file has no valid length"))?;
            v2_files.push((path.clone(), len as u64));
            continue;
        }
        let mut keys: Vec<&Vec<u8>> = entries.keys().collect();
        keys.sort();
        // Push in reverse so the walk visits keys in sorted order.
        for k in keys.into_iter().rev() {
            let mut p = path.clone();
            p.push(k.clone());
            stack.push((p, &entries[k]));
        }
    }
    let v1_files: Vec<&FileEntry> = info.files.iter().filter(|f| !f.is_pad()).collect();
    if v1_files.len() != v2_files.len() {
        return Err(bad(&format!(
            "{} v1 files but {} v2 files",
            v1_files.len(),
            v2_files.len()
        )));
    }
    for (v1, (_, v2_len)) in v1_files.iter().zip(&v2_files) {
        if v1.length != *v2_len && !v1.attr.symlink {
            return Err(bad(&format!("{} differs in length", v1.display_path())));
        }
        if v1.length > 0 && v1.offset % info.piece_length as u64 != 0 {
            return Err(bad(&format!(
                "{} does not start on a piece boundary",
                v1.display_path()
            )));
        }
    }
    Ok(())
}
