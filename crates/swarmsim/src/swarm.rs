//! The network, the disks and the clock around the torrent machines.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use sha1::{Digest, Sha1};
use shoal_core::{Id20, Time};
use shoal_torrent::{
    Block, CloseReason, ConnId, DiskDone, DiskJob, PeerHello, PickMode, Torrent, TorrentConfig,
    TorrentEvent, WriteResult,
};
use shoal_wire::{BlockRef, Message, BLOCK_SIZE};

/// The swarm-wide settings of a simulation.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of pieces of the shared file.
    pub pieces: u32,
    /// Piece length in bytes, a multiple of 16 KiB (the file is `pieces * piece_len` bytes).
    pub piece_len: u32,
    /// The piece selection every peer uses.
    pub mode: PickMode,
    /// One-way latency of every link (messages, and a dial takes two of it).
    pub latency: Duration,
    /// Most connections per peer (the machine's `max_peers`).
    pub max_peers: usize,
    /// Addresses a peer gets from the "tracker" when it joins: a random sample of the peers
    /// present (or joining at the same moment).
    pub tracker_peers: usize,
    /// Seed of all randomness (the sim's and, derived from it, every machine's).
    pub seed: u64,
}

impl Default for SimConfig {
    /// 128 pieces of 64 KiB (8 MiB), rarest first, 25 ms links, 50 peers per machine, 50
    /// addresses from the tracker.
    fn default() -> Self {
        SimConfig {
            pieces: 128,
            piece_len: 4 * BLOCK_SIZE,
            mode: PickMode::RarestFirst,
            latency: Duration::from_millis(25),
            max_peers: 50,
            tracker_peers: 50,
            seed: 1,
        }
    }
}

/// One simulated peer: what its link and its user do. Its behaviour is the machine's own.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerSpec {
    /// Upload capacity in bytes per second; block payload only (control messages take the
    /// link's latency alone). 0: a free rider, whose uplink never carries a block.
    pub upload_rate: u64,
    /// Starts with the whole file.
    pub seed: bool,
    /// When it joins (asks the tracker, starts dialling).
    pub join_at: Time,
    /// From this time on it is frozen (SIGSTOP): its connections stay up, nothing leaves it,
    /// what reaches it is never read, its timers never run.
    pub freeze_at: Option<Time>,
    /// It is killed at this time (every connection resets).
    pub leave_at: Option<Time>,
    /// It leaves once it has uploaded this many copies of the file.
    pub leave_after_copies: Option<f64>,
    /// It leaves as soon as it has the whole file (it does not seed).
    pub leave_when_done: bool,
    /// Its network drops every connection at this interval (a flapping link).
    pub flap_every: Option<Duration>,
    /// A seed that super-seeds (BEP 16).
    pub super_seed: bool,
}

/// A downloader told an uploader to forget a request (`cancel`): the request was released
/// (deadline, stall, snub, or another peer delivered the block first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CancelEvent {
    /// When.
    pub at: Time,
    /// The downloader.
    pub by: usize,
    /// The uploader.
    pub peer: usize,
    /// The block.
    pub block: Block,
}

/// What happened during a run. Every collection is ordered, so two runs compare equal exactly
/// when they did the same thing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// When each peer joined.
    pub joined_at: Vec<Option<Time>>,
    /// When each peer had every piece (seeds: when they joined).
    pub completed_at: Vec<Option<Time>>,
    /// When each peer left the swarm, if it did.
    pub departed_at: Vec<Option<Time>>,
    /// `bytes_from[d][u]`: block bytes `d` received from `u`.
    pub bytes_from: Vec<BTreeMap<usize, u64>>,
    /// Block bytes each peer received from peers that had the whole file when they sent them.
    pub from_seeds: Vec<u64>,
    /// Block bytes each peer received.
    pub received: Vec<u64>,
    /// Block bytes each peer's uplink carried.
    pub uploaded: Vec<u64>,
    /// Blocks each peer received that it already had or no longer wanted (duplicates).
    pub wasted: Vec<u64>,
    /// When every piece was first held by at least one peer that did not start as a seed.
    pub distributed_at: Option<Time>,
    /// Bytes uploaded by the initial seeds up to `distributed_at`, in copies of the file.
    pub seed_copies_at_distribution: Option<f64>,
    /// Every `cancel` a downloader sent.
    pub cancels: Vec<CancelEvent>,
    /// For each peer, which peer sent each block it wrote.
    pub block_source: Vec<BTreeMap<Block, usize>>,
    /// Connections each peer set up (dialled or accepted).
    pub connections: Vec<u32>,
    /// Connections closed by a machine, by reason.
    pub closes: BTreeMap<String, u32>,
    /// Every connection a machine closed: (when, by, the other peer, why).
    pub closed: Vec<(Time, usize, usize, String)>,
    /// Dials that failed (target gone, frozen or refusing).
    pub dial_failures: u64,
    /// Pieces that failed their hash check.
    pub hash_failures: u32,
    /// Times a machine asked for a timeout at or before the time it had just handled.
    pub timer_spins: u64,
}

/// The shared file: deterministic bytes, cut into blocks.
struct Content {
    blocks: Vec<Bytes>,
    blocks_per_piece: u32,
}

impl Content {
    fn new(pieces: u32, piece_len: u32, seed: u64) -> Content {
        let len = pieces as usize * piece_len as usize;
        let mut x = seed | 1;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let data = Bytes::from(data);
        let b = BLOCK_SIZE as usize;
        Content {
            blocks: (0..len / b)
                .map(|i| data.slice(i * b..(i + 1) * b))
                .collect(),
            blocks_per_piece: piece_len / BLOCK_SIZE,
        }
    }

    fn index(&self, block: Block) -> usize {
        (block.piece * self.blocks_per_piece + block.index) as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Active,
    Frozen,
    Gone,
}

/// One end of a connection: the other node, its key for the connection there, and the link id.
#[derive(Clone, Copy, Debug)]
struct End {
    peer: usize,
    peer_conn: ConnId,
    link: u64,
    /// When this end last put a message on the link (for the driver's keep-alives).
    last_sent: Time,
}

/// The engine driver's writer sends a keep-alive after this long without a message
/// (`shoal_engine::connection::KEEPALIVE_INTERVAL`).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(90);
/// How often idle links are swept for keep-alives (so one leaves 90 to 100 s after the last
/// message, well inside the machine's 150 s idle limit).
const KEEPALIVE_SWEEP: Duration = Duration::from_secs(10);

/// A node's uplink: blocks wait per connection and leave one at a time, round robin.
#[derive(Default)]
struct Uplink {
    queues: BTreeMap<ConnId, VecDeque<Message>>,
    turn: VecDeque<ConnId>,
    busy: bool,
    /// The block on the wire now: (conn, link, message, sent by a complete peer).
    current: Option<(ConnId, u64, Message, bool)>,
}

struct Node {
    spec: PeerSpec,
    torrent: Option<Torrent>,
    state: State,
    addr: SocketAddr,
    peer_id: Id20,
    have: Vec<bool>,
    piece_blocks: Vec<u32>,
    conns: HashMap<ConnId, End>,
    /// Every connection's other node, kept after it closes (for late writes).
    conn_peer: HashMap<ConnId, usize>,
    uplink: Uplink,
    timer: Option<Time>,
}

enum Ev {
    Join(usize),
    Freeze(usize),
    Leave(usize),
    Flap(usize),
    KeepAlives,
    UplinkDone(usize),
    Deliver {
        to: usize,
        conn: ConnId,
        link: u64,
        msg: Message,
        from_seed: bool,
    },
    Connect {
        from: usize,
        addr: SocketAddr,
    },
    Closed {
        node: usize,
        conn: ConnId,
        link: u64,
    },
}

/// A running simulation. See the crate docs.
pub struct Swarm {
    config: SimConfig,
    content: Content,
    now: Time,
    nodes: Vec<Node>,
    by_addr: HashMap<SocketAddr, usize>,
    events: BTreeMap<(Time, u64), Ev>,
    timers: BTreeSet<(Time, usize)>,
    seq: u64,
    next_link: u64,
    rng: SmallRng,
    leecher_holders: Vec<u32>,
    distributed_pieces: u32,
    stats: Stats,
}

impl Swarm {
    /// A swarm of the given peers; each joins at its `join_at`.
    pub fn new(config: SimConfig, specs: &[PeerSpec]) -> Swarm {
        assert!(
            config.piece_len > 0 && config.piece_len.is_multiple_of(BLOCK_SIZE),
            "piece length must be a multiple of 16 KiB"
        );
        let content = Content::new(config.pieces, config.piece_len, config.seed);
        let mut swarm = Swarm {
            rng: SmallRng::seed_from_u64(config.seed),
            leecher_holders: vec![0; config.pieces as usize],
            distributed_pieces: 0,
            content,
            config,
            now: Time::ZERO,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            events: BTreeMap::new(),
            timers: BTreeSet::new(),
            seq: 0,
            next_link: 0,
            stats: Stats::default(),
        };
        for spec in specs {
            swarm.add_peer(*spec);
        }
        swarm.schedule(Time::ZERO + KEEPALIVE_SWEEP, Ev::KeepAlives);
        swarm
    }

    /// Adds a peer; it joins at `spec.join_at` (or now, if that is past). Returns its index.
    pub fn add_peer(&mut self, spec: PeerSpec) -> usize {
        let i = self.nodes.len();
        let addr = SocketAddr::new(
            Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8).into(),
            6881,
        );
        let mut id = [0x53u8; 20];
        id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        let blocks = self.content.blocks.len();
        self.nodes.push(Node {
            spec,
            torrent: None,
            state: State::Waiting,
            addr,
            peer_id: Id20(id),
            have: vec![spec.seed; blocks],
            piece_blocks: vec![
                if spec.seed {
                    self.content.blocks_per_piece
                } else {
                    0
                };
                self.config.pieces as usize
            ],
            conns: HashMap::new(),
            conn_peer: HashMap::new(),
            uplink: Uplink::default(),
            timer: None,
        });
        self.by_addr.insert(addr, i);
        let s = &mut self.stats;
        s.joined_at.push(None);
        s.completed_at.push(None);
        s.departed_at.push(None);
        s.bytes_from.push(BTreeMap::new());
        s.from_seeds.push(0);
        s.received.push(0);
        s.uploaded.push(0);
        s.wasted.push(0);
        s.block_source.push(BTreeMap::new());
        s.connections.push(0);
        let at = spec.join_at.max(self.now);
        self.schedule(at, Ev::Join(i));
        if let Some(t) = spec.freeze_at {
            self.schedule(t.max(at), Ev::Freeze(i));
        }
        if let Some(t) = spec.leave_at {
            self.schedule(t.max(at), Ev::Leave(i));
        }
        if let Some(d) = spec.flap_every {
            self.schedule(at + d, Ev::Flap(i));
        }
        i
    }

    /// Kills peer `i` now: every connection resets.
    pub fn kill(&mut self, i: usize) {
        self.leave(i);
    }

    /// The current simulated time.
    pub fn now(&self) -> Time {
        self.now
    }

    /// What happened so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The size of the shared file in bytes.
    pub fn file_len(&self) -> u64 {
        u64::from(self.config.pieces) * u64::from(self.config.piece_len)
    }

    /// Number of peers (joined or not, gone or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if the swarm has no peers.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Peer `i`'s machine, while it runs.
    pub fn torrent(&self, i: usize) -> Option<&Torrent> {
        self.nodes[i].torrent.as_ref()
    }

    /// Fraction of the file peer `i` has verified (1.0 for a seed).
    pub fn progress(&self, i: usize) -> f64 {
        let n = &self.nodes[i];
        let have = n
            .piece_blocks
            .iter()
            .filter(|&&b| b == self.content.blocks_per_piece)
            .count();
        have as f64 / f64::from(self.config.pieces)
    }

    /// The peers `i` is connected to now, in order.
    pub fn connected_to(&self, i: usize) -> Vec<usize> {
        let mut v: Vec<usize> = self.nodes[i].conns.values().map(|e| e.peer).collect();
        v.sort_unstable();
        v
    }

    /// Whether peer `i` is frozen.
    pub fn is_frozen(&self, i: usize) -> bool {
        self.nodes[i].state == State::Frozen
    }

    /// True once every peer that did not start as a seed, is not gone and is not frozen has the
    /// whole file.
    pub fn leechers_done(&self) -> bool {
        self.nodes.iter().enumerate().all(|(i, n)| {
            n.spec.seed
                || matches!(n.state, State::Gone | State::Frozen)
                || n.spec.freeze_at.is_some()
                || self.stats.completed_at[i].is_some()
        })
    }

    /// Runs until [`leechers_done`](Self::leechers_done) or `limit`; true if done.
    pub fn run_until_done(&mut self, limit: Time) -> bool {
        self.run_until(limit, |s| s.leechers_done())
    }

    /// Runs until `stop` holds (checked at every instant something happens) or `limit`; true if
    /// it held. At `limit` the clock stands at `limit`.
    pub fn run_until(&mut self, limit: Time, mut stop: impl FnMut(&Swarm) -> bool) -> bool {
        loop {
            if stop(self) {
                return true;
            }
            let ev = self.events.first_key_value().map(|(k, _)| k.0);
            let timer = self.timers.first().map(|t| t.0);
            let next = match (ev, timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(limit),
            };
            if next > limit || (ev.is_none() && timer.is_none()) {
                self.now = self.now.max(limit);
                return stop(self);
            }
            self.now = self.now.max(next);
            self.step();
        }
    }

    /// Everything due at the current instant: events in order, then timers.
    fn step(&mut self) {
        let now = self.now;
        while let Some(entry) = self.events.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ev = entry.remove();
            self.handle(ev);
        }
        while let Some(&(t, i)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, i));
            self.nodes[i].timer = None;
            if let Some(tor) = self.active(i) {
                tor.handle_timeout(now);
                self.drain(i);
                if self.nodes[i].timer.is_some_and(|t| t <= now) {
                    // The machine asked again for an instant it has just handled.
                    self.stats.timer_spins += 1;
                    self.set_timer(i, Some(now + Duration::from_millis(1)));
                }
            }
        }
    }

    fn schedule(&mut self, at: Time, ev: Ev) {
        self.seq += 1;
        self.events.insert((at, self.seq), ev);
    }

    fn set_timer(&mut self, i: usize, t: Option<Time>) {
        let node = &mut self.nodes[i];
        if node.timer == t {
            return;
        }
        if let Some(old) = node.timer {
            self.timers.remove(&(old, i));
        }
        node.timer = t;
        if let Some(t) = t {
            self.timers.insert((t, i));
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Join(i) => self.join(i),
            Ev::Freeze(i) => {
                if self.nodes[i].state == State::Active {
                    self.nodes[i].state = State::Frozen;
                    self.set_timer(i, None);
                }
            }
            Ev::Leave(i) => self.leave(i),
            Ev::Flap(i) => self.flap(i),
            Ev::KeepAlives => self.keep_alives(),
            Ev::UplinkDone(i) => self.uplink_done(i),
            Ev::Deliver {
                to,
                conn,
                link,
                msg,
                from_seed,
            } => self.deliver(to, conn, link, msg, from_seed),
            Ev::Connect { from, addr } => self.connect(from, addr),
            Ev::Closed { node, conn, link } => {
                if !self.unlink(node, conn, link) {
                    return;
                }
                let now = self.now;
                if let Some(t) = self.active(node) {
                    t.handle_closed(now, conn, CloseReason::ClosedByPeer);
                    self.drain(node);
                }
            }
        }
    }

    /// The driver's keep-alives on links that carried nothing for [`KEEPALIVE_INTERVAL`].
    fn keep_alives(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            if self.nodes[i].state != State::Active {
                continue;
            }
            let mut idle: Vec<ConnId> = self.nodes[i]
                .conns
                .iter()
                .filter(|(_, e)| now >= e.last_sent + KEEPALIVE_INTERVAL)
                .map(|(c, _)| *c)
                .collect();
            idle.sort_unstable();
            for c in idle {
                self.transmit(i, c, Message::KeepAlive);
            }
        }
        self.schedule(now + KEEPALIVE_SWEEP, Ev::KeepAlives);
    }

    fn active(&mut self, i: usize) -> Option<&mut Torrent> {
        let n = &mut self.nodes[i];
        if n.state == State::Active {
            n.torrent.as_mut()
        } else {
            None
        }
    }

    fn join(&mut self, i: usize) {
        let now = self.now;
        let spec = self.nodes[i].spec;
        let config = TorrentConfig {
            info_hash: Id20([0xab; 20]),
            peer_id: self.nodes[i].peer_id,
            num_pieces: self.config.pieces,
            piece_length: self.config.piece_len,
            total_length: self.file_len(),
            private: false,
            info_bytes: Bytes::from_static(b"d4:name3:sime"),
            listen_port: self.nodes[i].addr.port(),
            own_addr: Some(self.nodes[i].addr),
            max_peers: self.config.max_peers,
            wanted: None,
            have: if spec.seed {
                (0..self.config.pieces).collect()
            } else {
                Vec::new()
            },
            seed_only: spec.seed,
            seed: self
                .config
                .seed
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(i as u64),
            pick_mode: self.config.mode,
            super_seed: spec.super_seed,
            piece_layers: Default::default(),
            v2_files: Vec::new(),
        };
        let torrent = Torrent::new(config, now).expect("valid torrent config");
        let node = &mut self.nodes[i];
        node.torrent = Some(torrent);
        node.state = State::Active;
        self.stats.joined_at[i] = Some(now);
        if spec.seed {
            self.stats.completed_at[i] = Some(now);
        }
        // The tracker: a random sample of the peers present or joining now.
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| {
                j != i
                    && self.nodes[j].spec.join_at <= now
                    && matches!(
                        self.nodes[j].state,
                        State::Waiting | State::Active | State::Frozen
                    )
            })
            .collect();
        let mut sample: Vec<usize> = candidates
            .choose_multiple(&mut self.rng, self.config.tracker_peers)
            .copied()
            .collect();
        sample.sort_unstable();
        let addrs: Vec<SocketAddr> = sample.iter().map(|&j| self.nodes[j].addr).collect();
        if let Some(t) = self.active(i) {
            t.add_peers(now, addrs);
        }
        self.drain(i);
    }

    /// Drops every connection of `i`: its own machine learns now (if `reason`), the other ends
    /// after the link's latency.
    fn drop_links(&mut self, i: usize, reason: Option<CloseReason>) {
        let mut conns: Vec<(ConnId, End)> =
            self.nodes[i].conns.iter().map(|(c, e)| (*c, *e)).collect();
        conns.sort_unstable_by_key(|c| c.0);
        let at = self.now + self.config.latency;
        for (c, end) in conns {
            self.unlink(i, c, end.link);
            let now = self.now;
            if let (Some(r), Some(t)) = (&reason, self.active(i)) {
                t.handle_closed(now, c, r.clone());
            }
            self.tell_other_end(at, &end);
        }
    }

    fn leave(&mut self, i: usize) {
        if self.nodes[i].state == State::Gone {
            return;
        }
        self.drop_links(i, None);
        let node = &mut self.nodes[i];
        node.state = State::Gone;
        node.torrent = None;
        node.uplink = Uplink::default();
        self.set_timer(i, None);
        if self.stats.departed_at[i].is_none() {
            self.stats.departed_at[i] = Some(self.now);
        }
    }

    fn flap(&mut self, i: usize) {
        if self.nodes[i].state != State::Active {
            return;
        }
        self.drop_links(i, Some(CloseReason::Io("connection reset".into())));
        self.drain(i);
        if let Some(d) = self.nodes[i].spec.flap_every {
            self.schedule(self.now + d, Ev::Flap(i));
        }
    }

    /// Removes `conn` of node `i` if it is still the connection `link`; true if it was.
    /// The other end of a closed link hears of it at `at`.
    fn tell_other_end(&mut self, at: Time, end: &End) {
        self.schedule(
            at,
            Ev::Closed {
                node: end.peer,
                conn: end.peer_conn,
                link: end.link,
            },
        );
    }

    fn unlink(&mut self, i: usize, conn: ConnId, link: u64) -> bool {
        let node = &mut self.nodes[i];
        if node.conns.get(&conn).is_none_or(|e| e.link != link) {
            return false;
        }
        node.conns.remove(&conn);
        node.uplink.queues.remove(&conn);
        node.uplink.turn.retain(|c| *c != conn);
        true
    }

    fn connect(&mut self, from: usize, addr: SocketAddr) {
        let now = self.now;
        if self.nodes[from].state != State::Active {
            return;
        }
        let target = self
            .by_addr
            .get(&addr)
            .copied()
            .filter(|&j| self.nodes[j].state == State::Active);
        let Some(j) = target else {
            self.stats.dial_failures += 1;
            if let Some(t) = self.active(from) {
                t.handle_dial_failed(now, addr);
            }
            self.drain(from);
            return;
        };
        // The target sees an ephemeral source port; it learns the listen port from the
        // extended handshake.
        let src = SocketAddr::new(
            self.nodes[from].addr.ip(),
            40000 + (self.seq % 20000) as u16,
        );
        let incoming = PeerHello {
            addr: src,
            outgoing: false,
            peer_id: self.nodes[from].peer_id,
            fast: true,
            extended: true,
            v2: false,
        };
        let accepted = self
            .active(j)
            .expect("active")
            .handle_connected(now, incoming);
        let cj = match accepted {
            Ok(c) => c,
            Err(_) => {
                self.stats.dial_failures += 1;
                if let Some(t) = self.active(from) {
                    t.handle_dial_failed(now, addr);
                }
                self.drain(from);
                self.drain(j);
                return;
            }
        };
        let outgoing = PeerHello {
            addr,
            outgoing: true,
            peer_id: self.nodes[j].peer_id,
            fast: true,
            extended: true,
            v2: false,
        };
        let cf = match self
            .active(from)
            .expect("active")
            .handle_connected(now, outgoing)
        {
            Ok(c) => c,
            Err(_) => {
                self.active(j)
                    .expect("active")
                    .handle_closed(now, cj, CloseReason::ClosedByPeer);
                self.drain(from);
                self.drain(j);
                return;
            }
        };
        self.next_link += 1;
        let link = self.next_link;
        self.nodes[from].conns.insert(
            cf,
            End {
                peer: j,
                peer_conn: cj,
                link,
                last_sent: now,
            },
        );
        self.nodes[from].conn_peer.insert(cf, j);
        self.nodes[j].conns.insert(
            cj,
            End {
                peer: from,
                peer_conn: cf,
                link,
                last_sent: now,
            },
        );
        self.nodes[j].conn_peer.insert(cj, from);
        self.stats.connections[from] += 1;
        self.stats.connections[j] += 1;
        self.drain(from);
        self.drain(j);
    }

    /// Moves everything node `i`'s machine has to say: events, disk jobs (answered at once),
    /// messages and dials, until it is quiet; then re-arms its timer.
    fn drain(&mut self, i: usize) {
        let now = self.now;
        loop {
            let mut progress = false;
            while let Some(ev) = self.active(i).and_then(Torrent::poll_event) {
                progress = true;
                self.on_event(i, ev);
            }
            while let Some(job) = self.active(i).and_then(Torrent::poll_disk) {
                progress = true;
                let done = self.disk(i, job);
                if let Some(t) = self.active(i) {
                    t.handle_disk(now, done);
                }
            }
            while let Some((conn, msg)) = self.active(i).and_then(Torrent::poll_transmit) {
                progress = true;
                self.transmit(i, conn, msg);
            }
            while let Some(addr) = self.active(i).and_then(Torrent::poll_dial) {
                progress = true;
                let at = now + self.config.latency * 2;
                self.schedule(at, Ev::Connect { from: i, addr });
            }
            if !progress {
                break;
            }
        }
        let t = self.active(i).and_then(|t| t.poll_timeout());
        self.set_timer(i, t.map(|t| t.max(now)));
    }

    fn on_event(&mut self, i: usize, ev: TorrentEvent) {
        let now = self.now;
        match ev {
            TorrentEvent::PeerClosed { conn, reason, .. } => {
                let Some(end) = self.nodes[i].conns.get(&conn).copied() else {
                    return;
                };
                *self.stats.closes.entry(format!("{reason:?}")).or_default() += 1;
                self.stats
                    .closed
                    .push((now, i, end.peer, format!("{reason:?}")));
                self.unlink(i, conn, end.link);
                let at = now + self.config.latency;
                self.tell_other_end(at, &end);
            }
            TorrentEvent::PieceVerified(p) => {
                if self.nodes[i].spec.seed {
                    return;
                }
                let h = &mut self.leecher_holders[p as usize];
                *h += 1;
                if *h == 1 {
                    self.distributed_pieces += 1;
                    if self.distributed_pieces == self.config.pieces
                        && self.stats.distributed_at.is_none()
                    {
                        let seeded: u64 = (0..self.nodes.len())
                            .filter(|&s| self.nodes[s].spec.seed)
                            .map(|s| self.stats.uploaded[s])
                            .sum();
                        self.stats.distributed_at = Some(now);
                        self.stats.seed_copies_at_distribution =
                            Some(seeded as f64 / self.file_len() as f64);
                    }
                }
            }
            TorrentEvent::Complete => {
                if self.stats.completed_at[i].is_none() {
                    self.stats.completed_at[i] = Some(now);
                }
                if self.nodes[i].spec.leave_when_done {
                    self.schedule(now, Ev::Leave(i));
                }
            }
            TorrentEvent::HashFailed(_) => self.stats.hash_failures += 1,
            TorrentEvent::Fatal(e) => panic!("peer {i}: fatal: {e}"),
            TorrentEvent::PeerConnected { .. } | TorrentEvent::Banned(_) => {}
        }
    }

    fn transmit(&mut self, i: usize, conn: ConnId, msg: Message) {
        let now = self.now;
        let Some(end) = self.nodes[i].conns.get_mut(&conn) else {
            return;
        };
        end.last_sent = now;
        let end = *end;
        if let Message::Cancel(r) = &msg {
            self.stats.cancels.push(CancelEvent {
                at: self.now,
                by: i,
                peer: end.peer,
                block: Block::new(r.piece, r.begin / BLOCK_SIZE),
            });
        }
        if matches!(msg, Message::Piece { .. }) {
            let up = &mut self.nodes[i].uplink;
            let q = up.queues.entry(conn).or_default();
            if q.is_empty() {
                up.turn.push_back(conn);
            }
            q.push_back(msg);
            self.start_uplink(i);
            return;
        }
        let at = self.now + self.config.latency;
        self.schedule(
            at,
            Ev::Deliver {
                to: end.peer,
                conn: end.peer_conn,
                link: end.link,
                msg,
                from_seed: false,
            },
        );
    }

    /// Puts the next block on the wire if the uplink is idle (round robin over connections).
    fn start_uplink(&mut self, i: usize) {
        let rate = self.nodes[i].spec.upload_rate;
        let complete = self.nodes[i]
            .torrent
            .as_ref()
            .is_some_and(Torrent::is_complete);
        let node = &mut self.nodes[i];
        if node.uplink.busy || rate == 0 || node.state != State::Active {
            return;
        }
        let up = &mut node.uplink;
        let Some(conn) = up.turn.pop_front() else {
            return;
        };
        let q = up.queues.get_mut(&conn).expect("queued conn");
        let msg = q.pop_front().expect("non-empty queue");
        if q.is_empty() {
            up.queues.remove(&conn);
        } else {
            up.turn.push_back(conn);
        }
        let len = match &msg {
            Message::Piece { data, .. } => data.len() as u128,
            _ => 0,
        };
        let link = node.conns[&conn].link;
        up.busy = true;
        up.current = Some((conn, link, msg, complete));
        let secs = Duration::from_nanos((len * 1_000_000_000 / u128::from(rate)) as u64);
        self.schedule(self.now + secs, Ev::UplinkDone(i));
    }

    fn uplink_done(&mut self, i: usize) {
        let now = self.now;
        let node = &mut self.nodes[i];
        node.uplink.busy = false;
        let Some((conn, link, msg, from_seed)) = node.uplink.current.take() else {
            return;
        };
        if node.state != State::Active {
            return;
        }
        let end = node.conns.get(&conn).copied().filter(|e| e.link == link);
        if let (Some(end), Message::Piece { data, .. }) = (end, &msg) {
            let n = data.len();
            self.stats.uploaded[i] += n as u64;
            if let Some(t) = self.active(i) {
                t.handle_sent(now, conn, n);
            }
            let at = now + self.config.latency;
            self.schedule(
                at,
                Ev::Deliver {
                    to: end.peer,
                    conn: end.peer_conn,
                    link,
                    msg,
                    from_seed,
                },
            );
            let spec = self.nodes[i].spec;
            if let Some(c) = spec.leave_after_copies {
                if self.stats.uploaded[i] as f64 >= c * self.file_len() as f64 {
                    self.schedule(now, Ev::Leave(i));
                }
            }
        }
        self.start_uplink(i);
        self.drain(i);
    }

    fn deliver(&mut self, to: usize, conn: ConnId, link: u64, msg: Message, from_seed: bool) {
        let node = &self.nodes[to];
        let Some(end) = node.conns.get(&conn).copied().filter(|e| e.link == link) else {
            return;
        };
        if node.state != State::Active {
            return;
        }
        if let Message::Piece { data, .. } = &msg {
            let n = data.len() as u64;
            self.stats.received[to] += n;
            *self.stats.bytes_from[to].entry(end.peer).or_default() += n;
            if from_seed {
                self.stats.from_seeds[to] += n;
            }
        }
        let now = self.now;
        if let Some(t) = self.active(to) {
            t.handle_message(now, conn, msg);
        }
        self.drain(to);
    }

    /// The in-memory disk: each block written is checked byte for byte against the content
    /// (stronger than the piece's SHA-1, and what makes a write trustworthy here), a piece is
    /// verified when its last block is written; reads serve the content.
    fn disk(&mut self, i: usize, job: DiskJob) -> DiskDone {
        match job {
            DiskJob::Write { conn, block, data } => {
                let idx = self.content.index(block);
                let result = if data != self.content.blocks[idx] {
                    // Corrupt data fails its piece; honest peers never send any.
                    Ok(WriteResult::PieceFailed)
                } else if self.nodes[i].have[idx] {
                    self.stats.wasted[i] += data.len() as u64;
                    Ok(WriteResult::Duplicate)
                } else {
                    let node = &mut self.nodes[i];
                    node.have[idx] = true;
                    if let Some(&from) = node.conn_peer.get(&conn) {
                        self.stats.block_source[i].insert(block, from);
                    }
                    let count = &mut node.piece_blocks[block.piece as usize];
                    *count += 1;
                    if *count == self.content.blocks_per_piece {
                        Ok(WriteResult::PieceVerified)
                    } else {
                        Ok(WriteResult::Stored)
                    }
                };
                DiskDone::Written {
                    conn,
                    block,
                    result,
                }
            }
            DiskJob::Read { conn, req } => DiskDone::Read {
                conn,
                req,
                result: self.read(i, req),
            },
            DiskJob::HashBlocks { piece } => {
                let first = piece * self.content.blocks_per_piece;
                let hashes = (first..first + self.content.blocks_per_piece)
                    .map(|b| Sha1::digest(&self.content.blocks[b as usize]).into())
                    .collect();
                DiskDone::BlockHashes {
                    piece,
                    result: Ok(hashes),
                }
            }
            // The simulated torrents are v1: no merkle trees, so no block is ever proven bad.
            DiskJob::KeepBlocks { piece, .. } => DiskDone::BlocksKept {
                piece,
                result: Err("no merkle trees in the simulation".to_string()),
            },
            DiskJob::ReadLeaves { piece } => DiskDone::Leaves {
                piece,
                result: Err("no merkle trees in the simulation".to_string()),
            },
            DiskJob::FlushResume { .. } => DiskDone::ResumeFlushed(Ok(())),
        }
    }

    fn read(&self, i: usize, req: BlockRef) -> Result<Bytes, String> {
        let block = Block::new(req.piece, req.begin / BLOCK_SIZE);
        let idx = self.content.index(block);
        if !req.begin.is_multiple_of(BLOCK_SIZE)
            || req.length != BLOCK_SIZE
            || !self.nodes[i].have[idx]
        {
            return Err(format!("peer {i} cannot read {req:?}"));
        }
        Ok(self.content.blocks[idx].clone())
    }
}
