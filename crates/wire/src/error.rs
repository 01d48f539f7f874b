use thiserror::Error;

/// Why bytes from a peer were refused. Any of these ends the connection with that peer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The handshake does not start with `\x13BitTorrent protocol`.
    #[error("not a BitTorrent handshake")]
    BadProtocol,
    /// A length prefix above what any legal message needs.
    #[error("message length {len} exceeds the limit {limit} for this peer")]
    TooLong {
        /// The announced length.
        len: u32,
        /// The largest allowed.
        limit: u32,
    },
    /// A message whose payload has the wrong size for its id.
    #[error("message id {id} has a payload of {len} bytes, which is invalid")]
    BadLength {
        /// Message id.
        id: u8,
        /// Payload length seen.
        len: usize,
    },
    /// A bitfield of the wrong length or with spare bits set.
    #[error("bitfield of {len} bytes is invalid for {pieces} pieces")]
    BadBitfield {
        /// Bytes received.
        len: usize,
        /// Pieces in the torrent.
        pieces: u32,
    },
    /// A piece message carrying more than one block.
    #[error("piece message carries {0} bytes, more than a 16 KiB block")]
    BlockTooLarge(usize),
    /// A `hashes` message carrying more hashes than any request may ask for.
    #[error("hashes message carries {0} hashes, more than any request may ask for")]
    TooManyHashes(usize),
    /// An extension message that is not valid bencode or lacks required keys.
    #[error("invalid extension message: {0}")]
    BadExtended(String),
}
