//! Super-seeding (BEP 16) on in-memory peers: what the seed claims, offers, serves and refuses,
//! and when it hands out the next piece (see `crates/torrent/src/superseed.rs`).

mod util;

use std::time::Duration;

use shoal_torrent::superseed::{OFFER_TIMEOUT, SUPER_SEED_SLOTS};
use shoal_torrent::ConnId;
use shoal_wire::{ExtendedHandshake, Message};
use util::*;

const SEC: Duration = Duration::from_secs(1);

/// `n` pieces of 64 KiB.
fn content(n: usize) -> Content {
    Content::new(n * 65536, 65536, 5)
}

/// The pieces node `from` announced with `have` on `conn`, in order.
fn haves(net: &Net, from: usize, conn: ConnId) -> Vec<u32> {
    net.nodes[from]
        .sent
        .iter()
        .filter_map(|(c, m)| match m {
            Message::Have(p) if *c == conn => Some(*p),
            _ => None,
        })
        .collect()
}

/// A super-seeder and `probes` peers whose machines run but whose messages to the seed are
/// dropped (the test speaks for them); returns the seed, the probes and the seed's conns.
fn seed_and_probes(pieces: usize, probes: usize) -> (Net, usize, Vec<usize>, Vec<ConnId>) {
    let mut net = Net::new(content(pieces));
    let seed = net.add_super_seed();
    let mut nodes = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..probes {
        let p = net.add_node(false, Behaviour::Frozen);
        net.cut.push((p, seed));
        let (_, c) = net.connect(p, seed);
        nodes.push(p);
        conns.push(c);
    }
    (net, seed, nodes, conns)
}

#[test]
fn a_super_seeder_claims_nothing_and_offers_each_peer_two_pieces_nobody_else_has() {
    let (net, seed, _, conns) = seed_and_probes(16, 3);
    assert!(net.nodes[seed].torrent.is_super_seeding());
    let mut all = Vec::new();
    for &c in &conns {
        let msgs: Vec<&Message> = net.nodes[seed]
            .sent
            .iter()
            .filter(|(x, m)| *x == c && !matches!(m, Message::Extended { .. }))
            .map(|(_, m)| m)
            .collect();
        assert_eq!(msgs.first(), Some(&&Message::HaveNone), "{msgs:?}");
        assert!(
            !msgs
                .iter()
                .any(|m| matches!(m, Message::Bitfield(_) | Message::HaveAll)),
            "{msgs:?}"
        );
        let offered = haves(&net, seed, c);
        assert_eq!(offered.len(), SUPER_SEED_SLOTS, "{offered:?}");
        all.extend(offered);
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a piece was offered twice: {all:?}");
    // Its extended handshake does not say `upload_only` (it would give the game away).
    let hs = net.nodes[seed]
        .sent
        .iter()
        .find_map(|(_, m)| match m {
            Message::Extended { id: 0, payload } => ExtendedHandshake::decode(payload).ok(),
            _ => None,
        })
        .expect("an extended handshake");
    assert!(!hs.upload_only);
}

#[test]
fn only_offered_pieces_are_served_and_other_requests_rejected() {
    let (mut net, seed, _, conns) = seed_and_probes(16, 2);
    let c = conns[0];
    net.inject(seed, c, Message::Interested);
    assert_eq!(net.sent_by(seed, c, |m| *m == Message::Unchoke), 1);
    let offered = haves(&net, seed, c);
    let other = (0..16).find(|p| !offered.contains(p)).unwrap();
    net.inject(seed, c, request(other, 0, 16384));
    assert_eq!(
        net.sent_by(
            seed,
            c,
            |m| matches!(m, Message::Reject(r) if r.piece == other)
        ),
        1
    );
    net.inject(seed, c, request(offered[0], 0, 16384));
    assert_eq!(
        net.sent_by(
            seed,
            c,
            |m| matches!(m, Message::Piece { piece, .. } if *piece == offered[0])
        ),
        1
    );
    assert!(
        net.sent_by(
            seed,
            c,
            |m| matches!(m, Message::Piece { piece, .. } if *piece == other)
        ) == 0
    );
}

#[test]
fn the_next_piece_comes_only_once_a_third_peer_has_the_first() {
    let (mut net, seed, _, conns) = seed_and_probes(16, 2);
    let (a, b) = (conns[0], conns[1]);
    let first = haves(&net, seed, a)[0];
    // A completes its piece: nothing more for it while nobody else has the piece.
    net.inject(seed, a, Message::Have(first));
    assert_eq!(haves(&net, seed, a).len(), 2);
    // B got it (from A): A has earned its next piece.
    net.inject(seed, b, Message::Have(first));
    let now = haves(&net, seed, a);
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(!haves(&net, seed, b).contains(&now[2]));
}

#[test]
fn a_lone_leecher_gets_its_next_piece_at_once() {
    let (mut net, seed, _, conns) = seed_and_probes(16, 1);
    let a = conns[0];
    let first = haves(&net, seed, a)[0];
    net.inject(seed, a, Message::Have(first));
    assert_eq!(
        haves(&net, seed, a).len(),
        3,
        "nobody else could pass it on"
    );
}

#[test]
fn a_piece_that_does_not_spread_goes_back_after_the_timeout() {
    let (mut net, seed, _, conns) = seed_and_probes(16, 2);
    let a = conns[0];
    let first = haves(&net, seed, a)[0];
    net.inject(seed, a, Message::Have(first));
    net.advance(OFFER_TIMEOUT - SEC);
    assert_eq!(haves(&net, seed, a).len(), 2);
    net.advance(2 * SEC);
    assert_eq!(
        haves(&net, seed, a).len(),
        3,
        "a free rider is not starved for ever"
    );
}

#[test]
fn the_timeout_does_not_run_while_the_peer_is_choked() {
    let (mut net, seed, _, conns) = seed_and_probes(16, 2);
    let a = conns[0];
    // Never interested, so never unchoked: it cannot download its pieces, and keeps them.
    net.advance(3 * OFFER_TIMEOUT);
    assert_eq!(haves(&net, seed, a).len(), 2);
    net.inject(seed, a, Message::Interested);
    net.advance(OFFER_TIMEOUT + SEC);
    // Unchoked and idle for the whole timeout: both offers go back, two new ones come.
    assert_eq!(haves(&net, seed, a).len(), 4);
}

#[test]
fn a_leaving_peer_returns_its_pieces_to_the_pool() {
    let (mut net, seed, _, conns) = seed_and_probes(4, 2);
    let late = net.add_node(false, Behaviour::Frozen);
    net.cut.push((late, seed));
    let (_, c) = net.connect(late, seed);
    // Every piece is offered to someone: nothing for the newcomer.
    assert!(haves(&net, seed, c).is_empty());
    let mut gone = haves(&net, seed, conns[0]);
    net.disconnect(seed, conns[0]);
    let mut got = haves(&net, seed, c);
    gone.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, gone);
}

#[test]
fn super_seeding_ends_once_the_peers_hold_every_piece() {
    let (mut net, seed, _, conns) = seed_and_probes(4, 2);
    let (a, b) = (conns[0], conns[1]);
    let (pa, pb) = (haves(&net, seed, a), haves(&net, seed, b));
    for &p in &pa {
        net.inject(seed, a, Message::Have(p));
    }
    assert!(net.nodes[seed].torrent.is_super_seeding());
    let st = net.nodes[seed].torrent.stats();
    assert_eq!((st.distributed_copies, st.super_seeding), (0.5, true));
    for &p in &pb {
        net.inject(seed, b, Message::Have(p));
    }
    let st = net.nodes[seed].torrent.stats();
    assert!(!net.nodes[seed].torrent.is_super_seeding());
    assert_eq!((st.distributed_copies, st.super_seeding), (1.0, false));
    // Each peer is told of the pieces it lacks, with `have` (never a second bitfield).
    let mut to_a = haves(&net, seed, a);
    to_a.sort_unstable();
    assert_eq!(to_a, vec![0, 1, 2, 3]);
    assert_eq!(
        net.sent_by(seed, a, |m| matches!(m, Message::Bitfield(_))),
        0
    );
    // And any piece is served now.
    net.inject(seed, a, Message::Interested);
    net.inject(seed, a, request(pb[0], 0, 16384));
    assert_eq!(
        net.sent_by(
            seed,
            a,
            |m| matches!(m, Message::Piece { piece, .. } if *piece == pb[0])
        ),
        1
    );
}

#[test]
fn leechers_complete_from_a_super_seeder_that_uploads_each_piece_once() {
    let mut net = Net::new(content(24));
    let seed = net.add_super_seed();
    net.nodes[seed].upload_rate = Some(256 * 1024);
    let leechers: Vec<usize> = (0..3)
        .map(|_| net.add_node(false, Behaviour::Honest))
        .collect();
    for &l in &leechers {
        net.nodes[l].upload_rate = Some(512 * 1024);
    }
    let mut pairs = Vec::new();
    for (i, &l) in leechers.iter().enumerate() {
        pairs.push((l, seed));
        for &m in &leechers[i + 1..] {
            pairs.push((l, m));
        }
    }
    let conns = net.connect_all(&pairs);
    // While it super-seeds, the seed sends no piece twice: its upload stays within one copy.
    let file = 24 * 65536;
    let mut last = 0;
    for _ in 0..12_000 {
        if !net.nodes[seed].torrent.is_super_seeding() {
            break;
        }
        last = net.nodes[seed].torrent.stats().uploaded;
        net.advance(SEC / 100);
    }
    assert!(!net.nodes[seed].torrent.is_super_seeding());
    assert!(
        last <= file && last > file / 2,
        "{last} bytes uploaded for a {file}-byte file"
    );
    println!("the seed uploaded {last} of {file} bytes before the leechers held every piece");
    assert!(net.run_until(120 * SEC, SEC / 10, |n| leechers
        .iter()
        .all(|&l| n.has_all(l))));
    // The leechers told the seed of the pieces they completed from it (a `have` to a peer that
    // has the piece, for a super-seeder's sake).
    let (l0, s0) = conns[0];
    let offered_to_l0 = haves(&net, seed, s0)[0];
    assert!(haves(&net, leechers[0], l0).contains(&offered_to_l0));
}

#[test]
fn a_normal_seed_hears_of_the_pieces_its_leechers_complete() {
    let mut net = Net::new(content(8));
    let seed = net.add_node(true, Behaviour::Honest);
    let leech = net.add_node(false, Behaviour::Honest);
    net.nodes[seed].upload_rate = Some(256 * 1024);
    net.connect(leech, seed);
    assert_eq!(net.nodes[seed].torrent.stats().distributed_copies, 0.0);
    assert!(net.run_until(60 * SEC, SEC / 10, |n| n.has_all(leech)));
    // The leecher told the seed of each piece (though the seed has it): the seed sees the
    // swarm hold a full copy without it.
    assert_eq!(net.nodes[seed].torrent.stats().distributed_copies, 1.0);
}
