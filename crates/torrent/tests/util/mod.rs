//! An in-memory network of torrent machines for single-behaviour tests (quinn-proto's
//! `tests/util.rs` `Pair` is the model): every node is a real [`Torrent`], links carry messages
//! instantly, and each node's disk is a map of blocks that hashes pieces for real.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sha1::{Digest, Sha1};
use shoal_core::{Id20, Time};
use shoal_picker::BLOCK_SIZE;
use shoal_torrent::{
    Block, CloseReason, ConnId, DiskDone, DiskJob, PeerHello, Torrent, TorrentConfig, TorrentEvent,
    WriteResult,
};
use shoal_wire::{BlockRef, Message};

/// The shared file of a test.
pub struct Content {
    pub data: Vec<u8>,
    pub piece_len: u32,
    pub hashes: Vec<[u8; 20]>,
}

impl Content {
    pub fn new(len: usize, piece_len: u32, seed: u64) -> Content {
        let mut x = seed | 1;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let hashes = data
            .chunks(piece_len as usize)
            .map(|c| Sha1::digest(c).into())
            .collect();
        Content {
            data,
            piece_len,
            hashes,
        }
    }

    pub fn num_pieces(&self) -> u32 {
        self.hashes.len() as u32
    }

    pub fn layout(&self) -> shoal_picker::Layout {
        shoal_picker::Layout::new(self.num_pieces(), self.piece_len, self.data.len() as u64)
            .unwrap()
    }

    fn piece_range(&self, piece: u32) -> std::ops::Range<usize> {
        let start = piece as usize * self.piece_len as usize;
        start..(start + self.piece_len as usize).min(self.data.len())
    }
}

/// How a node's disk behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// Serves and stores honestly.
    #[default]
    Honest,
    /// Serves corrupted blocks (every byte flipped).
    Liar,
    /// Never answers requests (its reads are swallowed): a frozen peer.
    Frozen,
}

/// One node: a machine, its disk and its address.
pub struct Node {
    pub torrent: Torrent,
    pub addr: SocketAddr,
    pub peer_id: Id20,
    pub blocks: HashMap<Block, Bytes>,
    /// The data of the last failed attempt of each piece (until its block hashes are taken).
    failed: HashMap<u32, Vec<Bytes>>,
    pub behaviour: Behaviour,
    pub events: Vec<TorrentEvent>,
    pub writes: Vec<(ConnId, Block)>,
    pub sent: Vec<(ConnId, Message)>,
    /// Addresses it asked to dial (the harness connects nothing by itself).
    pub dials: Vec<SocketAddr>,
    /// Upload capacity in bytes per second (blocks queue behind each other); `None`: instant.
    pub upload_rate: Option<u64>,
    /// When its uplink is free again.
    busy_until: Time,
}

/// A network of nodes and the links between them.
pub struct Net {
    pub now: Time,
    pub content: std::rc::Rc<Content>,
    pub nodes: Vec<Node>,
    /// (node, conn) -> (other node, its conn)
    pub links: HashMap<(usize, ConnId), (usize, ConnId)>,
    /// Messages dropped instead of delivered: (from node, to node).
    pub cut: Vec<(usize, usize)>,
    /// Blocks on the wire: (arrival, sequence) -> (from node, to node, conn at `to`, message).
    in_flight: BTreeMap<(Time, u64), (usize, usize, ConnId, Message)>,
    seq: u64,
}

impl Net {
    pub fn new(content: Content) -> Net {
        Net {
            now: Time::ZERO,
            content: std::rc::Rc::new(content),
            nodes: Vec::new(),
            links: HashMap::new(),
            cut: Vec::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
        }
    }

    /// Adds a node (a seed if `seed`) on 127.0.0.(index + 2).
    pub fn add_node(&mut self, seed: bool, behaviour: Behaviour) -> usize {
        self.add_node_with(seed, behaviour, false)
    }

    /// Adds a seed that super-seeds (BEP 16).
    pub fn add_super_seed(&mut self) -> usize {
        self.add_node_with(true, Behaviour::Honest, true)
    }

    fn add_node_with(&mut self, seed: bool, behaviour: Behaviour, super_seed: bool) -> usize {
        let i = self.nodes.len();
        let addr: SocketAddr = format!("127.0.0.{}:6881", i + 2).parse().unwrap();
        let peer_id = Id20([i as u8 + 1; 20]);
        let c = &self.content;
        let config = TorrentConfig {
            info_hash: Id20([0xab; 20]),
            peer_id,
            num_pieces: c.num_pieces(),
            piece_length: c.piece_len,
            total_length: c.data.len() as u64,
            private: false,
            info_bytes: Bytes::from_static(b"d4:name4:teste"),
            listen_port: 6881,
            own_addr: Some(addr),
            max_peers: 50,
            wanted: None,
            have: if seed {
                (0..c.num_pieces()).collect()
            } else {
                Vec::new()
            },
            seed_only: seed,
            seed: 7 + i as u64,
            pick_mode: Default::default(),
            super_seed,
            piece_layers: Default::default(),
            v2_files: Vec::new(),
        };
        let torrent = Torrent::new(config, self.now).unwrap();
        let mut blocks = HashMap::new();
        if seed {
            let layout = c.layout();
            for p in 0..c.num_pieces() {
                for b in 0..layout.blocks_in_piece(p) {
                    let block = Block::new(p, b);
                    let start = c.piece_range(p).start + block.offset() as usize;
                    let len = layout.block_len(block) as usize;
                    blocks.insert(block, Bytes::copy_from_slice(&c.data[start..start + len]));
                }
            }
        }
        self.nodes.push(Node {
            torrent,
            addr,
            peer_id,
            blocks,
            failed: HashMap::new(),
            behaviour,
            events: Vec::new(),
            writes: Vec::new(),
            sent: Vec::new(),
            dials: Vec::new(),
            upload_rate: None,
            busy_until: Time::ZERO,
        });
        i
    }

    /// Connects every pair, then lets them talk (so no pair starts ahead of the others).
    pub fn connect_all(&mut self, pairs: &[(usize, usize)]) -> Vec<(ConnId, ConnId)> {
        let now = self.now;
        let mut out = Vec::new();
        for &(a, b) in pairs {
            let hb = self.hello(b, true);
            let ha = self.hello(a, false);
            let ca = self.nodes[a].torrent.handle_connected(now, hb).unwrap();
            let cb = self.nodes[b].torrent.handle_connected(now, ha).unwrap();
            self.links.insert((a, ca), (b, cb));
            self.links.insert((b, cb), (a, ca));
            out.push((ca, cb));
        }
        self.run();
        out
    }

    fn hello(&self, of: usize, outgoing: bool) -> PeerHello {
        PeerHello {
            addr: self.nodes[of].addr,
            outgoing,
            peer_id: self.nodes[of].peer_id,
            fast: true,
            extended: true,
            v2: false,
        }
    }

    /// Node `a` dials node `b`; returns (a's conn, b's conn).
    pub fn connect(&mut self, a: usize, b: usize) -> (ConnId, ConnId) {
        let now = self.now;
        let hb = self.hello(b, true);
        let ha = self.hello(a, false);
        let ca = self.nodes[a].torrent.handle_connected(now, hb).unwrap();
        let cb = self.nodes[b].torrent.handle_connected(now, ha).unwrap();
        self.links.insert((a, ca), (b, cb));
        self.links.insert((b, cb), (a, ca));
        self.run();
        (ca, cb)
    }

    /// Closes the link between `a` and `b` as if the socket died.
    pub fn disconnect(&mut self, a: usize, ca: ConnId) {
        let now = self.now;
        if let Some((b, cb)) = self.links.remove(&(a, ca)) {
            self.links.remove(&(b, cb));
            self.nodes[a]
                .torrent
                .handle_closed(now, ca, CloseReason::ClosedByPeer);
            self.nodes[b]
                .torrent
                .handle_closed(now, cb, CloseReason::ClosedByPeer);
        }
        self.run();
    }

    /// Delivers a message to node `to` as if sent over its conn `conn`.
    pub fn inject(&mut self, to: usize, conn: ConnId, msg: Message) {
        let now = self.now;
        self.nodes[to].torrent.handle_message(now, conn, msg);
        self.run();
    }

    /// Moves messages, disk work and events until nothing is left to do.
    pub fn run(&mut self) {
        for _ in 0..1_000_000 {
            if !self.step_once() {
                return;
            }
        }
        panic!("the network did not settle");
    }

    fn step_once(&mut self) -> bool {
        let now = self.now;
        let mut progress = false;
        for i in 0..self.nodes.len() {
            while let Some(ev) = self.nodes[i].torrent.poll_event() {
                if let TorrentEvent::PeerClosed { conn, .. } = &ev {
                    if let Some((j, cj)) = self.links.remove(&(i, *conn)) {
                        self.links.remove(&(j, cj));
                        self.nodes[j]
                            .torrent
                            .handle_closed(now, cj, CloseReason::ClosedByPeer);
                    }
                }
                self.nodes[i].events.push(ev);
                progress = true;
            }
            while let Some(job) = self.nodes[i].torrent.poll_disk() {
                progress = true;
                let done = self.disk(i, job);
                if let Some(done) = done {
                    self.nodes[i].torrent.handle_disk(now, done);
                }
            }
            while let Some((conn, msg)) = self.nodes[i].torrent.poll_transmit() {
                progress = true;
                self.nodes[i].sent.push((conn, msg.clone()));
                let Some(&(j, cj)) = self.links.get(&(i, conn)) else {
                    continue;
                };
                if let Message::Piece { data, .. } = &msg {
                    let n = data.len();
                    match self.nodes[i].upload_rate {
                        None => self.nodes[i].torrent.handle_sent(now, conn, n),
                        Some(rate) => {
                            // Queued behind the uplink's earlier blocks.
                            let start = self.nodes[i].busy_until.max(now);
                            let at = start + Duration::from_secs_f64(n as f64 / rate as f64);
                            self.nodes[i].busy_until = at;
                            self.seq += 1;
                            self.in_flight.insert((at, self.seq), (i, j, cj, msg));
                            continue;
                        }
                    }
                }
                // A cut link still writes (the writer drains), but nothing arrives.
                if self.cut.contains(&(i, j)) {
                    continue;
                }
                self.nodes[j].torrent.handle_message(now, cj, msg);
            }
            while let Some(addr) = self.nodes[i].torrent.poll_dial() {
                // Nobody answers at these addresses (tests connect nodes by hand).
                self.nodes[i].dials.push(addr);
                self.nodes[i].torrent.handle_dial_failed(now, addr);
                progress = true;
            }
        }
        progress
    }

    fn disk(&mut self, i: usize, job: DiskJob) -> Option<DiskDone> {
        let content = self.content.clone();
        let node = &mut self.nodes[i];
        match job {
            DiskJob::Write { conn, block, data } => {
                node.writes.push((conn, block));
                let piece = block.piece;
                let result = if let std::collections::hash_map::Entry::Vacant(e) =
                    node.blocks.entry(block)
                {
                    e.insert(data);
                    let layout = content.layout();
                    let n = layout.blocks_in_piece(piece);
                    if (0..n).all(|b| node.blocks.contains_key(&Block::new(piece, b))) {
                        let mut h = Sha1::new();
                        for b in 0..n {
                            h.update(&node.blocks[&Block::new(piece, b)]);
                        }
                        let digest: [u8; 20] = h.finalize().into();
                        if digest == content.hashes[piece as usize] {
                            WriteResult::PieceVerified
                        } else {
                            WriteResult::PieceFailed
                        }
                    } else {
                        WriteResult::Stored
                    }
                } else {
                    WriteResult::Duplicate
                };
                if result == WriteResult::PieceFailed {
                    // The next attempt writes afresh; the bad data stays readable for the block
                    // hashes (as on a real disk until the next attempt overwrites it).
                    let n = (0..)
                        .take_while(|b| node.blocks.contains_key(&Block::new(piece, *b)))
                        .count() as u32;
                    let data = (0..n)
                        .filter_map(|b| node.blocks.remove(&Block::new(piece, b)))
                        .collect();
                    node.failed.insert(piece, data);
                }
                Some(DiskDone::Written {
                    conn,
                    block,
                    result: Ok(result),
                })
            }
            DiskJob::Read { conn, req } => {
                if node.behaviour == Behaviour::Frozen {
                    return None;
                }
                let block = Block::new(req.piece, req.begin / BLOCK_SIZE);
                let data = node.blocks.get(&block).cloned().map(|d| {
                    if node.behaviour == Behaviour::Liar {
                        Bytes::from(d.iter().map(|b| !b).collect::<Vec<u8>>())
                    } else {
                        d
                    }
                });
                Some(DiskDone::Read {
                    conn,
                    req,
                    result: data.ok_or_else(|| "no such block".to_string()),
                })
            }
            DiskJob::HashBlocks { piece } => {
                let hashes: Vec<[u8; 20]> = if node.torrent.have(piece) {
                    (0..)
                        .map_while(|b| node.blocks.get(&Block::new(piece, b)))
                        .map(|d| Sha1::digest(d).into())
                        .collect()
                } else {
                    node.failed
                        .remove(&piece)
                        .unwrap_or_default()
                        .iter()
                        .map(|d| Sha1::digest(d).into())
                        .collect()
                };
                Some(DiskDone::BlockHashes {
                    piece,
                    result: Ok(hashes),
                })
            }
            DiskJob::KeepBlocks { piece, .. } => Some(DiskDone::BlocksKept {
                piece,
                result: Err("no merkle trees here".to_string()),
            }),
            DiskJob::ReadLeaves { piece } => Some(DiskDone::Leaves {
                piece,
                result: Err("no merkle trees here".to_string()),
            }),
            DiskJob::FlushResume { .. } => Some(DiskDone::ResumeFlushed(Ok(()))),
        }
    }

    /// Advances time by `d`: blocks arrive and each node's timeouts run as they fall due.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let timer = self
                .nodes
                .iter()
                .filter_map(|n| n.torrent.poll_timeout())
                .min();
            let arrival = self.in_flight.keys().next().map(|k| k.0);
            let next = match (timer, arrival) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(end),
            };
            if next > end {
                break;
            }
            self.now = next.max(self.now);
            let now = self.now;
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let (from, to, conn, msg) = entry.remove();
                // Dropped if the link closed meanwhile, or the sender froze its uplink.
                let Some(&(_, from_conn)) = self.links.get(&(to, conn)) else {
                    continue;
                };
                if let Message::Piece { data, .. } = &msg {
                    self.nodes[from]
                        .torrent
                        .handle_sent(now, from_conn, data.len());
                }
                if self.cut.contains(&(from, to)) {
                    continue;
                }
                self.nodes[to].torrent.handle_message(now, conn, msg);
            }
            let mut ran = Vec::new();
            for (i, n) in self.nodes.iter_mut().enumerate() {
                if n.torrent.poll_timeout().is_some_and(|t| t <= now) {
                    n.torrent.handle_timeout(now);
                    ran.push(i);
                }
            }
            self.run();
            // A timer that stays due after its timeout ran would spin a real driver.
            for i in ran {
                let next = self.nodes[i].torrent.poll_timeout();
                assert!(
                    next.is_none_or(|t| t > now),
                    "node {i}: poll_timeout {next:?} still due after handle_timeout({now:?})"
                );
            }
            if next >= end {
                break;
            }
        }
        self.now = end;
        self.run();
    }

    /// Advances in steps of `step` until `pred` holds or `limit` passes; true if it held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        step: Duration,
        pred: impl Fn(&Net) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if pred(self) {
                return true;
            }
            self.advance(step);
        }
        pred(self)
    }

    /// Whether node `i` holds the whole content, byte for byte.
    pub fn has_all(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        if !n.torrent.is_complete() {
            return false;
        }
        let mut data = Vec::new();
        let layout = self.content.layout();
        for p in 0..self.content.num_pieces() {
            for b in 0..layout.blocks_in_piece(p) {
                match n.blocks.get(&Block::new(p, b)) {
                    Some(d) => data.extend_from_slice(d),
                    None => return false,
                }
            }
        }
        data == self.content.data
    }

    /// Messages node `i` sent on `conn` that match `pred`.
    pub fn sent_by(&self, i: usize, conn: ConnId, pred: impl Fn(&Message) -> bool) -> usize {
        self.nodes[i]
            .sent
            .iter()
            .filter(|(c, m)| *c == conn && pred(m))
            .count()
    }
}

/// A request message for a block of the content.
pub fn request(piece: u32, index: u32, len: u32) -> Message {
    Message::Request(BlockRef {
        piece,
        begin: index * BLOCK_SIZE,
        length: len,
    })
}
