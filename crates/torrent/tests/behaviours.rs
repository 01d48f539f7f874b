//! Single behaviours of the torrent machine, on in-memory peers (see `util`).

mod util;

use std::time::Duration;

use bytes::Bytes;
use shoal_core::Time;
use shoal_torrent::{CloseReason, PeerViolation, TorrentEvent, UT_METADATA_ID};
use shoal_wire::{BlockRef, ExtendedHandshake, Message, MetadataMessage};
use util::*;

const SEC: Duration = Duration::from_secs(1);

fn small() -> Content {
    // 10 pieces of 64 KiB (4 blocks each), the last one short.
    Content::new(9 * 65536 + 20000, 65536, 42)
}

#[test]
fn a_leecher_downloads_everything_from_a_seed() {
    let mut net = Net::new(small());
    let seed = net.add_node(true, Behaviour::Honest);
    let leech = net.add_node(false, Behaviour::Honest);
    net.connect(leech, seed);
    assert!(net.run_until(60 * SEC, SEC / 10, |n| n.has_all(leech)));
    assert!(net.nodes[leech].events.contains(&TorrentEvent::Complete));
    // Every block was written once.
    let mut writes = net.nodes[leech].writes.clone();
    let total = writes.len();
    writes.sort_by_key(|w| w.1);
    writes.dedup_by_key(|w| w.1);
    assert_eq!(writes.len(), total);
}

#[test]
fn interest_brings_an_unchoke_at_once_and_choked_requests_are_rejected() {
    let mut net = Net::new(small());
    let seed = net.add_node(true, Behaviour::Honest);
    let leech = net.add_node(false, Behaviour::Honest);
    // The leecher dials the seed: (leecher's conn, seed's conn).
    let (_, c_seed_side) = net.connect(leech, seed);
    // The leecher said `interested`; a free regular slot means an unchoke without waiting for
    // the choking round.
    assert_eq!(
        net.sent_by(seed, c_seed_side, |m| *m == Message::Unchoke),
        1
    );
}

#[test]
fn a_request_while_choked_is_rejected() {
    let mut net = Net::new(small());
    let seed = net.add_node(true, Behaviour::Honest);
    let probe = net.add_node(false, Behaviour::Frozen);
    // The probe's messages are injected by hand: cut its machine off from the seed.
    // The probe's own messages never reach the seed: it stays uninterested, hence choked.
    net.cut.push((probe, seed));
    let (_, cs) = net.connect(probe, seed);
    // Choked: its request is rejected.
    let req = BlockRef {
        piece: 0,
        begin: 0,
        length: 16384,
    };
    net.inject(seed, cs, Message::Request(req));
    assert_eq!(net.sent_by(seed, cs, |m| *m == Message::Reject(req)), 1);
    assert_eq!(
        net.sent_by(seed, cs, |m| matches!(m, Message::Piece { .. })),
        0
    );
}

#[test]
fn a_frozen_seed_loses_its_requests_to_the_other_within_the_stall_limit() {
    // 16 MiB from two seeds at 4 MB/s each; one freezes (SIGSTOP-like: its link stays up and
    // silent) at 2 s. The remaining 16 MiB - what arrived needs `rest / 4 MB/s` at the good seed.
    let mut net = Net::new(Content::new(256 * 262144, 262144, 7));
    let good = net.add_node(true, Behaviour::Honest);
    let frozen = net.add_node(true, Behaviour::Honest);
    let leech = net.add_node(false, Behaviour::Honest);
    net.nodes[good].upload_rate = Some(4_000_000);
    net.nodes[frozen].upload_rate = Some(4_000_000);
    net.connect_all(&[(leech, good), (leech, frozen)]);
    net.advance(2 * SEC);
    let got = net.nodes[leech].torrent.stats().verified_bytes;
    net.nodes[frozen].behaviour = Behaviour::Frozen;
    net.cut.push((frozen, leech));
    let frozen_at = net.now;
    assert!(net.run_until(60 * SEC, SEC / 20, |n| n.has_all(leech)));
    let ideal = (net.content.data.len() as u64 - got) as f64 / 4e6;
    let took = (net.now - frozen_at).as_secs_f64();
    println!(
        "frozen seed: finished {took:.2} s after the freeze, ideal {ideal:.2} s, lost {:.2} s",
        took - ideal
    );
    // Its requests went to the other seed within the stall limit, not at their deadlines.
    assert!(took - ideal <= 1.5, "lost {:.2} s", took - ideal);
}

#[test]
fn a_liar_is_banned_and_the_honest_seed_is_not() {
    // The hostile case: a peer sends bad blocks into pieces an honest seed completes. Shared
    // blame never bans the honest one; the per-block evidence finds the liar.
    let mut net = Net::new(Content::new(16 * 65536, 65536, 9));
    let honest = net.add_node(true, Behaviour::Honest);
    let liar = net.add_node(true, Behaviour::Liar);
    let leech = net.add_node(false, Behaviour::Honest);
    net.nodes[honest].upload_rate = Some(1_000_000);
    net.nodes[liar].upload_rate = Some(1_000_000);
    net.connect_all(&[(leech, honest), (leech, liar)]);
    let done = net.run_until(120 * SEC, SEC / 10, |n| n.has_all(leech));
    let stats = net.nodes[leech].torrent.stats();
    assert!(
        done,
        "{stats:?} {:?}",
        net.nodes[leech]
            .events
            .iter()
            .filter(|e| !matches!(e, TorrentEvent::PieceVerified(_)))
            .collect::<Vec<_>>()
    );
    let banned = net.nodes[leech].torrent.stats().banned;
    assert_eq!(banned, vec![net.nodes[liar].addr.ip()]);
    assert!(!net.nodes[leech]
        .torrent
        .is_banned(net.nodes[honest].addr.ip()));
    assert!(net.nodes[leech].torrent.stats().hash_failures >= 1);
}

#[test]
fn a_lone_liar_is_banned_at_its_first_bad_piece() {
    let mut net = Net::new(small());
    let liar = net.add_node(true, Behaviour::Liar);
    let leech = net.add_node(false, Behaviour::Honest);
    net.connect(leech, liar);
    net.advance(SEC);
    let stats = net.nodes[leech].torrent.stats();
    assert_eq!(stats.banned, vec![net.nodes[liar].addr.ip()]);
    // Pieces in flight when the first failed may fail too; nothing more after the ban.
    assert!(stats.hash_failures >= 1);
    assert!(net.links.is_empty(), "the liar's connection is closed");
}

#[test]
fn unrequested_blocks_are_never_written_and_a_flood_of_them_closes_the_connection() {
    let mut net = Net::new(small());
    let seed = net.add_node(true, Behaviour::Honest);
    let hostile = net.add_node(false, Behaviour::Frozen);
    let leech = net.add_node(false, Behaviour::Honest);
    net.nodes[seed].upload_rate = Some(1_000_000);
    net.cut.push((hostile, leech));
    let conns = net.connect_all(&[(leech, seed), (leech, hostile)]);
    let c_hostile = conns[1].0;
    // have_all, then blocks it was never asked for (it never unchoked us, so nothing was
    // requested from it; the same blocks were requested from the seed).
    net.inject(leech, c_hostile, Message::HaveAll);
    let junk = Bytes::from(vec![0u8; 16384]);
    for i in 0..20u32 {
        net.inject(
            leech,
            c_hostile,
            Message::Piece {
                piece: i % 9,
                begin: 16384 * (i % 4),
                data: junk.clone(),
            },
        );
    }
    assert!(
        !net.nodes[leech].writes.iter().any(|(c, _)| *c == c_hostile),
        "a block from a peer it was not requested from is never written"
    );
    assert!(net.nodes[leech].events.iter().any(|e| matches!(
        e,
        TorrentEvent::PeerClosed {
            conn,
            reason: CloseReason::Violation(PeerViolation::Unsolicited(_)),
            ..
        } if *conn == c_hostile
    )));
    assert!(net.run_until(60 * SEC, SEC / 10, |n| n.has_all(leech)));
    assert!(net.nodes[leech].torrent.stats().banned.is_empty());
}

#[test]
fn metadata_is_served_over_ut_metadata() {
    let mut net = Net::new(small());
    let seed = net.add_node(true, Behaviour::Honest);
    let probe = net.add_node(false, Behaviour::Frozen);
    let (_, cs) = net.connect(probe, seed);
    net.cut.push((probe, seed));
    let mut hs = ExtendedHandshake::default();
    hs.extensions.insert("ut_metadata".into(), 9);
    net.inject(
        seed,
        cs,
        Message::Extended {
            id: 0,
            payload: hs.encode(),
        },
    );
    net.inject(
        seed,
        cs,
        Message::Extended {
            id: UT_METADATA_ID,
            payload: MetadataMessage::Request { piece: 0 }.encode(),
        },
    );
    let reply = net.nodes[seed]
        .sent
        .iter()
        .rev()
        .find_map(|(c, m)| match m {
            Message::Extended { id: 9, payload } if *c == cs => Some(payload.clone()),
            _ => None,
        })
        .expect("a ut_metadata reply");
    match MetadataMessage::decode(&reply).unwrap() {
        MetadataMessage::Data {
            piece,
            total_size,
            data,
        } => {
            assert_eq!(piece, 0);
            assert_eq!(&data[..], b"d4:name4:teste");
            assert_eq!(total_size, data.len() as u64);
        }
        other => panic!("expected data, got {other:?}"),
    }
}

#[test]
fn a_slot_freed_by_a_leaving_peer_goes_to_a_waiting_one_at_once() {
    let mut net = Net::new(small());
    let seed = net.add_node(true, Behaviour::Honest);
    let mut leechers = Vec::new();
    for _ in 0..7 {
        let l = net.add_node(false, Behaviour::Frozen);
        let (cl, cs) = net.connect(l, seed);
        leechers.push((l, cl, cs));
    }
    let unchoked = |net: &Net| -> Vec<u32> {
        leechers
            .iter()
            .filter(|(_, _, cs)| net.links.contains_key(&(seed, *cs)))
            .filter(|(_, _, cs)| {
                let unchokes = net.sent_by(seed, *cs, |m| *m == Message::Unchoke);
                let chokes = net.sent_by(seed, *cs, |m| *m == Message::Choke);
                unchokes > chokes
            })
            .map(|(_, _, cs)| *cs)
            .collect()
    };
    let before = unchoked(&net);
    assert_eq!(before.len(), 4, "4 regular slots filled at once");
    // One slot holder leaves; no choking round runs (time does not move).
    let (l, cl, cs) = *leechers
        .iter()
        .find(|(_, _, cs)| before.contains(cs))
        .unwrap();
    let _ = cs;
    net.disconnect(l, cl);
    let after = unchoked(&net);
    assert_eq!(after.len(), 4, "the free slot was given away: {after:?}");
    assert!(after.iter().any(|c| !before.contains(c)));
    assert_eq!(net.now, Time::ZERO);
}

#[test]
fn same_inputs_same_run() {
    let run = || {
        let mut net = Net::new(Content::new(32 * 65536, 65536, 3));
        let s = net.add_node(true, Behaviour::Honest);
        let a = net.add_node(false, Behaviour::Honest);
        let b = net.add_node(false, Behaviour::Honest);
        net.connect(a, s);
        net.connect(b, s);
        net.connect(a, b);
        net.run_until(60 * SEC, SEC / 10, |n| n.has_all(a) && n.has_all(b));
        (
            net.now,
            net.nodes[a].writes.clone(),
            net.nodes[b].writes.clone(),
        )
    };
    assert_eq!(run(), run());
}

#[test]
fn shared_blame_never_bans_the_honest_sender_of_a_mixed_piece() {
    // One piece of 8 blocks. The honest seed sends 2 blocks and stalls; its requests go to the
    // liar, so the piece fails with blocks from both. Nobody is banned for that alone: the
    // blocks are hashed and remembered; once the honest seed wakes and the piece passes, the
    // liar's blocks differ from the good data and it is banned; the honest seed is not.
    let mut net = Net::new(Content::new(8 * 16384, 8 * 16384, 11));
    let honest = net.add_node(true, Behaviour::Honest);
    let liar = net.add_node(true, Behaviour::Liar);
    let leech = net.add_node(false, Behaviour::Honest);
    net.nodes[honest].upload_rate = Some(8 * 16384);
    net.nodes[liar].upload_rate = Some(8 * 16384);
    net.connect(leech, honest);
    net.advance(SEC / 4 + SEC / 50);
    net.cut.push((honest, leech));
    net.connect(leech, liar);
    assert!(net.run_until(10 * SEC, SEC / 10, |n| n.nodes[leech]
        .events
        .iter()
        .any(|e| matches!(e, TorrentEvent::HashFailed(_)))));
    let ip_honest = net.nodes[honest].addr.ip();
    let ip_liar = net.nodes[liar].addr.ip();
    assert!(!net.nodes[leech].torrent.is_banned(ip_honest));
    net.cut.clear();
    let done = net.run_until(120 * SEC, SEC / 10, |n| n.has_all(leech));
    let stats = net.nodes[leech].torrent.stats();
    assert!(done, "{stats:?}");
    assert_eq!(stats.banned, vec![ip_liar]);
    assert!(!net.nodes[leech].torrent.is_banned(ip_honest));
    // The first failure had both senders: it banned nobody (the ban came later).
    let evs = &net.nodes[leech].events;
    let first_fail = evs
        .iter()
        .position(|e| matches!(e, TorrentEvent::HashFailed(_)))
        .unwrap();
    let writes_from = |conn| {
        net.nodes[leech]
            .writes
            .iter()
            .filter(|w| w.0 == conn)
            .count()
    };
    assert!(writes_from(0) >= 1 && writes_from(1) >= 1);
    assert!(
        !matches!(evs.get(first_fail + 1), Some(TorrentEvent::Banned(_))),
        "{evs:?}"
    );
}

#[test]
fn two_runs_with_the_same_seeds_send_the_same_messages() {
    // Every machine's output order must follow its seed, never hash-map order (`have`
    // broadcasts, PEX, shutdown): the swarm simulator's same-seed-same-run rests on it.
    fn run() -> Vec<Vec<(u32, Message)>> {
        let mut net = Net::new(small());
        let seed = net.add_node(true, Behaviour::Honest);
        let leechers: Vec<usize> = (0..6)
            .map(|_| net.add_node(false, Behaviour::Honest))
            .collect();
        for n in &mut net.nodes {
            n.upload_rate = Some(200_000);
        }
        let mut pairs: Vec<(usize, usize)> = leechers.iter().map(|&l| (l, seed)).collect();
        for (i, &a) in leechers.iter().enumerate() {
            for &b in &leechers[i + 1..] {
                pairs.push((a, b));
            }
        }
        net.connect_all(&pairs);
        net.advance(70 * SEC);
        net.nodes.iter().map(|n| n.sent.clone()).collect()
    }
    assert!(run() == run());
}

#[test]
fn a_peer_without_ut_pex_does_not_keep_a_timer_due() {
    // Its extended handshake names no ut_pex: PEX never goes to it, so no PEX deadline may be
    // kept for it (the harness fails if a timer stays due after its timeout ran).
    let mut net = Net::new(small());
    let seed = net.add_node(true, Behaviour::Honest);
    let probe = net.add_node(false, Behaviour::Frozen);
    net.cut.push((probe, seed));
    let (_, cs) = net.connect(probe, seed);
    net.inject(
        seed,
        cs,
        Message::Extended {
            id: 0,
            payload: ExtendedHandshake::default().encode(),
        },
    );
    net.advance(10 * SEC);
    assert!(net.nodes[seed].torrent.poll_timeout().unwrap() > net.now);
}

#[test]
fn peer_exchange_follows_the_ut_pex_id_of_the_latest_extended_handshake() {
    // BEP 10 lets a peer send its handshake again: PEX goes under the id it names now, and not
    // at all once it names none (the id is kept from the handshake, not looked up each turn).
    let mut net = Net::new(small());
    let seed = net.add_node(true, Behaviour::Honest);
    let probe = net.add_node(false, Behaviour::Frozen);
    net.cut.push((probe, seed));
    let (_, cs) = net.connect(probe, seed);
    let handshake = |id: Option<u8>| {
        let mut hs = ExtendedHandshake::default();
        if let Some(id) = id {
            hs.extensions.insert("ut_pex".into(), id);
        }
        Message::Extended {
            id: 0,
            payload: hs.encode(),
        }
    };
    let pex_under = |net: &Net, id: u8| {
        net.sent_by(
            seed,
            cs,
            |m| matches!(m, Message::Extended { id: i, .. } if *i == id),
        )
    };
    // Each new leecher of the seed is news for the probe.
    let news = |net: &mut Net| {
        let other = net.add_node(false, Behaviour::Honest);
        net.connect(other, seed);
        net.advance(70 * SEC);
    };
    net.inject(seed, cs, handshake(Some(7)));
    news(&mut net);
    assert!(
        pex_under(&net, 7) >= 1,
        "no PEX under the id the peer named"
    );
    net.inject(seed, cs, handshake(Some(9)));
    let under_7 = pex_under(&net, 7);
    news(&mut net);
    assert!(pex_under(&net, 9) >= 1, "no PEX under the new id");
    assert_eq!(pex_under(&net, 7), under_7, "PEX under the old id");
    net.inject(seed, cs, handshake(None));
    let under_9 = pex_under(&net, 9);
    news(&mut net);
    assert_eq!(
        pex_under(&net, 9),
        under_9,
        "PEX to a peer that took ut_pex back"
    );
    assert!(net.nodes[seed].torrent.poll_timeout().unwrap() > net.now);
}

#[test]
fn a_second_bitfield_is_a_violation() {
    let mut net = Net::new(small());
    let seed = net.add_node(true, Behaviour::Honest);
    let probe = net.add_node(false, Behaviour::Frozen);
    net.cut.push((probe, seed));
    let (_, cs) = net.connect(probe, seed);
    net.inject(seed, cs, Message::HaveNone);
    net.inject(seed, cs, Message::HaveAll);
    assert!(net.nodes[seed].events.iter().any(|e| matches!(
        e,
        TorrentEvent::PeerClosed {
            reason: CloseReason::Violation(PeerViolation::SecondBitfield),
            ..
        }
    )));
}

#[test]
fn a_stalled_peer_gets_one_request_at_a_time_until_it_delivers() {
    let mut net = Net::new(Content::new(64 * 262144, 262144, 8));
    let good = net.add_node(true, Behaviour::Honest);
    let frozen = net.add_node(true, Behaviour::Honest);
    let leech = net.add_node(false, Behaviour::Honest);
    net.nodes[good].upload_rate = Some(4_000_000);
    net.nodes[frozen].upload_rate = Some(4_000_000);
    let conns = net.connect_all(&[(leech, good), (leech, frozen)]);
    let c_frozen = conns[1].0;
    net.advance(SEC);
    net.nodes[frozen].behaviour = Behaviour::Frozen;
    net.cut.push((frozen, leech));
    // Past the stall limit: its requests were released.
    net.advance(2 * SEC);
    let requests = |net: &Net| net.sent_by(leech, c_frozen, |m| matches!(m, Message::Request(_)));
    let before = requests(&net);
    net.advance(3 * SEC);
    let after = requests(&net);
    assert!(
        after - before <= 2,
        "{} new requests to a stalled peer",
        after - before
    );
}

#[test]
fn a_block_from_a_forgotten_sender_never_gets_the_honest_one_banned() {
    // A liar sends one bad block and leaves; thousands of connections later its IP is no longer
    // on record. The honest seed completes the piece, the hash fails: the honest seed must not
    // be taken for the only sender.
    let mut net = Net::new(Content::new(4 * 16384, 4 * 16384, 12));
    let leech = net.add_node(false, Behaviour::Honest);
    let liar = net.add_node(false, Behaviour::Frozen);
    let churn = net.add_node(false, Behaviour::Frozen);
    let honest = net.add_node(true, Behaviour::Honest);
    net.cut.push((liar, leech));
    net.cut.push((churn, leech));
    let (c_liar, _) = net.connect(leech, liar);
    net.inject(leech, c_liar, Message::HaveAll);
    net.inject(leech, c_liar, Message::Unchoke);
    let first = net.nodes[leech]
        .sent
        .iter()
        .find_map(|(c, m)| match m {
            Message::Request(r) if *c == c_liar => Some(*r),
            _ => None,
        })
        .expect("a request to the liar");
    net.inject(
        leech,
        c_liar,
        Message::Piece {
            piece: first.piece,
            begin: first.begin,
            data: Bytes::from(vec![0x66; first.length as usize]),
        },
    );
    net.disconnect(leech, c_liar);
    for _ in 0..4200 {
        let (c, _) = net.connect(leech, churn);
        net.disconnect(leech, c);
    }
    net.connect(leech, honest);
    assert!(net.run_until(60 * SEC, SEC / 10, |n| n.has_all(leech)));
    let stats = net.nodes[leech].torrent.stats();
    assert!(stats.hash_failures >= 1, "{stats:?}");
    assert!(!net.nodes[leech]
        .torrent
        .is_banned(net.nodes[honest].addr.ip()));
}

#[test]
fn peer_exchange_is_taken_at_most_once_in_45_seconds_from_a_peer() {
    // BEP 11 allows one ut_pex a minute: a flood must not fill the peer book with its addresses.
    let mut net = Net::new(small());
    let seed = net.add_node(true, Behaviour::Honest);
    let probe = net.add_node(false, Behaviour::Frozen);
    net.cut.push((probe, seed));
    let (_, cs) = net.connect(probe, seed);
    let pex = |third: u8| Message::Extended {
        id: shoal_torrent::UT_PEX_ID,
        payload: shoal_wire::PexMessage {
            added: (1..=5)
                .map(|i| format!("10.0.{third}.{i}:6881").parse().unwrap())
                .collect(),
            dropped: Vec::new(),
        }
        .encode(),
    };
    net.inject(seed, cs, pex(1));
    net.advance(SEC);
    net.inject(seed, cs, pex(2));
    let dialled = |net: &Net, third: u8| {
        net.nodes[seed]
            .dials
            .iter()
            .filter(|a| a.to_string().starts_with(&format!("10.0.{third}.")))
            .count()
    };
    assert_eq!(dialled(&net, 1), 5);
    assert_eq!(dialled(&net, 2), 0, "the second message came too soon");
    net.advance(45 * SEC);
    net.inject(seed, cs, pex(3));
    assert_eq!(dialled(&net, 3), 5);
}

#[test]
fn choking_a_peer_discards_its_queued_requests_with_a_reject_each() {
    // A slow uplink keeps most of a peer's 40 requests queued; when the seed chokes it (it is no
    // longer interested, so the next round takes its slot), the queue is dropped and each
    // request rejected (BEP 6), not read from disk and served later.
    let mut net = Net::new(Content::new(16 * 65536, 65536, 13));
    let seed = net.add_node(true, Behaviour::Honest);
    let probe = net.add_node(false, Behaviour::Frozen);
    net.nodes[seed].upload_rate = Some(16 * 1024);
    net.cut.push((probe, seed));
    let (_, cs) = net.connect(probe, seed);
    net.inject(seed, cs, Message::Interested);
    assert_eq!(net.sent_by(seed, cs, |m| *m == Message::Unchoke), 1);
    for i in 0..40u32 {
        net.inject(seed, cs, request(i / 4, i % 4, 16384));
    }
    net.inject(seed, cs, Message::NotInterested);
    net.advance(11 * SEC);
    assert_eq!(net.sent_by(seed, cs, |m| *m == Message::Choke), 1);
    let served = net.sent_by(seed, cs, |m| matches!(m, Message::Piece { .. }));
    let rejected = net.sent_by(seed, cs, |m| matches!(m, Message::Reject(_)));
    assert!(rejected > 0, "served {served}, rejected {rejected}");
    assert_eq!(served + rejected, 40);
    // Nothing more goes out after the choke.
    net.advance(10 * SEC);
    assert_eq!(
        net.sent_by(seed, cs, |m| matches!(m, Message::Piece { .. })),
        served
    );
}

#[test]
fn a_seed_suggests_distinct_pieces_before_the_unchoke_and_one_more_per_request() {
    let mut net = Net::new(Content::new(16 * 65536, 65536, 21));
    let seed = net.add_node(true, Behaviour::Honest);
    let (a, b) = (
        net.add_node(false, Behaviour::Frozen),
        net.add_node(false, Behaviour::Frozen),
    );
    net.cut.push((a, seed));
    net.cut.push((b, seed));
    let (_, ca) = net.connect(a, seed);
    let (_, cb) = net.connect(b, seed);
    net.inject(seed, ca, Message::Interested);
    net.inject(seed, cb, Message::Interested);
    let suggested = |net: &Net, c| -> Vec<u32> {
        net.nodes[seed]
            .sent
            .iter()
            .filter_map(|(x, m)| match m {
                Message::Suggest(p) if *x == c => Some(*p),
                _ => None,
            })
            .collect()
    };
    let (sa, sb) = (suggested(&net, ca), suggested(&net, cb));
    assert_eq!((sa.len(), sb.len()), (4, 4), "{sa:?} {sb:?}");
    assert!(sa.iter().all(|p| !sb.contains(p)), "{sa:?} {sb:?}");
    // The suggestions went out before the unchoke.
    let order: Vec<&Message> = net.nodes[seed]
        .sent
        .iter()
        .filter(|(x, _)| *x == ca)
        .map(|(_, m)| m)
        .filter(|m| matches!(m, Message::Suggest(_) | Message::Unchoke))
        .collect();
    assert_eq!(order.last(), Some(&&Message::Unchoke));
    // Asking for a suggested piece brings one more suggestion, again a piece nobody was given.
    net.inject(seed, ca, request(sa[0], 0, 16384));
    let sa2 = suggested(&net, ca);
    assert_eq!(sa2.len(), 5);
    assert!(
        !sa.contains(&sa2[4]) && !sb.contains(&sa2[4]),
        "{sa2:?} {sb:?}"
    );
}

#[test]
fn a_torrent_without_peers_sleeps_and_wakes_for_a_peer() {
    let mut net = Net::new(small());
    let seed = net.add_node(true, Behaviour::Honest);
    // Nobody to choke, no rates to update, nobody to dial: no timer at all (a daemon holds
    // thousands of torrents like this one).
    net.advance(Duration::from_secs(5));
    assert_eq!(net.nodes[seed].torrent.poll_timeout(), None);
    // A peer brings the timers back (rates, choking), and is served.
    let leech = net.add_node(false, Behaviour::Honest);
    net.connect(leech, seed);
    assert!(net.nodes[seed].torrent.poll_timeout().is_some());
    let step = Duration::from_millis(100);
    assert!(net.run_until(Duration::from_secs(60), step, |n| n.has_all(leech)));
    assert!(net.nodes[seed].torrent.stats().uploaded > 0);
}

#[test]
fn a_lower_peer_cap_closes_the_newest_connections_and_a_higher_one_admits_more() {
    let mut net = Net::new(small());
    let seed = net.add_node(true, Behaviour::Honest);
    let leechers: Vec<usize> = (0..4)
        .map(|_| net.add_node(false, Behaviour::Honest))
        .collect();
    for &l in &leechers {
        net.connect(l, seed);
    }
    assert_eq!(net.nodes[seed].torrent.stats().peers, 4);
    let now = net.now;
    net.nodes[seed].torrent.set_max_peers(now, 2);
    net.run();
    assert_eq!(net.nodes[seed].torrent.max_peers(), 2);
    assert_eq!(net.nodes[seed].torrent.stats().peers, 2);
    // Full: one more is refused, as being full (not the peer's fault).
    let extra = net.add_node(false, Behaviour::Honest);
    let hello = shoal_torrent::PeerHello {
        addr: net.nodes[extra].addr,
        outgoing: false,
        peer_id: net.nodes[extra].peer_id,
        fast: true,
        extended: true,
        v2: false,
    };
    assert_eq!(
        net.nodes[seed].torrent.handle_connected(now, hello),
        Err(CloseReason::TooManyPeers)
    );
    net.nodes[seed].torrent.set_max_peers(now, 50);
    net.connect(extra, seed);
    assert_eq!(net.nodes[seed].torrent.stats().peers, 3);
}

#[test]
fn sequential_mode_set_on_a_machine_fetches_pieces_in_order() {
    let mut net = Net::new(Content::new(40 * 16384, 16384, 7));
    let seed = net.add_node(true, Behaviour::Honest);
    let leech = net.add_node(false, Behaviour::Honest);
    net.nodes[leech]
        .torrent
        .set_pick_mode(shoal_torrent::PickMode::Sequential);
    net.connect(leech, seed);
    assert!(net.run_until(60 * SEC, SEC / 10, |n| n.has_all(leech)));
    // Pieces first appear in the written blocks in order.
    let mut first_seen = Vec::new();
    for (_, b) in &net.nodes[leech].writes {
        if !first_seen.contains(&b.piece) {
            first_seen.push(b.piece);
        }
    }
    let mut sorted = first_seen.clone();
    sorted.sort_unstable();
    assert_eq!(first_seen, sorted);
}

#[test]
fn a_queue_with_work_left_is_topped_up_in_batches_not_a_request_per_block() {
    // The seed never answers; its blocks are handed to the leecher here, one at a time.
    let mut net = Net::new(Content::new(64 * 262144, 262144, 8));
    let seed = net.add_node(true, Behaviour::Frozen);
    let leech = net.add_node(false, Behaviour::Honest);
    let (c_seed, _) = net.connect(leech, seed);
    net.run();
    let requests = |net: &Net| -> Vec<BlockRef> {
        net.nodes[leech]
            .sent
            .iter()
            .filter_map(|(c, m)| match m {
                Message::Request(r) if *c == c_seed => Some(*r),
                _ => None,
            })
            .collect()
    };
    let first = requests(&net);
    // Before the peer's rate is known its queue is 16 deep (INITIAL_QUEUE): topped up two
    // requests at a time (an eighth).
    assert_eq!(first.len(), 16);
    let mut news = Vec::new();
    for r in first.iter().take(6) {
        let at = r.piece as usize * 262144 + r.begin as usize;
        let data = Bytes::copy_from_slice(&net.content.data[at..at + r.length as usize]);
        let before = requests(&net).len();
        net.inject(
            leech,
            c_seed,
            Message::Piece {
                piece: r.piece,
                begin: r.begin,
                data,
            },
        );
        news.push(requests(&net).len() - before);
    }
    assert_eq!(news, [0, 2, 0, 2, 0, 2]);
}
