//! Captured traffic from libtorrent, aria2, Transmission, rqbit and opentracker (see
//! `data/tracker/CONFORMANCE-README.md`): every client request must be understood by the embedded
//! tracker's parsers, every opentracker reply by the client's parsers, with the values in the
//! manifest's `decoded` column.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shoal_core::Id20;
use shoal_tracker::http_response::parse_http_scrape;
use shoal_tracker::{
    parse_announce_query, parse_http_announce, parse_scrape_query, parse_udp_request,
    parse_udp_response, AnnounceRequest, Event, RunningTracker, ServerConfig, SwarmConfig,
    TrackerError, UdpRequest, UdpResponse,
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tracker")
}

/// (file, decoded) for every manifest row.
fn manifest() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir().join("manifest.tsv")).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols[0].to_string(), cols[4].to_string())
        })
        .collect()
}

/// `key=value` tokens of a decoded field, split on spaces, commas and semicolons.
fn tokens(decoded: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for t in decoded.split([' ', ',', ';']) {
        if let Some((k, v)) = t.split_once('=') {
            out.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
    }
    out
}

fn num(s: &str) -> i128 {
    match s.strip_prefix("0x") {
        Some(h) => i128::from_str_radix(h, 16).unwrap(),
        None => s.parse().unwrap(),
    }
}

fn hex_id(s: &str) -> Id20 {
    Id20::from_hex(s).unwrap()
}

/// A peer id as the manifest shows it: printable, or `prefix+<40 hex digits>`.
fn peer_id_matches(shown: &str, got: &Id20) -> bool {
    if let Some((_, hex)) = shown.rsplit_once('+') {
        if hex.len() == 40 {
            return got.to_hex() == hex;
        }
    }
    got.as_bytes() == shown.as_bytes()
}

/// `"key": N` in the JSON-like rendering of a bencoded reply.
fn json_num(decoded: &str, key: &str) -> Option<u32> {
    let pat = format!("\"{key}\": ");
    let at = decoded.find(&pat)? + pat.len();
    let digits: String = decoded[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

fn check_http_announce_request(file: &str, decoded: &str, raw: &[u8]) -> AnnounceRequest {
    let line = std::str::from_utf8(raw).unwrap().lines().next().unwrap();
    let target = line.split(' ').nth(1).unwrap();
    let (path, query) = target.split_once('?').unwrap();
    assert_eq!(path, "/announce", "{file}");
    let req = parse_announce_query(query.as_bytes()).unwrap_or_else(|e| panic!("{file}: {e}"));
    let params = decoded
        .split("params in order: ")
        .nth(1)
        .unwrap()
        .split("; ")
        .next()
        .unwrap();
    let p: HashMap<&str, &str> = params
        .split(", ")
        .filter_map(|kv| kv.split_once('='))
        .collect();
    assert_eq!(req.info_hash, hex_id(p["info_hash"]), "{file}");
    assert!(
        peer_id_matches(p["peer_id"], &req.peer_id),
        "{file}: {:?}",
        req.peer_id
    );
    assert_eq!(req.port.to_string(), p["port"], "{file}");
    assert_eq!(req.left.to_string(), p["left"], "{file}");
    assert_eq!(req.uploaded.to_string(), p["uploaded"], "{file}");
    assert_eq!(req.downloaded.to_string(), p["downloaded"], "{file}");
    assert_eq!(
        req.event,
        Event::from_http(p.get("event").copied().unwrap_or("").as_bytes())
    );
    assert_eq!(
        req.numwant.map(|n| n.to_string()),
        p.get("numwant").map(|s| s.to_string())
    );
    assert!(req.compact, "{file}");
    req
}

fn check_udp_request(file: &str, decoded: &str, raw: &[u8]) {
    let t = tokens(decoded);
    let req = parse_udp_request(raw).unwrap_or_else(|e| panic!("{file}: {e}"));
    let tid = num(&t["transaction_id"]) as u32;
    match req {
        UdpRequest::Connect { transaction_id } => {
            assert!(file.contains("connect-request"), "{file}");
            assert_eq!(transaction_id, tid);
        }
        UdpRequest::Announce {
            connection_id,
            transaction_id,
            request,
            ip,
            url_data,
        } => {
            assert!(file.contains("announce-request"), "{file}");
            assert_eq!(connection_id as i128, num(&t["connection_id"]));
            assert_eq!(transaction_id, tid);
            assert_eq!(request.info_hash, hex_id(&t["info_hash"]));
            assert_eq!(request.peer_id.to_hex(), t["peer_id"]);
            assert_eq!(request.downloaded as i128, num(&t["downloaded"]));
            assert_eq!(request.left as i128, num(&t["left"]));
            assert_eq!(request.uploaded as i128, num(&t["uploaded"]));
            assert_eq!(request.event.as_udp() as i128, num(&t["event"]));
            assert_eq!(ip as i128, num(&t["ip"]));
            assert_eq!(request.key as i128, num(&t["key"]));
            let nw = num(&t["num_want"]);
            assert_eq!(request.numwant.map(i128::from), (nw >= 0).then_some(nw));
            assert_eq!(request.port as i128, num(&t["port"]));
            // libtorrent's BEP 41 URLData; aria2's two zero bytes carry none.
            let want_url: &[u8] = if decoded.contains("URLData(9)='/announce'") {
                b"/announce"
            } else {
                b""
            };
            assert_eq!(url_data, want_url, "{file}");
        }
        UdpRequest::Scrape {
            connection_id,
            transaction_id,
            info_hashes,
        } => {
            assert!(file.contains("scrape-request"), "{file}");
            assert_eq!(connection_id as i128, num(&t["connection_id"]));
            assert_eq!(transaction_id, tid);
            let list = t["info_hashes"].trim_matches(['[', ']']);
            let want: Vec<Id20> = list.split(',').map(hex_id).collect();
            assert_eq!(info_hashes, want);
        }
    }
}

fn check_udp_response(file: &str, decoded: &str, raw: &[u8]) {
    let t = tokens(decoded);
    let tid = num(&t["transaction_id"]) as u32;
    let resp = parse_udp_response(raw).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(resp.transaction_id(), tid, "{file}");
    match resp {
        UdpResponse::Connect { connection_id, .. } => {
            assert_eq!(connection_id as i128, num(&t["connection_id"]))
        }
        UdpResponse::Announce {
            interval,
            leechers,
            seeders,
            peers,
            ..
        } => {
            assert_eq!(interval as i128, num(&t["interval"]));
            assert_eq!(leechers as i128, num(&t["leechers"]));
            assert_eq!(seeders as i128, num(&t["seeders"]));
            let (count, list) = decoded
                .split_once("peers(")
                .unwrap()
                .1
                .split_once(")=")
                .unwrap();
            assert_eq!(peers.len(), count.parse::<usize>().unwrap());
            let want: Vec<SocketAddr> = list
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap())
                .collect();
            assert_eq!(peers, want, "{file}");
        }
        UdpResponse::EmptyAnnounce { .. } => assert!(file.contains("truncated"), "{file}"),
        UdpResponse::Scrape { entries, .. } => {
            assert_eq!(entries.len(), 1);
            let e = entries[0];
            let part = decoded.split_once("entries(1)=").unwrap().1;
            let t = tokens(part);
            assert_eq!(e.seeders as i128, num(&t["seeders"]));
            assert_eq!(e.completed as i128, num(&t["completed"]));
            assert_eq!(e.leechers as i128, num(&t["leechers"]));
        }
        UdpResponse::Error { message, .. } => {
            let want = decoded.split('\'').nth(1).unwrap();
            assert_eq!(message, want);
        }
    }
}

fn http_body(raw: &[u8]) -> &[u8] {
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    &raw[at + 4..]
}

fn check_http_response(file: &str, decoded: &str, raw: &[u8]) {
    let body = if file.ends_with(".http") {
        http_body(raw)
    } else {
        raw
    };
    if file.contains("scrape-response") {
        let files = parse_http_scrape(body).unwrap_or_else(|e| panic!("{file}: {e}"));
        if decoded.contains("\"files\": {}") {
            assert!(files.is_empty(), "{file}");
        } else {
            let hex = decoded.split("0x").nth(1).unwrap().get(..40).unwrap();
            assert_eq!(files.len(), 1);
            assert_eq!(files[0].0, hex_id(hex));
            let s = files[0].1;
            assert_eq!(Some(s.seeders), json_num(decoded, "complete"));
            assert_eq!(Some(s.leechers), json_num(decoded, "incomplete"));
            assert_eq!(Some(s.completed), json_num(decoded, "downloaded"));
        }
        return;
    }
    match parse_http_announce(body) {
        Err(TrackerError::Failure(reason)) => {
            assert!(file.contains("failure"), "{file}");
            let want = decoded.split("\"failure reason\": \"").nth(1).unwrap();
            assert_eq!(reason, want.trim_end_matches("\"}"));
        }
        Ok(r) => {
            assert_eq!(r.seeders, json_num(decoded, "complete"));
            assert_eq!(r.leechers, json_num(decoded, "incomplete"));
            assert_eq!(r.downloaded, json_num(decoded, "downloaded"));
            let secs = |k| json_num(decoded, k).map(|n| Duration::from_secs(n.into()));
            assert_eq!(r.interval, secs("interval"));
            assert_eq!(r.min_interval, secs("min interval"));
            let peers = decoded
                .split("peer(s) ")
                .nth(1)
                .unwrap()
                .trim_end_matches(">}");
            let want: Vec<SocketAddr> = peers.split(' ').map(|p| p.parse().unwrap()).collect();
            assert_eq!(r.peers, want);
        }
        Err(e) => panic!("{file}: {e}"),
    }
}

#[test]
fn every_capture_is_understood_with_the_manifest_values() {
    let rows = manifest();
    assert!(rows.len() >= 37, "manifest rows: {}", rows.len());
    let mut checked = 0;
    for (file, decoded) in &rows {
        let raw = std::fs::read(dir().join(file)).unwrap();
        if file.contains("http-announce-request") {
            check_http_announce_request(file, decoded, &raw);
        } else if file.contains("http-scrape-request") {
            let line = std::str::from_utf8(&raw).unwrap().lines().next().unwrap();
            let (path, query) = line.split(' ').nth(1).unwrap().split_once('?').unwrap();
            assert_eq!(path, "/scrape");
            let hashes = parse_scrape_query(query.as_bytes()).unwrap();
            let t = tokens(decoded);
            assert_eq!(hashes, vec![hex_id(&t["info_hash"])], "{file}");
        } else if file.contains("_udp-") && file.contains("-request") {
            check_udp_request(file, decoded, &raw);
        } else if file.starts_with("opentracker_udp-") {
            check_udp_response(file, decoded, &raw);
        } else if file.starts_with("opentracker_http-") {
            check_http_response(file, decoded, &raw);
        } else {
            panic!("no check for {file}");
        }
        checked += 1;
    }
    assert_eq!(checked, rows.len());
}

/// The captured HTTP requests, sent byte for byte to the embedded tracker, get a bencoded answer.
#[tokio::test]
async fn captured_http_requests_are_served_by_the_embedded_tracker() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tracker = RunningTracker::start(ServerConfig {
        http: Some("127.0.0.1:0".parse().unwrap()),
        swarm: SwarmConfig::default(),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let addr = tracker.http_addr().unwrap();
    let mut n = 0;
    for (file, _) in manifest() {
        if !(file.ends_with(".http") && file.contains("-request")) {
            continue;
        }
        let raw = std::fs::read(dir().join(&file)).unwrap();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&raw).await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert!(
            reply.starts_with(b"HTTP/1.1 200"),
            "{file}: {:?}",
            String::from_utf8_lossy(&reply)
        );
        let body = http_body(&reply);
        if file.contains("scrape") {
            parse_http_scrape(body).unwrap_or_else(|e| panic!("{file}: {e}"));
        } else {
            parse_http_announce(body).unwrap_or_else(|e| panic!("{file}: {e}"));
        }
        n += 1;
    }
    assert!(n >= 10);
    tracker.shutdown().await;
}
