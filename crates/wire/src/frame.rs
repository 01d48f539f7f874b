//! Cutting length-prefixed messages out of a receive buffer, under hard limits.
//!
//! A length prefix above the largest legal message for this peer is an error for that peer
//! before anything is allocated; a peer can make shoal buffer at most one maximal message.

use bytes::{Buf, BytesMut};

use crate::hashes::{HASH_REQUEST_LEN, MAX_HASH_COUNT, MAX_PROOF_HASHES};
use crate::message::{Message, BLOCK_SIZE};
use crate::WireError;

/// Largest extension-protocol message accepted: a 16 KiB BEP 9 metadata piece plus its
/// dictionary, or an extended handshake or PEX message, fit with room to spare.
pub const MAX_EXTENDED_LEN: u32 = 64 * 1024;

/// Size limits for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Pieces in the torrent, once known (a magnet download learns it from the metadata);
    /// a bitfield must then have exactly `ceil(pieces / 8)` bytes and zero spare bits.
    pub num_pieces: Option<u32>,
    /// Largest extension message payload.
    pub max_extended: u32,
    /// The torrent has merkle trees (BEP 52): `hashes` messages, up to
    /// [`MAX_HASH_COUNT`](crate::MAX_HASH_COUNT) hashes plus uncles (about 258 KiB), are
    /// allowed. Off, the largest frame stays a block's.
    pub v2: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            num_pieces: None,
            max_extended: MAX_EXTENDED_LEN,
            v2: false,
        }
    }
}

impl Limits {
    /// Limits for a torrent of `num_pieces` pieces.
    pub fn for_pieces(num_pieces: u32) -> Self {
        Limits {
            num_pieces: Some(num_pieces),
            ..Limits::default()
        }
    }

    /// The same limits for a torrent with merkle trees (v2 or hybrid).
    pub fn with_v2(mut self, v2: bool) -> Self {
        self.v2 = v2;
        self
    }

    /// Bytes of a bitfield for the torrent: exact when the piece count is known, else the bound
    /// for the largest torrent shoal loads.
    fn bitfield_bytes(&self) -> u32 {
        match self.num_pieces {
            Some(n) => n.div_ceil(8),
            None => (shoal_metainfo::MAX_PIECES / 8) as u32,
        }
    }

    /// The largest frame (after the length prefix) this peer may send.
    pub fn max_frame(&self) -> u32 {
        let hashes = if self.v2 {
            1 + HASH_REQUEST_LEN as u32 + 32 * (MAX_HASH_COUNT + MAX_PROOF_HASHES)
        } else {
            0
        };
        (9 + BLOCK_SIZE)
            .max(1 + self.bitfield_bytes())
            .max(2 + self.max_extended)
            .max(hashes)
    }

    /// Checks a bitfield payload against the piece count.
    pub fn check_bitfield(&self, bits: &[u8]) -> Result<(), WireError> {
        let Some(pieces) = self.num_pieces else {
            return Ok(());
        };
        let bad = WireError::BadBitfield {
            len: bits.len(),
            pieces,
        };
        if bits.len() != pieces.div_ceil(8) as usize {
            return Err(bad);
        }
        let spare = (bits.len() * 8) as u32 - pieces;
        if spare > 0 {
            let mask = (1u8 << spare) - 1;
            if bits.last().is_some_and(|last| last & mask != 0) {
                return Err(bad);
            }
        }
        Ok(())
    }
}

/// Bytes still missing from the frame at the front of `buf`: what a read must make room for
/// after [`decode_frame`] answered `Ok(None)` (which checked the length against the limits).
/// Only the rest of the length prefix while that is incomplete; 0 when a whole frame is there.
pub fn frame_missing(buf: &[u8]) -> usize {
    if buf.len() < 4 {
        return 4 - buf.len();
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    (4 + len).saturating_sub(buf.len())
}

/// Takes the next complete message from `buf`, or `Ok(None)` if more bytes are needed (the
/// caller makes room for them: see [`frame_missing`]).
/// Extension messages above `limits.max_extended` are refused like any oversized frame.
pub fn decode_frame(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Message>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let limit = limits.max_frame();
    if len > limit {
        return Err(WireError::TooLong { len, limit });
    }
    if len == 0 {
        buf.advance(4);
        return Ok(Some(Message::KeepAlive));
    }
    if buf[4..].len() < len as usize {
        return Ok(None);
    }
    let id = buf[4];
    if id == 20 && len.saturating_sub(2) > limits.max_extended {
        return Err(WireError::TooLong {
            len,
            limit: limits.max_extended + 2,
        });
    }
    buf.advance(5);
    let payload = buf.split_to(len as usize - 1).freeze();
    Message::decode(id, payload, limits).map(Some)
}
