//! Peers that misbehave through no fault of their own: a flapping link, a seeder that freezes,
//! the only seeder killed and replaced. All on the real machine, in simulated time.

use std::time::Duration;

use shoal_core::Time;
use shoal_swarmsim::{PeerSpec, SimConfig, Swarm};

const KIB: u64 = 1024;

/// A leecher whose link drops every connection every 30 s, for an hour: it is reconnected
/// (both ways: it redials, and the others redial its listen address) and served throughout. The
/// peer book never gives up an address whose connections exchanged data.
#[test]
fn a_flapping_peer_is_reconnected_and_served_for_an_hour() {
    const FLAPPER: usize = 3;
    let mut peers = vec![PeerSpec {
        upload_rate: 8 * KIB,
        seed: true,
        ..PeerSpec::default()
    }];
    peers.extend((0..3).map(|_| PeerSpec {
        upload_rate: 4 * KIB,
        ..PeerSpec::default()
    }));
    peers[FLAPPER].flap_every = Some(Duration::from_secs(30));
    // 64 MiB at a few KiB/s: nobody finishes within the hour.
    let cfg = SimConfig {
        pieces: 256,
        piece_len: 256 * 1024,
        seed: 8,
        ..SimConfig::default()
    };
    let mut swarm = Swarm::new(cfg, &peers);
    let mut windows = Vec::new();
    let mut last = 0;
    for m in (10..=60).step_by(10) {
        swarm.run_until(Time::from_secs(m * 60), |_| false);
        let got = swarm.stats().received[FLAPPER];
        windows.push(got - last);
        last = got;
    }
    // The last flap was at 3600 s: give it its 2 s of back-off and the dial.
    swarm.run_until(Time::from_secs(3615), |_| false);
    let st = swarm.stats();
    let flaps = 3600 / 30;
    println!(
        "flapping peer over an hour: {flaps} flaps, {} connections set up, {:.1} MiB received \
         (per 10 min: {:?} KiB), connected to {:?} 15 s after the last flap",
        st.connections[FLAPPER],
        st.received[FLAPPER] as f64 / (1024.0 * 1024.0),
        windows.iter().map(|b| b / 1024).collect::<Vec<_>>(),
        swarm.connected_to(FLAPPER)
    );
    // Reconnected after (nearly) every flap, to the seed and the others.
    assert!(
        st.connections[FLAPPER] >= flaps * 2,
        "{}",
        st.connections[FLAPPER]
    );
    assert!(
        windows.iter().all(|&b| b > 0),
        "starved in a window: {windows:?}"
    );
    assert!(!swarm.connected_to(FLAPPER).is_empty());
}

/// Two seeders, one freezes mid-download (SIGSTOP: connections up and silent). Seconds lost
/// against the ideal: the remaining bytes at the good seeder's rate.
#[test]
fn a_frozen_seeder_costs_seconds_not_its_deadlines() {
    let rate = 4_000_000;
    let peers = vec![
        PeerSpec {
            upload_rate: rate,
            seed: true,
            ..PeerSpec::default()
        },
        PeerSpec {
            upload_rate: rate,
            seed: true,
            freeze_at: Some(Time::from_secs(1)),
            ..PeerSpec::default()
        },
        PeerSpec::default(),
    ];
    // 128 pieces of 256 KiB: 32 MiB, frozen at 1 s (about a quarter done).
    let cfg = SimConfig {
        pieces: 128,
        piece_len: 256 * 1024,
        seed: 9,
        ..SimConfig::default()
    };
    let mut swarm = Swarm::new(cfg, &peers);
    swarm.run_until(Time::from_secs(1), |_| false);
    let had = swarm.progress(2);
    assert!(swarm.run_until_done(Time::from_secs(120)));
    let took = swarm.stats().completed_at[2]
        .unwrap()
        .saturating_since(Time::from_secs(1))
        .as_secs_f64();
    let ideal = (1.0 - had) * swarm.file_len() as f64 / rate as f64;
    println!(
        "frozen seeder: {:.0} % done at the freeze; finished {took:.2} s later, ideal {ideal:.2} s, \
         lost {:.2} s",
        had * 100.0,
        took - ideal
    );
    assert!(took - ideal <= 2.0, "lost {:.2} s", took - ideal);
}

/// The only seeder is killed when the leechers hold half the file between them and a new
/// seeder starts that moment (it gets a tracker sample and dials). Time to finish, against the
/// same swarm whose seeder stays.
#[test]
fn a_replaced_seeder_takes_over() {
    fn swarm(replace: bool) -> (f64, Option<f64>) {
        let mut peers = vec![PeerSpec {
            upload_rate: 256 * KIB,
            seed: true,
            ..PeerSpec::default()
        }];
        peers.extend((0..10).map(|_| PeerSpec {
            upload_rate: 64 * KIB,
            ..PeerSpec::default()
        }));
        let cfg = SimConfig {
            seed: 10,
            ..SimConfig::default()
        };
        let mut s = Swarm::new(cfg, &peers);
        let half = |s: &Swarm| (1..11).map(|i| s.progress(i)).sum::<f64>() / 10.0 >= 0.5;
        assert!(s.run_until(Time::from_secs(3600), half));
        let at = s.now();
        if replace {
            s.kill(0);
            s.add_peer(PeerSpec {
                upload_rate: 256 * KIB,
                seed: true,
                ..PeerSpec::default()
            });
        }
        let done = s.run_until_done(at + Duration::from_secs(3600));
        let last = s.stats().completed_at[1..11]
            .iter()
            .map(|t| t.unwrap())
            .max()
            .unwrap();
        let dial_back = s
            .stats()
            .joined_at
            .get(11)
            .map(|_| s.stats().connections[11] as f64);
        assert!(done);
        (last.saturating_since(at).as_secs_f64(), dial_back)
    }
    let (base, _) = swarm(false);
    let (replaced, conns) = swarm(true);
    println!(
        "seeder killed at 50 % and replaced: the 10 leechers finished {replaced:.1} s later \
         ({base:.1} s with the seeder kept, {:.1} s lost); the new seeder set up {} connections",
        replaced - base,
        conns.unwrap_or(0.0)
    );
    assert!(replaced - base <= 30.0, "lost {:.1} s", replaced - base);
}
