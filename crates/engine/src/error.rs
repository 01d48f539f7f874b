use std::path::PathBuf;

use thiserror::Error;

/// Errors of the engine that end a torrent or a session.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The listen socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Storage failed (disk full, permission, …); verified data is untouched.
    #[error(transparent)]
    Storage(#[from] shoal_storage::StorageError),
    /// The torrent's data is not complete where seeding was asked for.
    #[error("the data in {path} is incomplete: {valid} of {total} pieces are valid (use `shoal download` to complete it)")]
    Incomplete {
        /// The save path.
        path: PathBuf,
        /// Valid pieces.
        valid: u32,
        /// All pieces.
        total: u32,
    },
    /// The torrent is already running in this session.
    #[error("torrent {0} is already added")]
    Duplicate(shoal_core::Id20),
    /// A magnet link's metadata could not be fetched.
    #[error("cannot fetch the torrent's metadata: {0}")]
    Metadata(String),
    /// The torrent cannot be used by this session (a v2-only torrent, for now).
    #[error(transparent)]
    Metainfo(#[from] shoal_metainfo::MetainfoError),
    /// The torrent's actor stopped.
    #[error("the torrent stopped: {0}")]
    Stopped(String),
}
