//! Iterative lookups (Kademlia, BEP 5): `find_node` and `get_peers` toward a target with alpha
//! parallel queries, ending when the k closest nodes seen have all answered.
//!
//! A query that passes its soft timeout no longer counts toward alpha nor toward the k closest,
//! so the lookup widens to the next nodes; its late answer is still used. A failed node is
//! dropped from the candidate set.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

use shoal_core::{CompactNode, Id20};

use crate::krpc::Response;

/// Parallel queries per lookup (Kademlia's alpha; BEP 5 does not fix it, libtorrent uses 3).
pub const ALPHA: usize = 3;
/// Candidates kept per lookup; farther ones are dropped (bounded memory).
const MAX_CANDIDATES: usize = 256;
/// Peers collected per lookup.
const MAX_PEERS: usize = 2000;

/// Which query a lookup sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LookupKind {
    /// `find_node`: find the nodes closest to an id (bootstrap, bucket refresh).
    FindNode,
    /// `get_peers`: find peers for an info-hash and the tokens to announce with.
    GetPeers,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Fresh,
    InFlight,
    /// Soft timeout passed; still outstanding.
    Slow,
    Answered,
    Failed,
}

#[derive(Clone, Debug)]
struct Candidate {
    node: CompactNode,
    state: State,
    token: Option<Vec<u8>>,
    /// Hop at which the node was queried: 1 for nodes from our own table.
    depth: u32,
}

/// A node to query: its address and, unless it is a bootstrap address, its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryTarget {
    /// Where to send the query.
    pub addr: SocketAddr,
    /// The node's id, when known.
    pub id: Option<Id20>,
}

/// Counters of one lookup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Queries sent.
    pub queries: u32,
    /// Responses used.
    pub responses: u32,
    /// Queries that passed their soft timeout (the lookup widened past them).
    pub slow: u32,
    /// Queries that failed: hard timeout or error reply.
    pub failures: u32,
    /// The deepest hop among the k closest nodes that answered.
    pub hops: u32,
}

/// One iterative lookup.
#[derive(Clone, Debug)]
pub struct Lookup {
    kind: LookupKind,
    target: Id20,
    own_id: Id20,
    k: usize,
    alpha: usize,
    candidates: BTreeMap<Id20, Candidate>,
    seeds: Vec<SocketAddr>,
    seeds_in_flight: usize,
    peers: HashSet<SocketAddr>,
    stats: LookupStats,
}

impl Lookup {
    /// A lookup for `target`, starting from `known` nodes (our table's closest) and `seeds`
    /// (bootstrap addresses whose ids are unknown).
    pub fn new(
        kind: LookupKind,
        target: Id20,
        own_id: Id20,
        k: usize,
        known: &[CompactNode],
        seeds: &[SocketAddr],
    ) -> Self {
        let mut l = Lookup {
            kind,
            target,
            own_id,
            k,
            alpha: ALPHA,
            candidates: BTreeMap::new(),
            seeds: seeds.to_vec(),
            seeds_in_flight: 0,
            peers: HashSet::new(),
            stats: LookupStats::default(),
        };
        for n in known {
            l.add_candidate(*n, 1);
        }
        l
    }

    /// What kind of lookup this is.
    pub fn kind(&self) -> LookupKind {
        self.kind
    }

    /// The target id or info-hash.
    pub fn target(&self) -> Id20 {
        self.target
    }

    /// The counters so far.
    pub fn stats(&self) -> LookupStats {
        self.stats
    }

    /// Every peer collected so far.
    pub fn peers(&self) -> impl Iterator<Item = &SocketAddr> {
        self.peers.iter()
    }

    fn add_candidate(&mut self, node: CompactNode, depth: u32) {
        if node.id == self.own_id || node.addr.port() == 0 {
            return;
        }
        let key = self.target.distance(&node.id);
        if self.candidates.contains_key(&key) {
            return;
        }
        if self.candidates.len() >= MAX_CANDIDATES {
            match self.candidates.last_key_value() {
                Some((far, _)) if *far > key => {
                    let far = *far;
                    self.candidates.remove(&far);
                }
                _ => return,
            }
        }
        self.candidates.insert(
            key,
            Candidate {
                node,
                state: State::Fresh,
                token: None,
                depth,
            },
        );
    }

    /// The nodes to query now (at most alpha in flight, not counting slow ones); they are marked
    /// in flight.
    pub fn next_queries(&mut self) -> Vec<QueryTarget> {
        let mut out = Vec::new();
        // Bootstrap addresses first: they are all we have.
        while let Some(addr) = self.seeds.pop() {
            self.seeds_in_flight += 1;
            out.push(QueryTarget { addr, id: None });
        }
        let mut active = self.seeds_in_flight
            + self
                .candidates
                .values()
                .filter(|c| c.state == State::InFlight)
                .count();
        let mut considered = 0;
        for c in self.candidates.values_mut() {
            match c.state {
                State::Failed | State::Slow => continue,
                State::Answered | State::InFlight => {}
                State::Fresh => {
                    if active >= self.alpha {
                        break;
                    }
                    c.state = State::InFlight;
                    active += 1;
                    out.push(QueryTarget {
                        addr: c.node.addr,
                        id: Some(c.node.id),
                    });
                }
            }
            considered += 1;
            if considered >= self.k {
                break;
            }
        }
        self.stats.queries += out.len() as u32;
        out
    }

    /// True when the k closest live candidates have all answered and no bootstrap query is out.
    pub fn is_done(&self) -> bool {
        if self.seeds_in_flight > 0 || !self.seeds.is_empty() {
            return false;
        }
        self.candidates
            .values()
            .filter(|c| !matches!(c.state, State::Failed | State::Slow))
            .take(self.k)
            .all(|c| c.state == State::Answered)
    }

    fn find(&mut self, id: Option<Id20>) -> Option<&mut Candidate> {
        let key = self.target.distance(&id?);
        self.candidates.get_mut(&key)
    }

    /// Uses a response from `from` to a query sent to `expected` (`None` for a bootstrap
    /// address). Returns the peers not seen before.
    pub fn on_response(
        &mut self,
        from: SocketAddr,
        expected: Option<Id20>,
        resp: &Response,
    ) -> Vec<SocketAddr> {
        let depth = match self.find(expected) {
            Some(c) => {
                if c.state == State::Answered {
                    return Vec::new();
                }
                c.state = State::Answered;
                c.token = resp.token.clone();
                c.depth
            }
            None if expected.is_none() => {
                self.seeds_in_flight = self.seeds_in_flight.saturating_sub(1);
                // A bootstrap node: now we know its id.
                let node = CompactNode {
                    id: resp.id,
                    addr: from,
                };
                self.add_candidate(node, 1);
                if let Some(c) = self.find(Some(resp.id)) {
                    c.state = State::Answered;
                    c.token = resp.token.clone();
                }
                1
            }
            // A candidate dropped from the set meanwhile.
            None => return Vec::new(),
        };
        self.stats.responses += 1;
        let family_v4 = from.is_ipv4();
        let nodes = if family_v4 { &resp.nodes } else { &resp.nodes6 };
        for n in nodes {
            self.add_candidate(*n, depth + 1);
        }
        let mut fresh = Vec::new();
        if self.kind == LookupKind::GetPeers {
            for p in &resp.values {
                if self.peers.len() >= MAX_PEERS {
                    break;
                }
                if p.port() != 0 && self.peers.insert(*p) {
                    fresh.push(*p);
                }
            }
        }
        fresh
    }

    /// The soft timeout of a query passed: widen past it.
    pub fn on_soft_timeout(&mut self, expected: Option<Id20>) {
        if let Some(c) = self.find(expected) {
            if c.state == State::InFlight {
                c.state = State::Slow;
                self.stats.slow += 1;
            }
        }
    }

    /// A query failed (hard timeout or error reply).
    pub fn on_failure(&mut self, expected: Option<Id20>) {
        if expected.is_none() {
            self.seeds_in_flight = self.seeds_in_flight.saturating_sub(1);
            self.stats.failures += 1;
            return;
        }
        if let Some(c) = self.find(expected) {
            if matches!(c.state, State::InFlight | State::Slow) {
                c.state = State::Failed;
                self.stats.failures += 1;
            }
        }
    }

    /// The k closest nodes that answered, closest first, with the token each gave (if any).
    pub fn closest_answered(&self) -> Vec<(CompactNode, Option<Vec<u8>>)> {
        self.candidates
            .values()
            .filter(|c| c.state == State::Answered)
            .take(self.k)
            .map(|c| (c.node, c.token.clone()))
            .collect()
    }

    /// Finishes the counters: hops is the deepest hop among the k closest that answered.
    pub fn final_stats(&self) -> LookupStats {
        let mut s = self.stats;
        s.hops = self
            .candidates
            .values()
            .filter(|c| c.state == State::Answered)
            .take(self.k)
            .map(|c| c.depth)
            .max()
            .unwrap_or(0);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(b: u8) -> CompactNode {
        let mut id = [0u8; 20];
        id[0] = b;
        CompactNode {
            id: Id20(id),
            addr: SocketAddr::from(([10, 0, 0, b], 6881)),
        }
    }

    fn resp(id: Id20, nodes: Vec<CompactNode>, values: Vec<SocketAddr>) -> Response {
        Response {
            id,
            nodes,
            values,
            token: Some(b"tok".to_vec()),
            ..Response::default()
        }
    }

    #[test]
    fn converges_on_closest_and_collects_peers() {
        let target = Id20::ZERO;
        let own = Id20([0xff; 20]);
        let far: Vec<_> = (100..110).map(node).collect();
        let mut l = Lookup::new(LookupKind::GetPeers, target, own, 8, &far, &[]);
        let q = l.next_queries();
        assert_eq!(q.len(), 3);
        assert_eq!(q[0].id, Some(node(100).id));
        // The first answer brings closer nodes and a peer.
        let peer = SocketAddr::from(([1, 2, 3, 4], 5));
        let fresh = l.on_response(
            q[0].addr,
            q[0].id,
            &resp(node(100).id, (1..9).map(node).collect(), vec![peer, peer]),
        );
        assert_eq!(fresh, vec![peer]);
        // Answer everything until done.
        let mut rounds = 0;
        while !l.is_done() {
            let qs = l.next_queries();
            for t in qs {
                let id = t.id.unwrap();
                l.on_response(t.addr, t.id, &resp(id, vec![], vec![]));
            }
            // The two queries of round one are still open: answer them too.
            for t in &q[1..] {
                l.on_response(t.addr, t.id, &resp(t.id.unwrap(), vec![], vec![]));
            }
            rounds += 1;
            assert!(rounds < 20);
        }
        let closest: Vec<_> = l.closest_answered().into_iter().map(|(n, _)| n).collect();
        assert_eq!(closest, (1..9).map(node).collect::<Vec<_>>());
        assert!(l.closest_answered().iter().all(|(_, t)| t.is_some()));
        let s = l.final_stats();
        assert_eq!(s.hops, 2);
        assert!(s.queries >= 11);
    }

    #[test]
    fn soft_timeout_widens_and_failure_drops() {
        let mut l = Lookup::new(
            LookupKind::FindNode,
            Id20::ZERO,
            Id20([0xff; 20]),
            2,
            &[node(1), node(2), node(3), node(4)],
            &[],
        );
        let q = l.next_queries();
        // k = 2: only the two closest are needed so far.
        assert_eq!(q.len(), 2);
        l.on_soft_timeout(q[0].id);
        // Node 1 is slow: node 3 is queried in its place.
        let q2 = l.next_queries();
        assert_eq!(q2.len(), 1);
        assert_eq!(q2[0].id, Some(node(3).id));
        l.on_response(q[1].addr, q[1].id, &resp(node(2).id, vec![], vec![]));
        assert!(!l.is_done());
        l.on_response(q2[0].addr, q2[0].id, &resp(node(3).id, vec![], vec![]));
        assert!(l.is_done());
        // A late answer from the slow node is still used.
        l.on_response(q[0].addr, q[0].id, &resp(node(1).id, vec![], vec![]));
        let c: Vec<_> = l.closest_answered().into_iter().map(|(n, _)| n).collect();
        assert_eq!(c, vec![node(1), node(2)]);
        l.on_failure(Some(node(4).id));
        assert_eq!(l.stats().failures, 0);
    }

    #[test]
    fn bootstrap_seeds_and_empty_lookup() {
        let own = Id20([0xff; 20]);
        let mut l = Lookup::new(LookupKind::FindNode, own, own, 8, &[], &[]);
        assert!(l.next_queries().is_empty());
        assert!(l.is_done());
        let seed = node(9).addr;
        let mut l = Lookup::new(LookupKind::FindNode, own, own, 8, &[], &[seed]);
        let q = l.next_queries();
        assert_eq!(
            q,
            vec![QueryTarget {
                addr: seed,
                id: None
            }]
        );
        assert!(!l.is_done());
        l.on_response(seed, None, &resp(node(9).id, vec![node(5)], vec![]));
        let q = l.next_queries();
        assert_eq!(q.len(), 1);
        l.on_failure(q[0].id);
        assert!(l.is_done());
        assert_eq!(l.closest_answered().len(), 1);
    }
}
