//! Property tests of the choker's invariants under random peer behaviour.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;
use shoal_choker::{Choker, ChokerConfig, PeerStats};
use shoal_core::Time;

#[derive(Clone, Debug)]
struct Event {
    /// Seconds to advance (0..=15: calls happen between and on rounds).
    advance: u64,
    /// Per peer: (present, interested, am_interested, choking us, bytes down, got a block).
    peers: Vec<(bool, bool, bool, bool, u64, bool)>,
    seeding: bool,
}

fn event(n: usize) -> impl Strategy<Value = Event> {
    (
        0u64..=15,
        proptest::collection::vec(
            (
                proptest::bool::weighted(0.9),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                0u64..100_000,
                any::<bool>(),
            ),
            n,
        ),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(advance, peers, seeding)| Event {
            advance,
            peers,
            seeding,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn choker_invariants(events in proptest::collection::vec(event(10), 1..60), seed in any::<u64>()) {
        let cfg = ChokerConfig::default();
        let mut c: Choker<u32> = Choker::new(cfg, seed);
        let mut now = Time::ZERO;
        let mut down = [0u64; 10];
        let mut last_block = [None::<Time>; 10];
        let mut unchoked: BTreeSet<u32> = BTreeSet::new();
        let mut next_round = Time::ZERO;
        for ev in &events {
            now += Duration::from_secs(ev.advance);
            let mut stats = Vec::new();
            for (i, &(present, interested, am_interested, choking, bytes, block)) in ev.peers.iter().enumerate() {
                if !present {
                    unchoked.remove(&(i as u32));
                    down[i] = 0;
                    last_block[i] = None;
                    continue;
                }
                down[i] += bytes;
                if block {
                    last_block[i] = Some(now);
                }
                stats.push(PeerStats {
                    peer: i as u32,
                    downloaded: down[i],
                    uploaded: 0,
                    peer_interested: interested,
                    am_interested,
                    peer_choking: choking,
                    requests_out: 0,
                    connected_at: Time::ZERO,
                    last_block_at: last_block[i],
                });
            }
            let round = now >= next_round;
            let d = c.tick(now, ev.seeding, &stats);
            prop_assert!(d.next_call >= now);
            if round {
                next_round = now + cfg.round;
            } else {
                // Between rounds nothing is (un)choked.
                prop_assert!(d.unchoke.is_empty() && d.choke.is_empty());
            }
            prop_assert!(d.next_call <= next_round.max(now));
            // The diff is minimal and consistent with the previous state.
            for p in &d.unchoke {
                prop_assert!(!unchoked.contains(p), "{p} unchoked twice");
                prop_assert!(!d.choke.contains(p));
            }
            for p in &d.choke {
                prop_assert!(unchoked.contains(p), "{p} choked but was not unchoked");
            }
            for p in &d.unchoke {
                unchoked.insert(*p);
            }
            for p in &d.choke {
                unchoked.remove(p);
            }
            let mine: BTreeSet<u32> = c.unchoked().collect();
            prop_assert_eq!(&mine, &unchoked);
            if round {
                // Only interested peers hold slots, and never more than the slots there are.
                for p in &unchoked {
                    let s = stats.iter().find(|s| s.peer == *p).unwrap();
                    prop_assert!(s.peer_interested, "{p} unchoked while not interested");
                }
                prop_assert!(unchoked.len() <= cfg.regular_slots + cfg.optimistic_slots + 1);
            }
        }
    }
}
