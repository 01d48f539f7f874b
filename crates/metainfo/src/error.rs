use std::path::PathBuf;

use thiserror::Error;

use crate::bencode::BencodeError;

/// Why a .torrent file, info dictionary or magnet link could not be used.
#[derive(Debug, Error)]
pub enum MetainfoError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is larger than any real torrent.
    #[error("torrent file is {size} bytes, larger than the limit of {limit} bytes")]
    TooLarge {
        /// The file size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The bytes are not valid bencode.
    #[error("invalid bencoding: {0}")]
    Bencode(#[from] BencodeError),
    /// The bencode is valid but does not have the expected types.
    #[error("invalid torrent structure: {0}")]
    Structure(String),
    /// The top level is not a dictionary.
    #[error("not a torrent file: the top level is not a dictionary")]
    NotADictionary,
    /// No `info` dictionary.
    #[error("missing or invalid 'info' section in torrent file")]
    MissingInfo,
    /// No usable `name`.
    #[error("missing name in torrent file")]
    MissingName,
    /// A name or path that cannot be made safe.
    #[error("invalid {what} in torrent file (possible exploit attempt): {detail}")]
    InvalidPath {
        /// `name`, `path` or `symlink path`.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// `piece length` missing, not an integer, or out of range.
    #[error("invalid or missing 'piece length' entry in torrent file{0}")]
    PieceLength(String),
    /// `pieces` missing or not a byte string.
    #[error("missing or invalid 'pieces' entry in torrent file")]
    MissingPieces,
    /// `pieces` is not a whole number of SHA-1 hashes.
    #[error("'pieces' is {0} bytes, not a multiple of 20 (one SHA-1 per piece)")]
    PiecesNotMultipleOf20(usize),
    /// The number of piece hashes does not match the total size.
    #[error("torrent has {found} piece hashes, but {total} bytes in pieces of {piece_length} need {expected}")]
    PieceCountMismatch {
        /// Hashes present.
        found: usize,
        /// Hashes the size requires.
        expected: u64,
        /// Total size.
        total: u64,
        /// Piece length.
        piece_length: u64,
    },
    /// More pieces than shoal accepts.
    #[error("too many pieces in torrent ({0}, limit {limit})", limit = crate::parse::MAX_PIECES)]
    TooManyPieces(u64),
    /// A file length that is missing, negative or overflowing, or a torrent with no data.
    #[error("invalid length of torrent: {0}")]
    InvalidLength(String),
    /// `files` is an empty list.
    #[error("no files in torrent")]
    NoFiles,
    /// A v2-only torrent where only v1 will do (downloading, for now).
    #[error("v2-only torrents cannot be downloaded yet (nor seeded); use a v1 or hybrid torrent")]
    V2Only,
    /// A hybrid torrent whose v1 and v2 parts disagree.
    #[error("the v1 and v2 file metadata does not match: {0}")]
    InconsistentHybrid(String),
    /// A `file tree` (BEP 52) without `meta version` 2.
    #[error("the torrent contains v2 keys but does not specify meta version 2")]
    MissingMetaVersion,
    /// A `meta version` above 2.
    #[error("the torrent file has an unknown meta version ({0})")]
    UnknownMetaVersion(i64),
    /// `meta version` 2 without a `file tree`.
    #[error("the v2 torrent file has no file tree")]
    MissingFileTree,
    /// A v2 `file tree` or a v1 file entry that is not shaped as it must be.
    #[error("failed to parse files from torrent file: {0}")]
    FileParseFailed(String),
    /// A v2 file with data but without a valid `pieces root`.
    #[error("a v2 file entry has no root hash")]
    MissingPiecesRoot,
    /// A `piece layers` entry that is not the layer of a file of the torrent.
    #[error("a piece layer is invalid: {0}")]
    InvalidPieceLayer(String),
    /// A v2 file with the pad attribute.
    #[error("a file in the v2 metadata has the pad attribute set")]
    InvalidPadFile,
    /// A path (or symlink target) of more than 100 elements.
    #[error("directory structure in torrent file exceeds depth limit ({0} elements)")]
    DirectoryTooDeep(usize),
    /// Too many files with the same name to rename them apart.
    #[error("too many duplicate filenames")]
    TooManyDuplicateFilenames,
    /// A torrent with `meta version` whose info dictionary is not canonical bencode.
    #[error("invalid bencoding: an info dictionary with 'meta version' must have sorted, unique keys and no leading zeros")]
    NonCanonicalV2,
    /// A magnet URI that cannot be used.
    #[error("invalid magnet link: {0}")]
    Magnet(String),
    /// Creating a torrent failed.
    #[error("cannot create torrent: {0}")]
    Create(String),
}
