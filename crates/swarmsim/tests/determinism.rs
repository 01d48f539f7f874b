//! Same seed, same run: every figure of a simulation is a function of its seed.

use shoal_core::Time;
use shoal_swarmsim::{PeerSpec, SimConfig, Stats, Swarm};

const KIB: u64 = 1024;

fn run(seed: u64) -> Stats {
    let mut peers = vec![PeerSpec {
        upload_rate: 128 * KIB,
        seed: true,
        ..PeerSpec::default()
    }];
    peers.extend((0..30).map(|i| PeerSpec {
        upload_rate: 32 * KIB + (i as u64 % 4) * 32 * KIB,
        leave_when_done: i % 7 == 0,
        ..PeerSpec::default()
    }));
    peers[5].flap_every = Some(std::time::Duration::from_secs(20));
    peers[9].freeze_at = Some(Time::from_secs(15));
    let cfg = SimConfig {
        pieces: 64,
        seed,
        ..SimConfig::default()
    };
    let mut swarm = Swarm::new(cfg, &peers);
    assert!(swarm.run_until_done(Time::from_secs(1800)));
    swarm.stats().clone()
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let a = run(11);
    let b = run(11);
    let c = run(12);
    let last = |s: &Stats| s.completed_at.iter().flatten().max().copied().unwrap();
    println!(
        "seed 11 twice: last leecher at {:?} both times, {} cancels, {} connections; seed 12: \
         last at {:?}",
        last(&a).since_origin(),
        a.cancels.len(),
        a.connections.iter().sum::<u32>(),
        last(&c).since_origin()
    );
    assert!(a == b, "two runs of seed 11 differ");
    assert!(a != c, "seeds 11 and 12 gave the same run");
}
