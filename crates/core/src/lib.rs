//! Shared vocabulary of shoal.
//!
//! Everything here is used by more than one protocol crate: the 20-byte identifiers of BitTorrent
//! (info-hash, peer id, DHT node id), the 32-byte SHA-256 digests of v2 torrents (BEP 52), the
//! compact binary encodings of peers and nodes (BEP 23, BEP 5), the clock value that sans-IO code
//! is driven with, and the small error type those pieces
//! return. Nothing in this crate does I/O.

mod aligned;
mod bind;
mod compact;
mod error;
mod id20;
mod id32;
mod rtt;
mod time;

pub use aligned::AlignedBuf;
pub use bind::{FamilyNotBound, LocalBind};
pub use compact::{
    decode_compact_nodes_v4, decode_compact_nodes_v6, decode_compact_peers_v4,
    decode_compact_peers_v6, encode_compact_node, encode_compact_peer, CompactNode,
    COMPACT_NODE_V4_LEN, COMPACT_NODE_V6_LEN, COMPACT_PEER_V4_LEN, COMPACT_PEER_V6_LEN,
};
pub use error::CoreError;
pub use id20::Id20;
pub use id32::Id32;
pub use rtt::{RttConfig, RttEstimator};
pub use time::Time;
