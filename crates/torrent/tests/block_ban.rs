//! A v2 piece that fails its check is judged block by block (BEP 52): the true leaf hashes are
//! asked of a peer, proven against the trusted piece-layer entry, and only the sender of the bad
//! block is banned. A peer that does not answer in time, rejects, or answers with hashes that do
//! not prove out is passed over for the next; when nobody answers, the v1 smart ban still names
//! the culprit once the piece passes. Driven by hand with `now`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use sha1::{Digest, Sha1};
use shoal_core::{Id20, Id32, Time};
use shoal_metainfo::merkle;
use shoal_torrent::block_ban::{HASH_ANSWER_TIMEOUT, MAX_ASKS};
use shoal_torrent::{
    ConnId, DiskDone, DiskJob, PeerHello, Torrent, TorrentConfig, TorrentEvent, V2File, WriteResult,
};
use shoal_wire::{BlockRef, HashRequest, Message};

const BLOCK: usize = 16 * 1024;
/// Four blocks a piece, two pieces; the last piece is short (3 blocks).
const PIECE: u32 = 4 * BLOCK as u32;
const LEN: usize = 7 * BLOCK;

struct Harness {
    t: Torrent,
    now: Time,
    data: Vec<u8>,
    leaves: Vec<Id32>,
    root: Id32,
    /// What was written per piece (block index -> bytes), as a disk would hold it.
    disk: HashMap<u32, HashMap<u32, Bytes>>,
    /// Requests each peer holds.
    asked: HashMap<ConnId, Vec<BlockRef>>,
    hash_requests: Vec<(ConnId, HashRequest)>,
    /// `KeepBlocks` jobs seen.
    kept: Vec<(u32, Vec<bool>)>,
    events: Vec<TorrentEvent>,
}

fn ip(conn: ConnId) -> IpAddr {
    format!("127.0.0.{}", conn + 10).parse().unwrap()
}

impl Harness {
    fn new() -> Harness {
        let data: Vec<u8> = (0..LEN).map(|i| (i * 7 + i / 999) as u8).collect();
        let leaves: Vec<Id32> = data.chunks(BLOCK).map(merkle::hash_block).collect();
        let root = merkle::file_root(&leaves, u64::from(PIECE)).unwrap();
        let config = config(&leaves, root);
        Harness {
            t: Torrent::new(config, Time::ZERO).unwrap(),
            now: Time::ZERO,
            data,
            leaves,
            root,
            disk: HashMap::new(),
            asked: HashMap::new(),
            hash_requests: Vec::new(),
            kept: Vec::new(),
            events: Vec::new(),
        }
    }

    /// A v2 seed connects (incoming) and says it has everything.
    fn add_seed(&mut self, n: u8) -> ConnId {
        let hello = PeerHello {
            addr: SocketAddr::new(ip(u32::from(n)), 6881),
            outgoing: false,
            peer_id: Id20([10 + n; 20]),
            fast: true,
            extended: false,
            v2: true,
        };
        let conn = self.t.handle_connected(self.now, hello).unwrap();
        assert_eq!(conn, u32::from(n), "connections are numbered in order");
        self.t.handle_message(self.now, conn, Message::HaveAll);
        self.pump();
        conn
    }

    /// Collects what the machine sends and does its disk jobs, until it is quiet.
    fn pump(&mut self) {
        loop {
            let mut busy = false;
            while let Some((conn, msg)) = self.t.poll_transmit() {
                busy = true;
                match msg {
                    Message::Request(r) => self.asked.entry(conn).or_default().push(r),
                    Message::HashRequest(r) => self.hash_requests.push((conn, r)),
                    _ => {}
                }
            }
            while let Some(job) = self.t.poll_disk() {
                busy = true;
                let done = self.disk_job(job);
                if let Some(done) = done {
                    self.t.handle_disk(self.now, done);
                }
            }
            while let Some(ev) = self.t.poll_event() {
                busy = true;
                self.events.push(ev);
            }
            if !busy {
                return;
            }
        }
    }

    fn disk_job(&mut self, job: DiskJob) -> Option<DiskDone> {
        match job {
            DiskJob::Write { conn, block, data } => {
                let piece = self.disk.entry(block.piece).or_default();
                piece.insert(block.index, data);
                let blocks = if block.piece == 0 { 4 } else { 3 };
                let result = if piece.len() < blocks {
                    WriteResult::Stored
                } else {
                    let leaves: Vec<Id32> = (0..blocks as u32)
                        .map(|b| merkle::hash_block(&piece[&b]))
                        .collect();
                    let want = &self.leaves[block.piece as usize * 4..][..blocks];
                    if leaves == want {
                        WriteResult::PieceVerified
                    } else {
                        WriteResult::PieceFailed
                    }
                };
                Some(DiskDone::Written {
                    conn,
                    block,
                    result: Ok(result),
                })
            }
            DiskJob::ReadLeaves { piece } => {
                let blocks = &self.disk[&piece];
                let mut keys: Vec<&u32> = blocks.keys().collect();
                keys.sort();
                Some(DiskDone::Leaves {
                    piece,
                    result: Ok(keys
                        .iter()
                        .map(|k| merkle::hash_block(&blocks[k]))
                        .collect()),
                })
            }
            DiskJob::HashBlocks { piece } => {
                // After a failure the piece's blocks are read back, then its state is reset.
                let blocks = self.disk.remove(&piece).unwrap_or_default();
                let mut keys: Vec<u32> = blocks.keys().copied().collect();
                keys.sort();
                let hashes = keys
                    .iter()
                    .map(|k| Sha1::digest(&blocks[k]).into())
                    .collect();
                if self.t.have(piece) {
                    self.disk.insert(piece, blocks);
                }
                Some(DiskDone::BlockHashes {
                    piece,
                    result: Ok(hashes),
                })
            }
            DiskJob::KeepBlocks { piece, keep } => {
                // The bad blocks' data is dropped; the good ones stay, as received.
                let blocks = self.disk.entry(piece).or_default();
                blocks.retain(|b, _| keep[*b as usize]);
                self.kept.push((piece, keep));
                Some(DiskDone::BlocksKept {
                    piece,
                    result: Ok(()),
                })
            }
            DiskJob::Read { .. } | DiskJob::FlushResume { .. } => None,
        }
    }

    /// `conn` answers every request it holds, with block (0, 1) corrupted if `corrupt`; a
    /// peer told to `reject` rejects all but that block.
    fn serve(&mut self, conn: ConnId, corrupt: bool, reject: bool) {
        let reqs = self.asked.remove(&conn).unwrap_or_default();
        for r in reqs {
            let is_bad = r.piece == 0 && r.begin == BLOCK as u32;
            if reject && !is_bad {
                self.t.handle_message(self.now, conn, Message::Reject(r));
                continue;
            }
            let start = r.piece as usize * PIECE as usize + r.begin as usize;
            let mut bytes = self.data[start..start + r.length as usize].to_vec();
            if corrupt && is_bad {
                bytes[100] ^= 0xff;
            }
            self.t.handle_message(
                self.now,
                conn,
                Message::Piece {
                    piece: r.piece,
                    begin: r.begin,
                    data: Bytes::from(bytes),
                },
            );
        }
        self.pump();
    }

    /// The true leaves of piece 0, as a `hashes` answer to `req`.
    fn true_hashes(&self, req: HashRequest) -> Message {
        Message::Hashes {
            req,
            hashes: self.leaves[..4].to_vec(),
        }
    }

    fn banned(&self) -> Vec<IpAddr> {
        self.events
            .iter()
            .filter_map(|e| match e {
                TorrentEvent::Banned(ip) => Some(*ip),
                _ => None,
            })
            .collect()
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.t.handle_timeout(self.now);
        self.pump();
    }
}

/// Peer 0 (hostile) sends block (0, 1) corrupted and rejects the rest; peer 1 sends the rest of
/// the piece; peer 2 sent nothing. Piece 0 fails with two senders.
fn fail_piece_with_two_senders() -> Harness {
    let mut h = Harness::new();
    let hostile = h.add_seed(0);
    let honest = h.add_seed(1);
    let _bystander = h.add_seed(2);
    // Only the hostile peer unchokes at first: it is asked for everything.
    h.t.handle_message(h.now, hostile, Message::Unchoke);
    h.pump();
    assert!(
        h.asked[&hostile]
            .iter()
            .any(|r| r.piece == 0 && r.begin == BLOCK as u32),
        "the hostile peer was asked for block (0, 1): {:?}",
        h.asked
    );
    h.serve(hostile, true, true);
    h.t.handle_message(h.now, honest, Message::Unchoke);
    h.pump();
    h.serve(honest, false, false);
    assert!(
        h.events.contains(&TorrentEvent::HashFailed(0)),
        "{:?}",
        h.events
    );
    assert!(
        h.banned().is_empty(),
        "nobody is banned on the failure alone"
    );
    h
}

#[test]
fn the_bad_blocks_sender_is_banned_from_proven_leaf_hashes() {
    let mut h = fail_piece_with_two_senders();
    // The leaves were read back and a peer that sent none of the piece is asked for the
    // piece's leaves: base layer 0, the piece's 4 leaves, no uncles (the piece entry is trusted).
    let [(asked, req)] = h.hash_requests[..] else {
        panic!("one hash request: {:?}", h.hash_requests);
    };
    assert_eq!(asked, 2);
    assert_eq!(
        req,
        HashRequest {
            pieces_root: h.root,
            base_layer: 0,
            index: 0,
            length: 4,
            proof_layers: 1,
        }
    );
    assert!(!h.t.have(0));
    let answer = h.true_hashes(req);
    h.t.handle_message(h.now, asked, answer);
    h.pump();
    // At once, before the piece is fetched again: only the sender of block 1.
    assert!(!h.t.have(0));
    assert_eq!(h.banned(), vec![ip(0)]);
    assert!(h.t.is_banned(ip(0)) && !h.t.is_banned(ip(1)) && !h.t.is_banned(ip(2)));
    // The good blocks are kept, and only block 1 is asked for again.
    assert_eq!(h.kept, vec![(0, vec![true, false, true, true])]);
    // (What the banned peer still held went with its connection.)
    h.asked.remove(&0);
    let again: Vec<&BlockRef> = h
        .asked
        .values()
        .flatten()
        .filter(|r| r.piece == 0)
        .collect();
    assert_eq!(again.len(), 1, "{:?}", h.asked);
    assert_eq!(again[0].begin, BLOCK as u32);
    // It comes from the honest peer and the piece passes; nobody else is banned.
    h.serve(1, false, false);
    h.serve(2, false, false);
    assert!(h.t.have(0) && h.t.have(1));
    assert_eq!(h.banned(), vec![ip(0)]);
}

#[test]
fn silent_rejecting_and_lying_peers_are_passed_over() {
    let mut h = fail_piece_with_two_senders();
    let (first, req) = h.hash_requests[0];
    assert_eq!(first, 2);
    // No answer in time: the next peer is asked, a sender now (the one that sent most of the
    // piece first); its answer is proven anyway.
    h.advance(HASH_ANSWER_TIMEOUT - Duration::from_millis(1));
    assert_eq!(h.hash_requests.len(), 1, "not before the deadline");
    h.advance(Duration::from_millis(1));
    assert_eq!(h.hash_requests.len(), 2);
    let (second, req2) = h.hash_requests[1];
    assert_eq!(second, 1);
    assert_eq!(req2, req);
    // A peer answering with leaves that do not hash to the piece entry proves nothing (here,
    // vouching for the bad block).
    let mut forged = h.leaves[..4].to_vec();
    forged[1] = merkle::hash_block(b"what the hostile peer sent");
    h.t.handle_message(
        h.now,
        second,
        Message::Hashes {
            req,
            hashes: forged,
        },
    );
    h.pump();
    assert!(h.banned().is_empty());
    assert_eq!(h.hash_requests.len(), 3);
    let (third, _) = h.hash_requests[2];
    assert_eq!(third, 0);
    // An unsolicited answer from a peer not asked changes nothing.
    let answer = h.true_hashes(req);
    h.t.handle_message(h.now, first, answer);
    h.pump();
    assert!(h.banned().is_empty());
    // The one asked (the culprit itself) answers truly: proof is proof.
    let answer = h.true_hashes(req);
    h.t.handle_message(h.now, third, answer);
    h.pump();
    assert_eq!(h.banned(), vec![ip(0)]);
    // The piece was not held past the first peer's silence: it went the v1 way (fetched whole).
    assert!(h.kept.is_empty());
}

#[test]
fn without_answers_the_smart_ban_still_names_the_culprit() {
    let mut h = fail_piece_with_two_senders();
    // Everyone rejects or stays silent.
    let (first, req) = h.hash_requests[0];
    h.t.handle_message(h.now, first, Message::HashReject(req));
    h.pump();
    for _ in 0..MAX_ASKS {
        h.advance(HASH_ANSWER_TIMEOUT);
    }
    assert_eq!(h.hash_requests.len(), MAX_ASKS, "{:?}", h.hash_requests);
    assert!(h.banned().is_empty());
    // The piece is fetched again from the honest peer; when it passes, the per-block SHA-1
    // evidence of the failed attempt names the sender of the differing block.
    h.serve(1, false, false);
    h.serve(0, false, false);
    assert!(h.t.have(0));
    assert_eq!(h.banned(), vec![ip(0)]);
}

#[test]
fn a_v2_seeder_answers_leaf_requests_from_its_disk() {
    let h = Harness::new();
    let seed_config = TorrentConfig {
        have: vec![0, 1],
        seed_only: true,
        ..config(&h.leaves, h.root)
    };
    let mut seed = Torrent::new(seed_config, Time::ZERO).unwrap();
    let hello = PeerHello {
        addr: "127.0.0.40:6881".parse().unwrap(),
        outgoing: false,
        peer_id: Id20([40; 20]),
        fast: true,
        extended: false,
        v2: true,
    };
    let conn = seed.handle_connected(Time::ZERO, hello).unwrap();
    while seed.poll_transmit().is_some() {}
    let ask = |seed: &mut Torrent, req: HashRequest, leaves: &[Id32]| -> Message {
        seed.handle_message(Time::ZERO, conn, Message::HashRequest(req));
        while let Some(job) = seed.poll_disk() {
            if let DiskJob::ReadLeaves { piece } = job {
                let got = leaves[piece as usize * 4..]
                    .iter()
                    .take(4)
                    .copied()
                    .collect();
                seed.handle_disk(
                    Time::ZERO,
                    DiskDone::Leaves {
                        piece,
                        result: Ok(got),
                    },
                );
            }
        }
        std::iter::from_fn(|| seed.poll_transmit())
            .map(|(_, m)| m)
            .find(|m| matches!(m, Message::Hashes { .. } | Message::HashReject(_)))
            .expect("an answer")
    };
    let leaves = h.leaves.clone();
    // The short last piece's 3 leaves and a zero leaf, with the uncle up to the root.
    let req = HashRequest {
        pieces_root: h.root,
        base_layer: 0,
        index: 4,
        length: 4,
        proof_layers: 2,
    };
    let Message::Hashes { hashes, .. } = ask(&mut seed, req, &leaves) else {
        panic!("rejected");
    };
    assert_eq!(hashes.len(), 5);
    assert_eq!(&hashes[..3], &leaves[4..7]);
    assert_eq!(hashes[3], Id32::ZERO);
    let sub = merkle::root_of(&hashes[..4], 4, Id32::ZERO);
    assert_eq!(merkle::fold_proof(sub, 1, &hashes[4..]), h.root);
    // Two leaves of piece 0 with every uncle: 1 inside the piece, 1 above it.
    let req = HashRequest {
        index: 2,
        length: 2,
        proof_layers: 2,
        ..req
    };
    let Message::Hashes { hashes, .. } = ask(&mut seed, req, &leaves) else {
        panic!("rejected");
    };
    assert_eq!(&hashes[..2], &leaves[2..4]);
    let sub = merkle::hash_pair(&hashes[0], &hashes[1]);
    assert_eq!(merkle::fold_proof(sub, 1, &hashes[2..]), h.root);
    // Across pieces, past the tree, or more proof than the tree has: rejected.
    for bad in [
        HashRequest { length: 8, ..req },
        HashRequest { index: 8, ..req },
        HashRequest {
            proof_layers: 3,
            ..req
        },
        HashRequest {
            proof_layers: u32::MAX,
            ..req
        },
    ] {
        assert_eq!(ask(&mut seed, bad, &leaves), Message::HashReject(bad));
    }
}

/// A leecher of the two pieces with their merkle tree.
fn config(leaves: &[Id32], root: Id32) -> TorrentConfig {
    let layer = merkle::piece_layer(leaves, u64::from(PIECE));
    TorrentConfig {
        info_hash: Id20([1; 20]),
        peer_id: Id20([2; 20]),
        num_pieces: 2,
        piece_length: PIECE,
        total_length: LEN as u64,
        private: false,
        info_bytes: Bytes::from_static(b"d4:name1:xe"),
        listen_port: 6881,
        own_addr: None,
        max_peers: 10,
        wanted: None,
        have: Vec::new(),
        seed_only: false,
        seed: 3,
        pick_mode: Default::default(),
        super_seed: false,
        piece_layers: HashMap::from([(root, layer)]),
        v2_files: vec![V2File {
            pieces_root: root,
            first_piece: 0,
            length: LEN as u64,
        }],
    }
}
