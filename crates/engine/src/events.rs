//! The `--json` contract: every event line `shoal seed`, `download`, `swarm`, `tracker`, `dht` and
//! `create` print on stdout, one JSON object per line, tagged by `"event"`.
//!
//! Writers serialise these types and readers (`shoal swarm`, the tests, scripts) parse them, so a
//! field cannot be renamed in one place and silently missed in another. Field names are a public
//! contract: add fields, never rename or remove one. The README documents each event.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::status::{TorrentStatus, TrackerReport};

/// One line of `--json` output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JsonEvent {
    /// A socket is bound (peers' TCP port; the tracker's HTTP or UDP port; a DHT node's UDP port).
    Listening {
        /// The bound address.
        addr: SocketAddr,
        /// `"udp"` for a tracker's UDP socket; absent otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proto: Option<String>,
    },
    /// The session's DHT node is bound (UDP).
    Dht {
        /// Its address.
        addr: SocketAddr,
    },
    /// A magnet link's metadata arrived and matched its info-hash.
    Metadata {
        /// The info-hash, 40 lower-case hex digits.
        info_hash: String,
        /// The torrent's name.
        name: String,
    },
    /// The torrent's data is checked and it serves peers: connections are answered from now on
    /// (ones that arrived while it was checking were kept and are answered now).
    Ready {
        /// The info-hash, 40 lower-case hex digits.
        info_hash: String,
        /// Verified pieces.
        pieces: u32,
        /// All pieces.
        pieces_total: u32,
    },
    /// Progress, at least once a second while a torrent runs.
    Progress(Transfer),
    /// Every wanted piece is verified (printed the moment the last one is).
    Complete(Transfer),
    /// Stopped by Ctrl-C or SIGTERM after completing (or while seeding); also a tracker's exit.
    Stopped(Transfer),
    /// Stopped by Ctrl-C or SIGTERM before completing; the same command resumes.
    Interrupted(Transfer),
    /// A seeder's connected peers hold every piece between them (`distributed_copies` reached
    /// 1.0): the swarm no longer needs it. Printed once.
    SelfSufficient(Transfer),
    /// The torrent stopped on an error; verified data is kept.
    Error {
        /// What went wrong.
        message: String,
    },
    /// `shoal swarm`'s final summary.
    Summary(SwarmSummary),
    /// `shoal create`: the torrent was written.
    Created(Created),
    /// `shoal dht node`: joined the network.
    Bootstrapped {
        /// Nodes in the routing table.
        nodes: usize,
    },
    /// `shoal dht node`: periodic state.
    Status {
        /// The node id, hex.
        id: String,
        /// Nodes in the routing table.
        nodes: usize,
        /// Lookups running.
        lookups: usize,
    },
    /// `shoal dht get-peers`: one peer found.
    Peer {
        /// Its address.
        addr: SocketAddr,
    },
    /// `shoal dht get-peers`: the lookup ended.
    Done {
        /// Peers found.
        peers: usize,
    },
    /// `shoal dht ping`: the node answered.
    Pong {
        /// Its address.
        addr: SocketAddr,
        /// Its node id, hex.
        id: String,
    },
    /// `shoal index crawl`: a torrent's metadata was fetched, checked and indexed.
    Indexed {
        /// Its info-hash (hex).
        info_hash: String,
        /// Its name as stored (cleaned).
        name: String,
        /// Bytes of all files.
        size: u64,
        /// Number of files.
        files: usize,
        /// Peers seen for it.
        peers: u64,
    },
    /// `shoal index crawl`: the crawl's counters, every few seconds.
    Crawl(CrawlReport),
    /// `shoal index crawl`: the crawl ended (its time budget ran out, or Ctrl-C).
    CrawlDone(CrawlReport),
    /// `shoal search`: one result, best first.
    Result(SearchResult),
}

/// A torrent's transfer figures: the body of `progress`, `complete`, `stopped`, `interrupted`.
/// `stopped` lines of `shoal tracker` carry none of them, so every field has a default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Transfer {
    /// Bytes of verified wanted pieces.
    pub downloaded: u64,
    /// Payload bytes sent to peers this run.
    pub uploaded: u64,
    /// Payload bytes received from peers this run (waste included).
    pub received: u64,
    /// Bytes of all wanted pieces.
    pub total: u64,
    /// Connected peers.
    pub peers: usize,
    /// Connected peers over TCP (of those in `peer_encryption`).
    pub peers_tcp: usize,
    /// Connected peers over uTP (of those in `peer_encryption`).
    pub peers_utp: usize,
    /// Download rate, bytes per second.
    pub down_rate: u64,
    /// Upload rate, bytes per second.
    pub up_rate: u64,
    /// Verified pieces.
    pub pieces: u32,
    /// All pieces.
    pub pieces_total: u32,
    /// Pieces that failed their hash check.
    pub hash_failures: u32,
    /// IPs banned for sending bad data.
    pub banned: Vec<IpAddr>,
    /// Connections closed because the peer broke the protocol.
    pub violations: u32,
    /// Each tracker's last announce.
    pub trackers: Vec<TrackerLine>,
    /// Each connected peer and its connection's encryption.
    pub peer_encryption: Vec<PeerEncryptionLine>,
    /// Each web seed (BEP 19) and how it is doing.
    pub web_seeds: Vec<WebSeedLine>,
    /// The swarm's distributed copies among connected peers, us excluded: the least available
    /// piece's count plus the fraction of pieces held by more peers (other clients'
    /// "availability"). 1.0 or more: the peers hold every piece without us.
    pub distributed_copies: f64,
    /// Super-seeding (BEP 16) now.
    pub super_seeding: bool,
}

/// One web seed in the `web_seeds` list of [`Transfer`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebSeedLine {
    /// The `url-list` (or `ws=`) entry.
    pub url: String,
    /// Serving us now.
    pub connected: bool,
    /// Payload bytes received from it.
    pub downloaded: u64,
    /// "ok", or the last error and when it is tried again.
    pub message: String,
}

/// One connected peer in the `peer_encryption` list of [`Transfer`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEncryptionLine {
    /// The peer's address.
    pub addr: SocketAddr,
    /// `plaintext` (no MSE), `mse-plaintext` (MSE handshake, plaintext payload) or `rc4`.
    pub encryption: String,
    /// `tcp` or `utp` (absent from lines of versions before uTP: `tcp`).
    #[serde(default = "tcp")]
    pub transport: String,
}

fn tcp() -> String {
    "tcp".to_string()
}

/// One tracker's last announce, as the `trackers` list of [`Transfer`] shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackerLine {
    /// The tracker's URL.
    pub url: String,
    /// Whether the last announce succeeded.
    pub ok: bool,
    /// "ok", the tracker's warning, or the error.
    pub message: String,
    /// Peers in the last answer.
    pub peers: usize,
}

impl From<&TrackerReport> for TrackerLine {
    fn from(t: &TrackerReport) -> Self {
        TrackerLine {
            url: t.url.clone(),
            ok: t.ok,
            message: t.message.clone(),
            peers: t.peers,
        }
    }
}

impl From<&TorrentStatus> for Transfer {
    fn from(s: &TorrentStatus) -> Self {
        let (peers_tcp, peers_utp) = s.transport_counts();
        Transfer {
            peers_tcp,
            peers_utp,
            downloaded: s.verified_bytes,
            uploaded: s.uploaded,
            received: s.downloaded,
            total: s.total_bytes,
            peers: s.peers,
            down_rate: s.down_rate.max(0.0).round() as u64,
            up_rate: s.up_rate.max(0.0).round() as u64,
            pieces: s.pieces_have,
            pieces_total: s.pieces_total,
            hash_failures: s.hash_failures,
            banned: s.banned.clone(),
            violations: s.violations,
            trackers: s.trackers.iter().map(TrackerLine::from).collect(),
            peer_encryption: s
                .peer_encryption
                .iter()
                .map(|(addr, e, transport)| PeerEncryptionLine {
                    addr: *addr,
                    encryption: e.as_str().to_string(),
                    transport: transport.to_string(),
                })
                .collect(),
            web_seeds: s
                .web_seeds
                .iter()
                .map(|w| WebSeedLine {
                    url: w.url.clone(),
                    connected: w.connected,
                    downloaded: w.downloaded,
                    message: w.message.clone(),
                })
                .collect(),
            // Rounded to 3 decimals: a fraction of pieces, not a measurement.
            distributed_copies: (s.distributed_copies * 1000.0).round() / 1000.0,
            super_seeding: s.super_seeding,
        }
    }
}

impl Transfer {
    /// Whether every wanted byte is verified (and there is something to verify).
    pub fn is_complete(&self) -> bool {
        self.total > 0 && self.downloaded == self.total
    }
}

/// `shoal swarm --json`'s summary.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SwarmSummary {
    /// Bytes of the shared file.
    pub size: u64,
    /// Leechers started.
    pub leechers: usize,
    /// Seconds until the last leecher completed.
    pub seconds: f64,
    /// Payload bytes the initial seeder uploaded.
    pub seeder_uploaded: u64,
    /// `seeder_uploaded / size`.
    pub seeder_copies: f64,
    /// Payload bytes the leechers uploaded, summed.
    pub leechers_uploaded: u64,
    /// The leechers' share of all bytes moved, 0 to 1.
    pub leecher_share: f64,
    /// Each leecher.
    pub per_leecher: Vec<LeecherSummary>,
    /// The seeder super-seeded (BEP 16).
    #[serde(default)]
    pub super_seed: bool,
    /// What the seeder had uploaded, in copies of the file, when it reported the swarm
    /// self-sufficient (`null` if it never did).
    #[serde(default)]
    pub seeder_copies_at_self_sufficiency: Option<f64>,
}

/// One leecher in a [`SwarmSummary`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LeecherSummary {
    /// `leecher1`, `leecher2`, …
    pub name: String,
    /// Seconds from the start until it completed (`null` if it did not).
    pub seconds: Option<f64>,
    /// Payload bytes it received.
    pub received: u64,
    /// Payload bytes it uploaded.
    pub uploaded: u64,
}

/// `shoal create --json`'s line.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Created {
    /// Path of the .torrent written.
    pub torrent: String,
    /// The info-hash, 40 lower-case hex digits.
    pub info_hash: String,
    /// The v2 info-hash (BEP 52), 64 hex digits, for v2 and hybrid torrents.
    #[serde(default)]
    pub info_hash_v2: Option<String>,
    /// `v1`, `v2` or `hybrid`.
    #[serde(default)]
    pub version: String,
    /// The magnet link.
    pub magnet: String,
    /// The torrent's name.
    pub name: String,
    /// Bytes of all files.
    pub total_size: u64,
    /// Bytes per piece.
    pub piece_length: u64,
    /// Pieces.
    pub num_pieces: u32,
    /// Files (pad files included).
    pub files: usize,
    /// Seconds hashing took.
    pub seconds: f64,
}

/// The counters of `crawl` and `crawl_done` events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CrawlReport {
    /// `sample_infohashes` queries sent.
    pub queries: u64,
    /// Answers received.
    pub replies: u64,
    /// Queries that got an error or no answer.
    pub failures: u64,
    /// Answers without samples (nodes without BEP 51).
    pub unsupported: u64,
    /// Samples received, repeats included.
    pub samples: u64,
    /// Nodes known.
    pub nodes: u64,
    /// Distinct info-hashes seen.
    pub unique_hashes: u64,
    /// Torrents indexed in this crawl.
    pub indexed: u64,
    /// Info-hashes whose metadata could not be had (no peers, or no valid copy).
    pub metadata_failed: u64,
    /// Metadata fetches running.
    pub fetching: u64,
    /// Torrents in the index.
    pub index_size: u64,
}

/// One `shoal search` result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    /// The info-hash (hex).
    pub info_hash: String,
    /// The name.
    pub name: String,
    /// Bytes of all files.
    pub size: u64,
    /// Number of files.
    pub files: u64,
    /// Peers seen.
    pub peers: u64,
    /// First seen (Unix seconds).
    pub first_seen: i64,
    /// Last seen in a sample (Unix seconds).
    pub last_seen: i64,
    /// The magnet link, for `shoal download`.
    pub magnet: String,
}

impl JsonEvent {
    /// The event's name, as the `event` field carries it.
    pub fn name(&self) -> &'static str {
        match self {
            JsonEvent::Listening { .. } => "listening",
            JsonEvent::Dht { .. } => "dht",
            JsonEvent::Metadata { .. } => "metadata",
            JsonEvent::Ready { .. } => "ready",
            JsonEvent::Progress(_) => "progress",
            JsonEvent::Complete(_) => "complete",
            JsonEvent::Stopped(_) => "stopped",
            JsonEvent::Interrupted(_) => "interrupted",
            JsonEvent::SelfSufficient(_) => "self_sufficient",
            JsonEvent::Error { .. } => "error",
            JsonEvent::Summary(_) => "summary",
            JsonEvent::Created(_) => "created",
            JsonEvent::Bootstrapped { .. } => "bootstrapped",
            JsonEvent::Status { .. } => "status",
            JsonEvent::Peer { .. } => "peer",
            JsonEvent::Done { .. } => "done",
            JsonEvent::Pong { .. } => "pong",
            JsonEvent::Indexed { .. } => "indexed",
            JsonEvent::Crawl(_) => "crawl",
            JsonEvent::CrawlDone(_) => "crawl_done",
            JsonEvent::Result(_) => "result",
        }
    }

    /// The transfer figures of `progress`, `complete`, `stopped` and `interrupted`.
    pub fn transfer(&self) -> Option<&Transfer> {
        match self {
            JsonEvent::Progress(t)
            | JsonEvent::Complete(t)
            | JsonEvent::Stopped(t)
            | JsonEvent::Interrupted(t)
            | JsonEvent::SelfSufficient(t) => Some(t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The top-level keys of an event's JSON line, sorted.
    fn keys(ev: &JsonEvent) -> Vec<String> {
        let v = serde_json::to_value(ev).unwrap();
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    /// The contract, pinned: these names are what scripts read. Adding a field means adding it
    /// here and in the README; renaming one is a breaking change.
    #[test]
    fn field_names_are_the_documented_ones() {
        const CRAWL: &[&str] = &[
            "event",
            "queries",
            "replies",
            "failures",
            "unsupported",
            "samples",
            "nodes",
            "unique_hashes",
            "indexed",
            "metadata_failed",
            "fetching",
            "index_size",
        ];
        let transfer = [
            "event",
            "downloaded",
            "uploaded",
            "received",
            "total",
            "peers",
            "peers_tcp",
            "peers_utp",
            "down_rate",
            "up_rate",
            "pieces",
            "pieces_total",
            "hash_failures",
            "banned",
            "violations",
            "trackers",
            "peer_encryption",
            "web_seeds",
            "distributed_copies",
            "super_seeding",
        ];
        for ev in [
            JsonEvent::Progress(Transfer::default()),
            JsonEvent::Complete(Transfer::default()),
            JsonEvent::Stopped(Transfer::default()),
            JsonEvent::Interrupted(Transfer::default()),
            JsonEvent::SelfSufficient(Transfer::default()),
        ] {
            assert_eq!(keys(&ev), sorted(&transfer), "{}", ev.name());
        }
        let addr: SocketAddr = "127.0.0.1:6881".parse().unwrap();
        let cases: Vec<(JsonEvent, &[&str])> = vec![
            (
                JsonEvent::Listening { addr, proto: None },
                &["event", "addr"],
            ),
            (JsonEvent::Dht { addr }, &["event", "addr"]),
            (
                JsonEvent::Metadata {
                    info_hash: "ab".into(),
                    name: "n".into(),
                },
                &["event", "info_hash", "name"],
            ),
            (
                JsonEvent::Ready {
                    info_hash: "ab".into(),
                    pieces: 1,
                    pieces_total: 2,
                },
                &["event", "info_hash", "pieces", "pieces_total"],
            ),
            (
                JsonEvent::Error {
                    message: "m".into(),
                },
                &["event", "message"],
            ),
            (
                JsonEvent::Summary(SwarmSummary::default()),
                &[
                    "event",
                    "size",
                    "leechers",
                    "seconds",
                    "seeder_uploaded",
                    "seeder_copies",
                    "leechers_uploaded",
                    "leecher_share",
                    "per_leecher",
                    "super_seed",
                    "seeder_copies_at_self_sufficiency",
                ],
            ),
            (
                JsonEvent::Created(Created::default()),
                &[
                    "event",
                    "torrent",
                    "info_hash",
                    "info_hash_v2",
                    "version",
                    "magnet",
                    "name",
                    "total_size",
                    "piece_length",
                    "num_pieces",
                    "files",
                    "seconds",
                ],
            ),
            (
                JsonEvent::Indexed {
                    info_hash: "h".into(),
                    name: "n".into(),
                    size: 1,
                    files: 1,
                    peers: 1,
                },
                &["event", "info_hash", "name", "size", "files", "peers"],
            ),
            (JsonEvent::Crawl(CrawlReport::default()), CRAWL),
            (JsonEvent::CrawlDone(CrawlReport::default()), CRAWL),
            (
                JsonEvent::Result(SearchResult::default()),
                &[
                    "event",
                    "info_hash",
                    "name",
                    "size",
                    "files",
                    "peers",
                    "first_seen",
                    "last_seen",
                    "magnet",
                ],
            ),
        ];
        for (ev, names) in cases {
            assert_eq!(keys(&ev), sorted(names), "{}", ev.name());
        }
        let tracker = serde_json::to_value(TrackerLine::default()).unwrap();
        let mut tk: Vec<String> = tracker.as_object().unwrap().keys().cloned().collect();
        tk.sort();
        assert_eq!(tk, sorted(&["url", "ok", "message", "peers"]));
        let peer = serde_json::to_value(PeerEncryptionLine {
            addr,
            encryption: "rc4".into(),
            transport: "utp".into(),
        })
        .unwrap();
        let mut pk: Vec<String> = peer.as_object().unwrap().keys().cloned().collect();
        pk.sort();
        assert_eq!(pk, sorted(&["addr", "encryption", "transport"]));
    }

    #[test]
    fn lines_round_trip_and_the_tag_is_the_name() {
        let t = Transfer {
            downloaded: 5,
            total: 10,
            banned: vec!["127.0.0.9".parse().unwrap()],
            trackers: vec![TrackerLine {
                url: "http://t/announce".into(),
                ok: true,
                message: "ok".into(),
                peers: 3,
            }],
            ..Transfer::default()
        };
        for ev in [
            JsonEvent::Progress(t.clone()),
            JsonEvent::Complete(t.clone()),
            JsonEvent::Listening {
                addr: "127.0.0.2:1".parse().unwrap(),
                proto: Some("udp".into()),
            },
        ] {
            let line = serde_json::to_string(&ev).unwrap();
            assert!(
                line.starts_with(&format!("{{\"event\":\"{}\"", ev.name())),
                "{line}"
            );
            assert_eq!(serde_json::from_str::<JsonEvent>(&line).unwrap(), ev);
        }
        // The tracker's bare `{"event":"stopped"}` of older versions still parses.
        let bare: JsonEvent = serde_json::from_str(r#"{"event":"stopped"}"#).unwrap();
        assert_eq!(bare, JsonEvent::Stopped(Transfer::default()));
    }
}
