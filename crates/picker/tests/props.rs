//! Property tests of the picker's invariants under random sequences of events.

use proptest::prelude::*;
use shoal_core::Time;
use shoal_picker::{
    Block, BlockOutcome, BlockState, Layout, PickMode, Picker, PickerConfig, BLOCK_SIZE,
};

#[derive(Clone, Debug)]
enum Op {
    Pick {
        peer: u32,
        max: usize,
    },
    Receive {
        pick: usize,
        peer_override: Option<u32>,
    },
    Have {
        peer: u32,
        piece: u32,
    },
    HaveAll {
        peer: u32,
    },
    Expire,
    Leave {
        peer: u32,
    },
    Abort {
        peer: u32,
    },
    Tick,
}

const PEERS: u32 = 4;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..PEERS, 1usize..6).prop_map(|(peer, max)| Op::Pick { peer, max }),
        4 => (any::<usize>(), proptest::option::weighted(0.2, 0..PEERS))
            .prop_map(|(pick, peer_override)| Op::Receive { pick, peer_override }),
        2 => (0..PEERS, 0u32..64).prop_map(|(peer, piece)| Op::Have { peer, piece }),
        1 => (0..PEERS).prop_map(|peer| Op::HaveAll { peer }),
        1 => Just(Op::Expire),
        1 => (0..PEERS).prop_map(|peer| Op::Leave { peer }),
        1 => (0..PEERS).prop_map(|peer| Op::Abort { peer }),
        2 => Just(Op::Tick),
    ]
}

#[derive(Clone, Debug)]
struct Setup {
    pieces: u32,
    blocks: u32,
    short_tail: u32,
    mode: u8,
    random_first: u32,
    skipped: Vec<bool>,
    bitfields: Vec<Vec<bool>>,
    ops: Vec<Op>,
    seed: u64,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        1u32..12,
        1u32..4,
        0u32..BLOCK_SIZE,
        0u8..3,
        0u32..3,
        any::<u64>(),
    )
        .prop_flat_map(|(pieces, blocks, short_tail, mode, random_first, seed)| {
            (
                proptest::collection::vec(proptest::bool::weighted(0.2), pieces as usize),
                proptest::collection::vec(
                    proptest::collection::vec(any::<bool>(), pieces as usize),
                    PEERS as usize,
                ),
                proptest::collection::vec(op(), 0..120),
            )
                .prop_map(move |(skipped, bitfields, ops)| Setup {
                    pieces,
                    blocks,
                    short_tail,
                    mode,
                    random_first,
                    skipped,
                    bitfields,
                    ops,
                    seed,
                })
        })
}

fn wire(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, &b) in bits.iter().enumerate() {
        if b {
            out[i / 8] |= 0x80 >> (i % 8);
        }
    }
    out
}

fn build(s: &Setup) -> Picker<u32> {
    let piece_len = s.blocks * BLOCK_SIZE;
    let total =
        u64::from(s.pieces) * u64::from(piece_len) - u64::from(s.short_tail.min(piece_len - 1));
    let mode = [
        PickMode::RarestFirst,
        PickMode::Random,
        PickMode::Sequential,
    ][s.mode as usize];
    let cfg = PickerConfig {
        mode,
        random_first_pieces: s.random_first,
        ..PickerConfig::default()
    };
    let mut p = Picker::with_config(
        Layout::new(s.pieces, piece_len, total).unwrap(),
        cfg,
        s.seed,
    );
    for (i, &skip) in s.skipped.iter().enumerate() {
        if skip {
            p.set_piece_priority(i as u32, 0).unwrap();
        }
    }
    for peer in 0..PEERS {
        p.add_peer(peer);
        p.peer_bitfield(peer, &wire(&s.bitfields[peer as usize]))
            .unwrap();
    }
    p
}

/// Checks the blocks just picked for `peer`.
fn check_pick(p: &Picker<u32>, s: &Setup, peer: u32, got: &[Block]) -> Result<(), TestCaseError> {
    for &b in got {
        prop_assert!(
            p.peer_has(peer, b.piece),
            "{b:?} handed to {peer}, who lacks it"
        );
        prop_assert!(
            !s.skipped[b.piece as usize],
            "skipped piece {} picked",
            b.piece
        );
        match p.block_state(b).unwrap() {
            BlockState::Requested(reqs) => {
                prop_assert_eq!(reqs.iter().filter(|r| r.peer == peer).count(), 1);
                if reqs.len() > 1 {
                    prop_assert!(p.in_endgame(), "{b:?} requested twice outside endgame");
                }
            }
            other => prop_assert!(false, "picked block {b:?} is {other:?}"),
        }
    }
    Ok(())
}

/// Delivers a block; peer 3 sends corrupt data, so pieces it completes fail their hash check
/// (and are pinned to it, or to peer 0, to find the culprit).
fn receive(p: &mut Picker<u32>, peer: u32, b: Block) {
    if let Ok(BlockOutcome::New {
        piece_complete: true,
        ..
    }) = p.block_received(peer, b)
    {
        if peer == 3 {
            let restrict = [None, Some(3), Some(0)][b.index as usize % 3];
            let contributors = p.piece_failed(b.piece, restrict).unwrap();
            assert!(contributors.contains(&3));
        } else {
            p.piece_verified(b.piece).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn picker_invariants_hold_and_everything_wanted_completes(s in setup()) {
        let mut p = build(&s);
        let mut now = Time::ZERO;
        let mut picked: Vec<(u32, Block)> = Vec::new();
        for op in &s.ops {
            match *op {
                Op::Pick { peer, max } => {
                    let got = p.pick(peer, max, now, now + std::time::Duration::from_secs(5));
                    prop_assert!(got.len() <= max);
                    check_pick(&p, &s, peer, &got)?;
                    picked.extend(got.iter().map(|&b| (peer, b)));
                }
                Op::Receive { pick, peer_override } => {
                    if !picked.is_empty() {
                        let (peer, b) = picked.swap_remove(pick % picked.len());
                        receive(&mut p, peer_override.unwrap_or(peer), b);
                    }
                }
                Op::Have { peer, piece } => {
                    let r = p.peer_have(peer, piece);
                    prop_assert_eq!(r.is_ok(), piece < s.pieces && (peer < PEERS));
                }
                Op::HaveAll { peer } => p.peer_have_all(peer).unwrap(),
                Op::Expire => {
                    for (_, b) in p.expire(now) {
                        prop_assert!(p.block_state(b).unwrap() != BlockState::Verified);
                    }
                }
                Op::Leave { peer } => {
                    p.remove_peer(peer);
                    prop_assert_eq!(p.outstanding(peer), 0);
                    p.add_peer(peer);
                }
                Op::Abort { peer } => {
                    p.abort_peer_requests(peer);
                    prop_assert_eq!(p.outstanding(peer), 0);
                }
                Op::Tick => now += std::time::Duration::from_secs(1),
            }
        }
        // A seed arrives and everything else goes: every wanted block must now get picked.
        let seed = 100;
        p.add_peer(seed);
        p.peer_have_all(seed).unwrap();
        for peer in 0..PEERS {
            p.remove_peer(peer);
        }
        let mut rounds = 0;
        while !p.is_complete() {
            rounds += 1;
            prop_assert!(rounds < 1000, "picker stalled");
            let got = p.pick(seed, 7, now, now);
            check_pick(&p, &s, seed, &got)?;
            prop_assert!(!got.is_empty(), "nothing to pick but not complete");
            for b in got {
                receive(&mut p, seed, b);
            }
        }
        for piece in 0..s.pieces {
            prop_assert_eq!(p.have(piece), !s.skipped[piece as usize]);
        }
        prop_assert_eq!(p.next_deadline(), None);
    }
}
