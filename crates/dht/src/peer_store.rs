//! Peers announced to us (`announce_peer`), per info-hash, with expiry and caps.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::seq::IteratorRandom;
use rand::Rng;
use shoal_core::{Id20, Time};

/// Limits of a [`PeerStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStoreConfig {
    /// How long an announce stays (30 minutes: peers re-announce every 15 to 30 minutes).
    pub ttl: Duration,
    /// Most peers kept per info-hash (libtorrent's `max_peers` default is 500; 200 is plenty to
    /// hand out 50 at a time).
    pub max_peers_per_hash: usize,
    /// Most info-hashes tracked (libtorrent's `max_torrents` default is 2000).
    pub max_hashes: usize,
    /// Most peers in total.
    pub max_total_peers: usize,
    /// Most peers returned in one `values` list: 50 * 8 bytes keeps a reply well under 1500 bytes.
    pub max_returned: usize,
}

impl Default for PeerStoreConfig {
    fn default() -> Self {
        PeerStoreConfig {
            ttl: Duration::from_secs(30 * 60),
            max_peers_per_hash: 200,
            max_hashes: 2000,
            max_total_peers: 20_000,
            max_returned: 50,
        }
    }
}

/// Announced peers with their expiry times.
#[derive(Clone, Debug)]
pub struct PeerStore {
    config: PeerStoreConfig,
    hashes: HashMap<Id20, Vec<(SocketAddr, Time)>>,
    total: usize,
}

impl PeerStore {
    /// An empty store.
    pub fn new(config: PeerStoreConfig) -> Self {
        PeerStore {
            config,
            hashes: HashMap::new(),
            total: 0,
        }
    }

    /// Number of peers stored in total.
    pub fn len(&self) -> usize {
        self.total
    }

    /// True if nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Number of info-hashes with peers.
    pub fn hash_count(&self) -> usize {
        self.hashes.len()
    }

    /// Records `peer` for `info_hash` until `now + ttl`. Returns false if a cap refused it.
    pub fn insert(&mut self, now: Time, info_hash: Id20, peer: SocketAddr) -> bool {
        let expires = now + self.config.ttl;
        if let Some(list) = self.hashes.get_mut(&info_hash) {
            if let Some(e) = list.iter_mut().find(|(a, _)| *a == peer) {
                e.1 = expires;
                return true;
            }
        }
        if self.total >= self.config.max_total_peers {
            self.expire(now);
            if self.total >= self.config.max_total_peers {
                return false;
            }
        }
        if !self.hashes.contains_key(&info_hash) && self.hashes.len() >= self.config.max_hashes {
            self.expire(now);
            if self.hashes.len() >= self.config.max_hashes {
                return false;
            }
        }
        let list = self.hashes.entry(info_hash).or_default();
        if list.len() >= self.config.max_peers_per_hash {
            // Replace the entry closest to expiry: fresh announces matter more.
            if let Some(oldest) = list.iter_mut().min_by_key(|(_, t)| *t) {
                *oldest = (peer, expires);
            }
            return true;
        }
        list.push((peer, expires));
        self.total += 1;
        true
    }

    /// Up to `max_returned` live peers for `info_hash`, chosen at random when there are more.
    pub fn get(&self, now: Time, info_hash: &Id20, rng: &mut impl Rng) -> Vec<SocketAddr> {
        let Some(list) = self.hashes.get(info_hash) else {
            return Vec::new();
        };
        list.iter()
            .filter(|(_, t)| *t > now)
            .map(|(a, _)| *a)
            .choose_multiple(rng, self.config.max_returned)
    }

    /// The info-hashes that have at least one live peer (BEP 51 samples are drawn from them).
    pub fn live_hashes(&self, now: Time) -> impl Iterator<Item = &Id20> {
        self.hashes
            .iter()
            .filter(move |(_, list)| list.iter().any(|(_, t)| *t > now))
            .map(|(h, _)| h)
    }

    /// Drops expired entries.
    pub fn expire(&mut self, now: Time) {
        let mut total = 0;
        self.hashes.retain(|_, list| {
            list.retain(|(_, t)| *t > now);
            total += list.len();
            !list.is_empty()
        });
        self.total = total;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn peer(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 6881))
    }

    #[test]
    fn expiry() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut s = PeerStore::new(PeerStoreConfig::default());
        let h = Id20([1; 20]);
        assert!(s.insert(Time::ZERO, h, peer(1)));
        assert_eq!(s.get(Time::from_secs(60), &h, &mut rng), vec![peer(1)]);
        // Re-announcing refreshes, does not duplicate.
        assert!(s.insert(Time::from_secs(20 * 60), h, peer(1)));
        assert_eq!(s.len(), 1);
        assert_eq!(s.get(Time::from_secs(31 * 60), &h, &mut rng), vec![peer(1)]);
        assert!(s.get(Time::from_secs(51 * 60), &h, &mut rng).is_empty());
        s.expire(Time::from_secs(51 * 60));
        assert!(s.is_empty());
        assert_eq!(s.hash_count(), 0);
    }

    #[test]
    fn caps() {
        let mut rng = StdRng::seed_from_u64(1);
        let cfg = PeerStoreConfig {
            max_peers_per_hash: 3,
            max_hashes: 2,
            max_total_peers: 5,
            max_returned: 2,
            ..PeerStoreConfig::default()
        };
        let mut s = PeerStore::new(cfg);
        let (a, b, c) = (Id20([1; 20]), Id20([2; 20]), Id20([3; 20]));
        for i in 0..10 {
            assert!(s.insert(Time::from_secs(i), a, peer(i as u16)));
        }
        assert_eq!(s.len(), 3);
        assert_eq!(s.get(Time::from_secs(10), &a, &mut rng).len(), 2);
        assert!(s.insert(Time::ZERO, b, peer(1)));
        assert!(s.insert(Time::ZERO, b, peer(2)));
        // A third hash is refused.
        assert!(!s.insert(Time::ZERO, c, peer(1)));
        // Total cap: 5 peers.
        assert!(!s.insert(Time::ZERO, b, peer(3)));
        assert_eq!(s.len(), 5);
        // Once entries expire there is room again.
        assert!(s.insert(Time::from_secs(3 * 3600), c, peer(1)));
        assert_eq!(s.len(), 1);
    }
}
