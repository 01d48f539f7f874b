//! What a running torrent reports to the command line (through a `watch` channel).

use std::net::{IpAddr, SocketAddr};

use crate::Encryption;

/// The phase a torrent is in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TorrentState {
    /// Downloading wanted pieces.
    #[default]
    Downloading,
    /// Every wanted piece is verified; serving others.
    Seeding,
    /// Stopped by an error (disk full, …); verified data is untouched.
    Error(String),
    /// Shut down.
    Stopped,
}

/// The last announce to one tracker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackerReport {
    /// The tracker's URL.
    pub url: String,
    /// Whether the last announce succeeded.
    pub ok: bool,
    /// "ok", the tracker's warning, or the error.
    pub message: String,
    /// Peers the last answer carried.
    pub peers: usize,
}

/// A snapshot of a torrent, published several times a second.
#[derive(Clone, Debug, Default)]
pub struct TorrentStatus {
    /// The phase.
    pub state: TorrentState,
    /// Bytes of verified pieces.
    pub verified_bytes: u64,
    /// Bytes of all pieces.
    pub total_bytes: u64,
    /// Verified pieces.
    pub pieces_have: u32,
    /// All pieces.
    pub pieces_total: u32,
    /// Payload bytes received from peers this session (including waste).
    pub downloaded: u64,
    /// Payload bytes sent to peers this session.
    pub uploaded: u64,
    /// Connected peers.
    pub peers: usize,
    /// Download rate, bytes per second.
    pub down_rate: f64,
    /// Upload rate, bytes per second.
    pub up_rate: f64,
    /// Pieces that failed their hash check.
    pub hash_failures: u32,
    /// IPs banned for sending bad data.
    pub banned: Vec<IpAddr>,
    /// Connections closed for a protocol violation.
    pub violations: u32,
    /// Each tracker's last announce.
    pub trackers: Vec<TrackerReport>,
    /// Each connected peer, what its connection's handshake agreed, and its transport
    /// ("tcp" or "utp").
    pub peer_encryption: Vec<(SocketAddr, Encryption, &'static str)>,
    /// Each web seed (BEP 19) and how it is doing.
    pub web_seeds: Vec<crate::WebSeedReport>,
    /// The swarm's distributed copies among connected peers, us excluded (the least available
    /// piece's count plus the fraction of pieces held more often): at least 1.0 once they hold
    /// every piece between them.
    pub distributed_copies: f64,
    /// Super-seeding (BEP 16) now.
    pub super_seeding: bool,
}

impl TorrentStatus {
    /// Whether every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        self.state == TorrentState::Seeding
    }

    /// Connected peers by transport: (over TCP, over uTP), counted from
    /// [`peer_encryption`](Self::peer_encryption).
    pub fn transport_counts(&self) -> (usize, usize) {
        let utp = self
            .peer_encryption
            .iter()
            .filter(|(_, _, t)| *t == "utp")
            .count();
        (self.peer_encryption.len() - utp, utp)
    }

    /// Whether the connected peers hold every piece between them: the swarm no longer needs us.
    pub fn swarm_self_sufficient(&self) -> bool {
        self.distributed_copies >= 1.0
    }
}
