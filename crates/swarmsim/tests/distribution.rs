//! 1 seed + 50 leechers: every leecher completes, and rarest first needs the fewest seed uploads
//! before the leechers hold the whole file between them.

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
             (at {} s); last leecher done at {} s",
            dist.since_origin().as_secs(),
            last.since_origin().as_secs()
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

#[test]
fn leechers_finish_after_the_seed_leaves_at_one_and_a_half_copies() {
    let mut peers = specs(50);
    peers[0].leave_after_copies = Some(1.5);
    let cfg = SimConfig {
        seed: 2,
        ..SimConfig::default()
    };
    let mut swarm = Swarm::new(cfg, &peers);
    assert!(
        swarm.run_until_done(Time::from_secs(3600)),
        "leechers stuck after the seed left"
    );
    let st = swarm.stats();
    let left = st.departed_at[0].expect("the seed left");
    let last = st.completed_at.iter().map(|t| t.unwrap()).max().unwrap();
    println!(
        "seed left at {} s after {:.2} copies; last of 50 leechers done at {} s",
        left.since_origin().as_secs(),
        st.uploaded[0] as f64 / swarm.file_len() as f64,
        last.since_origin().as_secs()
    );
    // It really left before the end, so the leechers finished among themselves.
    assert!(left < last);
    assert!(st.completed_at[1..].iter().all(Option::is_some));
}
