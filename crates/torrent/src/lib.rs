//! The torrent core as a sans-IO state machine, shaped like quinn-proto's connection.
//!
//! [`Torrent`] holds one torrent's peers and decides everything about them: what to request from
//! whom (through `shoal-picker`), whom to upload to (`shoal-choker`), when a peer has stopped
//! answering, which peer sent bad data, whom to dial. It never touches a socket, a thread or a
//! clock:
//!
//! - **inputs**: [`Torrent::handle_connected`], [`Torrent::handle_message`],
//!   [`Torrent::handle_closed`], [`Torrent::handle_sent`], [`Torrent::handle_disk`],
//!   [`Torrent::handle_dial_failed`], [`Torrent::add_peers`], [`Torrent::handle_timeout`],
//!   [`Torrent::handle_fatal`], [`Torrent::shutdown`],
//!   each with the current [`Time`](shoal_core::Time);
//! - **outputs**, polled: [`Torrent::poll_transmit`] (messages per connection),
//!   [`Torrent::poll_disk`] (writes, reads, hashes, resume data), [`Torrent::poll_dial`],
//!   [`Torrent::poll_event`] (connections, verified pieces, completion, bans, fatal errors) and
//!   [`Torrent::poll_timeout`], the next deadline from its timers (no fixed tick).
//!
//! The engine's tokio driver moves bytes and time into it; the swarm simulator drives the same
//! type over in-memory links. Peer faults are typed ([`PeerViolation`], [`CloseReason`]).

#![warn(missing_docs)]

mod bans;
pub mod block_ban;
mod disk;
mod extended;
mod hashes;
pub mod layer_fetch;
pub mod peer;
pub mod peer_book;
mod pex;
mod requests;
pub mod smart_ban;
mod suggest;
pub mod superseed;
mod torrent;
mod uploads;
mod violation;

pub use layer_fetch::PieceLayerFetch;
pub use peer_book::PeerBook;
pub use requests::{STALL_FLOOR, STALL_GAPS};
pub use torrent::{
    ConnId, DiskDone, DiskJob, PeerHello, Torrent, TorrentConfig, TorrentEvent, TorrentStats,
    V2File, WriteResult, UT_METADATA_ID, UT_PEX_ID,
};
pub use violation::{CloseReason, PeerViolation};

/// A block of a piece (re-exported from the picker).
pub use shoal_picker::{Block, PickMode};
