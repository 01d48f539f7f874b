//! `shoal daemon`: many torrents in one process, persisted in a state folder, driven over HTTP.
//!
//! * [`store`]: the torrents, their options and the API token on disk, written atomically.
//! * [`manager`]: one engine session and its torrents: add, start, stop, verify, remove,
//!   move; the session's settings at run time.
//! * [`relocate`]: moving a torrent's files to a new save folder.
//! * [`api`]: the HTTP server — shoal's JSON API (`/api/v1/…`) and the Transmission RPC
//!   (`/transmission/rpc`, in [`transmission`]), behind the token.
//! * [`web`]: the web page at `/`, which drives that API from a browser.
//! * [`memory`]: giving the heap that bursts of work freed back to the system.

#![warn(missing_docs)]

pub mod api;
pub mod client;
pub mod config;
pub mod manager;
pub mod memory;
pub mod relocate;
pub mod store;
pub mod transmission;
pub mod watch;
pub mod web;

pub use manager::{
    AddSource, DaemonEvent, Manager, ManagerConfig, SessionPatch, SessionSettings, State,
    TorrentPatch, TorrentView,
};
pub use store::Store;

/// What can go wrong in the daemon, each mapped to an HTTP status by the API.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// No such torrent.
    #[error("no such torrent")]
    NotFound,
    /// The torrent is there already.
    #[error("the torrent {0} is already added")]
    Duplicate(String),
    /// The request is wrong (a malformed torrent or magnet, a relative path…).
    #[error("{0}")]
    BadRequest(String),
    /// The state folder could not be read or written.
    #[error("{0}")]
    State(String),
    /// The engine refused or failed.
    #[error("{0}")]
    Engine(String),
}
