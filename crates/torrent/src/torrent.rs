//! The [`Torrent`] state machine: one torrent's peers, requests, uploads, choking and bans.
//!
//! Inputs are method calls with the time (`handle_*`, [`Torrent::add_peers`]); outputs are
//! polled (`poll_transmit`, `poll_disk`, `poll_dial`, `poll_event`) and
//! [`Torrent::poll_timeout`] says when to call [`Torrent::handle_timeout`] next. Nothing here
//! touches a socket, a thread or a clock, so the engine's tokio driver and the swarm simulator run
//! the same code.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use shoal_choker::{Choker, ChokerConfig, PeerStats};
use shoal_core::{Id20, Id32, Time};
use shoal_picker::{Block, PickMode, Picker};
use shoal_wire::{BlockRef, ExtendedHandshake, Message};
use tracing::{debug, info, warn};

use crate::peer::{Peer, OUR_REQQ};
use crate::peer_book::PeerBook;
use crate::smart_ban::SmartBan;
use crate::violation::{CloseReason, PeerViolation};

/// A connection's key: a number never reused within a torrent.
pub type ConnId = u32;

/// The extension id under which shoal receives `ut_metadata` (BEP 9/10).
pub const UT_METADATA_ID: u8 = 3;
/// The extension id under which shoal receives `ut_pex` (BEP 11).
pub const UT_PEX_ID: u8 = 1;
/// Time between two `ut_pex` messages to one peer (BEP 11: at most once a minute).
pub(crate) const PEX_INTERVAL: Duration = Duration::from_secs(60);
/// Block writes on their way to disk before we stop asking peers for more (4 MiB; measured: 512
/// gave the same throughput with 5 MiB more anonymous memory). Reads are counted apart, so
/// uploading never throttles downloading.
pub(crate) const MAX_DISK_WRITES: usize = 256;
/// A snubbed peer that stays silent this much longer is dropped.
pub(crate) const SNUBBED_DROP_AFTER: Duration = Duration::from_secs(60);
/// A peer that sends nothing at all (not even a keep-alive) for this long is dropped
/// (BEP 3 keep-alives come every 2 minutes).
pub(crate) const IDLE_DROP_AFTER: Duration = Duration::from_secs(150);
/// Blocks tolerated from a peer that were never requested from it before it is dropped (they are
/// never written).
pub(crate) const MAX_UNSOLICITED: u32 = 16;
/// Connection attempts in progress at once.
pub(crate) const MAX_HALF_OPEN: usize = 8;
/// How often rates and the status are updated.
pub(crate) const RATE_INTERVAL: Duration = Duration::from_secs(1);
/// How often resume data is offered for writing while pieces complete.
pub(crate) const RESUME_INTERVAL: Duration = Duration::from_secs(5);
/// Snubbing: a peer we want from that sends no block for this long loses its regular unchoke
/// slot and gets one request at a time (libtorrent's 20 s; one policy, decided by the choker).
pub(crate) const SNUB_AFTER: Duration = Duration::from_secs(20);

/// The facts a torrent machine starts from.
#[derive(Clone, Debug)]
pub struct TorrentConfig {
    /// The info-hash.
    pub info_hash: Id20,
    /// Our peer id.
    pub peer_id: Id20,
    /// Pieces.
    pub num_pieces: u32,
    /// Bytes per piece (the last may be shorter).
    pub piece_length: u32,
    /// Bytes in all.
    pub total_length: u64,
    /// BEP 27: no PEX, no metadata exchange.
    pub private: bool,
    /// The bencoded info dictionary, served over `ut_metadata` (BEP 9).
    pub info_bytes: Bytes,
    /// Our listen port (extended handshake `p`).
    pub listen_port: u16,
    /// Our own listen address, never dialled.
    pub own_addr: Option<SocketAddr>,
    /// Most peers connected at once.
    pub max_peers: usize,
    /// Per piece: false to skip it (`None`: every piece is wanted).
    pub wanted: Option<Vec<bool>>,
    /// Pieces already verified (from resume data or a check).
    pub have: Vec<u32>,
    /// Read-only storage (the initial seeder): no writes, no resume data.
    pub seed_only: bool,
    /// Seed of every random choice (picker, choker, back-off jitter).
    pub seed: u64,
    /// How new pieces are chosen (rarest first; the others exist for streaming and simulations).
    pub pick_mode: PickMode,
    /// Super-seed (BEP 16, see `superseed.rs`) while the swarm lacks a piece; only a torrent
    /// that starts complete does.
    pub super_seed: bool,
    /// v2 and hybrid torrents (BEP 52): each file's piece layer by its `pieces root`, from which
    /// peers' `hash request`s for that layer are answered. Empty for v1.
    pub piece_layers: HashMap<Id32, Vec<Id32>>,
    /// v2 and hybrid torrents: each file with a merkle tree (pad files and empty files have
    /// none), in torrent order. Empty for v1.
    pub v2_files: Vec<V2File>,
}

/// Where one file of a v2 or hybrid torrent lies, for the hash requests of its tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V2File {
    /// Its merkle root (`pieces root`).
    pub pieces_root: Id32,
    /// The piece it starts at (v2 files start on piece boundaries).
    pub first_piece: u32,
    /// Its length in bytes (more than zero).
    pub length: u64,
}

/// A completed write, as the disk reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteResult {
    /// Stored; the piece is not complete yet.
    Stored,
    /// The block was already there.
    Duplicate,
    /// It completed its piece, which passed the hash check.
    PieceVerified,
    /// It completed its piece, which failed the hash check.
    PieceFailed,
}

/// Work for the disk, polled with [`Torrent::poll_disk`]. Each job is answered with one
/// [`DiskDone`] through [`Torrent::handle_disk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskJob {
    /// Write a block (and hash its piece when it completes it).
    Write {
        /// The peer that sent it.
        conn: ConnId,
        /// The block.
        block: Block,
        /// Its data.
        data: Bytes,
    },
    /// Read a block a peer asked for.
    Read {
        /// The peer that asked.
        conn: ConnId,
        /// What it asked for.
        req: BlockRef,
    },
    /// Hash each block of a piece (evidence for the smart ban).
    HashBlocks {
        /// The piece.
        piece: u32,
    },
    /// The merkle leaves (SHA-256 of each 16 KiB block of file data) of a piece as it is on
    /// disk: to answer a peer's leaf-layer hash request, or to compare a failed piece's blocks
    /// with proven ones (v2 and hybrid torrents).
    ReadLeaves {
        /// The piece.
        piece: u32,
    },
    /// After a failure whose bad blocks are proven (BEP 52), keep the piece's other blocks as
    /// they are on disk: only the bad ones come again.
    KeepBlocks {
        /// The piece.
        piece: u32,
        /// Per block of the piece: keep it.
        keep: Vec<bool>,
    },
    /// Write resume data if pieces completed since the last write (`force`: at completion).
    FlushResume {
        /// Write now rather than when due.
        force: bool,
    },
}

/// The disk's answer to a [`DiskJob`].
#[derive(Clone, Debug)]
pub enum DiskDone {
    /// Answer to [`DiskJob::Write`].
    Written {
        /// The peer that sent the block.
        conn: ConnId,
        /// The block.
        block: Block,
        /// What happened, or the storage error.
        result: Result<WriteResult, String>,
    },
    /// Answer to [`DiskJob::Read`].
    Read {
        /// The peer that asked.
        conn: ConnId,
        /// What it asked for.
        req: BlockRef,
        /// The data, or the storage error.
        result: Result<Bytes, String>,
    },
    /// Answer to [`DiskJob::HashBlocks`].
    BlockHashes {
        /// The piece.
        piece: u32,
        /// SHA-1 of each block, in order, or the storage error.
        result: Result<Vec<[u8; 20]>, String>,
    },
    /// Answer to [`DiskJob::ReadLeaves`].
    Leaves {
        /// The piece.
        piece: u32,
        /// One leaf per block of file data in the piece, or the storage error.
        result: Result<Vec<Id32>, String>,
    },
    /// Answer to [`DiskJob::KeepBlocks`].
    BlocksKept {
        /// The piece.
        piece: u32,
        /// Done, or the storage error.
        result: Result<(), String>,
    },
    /// Answer to [`DiskJob::FlushResume`].
    ResumeFlushed(Result<(), String>),
}

/// What a connecting peer's handshake said.
#[derive(Clone, Copy, Debug)]
pub struct PeerHello {
    /// Its address.
    pub addr: SocketAddr,
    /// We dialled it.
    pub outgoing: bool,
    /// Its peer id.
    pub peer_id: Id20,
    /// It speaks BEP 6 (fast extension).
    pub fast: bool,
    /// It speaks BEP 10 (extension protocol).
    pub extended: bool,
    /// The connection is in the torrent's v2 swarm (BEP 52: the handshake named the truncated
    /// SHA-256), so hash requests may be sent on it.
    pub v2: bool,
}

/// What happened, polled with [`Torrent::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TorrentEvent {
    /// A peer's connection is registered.
    PeerConnected {
        /// Its key.
        conn: ConnId,
        /// Its address.
        addr: SocketAddr,
    },
    /// A connection ended; the driver drops it if it still holds it.
    PeerClosed {
        /// Its key.
        conn: ConnId,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        reason: CloseReason,
    },
    /// A piece passed its hash check.
    PieceVerified(u32),
    /// A piece failed its hash check.
    HashFailed(u32),
    /// Every wanted piece is verified.
    Complete,
    /// An IP is banned for sending data that failed the hash check.
    Banned(IpAddr),
    /// The torrent stopped on a storage error (verified data is kept).
    Fatal(String),
}

/// Counters and states for the status display.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TorrentStats {
    /// Bytes of verified wanted pieces.
    pub verified_bytes: u64,
    /// Bytes of all wanted pieces.
    pub wanted_bytes: u64,
    /// Verified pieces.
    pub pieces_have: u32,
    /// All pieces.
    pub pieces_total: u32,
    /// Payload bytes received (waste included).
    pub downloaded: u64,
    /// Payload bytes sent.
    pub uploaded: u64,
    /// Download rate, bytes per second.
    pub down_rate: f64,
    /// Upload rate, bytes per second.
    pub up_rate: f64,
    /// Pieces that failed their hash check.
    pub hash_failures: u32,
    /// Banned IPs.
    pub banned: Vec<IpAddr>,
    /// Connected peers.
    pub peers: usize,
    /// Connections closed for a protocol violation.
    pub violations: u32,
    /// Every wanted piece is verified.
    pub complete: bool,
    /// Stopped on a storage error.
    pub fatal: Option<String>,
    /// The swarm's distributed copies among connected peers (us excluded): the least available
    /// piece's count plus the fraction of pieces held more often. At least 1.0 once the
    /// connected peers hold every piece between them.
    pub distributed_copies: f64,
    /// Super-seeding (BEP 16) now.
    pub super_seeding: bool,
}

/// One torrent's state machine. See the module docs.
pub struct Torrent {
    pub(crate) config: TorrentConfig,
    pub(crate) picker: Picker<ConnId>,
    pub(crate) choker: Choker<ConnId>,
    pub(crate) choker_next: Time,
    pub(crate) book: PeerBook,
    pub(crate) peers: HashMap<ConnId, Peer>,
    next_conn: ConnId,
    pub(crate) dialing: usize,
    pub(crate) disk_writes: usize,
    pub(crate) disk_reads: usize,
    resume_pending: bool,
    next_resume: Time,
    pub(crate) smart_ban: SmartBan,
    /// Failed v2 pieces whose bad blocks are being named from proven leaf hashes.
    pub(crate) block_ban: crate::block_ban::BlockBan,
    /// What answering peers' hash requests keeps: leaf-layer requests waiting for their
    /// piece's leaves from the disk, and the trees above each file's piece layer.
    pub(crate) hash_answers: crate::hashes::HashAnswers,
    /// Pieces whose per-block hashes were asked for, and why.
    pub(crate) hashing: HashMap<u32, crate::bans::Evidence>,
    /// Failed attempts per piece (for narrowing down a repeat offender).
    pub(crate) failures: HashMap<u32, u32>,
    /// The IP of every connection that may still be named in the picker's block senders.
    pub(crate) conn_ips: HashMap<ConnId, IpAddr>,
    conn_order: VecDeque<ConnId>,
    pub(crate) rng: StdRng,
    /// Per piece, to how many downloaders we suggested it or they asked for it on their own
    /// (seeding; see `suggest.rs`).
    pub(crate) offered: Vec<u16>,
    /// Super-seeding state, while it lasts.
    pub(crate) super_seed: Option<crate::superseed::SuperSeed>,
    pub(crate) stats: TorrentStats,
    uploaded_window: u64,
    downloaded_window: u64,
    last_rate_update: Time,
    transmits: VecDeque<(ConnId, Message)>,
    disk_jobs: VecDeque<DiskJob>,
    dials: VecDeque<SocketAddr>,
    events: VecDeque<TorrentEvent>,
}

/// Connection IPs remembered for the smart ban after their connection closed.
const MAX_CONN_IPS: usize = 4096;

impl Torrent {
    /// A machine for a torrent whose data is checked: `config.have` lists the verified pieces.
    pub fn new(config: TorrentConfig, now: Time) -> Result<Torrent, String> {
        let mut picker = Picker::new(
            config.num_pieces,
            config.piece_length,
            config.total_length,
            config.seed,
        )
        .map_err(|e| format!("invalid piece layout: {e}"))?;
        picker.set_mode(config.pick_mode);
        let wanted = |p: u32| {
            config
                .wanted
                .as_ref()
                .is_none_or(|w| w.get(p as usize).copied().unwrap_or(false))
        };
        for p in 0..config.num_pieces {
            if !wanted(p) {
                let _ = picker.set_piece_priority(p, 0);
            }
        }
        let layout = *picker.layout();
        let mut verified_bytes = 0;
        for &p in &config.have {
            if picker.piece_verified(p).is_ok() && wanted(p) {
                verified_bytes += u64::from(layout.piece_len(p));
            }
        }
        let wanted_bytes = (0..config.num_pieces)
            .filter(|p| wanted(*p))
            .map(|p| u64::from(layout.piece_len(p)))
            .sum();
        let mut book = PeerBook::new();
        book.own_addr = config.own_addr;
        let choker = Choker::new(
            ChokerConfig {
                snub_after: SNUB_AFTER,
                ..ChokerConfig::default()
            },
            config.seed ^ 0x5eed,
        );
        let stats = TorrentStats {
            verified_bytes,
            wanted_bytes,
            pieces_have: picker.num_have(),
            pieces_total: config.num_pieces,
            complete: picker.is_complete(),
            ..TorrentStats::default()
        };
        let super_seed = (config.super_seed && picker.is_complete())
            .then(|| crate::superseed::SuperSeed::new(config.num_pieces));
        Ok(Torrent {
            super_seed,
            rng: StdRng::seed_from_u64(config.seed ^ 0xb00c),
            offered: vec![0; config.num_pieces as usize],
            config,
            picker,
            choker,
            choker_next: now,
            book,
            peers: HashMap::new(),
            next_conn: 0,
            dialing: 0,
            disk_writes: 0,
            disk_reads: 0,
            resume_pending: false,
            next_resume: now + RESUME_INTERVAL,
            smart_ban: SmartBan::new(),
            block_ban: Default::default(),
            hash_answers: Default::default(),
            hashing: HashMap::new(),
            failures: HashMap::new(),
            conn_ips: HashMap::new(),
            conn_order: VecDeque::new(),
            stats,
            uploaded_window: 0,
            downloaded_window: 0,
            last_rate_update: now,
            transmits: VecDeque::new(),
            disk_jobs: VecDeque::new(),
            dials: VecDeque::new(),
            events: VecDeque::new(),
        })
    }

    // ----- outputs -----

    /// The next message to send, and to whom.
    pub fn poll_transmit(&mut self) -> Option<(ConnId, Message)> {
        self.transmits.pop_front()
    }

    /// The next disk job.
    pub fn poll_disk(&mut self) -> Option<DiskJob> {
        self.disk_jobs.pop_front()
    }

    /// The next address to dial; answer with [`Torrent::handle_connected`] or
    /// [`Torrent::handle_dial_failed`].
    pub fn poll_dial(&mut self) -> Option<SocketAddr> {
        self.dials.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TorrentEvent> {
        self.events.pop_front()
    }

    /// When [`Torrent::handle_timeout`] must run next: the earliest of the request deadlines,
    /// the stall and idle checks of each peer, the choker's next call, the rate update, PEX,
    /// resume data and the next dial. `None` once stopped.
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.stats.fatal.is_some() {
            return None;
        }
        // A torrent without peers whose rates have decayed to zero has no rates to update and
        // nobody to choke: it sleeps until something happens (a daemon holds thousands such).
        let quiet = self.peers.is_empty()
            && self.stats.down_rate == 0.0
            && self.stats.up_rate == 0.0
            && self.downloaded_window == 0
            && self.uploaded_window == 0;
        let far = self.last_rate_update + Duration::from_secs(86_400 * 365);
        let mut next = if quiet {
            far
        } else {
            (self.last_rate_update + RATE_INTERVAL).min(self.choker_next)
        };
        if let Some(t) = self.picker.next_deadline() {
            next = next.min(t);
        }
        if let Some(t) = self.super_seed_deadline() {
            next = next.min(t);
        }
        if let Some(t) = self.block_ban.next_deadline() {
            next = next.min(t);
        }
        if self.resume_pending {
            next = next.min(self.next_resume);
        }
        if self.dial_room() > 0 {
            if let Some(t) = self.book.next_due() {
                next = next.min(t);
            }
        }
        for (&conn, p) in &self.peers {
            next = next.min(p.last_message_at + IDLE_DROP_AFTER);
            if let Some(since) = p.snubbed_since {
                next = next.min(since + SNUBBED_DROP_AFTER);
            }
            if let Some(t) = self.stall_deadline(conn, p) {
                next = next.min(t);
            }
            // Only peers that speak ut_pex are ever sent PEX (and have `next_pex_at` moved on):
            // a deadline for the others would stay in the past and spin the driver.
            if !self.config.private && p.pex_id.is_some() {
                next = next.min(p.next_pex_at);
            }
        }
        (next != far).then_some(next)
    }

    /// Counters for the status display.
    pub fn stats(&self) -> TorrentStats {
        let mut s = self.stats.clone();
        s.peers = self.peers.len();
        s.distributed_copies = self.picker.distributed_copies();
        s.super_seeding = self.super_seed.is_some();
        s
    }

    /// The swarm's distributed copies among connected peers (see
    /// [`TorrentStats::distributed_copies`]).
    pub fn distributed_copies(&self) -> f64 {
        self.picker.distributed_copies()
    }

    /// Whether every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        self.picker.is_complete()
    }

    /// Whether `piece` is verified.
    pub fn have(&self, piece: u32) -> bool {
        self.picker.have(piece)
    }

    /// The connected peers' addresses.
    pub fn peer_addrs(&self) -> Vec<(ConnId, SocketAddr)> {
        self.peers.iter().map(|(k, p)| (*k, p.addr)).collect()
    }

    /// Whether `ip` is banned.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.book.is_banned(ip)
    }

    // ----- inputs -----

    /// More peer addresses (command line, trackers, DHT, PEX).
    pub fn add_peers(&mut self, now: Time, addrs: impl IntoIterator<Item = SocketAddr>) {
        for a in addrs {
            self.book.add(a, now);
        }
        self.dial_due(now);
    }

    /// How new pieces are chosen.
    pub fn pick_mode(&self) -> PickMode {
        self.config.pick_mode
    }

    /// Changes how new pieces are chosen (pieces already started are finished as they are):
    /// sequential for streaming, rarest first otherwise.
    pub fn set_pick_mode(&mut self, mode: PickMode) {
        self.config.pick_mode = mode;
        self.picker.set_mode(mode);
    }

    /// Changes the most peers connected at once (at least 1). Lowering it closes the newest
    /// connections over the new cap; raising it lets the torrent dial more.
    pub fn set_max_peers(&mut self, now: Time, max_peers: usize) {
        let max_peers = max_peers.max(1);
        if max_peers == self.config.max_peers {
            return;
        }
        self.config.max_peers = max_peers;
        if self.peers.len() > max_peers {
            let mut conns: Vec<ConnId> = self.peers.keys().copied().collect();
            conns.sort_unstable();
            for conn in conns.split_off(max_peers) {
                self.close(now, conn, CloseReason::TooManyPeers);
            }
        }
        self.dial_due(now);
    }

    /// The most peers connected at once.
    pub fn max_peers(&self) -> usize {
        self.config.max_peers
    }

    /// A dial from [`Torrent::poll_dial`] failed (refused, timed out, wrong handshake).
    pub fn handle_dial_failed(&mut self, now: Time, addr: SocketAddr) {
        self.dialing = self.dialing.saturating_sub(1);
        self.book.failed(addr, now, &mut self.rng);
        self.dial_due(now);
    }

    /// A connection with a completed handshake, dialled or accepted. Returns its key, or why it
    /// is refused (the driver then closes it).
    pub fn handle_connected(&mut self, now: Time, hello: PeerHello) -> Result<ConnId, CloseReason> {
        if hello.outgoing {
            self.dialing = self.dialing.saturating_sub(1);
        }
        let refused = if self.stats.fatal.is_some() {
            Some(CloseReason::Shutdown)
        } else if self.book.is_banned(hello.addr.ip()) {
            Some(CloseReason::Banned)
        } else if hello.peer_id == self.config.peer_id {
            Some(CloseReason::SelfConnection)
        } else if self.peers.len() >= self.config.max_peers {
            Some(CloseReason::TooManyPeers)
        } else if self.peers.values().any(|p| p.peer_id == hello.peer_id) {
            Some(CloseReason::Duplicate)
        } else {
            None
        };
        if let Some(reason) = refused {
            debug!(addr = %hello.addr, "refusing connection: {reason}");
            if hello.outgoing {
                // Being full is not the address's fault: try it again later, no failure.
                let not_its_fault = reason == CloseReason::TooManyPeers;
                self.book
                    .closed(hello.addr, not_its_fault, now, &mut self.rng);
            }
            return Err(reason);
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        if hello.outgoing {
            self.book.connecting(hello.addr, now);
        }
        self.remember_ip(conn, hello.addr.ip());
        let mut peer = Peer::new(hello.addr, hello.outgoing, hello.peer_id, hello.fast, now);
        peer.extended_bit = hello.extended;
        peer.v2 = hello.v2;
        self.peers.insert(conn, peer);
        self.picker.add_peer(conn);
        info!(addr = %hello.addr, conn, outgoing = hello.outgoing, "peer connected");
        self.events.push_back(TorrentEvent::PeerConnected {
            conn,
            addr: hello.addr,
        });
        if hello.extended {
            let hs = self.extended_handshake(hello.addr);
            self.send(conn, hs);
        }
        let n = self.picker.num_have();
        if self.super_seed.is_some() {
            self.super_seed_connected(now, conn, hello.fast);
        } else if hello.fast && n == 0 {
            self.send(conn, Message::HaveNone);
        } else if hello.fast && n == self.config.num_pieces {
            self.send(conn, Message::HaveAll);
        } else if n > 0 {
            let bits = self.our_bitfield();
            self.send(conn, Message::Bitfield(bits));
        }
        Ok(conn)
    }

    /// The driver saw the connection end (EOF, I/O error, framing error, queue full).
    pub fn handle_closed(&mut self, now: Time, conn: ConnId, reason: CloseReason) {
        self.close(now, conn, reason);
    }

    /// The connection's writer wrote `bytes` of block payload (upload back-pressure).
    pub fn handle_sent(&mut self, now: Time, conn: ConnId, bytes: usize) {
        if let Some(p) = self.peers.get_mut(&conn) {
            p.count_sent(bytes);
        }
        self.pump_uploads(now, conn);
    }

    /// A message from a peer. A protocol violation closes the connection.
    pub fn handle_message(&mut self, now: Time, conn: ConnId, msg: Message) {
        if let Err(v) = self.on_message(now, conn, msg) {
            self.close(now, conn, CloseReason::Violation(v));
        }
    }

    /// Runs everything due at `now` (see [`Torrent::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Time) {
        if self.stats.fatal.is_some() {
            return;
        }
        self.expire_requests(now);
        self.block_ban_timeouts(now);
        self.detect_stalls(now);
        self.drop_silent(now);
        if now >= self.choker_next {
            self.run_choker(now);
        }
        if self.super_seed_deadline().is_some_and(|t| t <= now) {
            self.super_seed_review_all(now);
        }
        if now >= self.last_rate_update + RATE_INTERVAL {
            self.update_rates(now);
        }
        if self.resume_pending && now >= self.next_resume {
            self.flush_resume(now, false);
        }
        self.dial_due(now);
        self.send_pex(now);
    }

    /// The driver cannot do the torrent's disk work any more (its pool stopped): the torrent
    /// stops as on a storage error ([`TorrentEvent::Fatal`]).
    pub fn handle_fatal(&mut self, now: Time, message: String) {
        self.fatal(now, message);
    }

    /// Whether the torrent stopped on an error.
    pub fn is_failed(&self) -> bool {
        self.stats.fatal.is_some()
    }

    /// Closes every connection (the torrent is stopping) and asks for a final resume write.
    pub fn shutdown(&mut self, now: Time) {
        let conns = self.conns_sorted();
        for c in conns {
            self.close(now, c, CloseReason::Shutdown);
        }
        self.dials.clear();
        if !self.config.seed_only {
            self.disk_jobs
                .push_back(DiskJob::FlushResume { force: true });
        }
    }

    // ----- internals shared by the other files -----

    /// Queues a message to a peer.
    pub(crate) fn send(&mut self, conn: ConnId, msg: Message) {
        if self.peers.contains_key(&conn) {
            self.transmits.push_back((conn, msg));
        }
    }

    pub(crate) fn push_disk(&mut self, job: DiskJob) {
        self.disk_jobs.push_back(job);
    }

    pub(crate) fn push_event(&mut self, ev: TorrentEvent) {
        self.events.push_back(ev);
    }

    fn remember_ip(&mut self, conn: ConnId, ip: IpAddr) {
        self.conn_ips.insert(conn, ip);
        self.conn_order.push_back(conn);
        // Forget the oldest closed connections; live ones go back in the line (bounded: at most
        // `max_peers` of them are live).
        let mut checked = 0;
        while self.conn_order.len() > MAX_CONN_IPS && checked < self.conn_order.len() {
            let Some(old) = self.conn_order.pop_front() else {
                break;
            };
            if self.peers.contains_key(&old) {
                self.conn_order.push_back(old);
                checked += 1;
            } else {
                self.conn_ips.remove(&old);
            }
        }
    }

    /// Removes a connection: its requests go back to the picker for the others, its unchoke
    /// slot is given to a waiting peer at once, and the peer book learns how it went.
    pub(crate) fn close(&mut self, now: Time, conn: ConnId, reason: CloseReason) {
        self.withdraw_suggestions(conn);
        self.super_seed_closing(conn);
        let Some(peer) = self.peers.remove(&conn) else {
            return;
        };
        if reason.is_violation() {
            self.stats.violations += 1;
            warn!(addr = %peer.addr, conn, "closing connection: {reason}");
        } else {
            info!(addr = %peer.addr, conn, "peer disconnected: {reason}");
        }
        self.picker.remove_peer(conn);
        self.transmits.retain(|(c, _)| *c != conn);
        if let Some(addr) = peer.book_addr {
            if !self.book.is_banned(addr.ip()) {
                // A connection that ended badly counts as a failure even if it once delivered,
                // so a peer that misbehaves is not redialled every 2 s forever.
                let ended_well = !reason.is_violation()
                    && !matches!(reason, CloseReason::Idle | CloseReason::SnubbedAndSilent);
                self.book
                    .closed(addr, peer.useful && ended_well, now, &mut self.rng);
            }
        }
        self.events.push_back(TorrentEvent::PeerClosed {
            conn,
            addr: peer.addr,
            reason,
        });
        // A slot it held goes to a waiting peer now, not at the next round.
        let held_slot = self.choker.is_unchoked(conn);
        self.choker.remove_peer(conn);
        if held_slot {
            self.fill_free_slots(now);
        }
        // A hash request it had to answer goes to another peer.
        self.block_ban_timeouts(now);
        // Its pieces may now be held by nobody, and its offers are free.
        self.super_seed_review_all(now);
        self.fill_all_requests(now);
        self.dial_due(now);
    }

    /// The connections in key order (the machine's outputs must not follow hash-map order, or
    /// two runs with the same seed differ).
    pub(crate) fn conns_sorted(&self) -> Vec<ConnId> {
        let mut conns: Vec<ConnId> = self.peers.keys().copied().collect();
        conns.sort_unstable();
        conns
    }

    pub(crate) fn fill_free_slots(&mut self, now: Time) {
        let stats = self.peer_stats();
        for p in self.choker.fill_free_slots(now, &stats) {
            self.set_choke(now, p, false);
        }
    }

    pub(crate) fn fatal(&mut self, now: Time, message: String) {
        if self.stats.fatal.is_some() {
            return;
        }
        warn!("torrent stopped: {message}");
        self.stats.fatal = Some(message.clone());
        self.events.push_back(TorrentEvent::Fatal(message));
        let conns = self.conns_sorted();
        for c in conns {
            self.close(now, c, CloseReason::Shutdown);
        }
    }

    pub(crate) fn flush_resume(&mut self, now: Time, force: bool) {
        if self.config.seed_only {
            return;
        }
        self.resume_pending = false;
        self.next_resume = now + RESUME_INTERVAL;
        self.disk_jobs.push_back(DiskJob::FlushResume { force });
    }

    pub(crate) fn on_piece_verified(&mut self, now: Time, piece: u32) {
        if self.picker.have(piece) {
            return;
        }
        // Who sent blocks of it.
        let mut senders: Vec<ConnId> = self
            .picker
            .block_senders(piece)
            .into_iter()
            .flatten()
            .collect();
        senders.sort_unstable();
        senders.dedup();
        if let Err(e) = self.picker.piece_verified(piece) {
            warn!("picker refused verified piece {piece}: {e}");
            return;
        }
        self.failures.remove(&piece);
        if self.picker.piece_priority(piece) > 0 {
            self.stats.verified_bytes += u64::from(self.picker.layout().piece_len(piece));
        }
        self.stats.pieces_have = self.picker.num_have();
        self.events.push_back(TorrentEvent::PieceVerified(piece));
        self.resume_pending = true;
        let conns = self.conns_sorted();
        for c in conns {
            // Partial peers that have the piece are not told (libtorrent's
            // `send_redundant_have` does): measured in `crates/swarmsim`, telling them did not
            // lower a capped seed's copies (1.19 against 1.21) and let a free rider finish 41st
            // of 50 instead of last. Told anyway: a seed, so that it knows the swarm's
            // distributed copies (and when it may leave), and a peer that sent us blocks of the
            // piece, so that a super-seeder (BEP 16) learns its upload completed.
            let tell = !self.picker.peer_has(c, piece)
                || self.picker.peer_is_seed(c)
                || senders.binary_search(&c).is_ok();
            if tell {
                self.send(c, Message::Have(piece));
            }
            self.update_interest(now, c);
        }
        if self.smart_ban.has_evidence(piece) {
            self.request_block_hashes(piece, crate::bans::Evidence::Passed);
        }
        if self.picker.is_complete() && !self.stats.complete {
            info!("download complete");
            self.stats.complete = true;
            self.events.push_back(TorrentEvent::Complete);
            self.flush_resume(now, true);
            // That write did not wait for the disk; a synced one follows at the usual interval
            // (if the torrent is still running) so a reboot need not re-check the last pieces.
            self.resume_pending = true;
        }
    }

    pub(crate) fn update_interest(&mut self, now: Time, conn: ConnId) {
        let interesting = self.picker.is_interesting(conn);
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        if interesting != peer.am_interested {
            peer.am_interested = interesting;
            if !interesting {
                // Nothing is wanted from it any more: a snub (or stall) no longer applies.
                peer.snubbed_since = None;
                peer.stalled = false;
            }
            let msg = if interesting {
                Message::Interested
            } else {
                Message::NotInterested
            };
            self.send(conn, msg);
        }
        if interesting {
            self.fill_requests(now, conn);
        }
    }

    pub(crate) fn set_choke(&mut self, now: Time, conn: ConnId, choke: bool) {
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        if p.am_choking == choke {
            return;
        }
        p.am_choking = choke;
        // A choke discards its queued requests (BEP 3); BEP 6 peers are told each one.
        let dropped: Vec<BlockRef> = if choke {
            p.upload_queue.drain(..).collect()
        } else {
            Vec::new()
        };
        if p.fast {
            for r in dropped {
                self.send(conn, Message::Reject(r));
            }
        }
        self.super_seed_choked(now, conn, choke);
        if choke {
            self.send(conn, Message::Choke);
            self.withdraw_suggestions(conn);
        } else {
            // Suggestions first: the peer picks its pieces as soon as it reads the unchoke.
            self.top_up_suggestions(conn);
            self.send(conn, Message::Unchoke);
        }
    }

    pub(crate) fn peer_stats(&self) -> Vec<PeerStats<ConnId>> {
        let mut v: Vec<PeerStats<ConnId>> = self
            .peers
            .iter()
            .map(|(k, p)| PeerStats {
                peer: *k,
                downloaded: p.downloaded,
                uploaded: p.uploaded,
                peer_interested: p.peer_interested,
                am_interested: p.am_interested,
                peer_choking: p.peer_choking,
                requests_out: self.picker.outstanding(*k),
                connected_at: p.connected_at,
                last_block_at: [p.last_block_at, p.waiting_since]
                    .into_iter()
                    .flatten()
                    .max(),
            })
            .collect();
        // Deterministic order for the choker (HashMap order is not).
        v.sort_by_key(|s| s.peer);
        v
    }

    fn run_choker(&mut self, now: Time) {
        let stats = self.peer_stats();
        let seeding = self.picker.is_complete();
        let decision = self.choker.tick(now, seeding, &stats);
        for p in decision.unchoke {
            self.set_choke(now, p, false);
        }
        for p in decision.choke {
            self.set_choke(now, p, true);
        }
        // The one snub policy: the choker's verdict. Its blocks go to others now (late copies
        // from it stay welcome) and it gets one request at a time until it delivers.
        for p in decision.snubbed {
            self.snub(now, p);
        }
        self.choker_next = decision.next_call.min(now + Duration::from_secs(10));
    }

    fn update_rates(&mut self, now: Time) {
        let elapsed = now - self.last_rate_update;
        for p in self.peers.values_mut() {
            p.update_rate(elapsed);
        }
        let secs = elapsed.as_secs_f64().max(1e-3);
        let alpha = (secs / 2.0).min(1.0);
        self.stats.down_rate +=
            alpha * (self.downloaded_window as f64 / secs - self.stats.down_rate);
        self.stats.up_rate += alpha * (self.uploaded_window as f64 / secs - self.stats.up_rate);
        // Below a byte a second is nothing: exact zeros let an idle torrent stop its timer.
        for r in [&mut self.stats.down_rate, &mut self.stats.up_rate] {
            if *r < 1.0 {
                *r = 0.0;
            }
        }
        self.downloaded_window = 0;
        self.uploaded_window = 0;
        self.last_rate_update = now;
    }

    pub(crate) fn count_download(&mut self, bytes: usize) {
        self.stats.downloaded += bytes as u64;
        self.downloaded_window += bytes as u64;
    }

    pub(crate) fn count_upload(&mut self, bytes: usize) {
        self.stats.uploaded += bytes as u64;
        self.uploaded_window += bytes as u64;
    }

    fn drop_silent(&mut self, now: Time) {
        let mut drop = Vec::new();
        for (&conn, p) in &self.peers {
            if let Some(since) = p.snubbed_since {
                if now - since >= SNUBBED_DROP_AFTER && p.last_block_at.is_none_or(|t| t < since) {
                    drop.push((conn, CloseReason::SnubbedAndSilent));
                    continue;
                }
            }
            if now - p.last_message_at >= IDLE_DROP_AFTER {
                drop.push((conn, CloseReason::Idle));
            }
        }
        drop.sort_by_key(|d| d.0);
        for (conn, reason) in drop {
            self.close(now, conn, reason);
        }
    }

    fn dial_room(&self) -> usize {
        if self.stats.fatal.is_some() {
            return 0;
        }
        self.config
            .max_peers
            .saturating_sub(self.peers.len() + self.dialing)
            .min(MAX_HALF_OPEN.saturating_sub(self.dialing))
    }

    pub(crate) fn dial_due(&mut self, now: Time) {
        let room = self.dial_room();
        if room == 0 {
            return;
        }
        // A seed has nothing to fetch from other seeds, but still dials: they may be leechers.
        for addr in self.book.due(now, room) {
            self.book.connecting(addr, now);
            self.dialing += 1;
            self.dials.push_back(addr);
        }
    }

    fn extended_handshake(&self, addr: SocketAddr) -> Message {
        let mut hs = ExtendedHandshake {
            client: Some(concat!("shoal ", env!("CARGO_PKG_VERSION")).to_string()),
            listen_port: Some(self.config.listen_port),
            reqq: Some(OUR_REQQ as u32),
            your_ip: Some(addr.ip()),
            metadata_size: Some(self.config.info_bytes.len() as u64),
            // A super-seeder looks like a peer with few pieces (libtorrent does not send
            // `upload_only` while super-seeding either).
            upload_only: self.picker.is_complete() && self.super_seed.is_none(),
            ..Default::default()
        };
        // BEP 27: private torrents exchange neither metadata nor peers.
        if !self.config.private {
            hs.extensions
                .insert("ut_metadata".to_string(), UT_METADATA_ID);
            hs.extensions.insert("ut_pex".to_string(), UT_PEX_ID);
        }
        Message::Extended {
            id: 0,
            payload: hs.encode(),
        }
    }

    fn our_bitfield(&self) -> Bytes {
        let n = self.config.num_pieces;
        let mut bits = vec![0u8; n.div_ceil(8) as usize];
        for i in 0..n {
            if self.picker.have(i) {
                bits[(i / 8) as usize] |= 0x80 >> (i % 8);
            }
        }
        Bytes::from(bits)
    }

    // ----- peer messages -----

    fn on_message(&mut self, now: Time, conn: ConnId, msg: Message) -> Result<(), PeerViolation> {
        let num_pieces = self.config.num_pieces;
        let Some(peer) = self.peers.get_mut(&conn) else {
            return Ok(());
        };
        peer.last_message_at = now;
        match msg {
            Message::KeepAlive | Message::Unknown { .. } | Message::Port(_) => {}
            Message::Suggest(piece) => {
                // Out of range is ignored, as libtorrent does: it costs us nothing.
                self.picker.suggest(conn, piece);
            }
            Message::Choke => {
                peer.peer_choking = true;
                // Nothing is wanted from it while it chokes us: not snubbed, and no piece may
                // wait pinned to it.
                peer.snubbed_since = None;
                self.picker.unpin(conn);
                if !peer.fast {
                    // Without BEP 6 a choke discards every request we had out.
                    for b in self.picker.abort_peer_requests(conn) {
                        if let Some(p) = self.peers.get_mut(&conn) {
                            p.release(b);
                        }
                    }
                    self.fill_all_requests(now);
                }
            }
            Message::Unchoke => {
                peer.peer_choking = false;
                self.fill_requests(now, conn);
            }
            Message::Interested => {
                peer.peer_interested = true;
                self.fill_free_slots(now);
                self.top_up_suggestions(conn);
            }
            Message::NotInterested => peer.peer_interested = false,
            Message::Have(piece) => {
                self.picker
                    .peer_have(conn, piece)
                    .map_err(|_| PeerViolation::HaveOutOfRange(piece))?;
                self.suggestion_used(conn, piece);
                self.super_seed_have(now, conn, piece);
                self.update_interest(now, conn);
            }
            Message::Bitfield(_) | Message::HaveAll | Message::HaveNone if peer.sent_bitfield => {
                // Each one re-counts every piece's availability: one per connection.
                return Err(PeerViolation::SecondBitfield);
            }
            Message::Bitfield(bits) => {
                peer.sent_bitfield = true;
                self.picker
                    .peer_bitfield(conn, &bits)
                    .map_err(|e| PeerViolation::BadBitfield(e.to_string()))?;
                self.super_seed_bitfield(now, conn);
                self.update_interest(now, conn);
            }
            Message::HaveAll | Message::HaveNone if !peer.fast => {
                return Err(PeerViolation::FastWithoutExtension)
            }
            Message::HaveAll => {
                peer.sent_bitfield = true;
                self.picker
                    .peer_have_all(conn)
                    .map_err(|e| PeerViolation::BadBitfield(e.to_string()))?;
                self.super_seed_bitfield(now, conn);
                self.update_interest(now, conn);
            }
            Message::HaveNone => {
                peer.sent_bitfield = true;
                self.picker
                    .peer_have_none(conn)
                    .map_err(|e| PeerViolation::BadBitfield(e.to_string()))?;
                self.update_interest(now, conn);
            }
            Message::Request(req) => self.on_request(now, conn, req)?,
            Message::Cancel(req) => self.on_cancel(conn, req),
            Message::Reject(req) => {
                let block = Block::new(req.piece, req.begin / shoal_picker::BLOCK_SIZE);
                if peer.cancels_out.remove(&block) {
                    // The answer to our `cancel`, not to a newer request for the block.
                    return Ok(());
                }
                if self.picker.abort_request(conn, block) {
                    if let Some(p) = self.peers.get_mut(&conn) {
                        p.release(block);
                    }
                    self.fill_all_requests(now);
                }
            }
            Message::AllowedFast(piece) => {
                if piece >= num_pieces {
                    return Err(PeerViolation::AllowedFastOutOfRange(piece));
                }
            }
            Message::Piece { piece, begin, data } => {
                self.on_block(now, conn, piece, begin, data)?
            }
            Message::Extended { id, payload } => self.on_extended(now, conn, id, payload)?,
            // BEP 52: every hash request is answered, with hashes or a reject.
            Message::HashRequest(req) => self.on_hash_request(conn, req),
            Message::Hashes { req, hashes } => self.on_hashes(now, conn, req, hashes),
            Message::HashReject(req) => self.on_hash_reject(now, conn, req),
        }
        Ok(())
    }
}
