//! Diffie–Hellman over MSE's 768-bit group: key pairs and the shared secret `S`.

use num_bigint::BigUint;
use rand::Rng;

use crate::MseError;

/// Bytes in a public key or in the shared secret on the wire: the prime's size.
pub const KEY_LEN: usize = 96;

/// The 768-bit prime `P` of MSE, big-endian (the same bytes as libtorrent's `dh_prime` and
/// Transmission's; its low words differ from RFC 2409's group 1). The generator is 2.
pub const PRIME: [u8; KEY_LEN] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC9, 0x0F, 0xDA, 0xA2, 0x21, 0x68, 0xC2, 0x34,
    0xC4, 0xC6, 0x62, 0x8B, 0x80, 0xDC, 0x1C, 0xD1, 0x29, 0x02, 0x4E, 0x08, 0x8A, 0x67, 0xCC, 0x74,
    0x02, 0x0B, 0xBE, 0xA6, 0x3B, 0x13, 0x9B, 0x22, 0x51, 0x4A, 0x08, 0x79, 0x8E, 0x34, 0x04, 0xDD,
    0xEF, 0x95, 0x19, 0xB3, 0xCD, 0x3A, 0x43, 0x1B, 0x30, 0x2B, 0x0A, 0x6D, 0xF2, 0x5F, 0x14, 0x37,
    0x4F, 0xE1, 0x35, 0x6D, 0x6D, 0x51, 0xC2, 0x45, 0xE4, 0x85, 0xB5, 0x76, 0x62, 0x5E, 0x7E, 0xC6,
    0xF4, 0x4C, 0x42, 0xE9, 0xA6, 0x3A, 0x36, 0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x05, 0x63,
];

/// Bytes of a private key: 160 bits, the minimum the protocol asks for. Longer keys cost more
/// per handshake and buy nothing against a 768-bit group.
pub const PRIVATE_LEN: usize = 20;

/// One side's Diffie–Hellman key pair.
#[derive(Clone)]
pub struct KeyPair {
    private: BigUint,
    public: [u8; KEY_LEN],
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of logs.
        f.debug_struct("KeyPair").finish_non_exhaustive()
    }
}

fn prime() -> BigUint {
    BigUint::from_bytes_be(&PRIME)
}

/// `n` as exactly 96 big-endian bytes (leading zeros kept: the wire format is fixed-size).
fn to_fixed(n: &BigUint) -> [u8; KEY_LEN] {
    let bytes = n.to_bytes_be();
    let mut out = [0u8; KEY_LEN];
    // n < P < 2^768, so it always fits.
    out[KEY_LEN - bytes.len()..].copy_from_slice(&bytes);
    out
}

impl KeyPair {
    /// A fresh random key pair.
    pub fn generate<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut secret = [0u8; PRIVATE_LEN];
        rng.fill_bytes(&mut secret);
        Self::from_private(&secret)
    }

    /// The key pair of a given private key (big-endian); for known-answer tests.
    pub fn from_private(secret: &[u8]) -> Self {
        let private = BigUint::from_bytes_be(secret);
        let public = to_fixed(&BigUint::from(2u32).modpow(&private, &prime()));
        KeyPair { private, public }
    }

    /// `Y = 2^X mod P`, as sent on the wire.
    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    /// The shared secret `S = Y_other^X mod P`. A public key outside `2..=P-2` is refused:
    /// 0, 1 and P-1 would force a secret anyone can guess.
    pub fn shared_secret(&self, theirs: &[u8; KEY_LEN]) -> Result<[u8; KEY_LEN], MseError> {
        let p = prime();
        let y = BigUint::from_bytes_be(theirs);
        if y < BigUint::from(2u32) || y >= &p - 1u32 {
            return Err(MseError::BadPublicKey);
        }
        Ok(to_fixed(&y.modpow(&self.private, &p)))
    }
}
