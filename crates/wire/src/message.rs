//! Peer wire messages (BEP 3, BEP 6, BEP 10, BEP 5's `port`).

use bytes::{BufMut, Bytes, BytesMut};

use shoal_core::Id32;

use crate::frame::Limits;
use crate::hashes::{HashRequest, HASH_REQUEST_LEN, MAX_HASH_COUNT, MAX_PROOF_HASHES};
use crate::WireError;

/// The block size every client uses: requests are for 16 KiB (the last block of a torrent may be
/// shorter). Larger requests are refused by libtorrent and others, so shoal never sends them.
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// A block: piece index, byte offset in the piece, length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    /// Piece index.
    pub piece: u32,
    /// Offset of the block in the piece.
    pub begin: u32,
    /// Length in bytes.
    pub length: u32,
}

/// One message of the peer wire protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Zero-length message: the connection is alive.
    KeepAlive,
    /// id 0: the sender will not serve our requests.
    Choke,
    /// id 1: the sender will serve our requests.
    Unchoke,
    /// id 2: the sender wants pieces we have.
    Interested,
    /// id 3: the sender no longer wants pieces we have.
    NotInterested,
    /// id 4: the sender has completed a piece.
    Have(u32),
    /// id 5: which pieces the sender has (high bit of the first byte is piece 0).
    Bitfield(Bytes),
    /// id 6: ask for a block.
    Request(BlockRef),
    /// id 7: a block's data.
    Piece {
        /// Piece index.
        piece: u32,
        /// Offset in the piece.
        begin: u32,
        /// The data.
        data: Bytes,
    },
    /// id 8: withdraw a request.
    Cancel(BlockRef),
    /// id 9: the sender's DHT port (BEP 5).
    Port(u16),
    /// id 13: a piece the sender suggests we fetch (BEP 6).
    Suggest(u32),
    /// id 14: the sender has every piece (BEP 6).
    HaveAll,
    /// id 15: the sender has no piece (BEP 6).
    HaveNone,
    /// id 16: the sender will not serve this request (BEP 6).
    Reject(BlockRef),
    /// id 17: we may request this piece even while choked (BEP 6).
    AllowedFast(u32),
    /// id 21: ask for hashes of a file's merkle tree (BEP 52).
    HashRequest(HashRequest),
    /// id 22: the hashes asked for: the base-layer hashes, then the uncle hashes from the
    /// lowest proof layer up (BEP 52).
    Hashes {
        /// The request answered.
        req: HashRequest,
        /// Base-layer hashes followed by uncles.
        hashes: Vec<Id32>,
    },
    /// id 23: the sender will not serve this hash request (BEP 52).
    HashReject(HashRequest),
    /// id 20: an extension message (BEP 10); id 0 is the extended handshake.
    Extended {
        /// The extension message id (from the receiver's `m` dictionary, 0 = handshake).
        id: u8,
        /// The payload after the extension id.
        payload: Bytes,
    },
    /// A message id shoal does not know; skipped, not fatal.
    Unknown {
        /// The id.
        id: u8,
        /// Its payload length.
        len: usize,
    },
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Message {
    /// The message id, or `None` for keep-alive.
    pub fn id(&self) -> Option<u8> {
        Some(match self {
            Message::KeepAlive => return None,
            Message::Choke => 0,
            Message::Unchoke => 1,
            Message::Interested => 2,
            Message::NotInterested => 3,
            Message::Have(_) => 4,
            Message::Bitfield(_) => 5,
            Message::Request(_) => 6,
            Message::Piece { .. } => 7,
            Message::Cancel(_) => 8,
            Message::Port(_) => 9,
            Message::Suggest(_) => 13,
            Message::HaveAll => 14,
            Message::HaveNone => 15,
            Message::Reject(_) => 16,
            Message::AllowedFast(_) => 17,
            Message::Extended { .. } => 20,
            Message::HashRequest(_) => 21,
            Message::Hashes { .. } => 22,
            Message::HashReject(_) => 23,
            Message::Unknown { id, .. } => *id,
        })
    }

    /// Bytes this message takes on the wire, length prefix included.
    pub fn wire_len(&self) -> usize {
        4 + match self {
            Message::KeepAlive => 0,
            Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => 1,
            Message::Have(_) | Message::Suggest(_) | Message::AllowedFast(_) => 5,
            Message::Bitfield(b) => 1 + b.len(),
            Message::Request(_) | Message::Cancel(_) | Message::Reject(_) => 13,
            Message::Piece { data, .. } => 9 + data.len(),
            Message::Port(_) => 3,
            Message::Extended { payload, .. } => 2 + payload.len(),
            Message::HashRequest(_) | Message::HashReject(_) => 1 + HASH_REQUEST_LEN,
            Message::Hashes { hashes, .. } => 1 + HASH_REQUEST_LEN + 32 * hashes.len(),
            Message::Unknown { len, .. } => 1 + len,
        }
    }

    /// Appends the message, with its 4-byte length prefix, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        if let Some(block) = self.encode_head(out) {
            out.extend_from_slice(block);
        }
    }

    /// Appends the message to `out` like [`encode`](Self::encode), except a `piece` message's
    /// block, which it returns instead: the caller sends it next, from where it already is
    /// (a vectored write), instead of copying it.
    pub fn encode_head(&self, out: &mut BytesMut) -> Option<&Bytes> {
        if let Message::Piece { piece, begin, data } = self {
            out.reserve(13);
            out.put_u32((self.wire_len() - 4) as u32);
            out.put_u8(7);
            out.put_u32(*piece);
            out.put_u32(*begin);
            return Some(data);
        }
        out.reserve(self.wire_len());
        out.put_u32((self.wire_len() - 4) as u32);
        let id = self.id()?;
        out.put_u8(id);
        match self {
            Message::Have(i) | Message::Suggest(i) | Message::AllowedFast(i) => out.put_u32(*i),
            Message::Bitfield(b) => out.extend_from_slice(b),
            Message::Request(r) | Message::Cancel(r) | Message::Reject(r) => {
                out.put_u32(r.piece);
                out.put_u32(r.begin);
                out.put_u32(r.length);
            }
            Message::Port(p) => out.put_u16(*p),
            Message::Extended { id, payload } => {
                out.put_u8(*id);
                out.extend_from_slice(payload);
            }
            Message::HashRequest(r) | Message::HashReject(r) => r.encode_into(out),
            Message::Hashes { req, hashes } => {
                req.encode_into(out);
                for h in hashes {
                    out.extend_from_slice(&h.0);
                }
            }
            Message::Unknown { len, .. } => out.put_bytes(0, *len),
            _ => {}
        }
        None
    }

    /// Decodes a message from its id and payload (the frame without the length prefix and id).
    pub fn decode(id: u8, payload: Bytes, limits: &Limits) -> Result<Message, WireError> {
        let len = payload.len();
        let expect = |want: usize| {
            if len == want {
                Ok(())
            } else {
                Err(WireError::BadLength { id, len })
            }
        };
        let block = |p: &[u8]| BlockRef {
            piece: u32_at(p, 0),
            begin: u32_at(p, 4),
            length: u32_at(p, 8),
        };
        Ok(match id {
            0 => expect(0).map(|_| Message::Choke)?,
            1 => expect(0).map(|_| Message::Unchoke)?,
            2 => expect(0).map(|_| Message::Interested)?,
            3 => expect(0).map(|_| Message::NotInterested)?,
            4 => expect(4).map(|_| Message::Have(u32_at(&payload, 0)))?,
            5 => {
                limits.check_bitfield(&payload)?;
                Message::Bitfield(payload)
            }
            6 => expect(12).map(|_| Message::Request(block(&payload)))?,
            7 => {
                if len < 8 {
                    return Err(WireError::BadLength { id, len });
                }
                if len - 8 > BLOCK_SIZE as usize {
                    return Err(WireError::BlockTooLarge(len - 8));
                }
                Message::Piece {
                    piece: u32_at(&payload, 0),
                    begin: u32_at(&payload, 4),
                    data: payload.slice(8..),
                }
            }
            8 => expect(12).map(|_| Message::Cancel(block(&payload)))?,
            9 => expect(2).map(|_| Message::Port(u16::from_be_bytes([payload[0], payload[1]])))?,
            13 => expect(4).map(|_| Message::Suggest(u32_at(&payload, 0)))?,
            14 => expect(0).map(|_| Message::HaveAll)?,
            15 => expect(0).map(|_| Message::HaveNone)?,
            16 => expect(12).map(|_| Message::Reject(block(&payload)))?,
            17 => expect(4).map(|_| Message::AllowedFast(u32_at(&payload, 0)))?,
            20 => {
                if len < 1 {
                    return Err(WireError::BadLength { id, len });
                }
                Message::Extended {
                    id: payload[0],
                    payload: payload.slice(1..),
                }
            }
            21 | 23 => {
                expect(HASH_REQUEST_LEN)?;
                let req =
                    HashRequest::decode_from(&payload).ok_or(WireError::BadLength { id, len })?;
                if id == 21 {
                    Message::HashRequest(req)
                } else {
                    Message::HashReject(req)
                }
            }
            22 => {
                let bad = WireError::BadLength { id, len };
                if len < HASH_REQUEST_LEN || !(len - HASH_REQUEST_LEN).is_multiple_of(32) {
                    return Err(bad);
                }
                let n = (len - HASH_REQUEST_LEN) / 32;
                if n as u64 > u64::from(MAX_HASH_COUNT + MAX_PROOF_HASHES) {
                    return Err(WireError::TooManyHashes(n));
                }
                let req = HashRequest::decode_from(&payload).ok_or(bad)?;
                let hashes = payload[HASH_REQUEST_LEN..]
                    .chunks_exact(32)
                    .filter_map(Id32::from_slice)
                    .collect();
                Message::Hashes { req, hashes }
            }
            _ => Message::Unknown { id, len },
        })
    }
}
