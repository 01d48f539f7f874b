//! The running client: a session that listens for peers, one actor per torrent that coordinates
//! the picker, choker and storage, and one task pair per peer connection.
//!
//! Data flow: socket -> reader task (wire framing, limits) -> torrent actor -> picker marks the
//! block -> disk pool writes and hashes it -> verified: `have` to every peer. The actor asks the
//! picker for blocks when a peer's queue has room, with deadlines from that peer's RTT estimate;
//! missed deadlines hand blocks to other peers. Every 10 s the choker picks whom to serve.

pub mod clock;
pub mod connection;
pub mod dht_source;
mod error;
pub mod events;
pub mod metadata;
pub mod peer;
pub mod peer_book;
pub mod peer_id;
pub mod rate_limit;
pub mod session;
pub mod status;
pub mod torrent;
pub mod tracker_source;

pub use error::EngineError;
pub use session::{DhtSettings, Session, SessionConfig, TorrentHandle, TorrentOptions};
pub use shoal_storage::ResumeLocation;
pub use shoal_tracker::TierConfig;
pub use status::{TorrentState, TorrentStatus, TrackerReport};
