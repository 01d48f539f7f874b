use std::fmt;
use std::str::FromStr;

use crate::{CoreError, Id20};

/// A 32-byte SHA-256 digest (BEP 52): a v2 info-hash, a file's merkle root (`pieces root`) or a
/// node of a merkle tree.
///
/// Displays as 64 lower-case hex digits. Where BEP 52 needs a 20-byte identifier (the handshake,
/// trackers, the DHT) it uses [`Id32::truncated`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id32(pub [u8; 32]);

impl Id32 {
    /// The digest of all zero bytes: the padding leaf of a merkle tree.
    pub const ZERO: Id32 = Id32([0; 32]);

    /// Takes the digest from a slice that must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Id32)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// True for the all-zero digest (which BEP 52 never uses as a file's root).
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }

    /// The first 20 bytes: the v2 info-hash as peers, trackers and the DHT see it (BEP 52).
    pub fn truncated(&self) -> Id20 {
        let mut out = [0u8; 20];
        out.copy_from_slice(&self.0[..20]);
        Id20(out)
    }

    /// 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
            s.push(char::from_digit((b & 0xf) as u32, 16).unwrap_or('0'));
        }
        s
    }

    /// Parses exactly 64 hex digits, upper or lower case.
    pub fn from_hex(s: &str) -> Result<Self, CoreError> {
        let bad = || CoreError::InvalidHex256(s.to_string());
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16).ok_or_else(bad)?;
            let lo = (pair[1] as char).to_digit(16).ok_or_else(bad)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Ok(Id32(out))
    }
}

impl fmt::Display for Id32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id32({})", self.to_hex())
    }
}

impl FromStr for Id32 {
    type Err = CoreError;

    /// Accepts 64 hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Id32::from_hex(s)
    }
}

impl From<[u8; 32]> for Id32 {
    fn from(b: [u8; 32]) -> Self {
        Id32(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hex_and_truncation() {
        let hex = "518fbaf39b37020c896e8768a967da6d76bbd5ef7a02c761021b65a72c6cfa11";
        let id: Id32 = hex.parse().unwrap();
        assert_eq!(id.0[0], 0x51);
        assert_eq!(id.0[31], 0x11);
        assert_eq!(id.to_string(), hex);
        assert_eq!(Id32::from_hex(&hex.to_uppercase()).unwrap(), id);
        assert_eq!(
            id.truncated().to_hex(),
            "518fbaf39b37020c896e8768a967da6d76bbd5ef"
        );
        assert!(Id32::ZERO.is_zero() && !id.is_zero());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Id32::from_hex("ab").is_err());
        assert!(Id32::from_hex(&"g".repeat(64)).is_err());
        assert!(Id32::from_hex(&"é".repeat(32)).is_err());
        assert!(Id32::from_slice(&[0; 31]).is_none());
    }

    proptest! {
        #[test]
        fn round_trips(bytes in any::<[u8; 32]>()) {
            let id = Id32(bytes);
            prop_assert_eq!(Id32::from_hex(&id.to_hex()).unwrap(), id);
        }

        #[test]
        fn parse_never_panics(s in ".{0,70}") {
            let _ = s.parse::<Id32>();
        }
    }
}
