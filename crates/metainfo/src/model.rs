//! The parsed, validated form of a torrent: what the rest of shoal works with.

use std::collections::BTreeMap;
use std::path::PathBuf;

use shoal_core::{Id20, Id32};

/// A loaded .torrent file: the validated info dictionary plus what surrounds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metainfo {
    /// The 20-byte info-hash peers, trackers and the DHT know the torrent by: the SHA-1 of the
    /// exact bytes of the `info` value for v1 and hybrid torrents, the SHA-256 truncated to 20
    /// bytes for v2-only torrents (BEP 52).
    pub info_hash: Id20,
    /// The v2 info-hash (BEP 52): SHA-256 of the exact bytes of `info`, for v2 and hybrid torrents.
    pub info_hash_v2: Option<Id32>,
    /// The piece layers of a v2 torrent (outside the info dictionary), by file `pieces root`, each
    /// checked against its root. Files of at most one piece have none; a torrent may lack some or
    /// all of them (as a magnet link does), in which case they come from peers.
    pub piece_layers: BTreeMap<Id32, Vec<Id32>>,
    /// The validated info dictionary.
    pub info: Info,
    /// The raw bytes of the info dictionary (served to peers by BEP 9 metadata exchange).
    pub info_bytes: Vec<u8>,
    /// Tracker URLs by tier (BEP 12). A lone `announce` becomes one tier of one URL.
    pub trackers: Vec<Vec<String>>,
    /// DHT bootstrap nodes from `nodes` (BEP 5), as host and port.
    pub nodes: Vec<(String, u16)>,
    /// Web seeds from `url-list` (BEP 19), kept for later use.
    pub url_list: Vec<String>,
    /// `creation date`, seconds since the Unix epoch.
    pub creation_date: Option<i64>,
    /// `comment`.
    pub comment: Option<String>,
    /// `created by`.
    pub created_by: Option<String>,
}

/// The validated info dictionary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// The torrent's name after sanitising: the file name of a single-file torrent, or the
    /// top-level folder of a multi-file torrent.
    pub name: String,
    /// Bytes per piece (the last piece may be shorter).
    pub piece_length: u32,
    /// The SHA-1 of every piece, in order.
    pub pieces: Vec<Id20>,
    /// Every file in torrent order, pad files included, with its offset in the piece stream.
    pub files: Vec<FileEntry>,
    /// Sum of all file lengths, pad files included.
    pub total_length: u64,
    /// `private` (BEP 27): only the torrent's trackers may be used as peer sources.
    pub private: bool,
    /// Whether the torrent has a `files` list (its data sits in a folder named `name`).
    pub multi_file: bool,
    /// BEP 52 data, for v2 and hybrid torrents; `None` for v1 torrents.
    pub v2: Option<InfoV2>,
}

/// What a v2 (BEP 52) info dictionary adds to the file list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfoV2 {
    /// The merkle root (`pieces root`) of each entry of [`Info::files`], at the same index: `Some`
    /// for every non-empty file that is neither a pad file nor a symlink.
    pub pieces_roots: Vec<Option<Id32>>,
}

/// The hash formats a torrent carries (BEP 52).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// SHA-1 piece hashes only (BEP 3).
    V1,
    /// Per-file SHA-256 merkle trees only (BEP 52).
    V2,
    /// Both, describing the same files in the same places (BEP 52 "upgrade path").
    Hybrid,
}

impl Version {
    /// True if the torrent has SHA-1 piece hashes and a v1 info-hash.
    pub fn has_v1(self) -> bool {
        self != Version::V2
    }

    /// True if the torrent has merkle trees and a v2 info-hash.
    pub fn has_v2(self) -> bool {
        self != Version::V1
    }

    /// `v1`, `v2` or `hybrid`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
            Version::Hybrid => "hybrid",
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One file of a torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Sanitised path components relative to the save folder; the first is the torrent name
    /// (for a single-file torrent it is the only one).
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
    /// Offset of the file's first byte in the torrent's concatenated byte stream.
    pub offset: u64,
    /// BEP 47 attributes.
    pub attr: FileAttr,
    /// For a symlink (`attr` contains `l`): the sanitised target path, relative to the save folder.
    pub symlink_target: Option<Vec<String>>,
}

/// BEP 47 file attributes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileAttr {
    /// `p`: a pad file, which is all zeros and is never written to disk.
    pub pad: bool,
    /// `x`: executable.
    pub executable: bool,
    /// `h`: hidden.
    pub hidden: bool,
    /// `l`: a symbolic link.
    pub symlink: bool,
}

impl FileEntry {
    /// The path relative to the save folder, using the platform separator.
    pub fn relative_path(&self) -> PathBuf {
        self.path.iter().collect()
    }

    /// The path joined with `/`, for display and JSON.
    pub fn display_path(&self) -> String {
        self.path.join("/")
    }

    /// True for pad files (BEP 47), which are never created on disk.
    pub fn is_pad(&self) -> bool {
        self.attr.pad
    }
}

impl Info {
    /// Number of pieces (of the whole torrent, pad files included).
    pub fn num_pieces(&self) -> u32 {
        self.total_length
            .div_ceil(u64::from(self.piece_length).max(1)) as u32
    }

    /// Which hashes the torrent carries.
    pub fn version(&self) -> Version {
        match (&self.v2, self.pieces.is_empty()) {
            (None, _) => Version::V1,
            (Some(_), true) => Version::V2,
            (Some(_), false) => Version::Hybrid,
        }
    }

    /// The merkle root of file `index` (v2 and hybrid torrents; not for pad files, empty files and
    /// symlinks).
    pub fn pieces_root(&self, index: usize) -> Option<&Id32> {
        self.v2.as_ref()?.pieces_roots.get(index)?.as_ref()
    }

    /// Size of piece `index`: the piece length, or less for the last piece. Zero when out of range.
    pub fn piece_size(&self, index: u32) -> u32 {
        let start = index as u64 * self.piece_length as u64;
        if index >= self.num_pieces() || start >= self.total_length {
            return 0;
        }
        (self.total_length - start).min(self.piece_length as u64) as u32
    }

    /// The expected SHA-1 of piece `index` (`None` for v2-only torrents).
    pub fn piece_hash(&self, index: u32) -> Option<&Id20> {
        self.pieces.get(index as usize)
    }

    /// Bytes of real (non-pad) file data.
    pub fn payload_length(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| !f.is_pad())
            .map(|f| f.length)
            .sum()
    }
}

impl Metainfo {
    /// Which hashes the torrent carries.
    pub fn version(&self) -> Version {
        self.info.version()
    }

    /// A .torrent holding only the info dictionary (its bytes as they are) and, for a v2 or
    /// hybrid torrent, its `piece layers`: what a magnet link's fetched metadata is kept as, so
    /// a restart needs neither the metadata nor the layers again.
    pub fn bare_torrent_bytes(&self) -> Vec<u8> {
        use crate::bencode::write;
        let layers: usize = self
            .piece_layers
            .values()
            .map(|l| 32 + l.len() * 32 + 16)
            .sum();
        let mut out = Vec::with_capacity(self.info_bytes.len() + layers + 32);
        out.push(b'd');
        write::bytes(&mut out, b"info");
        out.extend_from_slice(&self.info_bytes);
        if !self.piece_layers.is_empty() {
            // Keys in byte order: a BTreeMap of 32-byte roots is.
            write::bytes(&mut out, b"piece layers");
            out.push(b'd');
            for (root, layer) in &self.piece_layers {
                write::bytes(&mut out, &root.0);
                let joined: Vec<u8> = layer.iter().flat_map(|h| h.0).collect();
                write::bytes(&mut out, &joined);
            }
            out.push(b'e');
        }
        out.push(b'e');
        out
    }

    /// The SHA-1 info-hash, for v1 and hybrid torrents.
    pub fn info_hash_v1(&self) -> Option<Id20> {
        self.version().has_v1().then_some(self.info_hash)
    }

    /// The piece layer of file `index`, if the torrent carries it (files of more than one piece).
    pub fn piece_layer(&self, index: usize) -> Option<&[Id32]> {
        let root = self.info.pieces_root(index)?;
        self.piece_layers.get(root).map(Vec::as_slice)
    }
}
