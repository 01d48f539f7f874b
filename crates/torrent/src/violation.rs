//! Why a connection ends: typed, so the driver can log it, the status can count it, and tests
//! can assert on it (rustls's `PeerMisbehaved` is the model).

use std::fmt;

/// Something a peer did that the protocol does not allow. The connection is closed for it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerViolation {
    /// A `have` for a piece index out of range.
    #[error("have for piece {0}, out of range")]
    HaveOutOfRange(u32),
    /// A bitfield of the wrong length or with spare bits set.
    #[error("bad bitfield: {0}")]
    BadBitfield(String),
    /// A second bitfield, `have_all` or `have_none` (BEP 3/6: only as the first message).
    #[error("a second bitfield")]
    SecondBitfield,
    /// A BEP 6 message from a peer that did not announce the fast extension.
    #[error("fast-extension message without the fast extension")]
    FastWithoutExtension,
    /// A request for a block that does not exist in the torrent.
    #[error("invalid request: piece {piece} offset {begin} length {length}")]
    InvalidRequest {
        /// Piece index.
        piece: u32,
        /// Offset in the piece.
        begin: u32,
        /// Length asked for.
        length: u32,
    },
    /// `allowed_fast` for a piece out of range.
    #[error("allowed-fast for piece {0}, out of range")]
    AllowedFastOutOfRange(u32),
    /// A block that is not a valid block of the torrent (offset, size, piece index).
    #[error("invalid block: piece {piece} offset {begin} length {length}")]
    InvalidBlock {
        /// Piece index.
        piece: u32,
        /// Offset in the piece.
        begin: u32,
        /// Bytes sent.
        length: u32,
    },
    /// Too many blocks we never asked this peer for.
    #[error("{0} blocks we never asked for")]
    Unsolicited(u32),
    /// A malformed extension message (extended handshake, `ut_metadata`, `ut_pex`).
    #[error("bad extension message: {0}")]
    BadExtension(String),
}

/// Why the machine closed a connection, or why the driver says it closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer broke the protocol.
    Violation(PeerViolation),
    /// The peer closed the connection (EOF).
    ClosedByPeer,
    /// A read or write failed, or the framing was invalid (from the driver).
    Io(String),
    /// The peer did not read what we sent: its send queue stayed full.
    NotReading,
    /// Nothing at all from the peer (not even a keep-alive) for too long.
    Idle,
    /// Snubbed and still silent long after.
    SnubbedAndSilent,
    /// Its IP is banned for sending data that failed the hash check.
    Banned,
    /// We connected to ourselves.
    SelfConnection,
    /// Already connected to this peer id.
    Duplicate,
    /// The torrent has as many peers as allowed.
    TooManyPeers,
    /// The torrent stopped.
    Shutdown,
}

impl CloseReason {
    /// Whether the peer is to blame (counts in the status' violations).
    pub fn is_violation(&self) -> bool {
        matches!(self, CloseReason::Violation(_))
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Violation(v) => write!(f, "protocol violation: {v}"),
            CloseReason::ClosedByPeer => f.write_str("closed by peer"),
            CloseReason::Io(e) => write!(f, "{e}"),
            CloseReason::NotReading => f.write_str("send queue full (peer not reading)"),
            CloseReason::Idle => f.write_str("silent for too long"),
            CloseReason::SnubbedAndSilent => f.write_str("snubbed and silent"),
            CloseReason::Banned => f.write_str("banned"),
            CloseReason::SelfConnection => f.write_str("connected to ourselves"),
            CloseReason::Duplicate => f.write_str("already connected to this peer"),
            CloseReason::TooManyPeers => f.write_str("too many peers"),
            CloseReason::Shutdown => f.write_str("torrent stopped"),
        }
    }
}

impl From<PeerViolation> for CloseReason {
    fn from(v: PeerViolation) -> Self {
        CloseReason::Violation(v)
    }
}
