use thiserror::Error;

/// Why a datagram is not a uTP packet. Parsing never panics; every malformed input maps to one
/// of these, and the datagram is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PacketError {
    /// Fewer bytes than the 20-byte header.
    #[error("datagram of {len} bytes is shorter than the 20-byte uTP header")]
    TooShort {
        /// The datagram's length.
        len: usize,
    },
    /// The version nibble is not 1.
    #[error("unsupported uTP version {0} (only version 1 exists)")]
    Version(u8),
    /// The type nibble is not one of ST_DATA .. ST_SYN.
    #[error("unknown uTP packet type {0}")]
    Type(u8),
    /// An extension header or its body runs past the end of the datagram.
    #[error("extension header truncated at byte {offset}")]
    ExtensionTruncated {
        /// Where the truncated extension starts.
        offset: usize,
    },
    /// A selective ACK whose length is zero or not a multiple of 4 (BEP 29).
    #[error("selective ACK of {len} bytes (must be a non-zero multiple of 4)")]
    SackLength {
        /// The announced length.
        len: usize,
    },
    /// Two selective ACK extensions in one packet.
    #[error("two selective ACK extensions in one packet")]
    DuplicateSack,
    /// The extension chain is longer than [`crate::packet::MAX_EXTENSIONS`].
    #[error("more than {max} extensions in one packet")]
    TooManyExtensions {
        /// The bound.
        max: usize,
    },
}

/// Errors of the connection and the multiplexer: a bound reached, a call in the wrong state, or
/// a peer that broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UtpError {
    /// A datagram did not parse.
    #[error("malformed uTP packet: {0}")]
    Packet(#[from] PacketError),
    /// The multiplexer already holds its maximum number of connections.
    #[error("too many uTP connections (limit {max})")]
    ConnectionLimit {
        /// The bound.
        max: usize,
    },
    /// Too many accepted connections are still half-open (a SYN flood, or a slow network).
    #[error("too many half-open uTP connections (limit {max})")]
    HalfOpenLimit {
        /// The bound.
        max: usize,
    },
    /// No free connection id for this peer (all tried ids were taken).
    #[error("no free uTP connection id for this peer")]
    NoConnectionId,
    /// The connection handle does not name a live connection.
    #[error("unknown uTP connection")]
    UnknownConnection,
    /// The operation is not allowed in the connection's current state (for instance `write`
    /// after `close`).
    #[error("uTP connection is {state}, cannot {op}")]
    InvalidState {
        /// The state the connection is in.
        state: &'static str,
        /// What was attempted.
        op: &'static str,
    },
    /// The peer acknowledged a packet we never sent.
    #[error("peer acknowledged sequence number {ack_nr}, which was never sent")]
    AckOutOfWindow {
        /// The offending `ack_nr`.
        ack_nr: u16,
    },
    /// The peer sent data after its FIN.
    #[error("peer sent packet {seq_nr} after its FIN ({eof})")]
    DataAfterFin {
        /// The offending sequence number.
        seq_nr: u16,
        /// The FIN's sequence number.
        eof: u16,
    },
}
