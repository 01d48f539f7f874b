//! Unit tests of the choking rules.

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_core::Time;

use crate::*;

fn t(s: u64) -> Time {
    Time::from_secs(s)
}

/// An interested peer, connected long ago, that we do not want anything from.
fn peer(id: u32, downloaded: u64) -> PeerStats<u32> {
    PeerStats {
        peer: id,
        downloaded,
        uploaded: 0,
        peer_interested: true,
        am_interested: false,
        peer_choking: true,
        requests_out: 0,
        connected_at: Time::ZERO,
        last_block_at: None,
    }
}

fn choker() -> Choker<u32> {
    Choker::new(ChokerConfig::default(), 42)
}

#[test]
fn tit_for_tat_unchokes_the_best_uploaders_to_us() {
    let mut c = choker();
    let now = t(1000);
    let peers: Vec<_> = (0..8).map(|i| peer(i, u64::from(i) * 1000)).collect();
    let d = c.tick(now, false, &peers);
    assert_eq!(d.unchoke.len(), 5, "4 regular + 1 optimistic: {d:?}");
    for best in 4..8 {
        assert!(c.is_unchoked(best) && !c.is_optimistic(best), "{best}");
    }
    let opt: Vec<u32> = (0..4).filter(|&p| c.is_optimistic(p)).collect();
    assert_eq!(opt.len(), 1);
    assert!(d.choke.is_empty());
    assert_eq!(d.next_call, now + Duration::from_secs(10));

    // Rates change: peer 0 becomes the best sender, peer 4 the worst of the old top four.
    let mut peers2 = peers.clone();
    peers2[0].downloaded += 100_000;
    let d2 = c.tick(t(1010), false, &peers2);
    assert!(c.is_unchoked(0));
    // The 20 s window still holds peer 4's first round, but peer 0's 100 kB beats it.
    assert!(d2.choke.len() <= 1, "{d2:?}");
    assert_eq!(c.unchoked().count(), 5);
}

#[test]
fn uninterested_peers_are_never_unchoked() {
    let mut c = choker();
    let mut peers: Vec<_> = (0..8).map(|i| peer(i, 1_000_000 * u64::from(i))).collect();
    for p in peers.iter_mut().filter(|p| p.peer >= 5) {
        p.peer_interested = false; // the best senders, but they want nothing from us
    }
    for round in 0..12u64 {
        c.tick(t(round * 10), false, &peers);
        for p in 5..8 {
            assert!(!c.is_unchoked(p));
        }
    }
    // Peer 4 loses interest: choked at the next round.
    assert!(c.is_unchoked(4));
    peers[4].peer_interested = false;
    let d = c.tick(t(120), false, &peers);
    assert!(d.choke.contains(&4));
    assert!(!c.is_unchoked(4));
}

#[test]
fn no_flapping_when_nothing_changes() {
    let mut c = choker();
    let peers: Vec<_> = (0..10).map(|i| peer(i, 5000)).collect();
    let first = c.tick(t(0), false, &peers);
    assert_eq!(first.unchoke.len(), 5);
    // Equal rates in later rounds (within the same optimistic period): nobody changes.
    let mut peers = peers;
    for round in 1..3u64 {
        for p in &mut peers {
            p.downloaded += 5000;
        }
        let d = c.tick(t(round * 10), false, &peers);
        assert!(
            d.unchoke.is_empty() && d.choke.is_empty(),
            "round {round}: {d:?}"
        );
    }
    // A call between rounds changes nothing either.
    let d = c.tick(t(25), false, &peers);
    assert!(d.unchoke.is_empty() && d.choke.is_empty());
    assert_eq!(d.next_call, t(30));
}

#[test]
fn optimistic_slot_rotates_every_30_seconds() {
    let mut c = choker();
    // Four strong senders fill the regular slots; twenty others compete for the optimistic one.
    let mut peers: Vec<_> = (0..24).map(|i| peer(i, 0)).collect();
    let mut history = Vec::new();
    for round in 0..60u64 {
        for p in peers.iter_mut().take(4) {
            p.downloaded += 1_000_000;
        }
        c.tick(t(round * 10), false, &peers);
        let opt: Vec<u32> = (4..24).filter(|&p| c.is_optimistic(p)).collect();
        assert_eq!(opt.len(), 1, "round {round}");
        assert!((0..4).all(|p| c.is_unchoked(p) && !c.is_optimistic(p)));
        history.push(opt[0]);
    }
    let mut changes = 0;
    for (i, w) in history.windows(2).enumerate() {
        let round = i as u64 + 1;
        if !round.is_multiple_of(3) {
            assert_eq!(w[0], w[1], "optimistic changed mid-period at round {round}");
        } else if w[0] != w[1] {
            changes += 1;
        }
    }
    // 19 rotations among 20 candidates: almost all draw someone new.
    assert!(changes >= 15, "{changes} changes");
}

#[test]
fn newcomers_are_three_times_as_likely_to_be_optimistic() {
    let cfg = ChokerConfig {
        regular_slots: 0,
        ..ChokerConfig::default()
    };
    let mut c = Choker::new(cfg, 7);
    let rotations = 6000u64;
    let mut wins: BTreeMap<u32, u64> = BTreeMap::new();
    for r in 0..rotations {
        let now = Time::from_secs(1000 + r * 30);
        // Peers 0 and 1 are always fresh (reconnected 10 s ago); peers 2..8 are old.
        let peers: Vec<_> = (0..8)
            .map(|i| PeerStats {
                connected_at: if i < 2 {
                    Time::from_secs(1000 + r * 30 - 10)
                } else {
                    Time::ZERO
                },
                ..peer(i, 0)
            })
            .collect();
        c.tick(now, false, &peers);
        for p in c.unchoked() {
            *wins.entry(p).or_default() += 1;
        }
    }
    let new = (wins[&0] + wins[&1]) as f64 / 2.0;
    let old = (2..8).map(|p| wins[&p]).sum::<u64>() as f64 / 6.0;
    let ratio = new / old;
    assert!((2.6..3.4).contains(&ratio), "newcomer/old ratio {ratio}");
}

/// `peers[0]` is a peer we download from that goes silent after t = 0.
#[test]
fn silent_peer_is_snubbed_after_60_seconds_and_loses_its_slot() {
    let mut c = choker();
    let mut peers: Vec<_> = (0..6).map(|i| peer(i, 1000)).collect();
    peers[0] = PeerStats {
        am_interested: true,
        peer_choking: false,
        requests_out: 4,
        last_block_at: Some(t(0)),
        downloaded: 10_000_000,
        ..peers[0]
    };
    let d = c.tick(t(0), false, &peers);
    assert!(d.snubbed.is_empty());
    assert!(c.is_unchoked(0) && !c.is_optimistic(0));
    assert_eq!(d.next_call, t(10));
    let mut snubbed_at = None;
    let mut now = t(0);
    for _ in 0..20 {
        let d = c.tick(now, false, &peers);
        if d.snubbed.contains(&0) {
            snubbed_at = Some(now);
            break;
        }
        assert!(d.next_call > now);
        now = d.next_call;
    }
    assert_eq!(
        snubbed_at,
        Some(t(60)),
        "snubbed exactly when 60 s of silence ran out"
    );
    assert!(c.is_snubbed(0));
    // At the next round it is no longer reciprocating, and two optimistic slots are in use.
    c.tick(t(70), false, &peers);
    assert!(!c.is_unchoked(0) || c.is_optimistic(0));
    assert_eq!((0..6).filter(|&p| c.is_optimistic(p)).count(), 2);
    // It delivers again: no longer snubbed; back to one optimistic slot.
    peers[0].last_block_at = Some(t(75));
    peers[0].downloaded += 1_000_000;
    c.tick(t(80), false, &peers);
    assert!(!c.is_snubbed(0));
    assert!(c.is_unchoked(0));
}

#[test]
fn not_snubbed_when_we_want_nothing() {
    let mut c = choker();
    let mut p = peer(0, 0);
    p.am_interested = false;
    p.peer_choking = false;
    let d = c.tick(t(500), false, &[p]);
    assert!(d.snubbed.is_empty());
    // Choked and no requests out: not our problem either.
    p.am_interested = true;
    p.peer_choking = true;
    let d = c.tick(t(510), false, &[p]);
    assert!(d.snubbed.is_empty() && !c.is_snubbed(0));
    // Choking but serving our (BEP 6) requests: counts.
    p.requests_out = 1;
    let d = c.tick(t(520), false, &[p]);
    assert!(d.snubbed.is_empty());
    let d = c.tick(t(580), false, &[p]);
    assert_eq!(d.snubbed, vec![0]);
}

#[test]
fn seed_gives_every_interested_peer_a_turn() {
    let mut c = choker();
    let peers: Vec<_> = (0..16).map(|i| peer(i, 0)).collect();
    let mut served = std::collections::BTreeSet::new();
    for round in 0..18u64 {
        // A free rider downloading at full speed would win `fastest_upload`; not round robin.
        let mut ps = peers.clone();
        ps[15].uploaded = round * 10_000_000;
        c.tick(t(round * 10), true, &ps);
        assert_eq!(c.unchoked().count(), 5);
        served.extend(c.unchoked());
    }
    assert_eq!(served.len(), 16, "served {served:?}");
}

#[test]
fn departed_peers_are_forgotten_without_a_choke() {
    let mut c = choker();
    let peers: Vec<_> = (0..3).map(|i| peer(i, 0)).collect();
    c.tick(t(0), false, &peers);
    assert!(c.is_unchoked(2));
    let d = c.tick(t(10), false, &peers[..2]);
    assert!(!d.choke.contains(&2));
    assert!(!c.is_unchoked(2));
}

#[test]
fn silence_counts_from_when_we_started_wanting() {
    let mut c = choker();
    // The last block came long ago, but the peer only unchoked us now.
    let mut p = PeerStats {
        am_interested: true,
        peer_choking: true,
        last_block_at: Some(t(10)),
        ..peer(0, 0)
    };
    c.tick(t(500), false, &[p]);
    p.peer_choking = false;
    let d = c.tick(t(505), false, &[p]);
    assert!(d.snubbed.is_empty());
    assert_eq!(d.next_call, t(510));
    let d = c.tick(t(564), false, &[p]);
    assert!(d.snubbed.is_empty());
    let d = c.tick(t(565), false, &[p]);
    assert_eq!(d.snubbed, vec![0]);
}

#[test]
fn free_slots_are_filled_between_rounds() {
    let mut c = choker();
    // First round with nobody interested.
    let mut quiet = peer(1, 0);
    quiet.peer_interested = false;
    let d = c.tick(t(0), false, &[quiet]);
    assert!(d.unchoke.is_empty());
    // Six peers become interested a second later: four regular slots are free.
    let peers: Vec<_> = (1..=6).map(|i| peer(i, 0)).collect();
    let filled = c.fill_free_slots(t(1), &peers);
    assert_eq!(filled.len(), 4);
    assert!(filled.iter().all(|p| c.is_unchoked(*p)));
    // Nothing more until a slot frees up.
    assert!(c.fill_free_slots(t(2), &peers).is_empty());
    // Uninterested peers are never filled in.
    let mut c2 = choker();
    let mut p = peer(9, 0);
    p.peer_interested = false;
    assert!(c2.fill_free_slots(t(0), &[p]).is_empty());
}
