//! An in-memory network for sans-IO DHT nodes: simulated time, seeded latency, no sockets.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_core::{Id20, Time};
use shoal_dht::{DhtConfig, DhtNode, Event};

/// A packet in flight: delivery time, sequence number, receiver, sender, payload.
type InFlight = (Time, u64, usize, SocketAddr, Vec<u8>);

/// A simulated network of DHT nodes.
pub struct Sim {
    pub nodes: Vec<DhtNode>,
    pub addrs: Vec<SocketAddr>,
    by_addr: HashMap<SocketAddr, usize>,
    pub now: Time,
    seq: u64,
    packets: BinaryHeap<Reverse<InFlight>>,
    timers: BinaryHeap<Reverse<(Time, usize)>>,
    /// Nodes that receive nothing (killed): packets to them are dropped.
    pub dead: HashSet<usize>,
    pub rng: StdRng,
    pub events: Vec<(usize, Event)>,
    pub delivered: u64,
}

/// A distinct IPv4 address per node (10.x.y.z).
pub fn addr_of(i: usize) -> SocketAddr {
    let n = i as u32 + 1;
    SocketAddr::from((
        Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8),
        6881,
    ))
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        Sim {
            nodes: Vec::new(),
            addrs: Vec::new(),
            by_addr: HashMap::new(),
            now: Time::ZERO,
            seq: 0,
            packets: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            dead: HashSet::new(),
            rng: StdRng::seed_from_u64(seed),
            events: Vec::new(),
            delivered: 0,
        }
    }

    pub fn add_node(&mut self, config: DhtConfig) -> usize {
        let i = self.nodes.len();
        let seed = self.rng.random();
        self.nodes.push(DhtNode::new(config, self.now, seed));
        let a = addr_of(i);
        self.addrs.push(a);
        self.by_addr.insert(a, i);
        self.timers.push(Reverse((self.nodes[i].next_timeout(), i)));
        i
    }

    /// Moves node `i`'s output onto the wire and its events into `events`.
    pub fn flush(&mut self, i: usize) {
        while let Some((to, bytes)) = self.nodes[i].poll_transmit() {
            let Some(&j) = self.by_addr.get(&to) else {
                continue;
            };
            // 10 to 80 ms one way: a spread of internet latencies.
            let lat = Duration::from_millis(self.rng.random_range(10..80));
            self.seq += 1;
            self.packets
                .push(Reverse((self.now + lat, self.seq, j, self.addrs[i], bytes)));
        }
        while let Some(e) = self.nodes[i].poll_event() {
            self.events.push((i, e));
        }
        self.timers.push(Reverse((self.nodes[i].next_timeout(), i)));
    }

    /// Processes the next packet or timer. Returns false when nothing is left before `limit`.
    pub fn step(&mut self, limit: Time) -> bool {
        let tp = self.packets.peek().map(|Reverse(p)| p.0);
        let tt = self.timers.peek().map(|Reverse(t)| t.0);
        let next = match (tp, tt) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => return false,
        };
        if next > limit {
            return false;
        }
        self.now = self.now.max(next);
        if tp == Some(next) {
            let Reverse((_, _, to, from, bytes)) = self.packets.pop().expect("peeked");
            if self.dead.contains(&to) {
                return true;
            }
            self.delivered += 1;
            self.nodes[to].handle_packet(self.now, from, &bytes);
            self.flush(to);
        } else {
            let Reverse((_, i)) = self.timers.pop().expect("peeked");
            // Stale timer entries are fine: only act when the node is really due.
            if self.nodes[i].next_timeout() <= self.now && !self.dead.contains(&i) {
                self.nodes[i].handle_timeout(self.now);
                self.flush(i);
            }
        }
        true
    }

    /// Runs until `done` holds (checked after each step) or `max` simulated time passes.
    pub fn run_until(&mut self, max: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let limit = self.now + max;
        while !done(self) {
            if !self.step(limit) {
                self.now = limit;
                return done(self);
            }
        }
        true
    }

    /// Removes and returns the events of node `i` that match `f`.
    pub fn take_events(&mut self, i: usize) -> Vec<Event> {
        let mut out = Vec::new();
        self.events.retain(|(n, e)| {
            if *n == i {
                out.push(e.clone());
                false
            } else {
                true
            }
        });
        out
    }

    /// The `k` live nodes closest to `target`, by global knowledge.
    pub fn true_closest(&self, target: &Id20, k: usize) -> Vec<Id20> {
        let mut ids: Vec<Id20> = (0..self.nodes.len())
            .filter(|i| !self.dead.contains(i))
            .map(|i| self.nodes[i].id())
            .collect();
        ids.sort_by_key(|id| target.distance(id));
        ids.truncate(k);
        ids
    }

    pub fn index_of_id(&self, id: &Id20) -> Option<usize> {
        self.nodes.iter().position(|n| n.id() == *id)
    }
}
