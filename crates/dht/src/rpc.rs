//! The RPC manager: outstanding queries by transaction id, per-node RTT estimates, and the two
//! timeouts of every query (the failure detector).
//!
//! * The **soft timeout** lets a lookup widen to other nodes without giving up on a slow one: the
//!   query stays outstanding and a late answer is still used. libtorrent uses 1 s; so do we by
//!   default, capped by the hard timeout. On loopback 100 ms is plenty.
//! * The **hard timeout** comes from the node's RTT estimate (RFC 6298, `RttEstimator`): an
//!   unknown node gets 5 s, a measured one `srtt + 4 * rttvar`, never below 1 s (internet jitter)
//!   nor above 15 s (libtorrent's fixed hard timeout, the figure to beat). When it passes, the
//!   query is dropped, the estimator backs off, and the routing table counts a failure.
//!
//! Transaction ids are 4 bytes (a counter from a random start): the `mainline` crate answers only
//! 4-byte ids, and 4 bytes make blind guessing of a reply hopeless. Replies must come from the
//! address the query went to.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use shoal_core::{Id20, RttConfig, RttEstimator, Time};

/// RPC settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RpcConfig {
    /// Soft timeout (see the module docs).
    pub soft_timeout: Duration,
    /// Bounds of the per-node hard timeout.
    pub rtt: RttConfig,
    /// Most queries outstanding at once; more are refused (bounded memory, bounded traffic).
    pub max_outstanding: usize,
    /// Most per-address RTT estimators kept.
    pub max_rtt_entries: usize,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            soft_timeout: Duration::from_secs(1),
            rtt: RttConfig {
                initial: Duration::from_secs(5),
                floor: Duration::from_secs(1),
                ceiling: Duration::from_secs(15),
            },
            max_outstanding: 2048,
            max_rtt_entries: 4096,
        }
    }
}

impl RpcConfig {
    /// Short timeouts for nodes on one machine (tests, `shoal swarm`): 100 ms soft, hard between
    /// 200 ms and 2 s (500 ms before the first sample).
    pub fn loopback() -> Self {
        RpcConfig {
            soft_timeout: Duration::from_millis(100),
            rtt: RttConfig {
                initial: Duration::from_millis(500),
                floor: Duration::from_millis(200),
                ceiling: Duration::from_secs(2),
            },
            ..RpcConfig::default()
        }
    }
}

/// One outstanding query.
#[derive(Clone, Debug)]
pub struct Pending<P> {
    /// Where it went.
    pub addr: SocketAddr,
    /// The node id we expect, when known (unknown for bootstrap addresses).
    pub node_id: Option<Id20>,
    /// What the answer is for.
    pub purpose: P,
    /// When it was sent.
    pub sent: Time,
    soft: Time,
    hard: Time,
    soft_fired: bool,
}

/// A deadline that passed.
#[derive(Clone, Debug)]
pub enum Expired<P> {
    /// The soft timeout: the query is still outstanding.
    Soft(Pending<P>),
    /// The hard timeout: the query is gone; count a failure.
    Hard(Pending<P>),
}

/// Outstanding queries and RTT estimates.
#[derive(Clone, Debug)]
pub struct RpcManager<P> {
    config: RpcConfig,
    next_tid: u32,
    pending: HashMap<u32, Pending<P>>,
    rtts: HashMap<SocketAddr, RttEstimator>,
}

impl<P: Clone> RpcManager<P> {
    /// An empty manager; `first_tid` should be random.
    pub fn new(config: RpcConfig, first_tid: u32) -> Self {
        RpcManager {
            config,
            next_tid: first_tid,
            pending: HashMap::new(),
            rtts: HashMap::new(),
        }
    }

    /// Number of outstanding queries.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// The hard timeout a query to `addr` sent now would get.
    pub fn timeout_for(&self, addr: &SocketAddr) -> Duration {
        self.rtts
            .get(addr)
            .map(RttEstimator::timeout)
            .unwrap_or(self.config.rtt.initial)
    }

    /// The smoothed RTT of `addr`, if measured.
    pub fn rtt_of(&self, addr: &SocketAddr) -> Option<Duration> {
        self.rtts.get(addr).and_then(RttEstimator::smoothed)
    }

    /// Registers a query to `addr` and returns its transaction id, or `None` when too many
    /// queries are outstanding.
    pub fn start(
        &mut self,
        now: Time,
        addr: SocketAddr,
        node_id: Option<Id20>,
        purpose: P,
    ) -> Option<Vec<u8>> {
        if self.pending.len() >= self.config.max_outstanding {
            return None;
        }
        let mut tid = self.next_tid;
        while self.pending.contains_key(&tid) {
            tid = tid.wrapping_add(1);
        }
        self.next_tid = tid.wrapping_add(1);
        let hard = self.timeout_for(&addr);
        let soft = self.config.soft_timeout.min(hard);
        self.pending.insert(
            tid,
            Pending {
                addr,
                node_id,
                purpose,
                sent: now,
                soft: now + soft,
                hard: now + hard,
                soft_fired: false,
            },
        );
        Some(tid.to_be_bytes().to_vec())
    }

    /// Matches a reply (response or error) from `from` to its query, records the RTT, and returns
    /// the query. `None` for unknown ids or a reply from another address.
    pub fn on_reply(&mut self, now: Time, tid: &[u8], from: SocketAddr) -> Option<Pending<P>> {
        let tid = u32::from_be_bytes(<[u8; 4]>::try_from(tid).ok()?);
        if self.pending.get(&tid)?.addr != from {
            return None;
        }
        let p = self.pending.remove(&tid)?;
        if self.rtts.len() >= self.config.max_rtt_entries && !self.rtts.contains_key(&from) {
            // Bounded: forget an arbitrary estimate; it only costs a default timeout later.
            if let Some(k) = self.rtts.keys().next().copied() {
                self.rtts.remove(&k);
            }
        }
        self.rtts
            .entry(from)
            .or_insert_with(|| RttEstimator::new(self.config.rtt))
            .sample(now.saturating_since(p.sent));
        Some(p)
    }

    /// Deadlines that passed at `now`.
    pub fn poll_expired(&mut self, now: Time) -> Vec<Expired<P>> {
        let mut out = Vec::new();
        let mut hard = Vec::new();
        for (tid, p) in self.pending.iter_mut() {
            if p.hard <= now {
                hard.push(*tid);
            } else if !p.soft_fired && p.soft <= now {
                p.soft_fired = true;
                out.push(Expired::Soft(p.clone()));
            }
        }
        hard.sort_unstable();
        for tid in hard {
            if let Some(p) = self.pending.remove(&tid) {
                if let Some(e) = self.rtts.get_mut(&p.addr) {
                    e.on_timeout();
                }
                out.push(Expired::Hard(p));
            }
        }
        out
    }

    /// The next soft or hard deadline.
    pub fn next_deadline(&self) -> Option<Time> {
        self.pending
            .values()
            .map(|p| if p.soft_fired { p.hard } else { p.soft })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n], 6881))
    }

    #[test]
    fn reply_matching_and_rtt() {
        let mut r: RpcManager<u8> = RpcManager::new(RpcConfig::default(), u32::MAX);
        let tid = r.start(Time::ZERO, addr(1), None, 7).unwrap();
        assert_eq!(tid.len(), 4);
        // Wrong address or unknown/short id: no match, query still outstanding.
        assert!(r.on_reply(Time::from_millis(10), &tid, addr(2)).is_none());
        assert!(r
            .on_reply(Time::from_millis(10), &tid[..2], addr(1))
            .is_none());
        let p = r.on_reply(Time::from_millis(200), &tid, addr(1)).unwrap();
        assert_eq!(p.purpose, 7);
        assert_eq!(r.rtt_of(&addr(1)), Some(Duration::from_millis(200)));
        // 200 + 4 * 100 ms is below the 1 s floor.
        assert_eq!(r.timeout_for(&addr(1)), Duration::from_secs(1));
        // Replayed reply: no match.
        assert!(r.on_reply(Time::from_millis(300), &tid, addr(1)).is_none());
        // The counter wrapped.
        assert_eq!(
            r.start(Time::ZERO, addr(1), None, 1).unwrap(),
            vec![0, 0, 0, 0]
        );
    }

    #[test]
    fn soft_then_hard_timeout() {
        let mut r: RpcManager<u8> = RpcManager::new(RpcConfig::default(), 1);
        r.start(Time::ZERO, addr(1), None, 1).unwrap();
        assert_eq!(r.next_deadline(), Some(Time::from_secs(1)));
        assert!(r.poll_expired(Time::from_millis(999)).is_empty());
        let e = r.poll_expired(Time::from_secs(1));
        assert!(matches!(e.as_slice(), [Expired::Soft(_)]));
        assert_eq!(r.outstanding(), 1);
        assert_eq!(r.next_deadline(), Some(Time::from_secs(5)));
        let e = r.poll_expired(Time::from_secs(5));
        assert!(matches!(e.as_slice(), [Expired::Hard(_)]));
        assert_eq!(r.outstanding(), 0);
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn timeout_follows_rtt_and_backs_off() {
        let mut r: RpcManager<u8> = RpcManager::new(RpcConfig::default(), 1);
        let t = r.start(Time::ZERO, addr(1), None, 1).unwrap();
        r.on_reply(Time::from_secs(3), &t, addr(1)).unwrap();
        // srtt 3 s, rttvar 1.5 s: 9 s.
        assert_eq!(r.timeout_for(&addr(1)), Duration::from_secs(9));
        r.start(Time::from_secs(10), addr(1), None, 1).unwrap();
        assert_eq!(r.poll_expired(Time::from_secs(19)).len(), 1);
        // Backed off to the 15 s ceiling.
        assert_eq!(r.timeout_for(&addr(1)), Duration::from_secs(15));
    }

    #[test]
    fn outstanding_cap() {
        let cfg = RpcConfig {
            max_outstanding: 2,
            ..RpcConfig::default()
        };
        let mut r: RpcManager<u8> = RpcManager::new(cfg, 1);
        assert!(r.start(Time::ZERO, addr(1), None, 1).is_some());
        assert!(r.start(Time::ZERO, addr(2), None, 1).is_some());
        assert!(r.start(Time::ZERO, addr(3), None, 1).is_none());
    }
}
