//! A BEP 51 crawler as a sans-IO state machine: it decides whom to ask `sample_infohashes` and
//! when, and collects the info-hashes the answers carry. It sends nothing itself: the driver
//! takes queries from [`Crawler::poll_query`], sends them (through a [`crate::DhtNode`]), and
//! hands back [`Crawler::handle_reply`] or [`Crawler::handle_failure`]. New info-hashes come out
//! of [`Crawler::poll_event`].
//!
//! Walking the keyspace: every answer names nodes close to the query's target, and each query
//! takes a fresh random target, so the set of known nodes spreads over the whole id space; each
//! node is asked once, then again only after the `interval` it asked for. It is never an
//! abusive node: queries are paced by a budget per second in total, at most one per
//! [`CrawlerConfig::per_node_gap`] per node, and a bounded number in flight.
//!
//! ```
//! use shoal_core::{Id20, Time};
//! use shoal_dht::crawler::{CrawlEvent, Crawler, CrawlerConfig};
//! use shoal_dht::SampleReply;
//!
//! let mut c = Crawler::new(CrawlerConfig::default(), Time::ZERO, 7);
//! let node = "10.0.0.1:6881".parse().unwrap();
//! c.add_node(Time::ZERO, node);
//! let (to, _target) = c.poll_query(Time::ZERO).unwrap();
//! assert_eq!(to, node);
//! let reply = SampleReply {
//!     node_id: Id20([1; 20]),
//!     samples: Some(vec![Id20([9; 20])]),
//!     num: Some(1),
//!     interval: Some(600),
//!     nodes: vec![],
//! };
//! c.handle_reply(Time::from_millis(50), to, &reply);
//! assert_eq!(c.poll_event(), Some(CrawlEvent::NewHash(Id20([9; 20]))));
//! // The node asked for 10 minutes of peace.
//! assert_eq!(c.poll_query(Time::from_secs(599)), None);
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_core::{Id20, Time};

use crate::node::SampleReply;
use crate::sample::MAX_INTERVAL;

/// Settings of a [`Crawler`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrawlerConfig {
    /// Queries per second in total (a token bucket).
    pub queries_per_second: f64,
    /// Queries that may go out at once after a quiet spell.
    pub burst: f64,
    /// Least time between two queries to the same node, whatever `interval` it gave: the
    /// per-node budget.
    pub per_node_gap: Duration,
    /// Queries waiting for an answer at once.
    pub max_in_flight: usize,
    /// Most nodes remembered; beyond it, new nodes are ignored.
    pub max_nodes: usize,
    /// Most info-hashes remembered as seen; beyond it, new ones are still reported but not
    /// remembered (so they may be reported again).
    pub max_hashes: usize,
    /// Events waiting to be taken; beyond it, `SeenAgain` events are dropped.
    pub max_events: usize,
    /// Unanswered queries in a row before a node is forgotten.
    pub max_failures: u32,
    /// Nodes taken from one answer.
    pub nodes_per_reply: usize,
}

impl Default for CrawlerConfig {
    fn default() -> Self {
        CrawlerConfig {
            // 20 queries/s is ~30 KB/s both ways: a crawl of a 10-million node DHT takes
            // days, which is what BEP 51's 6-hour intervals expect of an indexer.
            queries_per_second: 20.0,
            burst: 20.0,
            per_node_gap: Duration::from_secs(60),
            max_in_flight: 32,
            max_nodes: 200_000,
            max_hashes: 2_000_000,
            max_events: 100_000,
            max_failures: 2,
            nodes_per_reply: 16,
        }
    }
}

/// What the crawler reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrawlEvent {
    /// An info-hash seen for the first time: look its peers and metadata up.
    NewHash(Id20),
    /// An info-hash seen again in another sample (its last-seen time moves).
    SeenAgain(Id20),
}

/// Counters of a crawl.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrawlStats {
    /// `sample_infohashes` queries sent.
    pub queries: u64,
    /// Answers received.
    pub replies: u64,
    /// Queries that got an error or no answer.
    pub failures: u64,
    /// Answers without `samples` (nodes that do not speak BEP 51).
    pub unsupported: u64,
    /// Samples received, repeats included.
    pub samples: u64,
    /// Distinct info-hashes seen.
    pub unique_hashes: u64,
    /// Nodes known.
    pub nodes: u64,
}

#[derive(Clone, Debug)]
struct NodeEntry {
    next_at: Time,
    failures: u32,
    in_flight: bool,
}

/// The crawler's state: known nodes and when each may be asked again, the hashes seen, the
/// query budget.
pub struct Crawler {
    config: CrawlerConfig,
    nodes: HashMap<SocketAddr, NodeEntry>,
    /// Nodes by the time they may be asked (and insertion order); stale entries are skipped.
    due: BinaryHeap<Reverse<(Time, u64, SocketAddr)>>,
    order: u64,
    in_flight: usize,
    tokens: f64,
    refilled: Time,
    seen: HashSet<Id20>,
    events: VecDeque<CrawlEvent>,
    /// Addresses never asked: our own node (other nodes list it in their answers).
    ignored: Vec<SocketAddr>,
    rng: StdRng,
    stats: CrawlStats,
}

impl Crawler {
    /// A crawler that knows no node yet; randomness (query targets) from `seed`.
    pub fn new(config: CrawlerConfig, now: Time, seed: u64) -> Self {
        Crawler {
            tokens: config.burst.max(1.0),
            config,
            nodes: HashMap::new(),
            due: BinaryHeap::new(),
            order: 0,
            in_flight: 0,
            refilled: now,
            seen: HashSet::new(),
            events: VecDeque::new(),
            ignored: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            stats: CrawlStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> CrawlStats {
        CrawlStats {
            nodes: self.nodes.len() as u64,
            unique_hashes: self.seen.len() as u64,
            ..self.stats
        }
    }

    /// Queries waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Never asks `addr` (the crawler's own DHT node, which other nodes hand out).
    pub fn ignore(&mut self, addr: SocketAddr) {
        self.nodes.remove(&addr);
        if !self.ignored.contains(&addr) && self.ignored.len() < 16 {
            self.ignored.push(addr);
        }
    }

    /// Learns of a node (a bootstrap address, or one from an answer); it is asked when its
    /// turn comes. Unusable addresses (port 0, unspecified, multicast, broadcast) are ignored.
    pub fn add_node(&mut self, now: Time, addr: SocketAddr) {
        if !usable(&addr) || self.nodes.contains_key(&addr) || self.ignored.contains(&addr) {
            return;
        }
        if self.nodes.len() >= self.config.max_nodes {
            return;
        }
        self.nodes.insert(
            addr,
            NodeEntry {
                next_at: now,
                failures: 0,
                in_flight: false,
            },
        );
        self.schedule(addr, now);
    }

    fn schedule(&mut self, addr: SocketAddr, at: Time) {
        self.order += 1;
        self.due.push(Reverse((at, self.order, addr)));
    }

    fn refill(&mut self, now: Time) {
        let dt = now.saturating_since(self.refilled).as_secs_f64();
        self.tokens =
            (self.tokens + dt * self.config.queries_per_second).min(self.config.burst.max(1.0));
        self.refilled = self.refilled.max(now);
    }

    /// Drops heap entries whose node is gone, busy or rescheduled.
    fn clean_top(&mut self) {
        while let Some(Reverse((at, _, addr))) = self.due.peek() {
            match self.nodes.get(addr) {
                Some(n) if !n.in_flight && n.next_at == *at => return,
                _ => {
                    self.due.pop();
                }
            }
        }
    }

    /// The next query to send, if the budget allows one now: the node's address and a target
    /// for the `nodes` it should return.
    pub fn poll_query(&mut self, now: Time) -> Option<(SocketAddr, Id20)> {
        if self.in_flight >= self.config.max_in_flight {
            return None;
        }
        self.refill(now);
        if self.tokens < 1.0 {
            return None;
        }
        self.clean_top();
        let Reverse((at, _, addr)) = *self.due.peek()?;
        if at > now {
            return None;
        }
        self.due.pop();
        let node = self.nodes.get_mut(&addr)?;
        node.in_flight = true;
        self.in_flight += 1;
        self.tokens -= 1.0;
        self.stats.queries += 1;
        Some((addr, Id20(self.rng.random())))
    }

    /// When [`poll_query`](Self::poll_query) may give a query next, if anything is waiting
    /// that only time releases (`None`: only answers or new nodes can).
    pub fn next_timeout(&mut self, now: Time) -> Option<Time> {
        if self.in_flight >= self.config.max_in_flight {
            return None;
        }
        self.clean_top();
        let Reverse((at, _, _)) = *self.due.peek()?;
        self.refill(now);
        let budget_at = if self.tokens >= 1.0 {
            now
        } else {
            let wait = (1.0 - self.tokens) / self.config.queries_per_second.max(1e-6);
            now + Duration::from_secs_f64(wait.min(3600.0))
        };
        Some(at.max(budget_at))
    }

    fn finish(&mut self, addr: &SocketAddr) -> bool {
        match self.nodes.get_mut(addr) {
            Some(n) if n.in_flight => {
                n.in_flight = false;
                self.in_flight -= 1;
                true
            }
            _ => false,
        }
    }

    /// Takes a node's answer to our query (the driver matched it to the query). Every field
    /// is untrusted: samples are deduplicated, `interval` is clamped to BEP 51's range, only so
    /// many nodes are taken.
    pub fn handle_reply(&mut self, now: Time, from: SocketAddr, reply: &SampleReply) {
        if !self.finish(&from) {
            return;
        }
        self.stats.replies += 1;
        let wait = match (&reply.samples, reply.interval) {
            // Not a BEP 51 node: its nodes are useful, asking again is not.
            (None, _) => {
                self.stats.unsupported += 1;
                MAX_INTERVAL
            }
            (Some(_), Some(i)) => {
                Duration::from_secs(i.clamp(0, MAX_INTERVAL.as_secs() as i64) as u64)
            }
            (Some(_), None) => MAX_INTERVAL,
        };
        let next = now + wait.max(self.config.per_node_gap);
        if let Some(n) = self.nodes.get_mut(&from) {
            n.failures = 0;
            n.next_at = next;
        }
        self.schedule(from, next);
        if let Some(samples) = &reply.samples {
            let mut here = HashSet::new();
            for h in samples {
                if !here.insert(*h) {
                    continue;
                }
                self.stats.samples += 1;
                self.note_hash(*h);
            }
        }
        for n in reply.nodes.iter().take(self.config.nodes_per_reply) {
            self.add_node(now, n.addr);
        }
    }

    fn note_hash(&mut self, h: Id20) {
        if self.seen.contains(&h) {
            if self.events.len() < self.config.max_events {
                self.events.push_back(CrawlEvent::SeenAgain(h));
            }
            return;
        }
        if self.seen.len() < self.config.max_hashes {
            self.seen.insert(h);
        }
        // New hashes are never dropped: the queue is bounded by the query budget instead
        // (each answer adds at most 75).
        self.events.push_back(CrawlEvent::NewHash(h));
    }

    /// A query got an error or no answer: the node is tried again later, and forgotten after
    /// [`CrawlerConfig::max_failures`] in a row.
    pub fn handle_failure(&mut self, now: Time, addr: SocketAddr) {
        if !self.finish(&addr) {
            return;
        }
        self.stats.failures += 1;
        let Some(n) = self.nodes.get_mut(&addr) else {
            return;
        };
        n.failures += 1;
        if n.failures >= self.config.max_failures {
            self.nodes.remove(&addr);
            return;
        }
        let next = now + self.config.per_node_gap;
        n.next_at = next;
        self.schedule(addr, next);
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<CrawlEvent> {
        self.events.pop_front()
    }
}

fn usable(addr: &SocketAddr) -> bool {
    if addr.port() == 0 {
        return false;
    }
    match addr.ip() {
        IpAddr::V4(ip) => !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast()),
        IpAddr::V6(ip) => !(ip.is_unspecified() || ip.is_multicast()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::CompactNode;

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 6881))
    }

    fn reply(samples: Option<Vec<Id20>>, interval: Option<i64>, nodes: &[u16]) -> SampleReply {
        SampleReply {
            node_id: Id20([1; 20]),
            samples,
            num: None,
            interval,
            nodes: nodes
                .iter()
                .map(|i| CompactNode {
                    id: Id20([*i as u8; 20]),
                    addr: addr(*i),
                })
                .collect(),
        }
    }

    #[test]
    fn total_budget_paces_queries() {
        let cfg = CrawlerConfig {
            queries_per_second: 10.0,
            burst: 2.0,
            ..CrawlerConfig::default()
        };
        let mut c = Crawler::new(cfg, Time::ZERO, 1);
        for i in 1..=50 {
            c.add_node(Time::ZERO, addr(i));
        }
        let mut sent = 0;
        let mut t = Time::ZERO;
        while t < Time::from_secs(2) {
            while let Some((to, _)) = c.poll_query(t) {
                sent += 1;
                c.handle_failure(t, to);
            }
            t += Duration::from_millis(10);
        }
        // 2 at once, then 10 a second for 2 seconds.
        assert!((20..=23).contains(&sent), "{sent}");
    }

    #[test]
    fn intervals_and_per_node_gap_are_respected() {
        let cfg = CrawlerConfig {
            per_node_gap: Duration::from_secs(30),
            ..CrawlerConfig::default()
        };
        let mut c = Crawler::new(cfg, Time::ZERO, 1);
        c.add_node(Time::ZERO, addr(1));
        let (to, _) = c.poll_query(Time::ZERO).unwrap();
        assert_eq!(
            c.poll_query(Time::ZERO),
            None,
            "one query in flight per node"
        );
        c.handle_reply(Time::ZERO, to, &reply(Some(vec![]), Some(5), &[]));
        // interval 5 s, but the per-node gap is 30 s.
        assert_eq!(c.poll_query(Time::from_secs(29)), None);
        assert_eq!(
            c.next_timeout(Time::from_secs(29)),
            Some(Time::from_secs(30))
        );
        let (to, _) = c.poll_query(Time::from_secs(30)).unwrap();
        c.handle_reply(
            Time::from_secs(30),
            to,
            &reply(Some(vec![]), Some(1000), &[]),
        );
        assert_eq!(c.poll_query(Time::from_secs(1029)), None);
        assert!(c.poll_query(Time::from_secs(1030)).is_some());
    }

    #[test]
    fn hostile_answers_are_bounded() {
        let mut c = Crawler::new(CrawlerConfig::default(), Time::ZERO, 1);
        c.add_node(Time::ZERO, addr(1));
        // Unusable addresses are ignored.
        c.add_node(Time::ZERO, "0.0.0.0:6881".parse().unwrap());
        c.add_node(Time::ZERO, "10.0.0.9:0".parse().unwrap());
        c.add_node(Time::ZERO, "255.255.255.255:1".parse().unwrap());
        assert_eq!(c.stats().nodes, 1);
        let (to, _) = c.poll_query(Time::ZERO).unwrap();
        // Repeated samples, a negative interval, 100 nodes.
        let nodes: Vec<u16> = (2..102).collect();
        c.handle_reply(
            Time::ZERO,
            to,
            &reply(Some(vec![Id20([5; 20]); 75]), Some(-7), &nodes),
        );
        let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
        assert_eq!(events, vec![CrawlEvent::NewHash(Id20([5; 20]))]);
        assert_eq!(c.stats().nodes, 17);
        // An answer nobody asked for is ignored.
        c.handle_reply(
            Time::ZERO,
            addr(200),
            &reply(Some(vec![Id20([6; 20])]), None, &[]),
        );
        assert_eq!(c.poll_event(), None);
        // The per-node gap still holds after the negative interval.
        c.clean_top();
        assert!(c.nodes[&addr(1)].next_at >= Time::from_secs(60));
    }

    #[test]
    fn silent_nodes_are_forgotten_and_non_bep51_nodes_left_alone() {
        let mut c = Crawler::new(CrawlerConfig::default(), Time::ZERO, 1);
        c.add_node(Time::ZERO, addr(1));
        c.add_node(Time::ZERO, addr(2));
        let (a, _) = c.poll_query(Time::ZERO).unwrap();
        let (b, _) = c.poll_query(Time::ZERO).unwrap();
        c.handle_failure(Time::ZERO, a);
        c.handle_reply(Time::ZERO, b, &reply(None, None, &[]));
        assert_eq!(c.stats().unsupported, 1);
        let (again, _) = c.poll_query(Time::from_secs(60)).unwrap();
        assert_eq!(again, a);
        c.handle_failure(Time::from_secs(60), a);
        assert_eq!(c.stats().nodes, 1);
        assert_eq!(c.poll_query(Time::from_secs(3600)), None);
    }
}
