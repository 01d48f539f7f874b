//! What an announce says and what a tracker answers, independent of HTTP or UDP.

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use shoal_core::Id20;

/// Most peers kept from one reply; the rest are dropped (a tracker cannot make us hold more).
pub const MAX_PEERS_PER_REPLY: usize = 2000;

/// The `event` of an announce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Event {
    /// A regular re-announce.
    #[default]
    None,
    /// The first announce of a download.
    Started,
    /// The download has just completed (never sent for a torrent that started complete).
    Completed,
    /// The client is leaving the swarm.
    Stopped,
}

impl Event {
    /// The HTTP `event` parameter value, if any.
    pub fn as_http(self) -> Option<&'static str> {
        match self {
            Event::None => None,
            Event::Started => Some("started"),
            Event::Completed => Some("completed"),
            Event::Stopped => Some("stopped"),
        }
    }

    /// Parses an HTTP `event` value; unknown or empty values are a regular announce.
    pub fn from_http(s: &[u8]) -> Event {
        match s {
            b"started" => Event::Started,
            b"completed" => Event::Completed,
            b"stopped" => Event::Stopped,
            _ => Event::None,
        }
    }

    /// The BEP 15 event number.
    pub fn as_udp(self) -> u32 {
        match self {
            Event::None => 0,
            Event::Completed => 1,
            Event::Started => 2,
            Event::Stopped => 3,
        }
    }

    /// Parses a BEP 15 event number; unknown numbers are a regular announce.
    pub fn from_udp(n: u32) -> Event {
        match n {
            1 => Event::Completed,
            2 => Event::Started,
            3 => Event::Stopped,
            _ => Event::None,
        }
    }
}

/// One announce, as the client sends it (or the embedded tracker receives it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// The torrent.
    pub info_hash: Id20,
    /// Our peer id.
    pub peer_id: Id20,
    /// The TCP port we accept peers on.
    pub port: u16,
    /// Bytes uploaded since `started`.
    pub uploaded: u64,
    /// Bytes downloaded since `started`.
    pub downloaded: u64,
    /// Bytes still missing.
    pub left: u64,
    /// The event.
    pub event: Event,
    /// How many peers we want; `None` lets the tracker choose.
    pub numwant: Option<u32>,
    /// A random number that identifies us across IP changes.
    pub key: u32,
    /// The `tracker id` this tracker gave us earlier (HTTP only).
    pub tracker_id: Option<Vec<u8>>,
    /// Whether we ask for a compact peer list (BEP 23); the client always does.
    pub compact: bool,
    /// BEP 7 `ipv6=` (HTTP only): our IPv6 address, for a tracker reached over IPv4 to hand
    /// out in `peers6` as well. Sent only for an address we listen on.
    pub ipv6: Option<Ipv6Addr>,
}

/// Seeders, leechers and completed downloads of one torrent, as a tracker counts them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrapeStats {
    /// Peers with the whole torrent (`complete`, UDP `seeders`).
    pub seeders: u32,
    /// Peers still downloading (`incomplete`, UDP `leechers`).
    pub leechers: u32,
    /// Completed downloads ever (`downloaded`, UDP `completed`).
    pub completed: u32,
}

/// A tracker's answer to an announce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// Seconds to wait before the next regular announce, if the tracker said.
    pub interval: Option<Duration>,
    /// Never announce more often than this (HTTP `min interval`).
    pub min_interval: Option<Duration>,
    /// A warning the tracker wants shown (HTTP `warning message`).
    pub warning: Option<String>,
    /// An id to send back in later announces (HTTP `tracker id`).
    pub tracker_id: Option<Vec<u8>>,
    /// Seeders (`complete`), if given.
    pub seeders: Option<u32>,
    /// Leechers (`incomplete`), if given.
    pub leechers: Option<u32>,
    /// Completed downloads (`downloaded`, an opentracker extra), if given.
    pub downloaded: Option<u32>,
    /// Peers: IPv4 and IPv6 together, at most [`MAX_PEERS_PER_REPLY`].
    pub peers: Vec<SocketAddr>,
}

/// Turns a tracker's integer into a `u32` count, treating negatives as absent and clamping huge
/// values.
pub(crate) fn count(v: i64) -> Option<u32> {
    if v < 0 {
        None
    } else {
        Some(u32::try_from(v).unwrap_or(u32::MAX))
    }
}

/// Turns a tracker's integer into a duration in seconds; negatives are absent.
pub(crate) fn seconds(v: i64) -> Option<Duration> {
    u64::try_from(v).ok().map(Duration::from_secs)
}
