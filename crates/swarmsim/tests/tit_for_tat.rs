//! Tit-for-tat: peers that upload more download faster; a free rider lives on optimistic
//! unchokes and seeds, and finishes among the last.

use shoal_core::Time;
use shoal_swarmsim::{PeerSpec, SimConfig, Swarm};

const KIB: u64 = 1024;
const FAST: std::ops::Range<usize> = 1..26;
const SLOW: std::ops::Range<usize> = 26..50;
const FREE_RIDER: usize = 50;

/// One seed at 512 KiB/s, 25 leechers uploading 160 KiB/s, 24 at 32 KiB/s, one free rider.
/// Leechers leave when done, so nobody lives on altruistic leecher-seeds: what a leecher gets
/// beyond the seed's round robin it must earn (or win optimistically). With the default 128 KiB/s
/// seed and leechers staying to seed, the swarm is limited by the seed's first copy and every
/// group finishes within a few seconds of the others, which shows little about reciprocation.
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
    peers.push(PeerSpec::default()); // uploads nothing
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
    let total = (st.from_seeds[FREE_RIDER]
        + st.from_optimistic[FREE_RIDER]
        + st.from_regular[FREE_RIDER]) as f64;
    let unearned = (st.from_seeds[FREE_RIDER] + st.from_optimistic[FREE_RIDER]) as f64 / total;
    println!("average completion: fast uploaders {fast:.0} s, slow uploaders {slow:.0} s");
    println!(
        "free rider: done at {rider:.0} s, {rank}th of 50; {:.0} % of its data from seeds and \
         optimistic unchokes ({:.0} % seeds, {:.0} % optimistic)",
        unearned * 100.0,
        st.from_seeds[FREE_RIDER] as f64 / total * 100.0,
        st.from_optimistic[FREE_RIDER] as f64 / total * 100.0
    );
    assert!(fast < 0.85 * slow, "fast {fast:.0} s vs slow {slow:.0} s");
    assert!(rank >= 45, "free rider finished {rank}th of 50");
    assert!(
        unearned > 0.5,
        "free rider got {:.0} % from seeds/optimistic",
        unearned * 100.0
    );
}
