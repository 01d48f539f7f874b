use thiserror::Error;

/// What the picker refuses. Every variant is the caller's (or the remote peer's) mistake, never an
/// internal one: the engine usually answers by dropping the peer that sent the bad input.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PickerError {
    /// Piece count, piece length and total length do not describe one torrent.
    #[error("inconsistent torrent geometry: {pieces} pieces of {piece_len} bytes cannot hold {total_len} bytes")]
    InvalidLayout {
        /// Piece count given.
        pieces: u32,
        /// Piece length given.
        piece_len: u32,
        /// Total length given.
        total_len: u64,
    },
    /// A piece index at or past the piece count.
    #[error("piece {0} is out of range")]
    PieceOutOfRange(u32),
    /// A block index past the end of its piece.
    #[error("block {index} of piece {piece} is out of range")]
    BlockOutOfRange {
        /// The piece.
        piece: u32,
        /// The block index inside the piece.
        index: u32,
    },
    /// A bitfield message of the wrong size (BEP 3: drop the connection).
    #[error("bitfield has {got} bytes, expected {expected}")]
    BitfieldLength {
        /// Bytes received.
        got: usize,
        /// Bytes expected for this torrent's piece count.
        expected: usize,
    },
    /// A bitfield with spare bits set after the last piece (BEP 3: drop the connection).
    #[error("bitfield has spare bits set past the last piece")]
    BitfieldSpareBits,
    /// A peer that was never added with `add_peer`, or was removed.
    #[error("unknown peer")]
    UnknownPeer,
    /// A priority above [`MAX_PRIORITY`](crate::MAX_PRIORITY).
    #[error("priority {0} is above the maximum of 7")]
    PriorityOutOfRange(u8),
    /// The piece has no download state (not started, or already verified).
    #[error("piece {0} is not being downloaded")]
    PieceNotInProgress(u32),
}
