use thiserror::Error;

/// Errors from decoding the shared encodings of this crate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoreError {
    /// A hex id did not have exactly 40 hex digits.
    #[error("invalid hex id: expected 40 hex digits, got {0:?}")]
    InvalidHex(String),
    /// A SHA-256 digest in hex did not have exactly 64 hex digits.
    #[error("invalid hex digest: expected 64 hex digits, got {0:?}")]
    InvalidHex256(String),
    /// A base32 id did not have exactly 32 base32 characters.
    #[error("invalid base32 id: expected 32 characters of A-Z and 2-7, got {0:?}")]
    InvalidBase32(String),
    /// A string was neither a 40-digit hex nor a 32-character base32 id.
    #[error("invalid id {0:?}: expected 40 hex digits or 32 base32 characters")]
    InvalidId(String),
    /// A byte slice had the wrong length for the encoding.
    #[error("{what}: length {len} is not a multiple of {unit}")]
    BadLength {
        /// What was being decoded.
        what: &'static str,
        /// The length seen.
        len: usize,
        /// The record size it must be a multiple of.
        unit: usize,
    },
}
