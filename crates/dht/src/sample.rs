//! BEP 51 `sample_infohashes`, the serving side: a random subset of the info-hashes in the peer
//! store, kept for `interval` so that asking again sooner gains an indexer nothing.

use std::time::Duration;

use rand::seq::IteratorRandom;
use rand::Rng;
use shoal_core::{Id20, Time};

use crate::peer_store::PeerStore;

/// Largest `interval` BEP 51 allows: 6 hours.
pub const MAX_INTERVAL: Duration = Duration::from_secs(21_600);

/// Settings of a [`Sampler`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplerConfig {
    /// How long one subset is handed out (libtorrent's `dht_sample_infohashes_interval`
    /// default is the BEP's maximum, 6 hours). Capped at [`MAX_INTERVAL`].
    pub interval: Duration,
    /// Most info-hashes in one reply (libtorrent's `dht_max_infohashes_sample_count` is 20;
    /// 20 x 20 bytes plus 8 nodes keeps the reply under 1000 bytes).
    pub max_samples: usize,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            interval: MAX_INTERVAL,
            max_samples: 20,
        }
    }
}

/// One answer to `sample_infohashes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The info-hashes, at most `max_samples`, without repeats.
    pub samples: Vec<Id20>,
    /// How many info-hashes the store holds.
    pub num: i64,
    /// Seconds until the subset changes.
    pub interval: i64,
}

/// The current subset and when it is drawn again.
#[derive(Clone, Debug)]
pub struct Sampler {
    config: SamplerConfig,
    current: Vec<Id20>,
    num: usize,
    refresh_at: Option<Time>,
}

impl Sampler {
    /// A sampler that draws its first subset on the first query.
    pub fn new(config: SamplerConfig) -> Self {
        Sampler {
            config,
            current: Vec::new(),
            num: 0,
            refresh_at: None,
        }
    }

    fn interval(&self) -> Duration {
        self.config.interval.min(MAX_INTERVAL)
    }

    /// The answer at `now`. The subset is drawn again once the interval has passed, or sooner
    /// when it held every stored hash and the store has changed since (then nothing is gained by
    /// waiting, and new hashes are shown at once).
    pub fn sample(&mut self, now: Time, store: &PeerStore, rng: &mut impl Rng) -> Sample {
        let live = store.live_hashes(now).count();
        let complete = self.num <= self.config.max_samples;
        let stale = match self.refresh_at {
            None => true,
            Some(t) => now >= t || (complete && live != self.num),
        };
        if stale {
            self.current = store
                .live_hashes(now)
                .copied()
                .choose_multiple(rng, self.config.max_samples);
            self.num = live;
            self.refresh_at = Some(now + self.interval());
        }
        let left = self
            .refresh_at
            .map_or(Duration::ZERO, |t| t.saturating_since(now));
        Sample {
            samples: self.current.clone(),
            num: self.num as i64,
            interval: left.as_secs() as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer_store::PeerStoreConfig;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::collections::HashSet;
    use std::net::SocketAddr;

    fn peer(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], i))
    }

    #[test]
    fn small_stores_are_listed_whole_and_fresh() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut store = PeerStore::new(PeerStoreConfig::default());
        let mut s = Sampler::new(SamplerConfig::default());
        assert_eq!(s.sample(Time::ZERO, &store, &mut rng).samples, vec![]);
        store.insert(Time::ZERO, Id20([1; 20]), peer(1));
        let a = s.sample(Time::from_secs(1), &store, &mut rng);
        assert_eq!(a.samples, vec![Id20([1; 20])]);
        assert_eq!(a.num, 1);
        // Drawn again at 1 s, since the store changed.
        assert_eq!(a.interval, 21_600);
    }

    #[test]
    fn large_stores_keep_one_subset_for_the_interval() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut store = PeerStore::new(PeerStoreConfig::default());
        for i in 0..100u8 {
            store.insert(Time::ZERO, Id20([i; 20]), peer(1));
        }
        let cfg = SamplerConfig {
            interval: Duration::from_secs(60),
            max_samples: 20,
        };
        let mut s = Sampler::new(cfg);
        let a = s.sample(Time::ZERO, &store, &mut rng);
        assert_eq!(a.samples.len(), 20);
        assert_eq!(a.num, 100);
        store.insert(Time::ZERO, Id20([200; 20]), peer(1));
        let b = s.sample(Time::from_secs(59), &store, &mut rng);
        assert_eq!(a.samples, b.samples);
        assert_eq!(b.interval, 1);
        let c = s.sample(Time::from_secs(60), &store, &mut rng);
        assert_ne!(a.samples, c.samples);
        assert_eq!(c.num, 101);
    }

    proptest! {
        /// Whatever the store holds and whenever the queries come, a reply has at most
        /// `max_samples` distinct hashes, all of them stored when the subset was drawn, `num`
        /// counts the stored hashes, and `interval` is within BEP 51's range.
        #[test]
        fn sample_replies_are_bounded_and_true(
            hashes in proptest::collection::vec(any::<u8>(), 0..120),
            times in proptest::collection::vec(0u64..100_000, 1..20),
            max_samples in 1usize..30,
            interval in 0u64..40_000,
            seed in any::<u64>(),
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut store = PeerStore::new(PeerStoreConfig { ttl: Duration::from_secs(1_000_000), ..PeerStoreConfig::default() });
            let mut stored = HashSet::new();
            for (i, h) in hashes.iter().enumerate() {
                let id = Id20([*h; 20]);
                store.insert(Time::ZERO, id, peer(i as u16));
                stored.insert(id);
            }
            let mut s = Sampler::new(SamplerConfig { interval: Duration::from_secs(interval), max_samples });
            let mut times = times;
            times.sort_unstable();
            for t in times {
                let r = s.sample(Time::from_secs(t), &store, &mut rng);
                prop_assert!(r.samples.len() <= max_samples);
                prop_assert_eq!(r.samples.len(), stored.len().min(max_samples));
                let distinct: HashSet<_> = r.samples.iter().collect();
                prop_assert_eq!(distinct.len(), r.samples.len());
                prop_assert!(r.samples.iter().all(|h| stored.contains(h)));
                prop_assert_eq!(r.num as usize, stored.len());
                prop_assert!((0..=21_600).contains(&r.interval));
            }
        }
    }
}
