//! A seeder whose upload is the bottleneck (the `shoal swarm --seed-rate` case): the swarm should
//! finish close to the Kumar–Ross bound F/u_s, which needs the seed to send each piece about
//! once. Seed suggestions (`crates/torrent/src/suggest.rs`) are what gets it there.

use shoal_core::Time;
use shoal_swarmsim::{PeerSpec, SimConfig, Swarm};
use std::time::Duration;

const KIB: u64 = 1024;

#[test]
fn capped_seed_finishes_near_the_bound() {
    let pieces = 256u32;
    let piece_len = 256 * KIB as u32;
    let seed_rate = 1024 * KIB;
    let mut specs = vec![PeerSpec {
        upload_rate: seed_rate,
        seed: true,
        ..PeerSpec::default()
    }];
    specs.extend((0..16).map(|_| PeerSpec {
        upload_rate: 16 * 1024 * KIB,
        ..PeerSpec::default()
    }));
    let cfg = SimConfig {
        pieces,
        piece_len,
        latency: Duration::from_millis(1),
        ..SimConfig::default()
    };
    let mut swarm = Swarm::new(cfg, &specs);
    assert!(swarm.run_until_done(Time::from_secs(3600)));
    let st = swarm.stats();
    let last = st.completed_at.iter().map(|t| t.unwrap()).max().unwrap();
    let bound = pieces as f64 * piece_len as f64 / seed_rate as f64;
    let wasted: u64 = st.wasted.iter().sum();
    let received: u64 = st.received.iter().sum();
    // How many leechers got blocks of each piece from the seed.
    let mut per_piece = vec![std::collections::BTreeSet::new(); pieces as usize];
    for (d, src) in st.block_source.iter().enumerate() {
        for (b, &u) in src {
            if u == 0 {
                per_piece[b.piece as usize].insert(d);
            }
        }
    }
    let mut hist = std::collections::BTreeMap::new();
    for s in &per_piece {
        *hist.entry(s.len()).or_insert(0) += 1;
    }
    println!("pieces by number of leechers served by the seed: {hist:?}");
    println!(
        "last done {:.1} s = {:.3}x the bound {bound:.0} s; seed copies at distribution {:.3}; \
         seed uploaded {:.3} copies in all; duplicates {:.2} %",
        last.since_origin().as_secs_f64(),
        last.since_origin().as_secs_f64() / bound,
        st.seed_copies_at_distribution.unwrap(),
        st.uploaded[0] as f64 / (pieces as f64 * piece_len as f64),
        100.0 * wasted as f64 / received as f64
    );
    // Measured: 1.41x the bound and 1.30 seed copies before the seed suggested pieces (BEP 6),
    // 1.25x and 1.21 copies with suggestions, 1.10x and 1.08 copies once a request that no
    // other peer could take stopped being sent to the same peer again at its deadline
    // (`expire_requests`). What is left is the last few pieces, which every unchoked downloader
    // wants from the seed at once.
    let copies = st.seed_copies_at_distribution.unwrap();
    assert!(
        copies < 1.25,
        "seed uploaded {copies:.3} copies before distribution"
    );
    assert!(last.since_origin().as_secs_f64() < 1.3 * bound);
}
