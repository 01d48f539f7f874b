//! The parsed, validated form of a torrent: what the rest of shoal works with.

use std::path::PathBuf;

use shoal_core::Id20;

/// A loaded .torrent file: the validated info dictionary plus what surrounds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metainfo {
    /// SHA-1 of the exact bytes of the `info` value as they appear in the file.
    pub info_hash: Id20,
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
    /// Number of pieces.
    pub fn num_pieces(&self) -> u32 {
        self.pieces.len() as u32
    }

    /// Size of piece `index`: the piece length, or less for the last piece. Zero when out of range.
    pub fn piece_size(&self, index: u32) -> u32 {
        let start = index as u64 * self.piece_length as u64;
        if index >= self.num_pieces() || start >= self.total_length {
            return 0;
        }
        (self.total_length - start).min(self.piece_length as u64) as u32
    }

    /// The expected SHA-1 of piece `index`.
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
