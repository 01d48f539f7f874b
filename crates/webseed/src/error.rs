//! What can go wrong with a web seed.

use std::time::Duration;

/// A web seed's failure, in words for the status line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebSeedError {
    /// The `url-list` entry is not a usable URL.
    #[error("bad web seed URL: {0}")]
    Url(String),
    /// The host name did not resolve.
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// Connecting, TLS, or the connection broke.
    #[error("{0}")]
    Io(String),
    /// The server answered with an error status.
    #[error("HTTP status {status}")]
    Status {
        /// The status code.
        status: u16,
        /// How long the server asked us to wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// A `206` for another range than the one asked, or without a readable `Content-Range`.
    #[error("bad range answer: {0}")]
    BadRange(String),
    /// The file on the server is not the size the torrent says.
    #[error("the file on the server is {got} bytes, the torrent says {expected}")]
    WrongSize {
        /// Size in the torrent.
        expected: u64,
        /// Size the server gave.
        got: u64,
    },
    /// The server ignores range requests (answers `200` with the whole file).
    #[error("the server ignores range requests")]
    NoRanges,
    /// The body ended before the range did.
    #[error("the answer ended after {got} of {expected} bytes")]
    ShortBody {
        /// Bytes expected.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// More than [`crate::fetch::MAX_REDIRECTS`] redirects, or one to an unusable URL.
    #[error("redirect: {0}")]
    Redirect(String),
    /// The server took too long.
    #[error("timed out {0}")]
    Timeout(&'static str),
}

impl WebSeedError {
    /// The wait the server asked for, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            WebSeedError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether trying again cannot help (the URL is unusable or the server's file is wrong).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            WebSeedError::Url(_) | WebSeedError::WrongSize { .. } | WebSeedError::NoRanges
        )
    }
}
