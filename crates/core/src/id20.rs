use std::fmt;
use std::str::FromStr;

use crate::CoreError;

/// A 20-byte identifier: an info-hash (SHA-1 of the info dict), a peer id or a DHT node id.
///
/// Displays as 40 lower-case hex digits. Parses from hex (either case) or from the 32-character
/// base32 form that old magnet links use. Ordering is byte-wise, which is also the order of the
/// numbers the DHT's XOR metric compares.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id20(pub [u8; 20]);

const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

impl Id20 {
    /// The id of all zero bytes.
    pub const ZERO: Id20 = Id20([0; 20]);

    /// Wraps raw bytes.
    pub const fn new(bytes: [u8; 20]) -> Self {
        Id20(bytes)
    }

    /// Takes the id from a slice that must be exactly 20 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 20]>::try_from(bytes).ok().map(Id20)
    }

    /// A uniformly random id.
    pub fn random() -> Self {
        Id20(rand::random())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// 40 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(40);
        for b in self.0 {
            s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
            s.push(char::from_digit((b & 0xf) as u32, 16).unwrap_or('0'));
        }
        s
    }

    /// Parses exactly 40 hex digits, upper or lower case.
    pub fn from_hex(s: &str) -> Result<Self, CoreError> {
        let bytes = s.as_bytes();
        if bytes.len() != 40 {
            return Err(CoreError::InvalidHex(s.to_string()));
        }
        let mut out = [0u8; 20];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16);
            let lo = (pair[1] as char).to_digit(16);
            match (hi, lo) {
                (Some(h), Some(l)) => out[i] = (h * 16 + l) as u8,
                _ => return Err(CoreError::InvalidHex(s.to_string())),
            }
        }
        Ok(Id20(out))
    }

    /// 32 upper-case RFC 4648 base32 characters (no padding: 160 bits fit exactly).
    pub fn to_base32(&self) -> String {
        let mut s = String::with_capacity(32);
        for chunk in self.0.chunks_exact(5) {
            let mut acc: u64 = 0;
            for &b in chunk {
                acc = (acc << 8) | b as u64;
            }
            for i in (0..8).rev() {
                s.push(BASE32_ALPHABET[((acc >> (i * 5)) & 31) as usize] as char);
            }
        }
        s
    }

    /// Parses 32 base32 characters (either case), as in `urn:btih:` magnet links.
    pub fn from_base32(s: &str) -> Result<Self, CoreError> {
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return Err(CoreError::InvalidBase32(s.to_string()));
        }
        let mut out = [0u8; 20];
        for (i, chunk) in bytes.chunks_exact(8).enumerate() {
            let mut acc: u64 = 0;
            for &c in chunk {
                let v = match c.to_ascii_uppercase() {
                    c @ b'A'..=b'Z' => c - b'A',
                    c @ b'2'..=b'7' => c - b'2' + 26,
                    _ => return Err(CoreError::InvalidBase32(s.to_string())),
                };
                acc = (acc << 5) | v as u64;
            }
            for j in 0..5 {
                out[i * 5 + j] = (acc >> ((4 - j) * 8)) as u8;
            }
        }
        Ok(Id20(out))
    }

    /// XOR distance to another id (the DHT metric).
    pub fn distance(&self, other: &Id20) -> Id20 {
        let mut out = [0u8; 20];
        for (o, (a, b)) in out.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            *o = a ^ b;
        }
        Id20(out)
    }

    /// Number of leading zero bits (160 for the zero id). For a distance, this is the length of the
    /// common prefix of the two ids, i.e. the routing-table bucket index.
    pub fn leading_zeros(&self) -> u32 {
        let mut n = 0;
        for b in self.0 {
            if b == 0 {
                n += 8;
            } else {
                return n + b.leading_zeros();
            }
        }
        n
    }
}

impl fmt::Display for Id20 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id20 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id20({})", self.to_hex())
    }
}

impl FromStr for Id20 {
    type Err = CoreError;

    /// Accepts 40 hex digits or 32 base32 characters.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.len() {
            40 => Id20::from_hex(s),
            32 => Id20::from_base32(s),
            _ => Err(CoreError::InvalidId(s.to_string())),
        }
    }
}

impl From<[u8; 20]> for Id20 {
    fn from(b: [u8; 20]) -> Self {
        Id20(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hex_known_value() {
        let id = Id20::from_hex("d460b8af98f716752723c9fa5b0b57995ee43085").unwrap();
        assert_eq!(id.0[0], 0xd4);
        assert_eq!(id.0[19], 0x85);
        assert_eq!(id.to_string(), "d460b8af98f716752723c9fa5b0b57995ee43085");
        assert_eq!(
            Id20::from_hex("D460B8AF98F716752723C9FA5B0B57995EE43085").unwrap(),
            id
        );
    }

    #[test]
    fn base32_known_value() {
        // RFC 4648 test vector "foobar" extended: check the alphabet with a simple value.
        let mut b = [0u8; 20];
        b[0] = 0xff;
        let id = Id20(b);
        assert!(id.to_base32().starts_with("74"));
        assert_eq!(Id20::from_base32(&id.to_base32()).unwrap(), id);
        assert_eq!(Id20::ZERO.to_base32(), "A".repeat(32));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Id20::from_hex("zz").is_err());
        assert!(Id20::from_hex(&"g".repeat(40)).is_err());
        assert!(Id20::from_base32(&"1".repeat(32)).is_err());
        assert!("abc".parse::<Id20>().is_err());
        // a multi-byte char must not panic the slicing
        assert!(Id20::from_hex(&"é".repeat(20)).is_err());
    }

    #[test]
    fn distance_and_prefix() {
        let a = Id20::ZERO;
        let mut b = [0u8; 20];
        b[2] = 0x10;
        assert_eq!(a.distance(&Id20(b)).leading_zeros(), 19);
        assert_eq!(Id20::ZERO.leading_zeros(), 160);
    }

    proptest! {
        #[test]
        fn round_trips(bytes in any::<[u8; 20]>()) {
            let id = Id20(bytes);
            prop_assert_eq!(Id20::from_hex(&id.to_hex()).unwrap(), id);
            prop_assert_eq!(Id20::from_base32(&id.to_base32()).unwrap(), id);
            prop_assert_eq!(id.to_base32().to_lowercase().parse::<Id20>().unwrap(), id);
        }

        #[test]
        fn parse_never_panics(s in ".{0,50}") {
            let _ = s.parse::<Id20>();
        }
    }
}
