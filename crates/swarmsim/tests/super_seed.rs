//! Super-seeding (BEP 16, `crates/torrent/src/superseed.rs`) on the shipped machine: one initial
//! seed and many leechers. What the seed uploads before the leechers hold every piece between
//! them is measured in copies of the file, with super-seeding and with rarest first alone; the
//! seed then leaves at that moment, and every leecher must still complete.
//!
//! `cargo test --release -p shoal-swarmsim --test super_seed -- --nocapture --include-ignored`
//! prints the figures (the 1,000-leecher runs are `#[ignore]`d: about a minute in release).

use std::time::Instant;

use shoal_core::Time;
use shoal_swarmsim::{PeerSpec, SimConfig, Swarm};

const KIB: u64 = 1024;

/// What one run measured.
struct Outcome {
    /// The seed's upload when the leechers first held every piece, in copies of the file.
    copies: f64,
    /// When that was (simulated seconds).
    distributed_at: f64,
    /// When the last leecher completed, the seed gone since `distributed_at`.
    last_done: f64,
    /// Leechers that completed.
    done: usize,
}

fn run(leechers: usize, pieces: u32, super_seed: bool, seed: u64) -> Outcome {
    let mut peers = vec![PeerSpec {
        upload_rate: 128 * KIB,
        seed: true,
        super_seed,
        ..PeerSpec::default()
    }];
    peers.extend((0..leechers).map(|i| PeerSpec {
        upload_rate: 64 * KIB + (i as u64 % 5) * 32 * KIB,
        ..PeerSpec::default()
    }));
    let cfg = SimConfig {
        pieces,
        seed,
        ..SimConfig::default()
    };
    let wall = Instant::now();
    let mut swarm = Swarm::new(cfg, &peers);
    let limit = Time::from_secs(4 * 3600);
    let distributed = swarm.run_until(limit, |s| s.stats().distributed_at.is_some());
    assert!(distributed, "the leechers never held every piece");
    // The seed leaves the moment the swarm is self-sufficient.
    swarm.kill(0);
    let all_done = swarm.run_until_done(limit);
    let st = swarm.stats();
    let done = st.completed_at[1..].iter().filter(|t| t.is_some()).count();
    let out = Outcome {
        copies: st.seed_copies_at_distribution.unwrap_or(f64::NAN),
        distributed_at: st
            .distributed_at
            .map_or(f64::NAN, |t| t.since_origin().as_secs_f64()),
        last_done: st.completed_at[1..]
            .iter()
            .flatten()
            .map(|t| t.since_origin().as_secs_f64())
            .fold(0.0, f64::max),
        done,
    };
    println!(
        "1 seed + {leechers} leechers, {pieces} pieces of 64 KiB, {}: the seed uploaded {:.3} \
         copies before the leechers held every piece (at {:.0} s); it left then; {done} of \
         {leechers} completed, the last at {:.0} s; {:.1} s of wall time",
        if super_seed {
            "super-seeding"
        } else {
            "rarest first alone"
        },
        out.copies,
        out.distributed_at,
        out.last_done,
        wall.elapsed().as_secs_f64()
    );
    assert!(
        all_done,
        "{done} of {leechers} completed after the seed left"
    );
    out
}

fn compare(leechers: usize, pieces: u32, seed: u64) {
    let plain = run(leechers, pieces, false, seed);
    let sup = run(leechers, pieces, true, seed);
    assert_eq!(sup.done, leechers);
    assert!(
        sup.copies <= 1.05,
        "super-seeding uploaded {:.3} copies before distribution (rarest first alone: {:.3})",
        sup.copies,
        plain.copies
    );
}

#[test]
fn super_seed_with_fifty_leechers_uploads_each_piece_about_once() {
    compare(50, 128, 11);
}

#[test]
#[ignore = "about a minute in release; run with --include-ignored"]
fn super_seed_with_a_thousand_leechers_uploads_each_piece_about_once() {
    compare(1000, 128, 12);
}

/// One leecher alone must not be starved: it completes from the super-seeder alone, which then
/// uploads the file once.
#[test]
fn a_lone_leecher_completes_from_a_super_seeder() {
    let peers = [
        PeerSpec {
            upload_rate: 256 * KIB,
            seed: true,
            super_seed: true,
            ..PeerSpec::default()
        },
        PeerSpec {
            upload_rate: 64 * KIB,
            ..PeerSpec::default()
        },
    ];
    let cfg = SimConfig {
        pieces: 64,
        ..SimConfig::default()
    };
    let mut swarm = Swarm::new(cfg, &peers);
    assert!(swarm.run_until_done(Time::from_secs(600)));
    let st = swarm.stats();
    let took = st.completed_at[1].unwrap().since_origin().as_secs_f64();
    let bound = swarm.file_len() as f64 / (256 * KIB) as f64;
    println!("a lone leecher: done in {took:.1} s (the seed's uplink alone: {bound:.0} s)");
    assert_eq!(st.uploaded[0], swarm.file_len(), "each piece sent once");
    // Not starved: it is not paced by the offer timeout (64 pieces, two at a time, 30 s each).
    assert!(took < 4.0 * bound, "took {took:.1} s");
}
