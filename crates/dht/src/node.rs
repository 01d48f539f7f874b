//! The DHT node as a sans-IO state machine, in the style of quinn-proto: packets and time go in
//! ([`DhtNode::handle_packet`], [`DhtNode::handle_timeout`]), packets and events come out
//! ([`DhtNode::poll_transmit`], [`DhtNode::poll_event`]), and [`DhtNode::next_timeout`] says when
//! to call again. No sockets, clocks or sleeping inside.
//!
//! ```
//! use shoal_core::{Id20, Time};
//! use shoal_dht::{DhtConfig, DhtNode, Event};
//!
//! // Two nodes wired back to back in memory.
//! let (a_addr, b_addr) = ("10.0.0.1:6881".parse().unwrap(), "10.0.0.2:6881".parse().unwrap());
//! let mut a = DhtNode::new(DhtConfig::default(), Time::ZERO, 1);
//! let mut b = DhtNode::new(DhtConfig::default(), Time::ZERO, 2);
//! let info_hash = Id20([7; 20]);
//! b.bootstrap(Time::ZERO, &[a_addr]).unwrap();
//! b.announce(Time::ZERO, info_hash, Some(6881)).unwrap();
//! let now = Time::from_millis(10);
//! // Move packets until both are quiet.
//! loop {
//!     let mut moved = false;
//!     while let Some((_to, bytes)) = b.poll_transmit() {
//!         a.handle_packet(now, b_addr, &bytes);
//!         moved = true;
//!     }
//!     while let Some((_to, bytes)) = a.poll_transmit() {
//!         b.handle_packet(now, a_addr, &bytes);
//!         moved = true;
//!     }
//!     if !moved {
//!         break;
//!     }
//! }
//! let mut acked = 0;
//! while let Some(e) = b.poll_event() {
//!     if let Event::AnnounceDone { acked: n, .. } = e {
//!         acked = n;
//!     }
//! }
//! assert_eq!(acked, 1);
//! assert_eq!(a.peer_store().len(), 1);
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_core::{CompactNode, Id20, Time};
use thiserror::Error;
use tracing::{debug, trace};

use crate::bep42;
use crate::bep44;
use crate::item_store::{ItemStore, ItemStoreConfig};
use crate::krpc::{
    self, Body, ErrorBody, Family, KrpcError, Msg, Query, QueryKind, Response, Want,
};
use crate::lookup::{Lookup, LookupKind, LookupStats};
use crate::peer_store::{PeerStore, PeerStoreConfig};
use crate::rate_limit::{RateLimitConfig, RateLimiter};
use crate::routing_table::{Insert, NodeState, RoutingTable, RoutingTableConfig};
use crate::rpc::{Expired, RpcConfig, RpcManager};
use crate::sample::{Sampler, SamplerConfig};
use crate::state::DhtState;
use crate::token::TokenSecrets;

/// Settings of a [`DhtNode`].
#[derive(Clone, Debug, PartialEq)]
pub struct DhtConfig {
    /// Routing table settings (k, timers, IP restriction).
    pub routing: RoutingTableConfig,
    /// Timeouts.
    pub rpc: RpcConfig,
    /// Peer store limits.
    pub peer_store: PeerStoreConfig,
    /// Per-IP query rate limit.
    pub rate_limit: RateLimitConfig,
    /// BEP 44 item storage limits.
    pub items: ItemStoreConfig,
    /// BEP 51 sampling.
    pub sampler: SamplerConfig,
    /// BEP 43 read-only: send `ro: 1`, answer no queries.
    pub read_only: bool,
    /// Refuse nodes whose id fails the BEP 42 check (never applied to local addresses, which BEP
    /// 42 exempts). Off by default: violations are counted in [`NodeStats`].
    pub enforce_bep42: bool,
    /// Our external IP, when known: the node id is then a BEP 42 id for it.
    pub external_ip: Option<IpAddr>,
    /// Most lookups running at once (user commands plus refreshes).
    pub max_lookups: usize,
    /// Client version sent as `v`: "SH" and two version bytes.
    pub version: [u8; 4],
    /// The address family the node serves. BEP 32: the IPv4 and IPv6 DHTs are separate, with
    /// a routing table each; a dual-stack host runs one node per family (as libtorrent does,
    /// one per listen socket) and [`crate::dual::DualNode`] pairs them.
    pub family: Family,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            routing: RoutingTableConfig::default(),
            rpc: RpcConfig::default(),
            peer_store: PeerStoreConfig::default(),
            rate_limit: RateLimitConfig::default(),
            items: ItemStoreConfig::default(),
            sampler: SamplerConfig::default(),
            read_only: false,
            enforce_bep42: false,
            external_ip: None,
            max_lookups: 64,
            version: *b"SH\x00\x01",
            family: Family::V4,
        }
    }
}

impl DhtConfig {
    /// Settings for nodes that all live on 127.0.0.0/8 (tests, local swarms): no one-node-per-IP
    /// rule, short timeouts, and a rate limit generous enough for many nodes behind one address.
    pub fn loopback() -> Self {
        DhtConfig {
            routing: RoutingTableConfig {
                restrict_ips: false,
                ..RoutingTableConfig::default()
            },
            rpc: RpcConfig::loopback(),
            rate_limit: RateLimitConfig {
                per_second: 2000.0,
                burst: 4000.0,
                ..RateLimitConfig::default()
            },
            ..DhtConfig::default()
        }
    }

    /// The default settings, or [`loopback`](Self::loopback) when `addr` is a loopback address,
    /// for a node of `addr`'s family.
    pub fn for_addr(addr: &SocketAddr) -> Self {
        let base = if addr.ip().is_loopback() {
            Self::loopback()
        } else {
            Self::default()
        };
        DhtConfig {
            family: Family::of(addr),
            ..base
        }
    }
}

/// Errors of the node's commands.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DhtError {
    /// [`DhtConfig::max_lookups`] lookups are already running.
    #[error("too many DHT lookups running (limit {0}); try again when one finishes")]
    TooManyLookups(usize),
    /// The routing table is empty and no bootstrap address is known.
    #[error("the DHT has no nodes to ask: bootstrap it first")]
    NoNodes,
    /// The outstanding-query limit was reached.
    #[error("too many DHT queries outstanding")]
    Busy,
    /// No node of this address family runs (no IPv6 socket, say).
    #[error("no DHT node runs for {0:?} addresses")]
    FamilyNotRunning(Family),
}

/// Identifies a lookup (or announce) started by a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// What the node reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Peers found by a `get_peers` or `announce` lookup (each peer is reported once per lookup).
    Peers {
        /// The lookup.
        id: LookupId,
        /// The torrent.
        info_hash: Id20,
        /// New peers.
        peers: Vec<SocketAddr>,
    },
    /// A `bootstrap`, `find_node` or `get_peers` lookup finished.
    LookupDone {
        /// The lookup.
        id: LookupId,
        /// Its target.
        target: Id20,
        /// The closest nodes that answered, closest first.
        closest: Vec<CompactNode>,
        /// Counters.
        stats: LookupStats,
    },
    /// An `announce` finished: `acked` of the closest nodes accepted our announce.
    AnnounceDone {
        /// The lookup.
        id: LookupId,
        /// The torrent.
        info_hash: Id20,
        /// Nodes that confirmed the announce.
        acked: usize,
        /// Counters of the lookup before the announce.
        stats: LookupStats,
    },
    /// Other nodes agree on our external IP (BEP 42 `ip` in their replies). When `id_matches`
    /// is false, our id is not a BEP 42 id for it: the engine may save the IP and restart the
    /// node with [`DhtConfig::external_ip`] set, so that strict nodes accept us.
    ExternalIp {
        /// The address.
        ip: IpAddr,
        /// Whether our node id is valid for it under BEP 42 (or exempt).
        id_matches: bool,
    },
    /// Answer to a [`DhtNode::sample_infohashes`] query.
    Samples {
        /// The query.
        id: LookupId,
        /// Who answered.
        from: SocketAddr,
        /// What it answered.
        reply: SampleReply,
    },
    /// A [`DhtNode::sample_infohashes`] query got an error or no answer.
    SampleFailed {
        /// The query.
        id: LookupId,
        /// Who was asked.
        addr: SocketAddr,
    },
    /// Answer to a `ping` command: the node's id, or `None` if it did not answer.
    Pong {
        /// Who was pinged.
        addr: SocketAddr,
        /// Its id, if it answered.
        id: Option<Id20>,
    },
}

/// A node's answer to `sample_infohashes` (BEP 51), as received: the crawler checks it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SampleReply {
    /// The answering node's id.
    pub node_id: Id20,
    /// The samples; `None` when the node does not speak BEP 51 (it answered like `find_node`).
    pub samples: Option<Vec<Id20>>,
    /// `num`: how many info-hashes it stores, if it said.
    pub num: Option<i64>,
    /// `interval` in seconds, if it said.
    pub interval: Option<i64>,
    /// Nodes close to the target (IPv4 and IPv6).
    pub nodes: Vec<CompactNode>,
}

/// Counters of what the node has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Packets that were not valid KRPC.
    pub malformed: u64,
    /// Queries dropped by the rate limit.
    pub rate_limited: u64,
    /// Queries answered (including error replies).
    pub answered: u64,
    /// Nodes seen whose id fails the BEP 42 check for their (non-local) address.
    pub bep42_violations: u64,
    /// Replies that matched no outstanding query.
    pub unmatched_replies: u64,
    /// Queries sent.
    pub queries_sent: u64,
    /// Queries that passed their hard timeout.
    pub timeouts: u64,
}

#[derive(Clone, Copy, Debug)]
enum Purpose {
    Lookup(LookupId),
    AnnouncePeer(LookupId),
    /// `user`: the answer is reported as [`Event::Pong`].
    Ping {
        user: bool,
    },
    Sample(LookupId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Bootstrap,
    Refresh,
    FindNode,
    GetPeers,
    Announce { port: u16, implied_port: bool },
}

#[derive(Debug)]
struct Op {
    kind: OpKind,
    lookup: Lookup,
    /// Announce phase: replies still expected, and acks.
    announcing: Option<(usize, usize)>,
}

/// How often expired peers are dropped from the store.
const STORE_EXPIRE_EVERY: Duration = Duration::from_secs(60);
/// Bootstrap addresses kept.
const MAX_BOOTSTRAP: usize = 64;
/// External-IP votes kept: distinct addresses, and distinct voters per address.
const MAX_IP_VOTES: usize = 16;
/// Nodes of the other family (BEP 32 "leaking" between the two DHTs) queued for the other
/// node; more are dropped until it takes them.
const MAX_FOREIGN: usize = 64;

/// A Mainline DHT node.
pub struct DhtNode {
    id: Id20,
    config: DhtConfig,
    table: RoutingTable,
    rpc: RpcManager<Purpose>,
    ops: HashMap<LookupId, Op>,
    next_op: u64,
    tokens: TokenSecrets,
    store: PeerStore,
    items: ItemStore,
    sampler: Sampler,
    next_store_expiry: Time,
    limiter: RateLimiter,
    rng: StdRng,
    outbox: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    bootstrap_addrs: Vec<SocketAddr>,
    /// Our address as reported by other nodes (BEP 42 `ip`): address to distinct voters.
    ip_votes: HashMap<IpAddr, Vec<IpAddr>>,
    stats: NodeStats,
    /// A node of the other family runs beside this one (BEP 32 dual stack).
    dual_stack: bool,
    /// Nodes of the other family seen in replies, for the other node.
    foreign: Vec<CompactNode>,
}

impl DhtNode {
    /// A node with a fresh id (a BEP 42 id when `config.external_ip` is known), randomness seeded
    /// from `seed`.
    pub fn new(config: DhtConfig, now: Time, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let id = match config.external_ip {
            Some(ip) => bep42::node_id_for_ip(ip, rng.random()),
            None => Id20(rng.random()),
        };
        Self::with_id(config, now, seed, id)
    }

    /// A node with the given id.
    pub fn with_id(config: DhtConfig, now: Time, seed: u64, id: Id20) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_d417);
        let tokens = TokenSecrets::new(now, rng.random());
        let rpc = RpcManager::new(config.rpc, rng.random());
        DhtNode {
            id,
            table: RoutingTable::new(id, config.routing, now),
            rpc,
            ops: HashMap::new(),
            next_op: 1,
            tokens,
            store: PeerStore::new(config.peer_store),
            items: ItemStore::new(config.items),
            sampler: Sampler::new(config.sampler),
            next_store_expiry: now + STORE_EXPIRE_EVERY,
            limiter: RateLimiter::new(config.rate_limit),
            rng,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            bootstrap_addrs: Vec::new(),
            ip_votes: HashMap::new(),
            stats: NodeStats::default(),
            dual_stack: false,
            foreign: Vec::new(),
            config,
        }
    }

    /// A node restored from saved state: its id (the one for its family) is kept unless
    /// `config.external_ip` is known and the id is not a BEP 42 id for it; the saved nodes of
    /// its family become bootstrap addresses (they are re-checked, not trusted).
    pub fn from_state(config: DhtConfig, now: Time, seed: u64, state: &DhtState) -> Self {
        let family = config.family;
        let id = state.id_for(family);
        let keep = match config.external_ip {
            Some(ip) => bep42::check(&id, ip),
            None => true,
        };
        let mut node = if keep {
            Self::with_id(config, now, seed, id)
        } else {
            Self::new(config, now, seed)
        };
        node.bootstrap_addrs = state
            .nodes_of(family)
            .map(|n| n.addr)
            .take(MAX_BOOTSTRAP)
            .collect();
        node
    }

    /// The address family this node serves.
    pub fn family(&self) -> Family {
        self.config.family
    }

    /// Tells the node that a node of the other family runs beside it: its bootstrap queries
    /// then ask for both node lists (BEP 32: "it should request both IPv4 and IPv6 node
    /// information"), and nodes of the other family in replies are kept for
    /// [`poll_foreign_node`](Self::poll_foreign_node).
    pub fn set_dual_stack(&mut self, on: bool) {
        self.dual_stack = on;
        if !on {
            self.foreign.clear();
        }
    }

    /// A node of the other family learned from a reply (dual stack only), for the other node
    /// to ping.
    pub fn poll_foreign_node(&mut self) -> Option<CompactNode> {
        self.foreign.pop()
    }

    /// Our node id.
    pub fn id(&self) -> Id20 {
        self.id
    }

    /// The routing table (read only).
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// Counters.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// The peer store (read only).
    pub fn peer_store(&self) -> &PeerStore {
        &self.store
    }

    /// The BEP 44 item store (read only).
    pub fn item_store(&self) -> &ItemStore {
        &self.items
    }

    /// Number of lookups running.
    pub fn lookups_running(&self) -> usize {
        self.ops.len()
    }

    /// Our external IP as most nodes reported it (BEP 42 `ip`), once two distinct nodes agree.
    pub fn external_ip(&self) -> Option<IpAddr> {
        self.ip_votes
            .iter()
            .filter(|(_, v)| v.len() >= 2)
            .max_by_key(|(ip, v)| (v.len(), **ip))
            .map(|(ip, _)| *ip)
    }

    /// The id and the good nodes, to save.
    pub fn save_state(&self, now: Time) -> DhtState {
        DhtState::new(self.id, self.good_nodes(now))
    }

    /// The good nodes of the table, at most [`crate::state::MAX_SAVED_NODES`].
    pub fn good_nodes(&self, now: Time) -> Vec<CompactNode> {
        let mut nodes: Vec<CompactNode> = self
            .table
            .entries()
            .filter(|e| e.state(now, self.table.config()) == NodeState::Good)
            .map(|e| e.node)
            .collect();
        nodes.truncate(crate::state::MAX_SAVED_NODES);
        nodes
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.outbox.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next.
    pub fn next_timeout(&self) -> Time {
        let mut t = self.tokens.next_rotation().min(self.next_store_expiry);
        if !self.table.is_empty() {
            t = t.min(self.table.next_refresh());
        }
        if let Some(d) = self.rpc.next_deadline() {
            t = t.min(d);
        }
        t
    }

    fn new_op(&mut self, kind: OpKind, target: Id20) -> Result<LookupId, DhtError> {
        if self.ops.len() >= self.config.max_lookups {
            return Err(DhtError::TooManyLookups(self.config.max_lookups));
        }
        let k = self.config.routing.k;
        let known = self.table_closest(&target);
        let seeds = if known.len() < k || kind == OpKind::Bootstrap {
            self.bootstrap_addrs.clone()
        } else {
            Vec::new()
        };
        if known.is_empty() && seeds.is_empty() {
            return Err(DhtError::NoNodes);
        }
        let lk = match kind {
            OpKind::GetPeers | OpKind::Announce { .. } => LookupKind::GetPeers,
            _ => LookupKind::FindNode,
        };
        let id = LookupId(self.next_op);
        self.next_op += 1;
        self.ops.insert(
            id,
            Op {
                kind,
                lookup: Lookup::new(lk, target, self.id, k, &known, &seeds),
                announcing: None,
            },
        );
        Ok(id)
    }

    fn table_closest(&self, target: &Id20) -> Vec<CompactNode> {
        // Time only matters for the good/questionable split, which `closest` does not use
        // beyond excluding bad nodes; any time works.
        self.table
            .closest(Time::ZERO, target, self.config.routing.k, false)
    }

    /// Joins the DHT through `addrs` (a `find_node` lookup for our own id). The addresses are
    /// also kept to restart from when the table empties. Addresses of the other family are
    /// ignored.
    pub fn bootstrap(&mut self, now: Time, addrs: &[SocketAddr]) -> Result<LookupId, DhtError> {
        let family = self.config.family;
        for a in addrs.iter().filter(|a| Family::of(a) == family) {
            if !self.bootstrap_addrs.contains(a) && self.bootstrap_addrs.len() < MAX_BOOTSTRAP {
                self.bootstrap_addrs.push(*a);
            }
        }
        let id = self.new_op(OpKind::Bootstrap, self.id)?;
        self.step(now, id);
        Ok(id)
    }

    /// Looks up peers for `info_hash`; peers arrive as [`Event::Peers`], then
    /// [`Event::LookupDone`].
    pub fn get_peers(&mut self, now: Time, info_hash: Id20) -> Result<LookupId, DhtError> {
        let id = self.new_op(OpKind::GetPeers, info_hash)?;
        self.step(now, id);
        Ok(id)
    }

    /// Announces that we serve `info_hash` on `port` (`None`: the port our DHT packets come from,
    /// `implied_port`), to the k closest nodes; peers found on the way arrive as
    /// [`Event::Peers`], then [`Event::AnnounceDone`].
    pub fn announce(
        &mut self,
        now: Time,
        info_hash: Id20,
        port: Option<u16>,
    ) -> Result<LookupId, DhtError> {
        let kind = OpKind::Announce {
            port: port.unwrap_or(0),
            implied_port: port.is_none(),
        };
        let id = self.new_op(kind, info_hash)?;
        self.step(now, id);
        Ok(id)
    }

    /// Looks up the nodes closest to `target`.
    pub fn find_node(&mut self, now: Time, target: Id20) -> Result<LookupId, DhtError> {
        let id = self.new_op(OpKind::FindNode, target)?;
        self.step(now, id);
        Ok(id)
    }

    /// Pings `addr`; the answer is reported as [`Event::Pong`].
    pub fn ping(&mut self, now: Time, addr: SocketAddr) -> Result<(), DhtError> {
        self.check_family(&addr)?;
        if self.send_query(
            now,
            addr,
            None,
            QueryKind::Ping,
            Purpose::Ping { user: true },
        ) {
            Ok(())
        } else {
            Err(DhtError::Busy)
        }
    }

    /// Sends one BEP 51 `sample_infohashes` query to `addr`, asking for nodes near `target`.
    /// The answer is reported as [`Event::Samples`], an error or timeout as
    /// [`Event::SampleFailed`]. The crawler ([`crate::crawler`]) decides whom to ask and when.
    pub fn sample_infohashes(
        &mut self,
        now: Time,
        addr: SocketAddr,
        target: Id20,
    ) -> Result<LookupId, DhtError> {
        self.check_family(&addr)?;
        let id = LookupId(self.next_op);
        self.next_op += 1;
        if self.send_query(
            now,
            addr,
            None,
            QueryKind::SampleInfohashes { target },
            Purpose::Sample(id),
        ) {
            Ok(id)
        } else {
            Err(DhtError::Busy)
        }
    }

    /// Adds a node we know of without contacting it (tests, or nodes from a peer's `port`
    /// message): it is pinged, and enters the table when it answers. Addresses of the other
    /// family are ignored.
    pub fn add_node(&mut self, now: Time, addr: SocketAddr) {
        if self.check_family(&addr).is_err() {
            return;
        }
        self.send_query(
            now,
            addr,
            None,
            QueryKind::Ping,
            Purpose::Ping { user: false },
        );
    }

    fn check_family(&self, addr: &SocketAddr) -> Result<(), DhtError> {
        let f = Family::of(addr);
        if f == self.config.family {
            Ok(())
        } else {
            Err(DhtError::FamilyNotRunning(f))
        }
    }

    /// The `want` of a query of ours (BEP 32; only `find_node` and `get_peers` carry one):
    /// our own family's nodes, and while bootstrapping a dual-stack node, both families' ("in
    /// order to accelerate this process, it should request both"). In steady state only our
    /// own family: asking for both "increases network traffic with no benefit".
    fn want_for(&self, kind: &QueryKind, purpose: &Purpose) -> Option<Want> {
        if !matches!(
            kind,
            QueryKind::FindNode { .. } | QueryKind::GetPeers { .. }
        ) {
            return None;
        }
        let bootstrapping = match purpose {
            Purpose::Lookup(id) => self
                .ops
                .get(id)
                .is_some_and(|op| op.kind == OpKind::Bootstrap),
            _ => false,
        };
        Some(if self.dual_stack && bootstrapping {
            Want::both()
        } else {
            Want::only(self.config.family)
        })
    }

    fn send_query(
        &mut self,
        now: Time,
        addr: SocketAddr,
        node_id: Option<Id20>,
        kind: QueryKind,
        purpose: Purpose,
    ) -> bool {
        let want = self.want_for(&kind, &purpose);
        let Some(tid) = self.rpc.start(now, addr, node_id, purpose) else {
            return false;
        };
        let msg = Msg {
            tid,
            version: Some(self.config.version.to_vec()),
            read_only: self.config.read_only,
            ip: None,
            body: Body::Query(Query {
                id: self.id,
                kind,
                want,
            }),
        };
        self.stats.queries_sent += 1;
        self.outbox.push_back((addr, msg.encode()));
        true
    }

    fn reply(&mut self, to: SocketAddr, tid: Vec<u8>, body: Body) {
        let mut msg = Msg {
            tid,
            version: Some(self.config.version.to_vec()),
            read_only: false,
            ip: Some(to),
            body,
        };
        let mut bytes = msg.encode();
        // A `get` answer with a 1000-byte item and both node lists, or a `get_peers` answer
        // over IPv6 with many 18-byte peers and both node lists, can pass the packet limit: the
        // other family's nodes go first, then peers (halved until it fits: a lookup still needs
        // the nodes to go on), then our family's nodes.
        let own_v4 = self.config.family == Family::V4;
        let mut step = 0;
        while bytes.len() > krpc::MAX_PACKET && step < 16 {
            let Body::Response(r) = &mut msg.body else {
                break;
            };
            let (own, other) = if own_v4 {
                (&mut r.nodes, &mut r.nodes6)
            } else {
                (&mut r.nodes6, &mut r.nodes)
            };
            if !other.is_empty() {
                other.clear();
            } else if r.values.len() > 1 {
                r.values.truncate(r.values.len() / 2);
            } else if !own.is_empty() {
                own.clear();
            } else {
                r.values.clear();
            }
            bytes = msg.encode();
            step += 1;
        }
        self.stats.answered += 1;
        self.outbox.push_back((to, bytes));
    }

    fn error(&mut self, to: SocketAddr, tid: Vec<u8>, code: i64, message: &str) {
        self.reply(
            to,
            tid,
            Body::Error(ErrorBody {
                code,
                message: message.into(),
            }),
        );
    }

    /// Feeds one received datagram.
    pub fn handle_packet(&mut self, now: Time, from: SocketAddr, bytes: &[u8]) {
        self.handle_packet_with(now, from, bytes, None);
    }

    /// Feeds one received datagram; `other` is the routing table of the node of the other
    /// family (dual stack), which answers a BEP 32 `want` for that family's nodes. Datagrams
    /// from the other family are dropped: they belong to the other node.
    pub fn handle_packet_with(
        &mut self,
        now: Time,
        from: SocketAddr,
        bytes: &[u8],
        other: Option<&RoutingTable>,
    ) {
        if Family::of(&from) != self.config.family {
            trace!(%from, "dropping a DHT packet of the other address family");
            self.stats.malformed += 1;
            return;
        }
        let msg = match krpc::decode(bytes) {
            Ok(m) => m,
            Err(KrpcError::BadQuery { tid, reason }) => {
                self.stats.malformed += 1;
                if !self.config.read_only && self.limiter.allow(now, from.ip()) {
                    self.error(from, tid, krpc::ERROR_PROTOCOL, reason);
                }
                return;
            }
            Err(e) => {
                trace!(%from, error = %e, "dropping malformed DHT packet");
                self.stats.malformed += 1;
                return;
            }
        };
        match msg.body {
            Body::Query(q) => self.on_query(now, from, msg.tid, msg.read_only, q, other),
            Body::Response(r) => self.on_response(now, from, &msg.tid, msg.ip, r),
            Body::Error(e) => self.on_error(now, from, &msg.tid, e),
        }
    }

    fn check_bep42(&mut self, id: &Id20, addr: &SocketAddr) -> bool {
        if bep42::check(id, addr.ip()) {
            return true;
        }
        self.stats.bep42_violations += 1;
        !self.config.enforce_bep42
    }

    fn on_query(
        &mut self,
        now: Time,
        from: SocketAddr,
        tid: Vec<u8>,
        ro: bool,
        q: Query,
        other: Option<&RoutingTable>,
    ) {
        if self.config.read_only {
            // BEP 43: read-only nodes answer no queries.
            return;
        }
        if !self.limiter.allow(now, from.ip()) {
            self.stats.rate_limited += 1;
            return;
        }
        if q.id == self.id {
            // Our own query reflected back to us (several addresses of one host).
            return;
        }
        // BEP 43: read-only senders are served but never enter the table.
        if !ro && self.check_bep42(&q.id, &from) {
            let node = CompactNode {
                id: q.id,
                addr: from,
            };
            if self.table.heard_from(now, node, false) == Insert::Added {
                // It took free room unconfirmed: ping it, so it is confirmed (and handed to
                // others) once it answers, or dropped if it cannot be reached.
                self.send_query(
                    now,
                    from,
                    Some(q.id),
                    QueryKind::Ping,
                    Purpose::Ping { user: false },
                );
            }
        }
        let want = q.want;
        let body = match q.kind {
            QueryKind::Ping => Response {
                id: self.id,
                ..Response::default()
            },
            QueryKind::FindNode { target } => {
                let (nodes, nodes6) = self.nodes_for(now, &target, from, want, other);
                Response {
                    id: self.id,
                    nodes,
                    nodes6,
                    ..Response::default()
                }
            }
            QueryKind::GetPeers { info_hash } => {
                let values = self.store.get(now, &info_hash, &mut self.rng);
                let (nodes, nodes6) = self.nodes_for(now, &info_hash, from, want, other);
                Response {
                    id: self.id,
                    nodes,
                    nodes6,
                    values,
                    token: Some(self.tokens.token_for(from.ip())),
                    ..Response::default()
                }
            }
            QueryKind::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
            } => {
                if !self.tokens.is_valid(&token, from.ip()) {
                    self.error(from, tid, krpc::ERROR_PROTOCOL, "bad token");
                    return;
                }
                let port = if implied_port { from.port() } else { port };
                if port == 0 {
                    self.error(from, tid, krpc::ERROR_PROTOCOL, "port 0");
                    return;
                }
                self.store
                    .insert(now, info_hash, SocketAddr::new(from.ip(), port));
                Response {
                    id: self.id,
                    ..Response::default()
                }
            }
            QueryKind::SampleInfohashes { target } => {
                let sample = self.sampler.sample(now, &self.store, &mut self.rng);
                let (nodes, nodes6) = self.nodes_for(now, &target, from, want, other);
                Response {
                    id: self.id,
                    nodes,
                    nodes6,
                    samples: Some(sample.samples),
                    num: Some(sample.num),
                    interval: Some(sample.interval),
                    ..Response::default()
                }
            }
            QueryKind::Get { target, seq } => {
                let (nodes, nodes6) = self.nodes_for(now, &target, from, want, other);
                let mut r = Response {
                    id: self.id,
                    nodes,
                    nodes6,
                    token: Some(self.tokens.token_for(from.ip())),
                    ..Response::default()
                };
                if let Some(item) = self.items.get(now, &target) {
                    match &item.mutable {
                        // BEP 44: not newer than what the asker has: only the seq.
                        Some(m) if seq.is_some_and(|s| m.seq <= s) => r.seq = Some(m.seq),
                        Some(m) => {
                            r.value = Some(item.value.clone());
                            r.key = Some(m.key);
                            r.sig = Some(m.sig);
                            r.seq = Some(m.seq);
                        }
                        None => r.value = Some(item.value.clone()),
                    }
                }
                r
            }
            QueryKind::Put(p) => {
                let stored = if self.tokens.is_valid(&p.token, from.ip()) {
                    bep44::check_put(&p.value, p.mutable.as_ref()).and_then(|target| {
                        self.items.put(now, target, &p.value, p.mutable.as_ref())
                    })
                } else {
                    Err(bep44::PutError::BadToken)
                };
                if let Err(e) = stored {
                    self.error(from, tid, e.code(), e.message());
                    return;
                }
                Response {
                    id: self.id,
                    ..Response::default()
                }
            }
            QueryKind::Other { .. } => {
                self.error(from, tid, krpc::ERROR_METHOD_UNKNOWN, "method unknown");
                return;
            }
        };
        self.reply(from, tid, Body::Response(body));
    }

    /// Closest confirmed nodes for an answer, without the asker itself.
    fn closest_for(&self, now: Time, target: &Id20, asker: SocketAddr) -> Vec<CompactNode> {
        let k = self.config.routing.k;
        let mut v = self.table.closest(now, target, k + 1, true);
        v.retain(|n| n.addr != asker);
        v.truncate(k);
        v
    }

    /// The `nodes` and `nodes6` of an answer (BEP 32): without `want`, the list of the family
    /// the query came over (ours); with it, each family it names, the other family's from the
    /// other node's table (none when no such node runs).
    fn nodes_for(
        &self,
        now: Time,
        target: &Id20,
        asker: SocketAddr,
        want: Option<Want>,
        other: Option<&RoutingTable>,
    ) -> (Vec<CompactNode>, Vec<CompactNode>) {
        let own = self.config.family;
        let want = want.unwrap_or(Want::only(own));
        let k = self.config.routing.k;
        let mut lists = (Vec::new(), Vec::new());
        for family in [Family::V4, Family::V6] {
            if !want.wants(family) {
                continue;
            }
            let nodes = if family == own {
                self.closest_for(now, target, asker)
            } else {
                other.map_or_else(Vec::new, |t| t.closest(now, target, k, true))
            };
            match family {
                Family::V4 => lists.0 = nodes,
                Family::V6 => lists.1 = nodes,
            }
        }
        lists
    }

    /// Counts `ip` (our address as `voter` saw it) and reports a new consensus.
    fn vote_ip(&mut self, voter: IpAddr, ip: Option<SocketAddr>) {
        let Some(ip) = ip.map(|a| a.ip()) else {
            return;
        };
        if !self.ip_votes.contains_key(&ip) && self.ip_votes.len() >= MAX_IP_VOTES {
            return;
        }
        let before = self.external_ip();
        let voters = self.ip_votes.entry(ip).or_default();
        if voters.contains(&voter) || voters.len() >= MAX_IP_VOTES {
            return;
        }
        voters.push(voter);
        let after = self.external_ip();
        if let Some(ip) = after.filter(|a| Some(*a) != before) {
            self.events.push_back(Event::ExternalIp {
                ip,
                id_matches: bep42::check(&self.id, ip),
            });
        }
    }

    fn on_response(
        &mut self,
        now: Time,
        from: SocketAddr,
        tid: &[u8],
        ip: Option<SocketAddr>,
        r: Response,
    ) {
        let Some(p) = self.rpc.on_reply(now, tid, from) else {
            self.stats.unmatched_replies += 1;
            return;
        };
        if r.id == self.id {
            return;
        }
        self.vote_ip(from.ip(), ip);
        let node = CompactNode {
            id: r.id,
            addr: from,
        };
        if self.check_bep42(&r.id, &from) {
            if let Insert::Cached(Some(q)) = self.table.heard_from(now, node, true) {
                // BEP 5: ping the least recently seen questionable node; if it fails it is
                // replaced by a cached one.
                self.send_query(
                    now,
                    q.addr,
                    Some(q.id),
                    QueryKind::Ping,
                    Purpose::Ping { user: false },
                );
            }
        }
        match p.purpose {
            Purpose::Ping { user } => {
                if user {
                    self.events.push_back(Event::Pong {
                        addr: from,
                        id: Some(r.id),
                    });
                }
            }
            Purpose::Lookup(id) => {
                let Some(op) = self.ops.get_mut(&id) else {
                    return;
                };
                let peers = op.lookup.on_response(from, p.node_id, &r);
                if self.dual_stack {
                    // BEP 32: nodes of the other DHT, for the other node.
                    let foreign = match self.config.family {
                        Family::V4 => &r.nodes6,
                        Family::V6 => &r.nodes,
                    };
                    for n in foreign {
                        if self.foreign.len() >= MAX_FOREIGN {
                            break;
                        }
                        if n.addr.port() != 0
                            && n.id != self.id
                            && Family::of(&n.addr) != self.config.family
                            && !self.foreign.contains(n)
                        {
                            self.foreign.push(*n);
                        }
                    }
                }
                if !peers.is_empty() && !matches!(op.kind, OpKind::Refresh | OpKind::Bootstrap) {
                    self.events.push_back(Event::Peers {
                        id,
                        info_hash: op.lookup.target(),
                        peers,
                    });
                }
                self.step(now, id);
            }
            Purpose::AnnouncePeer(id) => self.announce_reply(id, true),
            Purpose::Sample(id) => {
                let mut nodes = r.nodes;
                nodes.extend(r.nodes6);
                self.events.push_back(Event::Samples {
                    id,
                    from,
                    reply: SampleReply {
                        node_id: r.id,
                        samples: r.samples,
                        num: r.num,
                        interval: r.interval,
                        nodes,
                    },
                });
            }
        }
    }

    fn on_error(&mut self, now: Time, from: SocketAddr, tid: &[u8], e: ErrorBody) {
        let Some(p) = self.rpc.on_reply(now, tid, from) else {
            self.stats.unmatched_replies += 1;
            return;
        };
        debug!(%from, code = e.code, message = %e.message, "DHT error reply");
        match p.purpose {
            Purpose::Ping { user } => {
                if user {
                    self.events.push_back(Event::Pong {
                        addr: from,
                        id: None,
                    });
                }
            }
            Purpose::Lookup(id) => {
                if let Some(op) = self.ops.get_mut(&id) {
                    op.lookup.on_failure(p.node_id);
                    self.step(now, id);
                }
            }
            Purpose::AnnouncePeer(id) => self.announce_reply(id, false),
            Purpose::Sample(id) => self
                .events
                .push_back(Event::SampleFailed { id, addr: from }),
        }
    }

    fn announce_reply(&mut self, id: LookupId, ok: bool) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let Some((left, acked)) = op.announcing.as_mut() else {
            return;
        };
        *left = left.saturating_sub(1);
        if ok {
            *acked += 1;
        }
        if *left == 0 {
            let acked = *acked;
            if let Some(op) = self.ops.remove(&id) {
                self.events.push_back(Event::AnnounceDone {
                    id,
                    info_hash: op.lookup.target(),
                    acked,
                    stats: op.lookup.final_stats(),
                });
            }
        }
    }

    /// Sends the next queries of lookup `id`, and finishes it when done.
    fn step(&mut self, now: Time, id: LookupId) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        if op.announcing.is_some() {
            return;
        }
        let target = op.lookup.target();
        let qkind = match op.lookup.kind() {
            LookupKind::FindNode => QueryKind::FindNode { target },
            LookupKind::GetPeers => QueryKind::GetPeers { info_hash: target },
        };
        let next = op.lookup.next_queries();
        for t in next {
            if !self.send_query(now, t.addr, t.id, qkind.clone(), Purpose::Lookup(id)) {
                if let Some(op) = self.ops.get_mut(&id) {
                    op.lookup.on_failure(t.id);
                }
            }
        }
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        if !op.lookup.is_done() {
            return;
        }
        match op.kind {
            OpKind::Announce { port, implied_port } => {
                let targets: Vec<(CompactNode, Vec<u8>)> = op
                    .lookup
                    .closest_answered()
                    .into_iter()
                    .filter_map(|(n, t)| t.map(|t| (n, t)))
                    .collect();
                op.announcing = Some((0, 0));
                let mut sent = 0;
                for (n, token) in targets {
                    let q = QueryKind::AnnouncePeer {
                        info_hash: target,
                        port,
                        implied_port,
                        token,
                    };
                    if self.send_query(now, n.addr, Some(n.id), q, Purpose::AnnouncePeer(id)) {
                        sent += 1;
                    }
                }
                if sent == 0 {
                    if let Some(op) = self.ops.remove(&id) {
                        self.events.push_back(Event::AnnounceDone {
                            id,
                            info_hash: target,
                            acked: 0,
                            stats: op.lookup.final_stats(),
                        });
                    }
                } else if let Some(op) = self.ops.get_mut(&id) {
                    op.announcing = Some((sent, 0));
                }
            }
            OpKind::Refresh => {
                self.ops.remove(&id);
            }
            _ => {
                if let Some(op) = self.ops.remove(&id) {
                    self.events.push_back(Event::LookupDone {
                        id,
                        target,
                        closest: op
                            .lookup
                            .closest_answered()
                            .into_iter()
                            .map(|(n, _)| n)
                            .collect(),
                        stats: op.lookup.final_stats(),
                    });
                }
            }
        }
    }

    /// Advances timers: query timeouts, token rotation, peer expiry, bucket refresh.
    pub fn handle_timeout(&mut self, now: Time) {
        for e in self.rpc.poll_expired(now) {
            match e {
                Expired::Soft(p) => {
                    if let Purpose::Lookup(id) = p.purpose {
                        if let Some(op) = self.ops.get_mut(&id) {
                            op.lookup.on_soft_timeout(p.node_id);
                            self.step(now, id);
                        }
                    }
                }
                Expired::Hard(p) => {
                    self.stats.timeouts += 1;
                    if let Some(nid) = p.node_id {
                        self.table.failed(&CompactNode {
                            id: nid,
                            addr: p.addr,
                        });
                    }
                    match p.purpose {
                        Purpose::Ping { user } => {
                            if user {
                                self.events.push_back(Event::Pong {
                                    addr: p.addr,
                                    id: None,
                                });
                            }
                        }
                        Purpose::Lookup(id) => {
                            if let Some(op) = self.ops.get_mut(&id) {
                                op.lookup.on_failure(p.node_id);
                                self.step(now, id);
                            }
                        }
                        Purpose::AnnouncePeer(id) => self.announce_reply(id, false),
                        Purpose::Sample(id) => self
                            .events
                            .push_back(Event::SampleFailed { id, addr: p.addr }),
                    }
                }
            }
        }
        let fresh: [u8; 16] = self.rng.random();
        self.tokens.maybe_rotate(now, fresh);
        if now >= self.next_store_expiry {
            self.store.expire(now);
            self.items.expire(now);
            self.next_store_expiry = now + STORE_EXPIRE_EVERY;
        }
        if !self.table.is_empty() && now >= self.table.next_refresh() {
            let targets = self.table.due_refreshes(now, &mut self.rng);
            for t in targets {
                // Refreshes use spare lookup slots only; a busy node refreshes next time.
                if self.ops.len() + 1 >= self.config.max_lookups {
                    break;
                }
                if let Ok(id) = self.new_op(OpKind::Refresh, t) {
                    self.step(now, id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::krpc::decode;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n], 6881))
    }

    fn query(id: Id20, kind: QueryKind, ro: bool) -> Vec<u8> {
        Msg {
            tid: b"xy".to_vec(),
            version: None,
            read_only: ro,
            ip: None,
            body: Body::Query(Query {
                id,
                kind,
                want: None,
            }),
        }
        .encode()
    }

    fn replies(node: &mut DhtNode) -> Vec<(SocketAddr, Msg)> {
        let mut out = Vec::new();
        while let Some((to, b)) = node.poll_transmit() {
            out.push((to, decode(&b).unwrap()));
        }
        out
    }

    fn answer_to(out: &[(SocketAddr, Msg)]) -> Option<&Msg> {
        out.iter().map(|(_, m)| m).find(|m| m.tid == b"xy")
    }

    #[test]
    fn read_only_senders_are_served_but_not_added() {
        let mut n = DhtNode::new(DhtConfig::default(), Time::ZERO, 1);
        n.handle_packet(
            Time::ZERO,
            addr(1),
            &query(Id20([1; 20]), QueryKind::Ping, true),
        );
        let out = replies(&mut n);
        assert!(matches!(answer_to(&out).unwrap().body, Body::Response(_)));
        assert_eq!(n.table().len(), 0);
        // Without `ro` the sender takes free room and is pinged to confirm it.
        n.handle_packet(
            Time::ZERO,
            addr(2),
            &query(Id20([2; 20]), QueryKind::Ping, false),
        );
        let out = replies(&mut n);
        assert_eq!(out.len(), 2);
        assert_eq!(n.table().len(), 1);
    }

    #[test]
    fn read_only_node_answers_nothing_and_flags_its_queries() {
        let cfg = DhtConfig {
            read_only: true,
            ..DhtConfig::default()
        };
        let mut n = DhtNode::new(cfg, Time::ZERO, 1);
        n.handle_packet(
            Time::ZERO,
            addr(1),
            &query(Id20([1; 20]), QueryKind::Ping, false),
        );
        assert!(replies(&mut n).is_empty());
        n.ping(Time::ZERO, addr(1)).unwrap();
        let out = replies(&mut n);
        assert!(out[0].1.read_only);
    }

    #[test]
    fn announce_needs_our_token_and_stores_the_peer() {
        let mut n = DhtNode::new(DhtConfig::default(), Time::ZERO, 1);
        let h = Id20([9; 20]);
        let other = Id20([1; 20]);
        n.handle_packet(
            Time::ZERO,
            addr(1),
            &query(other, QueryKind::GetPeers { info_hash: h }, false),
        );
        let out = replies(&mut n);
        let Body::Response(r) = &answer_to(&out).unwrap().body else {
            panic!()
        };
        let token = r.token.clone().unwrap();
        let announce = |token: Vec<u8>, implied_port| QueryKind::AnnouncePeer {
            info_hash: h,
            port: 7000,
            implied_port,
            token,
        };
        // A bad token, or a good token from another IP: error 203.
        n.handle_packet(
            Time::ZERO,
            addr(1),
            &query(other, announce(b"nope".to_vec(), false), false),
        );
        n.handle_packet(
            Time::ZERO,
            addr(2),
            &query(other, announce(token.clone(), false), false),
        );
        for (_, m) in replies(&mut n).iter().filter(|(_, m)| m.tid == b"xy") {
            assert!(matches!(&m.body, Body::Error(e) if e.code == krpc::ERROR_PROTOCOL));
        }
        assert_eq!(n.peer_store().len(), 0);
        // Six minutes later (one rotation) the token still works; implied port uses 6881.
        n.handle_timeout(Time::from_secs(360));
        n.handle_packet(
            Time::from_secs(360),
            addr(1),
            &query(other, announce(token, true), false),
        );
        let out = replies(&mut n);
        assert!(matches!(answer_to(&out).unwrap().body, Body::Response(_)));
        n.handle_packet(
            Time::from_secs(361),
            addr(3),
            &query(Id20([3; 20]), QueryKind::GetPeers { info_hash: h }, false),
        );
        let out = replies(&mut n);
        let Body::Response(r) = &answer_to(&out).unwrap().body else {
            panic!()
        };
        assert_eq!(r.values, vec![addr(1)]);
    }

    #[test]
    fn unknown_methods_and_malformed_queries_get_errors() {
        let mut n = DhtNode::new(DhtConfig::default(), Time::ZERO, 1);
        let other = Id20([1; 20]);
        n.handle_packet(
            Time::ZERO,
            addr(1),
            &query(
                other,
                QueryKind::Other {
                    method: "vote".into(),
                },
                false,
            ),
        );
        let out = replies(&mut n);
        assert!(
            matches!(&answer_to(&out).unwrap().body, Body::Error(e) if e.code == krpc::ERROR_METHOD_UNKNOWN)
        );
        n.handle_packet(
            Time::ZERO,
            addr(1),
            b"d1:ad2:id20:abcdefghij0123456789e1:q9:get_peers1:t2:xy1:y1:qe",
        );
        let out = replies(&mut n);
        assert!(
            matches!(&answer_to(&out).unwrap().body, Body::Error(e) if e.code == krpc::ERROR_PROTOCOL)
        );
        n.handle_packet(Time::ZERO, addr(1), b"garbage");
        assert!(replies(&mut n).is_empty());
        assert_eq!(n.stats().malformed, 2);
    }

    #[test]
    fn mutable_items_are_signed_versioned_and_served() {
        use ed25519_dalek::{Signer, SigningKey};
        let mut n = DhtNode::new(DhtConfig::default(), Time::ZERO, 1);
        let other = Id20([1; 20]);
        let sk = SigningKey::from_bytes(&[7; 32]);
        let key = sk.verifying_key().to_bytes();
        let salt = b"salt".to_vec();
        let target = bep44::mutable_target(&key, &salt);
        let ask = |n: &mut DhtNode, kind: QueryKind| {
            n.handle_packet(Time::ZERO, addr(1), &query(other, kind, false));
            answer_to(&replies(n)).unwrap().body.clone()
        };
        let Body::Response(r) = ask(&mut n, QueryKind::Get { target, seq: None }) else {
            panic!()
        };
        let token = r.token.unwrap();
        let put = |seq: i64, value: &[u8], cas: Option<i64>, good_sig: bool| {
            let mut sig = sk.sign(&bep44::signed_buffer(&salt, seq, value)).to_bytes();
            if !good_sig {
                sig[0] ^= 1;
            }
            QueryKind::Put(krpc::PutRequest {
                token: token.clone(),
                value: value.to_vec(),
                mutable: Some(krpc::MutableItem {
                    key,
                    sig,
                    seq,
                    salt: salt.clone(),
                    cas,
                }),
            })
        };
        let code = |b: Body| match b {
            Body::Error(e) => e.code,
            Body::Response(_) => 0,
            Body::Query(_) => -1,
        };
        assert_eq!(code(ask(&mut n, put(1, b"5:hello", None, false))), 206);
        assert_eq!(code(ask(&mut n, put(1, b"5:hello", None, true))), 0);
        assert_eq!(code(ask(&mut n, put(2, b"5:world", Some(0), true))), 301);
        assert_eq!(code(ask(&mut n, put(0, b"5:older", None, true))), 302);
        assert_eq!(code(ask(&mut n, put(2, b"5:world", Some(1), true))), 0);
        let Body::Response(r) = ask(&mut n, QueryKind::Get { target, seq: None }) else {
            panic!()
        };
        assert_eq!(r.value.as_deref(), Some(&b"5:world"[..]));
        assert_eq!((r.seq, r.key), (Some(2), Some(key)));
        // What a requester checks: the key hashes to the target, the signature verifies.
        assert!(bep44::verify(&key, &r.sig.unwrap(), &salt, 2, b"5:world"));
        // Not newer than what the asker has: only seq.
        let Body::Response(r) = ask(
            &mut n,
            QueryKind::Get {
                target,
                seq: Some(2),
            },
        ) else {
            panic!()
        };
        assert_eq!((r.seq, r.value), (Some(2), None));
        // A token from another IP is refused.
        n.handle_packet(
            Time::ZERO,
            addr(2),
            &query(other, put(3, b"1:x", None, true), false),
        );
        assert!(
            matches!(&answer_to(&replies(&mut n)).unwrap().body, Body::Error(e) if e.code == 203)
        );
    }

    #[test]
    fn queries_are_rate_limited_per_ip() {
        let cfg = DhtConfig {
            rate_limit: RateLimitConfig {
                per_second: 1.0,
                burst: 5.0,
                max_ips: 100,
            },
            ..DhtConfig::default()
        };
        let mut n = DhtNode::new(cfg, Time::ZERO, 1);
        let mut answered = 0;
        for _ in 0..20 {
            n.handle_packet(
                Time::ZERO,
                addr(1),
                &query(Id20([1; 20]), QueryKind::Ping, true),
            );
            answered += replies(&mut n).len();
        }
        assert_eq!(answered, 5);
        assert_eq!(n.stats().rate_limited, 15);
        // Another IP is unaffected.
        n.handle_packet(
            Time::ZERO,
            addr(2),
            &query(Id20([2; 20]), QueryKind::Ping, true),
        );
        assert_eq!(replies(&mut n).len(), 1);
    }

    #[test]
    fn bep42_ids_and_reported_violations() {
        let ip: IpAddr = "124.31.75.21".parse().unwrap();
        let cfg = DhtConfig {
            external_ip: Some(ip),
            ..DhtConfig::default()
        };
        let n = DhtNode::new(cfg.clone(), Time::ZERO, 5);
        assert!(bep42::is_valid_id(&n.id(), ip));
        // A public address with a non-BEP 42 id is counted, and refused only when enforced.
        let mut n = DhtNode::new(DhtConfig::default(), Time::ZERO, 5);
        let public = SocketAddr::from(([8, 8, 8, 8], 6881));
        n.handle_packet(
            Time::ZERO,
            public,
            &query(Id20([1; 20]), QueryKind::Ping, false),
        );
        assert_eq!(n.stats().bep42_violations, 1);
        assert_eq!(n.table().len(), 1);
        let mut strict = DhtNode::new(
            DhtConfig {
                enforce_bep42: true,
                ..DhtConfig::default()
            },
            Time::ZERO,
            5,
        );
        strict.handle_packet(
            Time::ZERO,
            public,
            &query(Id20([1; 20]), QueryKind::Ping, false),
        );
        assert_eq!(strict.table().len(), 0);
        // Local addresses are exempt.
        strict.handle_packet(
            Time::ZERO,
            addr(1),
            &query(Id20([1; 20]), QueryKind::Ping, false),
        );
        assert_eq!(strict.table().len(), 1);
    }

    #[test]
    fn commands_need_nodes() {
        let mut n = DhtNode::new(DhtConfig::default(), Time::ZERO, 1);
        assert_eq!(n.get_peers(Time::ZERO, Id20::ZERO), Err(DhtError::NoNodes));
        assert!(n.bootstrap(Time::ZERO, &[addr(1)]).is_ok());
        let out = replies(&mut n);
        assert!(matches!(
            &out[0].1.body,
            Body::Query(Query {
                kind: QueryKind::FindNode { .. },
                ..
            })
        ));
        assert_eq!(out[0].1.tid.len(), 4);
        // Nobody answers: the lookup ends empty after the hard timeout.
        n.handle_timeout(Time::from_secs(1));
        n.handle_timeout(Time::from_secs(6));
        assert!(
            matches!(n.poll_event(), Some(Event::LookupDone { closest, .. }) if closest.is_empty())
        );
    }

    #[test]
    fn external_ip_needs_two_distinct_voters() {
        let mut n = DhtNode::new(DhtConfig::default(), Time::ZERO, 1);
        let me: SocketAddr = "203.0.113.7:6881".parse().unwrap();
        for voter in [1u8, 1, 2] {
            n.ping(Time::ZERO, addr(voter)).unwrap();
            let (_, q) = replies(&mut n).pop().unwrap();
            let resp = Msg {
                tid: q.tid,
                version: None,
                read_only: false,
                ip: Some(me),
                body: Body::Response(Response {
                    id: Id20([voter; 20]),
                    ..Response::default()
                }),
            };
            n.handle_packet(Time::ZERO, addr(voter), &resp.encode());
            if voter == 1 {
                assert_eq!(n.external_ip(), None);
            }
        }
        assert_eq!(n.external_ip(), Some(me.ip()));
        let events: Vec<Event> = std::iter::from_fn(|| n.poll_event()).collect();
        assert!(events.contains(&Event::ExternalIp {
            ip: me.ip(),
            id_matches: false
        }));
    }

    #[test]
    fn idle_buckets_are_refreshed_after_15_minutes() {
        let mut n = DhtNode::new(DhtConfig::default(), Time::ZERO, 1);
        n.ping(Time::ZERO, addr(1)).unwrap();
        let (_, q) = replies(&mut n).pop().unwrap();
        let resp = Msg {
            tid: q.tid,
            version: None,
            read_only: false,
            ip: None,
            body: Body::Response(Response {
                id: Id20([1; 20]),
                ..Response::default()
            }),
        };
        n.handle_packet(Time::ZERO, addr(1), &resp.encode());
        assert_eq!(n.table().len(), 1);
        assert_eq!(n.next_timeout(), Time::from_secs(60)); // the peer store sweep
        n.handle_timeout(Time::from_secs(14 * 60));
        assert!(replies(&mut n).is_empty());
        n.handle_timeout(Time::from_secs(15 * 60));
        let out = replies(&mut n);
        assert!(matches!(
            &out[0].1.body,
            Body::Query(Query {
                kind: QueryKind::FindNode { .. },
                ..
            })
        ));
        assert_eq!(out[0].0, addr(1));
    }

    proptest::proptest! {
        /// Valid `get`, `put` and `sample_infohashes` queries and replies with bytes flipped:
        /// the node answers or drops them, never panics, and its answers stay decodable.
        #[test]
        fn mutated_bep44_and_bep51_packets_never_panic(
            which in 0usize..4,
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..6),
        ) {
            let put = QueryKind::Put(krpc::PutRequest {
                token: vec![1; 8],
                value: b"d1:ai1e1:bl1:xee".to_vec(),
                mutable: Some(krpc::MutableItem { key: [3; 32], sig: [4; 64], seq: 5, salt: b"s".to_vec(), cas: Some(4) }),
            });
            let kinds = [
                QueryKind::Get { target: Id20([2; 20]), seq: Some(1) },
                put,
                QueryKind::SampleInfohashes { target: Id20([2; 20]) },
            ];
            let mut n = DhtNode::new(DhtConfig::default(), Time::ZERO, 1);
            let mut bytes = if which < 3 {
                query(Id20([1; 20]), kinds[which].clone(), false)
            } else {
                n.sample_infohashes(Time::ZERO, addr(1), Id20::ZERO).unwrap();
                let (_, q) = replies(&mut n).pop().unwrap();
                Msg {
                    tid: q.tid,
                    version: None,
                    read_only: false,
                    ip: None,
                    body: Body::Response(Response {
                        id: Id20([1; 20]),
                        samples: Some(vec![Id20([8; 20]); 30]),
                        num: Some(-1),
                        interval: Some(i64::MAX),
                        ..Response::default()
                    }),
                }
                .encode()
            };
            for (i, b) in flips {
                let len = bytes.len();
                bytes[i % len] = b;
            }
            n.handle_packet(Time::ZERO, addr(1), &bytes);
            while let Some((_, out)) = n.poll_transmit() {
                proptest::prop_assert!(out.len() <= krpc::MAX_PACKET);
                proptest::prop_assert!(decode(&out).is_ok());
            }
            while n.poll_event().is_some() {}
        }

        #[test]
        fn arbitrary_packets_never_panic_the_node(
            packets in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 1..20),
        ) {
            let mut n = DhtNode::new(DhtConfig::default(), Time::ZERO, 1);
            n.bootstrap(Time::ZERO, &[addr(1)]).unwrap();
            for (i, p) in packets.iter().enumerate() {
                n.handle_packet(Time::from_millis(i as u64), addr(1), p);
                while n.poll_transmit().is_some() {}
            }
            n.handle_timeout(Time::from_secs(3600));
        }
    }
}
