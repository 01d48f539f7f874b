//! A peer that goes silent (frozen, connections up) loses its requests to the others: the
//! machine's stall detector releases them within seconds, the choker's snub (20 s) keeps it to
//! one request, and the silent connection is dropped in the end. Its blocks come from others.

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
        // A second seed that freezes at 30 s but keeps its connections.
        PeerSpec {
            upload_rate: 128 * KIB,
            seed: true,
            freeze_at: Some(stall),
            ..PeerSpec::default()
        },
    ];
    peers.extend((0..12).map(|_| PeerSpec {
        upload_rate: 64 * KIB,
        ..PeerSpec::default()
    }));
    let cfg = SimConfig {
        seed: 4,
        ..SimConfig::default()
    };
    let n = peers.len();
    let mut swarm = Swarm::new(cfg, &peers);
    let before = Time::from_secs(28);
    swarm.run_until(before, |_| false);
    let snap: Vec<u64> = (0..n)
        .map(|d| {
            swarm.stats().bytes_from[d]
                .get(&STALLER)
                .copied()
                .unwrap_or(0)
        })
        .collect();
    swarm.run_until(stall, |_| false);
    // The leechers the staller was serving when it froze.
    let served: Vec<usize> = (2..n)
        .filter(|&d| {
            let now = swarm.stats().bytes_from[d]
                .get(&STALLER)
                .copied()
                .unwrap_or(0);
            now > snap[d] && swarm.stats().completed_at[d].is_none()
        })
        .collect();
    assert!(!served.is_empty(), "nobody was being served by the staller");
    assert!(
        swarm.run_until_done(Time::from_secs(3600)),
        "leechers did not complete"
    );
    let st = swarm.stats();
    let mut released = BTreeMap::new();
    for &d in &served {
        let at = st
            .cancels
            .iter()
            .find(|c| c.by == d && c.peer == STALLER && c.at >= stall)
            .map(|c| c.at.saturating_since(stall))
            .unwrap_or_else(|| panic!("peer {d} never released its requests to the staller"));
        released.insert(d, at);
        // Nothing it wrote after the freeze came from the staller (it sent nothing).
        let late = st.block_source[d]
            .iter()
            .filter(|(_, &from)| from == STALLER)
            .count();
        assert!(late as u64 * 16384 <= st.bytes_from[d][&STALLER]);
    }
    let worst = released.values().max().copied().unwrap();
    let dropped: Vec<Duration> = st
        .closed
        .iter()
        .filter(|c| c.2 == STALLER)
        .map(|c| c.0.saturating_since(stall))
        .collect();
    println!(
        "{} leechers were being served by the staller; they released its requests {:.1}..{:.1} s \
         after it froze (stall detector); {} dropped the silent connection, after {:.0}..{:.0} s \
         ({:?})",
        served.len(),
        released.values().min().unwrap().as_secs_f64(),
        worst.as_secs_f64(),
        dropped.len(),
        dropped.iter().min().map_or(0.0, Duration::as_secs_f64),
        dropped.iter().max().map_or(0.0, Duration::as_secs_f64),
        st.closed
            .iter()
            .filter(|c| c.2 == STALLER)
            .map(|c| c.3.as_str())
            .collect::<std::collections::BTreeSet<_>>()
    );
    // Well inside the old 60 s snub limit: the stall detector acts within seconds.
    assert!(worst <= Duration::from_secs(10), "worst {worst:?}");
    // Nobody closed a connection to a peer that kept sending.
    assert!(
        st.closed.iter().all(|c| c.2 == STALLER || c.1 == STALLER),
        "{:?}",
        st.closed
    );
}
