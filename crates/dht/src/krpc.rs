//! KRPC (BEP 5): the bencoded query / response / error messages of the Mainline DHT.
//!
//! [`decode`] is a pure function of the packet bytes so it can be fuzzed. Every packet is
//! untrusted: its size is bounded ([`MAX_PACKET`]), the bencode is checked by the bounded,
//! non-recursive scanner of `shoal-metainfo` before serde_bencode sees it, node and peer lists are
//! capped, and unknown keys (libtorrent's `p`, `ip`, ...) are ignored; BEP 32's `want` is read. Encoding is
//! canonical bencode (keys sorted), so a message round-trips byte for byte.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde_bencode::value::Value;
use shoal_core::{
    decode_compact_nodes_v4, decode_compact_nodes_v6, encode_compact_node, encode_compact_peer,
    CompactNode, Id20, COMPACT_NODE_V4_LEN, COMPACT_NODE_V6_LEN,
};
use shoal_metainfo::bencode;
use thiserror::Error;

/// Largest packet accepted. An Ethernet MTU is 1500 bytes, and no conforming KRPC message needs
/// more (8 nodes are 208 bytes); libtorrent's receive buffer is of the same order.
pub const MAX_PACKET: usize = 1500;
/// Most nodes kept from one `nodes` or `nodes6` string (1500 / 26 = 57 is the physical bound).
pub const MAX_NODES: usize = 64;
/// Most peers kept from one `values` list (each entry takes 8 bytes in bencode, so ~180 fit).
pub const MAX_VALUES: usize = 200;
/// Bencode nesting allowed in a KRPC message: the deepest legal path is `e` / list or `r` /
/// `values` list, depth 3; BEP 44 items may nest a little more.
const MAX_DEPTH: usize = 16;
/// Most samples kept from one `samples` string (1500 / 20 = 75 is the physical bound).
pub const MAX_SAMPLES: usize = 75;
/// Longest salt a `put` may carry (BEP 44).
pub const MAX_SALT: usize = 64;
/// Longest error message text kept.
const MAX_ERROR_TEXT: usize = 256;

/// KRPC error code 201 (BEP 5): generic error.
pub const ERROR_GENERIC: i64 = 201;
/// KRPC error code 202 (BEP 5): server error.
pub const ERROR_SERVER: i64 = 202;
/// KRPC error code 203 (BEP 5): protocol error (malformed packet, invalid arguments, bad token).
pub const ERROR_PROTOCOL: i64 = 203;
/// KRPC error code 204 (BEP 5): method unknown.
pub const ERROR_METHOD_UNKNOWN: i64 = 204;

/// Why a packet is not a usable KRPC message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KrpcError {
    /// Larger than [`MAX_PACKET`].
    #[error("KRPC packet of {0} bytes is larger than the {MAX_PACKET}-byte limit")]
    TooLarge(usize),
    /// Not valid bencode (or nested too deep).
    #[error("KRPC packet is not valid bencode: {0}")]
    Bencode(#[from] bencode::BencodeError),
    /// Valid bencode but not a dictionary.
    #[error("KRPC packet is not a bencoded dictionary")]
    NotADict,
    /// No transaction id `t`, or one that is not a byte string.
    #[error("KRPC packet has no transaction id")]
    NoTransactionId,
    /// `y` is missing or not `q`, `r` or `e`.
    #[error("KRPC packet has no valid message type `y`")]
    BadType,
    /// A query whose arguments are missing or malformed. The transaction id is kept so that the
    /// receiver can answer with error 203.
    #[error("malformed KRPC query: {reason}")]
    BadQuery {
        /// The query's transaction id.
        tid: Vec<u8>,
        /// What is wrong.
        reason: &'static str,
    },
    /// A response or error whose body is malformed.
    #[error("malformed KRPC reply: {0}")]
    BadReply(&'static str),
}

/// One KRPC message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    /// Transaction id `t`; any length is accepted, shoal sends 4 bytes.
    pub tid: Vec<u8>,
    /// Client version `v` (2 bytes of client id and 2 of version by convention).
    pub version: Option<Vec<u8>>,
    /// BEP 43 read-only flag (`ro: 1`), meaningful in queries.
    pub read_only: bool,
    /// BEP 42 `ip`: the requester's address as the responder saw it (in replies).
    pub ip: Option<SocketAddr>,
    /// The query, response or error.
    pub body: Body,
}

/// The three kinds of KRPC message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// `y: q`.
    Query(Query),
    /// `y: r`.
    Response(Response),
    /// `y: e`.
    Error(ErrorBody),
}

/// A query: the sender's id and the method with its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The querying node's id (`a.id`).
    pub id: Id20,
    /// Method and arguments.
    pub kind: QueryKind,
    /// BEP 32 `want`: which node lists the reply should carry. `None` when absent: the reply
    /// then carries the list of the family the query came over.
    pub want: Option<Want>,
}

/// An address family of the DHT. BEP 32: the IPv4 and the IPv6 DHT are two DHTs, with a
/// routing table each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// The IPv4 DHT (`nodes`, 6-byte peers).
    V4,
    /// The IPv6 DHT (`nodes6`, 18-byte peers).
    V6,
}

impl Family {
    /// The family of `addr`; an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is IPv4.
    pub fn of(addr: &SocketAddr) -> Family {
        match addr {
            SocketAddr::V4(_) => Family::V4,
            SocketAddr::V6(a) if a.ip().to_ipv4_mapped().is_some() => Family::V4,
            SocketAddr::V6(_) => Family::V6,
        }
    }

    /// The other family.
    pub fn other(self) -> Family {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }
}

/// The BEP 32 `want` argument of `find_node` and `get_peers`: a list of strings, of which `n4`
/// asks for `nodes` and `n6` for `nodes6`; other strings are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Want {
    /// `n4`: the reply should carry `nodes`.
    pub n4: bool,
    /// `n6`: the reply should carry `nodes6`.
    pub n6: bool,
}

impl Want {
    /// Just the node list of `family`.
    pub fn only(family: Family) -> Want {
        match family {
            Family::V4 => Want {
                n4: true,
                n6: false,
            },
            Family::V6 => Want {
                n4: false,
                n6: true,
            },
        }
    }

    /// Both node lists.
    pub fn both() -> Want {
        Want { n4: true, n6: true }
    }

    /// Whether the node list of `family` is wanted.
    pub fn wants(self, family: Family) -> bool {
        match family {
            Family::V4 => self.n4,
            Family::V6 => self.n6,
        }
    }
}

/// Most entries of a `want` list looked at (the two BEP 32 flags and a little future room;
/// a packet is bounded anyway).
const MAX_WANT_ENTRIES: usize = 16;

/// Reads `want`: `None` when absent or not a list; entries that are not `n4` or `n6` (or not
/// strings) are ignored, as BEP 32 asks.
fn want_of(a: &Dict) -> Option<Want> {
    let Some(Value::List(list)) = a.get(&b"want"[..]) else {
        return None;
    };
    let mut w = Want::default();
    for v in list.iter().take(MAX_WANT_ENTRIES) {
        match v {
            Value::Bytes(b) if b == b"n4" => w.n4 = true,
            Value::Bytes(b) if b == b"n6" => w.n6 = true,
            _ => {}
        }
    }
    Some(w)
}

/// The methods of BEP 5, and any other method by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryKind {
    /// `ping`.
    Ping,
    /// `find_node` with `target`.
    FindNode {
        /// The id looked for.
        target: Id20,
    },
    /// `get_peers` with `info_hash`.
    GetPeers {
        /// The torrent looked for.
        info_hash: Id20,
    },
    /// `announce_peer`.
    AnnouncePeer {
        /// The torrent announced.
        info_hash: Id20,
        /// The peer's port (ignored by the receiver when `implied_port` is set).
        port: u16,
        /// Use the UDP source port instead of `port` (for peers behind NAT, uTP).
        implied_port: bool,
        /// The token from an earlier `get_peers` reply.
        token: Vec<u8>,
    },
    /// `get` (BEP 44): the item stored under `target`.
    Get {
        /// SHA-1 of the immutable value, or of the public key and salt of a mutable item.
        target: Id20,
        /// Send the value only if its sequence number is greater than this.
        seq: Option<i64>,
    },
    /// `put` (BEP 44): store an item.
    Put(PutRequest),
    /// `sample_infohashes` (BEP 51): a sample of the info-hashes the node stores peers for.
    SampleInfohashes {
        /// The id around which `nodes` are wanted (it does not change the samples).
        target: Id20,
    },
    /// Any other method (`vote`, ...): answered with error 204.
    Other {
        /// The method name, lossily decoded.
        method: String,
    },
}

/// The arguments of a BEP 44 `put`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRequest {
    /// The write token from an earlier `get` reply.
    pub token: Vec<u8>,
    /// The value `v` exactly as it was bencoded in the packet (hashing and signatures use
    /// these bytes).
    pub value: Vec<u8>,
    /// Present for mutable items.
    pub mutable: Option<MutableItem>,
}

/// What makes a BEP 44 item mutable: key, signature, sequence number, salt, and the `cas` of a
/// put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutableItem {
    /// The ed25519 public key `k`.
    pub key: [u8; 32],
    /// The ed25519 signature `sig` of salt, `seq` and `v`.
    pub sig: [u8; 64],
    /// The sequence number `seq`.
    pub seq: i64,
    /// The salt (empty when absent), at most 64 bytes in a valid put.
    pub salt: Vec<u8>,
    /// Compare-and-swap: the `seq` the writer expects to replace.
    pub cas: Option<i64>,
}

/// A response. Responses do not name their method, so every optional field is decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// The responding node's id (`r.id`).
    pub id: Id20,
    /// IPv4 nodes (`nodes`), at most [`MAX_NODES`].
    pub nodes: Vec<CompactNode>,
    /// IPv6 nodes (`nodes6`, BEP 32), at most [`MAX_NODES`].
    pub nodes6: Vec<CompactNode>,
    /// Peers (`values`), IPv4 or IPv6, at most [`MAX_VALUES`].
    pub values: Vec<SocketAddr>,
    /// The write token of a `get_peers` or `get` reply.
    pub token: Option<Vec<u8>>,
    /// BEP 51 `samples`: info-hashes (at most [`MAX_SAMPLES`]). `Some` even when empty, which
    /// tells a node that supports `sample_infohashes` from one that does not.
    pub samples: Option<Vec<Id20>>,
    /// BEP 51 `interval`: seconds before asking this node for samples again.
    pub interval: Option<i64>,
    /// BEP 51 `num`: how many info-hashes the node stores.
    pub num: Option<i64>,
    /// BEP 44 `v`: an item's value, as bencoded in the packet.
    pub value: Option<Vec<u8>>,
    /// BEP 44 `k`: a mutable item's public key.
    pub key: Option<[u8; 32]>,
    /// BEP 44 `sig`: a mutable item's signature.
    pub sig: Option<[u8; 64]>,
    /// BEP 44 `seq`: a mutable item's sequence number.
    pub seq: Option<i64>,
}

/// An error message (`e: [code, text]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorBody {
    /// 201 to 204, or anything else a peer sent.
    pub code: i64,
    /// The text, lossily decoded and cut to 256 bytes.
    pub message: String,
}

/// Decodes one UDP payload. Never panics; the result is bounded in size.
pub fn decode(bytes: &[u8]) -> Result<Msg, KrpcError> {
    if bytes.len() > MAX_PACKET {
        return Err(KrpcError::TooLarge(bytes.len()));
    }
    let scanned = bencode::scan_prefix(bytes, 0, MAX_DEPTH)?;
    if scanned.span.end != bytes.len() {
        return Err(bencode::BencodeError::TrailingData(scanned.span.end).into());
    }
    if !scanned.is_dict(bytes) {
        return Err(KrpcError::NotADict);
    }
    // Safe now: the scanner bounded the depth, so serde_bencode's recursion is bounded too.
    let value: Value = serde_bencode::from_bytes(bytes).map_err(|_| KrpcError::NotADict)?;
    let Value::Dict(top) = value else {
        return Err(KrpcError::NotADict);
    };
    let tid = bytes_of(top.get(&b"t"[..])).ok_or(KrpcError::NoTransactionId)?;
    let version = bytes_of(top.get(&b"v"[..]));
    let read_only = int_of(top.get(&b"ro"[..])) == Some(1);
    let ip = bytes_of(top.get(&b"ip"[..])).and_then(|b| compact_addr(&b));
    let body = match bytes_of(top.get(&b"y"[..])).as_deref() {
        Some(b"q") => {
            let raw_v = raw_inner(bytes, &scanned, b"a", b"v");
            Body::Query(decode_query(&top, &tid, raw_v)?)
        }
        Some(b"r") => {
            let raw_v = raw_inner(bytes, &scanned, b"r", b"v");
            Body::Response(decode_response(&top, raw_v)?)
        }
        Some(b"e") => Body::Error(decode_error(&top)?),
        _ => return Err(KrpcError::BadType),
    };
    Ok(Msg {
        tid,
        version,
        read_only,
        ip,
        body,
    })
}

type Dict = HashMap<Vec<u8>, Value>;

/// The exact bytes of `outer.inner` (a value inside a dictionary of the top-level dictionary):
/// BEP 44 hashes and signs a value as it was encoded, so it is not re-encoded.
fn raw_inner(bytes: &[u8], top: &bencode::Scanned, outer: &[u8], inner: &[u8]) -> Option<Vec<u8>> {
    let span = top.get(bytes, outer)?;
    let dict = bencode::scan_prefix(bytes, span.start, MAX_DEPTH).ok()?;
    if !dict.is_dict(bytes) {
        return None;
    }
    dict.get(bytes, inner).map(|r| bytes[r].to_vec())
}

fn fixed<const N: usize>(v: Option<&Value>) -> Option<[u8; N]> {
    match v {
        Some(Value::Bytes(b)) => b.as_slice().try_into().ok(),
        _ => None,
    }
}

fn bytes_of(v: Option<&Value>) -> Option<Vec<u8>> {
    match v {
        Some(Value::Bytes(b)) => Some(b.clone()),
        _ => None,
    }
}

fn int_of(v: Option<&Value>) -> Option<i64> {
    match v {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

fn id_of(d: &Dict, key: &[u8]) -> Option<Id20> {
    match d.get(key) {
        Some(Value::Bytes(b)) => Id20::from_slice(b),
        _ => None,
    }
}

fn compact_addr(b: &[u8]) -> Option<SocketAddr> {
    match b.len() {
        6 => {
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            Some(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([b[4], b[5]]),
            ))
        }
        18 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[..16]);
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(o)),
                u16::from_be_bytes([b[16], b[17]]),
            ))
        }
        _ => None,
    }
}

fn decode_query(top: &Dict, tid: &[u8], raw_v: Option<Vec<u8>>) -> Result<Query, KrpcError> {
    let bad = |reason| KrpcError::BadQuery {
        tid: tid.to_vec(),
        reason,
    };
    let method = bytes_of(top.get(&b"q"[..])).ok_or_else(|| bad("no method `q`"))?;
    let Some(Value::Dict(a)) = top.get(&b"a"[..]) else {
        return Err(bad("no arguments `a`"));
    };
    let id = id_of(a, b"id").ok_or_else(|| bad("no 20-byte `id`"))?;
    let kind = match &method[..] {
        b"ping" => QueryKind::Ping,
        b"find_node" => QueryKind::FindNode {
            target: id_of(a, b"target").ok_or_else(|| bad("no 20-byte `target`"))?,
        },
        b"get_peers" => QueryKind::GetPeers {
            info_hash: id_of(a, b"info_hash").ok_or_else(|| bad("no 20-byte `info_hash`"))?,
        },
        b"announce_peer" => {
            let info_hash = id_of(a, b"info_hash").ok_or_else(|| bad("no 20-byte `info_hash`"))?;
            let implied_port = int_of(a.get(&b"implied_port"[..])).is_some_and(|i| i != 0);
            let port = match int_of(a.get(&b"port"[..])) {
                Some(p) => u16::try_from(p).map_err(|_| bad("`port` out of range"))?,
                None if implied_port => 0,
                None => return Err(bad("no `port`")),
            };
            let token = bytes_of(a.get(&b"token"[..])).ok_or_else(|| bad("no `token`"))?;
            QueryKind::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
            }
        }
        b"get" => QueryKind::Get {
            target: id_of(a, b"target").ok_or_else(|| bad("no 20-byte `target`"))?,
            seq: int_of(a.get(&b"seq"[..])),
        },
        b"sample_infohashes" => QueryKind::SampleInfohashes {
            target: id_of(a, b"target").ok_or_else(|| bad("no 20-byte `target`"))?,
        },
        b"put" => {
            let token = bytes_of(a.get(&b"token"[..])).ok_or_else(|| bad("no `token`"))?;
            let value = raw_v.ok_or_else(|| bad("no value `v`"))?;
            let mutable = match a.get(&b"k"[..]) {
                None => None,
                Some(_) => {
                    let salt = bytes_of(a.get(&b"salt"[..])).unwrap_or_default();
                    Some(MutableItem {
                        key: fixed(a.get(&b"k"[..])).ok_or_else(|| bad("`k` is not 32 bytes"))?,
                        sig: fixed(a.get(&b"sig"[..])).ok_or_else(|| bad("no 64-byte `sig`"))?,
                        seq: int_of(a.get(&b"seq"[..])).ok_or_else(|| bad("no `seq`"))?,
                        salt,
                        cas: int_of(a.get(&b"cas"[..])),
                    })
                }
            };
            QueryKind::Put(PutRequest {
                token,
                value,
                mutable,
            })
        }
        other => QueryKind::Other {
            method: String::from_utf8_lossy(&other[..other.len().min(64)]).into_owned(),
        },
    };
    Ok(Query {
        id,
        kind,
        want: want_of(a),
    })
}

fn decode_nodes(
    r: &Dict,
    key: &[u8],
    unit: usize,
    f: fn(&[u8]) -> Result<Vec<CompactNode>, shoal_core::CoreError>,
) -> Vec<CompactNode> {
    match r.get(key) {
        Some(Value::Bytes(b)) => {
            // A trailing partial entry is dropped rather than failing the whole reply.
            let whole = &b[..(b.len() / unit * unit).min(MAX_NODES * unit)];
            f(whole).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

fn decode_response(top: &Dict, raw_v: Option<Vec<u8>>) -> Result<Response, KrpcError> {
    let Some(Value::Dict(r)) = top.get(&b"r"[..]) else {
        return Err(KrpcError::BadReply("no dictionary `r`"));
    };
    let id = id_of(r, b"id").ok_or(KrpcError::BadReply("no 20-byte `id`"))?;
    let nodes = decode_nodes(r, b"nodes", COMPACT_NODE_V4_LEN, decode_compact_nodes_v4);
    let nodes6 = decode_nodes(r, b"nodes6", COMPACT_NODE_V6_LEN, decode_compact_nodes_v6);
    let values = match r.get(&b"values"[..]) {
        Some(Value::List(list)) => list
            .iter()
            .filter_map(|v| match v {
                Value::Bytes(b) => compact_addr(b),
                _ => None,
            })
            .take(MAX_VALUES)
            .collect(),
        _ => Vec::new(),
    };
    let token = bytes_of(r.get(&b"token"[..]));
    // A trailing partial hash is dropped, like a partial node.
    let samples = bytes_of(r.get(&b"samples"[..])).map(|b| {
        b.chunks_exact(20)
            .take(MAX_SAMPLES)
            .filter_map(Id20::from_slice)
            .collect()
    });
    Ok(Response {
        id,
        nodes,
        nodes6,
        values,
        token,
        samples,
        interval: int_of(r.get(&b"interval"[..])),
        num: int_of(r.get(&b"num"[..])),
        value: raw_v,
        key: fixed(r.get(&b"k"[..])),
        sig: fixed(r.get(&b"sig"[..])),
        seq: int_of(r.get(&b"seq"[..])),
    })
}

fn decode_error(top: &Dict) -> Result<ErrorBody, KrpcError> {
    let Some(Value::List(e)) = top.get(&b"e"[..]) else {
        return Err(KrpcError::BadReply("no list `e`"));
    };
    let code = int_of(e.first()).ok_or(KrpcError::BadReply("no error code"))?;
    let message = match e.get(1) {
        Some(Value::Bytes(b)) => {
            String::from_utf8_lossy(&b[..b.len().min(MAX_ERROR_TEXT)]).into_owned()
        }
        _ => String::new(),
    };
    Ok(ErrorBody { code, message })
}

/// A bencode value to encode; dictionaries are `BTreeMap`s so keys come out sorted.
enum Enc {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Enc>),
    Dict(BTreeMap<&'static [u8], Enc>),
    /// Already bencoded bytes, written as they are.
    Raw(Vec<u8>),
}

impl Enc {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Enc::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Enc::Bytes(b) => write_bytes(b, out),
            Enc::Raw(b) => out.extend_from_slice(b),
            Enc::List(l) => {
                out.push(b'l');
                for v in l {
                    v.write(out);
                }
                out.push(b'e');
            }
            Enc::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    write_bytes(k, out);
                    v.write(out);
                }
                out.push(b'e');
            }
        }
    }
}

fn write_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

fn compact_nodes(nodes: &[CompactNode]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nodes.len() * COMPACT_NODE_V6_LEN);
    for n in nodes {
        encode_compact_node(n, &mut out);
    }
    out
}

fn compact_peer(addr: &SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(18);
    encode_compact_peer(addr, &mut out);
    out
}

impl Msg {
    /// Canonical bencoding of the message (sorted keys). Empty `nodes`, `nodes6` and `values` are
    /// left out.
    pub fn encode(&self) -> Vec<u8> {
        let mut top: BTreeMap<&'static [u8], Enc> = BTreeMap::new();
        top.insert(b"t", Enc::Bytes(self.tid.clone()));
        if let Some(v) = &self.version {
            top.insert(b"v", Enc::Bytes(v.clone()));
        }
        if self.read_only {
            top.insert(b"ro", Enc::Int(1));
        }
        if let Some(ip) = &self.ip {
            top.insert(b"ip", Enc::Bytes(compact_peer(ip)));
        }
        match &self.body {
            Body::Query(q) => {
                top.insert(b"y", Enc::Bytes(b"q".to_vec()));
                let mut a: BTreeMap<&'static [u8], Enc> = BTreeMap::new();
                a.insert(b"id", Enc::Bytes(q.id.0.to_vec()));
                if let Some(w) = q.want {
                    let mut list = Vec::new();
                    if w.n4 {
                        list.push(Enc::Bytes(b"n4".to_vec()));
                    }
                    if w.n6 {
                        list.push(Enc::Bytes(b"n6".to_vec()));
                    }
                    a.insert(b"want", Enc::List(list));
                }
                let method: Vec<u8> = match &q.kind {
                    QueryKind::Ping => b"ping".to_vec(),
                    QueryKind::FindNode { target } => {
                        a.insert(b"target", Enc::Bytes(target.0.to_vec()));
                        b"find_node".to_vec()
                    }
                    QueryKind::GetPeers { info_hash } => {
                        a.insert(b"info_hash", Enc::Bytes(info_hash.0.to_vec()));
                        b"get_peers".to_vec()
                    }
                    QueryKind::AnnouncePeer {
                        info_hash,
                        port,
                        implied_port,
                        token,
                    } => {
                        a.insert(b"info_hash", Enc::Bytes(info_hash.0.to_vec()));
                        a.insert(b"port", Enc::Int(i64::from(*port)));
                        if *implied_port {
                            a.insert(b"implied_port", Enc::Int(1));
                        }
                        a.insert(b"token", Enc::Bytes(token.clone()));
                        b"announce_peer".to_vec()
                    }
                    QueryKind::Get { target, seq } => {
                        a.insert(b"target", Enc::Bytes(target.0.to_vec()));
                        if let Some(seq) = seq {
                            a.insert(b"seq", Enc::Int(*seq));
                        }
                        b"get".to_vec()
                    }
                    QueryKind::SampleInfohashes { target } => {
                        a.insert(b"target", Enc::Bytes(target.0.to_vec()));
                        b"sample_infohashes".to_vec()
                    }
                    QueryKind::Put(p) => {
                        a.insert(b"token", Enc::Bytes(p.token.clone()));
                        a.insert(b"v", Enc::Raw(p.value.clone()));
                        if let Some(m) = &p.mutable {
                            a.insert(b"k", Enc::Bytes(m.key.to_vec()));
                            a.insert(b"sig", Enc::Bytes(m.sig.to_vec()));
                            a.insert(b"seq", Enc::Int(m.seq));
                            if !m.salt.is_empty() {
                                a.insert(b"salt", Enc::Bytes(m.salt.clone()));
                            }
                            if let Some(cas) = m.cas {
                                a.insert(b"cas", Enc::Int(cas));
                            }
                        }
                        b"put".to_vec()
                    }
                    QueryKind::Other { method } => method.as_bytes().to_vec(),
                };
                top.insert(b"q", Enc::Bytes(method));
                top.insert(b"a", Enc::Dict(a));
            }
            Body::Response(r) => {
                top.insert(b"y", Enc::Bytes(b"r".to_vec()));
                let mut d: BTreeMap<&'static [u8], Enc> = BTreeMap::new();
                d.insert(b"id", Enc::Bytes(r.id.0.to_vec()));
                if !r.nodes.is_empty() {
                    d.insert(b"nodes", Enc::Bytes(compact_nodes(&r.nodes)));
                }
                if !r.nodes6.is_empty() {
                    d.insert(b"nodes6", Enc::Bytes(compact_nodes(&r.nodes6)));
                }
                if let Some(t) = &r.token {
                    d.insert(b"token", Enc::Bytes(t.clone()));
                }
                if !r.values.is_empty() {
                    let list = r
                        .values
                        .iter()
                        .map(|p| Enc::Bytes(compact_peer(p)))
                        .collect();
                    d.insert(b"values", Enc::List(list));
                }
                if let Some(samples) = &r.samples {
                    let mut b = Vec::with_capacity(samples.len() * 20);
                    for h in samples {
                        b.extend_from_slice(&h.0);
                    }
                    d.insert(b"samples", Enc::Bytes(b));
                }
                if let Some(i) = r.interval {
                    d.insert(b"interval", Enc::Int(i));
                }
                if let Some(n) = r.num {
                    d.insert(b"num", Enc::Int(n));
                }
                if let Some(v) = &r.value {
                    d.insert(b"v", Enc::Raw(v.clone()));
                }
                if let Some(k) = &r.key {
                    d.insert(b"k", Enc::Bytes(k.to_vec()));
                }
                if let Some(sig) = &r.sig {
                    d.insert(b"sig", Enc::Bytes(sig.to_vec()));
                }
                if let Some(seq) = r.seq {
                    d.insert(b"seq", Enc::Int(seq));
                }
                top.insert(b"r", Enc::Dict(d));
            }
            Body::Error(e) => {
                top.insert(b"y", Enc::Bytes(b"e".to_vec()));
                top.insert(
                    b"e",
                    Enc::List(vec![
                        Enc::Int(e.code),
                        Enc::Bytes(e.message.as_bytes().to_vec()),
                    ]),
                );
            }
        }
        let mut out = Vec::with_capacity(256);
        Enc::Dict(top).write(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bep5_ping_example_bytes() {
        // The example from BEP 5, byte for byte.
        let raw = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
        let m = decode(raw).unwrap();
        assert_eq!(m.tid, b"aa");
        let Body::Query(q) = &m.body else { panic!() };
        assert_eq!(q.kind, QueryKind::Ping);
        assert_eq!(&q.id.0, b"abcdefghij0123456789");
        assert_eq!(m.encode(), raw.to_vec());
    }

    #[test]
    fn bep5_announce_and_error_examples() {
        let raw = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe";
        let m = decode(raw).unwrap();
        let Body::Query(q) = &m.body else { panic!() };
        assert!(matches!(
            &q.kind,
            QueryKind::AnnouncePeer { port: 6881, implied_port: false, token, .. } if token == b"aoeusnth"
        ));
        assert_eq!(m.encode(), raw.to_vec());
        let err = b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee";
        let m = decode(err).unwrap();
        assert_eq!(
            m.body,
            Body::Error(ErrorBody {
                code: 201,
                message: "A Generic Error Ocurred".into()
            })
        );
        assert_eq!(m.encode(), err.to_vec());
    }

    #[test]
    fn implied_port_without_port() {
        let raw = b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234565:token1:xe1:q13:announce_peer1:t1:z1:y1:qe";
        let m = decode(raw).unwrap();
        let Body::Query(q) = m.body else { panic!() };
        assert!(matches!(
            q.kind,
            QueryKind::AnnouncePeer {
                implied_port: true,
                ..
            }
        ));
    }

    #[test]
    fn bad_queries_keep_their_tid() {
        let raw = b"d1:ad2:id20:abcdefghij0123456789e1:q9:get_peers1:t2:ma1:y1:qe";
        assert_eq!(
            decode(raw),
            Err(KrpcError::BadQuery {
                tid: b"ma".to_vec(),
                reason: "no 20-byte `info_hash`"
            })
        );
    }

    #[test]
    fn limits() {
        assert!(matches!(
            decode(&[b'd'; 1501]),
            Err(KrpcError::TooLarge(1501))
        ));
        let mut deep = vec![b'l'; 200];
        deep.extend(vec![b'e'; 200]);
        assert!(decode(&deep).is_err());
        assert!(decode(b"le").is_err());
        assert!(decode(b"d1:y1:qe").is_err());
        assert!(decode(b"").is_err());
    }

    #[test]
    fn bep32_want_is_read_and_written() {
        // find_node with want [n4, n6]; unknown strings and non-strings are ignored.
        let raw = b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz1234564:wantl2:n42:n6ee1:q9:find_node1:t2:aa1:y1:qe";
        let m = decode(raw).unwrap();
        let Body::Query(q) = &m.body else { panic!() };
        assert_eq!(q.want, Some(Want::both()));
        assert_eq!(m.encode(), raw.to_vec());
        let odd = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:wantl2:n6i4e3:n64ee1:q9:get_peers1:t2:aa1:y1:qe";
        let Body::Query(q) = decode(odd).unwrap().body else {
            panic!()
        };
        assert_eq!(q.want, Some(Want::only(Family::V6)));
        // Absent, or not a list: no want.
        let none = b"d1:ad2:id20:abcdefghij01234567894:want2:n4e1:q4:ping1:t2:aa1:y1:qe";
        let Body::Query(q) = decode(none).unwrap().body else {
            panic!()
        };
        assert_eq!(q.want, None);
        // An empty list is a want of nothing.
        let empty = Msg {
            tid: b"aa".to_vec(),
            version: None,
            read_only: false,
            ip: None,
            body: Body::Query(Query {
                id: Id20([1; 20]),
                kind: QueryKind::FindNode {
                    target: Id20([2; 20]),
                },
                want: Some(Want::default()),
            }),
        };
        let bytes = empty.encode();
        assert!(bytes.windows(8).any(|w| w == b"4:wantle"), "{bytes:?}");
        assert_eq!(decode(&bytes).unwrap(), empty);
    }

    #[test]
    fn bep32_nodes6_and_18_byte_values() {
        let n6 = CompactNode {
            id: Id20([5; 20]),
            addr: "[2001:db8::1]:6881".parse().unwrap(),
        };
        let peer6: SocketAddr = "[2001:db8::2]:51413".parse().unwrap();
        let m = Msg {
            tid: b"aa".to_vec(),
            version: None,
            read_only: false,
            ip: None,
            body: Body::Response(Response {
                id: Id20([1; 20]),
                nodes6: vec![n6],
                values: vec![peer6],
                token: Some(b"tk".to_vec()),
                ..Response::default()
            }),
        };
        let bytes = m.encode();
        // 38 bytes per IPv6 node, 18 per IPv6 peer.
        assert!(bytes.windows(10).any(|w| w == b"6:nodes638"));
        assert!(bytes.windows(10).any(|w| w == b"6:valuesl1"));
        assert!(bytes.windows(3).any(|w| w == b"18:"));
        assert_eq!(decode(&bytes).unwrap(), m);
        // A hybrid values list (6- and 18-byte entries) is parsed, as BEP 32 requires.
        let hybrid = b"d1:rd2:id20:abcdefghij01234567896:valuesl6:\x7f\x00\x00\x01\x1a\xe118:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe2ee1:t2:aa1:y1:re";
        let Body::Response(r) = decode(hybrid).unwrap().body else {
            panic!()
        };
        assert_eq!(
            r.values,
            vec![
                "127.0.0.1:6881".parse::<SocketAddr>().unwrap(),
                "[::1]:6882".parse().unwrap()
            ]
        );
        // A trailing partial IPv6 node is dropped, the whole ones kept.
        let mut nodes6 = Vec::new();
        encode_compact_node(&n6, &mut nodes6);
        nodes6.extend_from_slice(&[0; 20]);
        let mut raw = b"d1:rd2:id20:abcdefghij01234567896:nodes6".to_vec();
        raw.extend_from_slice(format!("{}:", nodes6.len()).as_bytes());
        raw.extend_from_slice(&nodes6);
        raw.extend_from_slice(b"e1:t2:aa1:y1:re");
        let Body::Response(r) = decode(&raw).unwrap().body else {
            panic!()
        };
        assert_eq!(r.nodes6, vec![n6]);
    }

    #[test]
    fn family_of_addresses() {
        assert_eq!(Family::of(&"1.2.3.4:1".parse().unwrap()), Family::V4);
        assert_eq!(Family::of(&"[::1]:1".parse().unwrap()), Family::V6);
        assert_eq!(
            Family::of(&"[::ffff:1.2.3.4]:1".parse().unwrap()),
            Family::V4
        );
        assert_eq!(Family::V4.other(), Family::V6);
        assert!(Want::only(Family::V6).wants(Family::V6));
        assert!(!Want::only(Family::V6).wants(Family::V4));
    }

    #[test]
    fn unknown_method_is_kept() {
        let raw = b"d1:ad2:id20:abcdefghij0123456789e1:q3:foo1:t2:aa1:y1:qe";
        let Body::Query(q) = decode(raw).unwrap().body else {
            panic!()
        };
        assert_eq!(
            q.kind,
            QueryKind::Other {
                method: "foo".into()
            }
        );
    }

    fn addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(i, p)| SocketAddr::from((i, p))),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(i, p)| SocketAddr::from((Ipv6Addr::from(i), p))),
        ]
    }

    fn v4node() -> impl Strategy<Value = CompactNode> {
        (any::<[u8; 20]>(), any::<[u8; 4]>(), any::<u16>()).prop_map(|(i, a, p)| CompactNode {
            id: Id20(i),
            addr: SocketAddr::from((a, p)),
        })
    }

    fn v6node() -> impl Strategy<Value = CompactNode> {
        (any::<[u8; 20]>(), any::<[u8; 16]>(), any::<u16>()).prop_map(|(i, a, p)| CompactNode {
            id: Id20(i),
            addr: SocketAddr::from((Ipv6Addr::from(a), p)),
        })
    }

    /// A small bencoded value: a string, an integer, or a list of strings.
    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| {
                let mut out = Vec::new();
                write_bytes(&b, &mut out);
                out
            }),
            any::<i64>().prop_map(|i| format!("i{i}e").into_bytes()),
            proptest::collection::vec("[a-z]{0,8}", 0..4).prop_map(|l| {
                let mut out = vec![b'l'];
                for s in l {
                    write_bytes(s.as_bytes(), &mut out);
                }
                out.push(b'e');
                out
            }),
        ]
    }

    fn want() -> impl Strategy<Value = Option<Want>> {
        proptest::option::of((any::<bool>(), any::<bool>()).prop_map(|(n4, n6)| Want { n4, n6 }))
    }

    fn body() -> impl Strategy<Value = Body> {
        let idx = any::<[u8; 20]>().prop_map(Id20);
        prop_oneof![
            idx.clone().prop_map(|id| Body::Query(Query {
                id,
                kind: QueryKind::Ping,
                want: None
            })),
            (idx.clone(), idx.clone(), want()).prop_map(|(id, target, want)| Body::Query(Query {
                id,
                kind: QueryKind::FindNode { target },
                want
            })),
            (idx.clone(), idx.clone(), want()).prop_map(|(id, info_hash, want)| Body::Query(
                Query {
                    id,
                    kind: QueryKind::GetPeers { info_hash },
                    want
                }
            )),
            (
                idx.clone(),
                idx.clone(),
                any::<u16>(),
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..20)
            )
                .prop_map(|(id, info_hash, port, implied_port, token)| Body::Query(
                    Query {
                        id,
                        kind: QueryKind::AnnouncePeer {
                            info_hash,
                            port,
                            implied_port,
                            token
                        },
                        want: None
                    }
                )),
            (
                idx.clone(),
                proptest::collection::vec(v4node(), 0..8),
                proptest::collection::vec(v6node(), 0..8),
                proptest::collection::vec(addr(), 0..20),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20))
            )
                .prop_map(|(id, nodes, nodes6, values, token)| Body::Response(
                    Response {
                        id,
                        nodes,
                        nodes6,
                        values,
                        token,
                        ..Response::default()
                    }
                )),
            (
                idx.clone(),
                proptest::option::of(proptest::collection::vec(idx.clone(), 0..20)),
                proptest::option::of(0i64..100_000),
                proptest::option::of(any::<i64>()),
                proptest::option::of(value()),
                proptest::option::of((
                    any::<[u8; 32]>(),
                    any::<[u8; 32]>(),
                    any::<[u8; 32]>(),
                    any::<i64>()
                )),
            )
                .prop_map(|(id, samples, interval, num, value, item)| Body::Response(
                    Response {
                        id,
                        samples,
                        interval,
                        num,
                        value,
                        key: item.map(|i| i.0),
                        sig: item.map(|i| {
                            let mut s = [0u8; 64];
                            s[..32].copy_from_slice(&i.1);
                            s[32..].copy_from_slice(&i.2);
                            s
                        }),
                        seq: item.map(|i| i.3),
                        ..Response::default()
                    }
                )),
            (idx.clone(), idx.clone(), proptest::option::of(any::<i64>())).prop_map(
                |(id, target, seq)| Body::Query(Query {
                    id,
                    kind: QueryKind::Get { target, seq },
                    want: None
                })
            ),
            (idx.clone(), idx.clone()).prop_map(|(id, target)| Body::Query(Query {
                id,
                kind: QueryKind::SampleInfohashes { target },
                want: None
            })),
            (
                idx,
                proptest::collection::vec(any::<u8>(), 0..20),
                value(),
                proptest::option::of((
                    any::<[u8; 32]>(),
                    any::<i64>(),
                    proptest::collection::vec(any::<u8>(), 1..64),
                    proptest::option::of(any::<i64>())
                )),
            )
                .prop_map(|(id, token, value, m)| Body::Query(Query {
                    id,
                    kind: QueryKind::Put(PutRequest {
                        token,
                        value,
                        mutable: m.map(|(key, seq, salt, cas)| MutableItem {
                            key,
                            sig: [7; 64],
                            seq,
                            salt,
                            cas
                        }),
                    }),
                    want: None
                })),
            (any::<i64>(), "[a-zA-Z ]{0,30}")
                .prop_map(|(code, message)| Body::Error(ErrorBody { code, message })),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(
            tid in proptest::collection::vec(any::<u8>(), 1..8),
            version in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..4)),
            read_only in any::<bool>(),
            ip in proptest::option::of(addr()),
            body in body(),
        ) {
            let m = Msg { tid, version, read_only, ip, body };
            let bytes = m.encode();
            prop_assert_eq!(decode(&bytes).unwrap(), m.clone());
            prop_assert_eq!(decode(&bytes).unwrap().encode(), bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(
            body in body(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        ) {
            let m = Msg { tid: b"ab".to_vec(), version: None, read_only: false, ip: None, body };
            let mut bytes = m.encode();
            for (i, b) in flips {
                let n = bytes.len();
                bytes[i % n] = b;
            }
            let _ = decode(&bytes);
        }
    }
}
