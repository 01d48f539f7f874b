//! The simulation state and its tick.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use shoal_choker::{Choker, ChokerConfig, PeerStats};
use shoal_core::Time;
use shoal_picker::{Block, BlockOutcome, Layout, PickMode, Picker, PickerConfig, BLOCK_SIZE};

/// The swarm-wide settings of a simulation.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of pieces of the shared file.
    pub pieces: u32,
    /// Piece length in bytes (the file is `pieces * piece_len` bytes).
    pub piece_len: u32,
    /// Length of one tick of simulated time.
    pub tick: Duration,
    /// The piece selection every peer uses.
    pub mode: PickMode,
    /// Requests a downloader keeps outstanding per connection.
    pub queue_depth: usize,
    /// Deadline given to each request.
    pub request_timeout: Duration,
    /// Choker settings of every peer.
    pub choker: ChokerConfig,
    /// Seed of all randomness.
    pub seed: u64,
}

impl Default for SimConfig {
    /// 128 pieces of 64 KiB (8 MiB), 1 s ticks, rarest first, 4 requests per connection,
    /// 60 s request timeout, default choker.
    fn default() -> Self {
        SimConfig {
            pieces: 128,
            piece_len: 4 * BLOCK_SIZE,
            tick: Duration::from_secs(1),
            mode: PickMode::RarestFirst,
            queue_depth: 4,
            request_timeout: Duration::from_secs(60),
            choker: ChokerConfig::default(),
            seed: 1,
        }
    }
}

/// One simulated peer.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerSpec {
    /// Upload capacity in bytes per second (0: a free rider).
    pub upload_rate: u64,
    /// Starts with the whole file.
    pub seed: bool,
    /// From this time on the peer sends nothing (but stays connected and keeps its unchokes).
    pub stall_at: Option<Time>,
    /// The peer leaves once it has uploaded this many copies of the file.
    pub leave_after_copies: Option<f64>,
    /// The peer leaves as soon as it has the whole file (it does not seed).
    pub leave_when_done: bool,
}

/// A downloader's choker declared an uploader snubbed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnubEvent {
    /// When.
    pub at: Time,
    /// The downloader whose choker decided it.
    pub by: usize,
    /// The silent uploader.
    pub peer: usize,
    /// Requests the downloader had outstanding to it, now re-requested elsewhere.
    pub freed: usize,
}

/// What happened during a run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// When each peer had every piece (seeds: at zero).
    pub completed_at: Vec<Option<Time>>,
    /// When each peer left the swarm, if it did.
    pub departed_at: Vec<Option<Time>>,
    /// `bytes_from[d][u]`: bytes `d` received from `u`.
    pub bytes_from: Vec<Vec<u64>>,
    /// Bytes each peer received from peers that had the whole file at the time.
    pub from_seeds: Vec<u64>,
    /// Bytes each peer received (from non-seeds) while optimistically unchoked.
    pub from_optimistic: Vec<u64>,
    /// Bytes each peer received from non-seeds that reciprocated (regular slots).
    pub from_regular: Vec<u64>,
    /// Bytes each peer uploaded.
    pub uploaded: Vec<u64>,
    /// When every piece was first held by at least one peer that did not start as a seed.
    pub distributed_at: Option<Time>,
    /// Bytes uploaded by the initial seeds up to `distributed_at`, in copies of the file.
    pub seed_copies_at_distribution: Option<f64>,
    /// Every snub decision.
    pub snubs: Vec<SnubEvent>,
    /// For each peer, which peer delivered each block it kept.
    pub block_source: Vec<HashMap<Block, usize>>,
}

/// The directed connection `u -> d` (u uploads to d).
#[derive(Clone, Debug)]
struct Link {
    /// `u` chokes `d`.
    choked: bool,
    /// `d` is interested in `u`.
    interested: bool,
    /// Requests from `d` waiting at `u`, in order.
    queue: VecDeque<Block>,
    /// Last block from `u` to `d`, or when `d` started wanting from `u` if later.
    last_progress: Time,
    /// `d` wants from `u` (interested, and unchoked or with requests out).
    wanting: bool,
}

struct Node {
    spec: PeerSpec,
    picker: Picker<u32>,
    choker: Choker<u32>,
    next_choke: Time,
    credit: u64,
    gone: bool,
    down_from: Vec<u64>,
    up_to: Vec<u64>,
}

/// A running simulation.
pub struct Swarm {
    config: SimConfig,
    layout: Layout,
    now: Time,
    nodes: Vec<Node>,
    links: Vec<Link>,
    rng: SmallRng,
    /// Per piece, how many non-initial-seed peers hold it.
    leecher_holders: Vec<u32>,
    distributed_pieces: u32,
    stats: Stats,
}

impl Swarm {
    /// A swarm of the given peers, all connected to each other at time zero.
    pub fn new(config: SimConfig, specs: &[PeerSpec]) -> Swarm {
        let n = specs.len();
        let total = u64::from(config.pieces) * u64::from(config.piece_len);
        let layout = Layout::new(config.pieces, config.piece_len, total).expect("valid sim layout");
        let picker_cfg = PickerConfig {
            mode: config.mode,
            ..PickerConfig::default()
        };
        let mut nodes: Vec<Node> = specs
            .iter()
            .enumerate()
            .map(|(i, &spec)| {
                let s = config.seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
                let mut picker = Picker::with_config(layout, picker_cfg, s);
                if spec.seed {
                    for p in 0..config.pieces {
                        picker.piece_verified(p).expect("piece in range");
                    }
                }
                Node {
                    spec,
                    picker,
                    choker: Choker::new(config.choker, s ^ 0x5eed),
                    next_choke: Time::ZERO,
                    credit: 0,
                    gone: false,
                    down_from: vec![0; n],
                    up_to: vec![0; n],
                }
            })
            .collect();
        for (d, node) in nodes.iter_mut().enumerate() {
            for (u, spec) in specs.iter().enumerate() {
                if u == d {
                    continue;
                }
                node.picker.add_peer(u as u32);
                if spec.seed {
                    node.picker.peer_have_all(u as u32).expect("known peer");
                } else {
                    node.picker.peer_have_none(u as u32).expect("known peer");
                }
            }
        }
        let link = Link {
            choked: true,
            interested: false,
            queue: VecDeque::new(),
            last_progress: Time::ZERO,
            wanting: false,
        };
        let stats = Stats {
            completed_at: specs.iter().map(|s| s.seed.then_some(Time::ZERO)).collect(),
            departed_at: vec![None; n],
            bytes_from: vec![vec![0; n]; n],
            from_seeds: vec![0; n],
            from_optimistic: vec![0; n],
            from_regular: vec![0; n],
            uploaded: vec![0; n],
            block_source: vec![HashMap::new(); n],
            ..Stats::default()
        };
        Swarm {
            rng: SmallRng::seed_from_u64(config.seed),
            leecher_holders: vec![0; config.pieces as usize],
            distributed_pieces: 0,
            config,
            layout,
            now: Time::ZERO,
            nodes,
            links: vec![link; n * n],
            stats,
        }
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
        self.layout.total_len()
    }

    /// The requests `downloader` has waiting at `uploader`, in order.
    pub fn queued(&self, uploader: usize, downloader: usize) -> Vec<Block> {
        self.links[uploader * self.n() + downloader]
            .queue
            .iter()
            .copied()
            .collect()
    }

    /// Whether `uploader` currently unchokes `downloader`.
    pub fn unchokes(&self, uploader: usize, downloader: usize) -> bool {
        !self.links[uploader * self.n() + downloader].choked
    }

    /// True once every peer that did not start as a seed, is still there and is not stalled has
    /// the whole file.
    pub fn leechers_done(&self) -> bool {
        self.nodes.iter().enumerate().all(|(i, node)| {
            node.spec.seed
                || node.gone
                || node.spec.stall_at.is_some()
                || self.stats.completed_at[i].is_some()
        })
    }

    /// Runs ticks until [`leechers_done`](Self::leechers_done) or `limit`; true if done.
    pub fn run_until_done(&mut self, limit: Time) -> bool {
        while self.now < limit {
            if self.leechers_done() {
                return true;
            }
            self.step();
        }
        self.leechers_done()
    }

    /// One tick.
    pub fn step(&mut self) {
        let now = self.now;
        self.departures(now);
        self.expire(now);
        self.update_interest(now);
        self.run_chokers(now);
        self.request(now);
        self.transfer(now);
        self.now += self.config.tick;
    }

    fn n(&self) -> usize {
        self.nodes.len()
    }

    fn link(&mut self, u: usize, d: usize) -> &mut Link {
        let n = self.n();
        &mut self.links[u * n + d]
    }

    fn departures(&mut self, now: Time) {
        let file = self.file_len() as f64;
        for g in 0..self.n() {
            let node = &self.nodes[g];
            let leave = !node.gone
                && (node
                    .spec
                    .leave_after_copies
                    .is_some_and(|c| self.stats.uploaded[g] as f64 >= c * file)
                    || (node.spec.leave_when_done && self.stats.completed_at[g].is_some()));
            if !leave {
                continue;
            }
            self.nodes[g].gone = true;
            self.stats.departed_at[g] = Some(now);
            for x in 0..self.n() {
                if x == g {
                    continue;
                }
                self.nodes[x].picker.remove_peer(g as u32);
                for (u, d) in [(g, x), (x, g)] {
                    let l = self.link(u, d);
                    l.queue.clear();
                    l.choked = true;
                    l.interested = false;
                    l.wanting = false;
                }
            }
        }
    }

    fn expire(&mut self, now: Time) {
        for d in 0..self.n() {
            let expired = self.nodes[d].picker.expire(now);
            for (u, block) in expired {
                self.link(u as usize, d).queue.retain(|&b| b != block);
            }
        }
    }

    fn update_interest(&mut self, now: Time) {
        for d in 0..self.n() {
            for u in 0..self.n() {
                if u == d || self.nodes[u].gone || self.nodes[d].gone {
                    continue;
                }
                let interested = self.nodes[d].picker.is_interesting(u as u32);
                let l = self.link(u, d);
                l.interested = interested;
                let wanting = interested && (!l.choked || !l.queue.is_empty());
                if wanting && !l.wanting {
                    l.last_progress = l.last_progress.max(now);
                }
                l.wanting = wanting;
            }
        }
    }

    fn run_chokers(&mut self, now: Time) {
        let n = self.n();
        for u in 0..n {
            let node = &self.nodes[u];
            let stalled = node.spec.stall_at.is_some_and(|t| now >= t);
            // A stalled peer is frozen: it keeps whatever unchokes it had.
            if node.gone || stalled || now < node.next_choke {
                continue;
            }
            let stats: Vec<PeerStats<u32>> = (0..n)
                .filter(|&v| v != u && !self.nodes[v].gone)
                .map(|v| {
                    let to_v = &self.links[u * n + v];
                    let from_v = &self.links[v * n + u];
                    PeerStats {
                        peer: v as u32,
                        downloaded: self.nodes[u].down_from[v],
                        uploaded: self.nodes[u].up_to[v],
                        peer_interested: to_v.interested,
                        am_interested: from_v.interested,
                        peer_choking: from_v.choked,
                        requests_out: from_v.queue.len(),
                        connected_at: Time::ZERO,
                        last_block_at: Some(from_v.last_progress),
                    }
                })
                .collect();
            let seeding = self.nodes[u].picker.is_complete();
            let decision = self.nodes[u].choker.tick(now, seeding, &stats);
            for v in decision.unchoke {
                let l = self.link(u, v as usize);
                l.choked = false;
                // The downloader starts waiting on this connection now, not at its last block.
                l.last_progress = l.last_progress.max(now);
            }
            for v in decision.choke {
                let v = v as usize;
                // Without the fast extension a choke discards the pending requests.
                let l = self.link(u, v);
                l.choked = true;
                l.queue.clear();
                self.nodes[v].picker.abort_peer_requests(u as u32);
            }
            for v in decision.snubbed {
                let v = v as usize;
                let freed = self.nodes[u].picker.abort_peer_requests(v as u32).len();
                self.link(v, u).queue.clear();
                self.stats.snubs.push(SnubEvent {
                    at: now,
                    by: u,
                    peer: v,
                    freed,
                });
            }
            self.nodes[u].next_choke = decision.next_call;
        }
    }

    fn request(&mut self, now: Time) {
        let n = self.n();
        let deadline = now + self.config.request_timeout;
        for d in 0..n {
            if self.nodes[d].gone || self.nodes[d].picker.is_complete() {
                continue;
            }
            let mut order: Vec<usize> = (0..n).filter(|&u| u != d).collect();
            order.shuffle(&mut self.rng);
            for u in order {
                let l = &self.links[u * n + d];
                if self.nodes[u].gone || l.choked || !l.interested {
                    continue;
                }
                // A snubbed peer keeps a single request, so it can prove itself again.
                let depth = if self.nodes[d].choker.is_snubbed(u as u32) {
                    1
                } else {
                    self.config.queue_depth
                };
                let room = depth.saturating_sub(l.queue.len());
                if room == 0 {
                    continue;
                }
                let blocks = self.nodes[d].picker.pick(u as u32, room, now, deadline);
                self.link(u, d).queue.extend(blocks);
            }
        }
    }

    fn transfer(&mut self, now: Time) {
        let n = self.n();
        let mut uploaders: Vec<usize> = (0..n).collect();
        uploaders.shuffle(&mut self.rng);
        let tick_ms = self.config.tick.as_millis() as u64;
        for u in uploaders {
            let node = &self.nodes[u];
            if node.gone || node.spec.stall_at.is_some_and(|t| now >= t) {
                continue;
            }
            let mut budget = node.credit + node.spec.upload_rate * tick_ms / 1000;
            let mut targets: Vec<usize> = (0..n)
                .filter(|&d| d != u && !self.links[u * n + d].choked)
                .collect();
            targets.shuffle(&mut self.rng);
            // Round robin, one block per connection per turn, until out of budget or requests.
            'serve: loop {
                let mut sent_any = false;
                for &d in &targets {
                    let Some(&block) = self.links[u * n + d].queue.front() else {
                        continue;
                    };
                    let len = u64::from(self.layout.block_len(block));
                    if len > budget {
                        break 'serve;
                    }
                    budget -= len;
                    self.link(u, d).queue.pop_front();
                    self.deliver(now, u, d, block, len);
                    sent_any = true;
                }
                if !sent_any {
                    break;
                }
            }
            self.nodes[u].credit = budget.min(u64::from(BLOCK_SIZE));
        }
    }

    fn deliver(&mut self, now: Time, u: usize, d: usize, block: Block, len: u64) {
        self.stats.uploaded[u] += len;
        self.stats.bytes_from[d][u] += len;
        self.nodes[u].up_to[d] += len;
        self.nodes[d].down_from[u] += len;
        if self.nodes[u].picker.is_complete() {
            self.stats.from_seeds[d] += len;
        } else if self.nodes[u].choker.is_optimistic(d as u32) {
            self.stats.from_optimistic[d] += len;
        } else {
            self.stats.from_regular[d] += len;
        }
        self.link(u, d).last_progress = now;
        let outcome = self.nodes[d].picker.block_received(u as u32, block);
        let Ok(BlockOutcome::New {
            cancel,
            piece_complete,
        }) = outcome
        else {
            return;
        };
        self.stats.block_source[d].insert(block, u);
        for c in cancel {
            self.link(c as usize, d).queue.retain(|&b| b != block);
        }
        if !piece_complete {
            return;
        }
        let piece = block.piece;
        self.nodes[d]
            .picker
            .piece_verified(piece)
            .expect("piece in range");
        for x in 0..self.n() {
            if x != d && !self.nodes[x].gone {
                self.nodes[x]
                    .picker
                    .peer_have(d as u32, piece)
                    .expect("known peer");
            }
        }
        if !self.nodes[d].spec.seed {
            let h = &mut self.leecher_holders[piece as usize];
            *h += 1;
            if *h == 1 {
                self.distributed_pieces += 1;
                if self.distributed_pieces == self.config.pieces
                    && self.stats.distributed_at.is_none()
                {
                    let seeded: u64 = (0..self.n())
                        .filter(|&s| self.nodes[s].spec.seed)
                        .map(|s| self.stats.uploaded[s])
                        .sum();
                    self.stats.distributed_at = Some(now);
                    self.stats.seed_copies_at_distribution =
                        Some(seeded as f64 / self.file_len() as f64);
                }
            }
        }
        if self.nodes[d].picker.is_complete() {
            self.stats.completed_at[d] = Some(now);
        }
    }
}
