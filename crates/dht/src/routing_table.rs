//! The Kademlia routing table of BEP 5: buckets of k = 8 nodes over the 160-bit XOR metric,
//! split around our own id, with node states (good / questionable / bad), a replacement cache per
//! bucket, and refresh of idle buckets.
//!
//! Bucket `i` (for `i` below the last) holds nodes whose id shares exactly `i` leading bits with
//! ours; the last bucket holds everything closer. Only the last bucket splits, so the table has
//! at most 160 buckets and ~k * log2(N) entries.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::Rng;
use shoal_core::{CompactNode, Id20, Time};

/// Routing table settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutingTableConfig {
    /// Bucket size k (BEP 5: 8).
    pub k: usize,
    /// Replacement cache size per bucket (libtorrent keeps a few per bucket; we keep k).
    pub replacements: usize,
    /// Inactivity after which a good node becomes questionable (BEP 5: 15 minutes).
    pub questionable_after: Duration,
    /// Inactivity after which a bucket is refreshed by a lookup (BEP 5: 15 minutes).
    pub refresh_after: Duration,
    /// Consecutive failures that make a node bad, and replaced when the bucket's replacement cache
    /// has a node. BEP 5 suggests one retry of a ping (2); 3 tolerates one lost packet in a
    /// lookup plus the retried ping.
    pub bad_after_failures: u32,
    /// Consecutive failures after which a node is removed even without a replacement (a lonely
    /// table should not empty itself during a short outage).
    pub remove_after_failures: u32,
    /// One node per IP address (libtorrent's `restrict_routing_ips`). Off on loopback, where
    /// every node shares 127.0.0.0/8.
    pub restrict_ips: bool,
}

impl Default for RoutingTableConfig {
    fn default() -> Self {
        RoutingTableConfig {
            k: 8,
            replacements: 8,
            questionable_after: Duration::from_secs(15 * 60),
            refresh_after: Duration::from_secs(15 * 60),
            bad_after_failures: 3,
            remove_after_failures: 5,
            restrict_ips: true,
        }
    }
}

/// The liveness of a node (BEP 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Answered one of our queries and was active in the last 15 minutes.
    Good,
    /// Neither good nor bad: not heard from lately, or never answered.
    Questionable,
    /// Failed to answer several queries in a row.
    Bad,
}

/// One node in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    /// Id and address.
    pub node: CompactNode,
    /// Last time we heard from it (response, or query after it had answered once).
    pub last_seen: Time,
    /// Last time it answered one of our queries.
    pub last_response: Option<Time>,
    /// Consecutive unanswered queries.
    pub failures: u32,
    /// When we last pinged it because it was questionable (at most once a minute).
    pub pinged_at: Option<Time>,
}

impl NodeEntry {
    fn new(now: Time, node: CompactNode, responded: bool) -> Self {
        NodeEntry {
            node,
            last_seen: now,
            last_response: responded.then_some(now),
            failures: 0,
            pinged_at: None,
        }
    }

    /// The node's state at `now`.
    pub fn state(&self, now: Time, cfg: &RoutingTableConfig) -> NodeState {
        if self.failures >= cfg.bad_after_failures {
            NodeState::Bad
        } else if self.last_response.is_some()
            && self.failures == 0
            && now.saturating_since(self.last_seen) < cfg.questionable_after
        {
            NodeState::Good
        } else {
            NodeState::Questionable
        }
    }
}

#[derive(Clone, Debug)]
struct Bucket {
    nodes: Vec<NodeEntry>,
    replacements: Vec<NodeEntry>,
    last_changed: Time,
}

impl Bucket {
    fn new(now: Time) -> Self {
        Bucket {
            nodes: Vec::new(),
            replacements: Vec::new(),
            last_changed: now,
        }
    }
}

/// What [`RoutingTable::heard_from`] did with a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Insert {
    /// New entry in a bucket.
    Added,
    /// Already known; its times were updated.
    Updated,
    /// Took the place of a bad node.
    ReplacedBad(CompactNode),
    /// The bucket is full: the node went to the replacement cache, and this questionable node
    /// should be pinged (if it fails, the cached node takes its place).
    Cached(Option<CompactNode>),
    /// Not taken: our own id, an id seen at another address, a second node on a restricted IP,
    /// or a node that never answered and finds no room.
    Rejected,
}

/// The routing table.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    own: Id20,
    config: RoutingTableConfig,
    buckets: Vec<Bucket>,
}

/// How often a questionable node may be pinged for eviction.
const PING_INTERVAL: Duration = Duration::from_secs(60);
/// Most buckets: one per bit of the id.
const MAX_BUCKETS: usize = 160;

impl RoutingTable {
    /// An empty table around `own`.
    pub fn new(own: Id20, config: RoutingTableConfig, now: Time) -> Self {
        RoutingTable {
            own,
            config,
            buckets: vec![Bucket::new(now)],
        }
    }

    /// Our own id.
    pub fn own_id(&self) -> Id20 {
        self.own
    }

    /// The settings.
    pub fn config(&self) -> &RoutingTableConfig {
        &self.config
    }

    /// Number of buckets.
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Number of nodes in buckets (replacement caches not counted).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.nodes.len()).sum()
    }

    /// True if no node is in the table.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry in the buckets.
    pub fn entries(&self) -> impl Iterator<Item = &NodeEntry> {
        self.buckets.iter().flat_map(|b| b.nodes.iter())
    }

    /// Number of nodes in replacement caches.
    pub fn replacement_count(&self) -> usize {
        self.buckets.iter().map(|b| b.replacements.len()).sum()
    }

    /// The entry for `id`, if it is in a bucket.
    pub fn get(&self, id: &Id20) -> Option<&NodeEntry> {
        let b = self.bucket_index(id);
        self.buckets[b].nodes.iter().find(|e| e.node.id == *id)
    }

    /// Node counts (good, questionable, bad) at `now`.
    pub fn census(&self, now: Time) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for e in self.entries() {
            match e.state(now, &self.config) {
                NodeState::Good => c.0 += 1,
                NodeState::Questionable => c.1 += 1,
                NodeState::Bad => c.2 += 1,
            }
        }
        c
    }

    fn bucket_index(&self, id: &Id20) -> usize {
        let lz = self.own.distance(id).leading_zeros() as usize;
        lz.min(self.buckets.len() - 1)
    }

    fn ip_taken(&self, ip: IpAddr, id: &Id20) -> bool {
        self.entries()
            .any(|e| e.node.addr.ip() == ip && e.node.id != *id)
    }

    /// Records that `node` was heard from: `responded` if it answered one of our queries, false if
    /// it only queried us (such nodes are taken only into free room, since they may be behind a
    /// NAT that blocks our queries).
    pub fn heard_from(&mut self, now: Time, node: CompactNode, responded: bool) -> Insert {
        if node.id == self.own {
            return Insert::Rejected;
        }
        loop {
            let bi = self.bucket_index(&node.id);
            let last = bi == self.buckets.len() - 1;
            let cfg = self.config;
            let bucket = &mut self.buckets[bi];
            if let Some(e) = bucket.nodes.iter_mut().find(|e| e.node.id == node.id) {
                if e.node.addr != node.addr {
                    // Same id from another address: keep the one we know (id spoofing guard).
                    return Insert::Rejected;
                }
                if responded {
                    e.last_response = Some(now);
                    e.failures = 0;
                    e.last_seen = now;
                    bucket.last_changed = now;
                } else if e.last_response.is_some() {
                    e.last_seen = now;
                }
                return Insert::Updated;
            }
            if cfg.restrict_ips && self.ip_taken(node.addr.ip(), &node.id) {
                return Insert::Rejected;
            }
            let bucket = &mut self.buckets[bi];
            // A node that is only in the replacement cache and answers again moves up there.
            bucket.replacements.retain(|e| e.node.id != node.id);
            if bucket.nodes.len() < cfg.k {
                bucket.nodes.push(NodeEntry::new(now, node, responded));
                bucket.last_changed = now;
                return Insert::Added;
            }
            if let Some(bad) = bucket
                .nodes
                .iter_mut()
                .find(|e| e.state(now, &cfg) == NodeState::Bad)
            {
                let old = bad.node;
                *bad = NodeEntry::new(now, node, responded);
                bucket.last_changed = now;
                return Insert::ReplacedBad(old);
            }
            if last && self.buckets.len() < MAX_BUCKETS {
                self.split(now);
                continue;
            }
            if !responded {
                return Insert::Rejected;
            }
            let bucket = &mut self.buckets[bi];
            if bucket.replacements.len() >= cfg.replacements {
                // Drop the least recently seen replacement.
                if let Some((i, _)) = bucket
                    .replacements
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| e.last_seen)
                {
                    bucket.replacements.swap_remove(i);
                }
            }
            bucket
                .replacements
                .push(NodeEntry::new(now, node, responded));
            // Ping the least recently seen questionable node, unless it was pinged just now.
            let ping = bucket
                .nodes
                .iter_mut()
                .filter(|e| e.state(now, &cfg) == NodeState::Questionable)
                .filter(|e| {
                    e.pinged_at
                        .is_none_or(|t| now.saturating_since(t) >= PING_INTERVAL)
                })
                .min_by_key(|e| e.last_seen)
                .map(|e| {
                    e.pinged_at = Some(now);
                    e.node
                });
            return Insert::Cached(ping);
        }
    }

    fn split(&mut self, now: Time) {
        let new_index = self.buckets.len();
        let own = self.own;
        let mut fresh = Bucket::new(now);
        let last = self.buckets.last_mut().expect("there is always one bucket");
        let closer = |e: &NodeEntry| own.distance(&e.node.id).leading_zeros() as usize >= new_index;
        let (move_nodes, keep): (Vec<_>, Vec<_>) = last.nodes.drain(..).partition(closer);
        last.nodes = keep;
        fresh.nodes = move_nodes;
        let (move_r, keep_r): (Vec<_>, Vec<_>) = last.replacements.drain(..).partition(closer);
        last.replacements = keep_r;
        fresh.replacements = move_r;
        fresh.last_changed = last.last_changed;
        self.buckets.push(fresh);
    }

    /// Records an unanswered query to `node`. After `bad_after_failures` in a row the node is
    /// replaced by the freshest node of its bucket's replacement cache; after
    /// `remove_after_failures` it is removed even without one. Returns the node promoted from the
    /// replacement cache, if any.
    pub fn failed(&mut self, node: &CompactNode) -> Option<CompactNode> {
        let cfg = self.config;
        let bi = self.bucket_index(&node.id);
        let bucket = &mut self.buckets[bi];
        let pos = bucket
            .nodes
            .iter()
            .position(|e| e.node.id == node.id && e.node.addr == node.addr)?;
        bucket.nodes[pos].failures += 1;
        let failures = bucket.nodes[pos].failures;
        if bucket.nodes[pos].last_response.is_none() {
            // Never answered (it only queried us): one failure is enough to drop it.
            bucket.nodes.swap_remove(pos);
            return None;
        }
        if failures >= cfg.bad_after_failures && !bucket.replacements.is_empty() {
            let (ri, _) = bucket
                .replacements
                .iter()
                .enumerate()
                .max_by_key(|(_, e)| e.last_seen)?;
            let promoted = bucket.replacements.swap_remove(ri);
            let node = promoted.node;
            bucket.nodes[pos] = promoted;
            return Some(node);
        }
        if failures >= cfg.remove_after_failures {
            bucket.nodes.swap_remove(pos);
        }
        None
    }

    /// Removes `id` from the table (for example a node that turned out to be read-only).
    pub fn remove(&mut self, id: &Id20) {
        let bi = self.bucket_index(id);
        self.buckets[bi].nodes.retain(|e| e.node.id != *id);
        self.buckets[bi].replacements.retain(|e| e.node.id != *id);
    }

    /// The `count` closest non-bad nodes to `target`. With `confirmed_only`, only nodes that have
    /// answered us at least once (those we hand to others).
    pub fn closest(
        &self,
        now: Time,
        target: &Id20,
        count: usize,
        confirmed_only: bool,
    ) -> Vec<CompactNode> {
        let mut all: Vec<&NodeEntry> = self
            .entries()
            .filter(|e| e.state(now, &self.config) != NodeState::Bad)
            .filter(|e| !confirmed_only || e.last_response.is_some())
            .collect();
        all.sort_unstable_by_key(|e| target.distance(&e.node.id));
        all.into_iter().take(count).map(|e| e.node).collect()
    }

    /// Address of a node in the table by id.
    pub fn addr_of(&self, id: &Id20) -> Option<SocketAddr> {
        self.get(id).map(|e| e.node.addr)
    }

    /// Random targets inside every bucket that has not changed for `refresh_after`; each such
    /// bucket's timer is reset, so a lookup toward the target should follow.
    pub fn due_refreshes(&mut self, now: Time, rng: &mut impl Rng) -> Vec<Id20> {
        let mut out = Vec::new();
        let n = self.buckets.len();
        for i in 0..n {
            if now.saturating_since(self.buckets[i].last_changed) < self.config.refresh_after {
                continue;
            }
            self.buckets[i].last_changed = now;
            out.push(random_id_in_bucket(&self.own, i, i == n - 1, rng));
        }
        out
    }

    /// The earliest time a bucket becomes due for refresh.
    pub fn next_refresh(&self) -> Time {
        self.buckets
            .iter()
            .map(|b| b.last_changed + self.config.refresh_after)
            .min()
            .unwrap_or(Time::ZERO)
    }
}

/// A random id that shares exactly `i` leading bits with `own` (or at least `i` for the last
/// bucket).
fn random_id_in_bucket(own: &Id20, i: usize, last: bool, rng: &mut impl Rng) -> Id20 {
    let mut id: [u8; 20] = rng.random();
    for bit in 0..i.min(160) {
        let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
        id[byte] = (id[byte] & !mask) | (own.0[byte] & mask);
    }
    if !last && i < 160 {
        let (byte, mask) = (i / 8, 0x80u8 >> (i % 8));
        id[byte] = (id[byte] & !mask) | (!own.0[byte] & mask);
    }
    Id20(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn cfg() -> RoutingTableConfig {
        RoutingTableConfig {
            restrict_ips: false,
            ..RoutingTableConfig::default()
        }
    }

    fn node(first: u8, n: u8) -> CompactNode {
        let mut id = [0u8; 20];
        id[0] = first;
        id[19] = n;
        CompactNode {
            id: Id20(id),
            addr: SocketAddr::from(([10, first, 0, n], 6881)),
        }
    }

    #[test]
    fn buckets_split_around_own_id() {
        let own = Id20([0; 20]);
        let mut t = RoutingTable::new(own, cfg(), Time::ZERO);
        // 8 far nodes (first bit set) fill bucket 0 ...
        for n in 0..8 {
            assert_eq!(t.heard_from(Time::ZERO, node(0x80, n), true), Insert::Added);
        }
        assert_eq!(t.bucket_count(), 1);
        // ... a 9th far node splits the single bucket; the far half is still full, so the
        // node goes to the replacement cache.
        assert!(matches!(
            t.heard_from(Time::ZERO, node(0x81, 0), true),
            Insert::Cached(_)
        ));
        assert_eq!(t.bucket_count(), 2);
        assert_eq!(t.len(), 8);
        // Closer nodes go to the new last bucket and keep splitting it as needed.
        for n in 0..8 {
            assert_eq!(t.heard_from(Time::ZERO, node(0x40, n), true), Insert::Added);
        }
        assert_eq!(t.heard_from(Time::ZERO, node(0x20, 1), true), Insert::Added);
        assert_eq!(t.bucket_count(), 3);
        assert_eq!(t.len(), 17);
        // Far buckets never split: more far nodes are only cached.
        assert!(matches!(
            t.heard_from(Time::ZERO, node(0x90, 9), true),
            Insert::Cached(_)
        ));
        assert_eq!(t.bucket_count(), 3);
        // The own id is never inserted.
        assert_eq!(
            t.heard_from(
                Time::ZERO,
                CompactNode {
                    id: own,
                    addr: SocketAddr::from(([1, 1, 1, 1], 1))
                },
                true
            ),
            Insert::Rejected
        );
    }

    #[test]
    fn states_and_bad_node_eviction() {
        let c = cfg();
        let mut t = RoutingTable::new(Id20::ZERO, c, Time::ZERO);
        for n in 0..8 {
            t.heard_from(Time::ZERO, node(0x80, n), true);
        }
        let e = t.get(&node(0x80, 0).id).unwrap();
        assert_eq!(e.state(Time::ZERO, &c), NodeState::Good);
        assert_eq!(
            e.state(Time::from_secs(15 * 60), &c),
            NodeState::Questionable
        );
        for _ in 0..3 {
            assert_eq!(t.failed(&node(0x80, 3)), None);
        }
        assert_eq!(
            t.get(&node(0x80, 3).id).unwrap().state(Time::ZERO, &c),
            NodeState::Bad
        );
        assert_eq!(t.census(Time::ZERO), (7, 0, 1));
        // Bad nodes are not handed out and are replaced by the next node.
        assert_eq!(t.closest(Time::ZERO, &Id20::ZERO, 100, false).len(), 7);
        assert_eq!(
            t.heard_from(Time::ZERO, node(0x80, 100), true),
            Insert::ReplacedBad(node(0x80, 3))
        );
        assert!(t.get(&node(0x80, 3).id).is_none());
    }

    #[test]
    fn replacement_cache_promotion() {
        let mut t = RoutingTable::new(Id20([0xff; 20]), cfg(), Time::ZERO);
        for n in 0..8 {
            t.heard_from(Time::ZERO, node(0x00, n), true);
        }
        assert!(matches!(
            t.heard_from(Time::from_secs(1), node(0x01, 50), true),
            Insert::Cached(_)
        ));
        assert!(matches!(
            t.heard_from(Time::from_secs(2), node(0x02, 51), true),
            Insert::Cached(_)
        ));
        assert_eq!(t.replacement_count(), 2);
        assert_eq!(t.failed(&node(0x00, 5)), None);
        assert_eq!(t.failed(&node(0x00, 5)), None);
        // Third failure: replaced by the freshest cached node.
        assert_eq!(t.failed(&node(0x00, 5)), Some(node(0x02, 51)));
        assert!(t.get(&node(0x00, 5).id).is_none());
        assert!(t.get(&node(0x02, 51).id).is_some());
        assert_eq!(t.replacement_count(), 1);
    }

    #[test]
    fn removed_after_n_failures_without_replacement() {
        let mut t = RoutingTable::new(Id20([0xff; 20]), cfg(), Time::ZERO);
        t.heard_from(Time::ZERO, node(0x00, 1), true);
        for _ in 0..4 {
            t.failed(&node(0x00, 1));
            assert_eq!(t.len(), 1);
        }
        t.failed(&node(0x00, 1));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn questionable_nodes_are_pinged_before_eviction() {
        let mut t = RoutingTable::new(Id20([0xff; 20]), cfg(), Time::ZERO);
        for n in 0..8 {
            t.heard_from(Time::from_secs(n as u64), node(0x00, n), true);
        }
        // All still good: a new node is cached, nobody to ping.
        assert_eq!(
            t.heard_from(Time::from_secs(60), node(0x01, 50), true),
            Insert::Cached(None)
        );
        // 16 minutes later all are questionable: the least recently seen one is pinged.
        let later = Time::from_secs(16 * 60);
        assert_eq!(
            t.heard_from(later, node(0x01, 51), true),
            Insert::Cached(Some(node(0x00, 0)))
        );
        // Not pinged twice within a minute: the next one is chosen.
        assert_eq!(
            t.heard_from(later, node(0x01, 52), true),
            Insert::Cached(Some(node(0x00, 1)))
        );
        // A node that answers becomes good again.
        assert_eq!(t.heard_from(later, node(0x00, 0), true), Insert::Updated);
        assert_eq!(
            t.get(&node(0x00, 0).id).unwrap().state(later, t.config()),
            NodeState::Good
        );
    }

    #[test]
    fn restrict_ips_and_spoofed_ids() {
        let mut t = RoutingTable::new(Id20([0xff; 20]), RoutingTableConfig::default(), Time::ZERO);
        let a = node(0x00, 1);
        let b = CompactNode {
            id: Id20([0x11; 20]),
            addr: SocketAddr::from(([10, 0, 0, 1], 9999)),
        };
        assert_eq!(t.heard_from(Time::ZERO, a, true), Insert::Added);
        assert_eq!(t.heard_from(Time::ZERO, b, true), Insert::Rejected);
        let spoof = CompactNode {
            id: a.id,
            addr: SocketAddr::from(([10, 9, 9, 9], 1)),
        };
        assert_eq!(t.heard_from(Time::ZERO, spoof, true), Insert::Rejected);
        // Query-only nodes take free room but are not handed out.
        let c = node(0x40, 7);
        assert_eq!(t.heard_from(Time::ZERO, c, false), Insert::Added);
        assert_eq!(t.closest(Time::ZERO, &c.id, 8, true), vec![a]);
    }

    #[test]
    fn refresh_of_idle_buckets() {
        let mut rng = StdRng::seed_from_u64(7);
        let own = Id20([0x55; 20]);
        let mut t = RoutingTable::new(own, cfg(), Time::ZERO);
        for n in 0..8 {
            t.heard_from(Time::ZERO, node(0x80, n), true);
        }
        t.heard_from(Time::ZERO, node(0x81, 9), true); // split
        assert!(t.due_refreshes(Time::from_secs(60), &mut rng).is_empty());
        assert_eq!(t.next_refresh(), Time::from_secs(15 * 60));
        let targets = t.due_refreshes(Time::from_secs(15 * 60), &mut rng);
        assert_eq!(targets.len(), 2);
        // The target of bucket 0 differs from us in the first bit.
        assert_eq!(own.distance(&targets[0]).leading_zeros(), 0);
        assert!(own.distance(&targets[1]).leading_zeros() >= 1);
        assert!(t
            .due_refreshes(Time::from_secs(16 * 60), &mut rng)
            .is_empty());
    }
}
