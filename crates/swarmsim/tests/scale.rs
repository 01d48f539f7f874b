//! Big swarms on the real machine: one seed and hundreds of leechers, each connected to at most
//! 50 peers (tracker samples, then incoming connections and PEX). Everyone completes. The seed's
//! upload before the leechers hold every piece is 1.10 (300) and 1.18 (1,000) copies, not 1:
//! each leecher's rarest-first sees its 50 neighbours, not the swarm, and the seed serves
//! duplicates (super-seeding, `super_seed.rs`, avoids them). It was 2.1 before a request that
//! no other peer could take stopped being re-sent to the same peer at its deadline.

use std::time::Instant;

use shoal_core::Time;
use shoal_swarmsim::{PeerSpec, SimConfig, Swarm};

const KIB: u64 = 1024;

fn run(leechers: usize, seed: u64) {
    let mut peers = vec![PeerSpec {
        upload_rate: 128 * KIB,
        seed: true,
        ..PeerSpec::default()
    }];
    peers.extend((0..leechers).map(|i| PeerSpec {
        upload_rate: 64 * KIB + (i as u64 % 5) * 32 * KIB,
        ..PeerSpec::default()
    }));
    // 64 pieces of 64 KiB: 4 MiB.
    let cfg = SimConfig {
        pieces: 64,
        seed,
        ..SimConfig::default()
    };
    let wall = Instant::now();
    let mut swarm = Swarm::new(cfg, &peers);
    let done = swarm.run_until_done(Time::from_secs(3600));
    let st = swarm.stats();
    let finished = st.completed_at[1..].iter().filter(|t| t.is_some()).count();
    let mut times: Vec<f64> = st.completed_at[1..]
        .iter()
        .flatten()
        .map(|t| t.since_origin().as_secs_f64())
        .collect();
    times.sort_by(f64::total_cmp);
    let copies = st.seed_copies_at_distribution.unwrap_or(f64::NAN);
    let file = swarm.file_len() as f64;
    let sent: u64 = st.uploaded.iter().sum();
    println!(
        "{leechers} leechers + 1 seed: {finished} done, median {:.0} s, last {:.0} s; the seed \
         uploaded {copies:.2} copies before they held every piece (at {:.0} s); {:.2} bytes sent \
         per byte needed; {:.1} s of wall time",
        times.get(times.len() / 2).copied().unwrap_or(f64::NAN),
        times.last().copied().unwrap_or(f64::NAN),
        st.distributed_at
            .map_or(f64::NAN, |t| t.since_origin().as_secs_f64()),
        sent as f64 / (file * leechers as f64),
        wall.elapsed().as_secs_f64()
    );
    assert!(done, "{finished} of {leechers} completed");
    // Not the ~1 copy hoped for (see the module docs): measured 1.10-1.18.
    assert!(copies < 3.0, "seed copies {copies:.2}");
}

#[test]
fn three_hundred_peers_complete() {
    run(300, 5);
}

#[test]
fn a_thousand_peers_complete() {
    run(1000, 6);
}
