//! The torrent driver: one tokio task per torrent that feeds the sans-IO
//! [`shoal_torrent::Torrent`] machine with peer messages, disk results and time, and carries out
//! what it asks for — messages to connection tasks, jobs to the disk pool, dials.
//!
//! Every decision (requests, choking, bans, timeouts, whom to dial) is the machine's; this file
//! only moves bytes and time. Connection tasks know nothing of the torrent: they turn a socket
//! into [`Event::PeerMessage`]s and a queue of messages back into bytes.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use shoal_core::{Id20, Time};
use shoal_metainfo::Metainfo;
use shoal_storage::{DiskPool, Storage, TrySubmitError, WriteOutcome};
use shoal_torrent::{
    CloseReason, ConnId, DiskDone, DiskJob, PeerHello, PickMode, Torrent, TorrentConfig,
    TorrentEvent, V2File, WriteResult,
};
use shoal_wire::frame::Limits;
use shoal_wire::Handshake;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

use crate::clock::{sleep_until, Clock};
use crate::connection::{self, LinkEvent, LinkRates};
use crate::read_buffers::ReadBuffer;
use crate::receive_budget::{budget_for_peers, ReceiveBudget, ReceiveCredit, RECEIVE_BUDGET_BYTES};
use crate::status::{TorrentState, TorrentStatus};
use crate::web_seed::{self, Admission, WebSeedEvent};

/// A connection's key: the machine's [`ConnId`], which is also the connection tasks' link id.
pub type PeerKey = ConnId;

pub use shoal_torrent::{UT_METADATA_ID, UT_PEX_ID};

/// How often the status snapshot is published at most (and at least once per machine timer).
const STATUS_INTERVAL: Duration = Duration::from_millis(250);
/// Block writes gathered before they go to the disk pool as one batch (1 MiB: a quarter of the
/// machine's 4 MiB of writes in flight, so requests never wait for it).
const WRITE_BATCH_BYTES: usize = 1 << 20;
/// The longest a block waits for its write batch to fill.
const WRITE_BATCH_DELAY: Duration = Duration::from_millis(5);
/// Disk jobs other than writes handed to the pool as one job (16 block reads: 256 KiB, the
/// writer's budget for one peer).
const READ_BATCH: usize = 16;
/// How long resume data written at completion may be due (the machine asks; storage decides).
const RESUME_INTERVAL: Duration = Duration::from_secs(5);

/// What reaches the driver.
pub enum Event {
    /// A connection's news: a message, its end, bytes written.
    Link(LinkEvent),
    /// A connection with a completed handshake, outgoing or incoming (boxed: the socket and
    /// its cipher state are large, and every slot of a torrent's event queue is as large as
    /// the largest event — a daemon holds thousands of those queues).
    Connected(Box<Connected>),
    /// A dial failed.
    DialFailed(SocketAddr, String),
    /// More peer addresses (command line, trackers, DHT).
    AddPeers(Vec<SocketAddr>),
    /// The trackers' latest results, for the status.
    TrackerReports(Vec<crate::status::TrackerReport>),
    /// Stop: flush resume data, close connections, then answer.
    Shutdown(oneshot::Sender<()>),
    /// News from a web seed's task.
    WebSeed(WebSeedEvent),
    /// [`TorrentContext::sequential`] changed.
    PickModeChanged,
}

/// A connection with a completed handshake, outgoing or incoming.
#[derive(Debug)]
pub struct Connected {
    /// The peer's address.
    pub addr: SocketAddr,
    /// Whether we dialled it.
    pub outgoing: bool,
    /// The socket and its cipher.
    pub stream: connection::PeerStream,
    /// Its handshake.
    pub handshake: Handshake,
    /// Bytes that followed the handshake.
    pub leftover: BytesMut,
}

impl From<LinkEvent> for Event {
    fn from(e: LinkEvent) -> Self {
        Event::Link(e)
    }
}

/// Everything the driver needs from the session.
pub struct TorrentContext {
    /// The torrent.
    pub meta: Arc<Metainfo>,
    /// Its storage (opened and checked).
    pub storage: Arc<Storage>,
    /// The session's disk pool: writes, hashing, and every job but upload reads.
    pub pool: Arc<DiskPool>,
    /// The session's threads for upload reads, so a read that waits for the disk holds up
    /// neither writes nor the other reads.
    pub read_pool: Arc<DiskPool>,
    /// Our peer id.
    pub peer_id: Id20,
    /// Our listen address (to advertise the port).
    pub listen_addr: SocketAddr,
    /// Local addresses outgoing connections leave from (`--bind`).
    pub bind: shoal_core::LocalBind,
    /// Session clock.
    pub clock: Clock,
    /// The session's rate limits (as this torrent's flow) and the torrent's own.
    pub rates: LinkRates,
    /// Most peers connected at once: the session's share for this torrent, which changes as
    /// torrents come and go (see [`crate::budget`]).
    pub max_peers: watch::Receiver<usize>,
    /// Set while the torrent wants peers or has some (it then counts in the session's split of
    /// the peer budget).
    pub active: Arc<std::sync::atomic::AtomicBool>,
    /// Whether new pieces are chosen in order (else rarest first); changeable while the
    /// torrent runs ([`Event::PickModeChanged`] says when). A flag, not a watch channel: a
    /// daemon keeps one per torrent, asleep too, and a watch channel costs ~400 bytes.
    pub sequential: Arc<std::sync::atomic::AtomicBool>,
    /// Connect and handshake timeout.
    pub connect_timeout: Duration,
    /// Whether connections we dial use MSE/PE.
    pub encryption: crate::EncryptionPolicy,
    /// Which transport connections we dial use.
    pub utp: crate::UtpMode,
    /// The session's uTP endpoint (`None` when uTP is off).
    pub utp_endpoint: Option<Arc<crate::UtpEndpoint>>,
    /// Whether storage is read-only (the initial seeder).
    pub seed_only: bool,
    /// Super-seed (BEP 16) while the swarm lacks a piece.
    pub super_seed: bool,
    /// Per file: false to skip it (`None`: all wanted).
    pub wanted_files: Option<Vec<bool>>,
    /// Payload bytes (downloaded, uploaded) of its earlier runs in this session: a torrent
    /// woken from sleep counts on from there.
    pub carried: (u64, u64),
}

impl TorrentContext {
    /// How new pieces are to be chosen now.
    fn pick_mode(&self) -> PickMode {
        if self.sequential.load(std::sync::atomic::Ordering::Relaxed) {
            PickMode::Sequential
        } else {
            PickMode::RarestFirst
        }
    }

    fn machine_config(&self) -> TorrentConfig {
        let info = &self.meta.info;
        TorrentConfig {
            info_hash: self.meta.info_hash,
            peer_id: self.peer_id,
            num_pieces: info.num_pieces(),
            piece_length: info.piece_length,
            total_length: info.total_length,
            private: info.private,
            info_bytes: Bytes::from(self.meta.info_bytes.to_vec()),
            listen_port: self.listen_addr.port(),
            own_addr: Some(self.listen_addr),
            max_peers: *self.max_peers.borrow(),
            wanted: wanted_pieces(info, self.wanted_files.as_deref()),
            have: self.storage.verified().ones().collect(),
            seed_only: self.seed_only,
            seed: rand::random(),
            pick_mode: self.pick_mode(),
            super_seed: self.super_seed,
            piece_layers: self
                .meta
                .piece_layers
                .iter()
                .map(|(root, layer)| (*root, layer.clone()))
                .collect(),
            v2_files: (0..info.files.len())
                .filter_map(|i| {
                    let f = &info.files[i];
                    Some(V2File {
                        pieces_root: *info.pieces_root(i)?,
                        first_piece: u32::try_from(f.offset / u64::from(info.piece_length)).ok()?,
                        length: f.length,
                    })
                })
                .collect(),
        }
    }

    /// What the torrent shows at rest (no peers, nothing moving), and whether it is complete,
    /// without running it: the status of a torrent that starts asleep.
    pub(crate) fn resting_status(&self) -> Result<(TorrentStatus, bool), crate::EngineError> {
        let machine = Torrent::new(self.machine_config(), self.clock.now())
            .map_err(crate::EngineError::Stopped)?;
        let mut status = TorrentStatus::default();
        fill_status(&mut status, &machine.stats(), self.carried);
        Ok((status, machine.is_complete()))
    }
}

/// Copies the machine's counters into a status snapshot (the peers' list aside).
fn fill_status(status: &mut TorrentStatus, s: &shoal_torrent::TorrentStats, carried: (u64, u64)) {
    status.verified_bytes = s.verified_bytes;
    status.total_bytes = s.wanted_bytes;
    status.pieces_have = s.pieces_have;
    status.pieces_total = s.pieces_total;
    status.downloaded = carried.0 + s.downloaded;
    status.uploaded = carried.1 + s.uploaded;
    status.peers = s.peers;
    status.down_rate = s.down_rate;
    status.up_rate = s.up_rate;
    status.hash_failures = s.hash_failures;
    status.banned = s.banned.clone();
    status.violations = s.violations;
    status.distributed_copies = s.distributed_copies;
    status.super_seeding = s.super_seeding;
    status.state = match (&s.fatal, s.complete) {
        (Some(e), _) => TorrentState::Error(e.clone()),
        (None, true) => TorrentState::Seeding,
        (None, false) => TorrentState::Downloading,
    };
}

/// Which pieces hold data of a wanted file (a piece shared with a skipped file is still needed).
fn wanted_pieces(info: &shoal_metainfo::Info, wanted_files: Option<&[bool]>) -> Option<Vec<bool>> {
    let wanted_files = wanted_files?;
    let n = info.num_pieces() as usize;
    let mut pieces = vec![false; n];
    let plen = info.piece_length as u64;
    for (i, f) in info.files.iter().enumerate() {
        if f.is_pad() || f.length == 0 || !wanted_files.get(i).copied().unwrap_or(false) {
            continue;
        }
        let first = (f.offset / plen) as usize;
        let last = ((f.offset + f.length - 1) / plen) as usize;
        for p in pieces.iter_mut().take(last.min(n - 1) + 1).skip(first) {
            *p = true;
        }
    }
    Some(pieces)
}

/// A disk job bound to its storage and answer channel, ready for a pool thread.
type DiskWork = Box<dyn FnOnce() + Send + 'static>;

/// The answers of one batch of disk jobs.
struct DiskBatch {
    kind: BatchKind,
    done: Vec<DiskDone>,
}

/// What a [`DiskBatch`] answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BatchKind {
    /// The write batch (one is out at a time).
    Writes,
    /// Reads and hashing on the pool.
    Other,
    /// A resume write beside the pool (one is out at a time).
    Resume,
}

/// Which threads run a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    /// The disk pool: writes, hashing, everything but upload reads.
    Main,
    /// The read threads: upload reads only.
    Reads,
}

/// The driver's state.
pub struct TorrentActor {
    ctx: TorrentContext,
    machine: Torrent,
    links: HashMap<PeerKey, connection::PeerLink>,
    events_tx: mpsc::Sender<Event>,
    events_rx: mpsc::Receiver<Event>,
    disk_tx: mpsc::UnboundedSender<DiskBatch>,
    disk_rx: mpsc::UnboundedReceiver<DiskBatch>,
    /// Block writes waiting for the write batch on the pool to finish: one write batch is out
    /// at a time, and what arrives meanwhile goes in the next, so batches grow with the load and
    /// each costs one hand-off and one wake-up however many blocks it holds.
    pending_writes: Vec<DiskJob>,
    /// Payload bytes in `pending_writes`.
    pending_write_bytes: usize,
    /// When the oldest of `pending_writes` arrived (`None`: there are none).
    pending_since: Option<Time>,
    write_batch_out: bool,
    /// What readers may hold between their sockets and the disk.
    receive_budget: ReceiveBudget,
    /// Credit for blocks that may be in `pending_writes`.
    pending_credit: Vec<ReceiveCredit>,
    /// Credit for blocks in the write batch that is out.
    out_credit: Vec<ReceiveCredit>,
    /// The actor is stopping: pending writes go out at once.
    stopping: bool,
    /// Jobs the pool's queue had no room for; retried after each completion (never blocking a
    /// runtime thread).
    disk_backlog: VecDeque<DiskWork>,
    /// The same for the read threads.
    read_backlog: VecDeque<DiskWork>,
    disk_inflight: usize,
    /// Resume writes beside the pool, one at a time.
    resume_writes: ResumeWrites,
    status_tx: crate::status_watch::StatusSender,
    status: TorrentStatus,
    last_publish: Time,
    /// Something happened since the last publish (an event, a disk answer): if the publish
    /// interval held it back, the loop wakes to publish it.
    unpublished: bool,
    /// The web seeds' tasks (aborted with the actor).
    web_seed_tasks: Vec<AbortOnDrop>,
    /// Links that are web seeds, and which (index into `status.web_seeds`).
    web_seed_links: HashMap<PeerKey, usize>,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl TorrentActor {
    /// Builds the driver and its machine; [`run`](Self::run) drives it.
    pub fn new(
        ctx: TorrentContext,
        events_tx: mpsc::Sender<Event>,
        events_rx: mpsc::Receiver<Event>,
        status_tx: crate::status_watch::StatusSender,
    ) -> Result<Self, crate::EngineError> {
        let now = ctx.clock.now();
        let config = ctx.machine_config();
        // Metainfo validation makes this succeed; a torrent it somehow let through is an error
        // for that torrent, not a panic.
        let machine = Torrent::new(config, now).map_err(crate::EngineError::Stopped)?;
        let (disk_tx, disk_rx) = mpsc::unbounded_channel();
        let mut actor = TorrentActor {
            ctx,
            machine,
            links: HashMap::new(),
            events_tx,
            events_rx,
            disk_tx,
            disk_rx,
            pending_writes: Vec::new(),
            pending_write_bytes: 0,
            pending_since: None,
            write_batch_out: false,
            receive_budget: ReceiveBudget::new(RECEIVE_BUDGET_BYTES),
            pending_credit: Vec::new(),
            out_credit: Vec::new(),
            stopping: false,
            disk_backlog: VecDeque::new(),
            read_backlog: VecDeque::new(),
            disk_inflight: 0,
            resume_writes: ResumeWrites::default(),
            status_tx,
            status: TorrentStatus::default(),
            last_publish: now,
            unpublished: false,
            web_seed_tasks: Vec::new(),
            web_seed_links: HashMap::new(),
        };
        actor.refresh_status();
        // Receivers see the real totals from the start, never an empty default.
        actor.status_tx.send_replace(actor.status.clone());
        Ok(actor)
    }

    fn now(&self) -> Time {
        self.ctx.clock.now()
    }

    /// Runs until shutdown or a fatal storage error.
    pub async fn run(mut self) {
        self.start_web_seeds();
        let done: Option<oneshot::Sender<()>> = loop {
            // Read every turn (a relaxed load), so a change made while the torrent was waking
            // is not missed; `PickModeChanged` only makes the turn come at once.
            let mode = self.ctx.pick_mode();
            if mode != self.machine.pick_mode() {
                self.machine.set_pick_mode(mode);
            }
            self.carry_out();
            if self.machine.is_failed() {
                break None;
            }
            // Never sooner than 1 ms from now: a deadline stuck in the past (a machine bug)
            // then costs a wake-up per millisecond instead of starving peer events.
            let soonest = tokio::time::Instant::now() + Duration::from_millis(1);
            // A held-back status change is due too: a torrent with no timer of its own (no
            // peers) must still show what changed (a tracker's answer, say).
            let due = self
                .unpublished
                .then_some(self.last_publish + STATUS_INTERVAL);
            let next = [self.machine.poll_timeout(), due, self.write_batch_due()]
                .into_iter()
                .flatten()
                .min();
            let wake = next
                .map(|t| tokio::time::Instant::from_std(self.ctx.clock.instant(t)).max(soonest));
            tokio::select! {
                // Disk results first: they free memory and unblock requests. The machine's
                // timers come before peer events, so a busy data path never starves deadlines.
                biased;
                Some(batch) = self.disk_rx.recv() => self.on_disk_batch(batch),
                _ = sleep_until(wake) => {
                    let now = self.now();
                    self.machine.handle_timeout(now);
                    self.publish_status(true);
                }
                Ok(()) = self.ctx.max_peers.changed() => {
                    let cap = *self.ctx.max_peers.borrow_and_update();
                    let now = self.now();
                    self.machine.set_max_peers(now, cap);
                }
                ev = self.events_rx.recv() => match ev {
                    None => break None,
                    Some(Event::Shutdown(done)) => break Some(done),
                    Some(ev) => self.on_event(ev),
                },
            }
        };
        self.stop().await;
        if let Some(done) = done {
            let _ = done.send(());
        }
        // Keep answering (and ignoring) until every sender is gone, so no sender blocks.
        self.events_rx.close();
    }

    async fn stop(&mut self) {
        self.stopping = true;
        let now = self.now();
        self.machine.shutdown(now);
        self.carry_out();
        self.links.clear();
        // Wait for queued jobs (writes whose pieces can still count, the final resume write).
        while self.disk_inflight > 0
            || !self.disk_backlog.is_empty()
            || !self.read_backlog.is_empty()
            || !self.pending_writes.is_empty()
        {
            match tokio::time::timeout(Duration::from_secs(10), self.disk_rx.recv()).await {
                Ok(Some(batch)) => {
                    self.on_disk_batch(batch);
                    self.carry_out();
                }
                _ => break,
            }
        }
        let storage = self.ctx.storage.clone();
        let result = tokio::task::spawn_blocking(move || storage.close()).await;
        if let Ok(Err(e)) = result {
            warn!("writing resume data at shutdown failed: {e}");
        }
        self.refresh_status();
        if !self.machine.is_failed() {
            self.status.state = if self.machine.is_complete() {
                TorrentState::Seeding
            } else {
                TorrentState::Stopped
            };
        }
        self.status_tx.send_replace(self.status.clone());
    }

    fn on_disk_batch(&mut self, batch: DiskBatch) {
        self.unpublished = true;
        self.disk_inflight = self.disk_inflight.saturating_sub(1);
        match batch.kind {
            BatchKind::Writes => {
                self.write_batch_out = false;
                self.out_credit.clear();
            }
            BatchKind::Resume => {
                if let Some(force) = self.resume_writes.finished() {
                    self.spawn_resume_write(force);
                }
            }
            BatchKind::Other => {}
        }
        let now = self.now();
        for d in batch.done {
            self.machine.handle_disk(now, d);
        }
    }

    fn on_event(&mut self, ev: Event) {
        self.unpublished = true;
        let now = self.now();
        match ev {
            Event::Link(LinkEvent::Messages(key, msgs, credit)) => {
                self.pending_credit.push(credit);
                if let Some(ws) = self
                    .web_seed_links
                    .get(&key)
                    .and_then(|&i| self.status.web_seeds.get_mut(i))
                {
                    for m in &msgs {
                        if let shoal_wire::Message::Piece { data, .. } = m {
                            ws.downloaded += data.len() as u64;
                        }
                    }
                }
                for msg in msgs {
                    self.machine.handle_message(now, key, msg);
                }
            }
            Event::Link(LinkEvent::Closed(key, reason)) => {
                self.links.remove(&key);
                self.web_seed_links.remove(&key);
                self.machine.handle_closed(now, key, reason);
            }
            Event::Link(LinkEvent::Sent(key, bytes)) => self.machine.handle_sent(now, key, bytes),
            Event::Connected(c) => {
                let Connected {
                    addr,
                    outgoing,
                    stream,
                    handshake,
                    leftover,
                } = *c;
                let hello = PeerHello {
                    addr,
                    outgoing,
                    peer_id: handshake.peer_id,
                    fast: handshake.supports_fast(),
                    extended: handshake.supports_extended(),
                    // In the v2 swarm (the truncated SHA-256 in the handshake): only there may
                    // hash requests be sent (libtorrent drops a v1-swarm connection that sends
                    // one, and a v2-only libtorrent peer does not set the v2 bit).
                    v2: self
                        .ctx
                        .meta
                        .info_hash_v2
                        .is_some_and(|h| handshake.info_hash == h.truncated()),
                };
                match self.machine.handle_connected(now, hello) {
                    Ok(key) => {
                        self.receive_budget
                            .grow_to(budget_for_peers(self.links.len() + 1));
                        let limits = Limits::for_pieces(self.ctx.meta.info.num_pieces())
                            .with_v2(self.ctx.meta.version().has_v2());
                        let link = connection::spawn(
                            stream,
                            key,
                            leftover,
                            limits,
                            self.events_tx.clone(),
                            self.ctx.rates.clone(),
                            self.receive_budget.clone(),
                            self.ctx.clock,
                        );
                        self.links.insert(key, link);
                    }
                    Err(reason) => debug!(%addr, "connection refused: {reason}"),
                }
            }
            Event::DialFailed(addr, error) => {
                debug!(%addr, "dial failed: {error}");
                self.machine.handle_dial_failed(now, addr);
            }
            Event::AddPeers(addrs) => self.machine.add_peers(now, addrs),
            Event::TrackerReports(reports) => self.status.trackers = reports,
            Event::WebSeed(ev) => self.on_web_seed(now, ev),
            Event::PickModeChanged => {} // read at the top of every turn
            Event::Shutdown(_) => {}
        }
    }

    /// Starts a task per usable web seed of the torrent (none for a seed: it has everything).
    fn start_web_seeds(&mut self) {
        if self.ctx.seed_only || self.machine.is_complete() {
            return;
        }
        let layout = match shoal_storage::Layout::from_info(&self.ctx.meta.info) {
            Ok(l) => l,
            Err(_) => return,
        };
        let torrent = web_seed::WebSeedTorrent {
            layout,
            file_lengths: self.ctx.meta.info.files.iter().map(|f| f.length).collect(),
            bind: self.ctx.bind,
        };
        for url in &self.ctx.meta.url_list {
            let index = self.status.web_seeds.len();
            let mut report = web_seed::WebSeedReport {
                url: url.clone(),
                ..Default::default()
            };
            match shoal_webseed::WebSeedUrl::new(url, &self.ctx.meta.info) {
                Ok(parsed) => {
                    report.message = "connecting".into();
                    let task = tokio::spawn(web_seed::run(
                        index,
                        parsed,
                        torrent.clone(),
                        self.events_tx.clone(),
                    ));
                    self.web_seed_tasks.push(AbortOnDrop(task));
                }
                Err(e) => {
                    warn!("ignoring web seed: {e}");
                    report.message = format!("{e}: not used");
                }
            }
            self.status.web_seeds.push(report);
        }
    }

    fn on_web_seed(&mut self, now: Time, ev: WebSeedEvent) {
        match ev {
            WebSeedEvent::Report(index, report) => {
                if let Some(r) = self.status.web_seeds.get_mut(index) {
                    let news = r.message != report.message || r.connected != report.connected;
                    // Bytes are counted here as its blocks arrive, not by the task.
                    let downloaded = r.downloaded;
                    *r = report;
                    r.downloaded = downloaded;
                    // A web seed failing or coming back is shown at once, not with the next
                    // periodic snapshot (a short download may end first).
                    self.publish_status(news);
                }
            }
            WebSeedEvent::Ready {
                index,
                addr,
                peer_id,
                reply,
            } => {
                if self.machine.is_complete() || self.machine.is_failed() {
                    let _ = reply.send(Admission::Never);
                    return;
                }
                // Incoming, without the extension protocol: the machine then never lists it in
                // PEX or its address book (it is no BitTorrent peer); the fast extension makes
                // the task's rejects hand blocks back at once.
                let hello = PeerHello {
                    addr,
                    outgoing: false,
                    peer_id,
                    fast: true,
                    extended: false,
                    v2: false,
                };
                let answer = match self.machine.handle_connected(now, hello) {
                    Ok(key) => {
                        let (tx, rx) = web_seed::link_channel();
                        self.links.insert(key, connection::PeerLink::detached(tx));
                        self.web_seed_links.insert(key, index);
                        Admission::Go(key, rx)
                    }
                    Err(CloseReason::Banned | CloseReason::Shutdown) => Admission::Never,
                    Err(_) => Admission::Later,
                };
                if let Admission::Go(key, _) = &answer {
                    let key = *key;
                    if reply.send(answer).is_err() {
                        self.links.remove(&key);
                        self.machine.handle_closed(now, key, CloseReason::Shutdown);
                    }
                } else {
                    let _ = reply.send(answer);
                }
            }
        }
    }

    /// Carries out everything the machine asked for (events, disk jobs, messages, dials) until
    /// it asks for nothing more.
    fn carry_out(&mut self) {
        let mut changed = false;
        let mut jobs = Vec::new();
        loop {
            let mut any = false;
            while let Some(ev) = self.machine.poll_event() {
                any = true;
                match ev {
                    TorrentEvent::PeerClosed { conn, .. } => {
                        // Dropping the link stops its tasks and closes the socket.
                        self.links.remove(&conn);
                        self.web_seed_links.remove(&conn);
                        changed = true;
                    }
                    TorrentEvent::PeerConnected { .. }
                    | TorrentEvent::Complete
                    | TorrentEvent::Banned(_)
                    | TorrentEvent::Fatal(_) => changed = true,
                    TorrentEvent::PieceVerified(_) | TorrentEvent::HashFailed(_) => {}
                }
            }
            // Block writes wait for the next write batch; the other jobs of this turn go
            // together (below).
            while let Some(job) = self.machine.poll_disk() {
                any = true;
                if let DiskJob::Write { data, .. } = &job {
                    self.pending_write_bytes += data.len();
                    if self.pending_since.is_none() {
                        self.pending_since = Some(self.now());
                    }
                    self.pending_writes.push(job);
                    continue;
                }
                if let DiskJob::FlushResume { force } = job {
                    if let Some(force) = self.resume_writes.ask(force) {
                        self.spawn_resume_write(force);
                    }
                    continue;
                }
                jobs.push(job);
            }
            if self.pending_writes.is_empty() {
                // None of the blocks those credits paid for waits to be written.
                self.pending_credit.clear();
            }
            while let Some((key, msg)) = self.machine.poll_transmit() {
                any = true;
                let Some(link) = self.links.get(&key) else {
                    continue;
                };
                if link.tx.try_send(msg).is_err() {
                    // Its queue stayed full: the peer is not reading.
                    self.links.remove(&key);
                    let now = self.now();
                    self.machine
                        .handle_closed(now, key, CloseReason::NotReading);
                }
            }
            while let Some(addr) = self.machine.poll_dial() {
                any = true;
                self.dial(addr);
            }
            if !any {
                break;
            }
        }
        // One pool job per turn, not one per block read: each hand-off wakes a disk thread
        // and each answer the runtime (a seeder serving 1 GiB made 65,536 of each). Split in
        // runs of READ_BATCH so the read threads read in parallel.
        for (lane, batch) in lanes(jobs) {
            self.queue_disk(batch, BatchKind::Other, lane);
        }
        if self.write_batch_due().is_some_and(|due| due <= self.now()) {
            let writes = std::mem::take(&mut self.pending_writes);
            self.out_credit = std::mem::take(&mut self.pending_credit);
            self.pending_write_bytes = 0;
            self.pending_since = None;
            self.queue_disk(writes, BatchKind::Writes, Lane::Main);
            self.write_batch_out = true;
        }
        self.submit_disk();
        self.publish_status(changed);
    }

    /// When the pending block writes go to the pool (`None`: none are pending, or a batch is
    /// out already): at once when they fill a batch, otherwise once the oldest has waited
    /// [`WRITE_BATCH_DELAY`]. Waiting a little turns many small hand-offs to the pool (each a
    /// wake-up of a disk thread and then of the runtime) into few large ones.
    fn write_batch_due(&self) -> Option<Time> {
        if self.write_batch_out {
            return None;
        }
        let since = self.pending_since?;
        if self.pending_write_bytes >= WRITE_BATCH_BYTES || self.stopping {
            Some(since)
        } else {
            Some(since + WRITE_BATCH_DELAY)
        }
    }

    /// Queues jobs to run one after the other on one pool thread; their answers come back
    /// together.
    fn queue_disk(&mut self, jobs: Vec<DiskJob>, kind: BatchKind, lane: Lane) {
        let storage = self.ctx.storage.clone();
        let tx = self.disk_tx.clone();
        let backlog = match lane {
            Lane::Main => &mut self.disk_backlog,
            Lane::Reads => &mut self.read_backlog,
        };
        backlog.push_back(Box::new(move || {
            let done: Vec<DiskDone> = if kind == BatchKind::Writes {
                run_write_batch(&storage, jobs)
            } else {
                run_batch(&storage, jobs)
            };
            let _ = tx.send(DiskBatch { kind, done });
        }));
    }

    /// Writes resume data on a blocking thread of its own, not on the disk pool. A periodic
    /// write first waits for `fdatasync` of everything written since the last one: on the pool
    /// (one thread by default) that held up every block write and hash queued behind it, so the
    /// receive budget filled and the peers' sockets stopped. Measured in a 1 + 16 x 256 MiB
    /// swarm: ~0.5 s with both cores idle at the first periodic write, all leechers at once.
    /// Storage writes one resume file at a time, and its snapshot of verified pieces is taken
    /// before the sync, so writes going on meanwhile claim nothing early. One is out at a
    /// time (see [`ResumeWrites`]).
    fn spawn_resume_write(&mut self, force: bool) {
        let storage = self.ctx.storage.clone();
        let tx = self.disk_tx.clone();
        self.disk_inflight += 1;
        tokio::task::spawn_blocking(move || {
            let done = vec![run_disk_job(&storage, DiskJob::FlushResume { force })];
            let _ = tx.send(DiskBatch {
                kind: BatchKind::Resume,
                done,
            });
        });
    }

    /// Hands queued jobs to the pool; what its queue has no room for waits here for the next
    /// completion, so no runtime thread ever blocks on the disk.
    fn submit_disk(&mut self) {
        for lane in [Lane::Main, Lane::Reads] {
            let (backlog, pool) = match lane {
                Lane::Main => (&mut self.disk_backlog, &self.ctx.pool),
                Lane::Reads => (&mut self.read_backlog, &self.ctx.read_pool),
            };
            while let Some(job) = backlog.pop_front() {
                match pool.try_submit(job) {
                    Ok(()) => self.disk_inflight += 1,
                    Err(TrySubmitError::Full(job)) => {
                        backlog.push_front(job);
                        break;
                    }
                    Err(TrySubmitError::Closed(_)) => {
                        let now = self.now();
                        self.machine
                            .handle_fatal(now, "the disk pool stopped".into());
                        return;
                    }
                }
            }
        }
    }

    fn dial(&mut self, addr: SocketAddr) {
        let ours = Handshake::new(self.ctx.meta.info_hash, self.ctx.peer_id);
        // BEP 52: a hybrid dialled by its v1 hash says it speaks v2 too (as libtorrent does);
        // the peer may then answer with the truncated v2 hash, upgrading the connection.
        let hybrid = self.ctx.meta.version() == shoal_metainfo::Version::Hybrid;
        let ours = if hybrid { ours.with_v2() } else { ours };
        let upgrade = self
            .ctx
            .meta
            .info_hash_v2
            .filter(|_| hybrid)
            .map(|h| h.truncated());
        let ours = if self.ctx.meta.info.private {
            ours.without_dht()
        } else {
            ours
        };
        let bind = self.ctx.bind;
        let utp = self.ctx.utp;
        let endpoint = self.ctx.utp_endpoint.clone();
        let timeout = self.ctx.connect_timeout;
        let policy = self.ctx.encryption;
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            let dialled = connection::dial_as(
                addr,
                bind,
                (utp, endpoint.as_ref()),
                ours,
                upgrade,
                timeout,
                policy,
            )
            .await;
            let ev = match dialled {
                Ok((stream, handshake, leftover)) => Event::Connected(Box::new(Connected {
                    addr,
                    outgoing: true,
                    stream,
                    handshake,
                    leftover,
                })),
                Err(e) => Event::DialFailed(addr, e.to_string()),
            };
            let _ = tx.send(ev).await;
        });
    }

    fn refresh_status(&mut self) {
        let s = self.machine.stats();
        fill_status(&mut self.status, &s, self.ctx.carried);
        self.status.peer_encryption = self
            .links
            .values()
            .filter_map(|l| Some((l.addr?, l.encryption, l.transport)))
            .collect();
        self.ctx.active.store(
            !s.complete || s.peers > 0,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Publishes the status snapshot: at once when something the display shows changed state,
    /// otherwise at most every [`STATUS_INTERVAL`].
    fn publish_status(&mut self, urgent: bool) {
        let now = self.now();
        // The moment the swarm becomes self-sufficient (or stops being) is news at once.
        let urgent = urgent
            || (self.machine.distributed_copies() >= 1.0) != self.status.swarm_self_sufficient()
            || self.machine.is_super_seeding() != self.status.super_seeding;
        if !urgent && now - self.last_publish < STATUS_INTERVAL {
            return;
        }
        self.last_publish = now;
        self.unpublished = false;
        self.refresh_status();
        self.status_tx.send_replace(self.status.clone());
    }
}

/// Resume writes of one torrent, one out at a time: one asked for meanwhile waits for it, and
/// several asked for meanwhile are one (forced if any was). A disk slower than the resume
/// interval so never piles up blocking threads; the machine only logs the answers, and the
/// later snapshot covers the earlier ones.
#[derive(Debug, Default)]
struct ResumeWrites {
    out: bool,
    /// `Some(force)`: one waits.
    next: Option<bool>,
}

impl ResumeWrites {
    /// A write is asked for: `Some(force)` if it is to start now.
    fn ask(&mut self, force: bool) -> Option<bool> {
        if self.out {
            self.next = Some(force || self.next.unwrap_or(false));
            return None;
        }
        self.out = true;
        Some(force)
    }

    /// The write that was out is done: `Some(force)` if a waiting one is to start now.
    fn finished(&mut self) -> Option<bool> {
        self.out = false;
        let next = self.next.take()?;
        self.ask(next)
    }
}

/// Runs a batch of block writes on a pool thread: blocks that follow each other in a piece are
/// written together (one vectored write per file instead of one write per block). The answers
/// come back in the batch's order.
fn run_write_batch(storage: &Storage, jobs: Vec<DiskJob>) -> Vec<DiskDone> {
    let mut slots: Vec<Option<DiskDone>> = Vec::with_capacity(jobs.len());
    let mut writes = Vec::new();
    for (i, job) in jobs.into_iter().enumerate() {
        match job {
            DiskJob::Write { conn, block, data } => {
                writes.push((i, conn, block, data));
                slots.push(None);
            }
            other => slots.push(Some(run_disk_job(storage, other))),
        }
    }
    // By piece and offset; stable, so of two copies of a block the first to arrive is written.
    writes.sort_by_key(|w| (w.2.piece, w.2.offset()));
    let mut start = 0;
    while start < writes.len() {
        let mut end = start + 1;
        while end < writes.len() {
            let (prev, next) = (&writes[end - 1], &writes[end]);
            let follows = next.2.piece == prev.2.piece
                && u64::from(next.2.offset()) == u64::from(prev.2.offset()) + prev.3.len() as u64;
            if !follows {
                break;
            }
            end += 1;
        }
        let run = &writes[start..end];
        let data: Vec<&[u8]> = run.iter().map(|w| &w.3[..]).collect();
        let results = storage.write_blocks(run[0].2.piece, run[0].2.offset(), &data);
        for (w, result) in run.iter().zip(results) {
            slots[w.0] = Some(DiskDone::Written {
                conn: w.1,
                block: w.2,
                result: write_result(result),
            });
        }
        start = end;
    }
    slots.into_iter().flatten().collect()
}

/// Splits one turn's disk jobs (no block writes: those go in write batches) into the batches
/// each lane runs: upload reads on the read threads, the rest on the disk pool, each in order
/// and in runs of at most [`READ_BATCH`].
fn lanes(jobs: Vec<DiskJob>) -> Vec<(Lane, Vec<DiskJob>)> {
    let (reads, others): (Vec<DiskJob>, Vec<DiskJob>) = jobs
        .into_iter()
        .partition(|j| matches!(j, DiskJob::Read { .. }));
    let mut out = Vec::new();
    for (lane, mut jobs) in [(Lane::Reads, reads), (Lane::Main, others)] {
        while !jobs.is_empty() {
            let rest = jobs.split_off(jobs.len().min(READ_BATCH));
            out.push((lane, std::mem::replace(&mut jobs, rest)));
        }
    }
    out
}

/// Runs a batch of disk jobs in order on a pool thread. Reads of blocks that follow each other
/// in a piece (a peer asks for a piece's blocks in order) are one read into one buffer that the
/// blocks share: one system call and one allocation per run instead of per block.
fn run_batch(storage: &Storage, jobs: Vec<DiskJob>) -> Vec<DiskDone> {
    let mut done = Vec::with_capacity(jobs.len());
    let mut jobs = jobs.into_iter().peekable();
    while let Some(job) = jobs.next() {
        let DiskJob::Read { conn, req } = job else {
            done.push(run_disk_job(storage, job));
            continue;
        };
        let mut run = vec![(conn, req)];
        let mut end = u64::from(req.begin) + u64::from(req.length);
        while let Some(&DiskJob::Read { conn, req: next }) = jobs.peek() {
            if next.piece != req.piece || u64::from(next.begin) != end {
                break;
            }
            end += u64::from(next.length);
            run.push((conn, next));
            jobs.next();
        }
        // `end` is at most the piece's length plus a block (requests are checked against it).
        let len = u32::try_from(end).unwrap_or(u32::MAX) - req.begin;
        match read_shared(storage, req.piece, req.begin, len) {
            Ok(data) => {
                for (conn, r) in run {
                    let at = (r.begin - req.begin) as usize;
                    done.push(DiskDone::Read {
                        conn,
                        req: r,
                        result: Ok(data.slice(at..at + r.length as usize)),
                    });
                }
            }
            // One bad block (a file gone short) fails only itself: read each on its own.
            Err(_) if run.len() > 1 => done.extend(
                run.into_iter()
                    .map(|(conn, req)| run_disk_job(storage, DiskJob::Read { conn, req })),
            ),
            Err(e) => done.push(DiskDone::Read {
                conn,
                req,
                result: Err(e.to_string()),
            }),
        }
    }
    done
}

/// Reads `len` bytes at `begin` in `piece` into a reused buffer (see [`ReadBuffer`]).
fn read_shared(
    storage: &Storage,
    piece: u32,
    begin: u32,
    len: u32,
) -> shoal_storage::Result<Bytes> {
    match ReadBuffer::take(len as usize) {
        Some(mut buf) => {
            storage.read_block_into(piece, begin, buf.as_mut())?;
            Ok(buf.freeze())
        }
        None => storage.read_block(piece, begin, len).map(Bytes::from),
    }
}

fn write_result(r: shoal_storage::Result<WriteOutcome>) -> Result<WriteResult, String> {
    r.map(|o| match o {
        WriteOutcome::Stored => WriteResult::Stored,
        WriteOutcome::Duplicate => WriteResult::Duplicate,
        WriteOutcome::Verified => WriteResult::PieceVerified,
        WriteOutcome::HashFailed => WriteResult::PieceFailed,
    })
    .map_err(|e| e.to_string())
}

/// Runs one disk job on a pool thread.
fn run_disk_job(storage: &Storage, job: DiskJob) -> DiskDone {
    match job {
        DiskJob::Write { conn, block, data } => DiskDone::Written {
            conn,
            block,
            result: write_result(storage.write_block(block.piece, block.offset(), &data)),
        },
        DiskJob::Read { conn, req } => DiskDone::Read {
            conn,
            req,
            result: read_shared(storage, req.piece, req.begin, req.length)
                .map_err(|e| e.to_string()),
        },
        DiskJob::HashBlocks { piece } => DiskDone::BlockHashes {
            piece,
            result: storage.block_hashes(piece).map_err(|e| e.to_string()),
        },
        DiskJob::KeepBlocks { piece, keep } => DiskDone::BlocksKept {
            piece,
            result: storage.keep_blocks(piece, &keep).map_err(|e| e.to_string()),
        },
        DiskJob::ReadLeaves { piece } => DiskDone::Leaves {
            piece,
            result: storage.leaf_hashes(piece).map_err(|e| e.to_string()),
        },
        DiskJob::FlushResume { force } => {
            // A forced flush (completion, shutdown) is one a user waits for: it records the
            // pieces since the last synced flush as unsynced instead of waiting for the disk
            // (see shoal_storage::resume). The periodic ones sync, bounding what a reboot
            // makes us re-check.
            let result = if force {
                storage.flush_resume_unsynced()
            } else {
                storage.flush_resume_if_due(RESUME_INTERVAL)
            };
            DiskDone::ResumeFlushed(result.map(|_| ()).map_err(|e| e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_metainfo::TorrentBuilder;
    use shoal_storage::{ResumeLocation, StorageOptions};
    use shoal_wire::BlockRef;

    fn read(conn: PeerKey, piece: u32, begin: u32, length: u32) -> DiskJob {
        DiskJob::Read {
            conn,
            req: BlockRef {
                piece,
                begin,
                length,
            },
        }
    }

    /// One resume write is out at a time; those asked for meanwhile become one, forced if any
    /// was, and start when it is done.
    #[test]
    fn resume_writes_go_one_at_a_time_and_coalesce() {
        let mut r = ResumeWrites::default();
        assert_eq!(r.ask(false), Some(false));
        assert_eq!(r.ask(false), None);
        assert_eq!(r.ask(true), None);
        assert_eq!(r.ask(false), None);
        assert_eq!(
            r.finished(),
            Some(true),
            "the waiting ones, as one forced write"
        );
        assert_eq!(r.ask(false), None, "that one is out now");
        assert_eq!(r.finished(), Some(false));
        assert_eq!(r.finished(), None);
        assert_eq!(r.ask(true), Some(true));
    }

    /// A batch's reads answer exactly as reads one by one do: runs of blocks that follow each
    /// other (whoever asked) share one read, and a bad block in a run fails only itself.
    #[test]
    fn batched_reads_answer_as_single_reads() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.bin");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(&file, &data).unwrap();
        let meta = TorrentBuilder::new(&file)
            .piece_length(Some(65_536))
            .no_date()
            .build(&mut |_, _| {})
            .unwrap()
            .metainfo;
        let mut opts = StorageOptions::new(dir.path());
        opts.resume = ResumeLocation::Disabled;
        let (storage, _) = Storage::open(&meta.info, meta.info_hash, opts).unwrap();
        let jobs = || {
            vec![
                read(1, 0, 0, 16_384),
                read(1, 0, 16_384, 16_384),
                read(2, 0, 32_768, 16_384),
                read(1, 1, 0, 100),
                read(1, 1, 100, 16_384),
                read(1, 0, 0, 16_384),
                read(3, 4, 0, 16_384),
                read(3, 4, 16_384, 16_384),
                read(3, 4, 32_768, 16_384),
                DiskJob::FlushResume { force: false },
                read(1, 2, 49_152, 16_384),
                read(1, 3, 0, 16_384),
            ]
        };
        let batched = run_batch(&storage, jobs());
        let single: Vec<DiskDone> = jobs()
            .into_iter()
            .map(|j| run_disk_job(&storage, j))
            .collect();
        assert_eq!(batched.len(), single.len());
        let mut failed = 0;
        for (b, s) in batched.iter().zip(&single) {
            match (b, s) {
                (
                    DiskDone::Read { conn, req, result },
                    DiskDone::Read {
                        conn: c,
                        req: r,
                        result: expected,
                    },
                ) => {
                    assert_eq!((conn, req), (c, r));
                    assert_eq!(result, expected, "{req:?}");
                    match result {
                        Ok(d) => {
                            let at = (req.piece * 65_536 + req.begin) as usize;
                            assert_eq!(&d[..], &data[at..at + req.length as usize]);
                        }
                        Err(_) => failed += 1,
                    }
                }
                (DiskDone::ResumeFlushed(_), DiskDone::ResumeFlushed(_)) => {}
                other => panic!("answers differ: {other:?}"),
            }
        }
        // The last piece is 37,856 bytes long: its third block runs past the end.
        assert_eq!(failed, 1);
    }

    /// Upload reads go to the read threads and everything else to the disk pool, each in its
    /// order, in batches of at most READ_BATCH.
    #[test]
    fn reads_get_a_lane_of_their_own() {
        let mut jobs: Vec<DiskJob> = (0..READ_BATCH as u32 + 3)
            .map(|i| read(1, i, 0, 16_384))
            .collect();
        jobs.insert(2, DiskJob::FlushResume { force: true });
        jobs.push(DiskJob::HashBlocks { piece: 7 });
        let out = lanes(jobs);
        let shape: Vec<(Lane, usize)> = out.iter().map(|(l, b)| (*l, b.len())).collect();
        assert_eq!(
            shape,
            [(Lane::Reads, READ_BATCH), (Lane::Reads, 3), (Lane::Main, 2)]
        );
        let pieces: Vec<u32> = out
            .iter()
            .filter(|(l, _)| *l == Lane::Reads)
            .flat_map(|(_, b)| b)
            .map(|j| match j {
                DiskJob::Read { req, .. } => req.piece,
                other => panic!("{other:?} on the read lane"),
            })
            .collect();
        assert_eq!(pieces, (0..READ_BATCH as u32 + 3).collect::<Vec<_>>());
        assert!(matches!(
            out[2].1[..],
            [
                DiskJob::FlushResume { force: true },
                DiskJob::HashBlocks { piece: 7 }
            ]
        ));
    }

    /// Every slot of a torrent's event queue is as large as the largest event; a daemon holds
    /// thousands of queues (their first block of 32 slots is allocated up front).
    #[test]
    fn events_stay_small() {
        assert!(
            std::mem::size_of::<super::Event>() <= 96,
            "{}",
            std::mem::size_of::<super::Event>()
        );
    }
}
