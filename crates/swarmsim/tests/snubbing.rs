//! Anti-snubbing: a peer that stops sending is snubbed within 60 s and what it owed is fetched
//! from others.

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_core::Time;
use shoal_swarmsim::{PeerSpec, SimConfig, Swarm};

const KIB: u64 = 1024;
const STALLER: usize = 1;

#[test]
fn a_silent_peer_is_snubbed_and_its_blocks_fetched_elsewhere() {
    let stall = Time::from_secs(30);
    let mut peers = vec![
        PeerSpec {
            upload_rate: 128 * KIB,
            seed: true,
            ..PeerSpec::default()
        },
        // A second seed that goes silent at 30 s but keeps its connections and unchokes.
        PeerSpec {
            upload_rate: 128 * KIB,
            seed: true,
            stall_at: Some(stall),
            ..PeerSpec::default()
        },
    ];
    peers.extend((0..12).map(|_| PeerSpec {
        upload_rate: 64 * KIB,
        ..PeerSpec::default()
    }));
    let cfg = SimConfig {
        seed: 4,
        // Far beyond the snub limit, so only snubbing can free the stalled requests.
        request_timeout: Duration::from_secs(600),
        ..SimConfig::default()
    };
    let n = peers.len();
    let mut swarm = Swarm::new(cfg, &peers);
    let mut guard = 0;
    while swarm.now() < stall {
        swarm.step();
        guard += 1;
        assert!(guard < 1000);
    }
    // What each leecher was waiting for from the staller when it went silent.
    let owed: BTreeMap<usize, Vec<_>> = (2..n)
        .map(|d| (d, swarm.queued(STALLER, d)))
        .filter(|(_, q)| !q.is_empty())
        .collect();
    assert!(!owed.is_empty(), "nobody was waiting on the staller");
    assert!(
        swarm.run_until_done(Time::from_secs(3600)),
        "leechers did not complete"
    );
    let st = swarm.stats();
    let mut worst = Duration::ZERO;
    for (&d, blocks) in &owed {
        let ev = st
            .snubs
            .iter()
            .find(|e| e.by == d && e.peer == STALLER)
            .unwrap_or_else(|| panic!("peer {d} never snubbed the staller"));
        let delay = ev.at.saturating_since(stall);
        worst = worst.max(delay);
        assert!(delay <= Duration::from_secs(60), "peer {d} took {delay:?}");
        assert!(ev.freed > 0, "peer {d}'s snub freed nothing");
        for b in blocks {
            let from = st.block_source[d][b];
            assert_ne!(from, STALLER, "peer {d} got {b:?} from the staller");
        }
    }
    println!(
        "{} leechers were waiting on the staller; all snubbed it within {} s of it going silent; \
         their {} owed blocks came from other peers",
        owed.len(),
        worst.as_secs(),
        owed.values().map(Vec::len).sum::<usize>()
    );
    // Nobody snubbed a peer that kept sending.
    assert!(st.snubs.iter().all(|e| e.peer == STALLER), "{:?}", st.snubs);
}
