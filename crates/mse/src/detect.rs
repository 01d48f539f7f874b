//! One listening port for both kinds of peer: a plaintext BitTorrent handshake starts with
//! `\x13BitTorrent protocol`; anything else is taken for MSE's public key.

/// The 20 bytes that open a plaintext BitTorrent handshake.
pub const PLAINTEXT_PREFIX: &[u8; 20] = b"\x13BitTorrent protocol";

/// What the first bytes of an incoming connection say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A plaintext BitTorrent handshake.
    Plaintext,
    /// Not one: an MSE handshake (or garbage, which the MSE handshake will refuse).
    Encrypted,
    /// Every byte so far matches the plaintext prefix; read more.
    NeedMore,
}

/// Classifies an incoming connection from its first bytes (up to 20 are looked at). Decides as
/// soon as a byte differs, so an MSE peer is never made to wait for bytes it has not sent.
pub fn classify(first: &[u8]) -> Incoming {
    let n = first.len().min(PLAINTEXT_PREFIX.len());
    if first[..n] != PLAINTEXT_PREFIX[..n] {
        Incoming::Encrypted
    } else if n == PLAINTEXT_PREFIX.len() {
        Incoming::Plaintext
    } else {
        Incoming::NeedMore
    }
}
