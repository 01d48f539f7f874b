//! BEP 52 hash requests: a peer asking for a piece layer we carry gets it with its proof (which
//! folds to the file's root); anything else is answered with a `hash reject`, never silence.

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::Bytes;
use shoal_core::{Id20, Id32, Time};
use shoal_metainfo::merkle;
use shoal_torrent::{PeerHello, Torrent, TorrentConfig, V2File};
use shoal_wire::{HashRequest, Message};

const PIECE: u32 = 32 * 1024;

fn answer(t: &mut Torrent, conn: u32, req: HashRequest) -> Message {
    t.handle_message(Time::ZERO, conn, Message::HashRequest(req));
    std::iter::from_fn(|| t.poll_transmit())
        .map(|(_, m)| m)
        .find(|m| matches!(m, Message::Hashes { .. } | Message::HashReject(_)))
        .expect("an answer")
}

#[test]
fn piece_layer_requests_are_answered_with_a_proof_and_the_rest_rejected() {
    // One file of 5 pieces of 2 blocks.
    let blocks: Vec<Id32> = (0..10u8).map(|i| merkle::hash_block(&[i; 16384])).collect();
    let layer = merkle::piece_layer(&blocks, u64::from(PIECE));
    let root = merkle::file_root(&blocks, u64::from(PIECE)).unwrap();
    let config = TorrentConfig {
        info_hash: Id20([1; 20]),
        peer_id: Id20([2; 20]),
        num_pieces: 5,
        piece_length: PIECE,
        total_length: 5 * u64::from(PIECE),
        private: false,
        info_bytes: Bytes::from_static(b"d4:name1:xe"),
        listen_port: 6881,
        own_addr: None,
        max_peers: 10,
        wanted: None,
        have: (0..5).collect(),
        seed_only: true,
        seed: 1,
        pick_mode: Default::default(),
        super_seed: false,
        piece_layers: HashMap::from([(root, layer.clone())]),
        v2_files: vec![V2File {
            pieces_root: root,
            first_piece: 0,
            length: 5 * u64::from(PIECE),
        }],
    };
    let mut t = Torrent::new(config, Time::ZERO).unwrap();
    let addr: SocketAddr = "127.0.0.9:1".parse().unwrap();
    let conn = t
        .handle_connected(
            Time::ZERO,
            PeerHello {
                addr,
                outgoing: false,
                peer_id: Id20([3; 20]),
                fast: true,
                extended: false,
                v2: true,
            },
        )
        .unwrap();
    // The whole piece layer (8 wide with padding) from the piece layer (1 above the leaves).
    let req = HashRequest {
        pieces_root: root,
        base_layer: 1,
        index: 0,
        length: 8,
        proof_layers: 0,
    };
    let Message::Hashes { req: got, hashes } = answer(&mut t, conn, req) else {
        panic!("rejected");
    };
    assert_eq!(got, req);
    assert_eq!(&hashes[..5], &layer[..]);
    assert_eq!(merkle::root_of(&hashes, 8, merkle::pad_hash(1)), root);
    // Two entries with the uncles up to the root.
    let req = HashRequest {
        index: 2,
        length: 2,
        proof_layers: 2,
        ..req
    };
    let Message::Hashes { hashes, .. } = answer(&mut t, conn, req) else {
        panic!("rejected");
    };
    let sub = merkle::hash_pair(&hashes[0], &hashes[1]);
    assert_eq!(merkle::fold_proof(sub, 1, &hashes[2..]), root);
    // Unknown root, a layer between pieces and root, misaligned, too much proof: rejected
    // (leaf-layer requests are answered from the disk: tests/block_ban.rs).
    for bad in [
        HashRequest {
            pieces_root: Id32([9; 32]),
            ..req
        },
        HashRequest {
            base_layer: 2,
            ..req
        },
        HashRequest { index: 1, ..req },
        HashRequest {
            proof_layers: 9,
            ..req
        },
    ] {
        assert_eq!(answer(&mut t, conn, bad), Message::HashReject(bad));
    }
}
