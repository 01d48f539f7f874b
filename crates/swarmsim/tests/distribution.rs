//! 1 seed + 50 leechers on the real torrent machine: every leecher completes, and rarest first
//! needs the fewest seed uploads before the leechers hold the whole file between them.

use shoal_core::Time;
use shoal_swarmsim::{PeerSpec, PickMode, SimConfig, Swarm};

const KIB: u64 = 1024;

fn specs(leechers: usize) -> Vec<PeerSpec> {
    let mut v = vec![PeerSpec {
        upload_rate: 128 * KIB,
        seed: true,
        ..PeerSpec::default()
    }];
    // Leechers upload 64 to 128 KiB/s.
    v.extend((0..leechers).map(|i| PeerSpec {
        upload_rate: 64 * KIB + (i as u64 % 5) * 16 * KIB,
        ..PeerSpec::default()
    }));
    v
}

fn run(mode: PickMode, seed: u64) -> (f64, Time, Time) {
    let cfg = SimConfig {
        mode,
        seed,
        ..SimConfig::default()
    };
    let mut swarm = Swarm::new(cfg, &specs(50));
    assert!(
        swarm.run_until_done(Time::from_secs(3600)),
        "{mode:?}: not all leechers completed"
    );
    let st = swarm.stats();
    let last = st.completed_at.iter().map(|t| t.unwrap()).max().unwrap();
    (
        st.seed_copies_at_distribution.expect("distributed"),
        st.distributed_at.unwrap(),
        last,
    )
}

#[test]
fn rarest_first_needs_the_fewest_seed_copies() {
    let mut figures = Vec::new();
    for mode in [
        PickMode::RarestFirst,
        PickMode::Random,
        PickMode::Sequential,
    ] {
        let (copies, dist, last) = run(mode, 1);
        println!(
            "{mode:?}: seed uploaded {copies:.2} copies before the leechers held every piece \
             (at {:.1} s); last leecher done at {:.1} s",
            dist.since_origin().as_secs_f64(),
            last.since_origin().as_secs_f64()
        );
        figures.push(copies);
    }
    let (rarest, random, sequential) = (figures[0], figures[1], figures[2]);
    // A clear margin: at least 20 % fewer seed uploads than either alternative.
    assert!(
        rarest < 0.8 * random,
        "rarest {rarest:.2} vs random {random:.2}"
    );
    assert!(
        rarest < 0.8 * sequential,
        "rarest {rarest:.2} vs sequential {sequential:.2}"
    );
}

/// The seed leaves once it has uploaded `copies` copies; returns (left at, seed copies at
/// distribution, last leecher done at, leechers done).
fn seed_leaves(copies: f64) -> (Time, Option<f64>, Option<Time>, usize) {
    let mut peers = specs(50);
    peers[0].leave_after_copies = Some(copies);
    let cfg = SimConfig {
        seed: 2,
        ..SimConfig::default()
    };
    let mut swarm = Swarm::new(cfg, &peers);
    swarm.run_until_done(Time::from_secs(1800));
    let st = swarm.stats();
    let left = st.departed_at[0].expect("the seed left");
    let done = st.completed_at[1..].iter().filter(|t| t.is_some()).count();
    let last = (done == 50).then(|| st.completed_at.iter().map(|t| t.unwrap()).max().unwrap());
    (left, st.seed_copies_at_distribution, last, done)
}

/// The seed leaves at 1.5 copies (before the swarm is done): the leechers already hold every
/// piece between them, so they all finish among themselves.
#[test]
fn leechers_finish_after_the_seed_leaves_at_one_and_a_half_copies() {
    let (left, dist, last, done) = seed_leaves(1.5);
    println!(
        "seed left at {:.1} s after 1.5 copies (distribution needed {}): {done} of 50 leechers \
         done, the last at {:.1} s",
        left.since_origin().as_secs_f64(),
        dist.map_or("more".to_string(), |c| format!("{c:.2}")),
        last.map_or(f64::NAN, |t| t.since_origin().as_secs_f64())
    );
    let last = last.expect("leechers stuck after the seed left at 1.5 copies");
    // It really left before the end, so the leechers finished among themselves.
    assert!(left < last);
    assert!(dist.is_some_and(|d| d <= 1.5));
}
