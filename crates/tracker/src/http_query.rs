//! HTTP announce and scrape query strings: building them (client) and reading them (embedded
//! tracker).
//!
//! BEP 3: the info-hash and peer id are raw bytes, percent-encoded byte by byte; everything but
//! `0-9 a-z A-Z . - _ ~` is escaped. Reading accepts either case of hex, as clients differ.

use std::net::{Ipv6Addr, SocketAddrV6};

use shoal_core::Id20;
use shoal_metainfo::percent_encode;

use crate::announce::{AnnounceRequest, Event};
use crate::TrackerError;

/// Longest query string the embedded tracker reads.
pub const MAX_QUERY_LEN: usize = 4096;
/// Most `key=value` pairs read from one query.
pub const MAX_QUERY_PAIRS: usize = 128;
/// Most info-hashes in one scrape (the BEP 15 packet limit, used for HTTP too).
pub const MAX_SCRAPE_HASHES: usize = 74;

/// Appends `?` or `&` and the announce parameters to the path-and-query of an announce URL.
pub fn announce_query(path_and_query: &str, req: &AnnounceRequest) -> String {
    let mut q = String::with_capacity(path_and_query.len() + 256);
    q.push_str(path_and_query);
    q.push(if path_and_query.contains('?') {
        '&'
    } else {
        '?'
    });
    q.push_str("info_hash=");
    q.push_str(&percent_encode(req.info_hash.as_bytes()));
    q.push_str("&peer_id=");
    q.push_str(&percent_encode(req.peer_id.as_bytes()));
    q.push_str(&format!(
        "&port={}&uploaded={}&downloaded={}&left={}",
        req.port, req.uploaded, req.downloaded, req.left
    ));
    if req.compact {
        q.push_str("&compact=1");
    }
    if let Some(n) = req.numwant {
        q.push_str(&format!("&numwant={n}"));
    }
    q.push_str(&format!("&key={:08x}", req.key));
    if let Some(e) = req.event.as_http() {
        q.push_str("&event=");
        q.push_str(e);
    }
    if let Some(id) = &req.tracker_id {
        q.push_str("&trackerid=");
        q.push_str(&percent_encode(id));
    }
    if let Some(ip) = req.ipv6 {
        // BEP 7; `:` is escaped like every reserved byte.
        q.push_str("&ipv6=");
        q.push_str(&percent_encode(ip.to_string().as_bytes()));
    }
    q
}

/// Appends the scrape parameters (`info_hash` once per torrent) to a scrape URL's path-and-query.
pub fn scrape_query(path_and_query: &str, hashes: &[Id20]) -> String {
    let mut q = String::from(path_and_query);
    for (i, h) in hashes.iter().enumerate() {
        let first = i == 0 && !path_and_query.contains('?');
        q.push(if first { '?' } else { '&' });
        q.push_str("info_hash=");
        q.push_str(&percent_encode(h.as_bytes()));
    }
    q
}

/// Percent-decodes one query component to raw bytes (`+` is a space, as in HTML forms).
pub fn percent_decode(s: &[u8]) -> Result<Vec<u8>, TrackerError> {
    shoal_metainfo::percent_decode(s)
        .ok_or_else(|| TrackerError::Malformed("bad percent escape in query".into()))
}

/// Decoded `(key, value)` pairs of a query string, in order.
pub type QueryPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Splits a query string (without the `?`) into decoded `(key, value)` pairs, in order.
pub fn parse_query(query: &[u8]) -> Result<QueryPairs, TrackerError> {
    if query.len() > MAX_QUERY_LEN {
        return Err(TrackerError::TooLarge {
            limit: MAX_QUERY_LEN,
        });
    }
    let mut pairs = Vec::new();
    for part in query.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        if pairs.len() == MAX_QUERY_PAIRS {
            return Err(TrackerError::Malformed("too many query parameters".into()));
        }
        let (k, v) = match part.iter().position(|&b| b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &[][..]),
        };
        pairs.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(pairs)
}

fn first<'a>(pairs: &'a [(Vec<u8>, Vec<u8>)], key: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(k, _)| k == key.as_bytes())
        .map(|(_, v)| v.as_slice())
}

fn number<T: std::str::FromStr>(
    pairs: &[(Vec<u8>, Vec<u8>)],
    key: &'static str,
) -> Result<Option<T>, TrackerError> {
    match first(pairs, key) {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| TrackerError::Malformed(format!("parameter {key} is not a number"))),
    }
}

fn id20(pairs: &[(Vec<u8>, Vec<u8>)], key: &'static str) -> Result<Id20, TrackerError> {
    let v = first(pairs, key)
        .ok_or_else(|| TrackerError::Malformed(format!("missing parameter {key}")))?;
    Id20::from_slice(v).ok_or_else(|| TrackerError::Malformed(format!("{key} is not 20 bytes")))
}

/// Reads an announce request from a query string (the part after `?`), as the embedded tracker
/// receives it. `key` is kept as its low 32 bits whether sent in hex (libtorrent, aria2) or
/// decimal (rqbit); unknown parameters are ignored.
pub fn parse_announce_query(query: &[u8]) -> Result<AnnounceRequest, TrackerError> {
    let pairs = parse_query(query)?;
    let port: u16 =
        number(&pairs, "port")?.ok_or_else(|| TrackerError::Malformed("missing port".into()))?;
    let key = first(&pairs, "key").map(parse_key).unwrap_or(0);
    let numwant: Option<i64> = number(&pairs, "numwant")?;
    Ok(AnnounceRequest {
        info_hash: id20(&pairs, "info_hash")?,
        peer_id: id20(&pairs, "peer_id")?,
        port,
        uploaded: number(&pairs, "uploaded")?.unwrap_or(0),
        downloaded: number(&pairs, "downloaded")?.unwrap_or(0),
        left: number(&pairs, "left")?.unwrap_or(0),
        event: Event::from_http(first(&pairs, "event").unwrap_or_default()),
        // A negative numwant (rqbit's UDP -1) means "tracker's choice".
        numwant: numwant.and_then(|n| u32::try_from(n).ok()),
        key,
        tracker_id: first(&pairs, "trackerid").map(<[u8]>::to_vec),
        compact: first(&pairs, "compact") == Some(b"1"),
        ipv6: first(&pairs, "ipv6").and_then(parse_ipv6),
    })
}

/// BEP 7 `ipv6=`: an IPv6 address, or (as earlier versions of the BEP allowed) `[address]:port`
/// whose port is ignored: the announce's `port` is the one peers dial. Anything else, and
/// addresses no peer can be dialled at (unspecified, multicast, IPv4-mapped), count as absent.
fn parse_ipv6(v: &[u8]) -> Option<Ipv6Addr> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let ip = s
        .parse::<Ipv6Addr>()
        .ok()
        .or_else(|| s.parse::<SocketAddrV6>().ok().map(|a| *a.ip()))?;
    let usable = !ip.is_unspecified() && !ip.is_multicast() && ip.to_ipv4_mapped().is_none();
    usable.then_some(ip)
}

/// `key` is opaque to a tracker; 8 hex digits (libtorrent, aria2, us) or decimal (rqbit) both
/// become a u32.
fn parse_key(v: &[u8]) -> u32 {
    let s = std::str::from_utf8(v).unwrap_or("");
    if s.len() == 8 {
        if let Ok(n) = u32::from_str_radix(s, 16) {
            return n;
        }
    }
    s.parse::<u64>().map(|n| n as u32).unwrap_or(0)
}

/// Reads the info-hashes of a scrape query (at most [`MAX_SCRAPE_HASHES`]).
pub fn parse_scrape_query(query: &[u8]) -> Result<Vec<Id20>, TrackerError> {
    let pairs = parse_query(query)?;
    let mut out = Vec::new();
    for (k, v) in &pairs {
        if k == b"info_hash" {
            if out.len() == MAX_SCRAPE_HASHES {
                return Err(TrackerError::Malformed(
                    "too many info-hashes in scrape".into(),
                ));
            }
            out.push(
                Id20::from_slice(v)
                    .ok_or_else(|| TrackerError::Malformed("info_hash is not 20 bytes".into()))?,
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: Id20([0xd4; 20]),
            peer_id: Id20(*b"-SH0001-abc~.__+/ xy"),
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Event::Started,
            numwant: Some(50),
            key: 0xdead_beef,
            tracker_id: Some(b"t 1".to_vec()),
            compact: true,
            ipv6: None,
        }
    }

    #[test]
    fn announce_query_round_trips_and_escapes_reserved_bytes() {
        let q = announce_query("/announce?pk=1", &req());
        assert!(q.starts_with("/announce?pk=1&info_hash=%D4%D4"), "{q}");
        assert!(q.contains("peer_id=-SH0001-abc~.__%2B%2F%20xy"), "{q}");
        let query = q.split_once('?').unwrap().1;
        let back = parse_announce_query(query.as_bytes()).unwrap();
        assert_eq!(back, req());
    }

    #[test]
    fn bep7_ipv6_is_sent_and_read() {
        let mut r = req();
        r.ipv6 = Some("2001:db8::7".parse().unwrap());
        let q = announce_query("/announce", &r);
        assert!(q.ends_with("&ipv6=2001%3Adb8%3A%3A7"), "{q}");
        let back = parse_announce_query(q.split_once('?').unwrap().1.as_bytes()).unwrap();
        assert_eq!(back, r);
        let base = announce_query("/announce", &req());
        let read = |extra: &str| {
            parse_announce_query(format!("{}{extra}", base.split_once('?').unwrap().1).as_bytes())
                .unwrap()
                .ipv6
        };
        assert_eq!(read("&ipv6=%3A%3A1"), Some("::1".parse().unwrap()));
        assert_eq!(
            read("&ipv6=%5B%3A%3A1%5D%3A6881"),
            Some("::1".parse().unwrap())
        );
        assert_eq!(read("&ipv6=%3A%3A"), None);
        assert_eq!(read("&ipv6=ff02%3A%3A1"), None);
        assert_eq!(read("&ipv6=%3A%3Affff%3A1.2.3.4"), None);
        assert_eq!(read("&ipv6=1.2.3.4"), None);
        assert_eq!(read("&ipv6=nonsense"), None);
    }

    #[test]
    fn scrape_query_lists_every_hash() {
        let q = scrape_query("/scrape", &[Id20([1; 20]), Id20([2; 20])]);
        let hashes = parse_scrape_query(q.split_once('?').unwrap().1.as_bytes()).unwrap();
        assert_eq!(hashes, vec![Id20([1; 20]), Id20([2; 20])]);
    }

    #[test]
    fn bad_queries_are_errors() {
        assert!(parse_announce_query(b"info_hash=%zz").is_err());
        assert!(
            parse_announce_query(b"info_hash=abc&peer_id=01234567890123456789&port=1").is_err()
        );
        assert!(parse_announce_query(&vec![b'a'; MAX_QUERY_LEN + 1]).is_err());
        assert!(parse_scrape_query(b"info_hash=%").is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_queries_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_announce_query(&bytes);
            let _ = parse_scrape_query(&bytes);
        }

        #[test]
        fn percent_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(percent_decode(percent_encode(&bytes).as_bytes()).unwrap(), bytes);
        }
    }
}
