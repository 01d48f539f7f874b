//! The one error type of the crate, with messages a user can act on.

use std::io;
use std::path::{Path, PathBuf};

/// What can go wrong while storing, reading or checking a torrent's data.
///
/// Every variant that concerns a file names it, so the CLI can print one clear line.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The file system has no space left (ENOSPC).
    #[error("disk full while writing {path}")]
    DiskFull {
        /// The file being written.
        path: PathBuf,
    },
    /// A file would grow past the largest size allowed (EFBIG, e.g. a `ulimit -f`).
    #[error("file too large for this system or its limits: {path}")]
    FileTooLarge {
        /// The file being written.
        path: PathBuf,
    },
    /// The operating system refused access (EACCES, EPERM).
    #[error("permission denied: {path}")]
    PermissionDenied {
        /// The file or folder refused.
        path: PathBuf,
    },
    /// The file system is mounted read-only (EROFS).
    #[error("read-only file system: {path}")]
    ReadOnlyFileSystem {
        /// The file that could not be written.
        path: PathBuf,
    },
    /// Something other than a regular file sits where a file of the torrent belongs (a folder,
    /// or a file where a folder of the path belongs).
    #[error("not a regular file (a folder or other object is in the way): {path}")]
    NotAFile {
        /// The path of the torrent file.
        path: PathBuf,
    },
    /// Any other I/O error, with the operation and file.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("write", "read", "open", ...).
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The torrent's file list cannot be laid out (gaps, overlaps, wrong total, unsafe names).
    #[error("invalid torrent layout: {0}")]
    InvalidLayout(String),
    /// A v2 file longer than one piece whose piece layer the torrent does not carry: its
    /// pieces cannot be verified (a magnet download fetches the layers from peers first).
    #[error("the piece layer of {0} is missing: its pieces cannot be verified")]
    MissingPieceLayer(String),
    /// A piece index past the end of the torrent.
    #[error("piece {0} is out of range")]
    PieceOutOfRange(u32),
    /// A block that is not a whole, aligned block of its piece.
    #[error("invalid block: piece {piece}, offset {offset}, length {len}")]
    InvalidBlock {
        /// Piece index.
        piece: u32,
        /// Offset within the piece.
        offset: u32,
        /// Length given.
        len: usize,
    },
    /// A write was attempted on storage opened read-only (seeding existing data, or verify).
    #[error("storage is read-only")]
    ReadOnlyStorage,
    /// Data requested from a file that is missing or shorter than needed.
    #[error("data not present: {path}")]
    DataMissing {
        /// The file that is missing or short.
        path: PathBuf,
    },
    /// The disk pool has shut down.
    #[error("disk pool is shut down")]
    PoolClosed,
}

impl StorageError {
    /// Classify an I/O error on `path` into the variant a user can act on.
    pub fn from_io(op: &'static str, path: &Path, err: io::Error) -> Self {
        let path = path.to_path_buf();
        // Raw errno values are stable on Linux and the BSDs for these four.
        match err.raw_os_error() {
            Some(28) => return StorageError::DiskFull { path },
            Some(27) => return StorageError::FileTooLarge { path },
            Some(30) => return StorageError::ReadOnlyFileSystem { path },
            // EISDIR, ENOTDIR: a folder where the file belongs, or a file where a folder does.
            Some(21) | Some(20) => return StorageError::NotAFile { path },
            _ => {}
        }
        match err.kind() {
            io::ErrorKind::PermissionDenied => StorageError::PermissionDenied { path },
            _ => StorageError::Io {
                op,
                path,
                source: err,
            },
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
