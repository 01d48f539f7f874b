//! The running client, as a thin tokio driver around the sans-IO torrent machine
//! (`shoal-torrent`): a session that listens for peers, one driver task per torrent that feeds
//! its machine and carries out what it asks for, and one task pair per peer connection.
//!
//! Data flow: socket -> reader task (RC4 in place if MSE agreed on it, wire framing, limits)
//! -> driver -> `Torrent::handle_message` -> the machine decides (requests, choking, bans)
//! -> `poll_transmit` to the writer tasks (which encrypt in place likewise), `poll_disk` to the
//! disk pool (writes, hashing, reads) -> results back through `handle_disk`. Time enters only
//! as `handle_timeout` at `poll_timeout`. Dialling, accepting and the handshakes (MSE/PE and
//! BitTorrent's) are in `encryption`.

mod announcer;
pub mod budget;
pub mod clock;
pub mod connection;
pub mod dht_source;
pub mod encryption;
mod error;
pub mod events;
pub mod metadata;
pub mod peer_id;
pub mod rate_limit;
mod read_buffers;
pub mod receive_budget;
pub mod session;
pub mod slot;
mod socket_buffers;
pub mod status;
pub mod status_watch;
pub mod torrent;
pub mod tracker_source;
pub mod utp_driver;
pub mod web_seed;

pub use encryption::{Encryption, EncryptionPolicy};
pub use error::EngineError;
pub use session::{
    DhtSettings, Session, SessionConfig, TorrentHandle, TorrentOptions, UtpMode, SLEEP_AFTER,
};
pub use shoal_storage::ResumeLocation;
pub use shoal_tracker::TierConfig;
pub use status::{TorrentState, TorrentStatus, TrackerReport};
pub use utp_driver::{UtpEndpoint, UtpStream};
pub use web_seed::WebSeedReport;
