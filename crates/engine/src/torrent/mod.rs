//! The torrent actor: one task per torrent that coordinates the picker (what to request), the
//! choker (whom to serve), storage (on the disk pool) and the peer connections.
//!
//! It owns all per-torrent state; peer tasks and disk jobs talk to it only through events, so
//! nothing here is shared or locked. It decides, the sans-IO crates compute, the tasks move bytes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::SeedableRng;
use shoal_choker::{Choker, ChokerConfig, PeerStats};
use shoal_core::{Id20, Time};
use shoal_metainfo::Metainfo;
use shoal_picker::{Block, BlockOutcome, Picker, BLOCK_SIZE};
use shoal_storage::{DiskPool, Storage, StorageError, WriteOutcome};
use shoal_wire::frame::Limits;
use shoal_wire::{BlockRef, ExtendedHandshake, Handshake, Message, MetadataMessage};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::connection::{self, RateLimits};
use crate::peer::{Peer, MAX_PENDING_UPLOADS, OUR_REQQ};
use crate::peer_book::PeerBook;
use crate::status::{TorrentState, TorrentStatus};

mod bans;
mod pex;
mod requests;
mod uploads;

/// A connection's key in the picker and choker: a slot number, never reused in a torrent.
pub type PeerKey = u32;

/// The extension id under which shoal receives `ut_metadata` (BEP 9/10).
pub const UT_METADATA_ID: u8 = 3;
/// The extension id under which shoal receives `ut_pex` (BEP 11).
pub const UT_PEX_ID: u8 = 1;
/// Time between two `ut_pex` messages to one peer (BEP 11: at most once a minute).
const PEX_INTERVAL: Duration = Duration::from_secs(60);
/// How often the actor looks at timers (request deadlines, dialling, status).
const TICK: Duration = Duration::from_millis(200);
/// Blocks on their way to disk before we stop asking peers for more (4 MiB; measured: 512 gave
/// the same throughput with 5 MiB more anonymous memory).
const MAX_DISK_INFLIGHT: usize = 256;
/// A peer with requests out and no block for this long is snubbed (libtorrent: 20 s).
const SNUB_AFTER: Duration = Duration::from_secs(20);
/// A snubbed peer that stays silent this much longer is dropped.
const SNUBBED_DROP_AFTER: Duration = Duration::from_secs(60);
/// A peer that sends nothing at all (not even a keep-alive) for this long is dropped
/// (BEP 3 keep-alives come every 2 minutes).
const IDLE_DROP_AFTER: Duration = Duration::from_secs(150);
/// Unrequested blocks tolerated before the peer is dropped.
const MAX_UNSOLICITED: u32 = 16;
/// Connection attempts in progress at once.
const MAX_HALF_OPEN: usize = 8;
/// Hash-failure points after which an IP is banned: a peer that alone sent a piece that failed
/// gets all of them at once; a peer among several contributors gets one per failed piece.
const BAN_POINTS: u32 = 3;
/// How often resume data is written while pieces complete.
const RESUME_INTERVAL: Duration = Duration::from_secs(5);

/// What reaches the actor.
pub enum Event {
    /// A message from a peer.
    PeerMessage(PeerKey, Message),
    /// A peer's connection ended.
    PeerClosed(PeerKey, String),
    /// A connection with a completed handshake, outgoing or incoming.
    Connected {
        /// The peer's address.
        addr: SocketAddr,
        /// Whether we dialled it.
        outgoing: bool,
        /// The socket.
        stream: TcpStream,
        /// Its handshake.
        handshake: Handshake,
        /// Bytes that followed the handshake.
        leftover: BytesMut,
    },
    /// A dial failed.
    DialFailed(SocketAddr, String),
    /// More peer addresses (command line, trackers, DHT).
    AddPeers(Vec<SocketAddr>),
    /// A peer's writer has room for more blocks again.
    WriterDrained(PeerKey),
    /// The trackers' latest results, for the status.
    TrackerReports(Vec<crate::status::TrackerReport>),
    /// Stop: flush resume data, close connections, then answer.
    Shutdown(oneshot::Sender<()>),
}

/// Results of disk jobs, on an unbounded channel: disk threads must never block on the actor
/// (the actor bounds them instead, by limiting jobs in flight).
enum DiskDone {
    Written {
        peer: PeerKey,
        block: Block,
        result: Result<WriteOutcome, StorageError>,
    },
    Read {
        peer: PeerKey,
        req: BlockRef,
        result: Result<Vec<u8>, StorageError>,
    },
    ResumeFlushed(Result<bool, StorageError>),
}

/// Everything the actor needs from the session.
pub struct TorrentContext {
    /// The torrent.
    pub meta: Arc<Metainfo>,
    /// Its storage (opened and checked).
    pub storage: Arc<Storage>,
    /// The session's disk pool.
    pub pool: Arc<DiskPool>,
    /// Our peer id.
    pub peer_id: Id20,
    /// Our listen address (to advertise the port and to bind outgoing connections).
    pub listen_addr: SocketAddr,
    /// Session clock.
    pub clock: Clock,
    /// Session rate limits.
    pub rates: Arc<RateLimits>,
    /// Most peers connected at once.
    pub max_peers: usize,
    /// Connect and handshake timeout.
    pub connect_timeout: Duration,
    /// Whether storage is read-only (the initial seeder).
    pub seed_only: bool,
    /// Per file: false to skip it (`None`: all wanted).
    pub wanted_files: Option<Vec<bool>>,
}

/// Which pieces hold data of a wanted file (a piece shared with a skipped file is still needed).
fn wanted_pieces(info: &shoal_metainfo::Info, wanted_files: Option<&[bool]>) -> Vec<bool> {
    let n = info.num_pieces() as usize;
    let Some(wanted_files) = wanted_files else {
        return vec![true; n];
    };
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
    pieces
}

/// The actor's state.
pub struct TorrentActor {
    ctx: TorrentContext,
    events_tx: mpsc::Sender<Event>,
    events_rx: mpsc::Receiver<Event>,
    disk_tx: mpsc::UnboundedSender<DiskDone>,
    disk_rx: mpsc::UnboundedReceiver<DiskDone>,
    status_tx: watch::Sender<TorrentStatus>,
    picker: Picker<PeerKey>,
    choker: Choker<PeerKey>,
    choker_next: Time,
    book: PeerBook,
    peers: HashMap<PeerKey, Peer>,
    next_key: PeerKey,
    dialing: usize,
    disk_inflight: usize,
    resume_flushing: bool,
    ban_points: HashMap<IpAddr, u32>,
    rng: StdRng,
    status: TorrentStatus,
    uploaded_window: u64,
    downloaded_window: u64,
    last_rate_update: Time,
    fatal: Option<String>,
}

impl TorrentActor {
    /// Builds the actor; [`run`](Self::run) drives it.
    pub fn new(
        ctx: TorrentContext,
        events_tx: mpsc::Sender<Event>,
        events_rx: mpsc::Receiver<Event>,
        status_tx: watch::Sender<TorrentStatus>,
    ) -> Result<Self, crate::EngineError> {
        let info = &ctx.meta.info;
        let seed = rand::random();
        // Metainfo validation makes this succeed; a torrent it somehow let through is an error
        // for that torrent, not a panic.
        let mut picker = Picker::new(
            info.num_pieces(),
            info.piece_length,
            info.total_length,
            seed,
        )
        .map_err(|e| crate::EngineError::Stopped(format!("invalid piece layout: {e}")))?;
        let wanted = wanted_pieces(info, ctx.wanted_files.as_deref());
        for (piece, w) in wanted.iter().enumerate() {
            if !w {
                let _ = picker.set_piece_priority(piece as u32, 0);
            }
        }
        let mut verified_bytes = 0;
        let verified = ctx.storage.verified();
        for piece in verified.ones() {
            let _ = picker.piece_verified(piece);
            if wanted[piece as usize] {
                verified_bytes += info.piece_size(piece) as u64;
            }
        }
        let wanted_bytes: u64 = (0..info.num_pieces())
            .filter(|p| wanted[*p as usize])
            .map(|p| info.piece_size(p) as u64)
            .sum();
        let (disk_tx, disk_rx) = mpsc::unbounded_channel();
        let now = ctx.clock.now();
        let mut book = PeerBook::new();
        book.own_addr = Some(ctx.listen_addr);
        let status = TorrentStatus {
            state: if picker.is_complete() {
                TorrentState::Seeding
            } else {
                TorrentState::Downloading
            },
            verified_bytes,
            total_bytes: wanted_bytes,
            pieces_have: picker.num_have(),
            pieces_total: info.num_pieces(),
            ..Default::default()
        };
        // Receivers see the real totals from the start, never an empty default.
        status_tx.send_replace(status.clone());
        Ok(TorrentActor {
            choker: Choker::new(ChokerConfig::default(), rand::random()),
            choker_next: now,
            book,
            peers: HashMap::new(),
            next_key: 0,
            dialing: 0,
            disk_inflight: 0,
            resume_flushing: false,
            ban_points: HashMap::new(),
            rng: StdRng::from_rng(&mut rand::rng()),
            status,
            uploaded_window: 0,
            downloaded_window: 0,
            last_rate_update: now,
            fatal: None,
            picker,
            ctx,
            events_tx,
            events_rx,
            disk_tx,
            disk_rx,
            status_tx,
        })
    }

    /// Runs until shutdown or a fatal storage error.
    pub async fn run(mut self) {
        let _ = self.status_tx.send(self.status.clone());
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let done: Option<oneshot::Sender<()>> = loop {
            tokio::select! {
                // Disk results first: they free memory and unblock requests. The tick comes
                // before peer events so a busy data path never starves deadlines and status.
                biased;
                Some(d) = self.disk_rx.recv() => self.on_disk(d),
                _ = tick.tick() => self.on_tick(),
                ev = self.events_rx.recv() => match ev {
                    None => break None,
                    Some(Event::Shutdown(done)) => break Some(done),
                    Some(ev) => self.on_event(ev),
                },
            }
            if self.fatal.is_some() {
                break None;
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
        self.peers.clear();
        let storage = self.ctx.storage.clone();
        // Wait for queued writes so their pieces can count, then write resume data.
        while self.disk_inflight > 0 {
            match tokio::time::timeout(Duration::from_secs(10), self.disk_rx.recv()).await {
                Ok(Some(d)) => self.on_disk(d),
                _ => break,
            }
        }
        let result = tokio::task::spawn_blocking(move || storage.close()).await;
        if let Ok(Err(e)) = result {
            warn!("writing resume data at shutdown failed: {e}");
        }
        if self.fatal.is_none() {
            self.status.state = if self.picker.is_complete() {
                TorrentState::Seeding
            } else {
                TorrentState::Stopped
            };
        }
        self.publish_status();
    }

    fn now(&self) -> Time {
        self.ctx.clock.now()
    }

    // ----- events -----

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::PeerMessage(key, msg) => {
                if let Err(reason) = self.on_message(key, msg) {
                    self.disconnect(key, &reason);
                }
            }
            Event::PeerClosed(key, reason) => self.disconnect(key, &reason),
            Event::Connected {
                addr,
                outgoing,
                stream,
                handshake,
                leftover,
            } => self.on_connected(addr, outgoing, stream, handshake, leftover),
            Event::DialFailed(addr, error) => {
                self.dialing = self.dialing.saturating_sub(1);
                debug!(%addr, "dial failed: {error}");
                let now = self.now();
                self.book.failed(addr, now, &mut self.rng);
            }
            Event::AddPeers(addrs) => {
                let now = self.now();
                for a in addrs {
                    self.book.add(a, now);
                }
                self.dial_due();
            }
            Event::TrackerReports(reports) => self.status.trackers = reports,
            Event::WriterDrained(key) => self.pump_uploads(key),
            Event::Shutdown(_) => {}
        }
    }

    fn on_connected(
        &mut self,
        addr: SocketAddr,
        outgoing: bool,
        stream: TcpStream,
        handshake: Handshake,
        leftover: BytesMut,
    ) {
        if outgoing {
            self.dialing = self.dialing.saturating_sub(1);
        }
        let now = self.now();
        let reason = if self.book.is_banned(addr.ip()) {
            Some("banned")
        } else if handshake.peer_id == self.ctx.peer_id {
            Some("connected to ourselves")
        } else if self.peers.len() >= self.ctx.max_peers {
            Some("too many peers")
        } else if self.peers.values().any(|p| p.peer_id == handshake.peer_id) {
            Some("already connected to this peer")
        } else {
            None
        };
        if let Some(reason) = reason {
            debug!(%addr, "dropping connection: {reason}");
            if outgoing {
                self.book.failed(addr, now, &mut self.rng);
            }
            return;
        }
        let key = self.next_key;
        self.next_key += 1;
        let limits = Limits::for_pieces(self.ctx.meta.info.num_pieces());
        let link = connection::spawn(
            stream,
            key,
            leftover,
            limits,
            self.events_tx.clone(),
            self.ctx.rates.clone(),
            self.ctx.clock,
        );
        if outgoing {
            self.book.connecting(addr, now);
        }
        info!(%addr, peer = key, outgoing, "peer connected");
        let fast = handshake.supports_fast();
        let peer = Peer::new(link, addr, outgoing, handshake.peer_id, fast, now);
        self.peers.insert(key, peer);
        self.picker.add_peer(key);

        let mut hello = Vec::new();
        if handshake.supports_extended() {
            hello.push(self.extended_handshake(addr));
        }
        let n = self.picker.num_have();
        if fast && n == 0 {
            hello.push(Message::HaveNone);
        } else if fast && self.picker.is_complete() && n == self.ctx.meta.info.num_pieces() {
            hello.push(Message::HaveAll);
        } else if n > 0 {
            hello.push(Message::Bitfield(self.our_bitfield()));
        }
        for m in hello {
            self.send(key, m);
        }
    }

    fn extended_handshake(&self, addr: SocketAddr) -> Message {
        let mut hs = ExtendedHandshake {
            client: Some(concat!("shoal ", env!("CARGO_PKG_VERSION")).to_string()),
            listen_port: Some(self.ctx.listen_addr.port()),
            reqq: Some(OUR_REQQ as u32),
            your_ip: Some(addr.ip()),
            metadata_size: Some(self.ctx.meta.info_bytes.len() as u64),
            upload_only: self.picker.is_complete(),
            ..Default::default()
        };
        // BEP 27: private torrents exchange neither metadata nor peers.
        if !self.ctx.meta.info.private {
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
        let n = self.ctx.meta.info.num_pieces();
        let mut bits = vec![0u8; n.div_ceil(8) as usize];
        for i in 0..n {
            if self.picker.have(i) {
                bits[(i / 8) as usize] |= 0x80 >> (i % 8);
            }
        }
        Bytes::from(bits)
    }

    /// Queues a message to a peer. A peer whose queue is full is not reading: it is dropped.
    fn send(&mut self, key: PeerKey, msg: Message) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        if peer.link.tx.try_send(msg).is_err() {
            self.disconnect(key, "send queue full (peer not reading)");
        }
    }

    fn disconnect(&mut self, key: PeerKey, reason: &str) {
        let Some(peer) = self.peers.remove(&key) else {
            return;
        };
        info!(addr = %peer.addr, peer = key, "peer disconnected: {reason}");
        self.picker.remove_peer(key);
        let now = self.now();
        if peer.outgoing {
            self.book.failed(peer.addr, now, &mut self.rng);
        }
        // Its requests are back in the picker: let the others take them.
        self.fill_all_requests();
    }

    // ----- peer messages -----

    fn on_message(&mut self, key: PeerKey, msg: Message) -> Result<(), String> {
        let now = self.now();
        let num_pieces = self.ctx.meta.info.num_pieces();
        let Some(peer) = self.peers.get_mut(&key) else {
            return Ok(());
        };
        peer.last_message_at = now;
        match msg {
            Message::KeepAlive
            | Message::Unknown { .. }
            | Message::Suggest(_)
            | Message::Port(_) => {}
            Message::Choke => {
                peer.peer_choking = true;
                if !peer.fast {
                    // Without BEP 6 a choke discards every request we had out.
                    let blocks: Vec<Block> = peer.requests.keys().copied().collect();
                    for b in blocks {
                        peer.release(b);
                        self.picker.abort_request(key, b);
                    }
                    self.fill_all_requests();
                }
            }
            Message::Unchoke => {
                peer.peer_choking = false;
                self.fill_requests(key);
            }
            Message::Interested => {
                peer.peer_interested = true;
                let stats = self.peer_stats();
                for p in self.choker.fill_free_slots(now, &stats) {
                    self.set_choke(p, false);
                }
            }
            Message::NotInterested => peer.peer_interested = false,
            Message::Have(piece) => {
                self.picker
                    .peer_have(key, piece)
                    .map_err(|e| format!("bad have: {e}"))?;
                self.update_interest(key);
            }
            Message::Bitfield(bits) => {
                self.picker
                    .peer_bitfield(key, &bits)
                    .map_err(|e| format!("bad bitfield: {e}"))?;
                self.update_interest(key);
            }
            Message::HaveAll | Message::HaveNone if !peer.fast => {
                return Err("BEP 6 message from a peer without the fast extension".into())
            }
            Message::HaveAll => {
                self.picker.peer_have_all(key).map_err(|e| e.to_string())?;
                self.update_interest(key);
            }
            Message::HaveNone => {
                self.picker.peer_have_none(key).map_err(|e| e.to_string())?;
                self.update_interest(key);
            }
            Message::Request(req) => self.on_request(key, req)?,
            Message::Cancel(req) => {
                if let Some(pos) = peer.upload_queue.iter().position(|r| *r == req) {
                    peer.upload_queue.remove(pos);
                } else if peer.pending_uploads > 0 && peer.cancelled.len() < MAX_PENDING_UPLOADS {
                    // Only a read in flight can be cancelled, and at most that many are: a flood
                    // of made-up cancels cannot grow the set.
                    peer.cancelled.insert(req);
                }
            }
            Message::Reject(req) => {
                let block = Block::new(req.piece, req.begin / BLOCK_SIZE);
                if peer.requests.contains_key(&block) {
                    peer.release(block);
                    self.picker.abort_request(key, block);
                    self.fill_all_requests();
                }
            }
            Message::AllowedFast(piece) => {
                if piece >= num_pieces {
                    return Err(format!("allowed-fast for piece {piece} out of range"));
                }
            }
            Message::Piece { piece, begin, data } => self.on_piece(key, piece, begin, data)?,
            Message::Extended { id, payload } => self.on_extended(key, id, payload)?,
        }
        Ok(())
    }

    fn on_extended(&mut self, key: PeerKey, id: u8, payload: Bytes) -> Result<(), String> {
        let now = self.now();
        if id == 0 {
            let hs = ExtendedHandshake::decode(&payload).map_err(|e| e.to_string())?;
            let Some(peer) = self.peers.get_mut(&key) else {
                return Ok(());
            };
            if let Some(reqq) = hs.reqq {
                peer.reqq = (reqq as usize).max(1);
            }
            if let (false, Some(port)) = (peer.outgoing, hs.listen_port) {
                // An incoming peer tells us where it listens: remember it for later.
                let addr = SocketAddr::new(peer.addr.ip(), port);
                self.book.add(addr, now);
                self.book.connecting(addr, now);
            }
            peer.extended = Some(hs);
            return Ok(());
        }
        if self.ctx.meta.info.private {
            return Ok(());
        }
        if id == UT_PEX_ID {
            let pex = shoal_wire::PexMessage::decode(&payload).map_err(|e| e.to_string())?;
            for addr in pex.added {
                self.book.add(addr, now);
            }
            self.dial_due();
            return Ok(());
        }
        if id != UT_METADATA_ID {
            return Ok(());
        }
        let msg = MetadataMessage::decode(&payload).map_err(|e| e.to_string())?;
        let their_id = self
            .peers
            .get(&key)
            .and_then(|p| p.extended.as_ref())
            .and_then(|e| e.id_of("ut_metadata"));
        let (MetadataMessage::Request { piece }, Some(their_id)) = (msg, their_id) else {
            return Ok(());
        };
        // Serve our info dictionary in 16 KiB pieces (BEP 9).
        let info = &self.ctx.meta.info_bytes;
        let start = piece as usize * shoal_wire::METADATA_PIECE_SIZE;
        let reply = if start < info.len() {
            let end = (start + shoal_wire::METADATA_PIECE_SIZE).min(info.len());
            MetadataMessage::Data {
                piece,
                total_size: info.len() as u64,
                data: Bytes::copy_from_slice(&info[start..end]),
            }
        } else {
            MetadataMessage::Reject { piece }
        };
        self.send(
            key,
            Message::Extended {
                id: their_id,
                payload: reply.encode(),
            },
        );
        Ok(())
    }

    fn update_interest(&mut self, key: PeerKey) {
        let interesting = self.picker.is_interesting(key);
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if interesting != peer.am_interested {
            peer.am_interested = interesting;
            let msg = if interesting {
                Message::Interested
            } else {
                Message::NotInterested
            };
            self.send(key, msg);
        }
        if interesting {
            self.fill_requests(key);
        }
    }

    fn on_piece(
        &mut self,
        key: PeerKey,
        piece: u32,
        begin: u32,
        data: Bytes,
    ) -> Result<(), String> {
        let now = self.now();
        let num_pieces = self.ctx.meta.info.num_pieces();
        if piece >= num_pieces || !begin.is_multiple_of(BLOCK_SIZE) {
            return Err(format!(
                "block at piece {piece} offset {begin} is not a valid block"
            ));
        }
        let block = Block::new(piece, begin / BLOCK_SIZE);
        if self.picker.layout().check_block(block).is_err() {
            return Err(format!(
                "block at piece {piece} offset {begin} is past the piece's end"
            ));
        }
        let expected = self.picker.layout().block_len(block);
        if data.len() as u32 != expected {
            return Err(format!(
                "block {piece}/{begin} has {} bytes, expected {expected}",
                data.len()
            ));
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return Ok(());
        };
        if !peer.take_request(block, now) {
            peer.unsolicited += 1;
            if peer.unsolicited > MAX_UNSOLICITED {
                return Err(format!("{} blocks we never asked for", peer.unsolicited));
            }
            return Ok(());
        }
        peer.count_download(data.len());
        peer.last_block_at = Some(now);
        peer.snubbed_since = None;
        self.status.downloaded += data.len() as u64;
        self.downloaded_window += data.len() as u64;
        match self.picker.block_received(key, block) {
            Ok(BlockOutcome::New { cancel, .. }) => {
                for other in cancel {
                    if let Some(p) = self.peers.get_mut(&other) {
                        p.release(block);
                        let req = BlockRef {
                            piece,
                            begin,
                            length: expected,
                        };
                        self.send(other, Message::Cancel(req));
                    }
                }
                self.write_block(key, block, data);
            }
            Ok(BlockOutcome::Duplicate | BlockOutcome::Unexpected) => {}
            Err(e) => return Err(e.to_string()),
        }
        self.fill_requests(key);
        Ok(())
    }

    fn write_block(&mut self, key: PeerKey, block: Block, data: Bytes) {
        self.disk_inflight += 1;
        let storage = self.ctx.storage.clone();
        let tx = self.disk_tx.clone();
        let job = move || {
            let result = storage.write_block(block.piece, block.offset(), &data, key as u64);
            let _ = tx.send(DiskDone::Written {
                peer: key,
                block,
                result,
            });
        };
        if self.ctx.pool.submit(job).is_err() {
            self.fatal("the disk pool stopped".into());
        }
    }

    // ----- disk results -----

    fn on_disk(&mut self, done: DiskDone) {
        match done {
            DiskDone::Written {
                peer,
                block,
                result,
            } => {
                self.disk_inflight = self.disk_inflight.saturating_sub(1);
                match result {
                    Ok(WriteOutcome::Stored | WriteOutcome::Duplicate) => {}
                    Ok(WriteOutcome::Verified) => self.on_piece_verified(block.piece),
                    Ok(WriteOutcome::HashFailed { contributors }) => {
                        self.on_hash_failed(block.piece, contributors, peer)
                    }
                    Err(e) => self.fatal(e.to_string()),
                }
                self.fill_requests(peer);
            }
            DiskDone::Read { peer, req, result } => {
                self.disk_inflight = self.disk_inflight.saturating_sub(1);
                let data = match result {
                    Ok(d) => d,
                    Err(e) => {
                        self.fatal(e.to_string());
                        return;
                    }
                };
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                p.pending_uploads = p.pending_uploads.saturating_sub(1);
                self.pump_uploads(peer);
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                if p.cancelled.remove(&req) {
                    return;
                }
                if p.am_choking {
                    if p.fast {
                        self.send(peer, Message::Reject(req));
                    }
                    return;
                }
                p.uploaded += data.len() as u64;
                p.link
                    .piece_bytes
                    .fetch_add(data.len(), std::sync::atomic::Ordering::AcqRel);
                self.status.uploaded += data.len() as u64;
                self.uploaded_window += data.len() as u64;
                self.send(
                    peer,
                    Message::Piece {
                        piece: req.piece,
                        begin: req.begin,
                        data: Bytes::from(data),
                    },
                );
            }
            DiskDone::ResumeFlushed(result) => {
                self.resume_flushing = false;
                if let Err(e) = result {
                    warn!("writing resume data failed: {e}");
                }
            }
        }
        if self.disk_inflight < MAX_DISK_INFLIGHT / 2 {
            // Back-pressure released: ask again.
            self.fill_all_requests();
        }
    }

    fn on_piece_verified(&mut self, piece: u32) {
        if self.picker.have(piece) {
            return;
        }
        if let Err(e) = self.picker.piece_verified(piece) {
            warn!("picker refused verified piece {piece}: {e}");
            return;
        }
        if self.picker.piece_priority(piece) > 0 {
            self.status.verified_bytes += self.ctx.meta.info.piece_size(piece) as u64;
        }
        self.status.pieces_have = self.picker.num_have();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            if !self.picker.peer_has(k, piece) {
                self.send(k, Message::Have(piece));
            }
            self.update_interest(k);
        }
        if self.picker.is_complete() && self.status.state == TorrentState::Downloading {
            info!("download complete");
            self.status.state = TorrentState::Seeding;
            self.flush_resume(true);
            self.publish_status();
        }
    }

    fn fatal(&mut self, message: String) {
        warn!("torrent stopped: {message}");
        self.status.state = TorrentState::Error(message.clone());
        self.fatal = Some(message);
        self.publish_status();
    }

    fn flush_resume(&mut self, force: bool) {
        if self.resume_flushing || self.ctx.seed_only {
            return;
        }
        let storage = self.ctx.storage.clone();
        if !storage.resume_dirty() {
            return;
        }
        self.resume_flushing = true;
        let tx = self.disk_tx.clone();
        let job = move || {
            let result = if force {
                storage.flush_resume()
            } else {
                storage.flush_resume_if_due(RESUME_INTERVAL)
            };
            let _ = tx.send(DiskDone::ResumeFlushed(result));
        };
        if self.ctx.pool.submit(job).is_err() {
            self.resume_flushing = false;
        }
    }

    // ----- timers -----

    fn on_tick(&mut self) {
        let now = self.now();
        // Requests past their deadline go back to the picker for other peers.
        let expired = self.picker.expire(now);
        let any_expired = !expired.is_empty();
        let layout = *self.picker.layout();
        for (key, block) in expired {
            if let Some(p) = self.peers.get_mut(&key) {
                if p.requests.contains_key(&block) {
                    p.release(block);
                    p.rtt.on_timeout();
                    p.timeouts += 1;
                    debug!(peer = key, ?block, "request timed out");
                    // The block goes to another peer: tell the slow one not to bother, so a
                    // late copy does not waste both uploads (a copy already sent is harmless).
                    let req = BlockRef {
                        piece: block.piece,
                        begin: block.offset(),
                        length: layout.block_len(block),
                    };
                    self.send(key, Message::Cancel(req));
                }
            }
        }
        // Snubbing and silence.
        let mut drop = Vec::new();
        for (key, p) in self.peers.iter_mut() {
            // Silence counts from the last block, or from when we started waiting on it.
            let quiet_from = [p.last_block_at, p.waiting_since]
                .into_iter()
                .flatten()
                .fold(p.connected_at, Time::max);
            let since_block = now - quiet_from;
            if !p.requests.is_empty() && p.snubbed_since.is_none() && since_block >= SNUB_AFTER {
                debug!(peer = key, "snubbed: no block for {since_block:?}");
                p.snubbed_since = Some(now);
            }
            if let Some(since) = p.snubbed_since {
                if now - since >= SNUBBED_DROP_AFTER && p.last_block_at.is_none_or(|t| t < since) {
                    drop.push((*key, "snubbed and silent".to_string()));
                    continue;
                }
            }
            if now - p.last_message_at >= IDLE_DROP_AFTER {
                drop.push((*key, format!("silent for {IDLE_DROP_AFTER:?}")));
            }
        }
        for (k, reason) in drop {
            self.disconnect(k, &reason);
        }
        if any_expired {
            self.fill_all_requests();
        }
        // Choking.
        if now >= self.choker_next {
            let stats = self.peer_stats();
            let seeding = self.picker.is_complete();
            let decision = self.choker.tick(now, seeding, &stats);
            for p in decision.unchoke {
                self.set_choke(p, false);
            }
            for p in decision.choke {
                self.set_choke(p, true);
            }
            for p in decision.snubbed {
                if let Some(peer) = self.peers.get_mut(&p) {
                    peer.snubbed_since.get_or_insert(now);
                }
            }
            self.choker_next = decision.next_call.min(now + Duration::from_secs(10));
        }
        // Rates and status.
        let elapsed = now - self.last_rate_update;
        if elapsed >= Duration::from_secs(1) {
            for p in self.peers.values_mut() {
                p.update_rate(elapsed);
            }
            let secs = elapsed.as_secs_f64();
            let alpha = (secs / 2.0).min(1.0);
            self.status.down_rate +=
                alpha * (self.downloaded_window as f64 / secs - self.status.down_rate);
            self.status.up_rate +=
                alpha * (self.uploaded_window as f64 / secs - self.status.up_rate);
            self.downloaded_window = 0;
            self.uploaded_window = 0;
            self.last_rate_update = now;
            self.flush_resume(false);
        }
        self.dial_due();
        self.send_pex(now);
        self.publish_status();
    }

    fn set_choke(&mut self, key: PeerKey, choke: bool) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.am_choking == choke {
            return;
        }
        p.am_choking = choke;
        self.send(
            key,
            if choke {
                Message::Choke
            } else {
                Message::Unchoke
            },
        );
    }

    fn peer_stats(&self) -> Vec<PeerStats<PeerKey>> {
        self.peers
            .iter()
            .map(|(k, p)| PeerStats {
                peer: *k,
                downloaded: p.downloaded,
                uploaded: p.uploaded,
                peer_interested: p.peer_interested,
                am_interested: p.am_interested,
                peer_choking: p.peer_choking,
                requests_out: p.requests.len(),
                connected_at: p.connected_at,
                last_block_at: p.last_block_at,
            })
            .collect()
    }

    fn dial_due(&mut self) {
        if self.fatal.is_some() {
            return;
        }
        let room = self
            .ctx
            .max_peers
            .saturating_sub(self.peers.len() + self.dialing)
            .min(MAX_HALF_OPEN.saturating_sub(self.dialing));
        if room == 0 {
            return;
        }
        let now = self.now();
        // A seed has nothing to fetch from other seeds, but still dials: they may be leechers.
        for addr in self.book.due(now, room) {
            self.book.connecting(addr, now);
            self.dialing += 1;
            let ours = Handshake::new(self.ctx.meta.info_hash, self.ctx.peer_id);
            let ours = if self.ctx.meta.info.private {
                ours.without_dht()
            } else {
                ours
            };
            let bind_ip = Some(self.ctx.listen_addr.ip());
            let timeout = self.ctx.connect_timeout;
            let tx = self.events_tx.clone();
            tokio::spawn(async move {
                let ev = match connection::dial(addr, bind_ip, ours, timeout).await {
                    Ok((stream, handshake, leftover)) => Event::Connected {
                        addr,
                        outgoing: true,
                        stream,
                        handshake,
                        leftover,
                    },
                    Err(e) => Event::DialFailed(addr, e.to_string()),
                };
                let _ = tx.send(ev).await;
            });
        }
    }

    fn publish_status(&mut self) {
        self.status.peers = self.peers.len();
        let _ = self.status_tx.send(self.status.clone());
    }
}
