//! MSE/PE, Message Stream Encryption (also "Protocol Encryption"): the obfuscated handshake
//! most BitTorrent clients speak, and the RC4 stream after it. No BEP describes it; libtorrent,
//! Transmission and Vuze agree on it, and interop with libtorrent pins every constant here.
//!
//! Sans-IO, like `shoal-wire`: [`Handshake`] takes received bytes and returns bytes to send,
//! for either role, under hard bounds on everything it buffers; [`Cipher`] then encrypts and
//! decrypts in place. [`classify`] tells a plaintext BitTorrent handshake from an MSE one on
//! a shared listening port. The protocol hides BitTorrent from traffic shaping; with RC4 and a
//! 768-bit group it is obfuscation, not security.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cipher;
mod detect;
mod dh;
mod error;
mod handshake;
mod policy;

pub use cipher::{Cipher, CryptoMethod, HalfCipher, Rc4Stream, DISCARD};
pub use detect::{classify, Incoming, PLAINTEXT_PREFIX};
pub use dh::{KeyPair, KEY_LEN, PRIME, PRIVATE_LEN};
pub use error::MseError;
pub use handshake::{
    req2_hash, Established, Handshake, MAX_PAD, REQ1_SCAN_LIMIT, VC, VC_SCAN_LIMIT,
};
pub use policy::{Encryption, EncryptionPolicy, UnknownPolicy};

#[cfg(test)]
mod tests;
