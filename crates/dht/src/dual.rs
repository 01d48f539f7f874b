//! A dual-stack DHT (BEP 32): one [`DhtNode`] per address family, each with its own routing
//! table, peer store and tokens, as libtorrent runs one node per listen socket. Still sans-IO:
//! datagrams and time in, datagrams (to send from the socket of their family), events and the
//! next deadline out.
//!
//! What the pair adds to two independent nodes:
//! * a query with `want` is answered with the other family's nodes from the other table;
//! * bootstrap lookups ask for both families, and the nodes of the other family they bring are
//!   handed to the other node, which pings them (BEP 32 "leaking" between the two DHTs);
//! * `get_peers`, `announce` and `find_node` run on every family that has nodes, and report as
//!   one lookup: peers of both families, then one `LookupDone` or `AnnounceDone`.
//!
//! ```
//! use shoal_core::{Id20, Time};
//! use shoal_dht::dual::DualNode;
//! use shoal_dht::{DhtConfig, Event, Family};
//!
//! let v6 = DhtConfig { family: Family::V6, ..DhtConfig::default() };
//! let mut a = DualNode::new(Some(DhtConfig::default()), Some(v6.clone()), Time::ZERO, 1, None);
//! let mut b = DualNode::new(None, Some(v6), Time::ZERO, 2, None);
//! let (a6, b6) = ("[2001:db8::1]:6881".parse().unwrap(), "[2001:db8::2]:6881".parse().unwrap());
//! b.bootstrap(Time::ZERO, &[a6]).unwrap();
//! let announce = b.announce(Time::ZERO, Id20([7; 20]), Some(6881)).unwrap();
//! let now = Time::from_millis(10);
//! loop {
//!     let mut moved = false;
//!     while let Some((_to, bytes)) = b.poll_transmit() {
//!         a.handle_packet(now, b6, &bytes);
//!         moved = true;
//!     }
//!     while let Some((_to, bytes)) = a.poll_transmit() {
//!         b.handle_packet(now, a6, &bytes);
//!         moved = true;
//!     }
//!     if !moved {
//!         break;
//!     }
//! }
//! let done = std::iter::from_fn(|| b.poll_event())
//!     .any(|e| matches!(e, Event::AnnounceDone { id, acked: 1, .. } if id == announce));
//! assert!(done);
//! // The peer is stored by the IPv6 node only.
//! assert_eq!(a.node(Family::V6).unwrap().peer_store().len(), 1);
//! assert_eq!(a.node(Family::V4).unwrap().peer_store().len(), 0);
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use shoal_core::{CompactNode, Id20, Time};

use crate::krpc::Family;
use crate::lookup::LookupStats;
use crate::node::{DhtConfig, DhtError, DhtNode, Event, LookupId, NodeStats};
use crate::routing_table::RoutingTable;
use crate::state::DhtState;

/// Nodes of the other family pinged per call of the pair (the rest wait in the node's
/// bounded queue): leaking must not turn into a burst of queries.
const FOREIGN_PINGS_PER_STEP: usize = 8;

/// A lookup of the pair: the lookups it runs on each family, and what they reported so far.
#[derive(Debug)]
struct Joint {
    /// Lookups still running.
    left: usize,
    closest: Vec<CompactNode>,
    stats: LookupStats,
    acked: usize,
    announce: bool,
    target: Id20,
}

/// Two DHT nodes, one per address family (either may be absent).
pub struct DualNode {
    v4: Option<DhtNode>,
    v6: Option<DhtNode>,
    next_id: u64,
    joints: HashMap<LookupId, Joint>,
    /// A family's lookup id to the pair's.
    parts: HashMap<(Family, LookupId), LookupId>,
    events: VecDeque<Event>,
    /// Which node's datagrams go out first next time (fairness).
    v6_first: bool,
}

impl std::fmt::Debug for DualNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DualNode")
            .field("v4", &self.v4.as_ref().map(|n| n.id()))
            .field("v6", &self.v6.as_ref().map(|n| n.id()))
            .finish()
    }
}

fn sum_stats(a: LookupStats, b: LookupStats) -> LookupStats {
    LookupStats {
        queries: a.queries + b.queries,
        responses: a.responses + b.responses,
        slow: a.slow + b.slow,
        failures: a.failures + b.failures,
        hops: a.hops.max(b.hops),
    }
}

impl DualNode {
    /// Nodes for the families whose config is given (their `family` is set to match), restored
    /// from `state` if given. Without state both nodes share one id, as BEP 32 recommends ("a
    /// node should use the same node id in both tables"), unless the IPv6 config names an
    /// external IPv6 address: then the IPv6 node takes a BEP 42 id for it.
    pub fn new(
        v4: Option<DhtConfig>,
        v6: Option<DhtConfig>,
        now: Time,
        seed: u64,
        state: Option<&DhtState>,
    ) -> DualNode {
        let make = |config: DhtConfig, family: Family, seed: u64, shared: Option<Id20>| {
            let config = DhtConfig { family, ..config };
            match (state, shared) {
                (Some(s), _) => DhtNode::from_state(config, now, seed, s),
                (None, Some(id)) if config.external_ip.is_none() => {
                    DhtNode::with_id(config, now, seed, id)
                }
                (None, _) => DhtNode::new(config, now, seed),
            }
        };
        let v4 = v4.map(|c| make(c, Family::V4, seed, None));
        let v6 = v6.map(|c| {
            make(
                c,
                Family::V6,
                seed ^ 0x0006_0006_0006_0006,
                v4.as_ref().map(DhtNode::id),
            )
        });
        let mut pair = DualNode {
            v4,
            v6,
            next_id: 1,
            joints: HashMap::new(),
            parts: HashMap::new(),
            events: VecDeque::new(),
            v6_first: false,
        };
        let dual = pair.v4.is_some() && pair.v6.is_some();
        for n in pair.nodes_mut() {
            n.set_dual_stack(dual);
        }
        pair
    }

    /// The node of `family`, if it runs.
    pub fn node(&self, family: Family) -> Option<&DhtNode> {
        match family {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
    }

    fn node_mut(&mut self, family: Family) -> Option<&mut DhtNode> {
        match family {
            Family::V4 => self.v4.as_mut(),
            Family::V6 => self.v6.as_mut(),
        }
    }

    fn nodes(&self) -> impl Iterator<Item = &DhtNode> {
        self.v4.iter().chain(self.v6.iter())
    }

    fn nodes_mut(&mut self) -> impl Iterator<Item = &mut DhtNode> {
        self.v4.iter_mut().chain(self.v6.iter_mut())
    }

    /// The families that run.
    pub fn families(&self) -> Vec<Family> {
        self.nodes().map(DhtNode::family).collect()
    }

    /// The node id: the IPv4 node's, or the IPv6 node's when only it runs.
    pub fn id(&self) -> Id20 {
        self.nodes().next().map_or(Id20::ZERO, DhtNode::id)
    }

    /// The routing table of `family`, if that node runs.
    pub fn table(&self, family: Family) -> Option<&RoutingTable> {
        self.node(family).map(DhtNode::table)
    }

    /// Counters of both nodes added up.
    pub fn stats(&self) -> NodeStats {
        self.nodes().fold(NodeStats::default(), |a, n| {
            let b = n.stats();
            NodeStats {
                malformed: a.malformed + b.malformed,
                rate_limited: a.rate_limited + b.rate_limited,
                answered: a.answered + b.answered,
                bep42_violations: a.bep42_violations + b.bep42_violations,
                unmatched_replies: a.unmatched_replies + b.unmatched_replies,
                queries_sent: a.queries_sent + b.queries_sent,
                timeouts: a.timeouts + b.timeouts,
            }
        })
    }

    /// Lookups running in both nodes (the pair's own lookups count once per family).
    pub fn lookups_running(&self) -> usize {
        self.nodes().map(DhtNode::lookups_running).sum()
    }

    /// Our external IP of `family` as the DHT reports it (BEP 42 `ip`).
    pub fn external_ip(&self, family: Family) -> Option<IpAddr> {
        self.node(family).and_then(DhtNode::external_ip)
    }

    /// The ids and good nodes of both nodes, to save.
    pub fn save_state(&self, now: Time) -> DhtState {
        let id = self.id();
        let id6 = self.v6.as_ref().map(DhtNode::id).filter(|i| *i != id);
        let mut nodes = Vec::new();
        for n in self.nodes() {
            nodes.extend(n.good_nodes(now));
        }
        DhtState { id, id6, nodes }
    }

    /// The next datagram to send, from the socket of the destination's family.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.v6_first = !self.v6_first;
        let order = if self.v6_first {
            [Family::V6, Family::V4]
        } else {
            [Family::V4, Family::V6]
        };
        for f in order {
            if let Some(out) = self.node_mut(f).and_then(DhtNode::poll_transmit) {
                return Some(out);
            }
        }
        None
    }

    /// The next event. Lookups started through the pair report under the pair's ids.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events.is_empty() {
            self.collect();
        }
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next.
    pub fn next_timeout(&self) -> Time {
        self.nodes()
            .map(DhtNode::next_timeout)
            .min()
            .unwrap_or(Time::from_secs(3600))
    }

    /// Feeds one received datagram to the node of its family (a datagram of a family that does
    /// not run is dropped).
    pub fn handle_packet(&mut self, now: Time, from: SocketAddr, bytes: &[u8]) {
        match Family::of(&from) {
            Family::V4 => {
                if let Some(n) = self.v4.as_mut() {
                    n.handle_packet_with(now, from, bytes, self.v6.as_ref().map(DhtNode::table));
                }
            }
            Family::V6 => {
                if let Some(n) = self.v6.as_mut() {
                    n.handle_packet_with(now, from, bytes, self.v4.as_ref().map(DhtNode::table));
                }
            }
        }
        self.leak(now);
        self.collect();
    }

    /// Advances both nodes' timers.
    pub fn handle_timeout(&mut self, now: Time) {
        for n in self.nodes_mut() {
            if n.next_timeout() <= now {
                n.handle_timeout(now);
            }
        }
        self.leak(now);
        self.collect();
    }

    /// Hands the nodes of the other family that replies brought to that family's node, which
    /// pings them (they enter its table when they answer).
    fn leak(&mut self, now: Time) {
        let (Some(v4), Some(v6)) = (self.v4.as_mut(), self.v6.as_mut()) else {
            return;
        };
        for _ in 0..FOREIGN_PINGS_PER_STEP {
            let Some(n) = v4.poll_foreign_node() else {
                break;
            };
            if v6.table().get(&n.id).is_none() {
                v6.add_node(now, n.addr);
            }
        }
        for _ in 0..FOREIGN_PINGS_PER_STEP {
            let Some(n) = v6.poll_foreign_node() else {
                break;
            };
            if v4.table().get(&n.id).is_none() {
                v4.add_node(now, n.addr);
            }
        }
    }

    /// Moves the nodes' events to the pair's queue, merging the parts of joint lookups.
    fn collect(&mut self) {
        for f in [Family::V4, Family::V6] {
            while let Some(e) = self.node_mut(f).and_then(DhtNode::poll_event) {
                self.translate(f, e);
            }
        }
    }

    fn translate(&mut self, family: Family, e: Event) {
        let part = |id: LookupId| (family, id);
        match e {
            Event::Peers {
                id,
                info_hash,
                peers,
            } => {
                let id = self.parts.get(&part(id)).copied().unwrap_or(id);
                self.events.push_back(Event::Peers {
                    id,
                    info_hash,
                    peers,
                });
            }
            Event::LookupDone {
                id,
                target,
                closest,
                stats,
            } => match self.parts.remove(&part(id)) {
                Some(jid) => {
                    if let Some(j) = self.joints.get_mut(&jid) {
                        j.left = j.left.saturating_sub(1);
                        j.closest.extend(closest);
                        j.stats = sum_stats(j.stats, stats);
                    }
                    self.finish(jid);
                }
                None => self.events.push_back(Event::LookupDone {
                    id,
                    target,
                    closest,
                    stats,
                }),
            },
            Event::AnnounceDone {
                id,
                info_hash,
                acked,
                stats,
            } => match self.parts.remove(&part(id)) {
                Some(jid) => {
                    if let Some(j) = self.joints.get_mut(&jid) {
                        j.left = j.left.saturating_sub(1);
                        j.acked += acked;
                        j.stats = sum_stats(j.stats, stats);
                    }
                    self.finish(jid);
                }
                None => self.events.push_back(Event::AnnounceDone {
                    id,
                    info_hash,
                    acked,
                    stats,
                }),
            },
            Event::Samples { id, from, reply } => {
                let id = self.parts.remove(&part(id)).unwrap_or(id);
                self.events.push_back(Event::Samples { id, from, reply });
            }
            Event::SampleFailed { id, addr } => {
                let id = self.parts.remove(&part(id)).unwrap_or(id);
                self.events.push_back(Event::SampleFailed { id, addr });
            }
            other => self.events.push_back(other),
        }
    }

    fn finish(&mut self, jid: LookupId) {
        if self.joints.get(&jid).is_none_or(|j| j.left > 0) {
            return;
        }
        let Some(mut j) = self.joints.remove(&jid) else {
            return;
        };
        if j.announce {
            self.events.push_back(Event::AnnounceDone {
                id: jid,
                info_hash: j.target,
                acked: j.acked,
                stats: j.stats,
            });
        } else {
            let target = j.target;
            j.closest.sort_by_key(|n| target.distance(&n.id));
            self.events.push_back(Event::LookupDone {
                id: jid,
                target,
                closest: j.closest,
                stats: j.stats,
            });
        }
    }

    fn new_id(&mut self) -> LookupId {
        let id = LookupId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Starts `start` on every family that can run it; one pair id for all of them. Fails only
    /// when no family could start (the first error is returned).
    fn joint(
        &mut self,
        now: Time,
        target: Id20,
        announce: bool,
        mut start: impl FnMut(&mut DhtNode, Time) -> Result<LookupId, DhtError>,
    ) -> Result<LookupId, DhtError> {
        let jid = self.new_id();
        let mut started = 0;
        let mut first_err = None;
        for f in [Family::V4, Family::V6] {
            let Some(n) = self.node_mut(f) else {
                continue;
            };
            match start(n, now) {
                Ok(id) => {
                    self.parts.insert((f, id), jid);
                    started += 1;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if started == 0 {
            return Err(first_err.unwrap_or(DhtError::NoNodes));
        }
        self.joints.insert(
            jid,
            Joint {
                left: started,
                closest: Vec::new(),
                stats: LookupStats::default(),
                acked: 0,
                announce,
                target,
            },
        );
        self.leak(now);
        self.collect();
        Ok(jid)
    }

    /// Joins both DHTs: each node bootstraps through the addresses of its family (and its saved
    /// nodes); a node with none still fills up from the other's bootstrap (`want` both).
    pub fn bootstrap(&mut self, now: Time, addrs: &[SocketAddr]) -> Result<LookupId, DhtError> {
        let own = self.id();
        self.joint(now, own, false, |n, now| n.bootstrap(now, addrs))
    }

    /// Looks up peers on both families; peers of either arrive as [`Event::Peers`], then one
    /// [`Event::LookupDone`].
    pub fn get_peers(&mut self, now: Time, info_hash: Id20) -> Result<LookupId, DhtError> {
        self.joint(now, info_hash, false, |n, now| n.get_peers(now, info_hash))
    }

    /// Announces on both families (each node announces our address of its family, BEP 32);
    /// one [`Event::AnnounceDone`] counts the acks of both.
    pub fn announce(
        &mut self,
        now: Time,
        info_hash: Id20,
        port: Option<u16>,
    ) -> Result<LookupId, DhtError> {
        self.joint(now, info_hash, true, |n, now| {
            n.announce(now, info_hash, port)
        })
    }

    /// Looks up the nodes closest to `target` in both DHTs.
    pub fn find_node(&mut self, now: Time, target: Id20) -> Result<LookupId, DhtError> {
        self.joint(now, target, false, |n, now| n.find_node(now, target))
    }

    /// Pings `addr` from the node of its family.
    pub fn ping(&mut self, now: Time, addr: SocketAddr) -> Result<(), DhtError> {
        let f = Family::of(&addr);
        let r = self
            .node_mut(f)
            .ok_or(DhtError::FamilyNotRunning(f))?
            .ping(now, addr);
        self.collect();
        r
    }

    /// Sends a BEP 51 `sample_infohashes` query from the node of `addr`'s family.
    pub fn sample_infohashes(
        &mut self,
        now: Time,
        addr: SocketAddr,
        target: Id20,
    ) -> Result<LookupId, DhtError> {
        let f = Family::of(&addr);
        let id = self
            .node_mut(f)
            .ok_or(DhtError::FamilyNotRunning(f))?
            .sample_infohashes(now, addr, target)?;
        let jid = self.new_id();
        self.parts.insert((f, id), jid);
        Ok(jid)
    }

    /// Adds a node of either family (it is pinged by the node of its family, if that runs).
    pub fn add_node(&mut self, now: Time, addr: SocketAddr) {
        if let Some(n) = self.node_mut(Family::of(&addr)) {
            n.add_node(now, addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::krpc::{decode, Body, Msg, Query, QueryKind, Response, Want};

    fn v4(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n], 6881))
    }

    fn v6(n: u8) -> SocketAddr {
        format!("[2001:db8::{n}]:6881").parse().unwrap()
    }

    fn cfg(family: Family) -> DhtConfig {
        DhtConfig {
            family,
            ..DhtConfig::default()
        }
    }

    fn pair() -> DualNode {
        DualNode::new(
            Some(cfg(Family::V4)),
            Some(cfg(Family::V6)),
            Time::ZERO,
            1,
            None,
        )
    }

    fn out(n: &mut DualNode) -> Vec<(SocketAddr, Msg)> {
        std::iter::from_fn(|| n.poll_transmit())
            .map(|(a, b)| (a, decode(&b).unwrap()))
            .collect()
    }

    fn query(id: u8, kind: QueryKind, want: Option<Want>) -> Vec<u8> {
        Msg {
            tid: b"qq".to_vec(),
            version: None,
            read_only: false,
            ip: None,
            body: Body::Query(Query {
                id: Id20([id; 20]),
                kind,
                want,
            }),
        }
        .encode()
    }

    fn reply_to(q: &Msg, id: u8, nodes: Vec<CompactNode>, nodes6: Vec<CompactNode>) -> Vec<u8> {
        Msg {
            tid: q.tid.clone(),
            version: None,
            read_only: false,
            ip: None,
            body: Body::Response(Response {
                id: Id20([id; 20]),
                nodes,
                nodes6,
                ..Response::default()
            }),
        }
        .encode()
    }

    /// Puts `addr` in the table of its family: a query from it, then its answer to our ping.
    fn learn(n: &mut DualNode, id: u8, addr: SocketAddr) {
        n.handle_packet(Time::ZERO, addr, &query(id, QueryKind::Ping, None));
        for (to, m) in out(n) {
            if matches!(m.body, Body::Query(_)) {
                n.handle_packet(Time::ZERO, to, &reply_to(&m, id, vec![], vec![]));
            }
        }
    }

    #[test]
    fn each_family_has_its_own_table_and_the_same_id() {
        let mut n = pair();
        learn(&mut n, 1, v4(1));
        learn(&mut n, 2, v6(2));
        learn(&mut n, 3, v6(3));
        assert_eq!(n.table(Family::V4).unwrap().len(), 1);
        assert_eq!(n.table(Family::V6).unwrap().len(), 2);
        assert!(n
            .table(Family::V6)
            .unwrap()
            .entries()
            .all(|e| e.node.addr.is_ipv6()));
        assert_eq!(
            n.node(Family::V4).unwrap().id(),
            n.node(Family::V6).unwrap().id()
        );
        // Packets of a family that does not run are dropped.
        let mut only4 = DualNode::new(Some(cfg(Family::V4)), None, Time::ZERO, 1, None);
        only4.handle_packet(Time::ZERO, v6(9), &query(9, QueryKind::Ping, None));
        assert!(out(&mut only4).is_empty());
        assert_eq!(
            only4.ping(Time::ZERO, v6(9)),
            Err(DhtError::FamilyNotRunning(Family::V6))
        );
    }

    #[test]
    fn answers_follow_the_query_family_and_want() {
        let mut n = pair();
        learn(&mut n, 1, v4(1));
        learn(&mut n, 2, v6(2));
        let target = QueryKind::FindNode {
            target: Id20([0; 20]),
        };
        let ask = |n: &mut DualNode, from: SocketAddr, want| {
            n.handle_packet(Time::ZERO, from, &query(9, target.clone(), want));
            let m = out(n).into_iter().find(|(_, m)| m.tid == b"qq").unwrap();
            assert_eq!(m.0, from);
            let Body::Response(r) = m.1.body else {
                panic!()
            };
            (r.nodes.len(), r.nodes6.len())
        };
        // No want: the family of the query.
        assert_eq!(ask(&mut n, v4(7), None), (1, 0));
        assert_eq!(ask(&mut n, v6(7), None), (0, 1));
        // want n6 over IPv4, n4 over IPv6, both.
        assert_eq!(ask(&mut n, v4(7), Some(Want::only(Family::V6))), (0, 1));
        assert_eq!(ask(&mut n, v6(7), Some(Want::only(Family::V4))), (1, 0));
        assert_eq!(ask(&mut n, v4(7), Some(Want::both())), (1, 1));
        assert_eq!(ask(&mut n, v6(7), Some(Want::default())), (0, 0));
        // A single-stack node cannot give the other family.
        let mut only6 = DualNode::new(None, Some(cfg(Family::V6)), Time::ZERO, 1, None);
        learn(&mut only6, 2, v6(2));
        assert_eq!(ask(&mut only6, v6(7), Some(Want::both())), (0, 1));
    }

    #[test]
    fn values_are_of_the_query_family() {
        let mut n = pair();
        let h = Id20([5; 20]);
        let get_peers = QueryKind::GetPeers { info_hash: h };
        for from in [v4(1), v6(1)] {
            n.handle_packet(Time::ZERO, from, &query(1, get_peers.clone(), None));
            let (_, m) = out(&mut n)
                .into_iter()
                .find(|(_, m)| m.tid == b"qq")
                .unwrap();
            let Body::Response(r) = m.body else { panic!() };
            let ann = QueryKind::AnnouncePeer {
                info_hash: h,
                port: 7000,
                implied_port: false,
                token: r.token.unwrap(),
            };
            n.handle_packet(Time::ZERO, from, &query(1, ann, None));
            out(&mut n);
        }
        for (from, want) in [(v4(3), v4(1)), (v6(3), v6(1))] {
            n.handle_packet(Time::ZERO, from, &query(3, get_peers.clone(), None));
            let (_, m) = out(&mut n)
                .into_iter()
                .find(|(_, m)| m.tid == b"qq")
                .unwrap();
            let Body::Response(r) = m.body else { panic!() };
            assert_eq!(r.values, vec![SocketAddr::new(want.ip(), 7000)]);
        }
    }

    #[test]
    fn bootstrap_asks_both_families_and_leaks_nodes_across() {
        let mut n = pair();
        // Only an IPv4 router is known.
        let id = n.bootstrap(Time::ZERO, &[v4(1)]).unwrap();
        let sent = out(&mut n);
        assert_eq!(sent.len(), 1);
        let (to, q) = &sent[0];
        assert_eq!(*to, v4(1));
        let Body::Query(query) = &q.body else {
            panic!()
        };
        assert_eq!(query.want, Some(Want::both()));
        // Its answer carries IPv6 nodes: the IPv6 node pings them.
        let six = CompactNode {
            id: Id20([0x66; 20]),
            addr: v6(6),
        };
        n.handle_packet(Time::ZERO, v4(1), &reply_to(q, 1, vec![], vec![six]));
        let sent = out(&mut n);
        let ping = sent
            .iter()
            .find(|(a, m)| {
                *a == v6(6) && matches!(&m.body, Body::Query(q) if q.kind == QueryKind::Ping)
            })
            .expect("the IPv6 node pings the leaked node");
        n.handle_packet(Time::ZERO, v6(6), &reply_to(&ping.1, 0x66, vec![], vec![]));
        assert_eq!(n.table(Family::V6).unwrap().len(), 1);
        // The bootstrap reports once, as the pair's lookup.
        let done: Vec<Event> = std::iter::from_fn(|| n.poll_event()).collect();
        assert!(done
            .iter()
            .any(|e| matches!(e, Event::LookupDone { id: d, .. } if *d == id)));
        // In steady state a lookup asks for its own family only.
        n.get_peers(Time::ZERO, Id20([1; 20])).unwrap();
        for (a, m) in out(&mut n) {
            let Body::Query(q) = m.body else { continue };
            assert_eq!(q.want, Some(Want::only(Family::of(&a))));
        }
    }

    #[test]
    fn joint_lookups_merge_peers_of_both_families() {
        let mut n = pair();
        learn(&mut n, 1, v4(1));
        learn(&mut n, 2, v6(2));
        let h = Id20([3; 20]);
        let id = n.get_peers(Time::ZERO, h).unwrap();
        let sent = out(&mut n);
        assert_eq!(sent.len(), 2);
        let peer4: SocketAddr = "10.9.9.9:1".parse().unwrap();
        let peer6: SocketAddr = "[2001:db8::99]:1".parse().unwrap();
        for (to, q) in &sent {
            let id = if to.is_ipv4() { 1 } else { 2 };
            let r = Msg {
                tid: q.tid.clone(),
                version: None,
                read_only: false,
                ip: None,
                body: Body::Response(Response {
                    id: Id20([id; 20]),
                    values: vec![if to.is_ipv4() { peer4 } else { peer6 }],
                    token: Some(b"t".to_vec()),
                    ..Response::default()
                }),
            };
            n.handle_packet(Time::ZERO, *to, &r.encode());
        }
        let events: Vec<Event> = std::iter::from_fn(|| n.poll_event()).collect();
        let mut peers: Vec<SocketAddr> = events
            .iter()
            .filter_map(|e| match e {
                Event::Peers { id: p, peers, .. } if *p == id => Some(peers.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        peers.sort();
        assert_eq!(peers, vec![peer4, peer6]);
        let done: Vec<&Event> = events
            .iter()
            .filter(|e| matches!(e, Event::LookupDone { .. }))
            .collect();
        assert_eq!(done.len(), 1);
        let Event::LookupDone { id: d, closest, .. } = done[0] else {
            panic!()
        };
        assert_eq!(*d, id);
        assert_eq!(closest.len(), 2);
    }

    #[test]
    fn a_full_ipv6_get_peers_answer_fits_the_packet_limit() {
        let mut n = pair();
        let h = Id20([4; 20]);
        for i in 1..=8u8 {
            learn(&mut n, i, v4(i));
            learn(&mut n, 100 + i, v6(100 + i));
        }
        // 60 IPv6 peers announce (each from its own address, with the token it got).
        for i in 0..60u16 {
            let from: SocketAddr = format!("[2001:db8:1::{i:x}]:6881").parse().unwrap();
            n.handle_packet(
                Time::ZERO,
                from,
                &query(200, QueryKind::GetPeers { info_hash: h }, None),
            );
            let (_, m) = out(&mut n)
                .into_iter()
                .find(|(_, m)| m.tid == b"qq")
                .unwrap();
            let Body::Response(r) = m.body else { panic!() };
            let ann = QueryKind::AnnouncePeer {
                info_hash: h,
                port: 7000,
                implied_port: false,
                token: r.token.unwrap(),
            };
            n.handle_packet(Time::ZERO, from, &query(200, ann, None));
            out(&mut n);
        }
        n.handle_packet(
            Time::ZERO,
            v6(99),
            &query(99, QueryKind::GetPeers { info_hash: h }, Some(Want::both())),
        );
        let (_, bytes) = std::iter::from_fn(|| n.poll_transmit())
            .find(|(_, b)| decode(b).is_ok_and(|m| m.tid == b"qq"))
            .unwrap();
        assert!(bytes.len() <= crate::krpc::MAX_PACKET, "{}", bytes.len());
        let Body::Response(r) = decode(&bytes).unwrap().body else {
            panic!()
        };
        // The IPv4 nodes gave way first; our own family's nodes and some peers stay.
        assert!(r.nodes.is_empty());
        assert_eq!(r.nodes6.len(), 8);
        assert!(!r.values.is_empty() && r.values.iter().all(|p| p.is_ipv6()));
    }

    proptest::proptest! {
        /// Arbitrary packets from either family, after a bootstrap and a lookup: no panic, and
        /// every datagram out decodes, fits, and goes to the family of the node that answers.
        #[test]
        fn arbitrary_packets_of_both_families_never_panic(
            packets in proptest::collection::vec(
                (proptest::prelude::any::<bool>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)),
                1..16,
            ),
        ) {
            let mut n = pair();
            n.bootstrap(Time::ZERO, &[v4(1), v6(1)]).unwrap();
            let _ = n.get_peers(Time::ZERO, Id20([1; 20]));
            for (i, (six, p)) in packets.iter().enumerate() {
                let from = if *six { v6(1) } else { v4(1) };
                n.handle_packet(Time::from_millis(i as u64), from, p);
                while let Some((to, b)) = n.poll_transmit() {
                    proptest::prop_assert!(b.len() <= crate::krpc::MAX_PACKET);
                    proptest::prop_assert!(decode(&b).is_ok());
                    proptest::prop_assert!(to == v4(1) || to == v6(1));
                }
            }
            n.handle_timeout(Time::from_secs(3600));
            while n.poll_event().is_some() {}
        }
    }

    #[test]
    fn state_keeps_both_tables() {
        let mut n = pair();
        learn(&mut n, 1, v4(1));
        learn(&mut n, 2, v6(2));
        let s = n.save_state(Time::ZERO);
        assert_eq!(s.nodes_of(Family::V4).count(), 1);
        assert_eq!(s.nodes_of(Family::V6).count(), 1);
        let back = DhtState::decode(&s.encode()).unwrap();
        let mut again = DualNode::new(
            Some(cfg(Family::V4)),
            Some(cfg(Family::V6)),
            Time::ZERO,
            9,
            Some(&back),
        );
        assert_eq!(again.id(), n.id());
        assert_eq!(again.node(Family::V6).unwrap().id(), n.id());
        // The saved nodes bootstrap each family's node.
        again.bootstrap(Time::ZERO, &[]).unwrap();
        let mut to: Vec<SocketAddr> = out(&mut again).into_iter().map(|(a, _)| a).collect();
        to.sort();
        assert_eq!(to, vec![v4(1), v6(2)]);
    }

    #[test]
    fn a_bep42_ipv6_id_when_the_external_ipv6_address_is_known() {
        let ip6: IpAddr = "2001:db8:1234::5".parse().unwrap();
        let n = DualNode::new(
            Some(cfg(Family::V4)),
            Some(DhtConfig {
                external_ip: Some(ip6),
                ..cfg(Family::V6)
            }),
            Time::ZERO,
            3,
            None,
        );
        let id6 = n.node(Family::V6).unwrap().id();
        assert!(crate::bep42::is_valid_id(&id6, ip6));
        assert_ne!(id6, n.id());
        let s = n.save_state(Time::ZERO);
        assert_eq!(s.id6, Some(id6));
        assert_eq!(
            DhtState::decode(&s.encode()).unwrap().id_for(Family::V6),
            id6
        );
    }
}
