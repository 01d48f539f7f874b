//! The errors of this crate.

use thiserror::Error;

/// Why an announce, a scrape or a tracker URL failed.
///
/// Messages name the tracker's own words where it gave some, so a user can act on them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TrackerError {
    /// The tracker URL could not be understood.
    #[error("invalid tracker URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A URL scheme this client does not speak, such as `wss`.
    #[error("unsupported tracker URL scheme {0:?} (http, https and udp are supported)")]
    UnsupportedScheme(String),
    /// The tracker has no scrape URL (its announce path does not end in `announce`).
    #[error("tracker {0:?} has no scrape URL (the announce path does not end in 'announce')")]
    NoScrapeUrl(String),
    /// The tracker refused the request and said why (`failure reason`, or a UDP error reply).
    #[error("tracker refused the request: {0}")]
    Failure(String),
    /// opentracker answers a UDP announce for an info-hash that is not on its whitelist with an
    /// 8-byte reply that holds no data.
    #[error("tracker sent an empty announce reply (the torrent is probably not on its whitelist)")]
    EmptyAnnounceReply,
    /// The tracker's reply is not what the protocol says it should be.
    #[error("malformed tracker reply: {0}")]
    Malformed(String),
    /// The reply was larger than the limit we read.
    #[error("tracker reply larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The tracker answered with an HTTP status other than 200.
    #[error("tracker answered HTTP {status}{}", body_hint(.failure))]
    HttpStatus {
        /// The status code.
        status: u16,
        /// A `failure reason` found in the body, if there was one.
        failure: Option<String>,
    },
    /// No answer within the time allowed.
    #[error("tracker did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The tracker's host name did not resolve to an address.
    #[error("could not resolve tracker host {0:?}")]
    Resolve(String),
    /// The TLS connection to an `https://` tracker failed: its certificate (expired, not valid for
    /// the host, unknown issuer) or ours (no trusted roots).
    #[error("TLS: {0}")]
    Certificate(String),
    /// A socket error (connection refused, reset, unreachable...).
    #[error("network error talking to the tracker: {0}")]
    Io(String),
}

fn body_hint(failure: &Option<String>) -> String {
    match failure {
        Some(f) => format!(": {f}"),
        None => String::new(),
    }
}

impl From<std::io::Error> for TrackerError {
    fn from(e: std::io::Error) -> Self {
        TrackerError::Io(e.to_string())
    }
}

impl TrackerError {
    /// True if the tracker itself answered (refusal or nonsense), false for network trouble and
    /// time-outs. Both count as a failure for tier failover.
    pub fn tracker_answered(&self) -> bool {
        matches!(
            self,
            TrackerError::Failure(_)
                | TrackerError::EmptyAnnounceReply
                | TrackerError::Malformed(_)
                | TrackerError::TooLarge { .. }
                | TrackerError::HttpStatus { .. }
        )
    }
}
