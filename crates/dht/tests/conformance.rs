//! Every KRPC message captured from libtorrent, aria2 and rqbit (tests/data/krpc, see its
//! CONFORMANCE-README.md) decodes, and its fields match the `decoded` column of manifest.tsv.
//! A shoal node answers each captured query.

use std::net::SocketAddr;
use std::path::Path;

use shoal_core::{Id20, Time};
use shoal_dht::krpc::{self, Body, QueryKind};
use shoal_dht::{DhtConfig, DhtNode};

fn data() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/krpc"))
}

/// The text right after `"key": ` in the rendering, up to the next `,` or `}` at depth 0.
fn field<'a>(decoded: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\": ");
    let start = decoded.find(&pat)? + pat.len();
    let rest = &decoded[start..];
    let mut depth = 0i32;
    let mut in_str = false;
    for (i, c) in rest.char_indices() {
        match c {
            '"' => in_str = !in_str,
            '[' | '<' | '{' if !in_str => depth += 1,
            ']' | '>' | '}' if !in_str => {
                if depth == 0 {
                    return Some(&rest[..i]);
                }
                depth -= 1;
            }
            ',' if !in_str && depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
    }
    Some(rest)
}

/// Like [`field`], for a key of the outer dictionary only.
fn top_field<'a>(decoded: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\": ");
    let mut depth = 0i32;
    let mut in_str = false;
    for (i, c) in decoded.char_indices() {
        if depth == 1 && !in_str && decoded[i..].starts_with(&pat) {
            return field(&decoded[i..], key);
        }
        match c {
            '"' => in_str = !in_str,
            '[' | '<' | '{' if !in_str => depth += 1,
            ']' | '>' | '}' if !in_str => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Bytes of a rendered string: `0x..` hex or a quoted printable string.
fn bytes_of(r: &str) -> Vec<u8> {
    if let Some(h) = r.strip_prefix("0x") {
        (0..h.len() / 2)
            .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    } else if let Some((s, h)) = r.split_once("\"+0x") {
        let mut b = s.trim_start_matches('"').as_bytes().to_vec();
        b.extend(bytes_of(&format!("0x{h}")));
        b
    } else {
        r.trim_matches('"').as_bytes().to_vec()
    }
}

/// `<N node(s) ...>` or `[<N peer(s) ...>]` counts; `""` and `[]` are 0.
fn count_of(r: &str) -> usize {
    let r = r.trim_start_matches('[').trim_start_matches('<');
    r.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn captured_krpc_messages_decode_as_the_manifest_says() {
    let manifest = std::fs::read_to_string(data().join("manifest.tsv")).unwrap();
    let mut checked = 0;
    let mut rows = 0;
    for line in manifest.lines().skip(1).filter(|l| !l.is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, decoded) = (cols[0], cols[4]);
        let bytes = std::fs::read(data().join(file)).unwrap();
        let msg = krpc::decode(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        rows += 1;
        assert_eq!(
            msg.tid,
            bytes_of(top_field(decoded, "t").unwrap()),
            "{file} t"
        );
        match top_field(decoded, "v") {
            Some(v) => assert_eq!(msg.version.as_deref(), Some(&bytes_of(v)[..]), "{file} v"),
            None => assert_eq!(msg.version, None, "{file} v"),
        }
        assert_eq!(
            msg.read_only,
            top_field(decoded, "ro") == Some("1"),
            "{file} ro"
        );
        if let Some(ip) = top_field(decoded, "ip") {
            let ip: SocketAddr = ip.trim_matches(['<', '>']).parse().unwrap();
            assert_eq!(msg.ip, Some(ip), "{file} ip");
        }
        let id = field(decoded, "id").map(|s| Id20::from_slice(&bytes_of(s)).unwrap());
        let y = top_field(decoded, "y").unwrap();
        match &msg.body {
            Body::Query(q) => {
                assert_eq!(y, "\"q\"", "{file}");
                assert_eq!(Some(q.id), id, "{file} id");
                let method = top_field(decoded, "q").unwrap().trim_matches('"');
                let h = field(decoded, "info_hash").map(|s| Id20::from_slice(&bytes_of(s)));
                match &q.kind {
                    QueryKind::Ping => assert_eq!(method, "ping"),
                    QueryKind::FindNode { target } => {
                        assert_eq!(method, "find_node");
                        let t = bytes_of(field(decoded, "target").unwrap());
                        assert_eq!(&target.0[..], &t[..], "{file} target");
                    }
                    QueryKind::GetPeers { info_hash } => {
                        assert_eq!(method, "get_peers");
                        assert_eq!(h, Some(Some(*info_hash)), "{file} info_hash");
                    }
                    QueryKind::AnnouncePeer {
                        info_hash,
                        port,
                        implied_port,
                        token,
                    } => {
                        assert_eq!(method, "announce_peer");
                        assert_eq!(h, Some(Some(*info_hash)), "{file} info_hash");
                        assert_eq!(
                            field(decoded, "port").unwrap().parse::<u16>().unwrap(),
                            *port
                        );
                        assert_eq!(*implied_port, field(decoded, "implied_port") == Some("1"));
                        assert_eq!(token, &bytes_of(field(decoded, "token").unwrap()));
                    }
                    QueryKind::Get { target, .. } => {
                        assert_eq!(method, "get");
                        let t = bytes_of(field(decoded, "target").unwrap());
                        assert_eq!(&target.0[..], &t[..], "{file} target");
                    }
                    QueryKind::SampleInfohashes { target } => {
                        assert_eq!(method, "sample_infohashes");
                        let t = bytes_of(field(decoded, "target").unwrap());
                        assert_eq!(&target.0[..], &t[..], "{file} target");
                    }
                    QueryKind::Put(p) => {
                        assert_eq!(method, "put");
                        assert_eq!(p.token, bytes_of(field(decoded, "token").unwrap()));
                        // The manifest renders the value (a byte string) quoted; `value` keeps
                        // its bencoding.
                        let a = field(decoded, "a").unwrap();
                        let v = field(a, "v").unwrap().trim_matches('"');
                        assert_eq!(p.value, format!("{}:{v}", v.len()).into_bytes(), "{file} v");
                    }
                    QueryKind::Other { method: m } => panic!("{file}: unknown method {m}"),
                }
            }
            Body::Response(r) => {
                assert_eq!(y, "\"r\"", "{file}");
                assert_eq!(Some(r.id), id, "{file} id");
                let nodes = field(decoded, "nodes").map_or(0, count_of);
                assert_eq!(r.nodes.len(), nodes, "{file} nodes");
                let values = field(decoded, "values").map_or(0, count_of);
                assert_eq!(r.values.len(), values, "{file} values");
                match field(decoded, "token") {
                    Some(t) => assert_eq!(r.token.as_deref(), Some(&bytes_of(t)[..]), "{file}"),
                    None => assert_eq!(r.token, None, "{file} token"),
                }
                // BEP 51 and BEP 44 fields.
                let samples = field(decoded, "samples").map(count_of);
                assert_eq!(r.samples.as_ref().map(Vec::len), samples, "{file} samples");
                let int = |k| field(decoded, k).map(|s| s.parse::<i64>().unwrap());
                assert_eq!(r.interval, int("interval"), "{file} interval");
                assert_eq!(r.num, int("num"), "{file} num");
                let inner = field(decoded, "r").unwrap();
                let v = field(inner, "v").map(|v| {
                    let v = v.trim_matches('"');
                    format!("{}:{v}", v.len()).into_bytes()
                });
                assert_eq!(r.value, v, "{file} v");
                // The first node's address is rendered as `..@ip:port`.
                if let (Some(first), Some(n)) = (r.nodes.first(), field(decoded, "nodes")) {
                    if let Some(at) = n.split('@').nth(1) {
                        let addr = at.split([',', '>']).next().unwrap();
                        assert_eq!(first.addr.to_string(), addr, "{file}");
                    }
                }
            }
            Body::Error(e) => {
                assert_eq!(y, "\"e\"", "{file}");
                let rendered = top_field(decoded, "e").unwrap();
                assert!(rendered.starts_with(&format!("[{}, ", e.code)), "{file}");
                assert!(rendered.contains(&e.message), "{file}");
            }
        }
        checked += 1;
    }
    assert_eq!(rows, checked);
    assert!(rows >= 30, "only {rows} captured messages");
    println!("conformance: {checked} captured KRPC messages decoded and checked");
}

#[test]
fn shoal_answers_captured_queries() {
    let mut node = DhtNode::new(DhtConfig::loopback(), Time::ZERO, 1);
    let from: SocketAddr = "127.0.0.9:7000".parse().unwrap();
    let mut answered = 0;
    for entry in std::fs::read_dir(data()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("bin") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let msg = krpc::decode(&bytes).unwrap();
        let Body::Query(q) = &msg.body else { continue };
        node.handle_packet(Time::from_secs(1), from, &bytes);
        // Drain: the answer, and possibly a ping to confirm the new node.
        let mut reply = None;
        while let Some((to, out)) = node.poll_transmit() {
            assert_eq!(to, from);
            let m = krpc::decode(&out).unwrap();
            if m.tid == msg.tid {
                reply = Some(m);
            }
        }
        let reply = reply.unwrap_or_else(|| panic!("{path:?} was not answered"));
        assert_eq!(reply.ip, Some(from));
        match (&q.kind, &reply.body) {
            (QueryKind::AnnouncePeer { .. }, Body::Error(e)) => {
                // The captured token was not ours.
                assert_eq!(e.code, krpc::ERROR_PROTOCOL);
            }
            (QueryKind::Put(_), Body::Error(e)) => {
                // The captured token was not ours: 203, not 204 "method unknown".
                assert_eq!(e.code, krpc::ERROR_PROTOCOL);
            }
            (QueryKind::Get { .. }, Body::Response(r)) => {
                assert_eq!(r.id, node.id());
                assert!(r.token.is_some());
            }
            (QueryKind::SampleInfohashes { .. }, Body::Response(r)) => {
                assert_eq!(r.id, node.id());
                assert!(r.samples.is_some(), "BEP 51 replies always carry samples");
                assert!(r.num.is_some() && r.interval.is_some());
            }
            (QueryKind::GetPeers { .. }, Body::Response(r)) => assert!(r.token.is_some()),
            (QueryKind::Ping | QueryKind::FindNode { .. }, Body::Response(r)) => {
                assert_eq!(r.id, node.id())
            }
            (k, b) => panic!("{path:?}: {k:?} answered with {b:?}"),
        }
        answered += 1;
    }
    assert!(answered >= 10);
}

/// libtorrent's captured `get`, `put` and `sample_infohashes` against a shoal node that holds
/// what they ask for: the immutable item put by libtorrent comes back from `get`, and the
/// info-hash announced to the node is among the samples.
#[test]
fn captured_bep44_and_bep51_queries_are_served() {
    let read = |f: &str| std::fs::read(data().join(f)).unwrap();
    let mut node = DhtNode::new(DhtConfig::loopback(), Time::ZERO, 1);
    let from: SocketAddr = "127.0.0.57:7057".parse().unwrap();
    let answer = |node: &mut DhtNode, bytes: &[u8]| {
        let tid = krpc::decode(bytes).unwrap().tid;
        node.handle_packet(Time::from_secs(1), from, bytes);
        let mut reply = None;
        while let Some((_, out)) = node.poll_transmit() {
            let m = krpc::decode(&out).unwrap();
            if m.tid == tid {
                reply = Some(m);
            }
        }
        reply.expect("answered")
    };
    // The captured put carries libtorrent's token, so first get one of ours for the same
    // value, and put it again with that token.
    let put = krpc::decode(&read("libtorrent-2.0.8_put-query.bin")).unwrap();
    let Body::Query(q) = &put.body else { panic!() };
    let QueryKind::Put(p) = &q.kind else { panic!() };
    let target = shoal_dht::bep44::immutable_target(&p.value);
    let get = krpc::decode(&read("libtorrent-2.0.8_get-query.bin")).unwrap();
    let mut get = get.clone();
    let Body::Query(gq) = &mut get.body else {
        panic!()
    };
    gq.kind = QueryKind::Get { target, seq: None };
    let reply = answer(&mut node, &get.encode());
    let Body::Response(r) = reply.body else {
        panic!()
    };
    assert_eq!(r.value, None);
    let mut ours = put.clone();
    let Body::Query(pq) = &mut ours.body else {
        panic!()
    };
    let QueryKind::Put(pp) = &mut pq.kind else {
        panic!()
    };
    pp.token = r.token.unwrap();
    let reply = answer(&mut node, &ours.encode());
    assert!(matches!(reply.body, Body::Response(_)), "{reply:?}");
    let reply = answer(&mut node, &get.encode());
    let Body::Response(r) = reply.body else {
        panic!()
    };
    assert_eq!(
        r.value.as_deref(),
        Some(&b"24:21:conformance test item"[..])
    );
    // The same bytes as libtorrent's own reply carrying the item.
    let lt = krpc::decode(&read("libtorrent-2.0.8_get-response_with-item.bin")).unwrap();
    let Body::Response(lr) = lt.body else {
        panic!()
    };
    assert_eq!(r.value, lr.value);

    // sample_infohashes: announce the hash libtorrent's sample held, then ask.
    let h = Id20::from_hex("d460b8af98f716752723c9fa5b0b57995ee43085").unwrap();
    let gp = krpc::Msg {
        tid: b"gp".to_vec(),
        version: None,
        read_only: false,
        ip: None,
        body: Body::Query(krpc::Query {
            id: Id20([3; 20]),
            kind: QueryKind::GetPeers { info_hash: h },
            want: None,
        }),
    };
    let Body::Response(r) = answer(&mut node, &gp.encode()).body else {
        panic!()
    };
    let ann = krpc::Msg {
        tid: b"an".to_vec(),
        body: Body::Query(krpc::Query {
            id: Id20([3; 20]),
            kind: QueryKind::AnnouncePeer {
                info_hash: h,
                port: 6881,
                implied_port: false,
                token: r.token.unwrap(),
            },
            want: None,
        }),
        ..gp
    };
    assert!(matches!(
        answer(&mut node, &ann.encode()).body,
        Body::Response(_)
    ));
    let sample = read("libtorrent-2.0.8_sample_infohashes-query_ro.bin");
    let Body::Response(r) = answer(&mut node, &sample).body else {
        panic!()
    };
    assert_eq!(r.samples, Some(vec![h]));
    assert_eq!(r.num, Some(1));
    assert!((0..=21_600).contains(&r.interval.unwrap()));
}
