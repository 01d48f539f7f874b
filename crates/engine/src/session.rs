//! The session: the listen socket, the peer id, the disk pool and the running torrents.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_core::Id20;
use shoal_metainfo::Metainfo;
use shoal_storage::{
    DiskPool, Mode, RecheckOptions, RecheckProgress, ResumeLocation, Startup, Storage,
    StorageOptions,
};
use shoal_utp::SocketConfig;
use shoal_wire::Handshake;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::connection::{accept, RateLimits, Transport};
use crate::peer_id::new_peer_id;
use crate::slot::{Life, Slot, Spec};
use crate::status::TorrentStatus;
use crate::torrent::{Event, TorrentContext};
use crate::utp_driver::UtpEndpoint;
use crate::EngineError;

/// Session settings.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Address to listen on for peers; port 0 picks a free one. An unspecified IP listens on
    /// `bind`'s address (IPv4 first) if it has one.
    pub listen: SocketAddr,
    /// Local addresses of every socket: listen, peer dials, trackers, DHT. When it has no
    /// address and is not strict, `listen`'s IP (if specific) is used for its family, as
    /// before `--bind` existed. When strict, a family without an address is not used and
    /// nothing falls back to another source address.
    pub bind: shoal_core::LocalBind,
    /// Global upload cap, bytes per second.
    pub max_upload_rate: Option<u64>,
    /// Global download cap, bytes per second.
    pub max_download_rate: Option<u64>,
    /// Most peers per torrent.
    pub max_peers_per_torrent: usize,
    /// Most peers of all torrents together (0: no global cap), split evenly among the active
    /// torrents (see [`crate::budget::peer_cap`]).
    pub max_connections: usize,
    /// Timeout for connecting and for the handshake (libtorrent: 15 s connect; 10 s is plenty
    /// for a handshake that is one round trip).
    pub connect_timeout: Duration,
    /// Disk and hashing threads (0: one per core). Default 1: measured on 2 cores, 1 GiB over
    /// loopback, one thread moved 678 MB/s at 1.53 CPU s/GiB where two moved 503 MB/s at 1.96
    /// (two threads writing blocks of the same piece contend for its hash state, and every
    /// hand-off between them is a wake-up).
    pub disk_threads: usize,
    /// Threads that only read blocks for uploads (at least one). Reads of blocks that are not
    /// in the page cache wait for the disk, and under a download's writeback one waited up to
    /// 1.9 s here: on the one disk thread, every upload, write and hash waited with it (a
    /// seeder capped at 16 MiB/s sent nothing for that long, 1 + 16 leechers took 1.2x the
    /// bound instead of 1.02x). With reads on threads of their own, only the blocks behind
    /// the slow read wait. 4, fewer than libtorrent's 10 `aio_threads` (which also write):
    /// idle ones cost a stack each, and reads from the page cache need no more than the cores.
    pub read_threads: usize,
    /// The Mainline DHT, or `None` to run without it.
    pub dht: Option<DhtSettings>,
    /// MSE/PE for connections both ways (`--encryption`).
    pub encryption: crate::EncryptionPolicy,
    /// uTP for peer connections (`--utp`). Default [`UtpMode::On`], as libtorrent's: both
    /// transports in and out (TCP dialled first; see `connection::dial_as` for why).
    pub utp: UtpMode,
    /// Put a complete torrent to sleep once it has had no peer this long, and start complete
    /// torrents asleep (`None`: torrents never sleep). A sleeping torrent has no task, queue,
    /// machine or open file; an incoming peer wakes it (see [`crate::slot`]). The daemon uses
    /// [`SLEEP_AFTER`].
    pub sleep_after: Option<Duration>,
}

/// How long a complete torrent stays awake with no peer: 60 s, libtorrent's
/// `min_reconnect_time`, so a peer that dropped and reconnects at its earliest still finds the
/// torrent awake. Waking costs a read of the resume data (nothing is hashed), so a longer
/// delay would buy little and keep memory for nothing.
pub const SLEEP_AFTER: Duration = Duration::from_secs(60);

/// Whether peer connections use uTP (over UDP, on the listen port's number) besides TCP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UtpMode {
    /// TCP only.
    Off,
    /// Accept both; dial TCP first, then uTP if that fails (the default).
    #[default]
    On,
    /// Accept both; dial uTP first, then TCP if that fails.
    Prefer,
    /// uTP only: no TCP listener, no TCP dial.
    Only,
}

impl UtpMode {
    /// Whether a uTP endpoint runs.
    pub fn enabled(self) -> bool {
        self != UtpMode::Off
    }
}

impl std::str::FromStr for UtpMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(UtpMode::Off),
            "on" => Ok(UtpMode::On),
            "prefer" => Ok(UtpMode::Prefer),
            "only" => Ok(UtpMode::Only),
            other => Err(format!(
                "unknown uTP mode {other:?} (off, on, prefer or only)"
            )),
        }
    }
}

/// How the session's DHT node starts.
#[derive(Clone, Debug, Default)]
pub struct DhtSettings {
    /// Nodes to join through (`host:port`); the well-known public routers when empty.
    pub bootstrap: Vec<String>,
    /// Where the node id and good nodes are kept between runs (`None`: not kept).
    pub state_file: Option<PathBuf>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            listen: "0.0.0.0:6881".parse().expect("valid address"),
            bind: shoal_core::LocalBind::default(),
            max_upload_rate: None,
            max_download_rate: None,
            max_peers_per_torrent: 50,
            max_connections: 0,
            connect_timeout: Duration::from_secs(10),
            disk_threads: 1,
            read_threads: 4,
            dht: None,
            encryption: crate::EncryptionPolicy::Prefer,
            utp: UtpMode::On,
            sleep_after: None,
        }
    }
}

/// How to add a torrent.
#[derive(Clone, Debug)]
pub struct TorrentOptions {
    /// The folder that holds the torrent's top-level file or folder.
    pub save_path: PathBuf,
    /// Serve existing data read-only (the initial seeder); it must be complete.
    pub seed_only: bool,
    /// Peers to dial at once.
    pub peers: Vec<SocketAddr>,
    /// Where resume data lives.
    pub resume: ResumeLocation,
    /// Tracker tiers to announce to (the torrent's, plus any from the command line); empty for
    /// none.
    pub trackers: Vec<Vec<String>>,
    /// Announce timing and failover.
    pub tracker_config: shoal_tracker::TierConfig,
    /// Per file (torrent order, pad files included): false to skip it. `None` wants all.
    pub wanted_files: Option<Vec<bool>>,
    /// Super-seed (BEP 16) while the swarm lacks a piece; only a complete torrent does.
    pub super_seed: bool,
    /// The torrent's own upload cap, bytes per second (`None`: only the session's).
    pub upload_limit: Option<u64>,
    /// The torrent's own download cap, bytes per second (`None`: only the session's).
    pub download_limit: Option<u64>,
    /// Fetch pieces in order (streaming) instead of rarest first.
    pub sequential: bool,
}

/// What the session's tasks and torrents share.
pub(crate) struct Shared {
    peer_id: Id20,
    pub(crate) listen_addr: SocketAddr,
    /// The binding every socket follows.
    bind: shoal_core::LocalBind,
    config: SessionConfig,
    pub(crate) clock: Clock,
    rates: Arc<RateLimits>,
    pool: Arc<DiskPool>,
    /// Threads for upload reads (see [`SessionConfig::read_threads`]).
    read_pool: Arc<DiskPool>,
    torrents: Arc<Registry>,
    /// Announces the sleeping torrents.
    pub(crate) announcer: crate::announcer::Announcer,
    /// Each torrent's peer cap, as the peer budget is split (see [`Shared::rebalance`]).
    peer_cap: watch::Sender<usize>,
    /// The peer budget and the most peers per torrent now: `config`'s, until changed at run
    /// time ([`Session::set_peer_limits`]).
    peer_limits: Mutex<(usize, usize)>,
    /// The next torrent's flow in the fair sharing of the session's rate limits.
    next_flow: std::sync::atomic::AtomicU64,
    pub(crate) trackers: Arc<shoal_tracker::TrackerClient>,
    pub(crate) dht: Option<(shoal_dht::driver::Dht, watch::Receiver<bool>)>,
    /// Where the DHT state is saved (`None`: not saved).
    dht_state_file: Option<PathBuf>,
    /// The uTP endpoint, unless `config.utp` is off.
    utp: Option<Arc<UtpEndpoint>>,
}

/// How often the peer budget is split again (torrents also trigger it when they start).
const REBALANCE_INTERVAL: Duration = Duration::from_secs(2);

impl Shared {
    /// Splits the peer budget again among the active torrents; running torrents follow at
    /// once (a lower cap closes their newest connections over it).
    pub(crate) fn rebalance(&self) {
        let active = self.slots().iter().filter(|slot| slot.is_active()).count();
        let (global, per_torrent) = self.peer_limits();
        let cap = crate::budget::peer_cap(global, per_torrent, active);
        self.peer_cap.send_if_modified(|c| {
            let changed = *c != cap;
            *c = cap;
            changed
        });
    }
}

impl Shared {
    /// Every torrent's slot, once each (a copy of the list: the registry's lock is not held
    /// meanwhile). A hybrid's entry under its second hash is skipped: it is not counted twice.
    fn slots(&self) -> Vec<Arc<Slot>> {
        self.torrents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(hash, slot)| **hash == slot.spec.meta.info_hash)
            .map(|(_, slot)| slot.clone())
            .collect()
    }

    /// Puts the torrents that have been idle long enough to sleep.
    fn sleep_idle(self: &Arc<Self>) {
        let Some(after) = self.config.sleep_after else {
            return;
        };
        let now = std::time::Instant::now();
        for slot in self.slots() {
            slot.sleep_if_idle(self, after, now);
        }
    }

    /// What a torrent's actor needs, for one run on `storage`.
    pub(crate) fn context(
        &self,
        spec: &Spec,
        storage: Arc<Storage>,
        active: Arc<std::sync::atomic::AtomicBool>,
    ) -> TorrentContext {
        let carried = {
            let s = spec.status.borrow();
            (s.downloaded, s.uploaded)
        };
        TorrentContext {
            meta: spec.meta.clone(),
            storage,
            pool: self.pool.clone(),
            read_pool: self.read_pool.clone(),
            peer_id: self.peer_id,
            listen_addr: self.listen_addr,
            bind: self.bind,
            clock: self.clock,
            rates: crate::connection::LinkRates {
                session: self.rates.clone(),
                torrent: spec.limits.clone(),
                flow: spec.flow,
            },
            max_peers: self.peer_cap.subscribe(),
            active,
            sequential: spec.sequential.clone(),
            connect_timeout: self.config.connect_timeout,
            encryption: self.config.encryption,
            utp: self.config.utp,
            utp_endpoint: self.utp.clone(),
            seed_only: spec.opts.seed_only,
            super_seed: spec.opts.super_seed,
            wanted_files: spec.opts.wanted_files.clone(),
            carried,
        }
    }

    /// A torrent's trackers, for a new schedule announcing `info_hash` (one of its
    /// [`swarm_hashes`]).
    pub(crate) fn tracker_source(
        &self,
        spec: &Spec,
        info_hash: Id20,
    ) -> crate::tracker_source::TrackerSource {
        crate::tracker_source::TrackerSource {
            info_hash,
            peer_id: self.peer_id,
            listen: self.listen_addr,
            tiers: spec.opts.trackers.clone(),
            config: spec.opts.tracker_config.clone(),
        }
    }

    /// The peer budget (0: no global cap) and the most peers per torrent.
    fn peer_limits(&self) -> (usize, usize) {
        *self.peer_limits.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The session's torrents by info-hash, awake or asleep. A torrent leaves it when it stops, so
/// it can be added again.
type Registry = Mutex<HashMap<Id20, Arc<Slot>>>;

/// Removes a torrent's registration when dropped (an `add_torrent` that did not finish).
struct Unregister<'a> {
    registry: &'a Registry,
    info_hashes: Vec<Id20>,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        let mut r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        for h in &self.info_hashes {
            r.remove(h);
        }
    }
}

/// Removes `slot` from the registry under each of its hashes (only it: a torrent added again
/// since keeps its place).
fn unregister(registry: &Registry, info_hashes: &[Id20], slot: &Arc<Slot>) {
    let mut torrents = registry.lock().unwrap_or_else(|e| e.into_inner());
    for h in info_hashes {
        if torrents.get(h).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            torrents.remove(h);
        }
    }
}

/// The 20-byte hashes a torrent is known by: its swarm hash first, and for a hybrid also the
/// truncated SHA-256 of the v2 swarm (BEP 52; libtorrent announces and accepts both).
pub(crate) fn swarm_hashes(meta: &Metainfo) -> Vec<Id20> {
    let mut v = vec![meta.info_hash];
    if let Some(h) = meta.info_hash_v2 {
        if h.truncated() != meta.info_hash {
            v.push(h.truncated());
        }
    }
    v
}

/// How long an incoming peer of a torrent that is still checking its data is kept waiting (its
/// handshake is answered at once; what it sends queues in the socket).
const CHECKING_WAIT: Duration = Duration::from_secs(120);

/// How long an incoming peer asking for a torrent we do not (yet) have waits for it to be
/// added before it is refused; accepted connections are capped, so waiting ones are bounded.
const UNKNOWN_HASH_GRACE: Duration = Duration::from_secs(3);

/// A running client: accepts peers and runs torrents.
pub struct Session {
    shared: Arc<Shared>,
    /// Every task the session started for itself (the accept loop, the DHT's bootstrap and
    /// state saver): aborted when it is dropped, so nothing it started outlives it — the DHT
    /// node stops once its last handle is gone.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Incoming connections in their handshake (or waiting for a torrent that checks its data) at
/// once. The next `accept` waits for a free place, so a flood of connections queues in the
/// kernel's backlog instead of spawning tasks without bound.
const MAX_INCOMING_PENDING: usize = 256;
/// Back-off after a failed `accept` (out of descriptors, say): doubling from this...
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// ...up to this.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A torrent of the session, awake or asleep (see [`crate::slot`]): it reports the same
/// either way, and wakes when something needs its actor.
pub struct TorrentHandle {
    /// Status snapshots, updated several times a second while awake (a sleeping torrent's
    /// stays as it went to sleep: seeding, no peer, rates 0, its totals).
    pub status: crate::status_watch::StatusReceiver,
    slot: Arc<Slot>,
    shared: Arc<Shared>,
}

impl Session {
    /// Binds the listen socket and starts accepting peers.
    pub async fn bind(config: SessionConfig) -> Result<Session, EngineError> {
        let bind = if config.bind == shoal_core::LocalBind::default() {
            shoal_core::LocalBind::loose(config.listen.ip())
        } else {
            config.bind
        };
        let asked = bind.listen_addr(config.listen);
        let listener = TcpListener::bind(asked)
            .await
            .map_err(|source| EngineError::Listen {
                addr: asked,
                source,
            })?;
        let listen_addr = listener
            .local_addr()
            .map_err(|source| EngineError::Listen {
                addr: asked,
                source,
            })?;
        // With an address bound for each family, peers of the other family reach us on it
        // too, on the same port.
        let other_ip = match listen_addr.ip() {
            _ if !config.listen.ip().is_unspecified() => None,
            IpAddr::V4(_) => bind.v6.map(IpAddr::V6),
            IpAddr::V6(_) => bind.v4.map(IpAddr::V4),
        };
        let second = match other_ip {
            Some(ip) => {
                let addr = SocketAddr::new(ip, listen_addr.port());
                Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|source| EngineError::Listen { addr, source })?,
                )
            }
            None if config.bind == shoal_core::LocalBind::default()
                && config.listen.ip() == IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED) =>
            {
                // The default, `0.0.0.0`: IPv6 peers reach us too, on `[::]` at the same port
                // (IPv6-only, so the two sockets do not collide). A host without IPv6, or the
                // port taken on it, leaves IPv4 alone, as before.
                match dual_stack_listener(listen_addr.port()) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        debug!(port = listen_addr.port(), "no IPv6 listener: {e}");
                        None
                    }
                }
            }
            None => None,
        };
        let clock = Clock::new();
        // uTP on the TCP port's number (UDP), else on any port. With the DHT on too, the DHT
        // shares uTP's socket (one UDP port per address, as libtorrent): the endpoint's task
        // hands it every datagram that is not uTP.
        let mut dht_shared = None;
        let utp = if config.utp.enabled() {
            let (dht_tx, dht_rx) = match config.dht {
                Some(_) => {
                    let (tx, rx) = tokio::sync::mpsc::channel(DHT_SHARED_INBOX);
                    (Some(tx), Some(rx))
                }
                None => (None, None),
            };
            let bind_utp = |addr: SocketAddr| {
                UtpEndpoint::bind_with(addr, clock, SocketConfig::default(), dht_tx.clone())
            };
            let endpoint = bind_utp(listen_addr).or_else(|e| {
                debug!(%listen_addr, "uTP port taken ({e}); binding any port");
                bind_utp(SocketAddr::new(listen_addr.ip(), 0))
            });
            let endpoint = endpoint.map_err(|source| EngineError::Listen {
                addr: listen_addr,
                source,
            })?;
            if let Some(incoming) = dht_rx {
                dht_shared = Some(shoal_dht::driver::SharedSocket {
                    socket: endpoint.udp_socket(),
                    incoming,
                });
            }
            Some(Arc::new(endpoint))
        } else {
            None
        };
        // uTP only: no TCP accepted; the listen address is the uTP one.
        let (listener, second, listen_addr) = match &utp {
            Some(u) if config.utp == UtpMode::Only => (None, None, u.local_addr()),
            _ => (Some(listener), second, listen_addr),
        };
        let announce_ipv6 = std::iter::once(listen_addr)
            .chain(second.as_ref().and_then(|l| l.local_addr().ok()))
            .find_map(|a| match a.ip() {
                IpAddr::V6(ip) if announceable_ipv6(&ip) => Some(ip),
                _ => None,
            });
        let threads = match config.disk_threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let mut tasks = Vec::new();
        let (dht, dht_state_file) = match &config.dht {
            Some(settings) => {
                // With uTP on, the family of uTP's socket uses that socket (`dht_shared`).
                let dht_bind = dht_bind(listen_addr, config.listen, bind);
                let (dht, ready, file, dht_tasks) =
                    start_dht(dht_bind, settings, &mut dht_shared).await?;
                tasks.extend(dht_tasks);
                (Some((dht, ready)), file)
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            dht,
            dht_state_file,
            peer_id: new_peer_id(),
            listen_addr,
            bind,
            rates: Arc::new(RateLimits::new(
                config.max_upload_rate,
                config.max_download_rate,
                clock.now(),
            )),
            clock,
            // The queue is larger than the actors' in-flight limits, so submitting never blocks.
            pool: Arc::new(DiskPool::new(threads, 8192)),
            read_pool: Arc::new(DiskPool::named("shoal-read", config.read_threads, 8192)),
            trackers: Arc::new(shoal_tracker::TrackerClient::new(
                shoal_tracker::ClientConfig {
                    bind,
                    announce_ipv6,
                    ..Default::default()
                },
            )),
            peer_cap: watch::channel(crate::budget::peer_cap(
                config.max_connections,
                config.max_peers_per_torrent,
                0,
            ))
            .0,
            peer_limits: Mutex::new((config.max_connections, config.max_peers_per_torrent)),
            next_flow: std::sync::atomic::AtomicU64::new(1),
            config,
            torrents: Arc::new(Mutex::new(HashMap::new())),
            announcer: Default::default(),
            utp: utp.clone(),
        });
        // Always: the budget can be set at run time (`set_peer_limits`). Idle torrents are
        // put to sleep on the same round.
        {
            let weak = Arc::downgrade(&shared);
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(REBALANCE_INTERVAL).await;
                    match weak.upgrade() {
                        Some(shared) => {
                            shared.sleep_idle();
                            shared.rebalance();
                        }
                        None => return,
                    }
                }
            }));
        }
        if shared.config.sleep_after.is_some() {
            tasks.push(tokio::spawn(crate::announcer::run(shared.clone())));
        }
        if let Some(listener) = listener {
            tasks.push(tokio::spawn(accept_loop(listener, shared.clone())));
        }
        if let Some(utp) = utp {
            tasks.push(tokio::spawn(utp_accept_loop(utp, shared.clone())));
        }
        if let Some(second) = second {
            tasks.push(tokio::spawn(accept_loop(second, shared.clone())));
        }
        info!(%listen_addr, peer_id = %String::from_utf8_lossy(&shared.peer_id.0[..8]), "listening");
        Ok(Session { shared, tasks })
    }

    /// The bound listen address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listen_addr
    }

    /// The uTP endpoint's UDP address, unless uTP is off.
    pub fn utp_addr(&self) -> Option<SocketAddr> {
        self.shared.utp.as_ref().map(|u| u.local_addr())
    }

    /// This process's peer id.
    pub fn peer_id(&self) -> Id20 {
        self.shared.peer_id
    }

    /// The DHT node's UDP address, if the DHT runs (the IPv4 one when both families run).
    pub fn dht_addr(&self) -> Option<SocketAddr> {
        self.shared.dht.as_ref().map(|(d, _)| d.local_addr())
    }

    /// The UDP address of the IPv6 DHT (BEP 32), if it runs.
    pub fn dht_addr_v6(&self) -> Option<SocketAddr> {
        self.shared
            .dht
            .as_ref()
            .and_then(|(d, _)| d.local_addr_v6().filter(|_| d.local_addr_v4().is_some()))
    }

    /// The session's rate caps: (upload, download), bytes per second, `None` = unlimited.
    pub fn rate_limits(&self) -> (Option<u64>, Option<u64>) {
        self.shared.rates.get()
    }

    /// Changes the session's rate caps (bytes per second, `None` = unlimited); every
    /// connection follows at once.
    pub fn set_rate_limits(&self, upload: Option<u64>, download: Option<u64>) {
        self.shared
            .rates
            .set(upload, download, self.shared.clock.now());
    }

    /// The peer budget: most peers of all torrents together (0: no global cap).
    pub fn max_connections(&self) -> usize {
        self.shared.peer_limits().0
    }

    /// The most peers one torrent keeps (before the budget's split).
    pub fn max_peers_per_torrent(&self) -> usize {
        self.shared.peer_limits().1
    }

    /// Changes the peer budget (`max_connections`, 0: no global cap) and the most peers per
    /// torrent (at least 1), each when `Some`; the budget is split again at once and running
    /// torrents follow (a lower cap closes their newest connections over it).
    pub fn set_peer_limits(&self, max_connections: Option<usize>, per_torrent: Option<usize>) {
        {
            let mut limits = self
                .shared
                .peer_limits
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(n) = max_connections {
                limits.0 = n;
            }
            if let Some(n) = per_torrent {
                limits.1 = n.max(1);
            }
        }
        self.shared.rebalance();
    }

    /// Each torrent's current peer cap (its share of the peer budget).
    pub fn peer_cap(&self) -> usize {
        *self.shared.peer_cap.borrow()
    }

    /// Writes the DHT node's id and good nodes to its state file (if it has one).
    pub async fn save_dht_state(&self) {
        if let (Some((dht, _)), Some(path)) = (&self.shared.dht, &self.shared.dht_state_file) {
            save_dht_state(dht, path).await;
        }
    }

    /// Opens the torrent's storage, checks existing data (trusting resume data when it matches),
    /// and starts the torrent — asleep if it is complete with nothing to do and the session
    /// puts idle torrents to sleep ([`SessionConfig::sleep_after`]). `on_check` is called with
    /// (bytes checked, total) during a recheck.
    pub async fn add_torrent(
        &self,
        meta: impl Into<Arc<Metainfo>>,
        mut opts: TorrentOptions,
        on_check: impl Fn(u64, u64) + Send + 'static,
    ) -> Result<TorrentHandle, EngineError> {
        let meta: Arc<Metainfo> = meta.into();
        let hashes = swarm_hashes(&meta);
        let peers = std::mem::take(&mut opts.peers);
        let (status_tx, status_rx) = crate::status_watch::status_channel(TorrentStatus::default());
        let spec = Spec {
            limits: Arc::new(crate::connection::TorrentLimits::new(
                opts.upload_limit,
                opts.download_limit,
                self.shared.clock.now(),
            )),
            flow: self
                .shared
                .next_flow
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            sequential: Arc::new(std::sync::atomic::AtomicBool::new(opts.sequential)),
            status: status_tx,
            meta: meta.clone(),
            opts,
        };
        // Registered before the data check: incoming peers wait for it instead of being refused.
        let (slot, busy) = Slot::new(spec);
        {
            let mut torrents = self
                .shared
                .torrents
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(h) = hashes.iter().find(|h| torrents.contains_key(h)) {
                return Err(EngineError::Duplicate(*h));
            }
            // A hybrid's one slot under both hashes: peers of either swarm find (and wake) it.
            for h in &hashes {
                torrents.insert(*h, slot.clone());
            }
        }
        // Undone on every early return (and if this future is dropped mid-check).
        let registration = Unregister {
            registry: &self.shared.torrents,
            info_hashes: hashes.clone(),
        };
        let opts = &slot.spec.opts;
        let storage = open_and_check(meta.clone(), opts, on_check).await?;
        if opts.seed_only {
            let valid = storage.verified().count();
            let total = meta.info.num_pieces();
            if valid < total {
                return Err(EngineError::Incomplete {
                    path: opts.save_path.clone(),
                    valid,
                    total,
                });
            }
        }
        let asleep = if self.shared.config.sleep_after.is_some() && peers.is_empty() {
            let ctx = self.shared.context(
                &slot.spec,
                storage.clone(),
                Arc::new(std::sync::atomic::AtomicBool::new(false)),
            );
            let (status, complete) = ctx.resting_status()?;
            complete.then_some(status)
        } else {
            None
        };
        let life = match asleep {
            Some(status) => {
                slot.spec.status.send_replace(status);
                // Resume data written (after a recheck it was not yet), files closed: waking
                // hashes nothing.
                let closing = storage.clone();
                match tokio::task::spawn_blocking(move || closing.close()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!("writing resume data failed: {e}"),
                    Err(e) => warn!("writing resume data stopped: {e}"),
                }
                drop(storage);
                // A hybrid is announced under both hashes, as libtorrent does.
                for &hash in &hashes {
                    let trackers =
                        self.shared
                            .tracker_source(&slot.spec, hash)
                            .build()
                            .map(|set| crate::tracker_source::ParkedTrackers {
                                set,
                                reports: Vec::new(),
                            });
                    self.shared
                        .announcer
                        .park(&self.shared, &slot, hash, trackers, Duration::ZERO);
                }
                Life::Asleep
            }
            None => Life::Awake(crate::slot::start(&self.shared, &slot, storage, peers)?),
        };
        // From here peers are answered, the waiting ones first.
        busy.finish(life);
        std::mem::forget(registration);
        self.shared.rebalance();
        // The torrent's own DHT nodes (BEP 5 `nodes`) help join the network; BEP 27: private
        // torrents use their trackers only, never the DHT.
        if let (Some((dht, _)), false) = (&self.shared.dht, meta.info.private) {
            if !meta.nodes.is_empty() {
                let nodes: Vec<String> =
                    meta.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect();
                let dht = dht.clone();
                tokio::spawn(async move {
                    let addrs = resolve(&nodes).await;
                    let _ = dht.bootstrap(addrs).await;
                });
            }
        }
        Ok(TorrentHandle {
            status: status_rx,
            slot,
            shared: self.shared.clone(),
        })
    }

    /// How many torrents are asleep now.
    pub fn asleep(&self) -> usize {
        self.shared
            .slots()
            .iter()
            .filter(|slot| slot.is_asleep())
            .count()
    }
}

impl Session {
    /// Fetches a magnet link's metadata (BEP 9) from `peers` and returns the torrent, with the
    /// link's trackers. Peers that send metadata not matching the info-hash are dropped.
    pub async fn fetch_metadata(
        &self,
        magnet: &shoal_metainfo::Magnet,
        peers: Vec<SocketAddr>,
        deadline: Duration,
    ) -> Result<Metainfo, EngineError> {
        let (more_tx, more_rx) = mpsc::channel(256);
        let feeders = self.metadata_peer_sources(magnet, more_tx);
        let result = crate::metadata::fetch_metadata(
            magnet.info_hash,
            magnet.info_hash_v2,
            self.shared.peer_id,
            peers,
            more_rx,
            crate::metadata::DialSettings {
                bind: self.shared.bind,
                timeout: self.shared.config.connect_timeout,
                encryption: self.shared.config.encryption,
                utp: self.shared.config.utp,
                utp_endpoint: self.shared.utp.clone(),
            },
            deadline,
        )
        .await;
        for f in feeders {
            f.abort();
        }
        let ((info, layers), liars) = result.map_err(EngineError::Metadata)?;
        if !liars.is_empty() {
            warn!(?liars, "peers sent wrong metadata");
        }
        let trackers = magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
        let mut meta = Metainfo::from_info_bytes(&info, trackers).map_err(|e| {
            EngineError::Metadata(format!("the metadata is not a valid torrent: {e}"))
        })?;
        // BEP 52: the piece layers, proven against the file roots, complete the torrent.
        meta.piece_layers = layers.unwrap_or_default();
        // A hybrid link names the v2 info-hash too: the metadata must have it.
        if magnet.info_hash_v2.is_some() && meta.info_hash_v2 != magnet.info_hash_v2 {
            return Err(EngineError::Metadata(
                "the metadata does not match the link's v2 (btmh) info-hash".into(),
            ));
        }
        Ok(meta)
    }
}

impl Session {
    /// Peer sources for a magnet link before its metadata is known: the DHT (looked up every
    /// few seconds) and the link's `tr=` trackers (announced to as a leecher that has nothing).
    fn metadata_peer_sources(
        &self,
        magnet: &shoal_metainfo::Magnet,
        tx: mpsc::Sender<SocketAddr>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        let info_hash = magnet.info_hash;
        if let Some((dht, bootstrapped)) = &self.shared.dht {
            let (dht, mut bootstrapped, tx) = (dht.clone(), bootstrapped.clone(), tx.clone());
            tasks.push(tokio::spawn(async move {
                if bootstrapped.wait_for(|b| *b).await.is_err() {
                    return;
                }
                loop {
                    if let Ok(mut rx) = dht.get_peers(info_hash).await {
                        while let Some(peer) = rx.recv().await {
                            if tx.send(peer).await.is_err() {
                                return;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }));
        }
        if !magnet.trackers.is_empty() {
            let tiers: Vec<Vec<String>> = magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
            let mut set = shoal_tracker::TrackerSet::new(
                info_hash,
                self.shared.peer_id,
                self.shared.listen_addr.port(),
                &tiers,
                shoal_tracker::TierConfig::default(),
                rand::random(),
            );
            let client = self.shared.trackers.clone();
            let clock = self.shared.clock;
            tasks.push(tokio::spawn(async move {
                // Announce until the fetch ends (this task is aborted then); `left` is unknown,
                // so say 1 byte, which marks us a leecher.
                let stats = shoal_tracker::Stats {
                    uploaded: 0,
                    downloaded: 0,
                    left: 1,
                };
                while !set.is_done() {
                    while let Some(job) = set.poll_announce(clock.now()) {
                        match client.run_job(&job, stats).await {
                            Ok(reply) => {
                                for p in &reply.peers {
                                    let _ = tx.send(*p).await;
                                }
                                set.on_response(&job, &reply, clock.now());
                            }
                            Err(e) => set.on_failure(&job, &e, clock.now()),
                        }
                    }
                    let wait = set
                        .next_deadline()
                        .map_or(Duration::from_secs(30), |t| t - clock.now());
                    tokio::time::sleep(wait.min(Duration::from_secs(30))).await;
                }
            }));
        }
        tasks
    }
}

impl TorrentHandle {
    /// The torrent's own rate caps: (upload, download), bytes per second, `None` = only the
    /// session's.
    pub fn limits(&self) -> (Option<u64>, Option<u64>) {
        self.slot.spec.limits.get()
    }

    /// Changes the torrent's own rate caps (bytes per second, `None` = only the session's);
    /// its connections follow at once.
    pub fn set_limits(&self, upload: Option<u64>, download: Option<u64>) {
        self.slot
            .spec
            .limits
            .set(upload, download, self.shared.clock.now());
    }

    /// Fetches new pieces in order (`true`, for streaming) or rarest first, from now on
    /// (pieces already started are finished as they are).
    pub fn set_sequential(&self, sequential: bool) {
        self.slot
            .spec
            .sequential
            .store(sequential, std::sync::atomic::Ordering::Relaxed);
        self.slot.nudge_pick_mode();
    }

    /// Whether new pieces are fetched in order.
    pub fn is_sequential(&self) -> bool {
        self.slot
            .spec
            .sequential
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the torrent is asleep now (no task, no open file; see [`crate::slot`]).
    pub fn is_asleep(&self) -> bool {
        self.slot.is_asleep()
    }

    /// Gives the torrent more peer addresses to dial (waking it if it sleeps).
    pub async fn add_peers(&self, peers: Vec<SocketAddr>) {
        if let Some(events) = self.slot.events(&self.shared, CHECKING_WAIT).await {
            let _ = events.send(Event::AddPeers(peers)).await;
        }
    }

    /// Stops the torrent: waits for queued disk writes, writes resume data, closes connections
    /// (a sleeping torrent only tells its trackers).
    pub async fn shutdown(self) -> TorrentStatus {
        self.slot.shut_down(&self.shared).await;
        unregister(
            &self.shared.torrents,
            &swarm_hashes(&self.slot.spec.meta),
            &self.slot,
        );
        self.shared.rebalance();
        let status = self.status.borrow().clone();
        status
    }
}

/// DHT datagrams the uTP endpoint may queue for the DHT sharing its socket; more are dropped
/// (the DHT's own rate limits keep far below this).
const DHT_SHARED_INBOX: usize = 256;

/// How often the DHT state is written while running (and once more at exit).
const DHT_SAVE_INTERVAL: Duration = Duration::from_secs(300);

/// Writes the DHT node's id and good nodes to `path` atomically (temp file, rename).
async fn save_dht_state(dht: &shoal_dht::driver::Dht, path: &std::path::Path) {
    match dht.save_state().await {
        Ok(state) => {
            let bytes = state.encode();
            let path = path.to_path_buf();
            // File I/O stays off the async workers.
            let write = tokio::task::spawn_blocking(move || {
                shoal_storage::write_atomic(&path, &bytes)
                    .map_err(|e| format!("cannot save DHT state: {e}"))
            })
            .await;
            if let Ok(Err(e)) = write {
                warn!("{e}");
            }
        }
        Err(e) => warn!("cannot save DHT state: {e}"),
    }
}

/// Resolves `host:port` strings (names too, and `[v6]:port`), keeping addresses of both
/// families: the DHT node of each family bootstraps from its own (BEP 32). Names that do not
/// resolve are logged and skipped.
pub async fn resolve(hosts: &[String]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for h in hosts {
        match tokio::net::lookup_host(h.as_str()).await {
            Ok(addrs) => out.extend(addrs),
            Err(e) => warn!("DHT bootstrap node {h}: {e}"),
        }
    }
    out
}

/// Whether `ip`, an address we listen on, is worth telling trackers about as BEP 7 `ipv6=`:
/// global unicast (2000::/3) or loopback (local test swarms). Link-local and unique-local
/// addresses mean nothing to a tracker elsewhere; the unspecified `[::]` is no address at all.
fn announceable_ipv6(ip: &std::net::Ipv6Addr) -> bool {
    ip.is_loopback() || (ip.segments()[0] & 0xe000) == 0x2000
}

/// Where the DHT's sockets go (BEP 32: a node per family), following the peer listener:
/// with `--bind`, each bound family on its address and no other family at all (fails closed);
/// with a specific listen address, that address alone; with an unspecified one (the default),
/// IPv4 on `0.0.0.0` and IPv6 on `[::]` at the listen port, IPv6 only where the host has it.
fn dht_bind(
    listen_addr: SocketAddr,
    asked: SocketAddr,
    bind: shoal_core::LocalBind,
) -> shoal_dht::driver::DhtBind {
    use shoal_dht::driver::DhtBind;
    let port = listen_addr.port();
    if bind.strict {
        return DhtBind {
            v4: bind.v4.map(|ip| SocketAddr::new(IpAddr::V4(ip), port)),
            v6: bind.v6.map(|ip| SocketAddr::new(IpAddr::V6(ip), port)),
            v6_optional: false,
        };
    }
    if !asked.ip().is_unspecified() {
        return DhtBind::single(listen_addr);
    }
    let any = DhtBind::dual_for(SocketAddr::new(asked.ip(), port));
    DhtBind {
        v4: bind
            .v4
            .map(|ip| SocketAddr::new(IpAddr::V4(ip), port))
            .or(any.v4),
        v6: bind
            .v6
            .map(|ip| SocketAddr::new(IpAddr::V6(ip), port))
            .or(any.v6),
        v6_optional: bind.v6.is_none(),
    }
}

/// Binds the DHT's sockets at `bind` (UDP, the listen port), or at free ports if that one is
/// taken, loads its saved state, and joins the network in the background.
async fn start_dht(
    bind: shoal_dht::driver::DhtBind,
    settings: &DhtSettings,
    shared: &mut Option<shoal_dht::driver::SharedSocket>,
) -> Result<DhtStarted, EngineError> {
    use shoal_dht::driver::Dht;
    use shoal_dht::DhtConfig;
    // File I/O stays off the async workers.
    let path = settings.state_file.clone();
    let (state, state_file) = tokio::task::spawn_blocking(move || load_dht_state(path.as_deref()))
        .await
        .unwrap_or((None, None));
    let saved_nodes: Vec<SocketAddr> = state
        .as_ref()
        .map(|s| s.nodes.iter().map(|n| n.addr).collect())
        .unwrap_or_default();
    let primary = bind
        .v4
        .or(bind.v6)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let config = DhtConfig::for_addr(&primary);
    let dht = match Dht::bind_dual_shared(bind, config.clone(), state.clone(), shared).await {
        Ok(d) => d,
        Err(_) => {
            let any_port = shoal_dht::driver::DhtBind {
                v4: bind.v4.map(|a| SocketAddr::new(a.ip(), 0)),
                v6: bind.v6.map(|a| SocketAddr::new(a.ip(), 0)),
                ..bind
            };
            Dht::bind_dual_shared(any_port, config, state, shared)
                .await
                .map_err(|e| EngineError::Listen {
                    addr: SocketAddr::new(primary.ip(), 0),
                    source: std::io::Error::other(format!("DHT: {e}")),
                })?
        }
    };
    let (tx, rx) = watch::channel(false);
    let bootstrap = if settings.bootstrap.is_empty() {
        shoal_dht::DEFAULT_BOOTSTRAP
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        settings.bootstrap.clone()
    };
    let mut tasks = Vec::new();
    if let Some(path) = state_file.clone() {
        let dht = dht.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(DHT_SAVE_INTERVAL).await;
                save_dht_state(&dht, &path).await;
            }
        }));
    }
    let handle = dht.clone();
    tasks.push(tokio::spawn(async move {
        let mut addrs = resolve(&bootstrap).await;
        addrs.extend(saved_nodes);
        match handle.bootstrap(addrs).await {
            Ok(n) => info!(nodes = n, "DHT bootstrapped"),
            Err(e) => warn!("DHT bootstrap failed: {e}"),
        }
        let _ = tx.send(true);
    }));
    info!(addr = ?dht.local_addr_v4(), addr6 = ?dht.local_addr_v6(), "DHT node running");
    Ok((dht, rx, state_file, tasks))
}

/// A started DHT: its handle, a flag set once bootstrapped, where its state is saved, and the
/// tasks started for it.
type DhtStarted = (
    shoal_dht::driver::Dht,
    watch::Receiver<bool>,
    Option<PathBuf>,
    Vec<tokio::task::JoinHandle<()>>,
);

/// Reads the DHT state file. Returns the state, and the path to save to: `None` when the file
/// holds something that is not DHT state (it may be a user's file given by mistake, and is never
/// overwritten).
fn load_dht_state(
    path: Option<&std::path::Path>,
) -> (Option<shoal_dht::DhtState>, Option<PathBuf>) {
    let Some(path) = path else {
        return (None, None);
    };
    match std::fs::read(path) {
        Ok(bytes) if bytes.is_empty() => (None, Some(path.to_path_buf())),
        Ok(bytes) => match shoal_dht::DhtState::decode(&bytes) {
            Ok(s) => (Some(s), Some(path.to_path_buf())),
            Err(e) => {
                warn!(
                    "{} is not a DHT state file ({e}); it is left alone and the DHT state is not saved",
                    path.display()
                );
                (None, None)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, Some(path.to_path_buf())),
        Err(e) => {
            warn!("cannot read the DHT state {}: {e}", path.display());
            (None, None)
        }
    }
}

pub(crate) async fn open_and_check(
    meta: Arc<Metainfo>,
    opts: &TorrentOptions,
    on_check: impl Fn(u64, u64) + Send + 'static,
) -> Result<Arc<Storage>, EngineError> {
    let mut so = StorageOptions::new(&opts.save_path);
    so.mode = if opts.seed_only {
        Mode::ReadOnly
    } else {
        Mode::ReadWrite
    };
    so.resume = opts.resume.clone();
    so.wanted_files = opts.wanted_files.clone();
    so.piece_layers = meta.piece_layers.clone();
    let total = meta.info.total_length;
    let storage = tokio::task::spawn_blocking(move || -> Result<Storage, EngineError> {
        let (storage, startup) = Storage::open(&meta.info, meta.info_hash, so)?;
        match startup {
            Startup::Fresh | Startup::Resumed { .. } => {}
            Startup::NeedsRecheck { warning } => {
                if let Some(w) = warning {
                    warn!("resume data ignored: {w}");
                }
                let progress = Arc::new(RecheckProgress::default());
                let watcher = {
                    let progress = progress.clone();
                    std::thread::spawn(move || loop {
                        let done = progress.bytes.load(std::sync::atomic::Ordering::Relaxed);
                        on_check(done, total);
                        if done >= total
                            || progress.cancel.load(std::sync::atomic::Ordering::Relaxed)
                        {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    })
                };
                let report = storage.recheck(&RecheckOptions::default(), &progress);
                progress
                    .cancel
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                let _ = watcher.join();
                report?;
            }
        }
        Ok(storage)
    })
    .await
    .map_err(|e| EngineError::Stopped(format!("storage check panicked: {e}")))??;
    Ok(Arc::new(storage))
}

/// An IPv6-only listener on `[::]:port`, beside the IPv4 one on the same port.
fn dual_stack_listener(port: u16) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(true)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    let addr = SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), port);
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Accepts uTP connections into the same path as TCP's ([`incoming`]).
async fn utp_accept_loop(endpoint: Arc<UtpEndpoint>, shared: Arc<Shared>) {
    let places = Arc::new(tokio::sync::Semaphore::new(MAX_INCOMING_PENDING));
    loop {
        let Ok(place) = places.clone().acquire_owned().await else {
            return;
        };
        let (stream, addr) = match endpoint.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Only when the endpoint is gone.
                debug!("uTP accept failed: {e}; no more uTP peers accepted");
                return;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = incoming(Transport::Utp(stream), addr, &shared).await {
                debug!(%addr, "incoming uTP connection dropped: {e}");
            }
            drop(place);
        });
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let places = Arc::new(tokio::sync::Semaphore::new(MAX_INCOMING_PENDING));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        // A place first: at the cap, connections wait in the kernel's backlog.
        let Ok(place) = places.clone().acquire_owned().await else {
            return;
        };
        let (stream, addr) = match listener.accept().await {
            Ok(x) => {
                backoff = ACCEPT_BACKOFF_MIN;
                x
            }
            Err(e) => {
                if backoff == ACCEPT_BACKOFF_MIN {
                    warn!("accept failed: {e}; backing off");
                } else {
                    debug!("accept failed again: {e}");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let r = match stream.set_nodelay(true) {
                Ok(()) => incoming(Transport::Tcp(stream), addr, &shared).await,
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                debug!(%addr, "incoming connection dropped: {e}");
            }
            drop(place);
        });
    }
}

/// One accepted connection, TCP or uTP: handshakes, then to its torrent's actor.
async fn incoming(
    transport: Transport,
    addr: SocketAddr,
    shared: &Arc<Shared>,
) -> std::io::Result<()> {
    // An MSE peer names its torrent by a hash of the info-hash: the receiver tries each.
    let info_hashes = || {
        shared
            .torrents
            .lock()
            .map(|t| t.keys().copied().collect())
            .unwrap_or_default()
    };
    let (mut stream, theirs, leftover) = accept(
        transport,
        shared.config.connect_timeout,
        shared.config.encryption,
        info_hashes,
    )
    .await?;
    let lookup = || {
        shared
            .torrents
            .lock()
            .ok()
            .and_then(|t| t.get(&theirs.info_hash).cloned())
    };
    // A torrent may be about to be added (the listener is up before the command registers its
    // torrent): an unknown info-hash gets a short grace before the connection is refused.
    let grace_end = tokio::time::Instant::now() + UNKNOWN_HASH_GRACE;
    let mut registered = lookup();
    while registered.is_none() && tokio::time::Instant::now() < grace_end {
        tokio::time::sleep(Duration::from_millis(50)).await;
        registered = lookup();
    }
    let Some(slot) = registered else {
        return Err(std::io::Error::other("unknown info-hash"));
    };
    // The handshake's DHT bit is cleared for private torrents by the actor's dialer; for
    // incoming connections we answer with the full capability set (DHT only matters if used).
    // The peer's hash is echoed: a hybrid answers v1 and v2 peers each in their swarm's hash.
    let ours = Handshake::new(theirs.info_hash, shared.peer_id);
    // BEP 52: a torrent with merkle trees says it speaks v2.
    let ours = if slot.spec.meta.version().has_v2() {
        ours.with_v2()
    } else {
        ours
    };
    stream.write_all(&mut ours.encode()).await?;
    // A torrent still checking its data gets the peer once it can serve (as libtorrent keeps
    // such peers), a sleeping one once it is awake; the handshake is answered already, so the
    // peer does not time out on it.
    let mut event = Event::Connected(Box::new(crate::torrent::Connected {
        addr,
        outgoing: false,
        stream,
        handshake: theirs,
        leftover,
    }));
    // Twice at most: a torrent that went to sleep just as the peer came (its actor's queue
    // closed with the peer unread) is woken for it.
    for _ in 0..2 {
        let Some(actor) = slot.events(shared, CHECKING_WAIT).await else {
            return Err(std::io::Error::other(
                "the torrent stopped or is still checking",
            ));
        };
        match actor.send(event).await {
            Ok(()) => return Ok(()),
            Err(mpsc::error::SendError(back)) => event = back,
        }
    }
    Err(std::io::Error::other("the torrent stopped"))
}

#[cfg(test)]
mod dht_bind_tests {
    use super::*;
    use shoal_core::LocalBind;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn which_ipv6_addresses_are_announced() {
        let yes = ["::1", "2001:db8::1", "2a00::5"];
        let no = ["::", "fe80::1", "fd00::1", "ff02::1", "::ffff:1.2.3.4"];
        for ip in yes {
            assert!(announceable_ipv6(&ip.parse().unwrap()), "{ip}");
        }
        for ip in no {
            assert!(!announceable_ipv6(&ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn the_dht_binds_follow_the_listener_and_fail_closed() {
        // Default: both families at the listen port, IPv6 where the host has it.
        let b = dht_bind(
            addr("0.0.0.0:6881"),
            addr("0.0.0.0:6881"),
            LocalBind::default(),
        );
        assert_eq!(b.v4, Some(addr("0.0.0.0:6881")));
        assert_eq!(b.v6, Some(addr("[::]:6881")));
        assert!(b.v6_optional);
        // A specific listen address: that one only.
        let b = dht_bind(
            addr("[::1]:7000"),
            addr("[::1]:0"),
            LocalBind::loose("::1".parse().unwrap()),
        );
        assert_eq!((b.v4, b.v6), (None, Some(addr("[::1]:7000"))));
        // --bind of an IPv4 address only: no IPv6 socket at all.
        let strict = LocalBind::strict(&["127.0.0.5".parse().unwrap()]).unwrap();
        let b = dht_bind(addr("127.0.0.5:7001"), addr("0.0.0.0:0"), strict);
        assert_eq!((b.v4, b.v6), (Some(addr("127.0.0.5:7001")), None));
        // --bind of both: each on its address, neither optional.
        let both =
            LocalBind::strict(&["127.0.0.5".parse().unwrap(), "::1".parse().unwrap()]).unwrap();
        let b = dht_bind(addr("127.0.0.5:7002"), addr("0.0.0.0:0"), both);
        assert_eq!(
            (b.v4, b.v6, b.v6_optional),
            (
                Some(addr("127.0.0.5:7002")),
                Some(addr("[::1]:7002")),
                false
            )
        );
    }
}
