//! BEP 15 packets, both directions, with BEP 41 options; pure encode and parse functions.
//!
//! Parsers accept longer packets than the spec's sizes (BEP 15: "do not expect packets to be
//! exactly of a certain size"), which is how aria2's 2 extra bytes after its announce pass.

use std::net::SocketAddr;

use shoal_core::{decode_compact_peers_v4, decode_compact_peers_v6, encode_compact_peer, Id20};

use crate::announce::{AnnounceRequest, Event, ScrapeStats, MAX_PEERS_PER_REPLY};
use crate::http_query::MAX_SCRAPE_HASHES;
use crate::TrackerError;

/// The magic `protocol_id` of a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
/// Action numbers.
const CONNECT: u32 = 0;
const ANNOUNCE: u32 = 1;
const SCRAPE: u32 = 2;
const ERROR: u32 = 3;
/// Size of an announce request without BEP 41 options.
pub const ANNOUNCE_REQUEST_LEN: usize = 98;
/// Largest UDP tracker packet we build or read; bigger datagrams are cut by the socket read.
pub const MAX_PACKET_LEN: usize = 2048;
/// Longest error message kept.
const MAX_ERROR_LEN: usize = 512;
/// BEP 41 option types.
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_URL_DATA: u8 = 2;
/// Longest URLData we send or keep (a path and query; trackers do not need more).
pub const MAX_URL_DATA_LEN: usize = 1024;

/// Which IP family a packet travelled on: BEP 15 announce replies carry 6-byte peers over IPv4
/// and 18-byte peers over IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: &SocketAddr) -> Family {
        match addr {
            SocketAddr::V4(_) => Family::V4,
            SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_some() => Family::V4,
            SocketAddr::V6(_) => Family::V6,
        }
    }
}

/// A request from a client to a UDP tracker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpRequest {
    /// Ask for a connection id.
    Connect {
        /// Transaction id.
        transaction_id: u32,
    },
    /// Announce.
    Announce {
        /// From a connect reply.
        connection_id: u64,
        /// Transaction id.
        transaction_id: u32,
        /// The announce (`tracker_id` is not sent over UDP; `numwant: None` is sent as -1).
        request: AnnounceRequest,
        /// The BEP 15 `IP address` field (0 = the sender's address).
        ip: u32,
        /// BEP 41 URLData: the path and query of the tracker URL.
        url_data: Vec<u8>,
    },
    /// Scrape up to 74 torrents.
    Scrape {
        /// From a connect reply.
        connection_id: u64,
        /// Transaction id.
        transaction_id: u32,
        /// The torrents.
        info_hashes: Vec<Id20>,
    },
}

/// A reply from a UDP tracker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpResponse {
    /// A connection id.
    Connect {
        /// Echoed transaction id.
        transaction_id: u32,
        /// Use for one minute.
        connection_id: u64,
    },
    /// An announce reply.
    Announce {
        /// Echoed transaction id.
        transaction_id: u32,
        /// Seconds until the next announce.
        interval: u32,
        /// Leechers.
        leechers: u32,
        /// Seeders.
        seeders: u32,
        /// Peers, at most [`MAX_PEERS_PER_REPLY`].
        peers: Vec<SocketAddr>,
    },
    /// opentracker's reply for a torrent not on its whitelist: action 1 and the transaction id,
    /// nothing else (8 bytes). Not valid, but it names its transaction, so the client can turn it
    /// into [`TrackerError::EmptyAnnounceReply`] instead of waiting for a time-out.
    EmptyAnnounce {
        /// Echoed transaction id.
        transaction_id: u32,
    },
    /// A scrape reply, one entry per requested hash in order (possibly fewer).
    Scrape {
        /// Echoed transaction id.
        transaction_id: u32,
        /// Counts.
        entries: Vec<ScrapeStats>,
    },
    /// An error reply.
    Error {
        /// Echoed transaction id.
        transaction_id: u32,
        /// The message, without trailing NULs (opentracker sends one).
        message: String,
    },
}

impl UdpResponse {
    /// The transaction id the reply names.
    pub fn transaction_id(&self) -> u32 {
        match self {
            UdpResponse::Connect { transaction_id, .. }
            | UdpResponse::Announce { transaction_id, .. }
            | UdpResponse::EmptyAnnounce { transaction_id }
            | UdpResponse::Scrape { transaction_id, .. }
            | UdpResponse::Error { transaction_id, .. } => *transaction_id,
        }
    }
}

fn malformed(m: impl Into<String>) -> TrackerError {
    TrackerError::Malformed(m.into())
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn id_at(b: &[u8], at: usize) -> Option<Id20> {
    Id20::from_slice(b.get(at..at + 20)?)
}

/// Encodes a request. URLData longer than [`MAX_URL_DATA_LEN`] is cut.
pub fn encode_udp_request(req: &UdpRequest) -> Vec<u8> {
    let mut out = Vec::with_capacity(ANNOUNCE_REQUEST_LEN + 16);
    match req {
        UdpRequest::Connect { transaction_id } => {
            out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
            out.extend_from_slice(&CONNECT.to_be_bytes());
            out.extend_from_slice(&transaction_id.to_be_bytes());
        }
        UdpRequest::Announce {
            connection_id,
            transaction_id,
            request: r,
            ip,
            url_data,
        } => {
            out.extend_from_slice(&connection_id.to_be_bytes());
            out.extend_from_slice(&ANNOUNCE.to_be_bytes());
            out.extend_from_slice(&transaction_id.to_be_bytes());
            out.extend_from_slice(r.info_hash.as_bytes());
            out.extend_from_slice(r.peer_id.as_bytes());
            out.extend_from_slice(&r.downloaded.to_be_bytes());
            out.extend_from_slice(&r.left.to_be_bytes());
            out.extend_from_slice(&r.uploaded.to_be_bytes());
            out.extend_from_slice(&r.event.as_udp().to_be_bytes());
            out.extend_from_slice(&ip.to_be_bytes());
            out.extend_from_slice(&r.key.to_be_bytes());
            let numwant = r
                .numwant
                .map(|n| n.min(i32::MAX as u32) as i32)
                .unwrap_or(-1);
            out.extend_from_slice(&numwant.to_be_bytes());
            out.extend_from_slice(&r.port.to_be_bytes());
            let url = &url_data[..url_data.len().min(MAX_URL_DATA_LEN)];
            // BEP 41: URLData in chunks of at most 255 bytes; the tracker concatenates them.
            for chunk in url.chunks(255) {
                out.push(OPT_URL_DATA);
                out.push(chunk.len() as u8);
                out.extend_from_slice(chunk);
            }
        }
        UdpRequest::Scrape {
            connection_id,
            transaction_id,
            info_hashes,
        } => {
            out.extend_from_slice(&connection_id.to_be_bytes());
            out.extend_from_slice(&SCRAPE.to_be_bytes());
            out.extend_from_slice(&transaction_id.to_be_bytes());
            for h in info_hashes.iter().take(MAX_SCRAPE_HASHES) {
                out.extend_from_slice(h.as_bytes());
            }
        }
    }
    out
}

/// Reads BEP 41 options after an announce: URLData chunks are joined; EndOfOptions stops (and
/// whatever follows it, like aria2's second zero byte, is ignored); unknown options with a length
/// byte are skipped.
fn parse_options(mut b: &[u8]) -> Vec<u8> {
    let mut url = Vec::new();
    while let Some((&kind, rest)) = b.split_first() {
        match kind {
            OPT_END => break,
            OPT_NOP => b = rest,
            _ => {
                let Some((&len, rest)) = rest.split_first() else {
                    break;
                };
                let Some(data) = rest.get(..len as usize) else {
                    break;
                };
                if kind == OPT_URL_DATA && url.len() + data.len() <= MAX_URL_DATA_LEN {
                    url.extend_from_slice(data);
                }
                b = &rest[len as usize..];
            }
        }
    }
    url
}

/// Parses a request as a UDP tracker receives it.
pub fn parse_udp_request(b: &[u8]) -> Result<UdpRequest, TrackerError> {
    let short = || malformed(format!("UDP tracker request too short ({} bytes)", b.len()));
    let connection_id = u64_at(b, 0).ok_or_else(short)?;
    let action = u32_at(b, 8).ok_or_else(short)?;
    let transaction_id = u32_at(b, 12).ok_or_else(short)?;
    match action {
        CONNECT => {
            if connection_id != PROTOCOL_ID {
                return Err(malformed("connect request without the BEP 15 protocol id"));
            }
            Ok(UdpRequest::Connect { transaction_id })
        }
        ANNOUNCE => {
            if b.len() < ANNOUNCE_REQUEST_LEN {
                return Err(short());
            }
            let (Some(info_hash), Some(peer_id)) = (id_at(b, 16), id_at(b, 36)) else {
                return Err(short());
            };
            let get64 = |at| u64_at(b, at).unwrap_or(0);
            let get32 = |at| u32_at(b, at).unwrap_or(0);
            let numwant = get32(92) as i32;
            let request = AnnounceRequest {
                info_hash,
                peer_id,
                downloaded: get64(56),
                left: get64(64),
                uploaded: get64(72),
                event: Event::from_udp(get32(80)),
                key: get32(88),
                numwant: u32::try_from(numwant).ok(),
                port: u16::from_be_bytes([b[96], b[97]]),
                tracker_id: None,
                compact: true,
                ipv6: None,
            };
            Ok(UdpRequest::Announce {
                connection_id,
                transaction_id,
                request,
                ip: get32(84),
                url_data: parse_options(&b[ANNOUNCE_REQUEST_LEN..]),
            })
        }
        SCRAPE => {
            let hashes = &b[16..];
            let info_hashes: Vec<Id20> = hashes
                .chunks_exact(20)
                .take(MAX_SCRAPE_HASHES)
                .filter_map(Id20::from_slice)
                .collect();
            if info_hashes.is_empty() {
                return Err(malformed("scrape request without info-hashes"));
            }
            Ok(UdpRequest::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            })
        }
        other => Err(malformed(format!("unknown UDP tracker action {other}"))),
    }
}

/// Encodes a reply as a UDP tracker sends it; peers of the other family than `family` are left
/// out.
pub fn encode_udp_response(resp: &UdpResponse, family: Family) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let head = |out: &mut Vec<u8>, action: u32, tid: u32| {
        out.extend_from_slice(&action.to_be_bytes());
        out.extend_from_slice(&tid.to_be_bytes());
    };
    match resp {
        UdpResponse::Connect {
            transaction_id,
            connection_id,
        } => {
            head(&mut out, CONNECT, *transaction_id);
            out.extend_from_slice(&connection_id.to_be_bytes());
        }
        UdpResponse::Announce {
            transaction_id,
            interval,
            leechers,
            seeders,
            peers,
        } => {
            head(&mut out, ANNOUNCE, *transaction_id);
            for n in [interval, leechers, seeders] {
                out.extend_from_slice(&n.to_be_bytes());
            }
            for p in peers.iter().filter(|p| Family::of(p) == family) {
                encode_compact_peer(p, &mut out);
            }
        }
        UdpResponse::EmptyAnnounce { transaction_id } => head(&mut out, ANNOUNCE, *transaction_id),
        UdpResponse::Scrape {
            transaction_id,
            entries,
        } => {
            head(&mut out, SCRAPE, *transaction_id);
            for e in entries {
                for n in [e.seeders, e.completed, e.leechers] {
                    out.extend_from_slice(&n.to_be_bytes());
                }
            }
        }
        UdpResponse::Error {
            transaction_id,
            message,
        } => {
            head(&mut out, ERROR, *transaction_id);
            out.extend_from_slice(message.as_bytes());
        }
    }
    out
}

/// Parses a reply received over IPv4. See [`parse_udp_response_for`].
pub fn parse_udp_response(b: &[u8]) -> Result<UdpResponse, TrackerError> {
    parse_udp_response_for(b, Family::V4)
}

/// Parses a reply from a UDP tracker; `family` says how long announce peers are. Never panics;
/// anything not a BEP 15 reply is [`TrackerError::Malformed`]. Checking the transaction id is
/// the caller's job (it knows which one it sent).
pub fn parse_udp_response_for(b: &[u8], family: Family) -> Result<UdpResponse, TrackerError> {
    let short = || malformed(format!("UDP tracker reply too short ({} bytes)", b.len()));
    let action = u32_at(b, 0).ok_or_else(short)?;
    let transaction_id = u32_at(b, 4).ok_or_else(short)?;
    match action {
        CONNECT => Ok(UdpResponse::Connect {
            transaction_id,
            connection_id: u64_at(b, 8).ok_or_else(short)?,
        }),
        ANNOUNCE if b.len() == 8 => Ok(UdpResponse::EmptyAnnounce { transaction_id }),
        ANNOUNCE => {
            let (Some(interval), Some(leechers), Some(seeders)) =
                (u32_at(b, 8), u32_at(b, 12), u32_at(b, 16))
            else {
                return Err(short());
            };
            let body = &b[20..];
            let decoded = match family {
                Family::V4 => {
                    let whole = body.len() - body.len() % 6;
                    decode_compact_peers_v4(&body[..whole])
                }
                Family::V6 => {
                    let whole = body.len() - body.len() % 18;
                    decode_compact_peers_v6(&body[..whole])
                }
            };
            let mut peers = decoded.map_err(|e| malformed(e.to_string()))?;
            peers.truncate(MAX_PEERS_PER_REPLY);
            Ok(UdpResponse::Announce {
                transaction_id,
                interval,
                leechers,
                seeders,
                peers,
            })
        }
        SCRAPE => Ok(UdpResponse::Scrape {
            transaction_id,
            entries: b[8..]
                .chunks_exact(12)
                .take(MAX_SCRAPE_HASHES)
                .map(|c| ScrapeStats {
                    seeders: u32_at(c, 0).unwrap_or(0),
                    completed: u32_at(c, 4).unwrap_or(0),
                    leechers: u32_at(c, 8).unwrap_or(0),
                })
                .collect(),
        }),
        ERROR => {
            let raw = &b[8..b.len().min(8 + MAX_ERROR_LEN)];
            let text = String::from_utf8_lossy(raw);
            Ok(UdpResponse::Error {
                transaction_id,
                message: text.trim_end_matches('\0').trim().to_string(),
            })
        }
        other => Err(malformed(format!("unknown UDP tracker action {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_request() -> impl Strategy<Value = AnnounceRequest> {
        (
            any::<[u8; 20]>(),
            any::<[u8; 20]>(),
            any::<u16>(),
            any::<(u64, u64, u64)>(),
            0u32..4,
            proptest::option::of(0u32..=i32::MAX as u32),
            any::<u32>(),
        )
            .prop_map(|(ih, pid, port, (up, down, left), ev, numwant, key)| {
                AnnounceRequest {
                    info_hash: Id20(ih),
                    peer_id: Id20(pid),
                    port,
                    uploaded: up,
                    downloaded: down,
                    left,
                    event: Event::from_udp(ev),
                    numwant,
                    key,
                    tracker_id: None,
                    compact: true,
                    ipv6: None,
                }
            })
    }

    #[test]
    fn empty_announce_and_error_with_nul() {
        let b = [0, 0, 0, 1, 0xfb, 0xc5, 0xed, 0xd6];
        assert_eq!(
            parse_udp_response(&b).unwrap(),
            UdpResponse::EmptyAnnounce {
                transaction_id: 0xfbc5_edd6
            }
        );
        let mut e = vec![0, 0, 0, 3, 0, 0, 0, 9];
        e.extend_from_slice(b"Connection ID missmatch.\0");
        assert_eq!(
            parse_udp_response(&e).unwrap(),
            UdpResponse::Error {
                transaction_id: 9,
                message: "Connection ID missmatch.".into()
            }
        );
        assert!(parse_udp_response(&[0, 0, 0, 1, 0, 0, 0, 1, 0]).is_err());
        assert!(parse_udp_response(&[0, 0, 0, 9, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn url_data_in_chunks() {
        let url: Vec<u8> = (0..600).map(|i| b'a' + (i % 26) as u8).collect();
        let mut r = UdpRequest::Announce {
            connection_id: 1,
            transaction_id: 2,
            request: AnnounceRequest {
                info_hash: Id20([1; 20]),
                peer_id: Id20([2; 20]),
                port: 1,
                uploaded: 0,
                downloaded: 0,
                left: 0,
                event: Event::None,
                numwant: None,
                key: 0,
                tracker_id: None,
                compact: true,
                ipv6: None,
            },
            ip: 0,
            url_data: url,
        };
        let bytes = encode_udp_request(&r);
        assert_eq!(bytes.len(), 98 + 600 + 3 * 2);
        assert_eq!(parse_udp_request(&bytes).unwrap(), r);
        // NOP, then EndOfOptions and junk after it.
        if let UdpRequest::Announce { url_data, .. } = &mut r {
            url_data.clear();
        }
        let mut bytes = encode_udp_request(&r);
        bytes.extend_from_slice(&[1, 0, 0]);
        assert_eq!(parse_udp_request(&bytes).unwrap(), r);
    }

    proptest! {
        #[test]
        fn requests_round_trip(req in arb_request(), cid in any::<u64>(), tid in any::<u32>(), ip in any::<u32>(),
                               url in proptest::collection::vec(any::<u8>(), 0..400),
                               hashes in proptest::collection::vec(any::<[u8; 20]>(), 1..80)) {
            let reqs = [
                UdpRequest::Connect { transaction_id: tid },
                UdpRequest::Announce { connection_id: cid, transaction_id: tid, request: req, ip, url_data: url },
                UdpRequest::Scrape { connection_id: cid, transaction_id: tid,
                    info_hashes: hashes.iter().take(MAX_SCRAPE_HASHES).map(|h| Id20(*h)).collect() },
            ];
            for r in reqs {
                prop_assert_eq!(parse_udp_request(&encode_udp_request(&r)).unwrap(), r);
            }
        }

        #[test]
        fn responses_round_trip(tid in any::<u32>(), cid in any::<u64>(), nums in any::<(u32, u32, u32)>(),
                                v4 in proptest::collection::vec((any::<[u8; 4]>(), any::<u16>()), 0..50),
                                v6 in proptest::collection::vec((any::<[u8; 16]>(), any::<u16>()), 0..50),
                                msg in "[ -~]{0,100}") {
            let p4: Vec<SocketAddr> = v4.iter().map(|(ip, port)| SocketAddr::from((*ip, *port))).collect();
            let p6: Vec<SocketAddr> = v6.iter()
                .map(|(ip, port)| SocketAddr::from((std::net::Ipv6Addr::from(*ip), *port)))
                .filter(|a| Family::of(a) == Family::V6)
                .collect();
            let entries = vec![ScrapeStats { seeders: nums.0, completed: nums.1, leechers: nums.2 }; 3];
            let cases = [
                (UdpResponse::Connect { transaction_id: tid, connection_id: cid }, Family::V4),
                (UdpResponse::Announce { transaction_id: tid, interval: nums.0, leechers: nums.1, seeders: nums.2, peers: p4 }, Family::V4),
                (UdpResponse::Announce { transaction_id: tid, interval: nums.0, leechers: nums.1, seeders: nums.2, peers: p6 }, Family::V6),
                (UdpResponse::Scrape { transaction_id: tid, entries }, Family::V4),
                (UdpResponse::Error { transaction_id: tid, message: msg.trim().to_string() }, Family::V4),
            ];
            for (r, fam) in cases {
                prop_assert_eq!(parse_udp_response_for(&encode_udp_response(&r, fam), fam).unwrap(), r);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_udp_response_for(&bytes, Family::V4);
            let _ = parse_udp_response_for(&bytes, Family::V6);
            let _ = parse_udp_request(&bytes);
        }
    }
}
