use thiserror::Error;

/// Why an MSE handshake failed. Each ends the connection; none is a panic, whatever the peer sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MseError {
    /// The peer's public key is 0, 1, P-1 or not below P.
    #[error("peer sent a degenerate Diffie-Hellman public key")]
    BadPublicKey,
    /// Initiator: the peer answered with a plaintext BitTorrent handshake instead of its key
    /// (it does not speak MSE).
    #[error("peer answered with a plaintext BitTorrent handshake")]
    PlaintextAnswer,
    /// Receiver: `HASH('req1', S)` did not appear within PadA's 512 bytes after the key.
    #[error("no synchronisation hash within {limit} bytes after the public key")]
    SyncNotFound {
        /// Bytes scanned.
        limit: usize,
    },
    /// Initiator: the encrypted verification constant did not appear within PadB's 512 bytes.
    #[error("no verification constant within {limit} bytes after the public key")]
    VcNotFound {
        /// Bytes scanned.
        limit: usize,
    },
    /// Receiver: `req2 xor req3` matches none of our torrents.
    #[error("peer asked for a torrent we do not have")]
    UnknownTorrent,
    /// Receiver: the decrypted verification constant is not eight zeros (wrong keys).
    #[error("verification constant does not decrypt to zeros")]
    BadVerificationConstant,
    /// Receiver: nothing in `crypto_provide` is allowed by our policy.
    #[error("peer offers crypto {provide:#x}, none of which our policy allows")]
    NoCommonMethod {
        /// The peer's `crypto_provide`.
        provide: u32,
    },
    /// Initiator: `crypto_select` is not exactly one of the methods we offered.
    #[error("peer selected crypto {select:#x}, not one of the {provide:#x} we offered")]
    BadSelect {
        /// The peer's `crypto_select`.
        select: u32,
        /// What we offered.
        provide: u32,
    },
    /// PadC or PadD is announced longer than 512 bytes.
    #[error("padding of {len} bytes exceeds the 512 allowed")]
    PadTooLong {
        /// The announced length.
        len: usize,
    },
    /// Input after the handshake finished, or a finished handshake asked to go on.
    #[error("the handshake is already over")]
    Finished,
}
