//! HTTP tracker replies: parsing them (client, untrusted input) and writing them (embedded
//! tracker).
//!
//! The parsers are pure functions over the body bytes so a fuzz target can call them. Every body
//! passes [`shoal_metainfo::bencode::scan`] (bounded, non-recursive) before serde_bencode reads it,
//! and known keys of the wrong type are treated as absent, as libtorrent does.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use serde_bencode::value::Value;
use shoal_core::{decode_compact_peers_v4, decode_compact_peers_v6, encode_compact_peer, Id20};
use shoal_metainfo::bencode::{self, write};

use crate::announce::{count, seconds, AnnounceResponse, ScrapeStats, MAX_PEERS_PER_REPLY};
use crate::TrackerError;

/// Largest HTTP reply body read from a tracker.
pub const MAX_BODY_LEN: usize = 1 << 20;
/// Longest `failure reason` / `warning message` kept; longer ones are cut.
const MAX_MESSAGE_LEN: usize = 1024;
/// Longest `tracker id` kept.
const MAX_TRACKER_ID_LEN: usize = 256;

type Dict = HashMap<Vec<u8>, Value>;

fn malformed(m: impl Into<String>) -> TrackerError {
    TrackerError::Malformed(m.into())
}

/// Scans, then decodes a body that must be a dictionary.
fn top_dict(body: &[u8]) -> Result<Dict, TrackerError> {
    if body.len() > MAX_BODY_LEN {
        return Err(TrackerError::TooLarge {
            limit: MAX_BODY_LEN,
        });
    }
    let scanned = bencode::scan(body).map_err(|e| malformed(format!("not bencode: {e}")))?;
    if !scanned.is_dict(body) {
        return Err(malformed("reply is not a bencoded dictionary"));
    }
    match serde_bencode::from_bytes::<Value>(body) {
        Ok(Value::Dict(d)) => Ok(d),
        Ok(_) => Err(malformed("reply is not a bencoded dictionary")),
        Err(e) => Err(malformed(format!("not bencode: {e}"))),
    }
}

fn text(v: Option<&Value>, max: usize) -> Option<String> {
    match v {
        Some(Value::Bytes(b)) => Some(String::from_utf8_lossy(b).chars().take(max).collect()),
        _ => None,
    }
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

/// The `failure reason` of a reply, if it is one.
fn failure(d: &Dict) -> Option<TrackerError> {
    d.get(&b"failure reason"[..]).map(|v| {
        TrackerError::Failure(
            text(Some(v), MAX_MESSAGE_LEN).unwrap_or_else(|| "(no reason given)".into()),
        )
    })
}

/// Finds a `failure reason` in a body, for error statuses whose body is still bencoded.
pub fn failure_reason(body: &[u8]) -> Option<String> {
    match top_dict(body).ok().as_ref().and_then(failure) {
        Some(TrackerError::Failure(m)) => Some(m),
        _ => None,
    }
}

/// Parses the body of an HTTP announce reply: compact (BEP 23) or dictionary peers, `peers6`
/// (BEP 7), intervals, `tracker id`, counts. A `failure reason` becomes
/// [`TrackerError::Failure`]. At most [`MAX_PEERS_PER_REPLY`] peers are kept.
pub fn parse_http_announce(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let d = top_dict(body)?;
    if let Some(f) = failure(&d) {
        return Err(f);
    }
    let get = |k: &str| d.get(k.as_bytes());
    let mut peers = Vec::new();
    match get("peers") {
        Some(Value::Bytes(b)) => {
            peers.extend(decode_compact_peers_v4(b).map_err(|e| malformed(format!("peers: {e}")))?)
        }
        Some(Value::List(list)) => {
            for p in list.iter().take(MAX_PEERS_PER_REPLY) {
                if let Some(addr) = dict_peer(p) {
                    peers.push(addr);
                }
            }
        }
        _ => {}
    }
    if let Some(Value::Bytes(b)) = get("peers6") {
        peers.extend(decode_compact_peers_v6(b).map_err(|e| malformed(format!("peers6: {e}")))?);
    }
    peers.truncate(MAX_PEERS_PER_REPLY);
    let interval = int(get("interval")).and_then(seconds);
    if interval.is_none() && peers.is_empty() && !d.contains_key(&b"peers"[..]) {
        // Neither an answer nor a failure: not a tracker reply.
        return Err(malformed(
            "reply has neither peers, interval nor failure reason",
        ));
    }
    Ok(AnnounceResponse {
        interval,
        min_interval: int(get("min interval")).and_then(seconds),
        warning: text(get("warning message"), MAX_MESSAGE_LEN),
        tracker_id: match get("tracker id") {
            Some(Value::Bytes(b)) if b.len() <= MAX_TRACKER_ID_LEN => Some(b.clone()),
            _ => None,
        },
        seeders: int(get("complete")).and_then(count),
        leechers: int(get("incomplete")).and_then(count),
        downloaded: int(get("downloaded")).and_then(count),
        peers,
    })
}

/// One peer of a non-compact list: `{ip, port, peer id}`. Host names and bad ports are skipped.
fn dict_peer(v: &Value) -> Option<SocketAddr> {
    let Value::Dict(p) = v else { return None };
    let ip: IpAddr = match p.get(&b"ip"[..]) {
        Some(Value::Bytes(b)) => std::str::from_utf8(b).ok()?.trim().parse().ok()?,
        _ => return None,
    };
    let port = u16::try_from(int(p.get(&b"port"[..]))?).ok()?;
    (port != 0).then_some(SocketAddr::new(ip, port))
}

/// Parses the body of an HTTP scrape reply (BEP 48): the `files` dictionary, info-hash to counts.
/// Entries whose key is not 20 bytes are skipped; at most [`crate::http_query::MAX_SCRAPE_HASHES`]
/// x 100 entries are read.
pub fn parse_http_scrape(body: &[u8]) -> Result<Vec<(Id20, ScrapeStats)>, TrackerError> {
    let d = top_dict(body)?;
    if let Some(f) = failure(&d) {
        return Err(f);
    }
    let Some(Value::Dict(files)) = d.get(&b"files"[..]) else {
        return Err(malformed("scrape reply has no 'files' dictionary"));
    };
    let mut out: Vec<(Id20, ScrapeStats)> = files
        .iter()
        .filter_map(|(k, v)| {
            let id = Id20::from_slice(k)?;
            let Value::Dict(s) = v else { return None };
            let c = |key: &[u8]| int(s.get(key)).and_then(count).unwrap_or(0);
            Some((
                id,
                ScrapeStats {
                    seeders: c(b"complete"),
                    leechers: c(b"incomplete"),
                    completed: c(b"downloaded"),
                },
            ))
        })
        .take(crate::http_query::MAX_SCRAPE_HASHES * 100)
        .collect();
    out.sort_by_key(|(id, _)| *id);
    Ok(out)
}

/// Writes `d14:failure reason<len>:<reason>e`.
pub fn encode_failure(reason: &str) -> Vec<u8> {
    let mut out = b"d".to_vec();
    write::bytes(&mut out, b"failure reason");
    write::bytes(&mut out, reason.as_bytes());
    out.push(b'e');
    out
}

/// Writes an announce reply. With `compact`, IPv4 peers go to `peers` and IPv6 peers to `peers6`
/// as strings; otherwise `peers` is a list of `{ip, port}` dictionaries.
pub fn encode_announce_response(r: &AnnounceResponse, compact: bool) -> Vec<u8> {
    // Keys in sorted order, as bencode requires.
    let mut out = b"d".to_vec();
    let int_entry = |out: &mut Vec<u8>, k: &[u8], v: Option<i64>| {
        if let Some(v) = v {
            write::bytes(out, k);
            write::int(out, v);
        }
    };
    int_entry(&mut out, b"complete", r.seeders.map(i64::from));
    int_entry(&mut out, b"downloaded", r.downloaded.map(i64::from));
    int_entry(&mut out, b"incomplete", r.leechers.map(i64::from));
    let secs = |d: Option<std::time::Duration>| d.map(|d| d.as_secs().min(i64::MAX as u64) as i64);
    int_entry(&mut out, b"interval", secs(r.interval));
    int_entry(&mut out, b"min interval", secs(r.min_interval));
    write::bytes(&mut out, b"peers");
    if compact {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for p in &r.peers {
            match p {
                SocketAddr::V4(_) => encode_compact_peer(p, &mut v4),
                SocketAddr::V6(_) => encode_compact_peer(p, &mut v6),
            }
        }
        write::bytes(&mut out, &v4);
        if !v6.is_empty() {
            write::bytes(&mut out, b"peers6");
            write::bytes(&mut out, &v6);
        }
    } else {
        out.push(b'l');
        for p in &r.peers {
            out.push(b'd');
            write::bytes(&mut out, b"ip");
            write::bytes(&mut out, p.ip().to_string().as_bytes());
            write::bytes(&mut out, b"port");
            write::int(&mut out, i64::from(p.port()));
            out.push(b'e');
        }
        out.push(b'e');
    }
    if let Some(id) = &r.tracker_id {
        write::bytes(&mut out, b"tracker id");
        write::bytes(&mut out, id);
    }
    if let Some(w) = &r.warning {
        write::bytes(&mut out, b"warning message");
        write::bytes(&mut out, w.as_bytes());
    }
    out.push(b'e');
    out
}

/// Writes a scrape reply; `entries` must be sorted by info-hash (bencode key order).
pub fn encode_scrape_response(entries: &[(Id20, ScrapeStats)]) -> Vec<u8> {
    let mut out = b"d".to_vec();
    write::bytes(&mut out, b"files");
    out.push(b'd');
    for (id, s) in entries {
        write::bytes(&mut out, id.as_bytes());
        out.push(b'd');
        write::bytes(&mut out, b"complete");
        write::int(&mut out, i64::from(s.seeders));
        write::bytes(&mut out, b"downloaded");
        write::int(&mut out, i64::from(s.completed));
        write::bytes(&mut out, b"incomplete");
        write::int(&mut out, i64::from(s.leechers));
        out.push(b'e');
    }
    out.extend_from_slice(b"ee");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn sample() -> AnnounceResponse {
        AnnounceResponse {
            interval: Some(Duration::from_secs(1800)),
            min_interval: Some(Duration::from_secs(900)),
            warning: Some("be nice".into()),
            tracker_id: Some(b"abc".to_vec()),
            seeders: Some(3),
            leechers: Some(4),
            downloaded: Some(5),
            peers: vec![
                "127.0.0.2:6881".parse().unwrap(),
                "[::1]:6882".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn compact_and_dictionary_replies_round_trip() {
        for compact in [true, false] {
            let body = encode_announce_response(&sample(), compact);
            assert!(bencode::scan(&body).is_ok());
            assert_eq!(
                parse_http_announce(&body).unwrap(),
                sample(),
                "compact={compact}"
            );
        }
    }

    #[test]
    fn failure_reason_is_an_error() {
        let body = encode_failure("go away");
        assert_eq!(
            parse_http_announce(&body),
            Err(TrackerError::Failure("go away".into()))
        );
        assert_eq!(failure_reason(&body).as_deref(), Some("go away"));
        assert!(matches!(
            parse_http_scrape(&body),
            Err(TrackerError::Failure(_))
        ));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        for body in [
            &b"<html>nope</html>"[..],
            b"",
            b"le",
            b"d5:peers3:abce",
            b"d3:fooi1ee",
        ] {
            assert!(
                matches!(parse_http_announce(body), Err(TrackerError::Malformed(_))),
                "{body:?}"
            );
        }
        let huge = vec![b'x'; MAX_BODY_LEN + 1];
        assert!(matches!(
            parse_http_announce(&huge),
            Err(TrackerError::TooLarge { .. })
        ));
    }

    #[test]
    fn peer_lists_are_capped() {
        let mut r = sample();
        r.peers = (0..3000u32)
            .map(|i| SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 1000)))
            .collect();
        let got = parse_http_announce(&encode_announce_response(&r, true)).unwrap();
        assert_eq!(got.peers.len(), MAX_PEERS_PER_REPLY);
        let got = parse_http_announce(&encode_announce_response(&r, false)).unwrap();
        assert_eq!(got.peers.len(), MAX_PEERS_PER_REPLY);
    }

    #[test]
    fn scrape_round_trip() {
        let entries = vec![
            (
                Id20([1; 20]),
                ScrapeStats {
                    seeders: 1,
                    leechers: 2,
                    completed: 3,
                },
            ),
            (Id20([2; 20]), ScrapeStats::default()),
        ];
        let body = encode_scrape_response(&entries);
        assert_eq!(parse_http_scrape(&body).unwrap(), entries);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_http_announce(&bytes);
            let _ = parse_http_scrape(&bytes);
        }

        #[test]
        fn mutated_replies_never_panic(pos in 0usize..200, byte in any::<u8>()) {
            let mut body = encode_announce_response(&sample(), true);
            let i = pos % body.len();
            body[i] = byte;
            let _ = parse_http_announce(&body);
        }
    }
}
