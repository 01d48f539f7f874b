//! BEP 44 items: targets, the signed buffer, signature checks, and the canonical-bencode check
//! of values. Pure functions, so the storage node ([`crate::item_store`]) and a requesting node
//! check items the same way.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_bencode::value::Value;
use sha1::{Digest, Sha1};
use shoal_core::Id20;
use shoal_metainfo::bencode;

use crate::krpc::{MutableItem, MAX_SALT};

/// Largest bencoded value stored (BEP 44: "storing nodes MAY reject ... longer than 1000
/// bytes").
pub const MAX_VALUE: usize = 1000;
/// Nesting allowed inside a value.
const MAX_VALUE_DEPTH: usize = 8;

/// Why a `put` is refused, with the BEP 44 error code it is answered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutError {
    /// 203: the value is not canonical bencode.
    BadValue,
    /// 205: `v` is over [`MAX_VALUE`] bytes.
    ValueTooBig,
    /// 206: the signature does not verify (or the key is not a valid point).
    BadSignature,
    /// 207: `salt` is over 64 bytes.
    SaltTooBig,
    /// 301: `cas` does not match the stored `seq`.
    CasMismatch,
    /// 302: `seq` is lower than the stored one.
    SeqTooLow,
    /// 203: a bad write token.
    BadToken,
    /// 203: a negative sequence number.
    BadSeq,
}

impl PutError {
    /// The KRPC error code (BEP 5 and BEP 44).
    pub fn code(self) -> i64 {
        match self {
            PutError::BadValue | PutError::BadToken | PutError::BadSeq => 203,
            PutError::ValueTooBig => 205,
            PutError::BadSignature => 206,
            PutError::SaltTooBig => 207,
            PutError::CasMismatch => 301,
            PutError::SeqTooLow => 302,
        }
    }

    /// The error text sent back.
    pub fn message(self) -> &'static str {
        match self {
            PutError::BadValue => "invalid bencoding of v",
            PutError::ValueTooBig => "message (v field) too big",
            PutError::BadSignature => "invalid signature",
            PutError::SaltTooBig => "salt (salt field) too big",
            PutError::CasMismatch => "CAS mismatch, re-read value and try again",
            PutError::SeqTooLow => "sequence number less than current",
            PutError::BadToken => "bad token",
            PutError::BadSeq => "invalid sequence number",
        }
    }
}

/// The target of an immutable item: SHA-1 of its bencoded value.
pub fn immutable_target(value: &[u8]) -> Id20 {
    Id20(Sha1::digest(value).into())
}

/// The target of a mutable item: SHA-1 of the public key followed by the salt.
pub fn mutable_target(key: &[u8; 32], salt: &[u8]) -> Id20 {
    let mut h = Sha1::new();
    h.update(key);
    h.update(salt);
    Id20(h.finalize().into())
}

/// The bytes a mutable item's signature covers: (`4:salt` salt) `3:seqi` seq `e1:v` value.
pub fn signed_buffer(salt: &[u8], seq: i64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + salt.len() + 32);
    if !salt.is_empty() {
        out.extend_from_slice(b"4:salt");
        out.extend_from_slice(salt.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(salt);
    }
    out.extend_from_slice(format!("3:seqi{seq}e1:v").as_bytes());
    out.extend_from_slice(value);
    out
}

/// True if `sig` is `key`'s ed25519 signature of the item's signed buffer. Keys that are not
/// valid curve points and weak (small-order) keys are refused.
pub fn verify(key: &[u8; 32], sig: &[u8; 64], salt: &[u8], seq: i64, value: &[u8]) -> bool {
    let Ok(vk) = VerifyingKey::from_bytes(key) else {
        return false;
    };
    if vk.is_weak() {
        return false;
    }
    let sig = Signature::from_bytes(sig);
    vk.verify(&signed_buffer(salt, seq, value), &sig).is_ok()
}

/// True if `value` is one bencoded value in canonical form (dictionary keys sorted and unique,
/// nothing after it), as BEP 44 requires of a stored value.
pub fn is_canonical(value: &[u8]) -> bool {
    let Ok(scanned) = bencode::scan_prefix(value, 0, MAX_VALUE_DEPTH) else {
        return false;
    };
    if scanned.span.end != value.len() {
        return false;
    }
    // The scanner bounded the depth, so this recursion is bounded too.
    let Ok(decoded) = serde_bencode::from_bytes::<Value>(value) else {
        return false;
    };
    let mut out = Vec::with_capacity(value.len());
    encode_sorted(&decoded, &mut out);
    out == value
}

fn encode_sorted(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
        Value::Bytes(b) => {
            out.extend_from_slice(b.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(b);
        }
        Value::List(l) => {
            out.push(b'l');
            for x in l {
                encode_sorted(x, out);
            }
            out.push(b'e');
        }
        Value::Dict(d) => {
            let mut keys: Vec<&Vec<u8>> = d.keys().collect();
            keys.sort();
            out.push(b'd');
            for k in keys {
                encode_sorted(&Value::Bytes(k.clone()), out);
                encode_sorted(&d[k], out);
            }
            out.push(b'e');
        }
    }
}

/// Checks what a `put` carries that needs no stored state: value size and form, salt size,
/// `seq` range and the signature of a mutable item. Returns the item's target.
pub fn check_put(value: &[u8], mutable: Option<&MutableItem>) -> Result<Id20, PutError> {
    if value.len() > MAX_VALUE {
        return Err(PutError::ValueTooBig);
    }
    if !is_canonical(value) {
        return Err(PutError::BadValue);
    }
    match mutable {
        None => Ok(immutable_target(value)),
        Some(m) => {
            if m.salt.len() > MAX_SALT {
                return Err(PutError::SaltTooBig);
            }
            if m.seq < 0 {
                return Err(PutError::BadSeq);
            }
            if !verify(&m.key, &m.sig, &m.salt, m.seq, value) {
                return Err(PutError::BadSignature);
            }
            Ok(mutable_target(&m.key, &m.salt))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    const PUBLIC: &str = "77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548";

    fn key() -> [u8; 32] {
        hex(PUBLIC).try_into().unwrap()
    }

    #[test]
    fn bep44_vector_1_mutable() {
        let value = b"12:Hello World!";
        assert_eq!(signed_buffer(b"", 1, value), b"3:seqi1e1:v12:Hello World!");
        let sig: [u8; 64] = hex(
            "305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff
             1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01",
        )
        .try_into()
        .unwrap();
        assert!(verify(&key(), &sig, b"", 1, value));
        assert_eq!(
            mutable_target(&key(), b"").to_hex(),
            "4a533d47ec9c7d95b1ad75f576cffc641853b750"
        );
        // Another seq, value or key fails.
        assert!(!verify(&key(), &sig, b"", 2, value));
        assert!(!verify(&key(), &sig, b"", 1, b"12:Hello World?"));
        let mut other = key();
        other[0] ^= 1;
        assert!(!verify(&other, &sig, b"", 1, value));
    }

    #[test]
    fn bep44_vector_2_mutable_with_salt() {
        let value = b"12:Hello World!";
        assert_eq!(
            signed_buffer(b"foobar", 1, value),
            b"4:salt6:foobar3:seqi1e1:v12:Hello World!"
        );
        let sig: [u8; 64] = hex(
            "6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17d
             df9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08",
        )
        .try_into()
        .unwrap();
        assert!(verify(&key(), &sig, b"foobar", 1, value));
        assert!(!verify(&key(), &sig, b"", 1, value));
        assert_eq!(
            mutable_target(&key(), b"foobar").to_hex(),
            "411eba73b6f087ca51a3795d9c8c938d365e32c1"
        );
    }

    #[test]
    fn bep44_vector_3_immutable() {
        assert_eq!(
            immutable_target(b"12:Hello World!").to_hex(),
            "e5f96f6f38320f0f33959cb4d3d656452117aadb"
        );
    }

    #[test]
    fn canonical_values() {
        assert!(is_canonical(b"12:Hello World!"));
        assert!(is_canonical(b"i-3e"));
        assert!(is_canonical(b"d1:ai1e1:bli2eee"));
        // Unsorted or repeated keys, trailing bytes, bad integers.
        assert!(!is_canonical(b"d1:bi1e1:ai1ee"));
        assert!(!is_canonical(b"d1:ai1e1:ai1ee"));
        assert!(!is_canonical(b"i1ei2e"));
        assert!(!is_canonical(b"i01e"));
        assert!(!is_canonical(b""));
        assert!(!is_canonical(&[b'l'; 50]));
    }

    #[test]
    fn check_put_limits() {
        assert_eq!(
            check_put(b"12:Hello World!", None),
            Ok(immutable_target(b"12:Hello World!"))
        );
        let big = format!("1000:{}", "x".repeat(1000));
        assert_eq!(check_put(big.as_bytes(), None), Err(PutError::ValueTooBig));
        assert_eq!(check_put(b"d1:bi1e1:ai1ee", None), Err(PutError::BadValue));
        let m = MutableItem {
            key: key(),
            sig: [0; 64],
            seq: 1,
            salt: vec![0; 65],
            cas: None,
        };
        assert_eq!(check_put(b"i1e", Some(&m)), Err(PutError::SaltTooBig));
        let m = MutableItem {
            salt: Vec::new(),
            ..m
        };
        assert_eq!(check_put(b"i1e", Some(&m)), Err(PutError::BadSignature));
        // A zero key is a small-order point: refused whatever the signature.
        let m = MutableItem { key: [0; 32], ..m };
        assert_eq!(check_put(b"i1e", Some(&m)), Err(PutError::BadSignature));
    }
}
