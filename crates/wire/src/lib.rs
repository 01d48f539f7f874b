//! The BitTorrent peer wire protocol (BEP 3), with the fast extension (BEP 6), the extension
//! protocol (BEP 10), metadata exchange messages (BEP 9) and the merkle hash messages and
//! handshake bit of BitTorrent v2 (BEP 52).
//!
//! Everything here is sans-IO: [`Handshake`] and [`Message`] encode to and decode from bytes,
//! [`frame::decode_frame`] cuts messages out of a receive buffer under hard [`Limits`], and
//! `MessageCodec` (feature `tokio-codec`) is a thin tokio-util adapter over it; without the
//! feature the crate has no tokio in its tree.

#[cfg(feature = "tokio-codec")]
mod codec;
mod error;
mod extended;
pub mod frame;
mod handshake;
mod hashes;
mod message;
mod metadata;
mod pex;

#[cfg(feature = "tokio-codec")]
pub use codec::{CodecError, MessageCodec};
pub use error::WireError;
pub use extended::{ExtendedHandshake, EXTENDED_HANDSHAKE_ID};
pub use frame::Limits;
pub use handshake::{Handshake, HANDSHAKE_LEN, PROTOCOL};
pub use hashes::{HashRequest, HASH_REQUEST_LEN, MAX_HASH_COUNT, MAX_PROOF_HASHES};
pub use message::{BlockRef, Message, BLOCK_SIZE};
pub use metadata::{MetadataMessage, METADATA_PIECE_SIZE};
pub use pex::{PexMessage, MAX_PEX_PEERS};

#[cfg(test)]
mod tests;
