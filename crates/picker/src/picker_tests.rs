//! Unit tests of the picking rules.

use shoal_core::Time;

use crate::*;

const KB16: u32 = BLOCK_SIZE;

/// `pieces` pieces of `blocks` full blocks each.
fn picker(pieces: u32, blocks: u32, seed: u64) -> Picker<u32> {
    let piece_len = blocks * KB16;
    Picker::new(
        pieces,
        piece_len,
        u64::from(pieces) * u64::from(piece_len),
        seed,
    )
    .unwrap()
}

fn t(s: u64) -> Time {
    Time::from_secs(s)
}

/// A peer holding exactly `pieces`.
fn add(p: &mut Picker<u32>, peer: u32, pieces: &[u32]) {
    p.add_peer(peer);
    p.peer_have_none(peer).unwrap();
    for &x in pieces {
        p.peer_have(peer, x).unwrap();
    }
}

fn seed(p: &mut Picker<u32>, peer: u32) {
    p.add_peer(peer);
    p.peer_have_all(peer).unwrap();
}

/// Requests every block from `peer`, receives those of `piece`, and verifies it.
fn complete(p: &mut Picker<u32>, peer: u32, piece: u32) {
    p.set_mode(PickMode::Sequential);
    for b in p.pick(peer, 1000, t(0), t(9)) {
        if b.piece == piece {
            p.block_received(peer, b).unwrap();
        }
    }
    p.piece_verified(piece).unwrap();
}

fn config(mode: PickMode, random_first: u32) -> PickerConfig {
    PickerConfig {
        mode,
        random_first_pieces: random_first,
        ..PickerConfig::default()
    }
}

fn with(pieces: u32, blocks: u32, cfg: PickerConfig, seed: u64) -> Picker<u32> {
    let len = blocks * KB16;
    Picker::with_config(
        Layout::new(pieces, len, u64::from(pieces) * u64::from(len)).unwrap(),
        cfg,
        seed,
    )
}

#[test]
fn random_first_then_rarest() {
    // Piece 7 is the rarest (only the seed has it); every other piece is also held by peer 2.
    let others: Vec<u32> = (0..10).filter(|&x| x != 7).collect();
    let mut firsts = std::collections::BTreeSet::new();
    for s in 0..32 {
        let mut p = picker(10, 1, s);
        seed(&mut p, 1);
        add(&mut p, 2, &others);
        let b = p.pick(1, 1, t(0), t(60));
        firsts.insert(b[0].piece);
    }
    // Random first: many different first pieces, not always the rarest.
    assert!(firsts.len() >= 5, "first picks {firsts:?}");

    let mut p = picker(10, 1, 3);
    seed(&mut p, 1);
    add(&mut p, 2, &others);
    for x in [0, 1, 2, 3] {
        p.piece_verified(x).unwrap();
    }
    assert_eq!(p.pick(1, 1, t(0), t(60)), vec![Block::new(7, 0)]);
}

#[test]
fn rarest_first_follows_counts() {
    // Availability (non-seed): piece 0: 3, piece 1: 1, piece 2: 2, piece 3: 4.
    let mut p = with(4, 1, config(PickMode::RarestFirst, 0), 1);
    add(&mut p, 1, &[0, 1, 2, 3]);
    add(&mut p, 2, &[0, 2, 3]);
    add(&mut p, 3, &[0, 3]);
    add(&mut p, 4, &[3]);
    assert_eq!(
        (0..4).map(|x| p.availability(x)).collect::<Vec<_>>(),
        vec![3, 1, 2, 4]
    );
    let order: Vec<u32> = (0..4).map(|_| p.pick(1, 1, t(0), t(9))[0].piece).collect();
    assert_eq!(order, vec![1, 2, 0, 3]);
    // A seed does not change the order.
    let mut q = with(4, 1, config(PickMode::RarestFirst, 0), 1);
    add(&mut q, 1, &[0, 1, 2, 3]);
    add(&mut q, 2, &[0, 2, 3]);
    add(&mut q, 3, &[0, 3]);
    add(&mut q, 4, &[3]);
    seed(&mut q, 5);
    assert_eq!(q.availability(1), 2);
    let order: Vec<u32> = (0..4).map(|_| q.pick(5, 1, t(0), t(9))[0].piece).collect();
    assert_eq!(order, vec![1, 2, 0, 3]);
}

#[test]
fn rarest_ties_are_broken_at_random() {
    let mut firsts = std::collections::BTreeSet::new();
    for s in 0..32 {
        let mut p = with(16, 1, config(PickMode::RarestFirst, 0), s);
        add(&mut p, 1, &(0..16).collect::<Vec<_>>());
        firsts.insert(p.pick(1, 1, t(0), t(9))[0].piece);
    }
    assert!(firsts.len() >= 6, "{firsts:?}");
}

#[test]
fn partial_pieces_are_finished_first() {
    let mut p = with(8, 4, config(PickMode::RarestFirst, 0), 7);
    seed(&mut p, 1);
    seed(&mut p, 2);
    let a = p.pick(1, 2, t(0), t(9));
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].piece, a[1].piece);
    let b = p.pick(2, 2, t(0), t(9));
    assert!(b.iter().all(|x| x.piece == a[0].piece), "{a:?} then {b:?}");
    assert_eq!(
        b,
        vec![Block::new(a[0].piece, 2), Block::new(a[0].piece, 3)]
    );
}

#[test]
fn most_advanced_partial_piece_first() {
    let mut p = with(8, 4, config(PickMode::Sequential, 0), 7);
    seed(&mut p, 1);
    let first = p.pick(1, 5, t(0), t(9)); // piece 0 fully, piece 1 one block
    assert_eq!(first.len(), 5);
    // Piece 0's blocks time out: piece 0 has 4 open, piece 1 has 3 open; piece 1 comes first.
    for i in 0..4 {
        p.abort_request(1, Block::new(0, i));
    }
    assert_eq!(p.pick(1, 1, t(0), t(9)), vec![Block::new(1, 1)]);
}

#[test]
fn only_blocks_the_peer_has() {
    let mut p = with(16, 2, config(PickMode::RarestFirst, 4), 5);
    add(&mut p, 1, &[3, 9]);
    add(&mut p, 2, &[4]);
    let got = p.pick(1, 100, t(0), t(9));
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|b| b.piece == 3 || b.piece == 9));
    let got = p.pick(2, 100, t(0), t(9));
    assert_eq!(got, vec![Block::new(4, 0), Block::new(4, 1)]);
    add(&mut p, 3, &[]);
    assert!(p.pick(3, 100, t(0), t(9)).is_empty());
    assert!(!p.is_interesting(3));
    assert!(p.is_interesting(1));
}

#[test]
fn no_duplicates_before_endgame_then_second_peer_and_cancel() {
    let mut p = with(2, 2, config(PickMode::RarestFirst, 0), 1);
    seed(&mut p, 1);
    seed(&mut p, 2);
    let a = p.pick(1, 3, t(0), t(9));
    assert_eq!(a.len(), 3);
    assert!(!p.in_endgame());
    // One block is still open: peer 2 gets exactly that one, no duplicate yet...
    let b = p.pick(2, 1, t(0), t(9));
    assert_eq!(b.len(), 1);
    assert!(!a.contains(&b[0]));
    // ...now every block is requested: endgame, duplicates allowed.
    assert!(p.in_endgame());
    let dup = p.pick(2, 10, t(0), t(9));
    assert_eq!(dup.len(), 3, "{dup:?}");
    assert!(dup.iter().all(|x| a.contains(x)));
    // A third peer may only double peer 2's block: two requesters is the limit.
    seed(&mut p, 3);
    assert_eq!(p.pick(3, 10, t(0), t(9)), b);
    assert!(p.pick(3, 10, t(0), t(9)).is_empty());
    // The first copy wins; the other requester gets a cancel; the late one is a duplicate.
    assert_eq!(
        p.block_received(1, a[0]).unwrap(),
        BlockOutcome::New {
            cancel: vec![2],
            piece_complete: false
        }
    );
    assert_eq!(p.block_received(2, a[0]).unwrap(), BlockOutcome::Duplicate);
    assert_eq!(p.outstanding(2), 3);
}

#[test]
fn expired_requests_free_blocks_for_others() {
    let mut p = with(1, 2, config(PickMode::RarestFirst, 0), 1);
    seed(&mut p, 1);
    seed(&mut p, 2);
    let a = p.pick(1, 2, t(0), t(10));
    assert_eq!(p.next_deadline(), Some(t(10)));
    assert!(p.expire(t(9)).is_empty());
    let exp = p.expire(t(10));
    assert_eq!(exp, vec![(1, a[0]), (1, a[1])]);
    assert_eq!(p.block_state(a[0]).unwrap(), BlockState::Open);
    assert_eq!(p.next_deadline(), None);
    assert_eq!(p.outstanding(1), 0);
    assert!(!p.in_endgame());
    let b = p.pick(2, 2, t(10), t(20));
    assert_eq!(b, a);
    // The slow peer's late copy is still good data; the new requester gets the cancel.
    assert_eq!(
        p.block_received(1, a[0]).unwrap(),
        BlockOutcome::New {
            cancel: vec![2],
            piece_complete: false
        }
    );
    assert_eq!(p.block_received(2, a[0]).unwrap(), BlockOutcome::Duplicate);
    assert!(matches!(
        p.block_received(2, a[1]).unwrap(),
        BlockOutcome::New {
            piece_complete: true,
            ..
        }
    ));
}

#[test]
fn hash_failure_resets_and_can_restrict_to_one_peer() {
    let mut p = with(1, 2, config(PickMode::RarestFirst, 0), 1);
    seed(&mut p, 1);
    seed(&mut p, 2);
    let a = p.pick(1, 1, t(0), t(9));
    let b = p.pick(2, 1, t(0), t(9));
    p.block_received(1, a[0]).unwrap();
    assert!(matches!(
        p.block_received(2, b[0]).unwrap(),
        BlockOutcome::New {
            piece_complete: true,
            ..
        }
    ));
    assert_eq!(p.piece_failed(0, Some(2)).unwrap(), vec![1, 2]);
    assert_eq!(p.block_state(a[0]).unwrap(), BlockState::Open);
    assert_eq!(p.block_state(b[0]).unwrap(), BlockState::Open);
    assert_eq!(p.restricted_to(0), Some(2));
    assert!(p.pick(1, 10, t(1), t(9)).is_empty());
    assert_eq!(p.pick(2, 10, t(1), t(9)).len(), 2);
    // The culprit leaves: the restriction goes with it.
    p.remove_peer(2);
    assert_eq!(p.restricted_to(0), None);
    assert_eq!(p.pick(1, 10, t(1), t(9)).len(), 2);
    assert_eq!(p.piece_failed(0, None).unwrap(), Vec::<u32>::new());
    assert!(p.piece_failed(0, None).is_ok());
}

#[test]
fn known_bad_blocks_alone_are_fetched_again() {
    let mut p = with(1, 4, config(PickMode::RarestFirst, 0), 1);
    seed(&mut p, 1);
    seed(&mut p, 2);
    let got = p.pick(1, 4, t(0), t(9));
    assert_eq!(got.len(), 4);
    for b in &got {
        p.block_received(1, *b).unwrap();
    }
    // Blocks 1 and 3 were proven bad (and 7 is no block): only they are open again.
    p.blocks_failed(0, &[1, 3, 7]).unwrap();
    assert_eq!(
        p.block_state(got[0]).unwrap(),
        BlockState::Received { from: 1 }
    );
    assert_eq!(p.block_state(got[1]).unwrap(), BlockState::Open);
    let again = p.pick(2, 10, t(1), t(9));
    assert_eq!(again, vec![got[1], got[3]]);
    for b in &again {
        p.block_received(2, *b).unwrap();
    }
    assert_eq!(p.block_senders(0), vec![Some(1), Some(2), Some(1), Some(2)]);
    p.piece_verified(0).unwrap();
    assert!(p.is_complete());
    assert!(
        p.blocks_failed(0, &[0]).is_err(),
        "a verified piece is not in progress"
    );
}

#[test]
fn priority_zero_is_never_picked() {
    let mut p = with(4, 1, config(PickMode::RarestFirst, 0), 1);
    seed(&mut p, 1);
    p.set_piece_priority(1, 0).unwrap();
    p.set_piece_priority(2, 0).unwrap();
    let got: Vec<u32> = p.pick(1, 100, t(0), t(9)).iter().map(|b| b.piece).collect();
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, vec![0, 3]);
    assert!(p.pick(1, 100, t(0), t(9)).is_empty() || p.in_endgame());
    p.block_received(1, Block::new(0, 0)).unwrap();
    p.block_received(1, Block::new(3, 0)).unwrap();
    p.piece_verified(0).unwrap();
    p.piece_verified(3).unwrap();
    assert!(p.is_complete());
    assert!(!p.is_interesting(1));
    assert!(p.pick(1, 100, t(0), t(9)).is_empty());
    assert!(p.set_piece_priority(0, 8).is_err());
}

#[test]
fn higher_priority_first() {
    let mut p = with(4, 1, config(PickMode::RarestFirst, 0), 1);
    add(&mut p, 1, &[0, 1, 2, 3]);
    add(&mut p, 2, &[2]); // piece 2 is the most common
    p.set_piece_priority(2, 7).unwrap();
    assert_eq!(p.pick(1, 1, t(0), t(9)), vec![Block::new(2, 0)]);
}

#[test]
fn sequential_mode_goes_in_order() {
    let mut p = with(6, 1, config(PickMode::Sequential, 0), 1);
    add(&mut p, 1, &[5, 1, 3, 4]);
    let got: Vec<u32> = p.pick(1, 10, t(0), t(9)).iter().map(|b| b.piece).collect();
    assert_eq!(got, vec![1, 3, 4, 5]);
}

#[test]
fn availability_follows_have_all_have_none_and_leaving() {
    let mut p = picker(8, 1, 1);
    add(&mut p, 1, &[0, 1]);
    p.add_peer(2);
    p.peer_bitfield(2, &[0b1100_0001]).unwrap();
    assert_eq!(p.availability(0), 2);
    assert_eq!(p.availability(7), 1);
    seed(&mut p, 3);
    assert_eq!(p.availability(0), 3);
    assert_eq!(p.availability(5), 1);
    // A full bitfield counts as a seed.
    p.add_peer(4);
    p.peer_bitfield(4, &[0xff]).unwrap();
    assert_eq!(p.availability(5), 2);
    // have_none after have_all withdraws everything.
    p.peer_have_none(3).unwrap();
    assert_eq!(p.availability(5), 1);
    p.remove_peer(2);
    assert_eq!(p.availability(0), 2);
    assert_eq!(p.availability(7), 1);
    p.remove_peer(4);
    p.remove_peer(1);
    assert_eq!((0..8).map(|x| p.availability(x)).sum::<u32>(), 0);
    assert_eq!(p.peer_have(9, 0), Err(PickerError::UnknownPeer));
    assert!(p.peer_have(3, 8).is_err());
    assert!(p.peer_bitfield(3, &[0, 0]).is_err());
}

#[test]
fn leaving_peer_frees_its_requests() {
    let mut p = with(2, 2, config(PickMode::RarestFirst, 0), 1);
    seed(&mut p, 1);
    seed(&mut p, 2);
    let a = p.pick(1, 4, t(0), t(9));
    assert_eq!(a.len(), 4);
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(p.remove_peer(1), sorted);
    assert!(!p.in_endgame());
    assert_eq!(p.pick(2, 4, t(0), t(9)).len(), 4);
}

#[test]
fn short_last_piece_has_fewer_blocks() {
    // 3 pieces of 32 KiB + 1 byte... total 2*32 KiB + 20 KiB: last piece 2 blocks, last block 4 KiB.
    let mut p: Picker<u32> =
        Picker::new(3, 2 * KB16, 2 * 2 * u64::from(KB16) + 20 * 1024, 1).unwrap();
    seed(&mut p, 1);
    p.set_piece_priority(0, 0).unwrap();
    p.set_piece_priority(1, 0).unwrap();
    let got = p.pick(1, 10, t(0), t(9));
    assert_eq!(got, vec![Block::new(2, 0), Block::new(2, 1)]);
    assert_eq!(p.layout().block_len(got[1]), 4 * 1024);
    assert!(p.block_received(1, Block::new(2, 2)).is_err());
}

#[test]
fn unrequested_and_out_of_range_blocks() {
    let mut p = picker(2, 1, 1);
    seed(&mut p, 1);
    assert_eq!(
        p.block_received(1, Block::new(0, 0)).unwrap(),
        BlockOutcome::Unexpected
    );
    assert!(p.block_received(1, Block::new(5, 0)).is_err());
    complete(&mut p, 1, 1);
    assert!(p.have(1));
    assert_eq!(
        p.block_state(Block::new(1, 0)).unwrap(),
        BlockState::Verified
    );
}

#[test]
fn no_duplicate_while_blocks_are_open_elsewhere() {
    let mut p = with(2, 2, config(PickMode::Sequential, 0), 1);
    seed(&mut p, 1);
    add(&mut p, 2, &[0]);
    assert_eq!(
        p.pick(1, 2, t(0), t(9)),
        vec![Block::new(0, 0), Block::new(0, 1)]
    );
    // Piece 1 is still open (peer 2 lacks it): not endgame, so peer 2 gets nothing.
    assert!(!p.in_endgame());
    assert!(p.pick(2, 10, t(0), t(9)).is_empty());
    assert_eq!(p.pick(1, 2, t(0), t(9)).len(), 2);
    assert!(p.in_endgame());
    assert_eq!(p.pick(2, 10, t(0), t(9)).len(), 2);
}

#[test]
fn partial_piece_yields_only_to_a_strictly_rarer_new_piece() {
    let mut p = with(3, 2, config(PickMode::RarestFirst, 0), 1);
    add(&mut p, 1, &[0]);
    add(&mut p, 2, &[0, 1]);
    add(&mut p, 3, &[0, 1, 2]);
    // Ranks: piece 0 = 3, piece 1 = 2, piece 2 = 1.
    assert_eq!(p.pick(1, 1, t(0), t(9)), vec![Block::new(0, 0)]);
    // Peer 2 offers piece 1, rarer than the started piece 0: piece 1 first, then piece 0.
    assert_eq!(
        p.pick(2, 3, t(0), t(9)),
        vec![Block::new(1, 0), Block::new(1, 1), Block::new(0, 1)]
    );
}

#[test]
fn an_untouched_piece_returns_to_the_rarest_order() {
    let mut p = with(2, 2, config(PickMode::RarestFirst, 0), 1);
    add(&mut p, 1, &[0, 1]);
    add(&mut p, 2, &[1]);
    assert_eq!(
        p.pick(1, 2, t(0), t(9)),
        vec![Block::new(0, 0), Block::new(0, 1)]
    );
    assert_eq!(p.abort_peer_requests(1).len(), 2);
    // Nothing of piece 0 arrived: it is no longer "started", so it is an ordinary candidate.
    assert!(!p.partial.contains_key(&0));
    assert_eq!(p.pick(1, 1, t(0), t(9)), vec![Block::new(0, 0)]);
}

#[test]
fn aborting_a_block_out_of_range_is_harmless() {
    // A peer's `reject` names any index it likes: it is not a request of ours.
    let mut p = picker(4, 4, 1);
    seed(&mut p, 1);
    let got = p.pick(1, 4, t(0), t(10));
    assert!(!got.is_empty());
    assert!(!p.abort_request(1, Block::new(got[0].piece, 11)));
    assert!(!p.abort_request(1, Block::new(99, 0)));
    assert_eq!(p.outstanding(1), got.len());
}

#[test]
fn suggested_pieces_first_when_as_rare() {
    // Seed 1 has everything; peer 2 holds pieces 0..4, so 4..8 are the rarest (seed only).
    let mut p = with(8, 1, config(PickMode::RarestFirst, 0), 5);
    seed(&mut p, 1);
    add(&mut p, 2, &[0, 1, 2, 3]);
    // A suggestion that is less rare than the best choice is not taken.
    p.suggest(1, 2);
    // Out of range is ignored.
    p.suggest(1, 99);
    // Two as-rare suggestions are taken in the order given, before the picker's own choice.
    p.suggest(1, 6);
    p.suggest(1, 5);
    let picks: Vec<u32> = (0..3).map(|_| p.pick(1, 1, t(0), t(9))[0].piece).collect();
    assert_eq!(&picks[..2], &[6, 5]);
    assert!([4, 7].contains(&picks[2]), "{picks:?}");
    // Suggestions are taken during the random first pieces too.
    let mut q = with(8, 1, config(PickMode::RarestFirst, 4), 5);
    seed(&mut q, 1);
    q.suggest(1, 3);
    assert_eq!(q.pick(1, 1, t(0), t(9))[0].piece, 3);
    // A suggestion from another peer is not used for this one.
    let own: Vec<u32> = (0..8)
        .map(|s| {
            let mut r = with(8, 1, config(PickMode::RarestFirst, 0), s);
            seed(&mut r, 1);
            seed(&mut r, 3);
            r.suggest(3, 6);
            r.pick(1, 1, t(0), t(9))[0].piece
        })
        .collect();
    assert!(own.iter().any(|&x| x != 6), "{own:?}");
}

#[test]
fn distributed_copies_follow_the_least_available_piece() {
    let mut p = picker(4, 1, 1);
    assert_eq!(p.distributed_copies(), 0.0);
    add(&mut p, 1, &[0, 1]);
    assert_eq!(p.min_availability(), 0);
    assert_eq!(p.distributed_copies(), 0.5);
    add(&mut p, 2, &[2, 3, 0]);
    assert_eq!(p.min_availability(), 1);
    assert_eq!(p.distributed_copies(), 1.25);
    seed(&mut p, 3);
    assert_eq!(p.distributed_copies(), 2.25);
    // A bitfield replacing a peer's pieces, and a peer leaving, take its pieces away.
    p.peer_bitfield(2, &[0b1000_0000]).unwrap();
    assert_eq!(p.min_availability(), 1);
    assert_eq!(p.distributed_copies(), 1.5);
    p.remove_peer(3);
    p.remove_peer(1);
    assert_eq!(p.min_availability(), 0);
    assert_eq!(p.distributed_copies(), 0.25);
}
