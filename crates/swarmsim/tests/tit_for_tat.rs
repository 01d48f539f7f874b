//! Tit-for-tat on the real machine: peers that upload more download faster; a free rider (an
//! uplink of 0) lives on seeds and optimistic unchokes, and finishes among the last.

use shoal_core::Time;
use shoal_swarmsim::{PeerSpec, SimConfig, Swarm};

const KIB: u64 = 1024;
const FAST: std::ops::Range<usize> = 1..26;
const SLOW: std::ops::Range<usize> = 26..50;
const FREE_RIDER: usize = 50;

/// One seed at 512 KiB/s, 25 leechers uploading 160 KiB/s, 24 at 32 KiB/s, one free rider.
/// Leechers leave when done, so nobody lives on altruistic leecher-seeds: what a leecher gets
/// beyond the seed's round robin it must earn (or win optimistically).
#[test]
fn uploaders_are_rewarded_and_free_riders_are_not() {
    let mut peers = vec![PeerSpec {
        upload_rate: 512 * KIB,
        seed: true,
        ..PeerSpec::default()
    }];
    peers.extend(FAST.map(|_| PeerSpec {
        upload_rate: 160 * KIB,
        leave_when_done: true,
        ..PeerSpec::default()
    }));
    peers.extend(SLOW.map(|_| PeerSpec {
        upload_rate: 32 * KIB,
        leave_when_done: true,
        ..PeerSpec::default()
    }));
    peers.push(PeerSpec::default()); // its uplink carries nothing
    let cfg = SimConfig {
        seed: 3,
        ..SimConfig::default()
    };
    let mut swarm = Swarm::new(cfg, &peers);
    assert!(
        swarm.run_until_done(Time::from_secs(7200)),
        "not all leechers completed"
    );
    let st = swarm.stats();
    let done = |i: usize| st.completed_at[i].unwrap().since_origin().as_secs_f64();
    let avg = |r: std::ops::Range<usize>| r.clone().map(done).sum::<f64>() / r.len() as f64;
    let (fast, slow, rider) = (avg(FAST), avg(SLOW), done(FREE_RIDER));
    let mut order: Vec<f64> = (1..=FREE_RIDER).map(done).collect();
    order.sort_by(f64::total_cmp);
    let rank = order.iter().position(|&t| t == rider).unwrap() + 1;
    let got = st.received[FREE_RIDER] as f64;
    let from_seed = st.from_seeds[FREE_RIDER] as f64 / got;
    println!("average completion: fast uploaders {fast:.0} s, slow uploaders {slow:.0} s");
    println!(
        "free rider: done at {rider:.0} s, {rank}th of 50; {:.0} % of its data from the seed, \
         {:.0} % from leechers (optimistic unchokes and free slots: it never reciprocated)",
        from_seed * 100.0,
        (1.0 - from_seed) * 100.0
    );
    assert_eq!(st.uploaded[FREE_RIDER], 0);
    assert!(fast < 0.85 * slow, "fast {fast:.0} s vs slow {slow:.0} s");
    assert!(rank >= 45, "free rider finished {rank}th of 50");
}
