//! A large torrent (100 000 pieces) with many partial peers: the picker stays correct, and the
//! run finishing at all in a debug build shows the hot path is not quadratic. No timing asserts.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shoal_core::Time;
use shoal_picker::{BlockOutcome, Picker, BLOCK_SIZE};

#[test]
fn hundred_thousand_pieces() {
    let pieces = 100_000u32;
    let piece_len = 16 * BLOCK_SIZE; // 256 KiB, 16 blocks
    let total = u64::from(pieces) * u64::from(piece_len);
    let mut p: Picker<u32> = Picker::new(pieces, piece_len, total, 9).unwrap();
    let mut rng = SmallRng::seed_from_u64(9);
    let peers = 16u32;
    for peer in 0..peers {
        p.add_peer(peer);
        // Each peer has a random ~1/4 of the pieces, sent as a bitfield.
        let mut bits = vec![0u8; (pieces as usize).div_ceil(8)];
        for i in 0..pieces as usize {
            if rng.random_ratio(1, 4) {
                bits[i / 8] |= 0x80 >> (i % 8);
            }
        }
        p.peer_bitfield(peer, &bits).unwrap();
    }
    p.add_peer(100);
    p.peer_have_all(100).unwrap();
    let mut completed = 0;
    for round in 0..200u64 {
        let now = Time::from_secs(round);
        for peer in (0..peers).chain([100]) {
            let got = p.pick(peer, 32, now, now + std::time::Duration::from_secs(30));
            assert_eq!(
                got.len(),
                32,
                "peer {peer} found nothing in a mostly empty torrent"
            );
            for b in got {
                assert!(p.peer_has(peer, b.piece));
                if let BlockOutcome::New {
                    piece_complete: true,
                    ..
                } = p.block_received(peer, b).unwrap()
                {
                    p.piece_verified(b.piece).unwrap();
                    completed += 1;
                    for other in 0..peers {
                        if other != peer && rng.random_ratio(1, 8) {
                            p.peer_have(other, b.piece).unwrap();
                        }
                    }
                }
            }
        }
    }
    // 200 rounds x 17 peers x 32 blocks = 108 800 blocks = 6 800 pieces of 16 blocks.
    assert_eq!(completed, 6_800);
    assert_eq!(p.num_have(), 6_800);
    assert_eq!(p.next_deadline(), None);
}
