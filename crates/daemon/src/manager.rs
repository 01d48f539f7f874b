//! The daemon's torrents: one engine session, many torrents, each started, stopped, removed and
//! persisted on request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use shoal_core::Id20;
use shoal_engine::{ResumeLocation, Session, TorrentHandle, TorrentOptions, TorrentStatus};
use shoal_metainfo::{Magnet, Metainfo};
use tokio::sync::broadcast;

use crate::store::{EntryRecord, Store};
use crate::DaemonError;

/// How long a magnet's metadata is looked for before the torrent shows an error.
const METADATA_DEADLINE: Duration = Duration::from_secs(600);

/// Where a torrent is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// A magnet link whose metadata is being fetched.
    Metadata,
    /// Its data is being checked.
    Checking,
    /// Downloading.
    Downloading,
    /// Complete and serving.
    Seeding,
    /// Stopped by the user (or by a seeding limit).
    Paused,
    /// Waiting for a place (`max_active_downloads`, `max_active_seeds`).
    Queued,
    /// Stopped by an error (see `error`).
    Error,
}

/// One torrent as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TorrentView {
    /// The info-hash, hex: the API's id.
    pub info_hash: String,
    /// The Transmission RPC's id.
    pub id: u64,
    /// Its name (the magnet's `dn` until the metadata is in).
    pub name: String,
    /// Where it is.
    pub state: State,
    /// The folder that holds its file or folder.
    pub save_path: PathBuf,
    /// Bytes of verified wanted pieces.
    pub downloaded: u64,
    /// Bytes of all wanted pieces (0 until the metadata is in).
    pub total: u64,
    /// Payload sent since it started.
    pub uploaded: u64,
    /// Payload received since it started (waste included).
    pub received: u64,
    /// 0 to 1.
    pub progress: f64,
    /// Bytes per second.
    pub down_rate: u64,
    /// Bytes per second.
    pub up_rate: u64,
    /// Connected peers.
    pub peers: usize,
    /// Connected peers over TCP.
    pub peers_tcp: usize,
    /// Connected peers over uTP.
    pub peers_utp: usize,
    /// Each connected peer: its address, transport and encryption.
    pub peer_list: Vec<PeerView>,
    /// Verified pieces.
    pub pieces: u32,
    /// All pieces.
    pub pieces_total: u32,
    /// Pieces that failed their hash check.
    pub hash_failures: u32,
    /// Added (Unix seconds).
    pub added: u64,
    /// Why it stopped, in `error` state.
    pub error: Option<String>,
    /// Its own download cap, bytes per second (`null`: only the session's).
    pub download_limit: Option<u64>,
    /// Its own upload cap, bytes per second (`null`: only the session's).
    pub upload_limit: Option<u64>,
    /// Pieces fetched in order (streaming) instead of rarest first.
    pub sequential: bool,
    /// Asleep: complete and idle, so it runs no task and holds no open file; an incoming peer
    /// (or anything that needs it) wakes it. It shows as seeding all the same.
    pub asleep: bool,
}

/// One connected peer of a [`TorrentView`].
#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    /// Its address.
    pub addr: std::net::SocketAddr,
    /// `tcp` or `utp`.
    pub transport: &'static str,
    /// `plaintext`, `mse-plaintext` or `rc4`.
    pub encryption: &'static str,
}

/// A state change, for the event stream.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DaemonEvent {
    /// A torrent was added.
    Added {
        /// Its view.
        torrent: TorrentView,
    },
    /// A torrent changed state.
    State {
        /// Its view.
        torrent: TorrentView,
    },
    /// A torrent's download completed.
    Complete {
        /// Its view.
        torrent: TorrentView,
    },
    /// A torrent was removed.
    Removed {
        /// Its info-hash.
        info_hash: String,
    },
}

/// How to add a torrent.
#[derive(Clone, Debug)]
pub enum AddSource {
    /// The bytes of a .torrent file.
    Torrent(Vec<u8>),
    /// A magnet link.
    Magnet(String),
}

/// What a running torrent has.
enum Run {
    /// Not running.
    Stopped,
    /// Starting (metadata, data check): the task that will put its handle in place.
    Starting(tokio::task::JoinHandle<()>),
    /// Running.
    Active(TorrentHandle),
}

/// Events kept for a slow subscriber of the event stream. A subscriber further behind misses
/// events (clients re-list; the web page does every few seconds). Each slot holds a whole
/// [`DaemonEvent`] and the ring is allocated up front: 1,024 slots were 296 KiB of a
/// 1,000-torrent daemon's 6 MiB, and kept up to 1,024 torrent views alive once a subscriber
/// had seen them.
const EVENT_BACKLOG: usize = 128;

/// How often the heap is given back at the latest (see [`Manager::trim_due`]).
const TRIM_EVERY: Duration = Duration::from_secs(30);

struct Entry {
    record: EntryRecord,
    meta: Option<Arc<Metainfo>>,
    name: String,
    state: State,
    error: Option<String>,
    running: Run,
    /// The last status (kept when stopped, for the list).
    status: Option<shoal_engine::status_watch::StatusReceiver>,
    last: TorrentStatus,
    /// Upload counter and when it last moved (the idle limit).
    last_upload: (u64, std::time::Instant),
    /// Its files are being moved: it must not start meanwhile.
    moving: bool,
    /// Its current error was told to the event stream.
    error_told: bool,
}

impl Entry {
    fn view(&self) -> TorrentView {
        let s = self
            .status
            .as_ref()
            .map(|r| r.borrow().clone())
            .unwrap_or_else(|| self.last.clone());
        let state = match (self.state, &s.state) {
            (State::Downloading | State::Seeding, shoal_engine::TorrentState::Seeding) => {
                State::Seeding
            }
            (State::Downloading | State::Seeding, shoal_engine::TorrentState::Error(_)) => {
                State::Error
            }
            (other, _) => other,
        };
        let error = match &s.state {
            shoal_engine::TorrentState::Error(e) => Some(e.clone()),
            _ => self.error.clone(),
        };
        TorrentView {
            info_hash: self.record.info_hash.clone(),
            id: self.record.id,
            name: self.name.clone(),
            state,
            save_path: self.record.save_path.clone(),
            downloaded: s.verified_bytes,
            total: s.total_bytes,
            uploaded: s.uploaded,
            received: s.downloaded,
            progress: if s.total_bytes > 0 {
                s.verified_bytes as f64 / s.total_bytes as f64
            } else {
                0.0
            },
            down_rate: s.down_rate.max(0.0) as u64,
            up_rate: s.up_rate.max(0.0) as u64,
            peers: s.peers,
            peers_tcp: s.transport_counts().0,
            peers_utp: s.transport_counts().1,
            peer_list: s
                .peer_encryption
                .iter()
                .map(|(addr, e, transport)| PeerView {
                    addr: *addr,
                    transport,
                    encryption: e.as_str(),
                })
                .collect(),
            pieces: s.pieces_have,
            pieces_total: s.pieces_total,
            hash_failures: s.hash_failures,
            added: self.record.added,
            error,
            download_limit: self.record.download_limit,
            upload_limit: self.record.upload_limit,
            sequential: self.record.sequential,
            asleep: matches!(&self.running, Run::Active(h) if h.is_asleep()),
        }
    }
}

/// Session-wide settings the manager applies to every torrent; the queue and seeding limits
/// (and the download folder) can change at run time ([`Manager::update_session`]).
#[derive(Clone, Debug, Default)]
pub struct ManagerConfig {
    /// Where new torrents are saved unless the request says otherwise.
    pub download_dir: PathBuf,
    /// Torrents downloading at once (0: no limit); the rest wait queued, oldest first.
    pub max_active_downloads: usize,
    /// Torrents seeding at once (0: no limit); the rest wait queued.
    pub max_active_seeds: usize,
    /// A seed stops once it uploaded this many times its size in a run (0: never).
    pub seed_ratio_limit: f64,
    /// A seed stops after this many minutes without uploading (0: never).
    pub seed_idle_minutes: u64,
    /// Torrents complete when they start super-seed (BEP 16) until the swarm has every piece.
    pub super_seed: bool,
}

/// A change to the session's settings (`PATCH /api/v1/session`, Transmission `session-set`):
/// each key that is present changes; rates in bytes per second, `null` or 0 for no cap.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionPatch {
    /// The session's download cap.
    #[serde(default, deserialize_with = "present")]
    pub max_download_rate: Option<Option<u64>>,
    /// The session's upload cap.
    #[serde(default, deserialize_with = "present")]
    pub max_upload_rate: Option<Option<u64>>,
    /// Where new torrents go (absolute).
    pub download_dir: Option<PathBuf>,
    /// Torrents downloading at once (0: no limit).
    pub max_active_downloads: Option<usize>,
    /// Torrents seeding at once (0: no limit).
    pub max_active_seeds: Option<usize>,
    /// A seed stops once it uploaded this many times its size (0: never).
    pub seed_ratio_limit: Option<f64>,
    /// A seed stops after this many minutes without uploading (0: never).
    pub seed_idle_minutes: Option<u64>,
    /// The peer budget: most peers of all torrents together (0: no global cap).
    pub max_connections: Option<usize>,
    /// Most peers of one torrent (at least 1).
    pub max_peers_per_torrent: Option<usize>,
}

/// A change to one torrent's options (`PATCH /api/v1/torrents/{id}`, Transmission
/// `torrent-set`): each key that is present changes.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TorrentPatch {
    /// Its own download cap, bytes per second (`null` or 0: only the session's).
    #[serde(default, deserialize_with = "present")]
    pub download_limit: Option<Option<u64>>,
    /// Its own upload cap, bytes per second (`null` or 0: only the session's).
    #[serde(default, deserialize_with = "present")]
    pub upload_limit: Option<Option<u64>>,
    /// Fetch pieces in order.
    pub sequential: Option<bool>,
}

/// A key that is present, even as `null` (`Some(None)`), as opposed to a missing one (`None`).
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// 0 is no cap, as `None`.
fn cap(rate: Option<u64>) -> Option<u64> {
    rate.filter(|&r| r > 0)
}

/// The session's settings as the API shows them.
#[derive(Clone, Debug, Serialize)]
pub struct SessionSettings {
    /// The session's download cap, bytes per second (`null`: none).
    pub max_download_rate: Option<u64>,
    /// The session's upload cap, bytes per second (`null`: none).
    pub max_upload_rate: Option<u64>,
    /// Where new torrents go.
    pub download_dir: PathBuf,
    /// Torrents downloading at once (0: no limit).
    pub max_active_downloads: usize,
    /// Torrents seeding at once (0: no limit).
    pub max_active_seeds: usize,
    /// A seed stops once it uploaded this many times its size (0: never).
    pub seed_ratio_limit: f64,
    /// A seed stops after this many minutes without uploading (0: never).
    pub seed_idle_minutes: u64,
    /// The peer budget: most peers of all torrents together (0: no global cap).
    pub max_connections: usize,
    /// Most peers of one torrent, before the budget's split.
    pub max_peers_per_torrent: usize,
    /// Each torrent's current peer cap (its share of the session's peer budget).
    pub peers_per_torrent: usize,
}

/// The daemon's torrents.
pub struct Manager {
    session: Session,
    store: Store,
    config: Mutex<ManagerConfig>,
    entries: Mutex<BTreeMap<Id20, Entry>>,
    events: broadcast::Sender<DaemonEvent>,
    /// Wakes the scheduler (a torrent added, started, stopped, completed).
    kick: tokio::sync::Notify,
    /// Torrents starting and awake at the scheduler's last round.
    last_burst: Mutex<(usize, usize)>,
    /// When the heap was last given back (see [`crate::memory`]).
    last_trim: Mutex<std::time::Instant>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Manager {
    /// A manager over `session`, with its state in `store`. Call [`Manager::restore`] next.
    pub fn new(session: Session, store: Store, config: ManagerConfig) -> Arc<Manager> {
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        Arc::new(Manager {
            session,
            store,
            config: Mutex::new(config),
            entries: Mutex::new(BTreeMap::new()),
            events,
            kick: tokio::sync::Notify::new(),
            last_burst: Mutex::new((0, 0)),
            last_trim: Mutex::new(std::time::Instant::now()),
        })
    }

    /// The engine session.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The state store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn config(&self) -> ManagerConfig {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Where torrents go by default.
    pub fn download_dir(&self) -> PathBuf {
        self.config().download_dir
    }

    /// The session's settings now.
    pub fn session_settings(&self) -> SessionSettings {
        let cfg = self.config();
        let (up, down) = self.session.rate_limits();
        SessionSettings {
            max_download_rate: down,
            max_upload_rate: up,
            download_dir: cfg.download_dir,
            max_active_downloads: cfg.max_active_downloads,
            max_active_seeds: cfg.max_active_seeds,
            seed_ratio_limit: cfg.seed_ratio_limit,
            seed_idle_minutes: cfg.seed_idle_minutes,
            max_connections: self.session.max_connections(),
            max_peers_per_torrent: self.session.max_peers_per_torrent(),
            peers_per_torrent: self.session.peer_cap(),
        }
    }

    /// Changes the session's settings at once (rate caps for every connection, the peer budget
    /// split again at once, the queue and seeding limits from the scheduler's next round) and saves the changed keys in the
    /// state folder's `session.json`, where they win over the config file at the next start.
    /// Nothing changes if a value is invalid.
    pub fn update_session(&self, patch: SessionPatch) -> Result<SessionSettings, DaemonError> {
        if let Some(dir) = &patch.download_dir {
            if !dir.is_absolute() {
                return Err(DaemonError::BadRequest(format!(
                    "the download folder must be absolute: {}",
                    dir.display()
                )));
            }
        }
        if let Some(r) = patch.seed_ratio_limit {
            if !r.is_finite() || r < 0.0 {
                return Err(DaemonError::BadRequest(format!(
                    "seed_ratio_limit must be 0 (never) or more: {r}"
                )));
            }
        }
        if patch.max_peers_per_torrent == Some(0) {
            return Err(DaemonError::BadRequest(
                "max_peers_per_torrent must be 1 or more".into(),
            ));
        }
        let mut saved = self.store.load_session();
        let rate = |r: Option<u64>| Some(cap(r).unwrap_or(0).to_string());
        if patch.max_download_rate.is_some() || patch.max_upload_rate.is_some() {
            let (up, down) = self.session.rate_limits();
            let up = patch.max_upload_rate.map_or(up, cap);
            let down = patch.max_download_rate.map_or(down, cap);
            self.session.set_rate_limits(up, down);
            if patch.max_upload_rate.is_some() {
                saved.max_upload_rate = rate(up);
            }
            if patch.max_download_rate.is_some() {
                saved.max_download_rate = rate(down);
            }
        }
        if patch.max_connections.is_some() || patch.max_peers_per_torrent.is_some() {
            self.session
                .set_peer_limits(patch.max_connections, patch.max_peers_per_torrent);
            saved.max_connections = patch.max_connections.or(saved.max_connections);
            saved.max_peers_per_torrent =
                patch.max_peers_per_torrent.or(saved.max_peers_per_torrent);
        }
        {
            let mut cfg = self.config.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(d) = patch.download_dir {
                cfg.download_dir = d.clone();
                saved.download_dir = Some(d);
            }
            if let Some(n) = patch.max_active_downloads {
                cfg.max_active_downloads = n;
                saved.max_active_downloads = Some(n);
            }
            if let Some(n) = patch.max_active_seeds {
                cfg.max_active_seeds = n;
                saved.max_active_seeds = Some(n);
            }
            if let Some(r) = patch.seed_ratio_limit {
                cfg.seed_ratio_limit = r;
                saved.seed_ratio_limit = Some(r);
            }
            if let Some(m) = patch.seed_idle_minutes {
                cfg.seed_idle_minutes = m;
                saved.seed_idle_minutes = Some(m);
            }
        }
        self.store.save_session(&saved)?;
        self.kick.notify_one();
        Ok(self.session_settings())
    }

    /// Changes a torrent's own rate caps and piece order; a running torrent follows at once
    /// (no restart), and the choice is saved with it.
    pub fn set_options(&self, hash: &Id20, patch: TorrentPatch) -> Result<(), DaemonError> {
        let mut entries = self.lock();
        let e = entries.get_mut(hash).ok_or(DaemonError::NotFound)?;
        let mut record = e.record.clone();
        if let Some(d) = patch.download_limit {
            record.download_limit = cap(d);
        }
        if let Some(u) = patch.upload_limit {
            record.upload_limit = cap(u);
        }
        if let Some(seq) = patch.sequential {
            record.sequential = seq;
        }
        self.store.save_record(&record)?;
        if let Run::Active(handle) = &e.running {
            handle.set_limits(record.upload_limit, record.download_limit);
            handle.set_sequential(record.sequential);
        }
        e.record = record;
        Ok(())
    }

    /// [`Manager::set_options`] from async code: the record's fsynced write runs on a blocking
    /// thread, not on the runtime's workers.
    pub async fn set_options_blocking(
        self: &Arc<Self>,
        hash: &Id20,
        patch: TorrentPatch,
    ) -> Result<(), DaemonError> {
        let (me, hash) = (self.clone(), *hash);
        tokio::task::spawn_blocking(move || me.set_options(&hash, patch))
            .await
            .map_err(|e| DaemonError::State(format!("the change stopped: {e}")))?
    }

    /// Points a torrent at a new save folder. With `move_data`, its files are moved there
    /// first (renamed on the same file system, copied then removed otherwise); a file already
    /// at the destination is never overwritten: the move is refused, and nothing changes. A
    /// running torrent is stopped for the move and started again with its verified data (the
    /// resume data still matches the moved files, so nothing is checked or fetched again).
    /// On any error the torrent stays where it was, as it was.
    pub async fn set_location(
        self: &Arc<Self>,
        hash: &Id20,
        save_path: PathBuf,
        move_data: bool,
    ) -> Result<(), DaemonError> {
        if !save_path.is_absolute() {
            return Err(DaemonError::BadRequest(format!(
                "the save path must be absolute: {}",
                save_path.display()
            )));
        }
        let (running, meta, from) = {
            let mut entries = self.lock();
            let e = entries.get_mut(hash).ok_or(DaemonError::NotFound)?;
            if e.moving {
                return Err(DaemonError::BadRequest(
                    "the torrent's files are being moved already".into(),
                ));
            }
            e.moving = true;
            (
                std::mem::replace(&mut e.running, Run::Stopped),
                e.meta.clone(),
                e.record.save_path.clone(),
            )
        };
        let was_running = !matches!(running, Run::Stopped);
        self.halt(hash, running).await;
        let moved = match (&meta, move_data) {
            (Some(meta), true) => {
                let (meta, from, to) = (meta.clone(), from.clone(), save_path.clone());
                tokio::task::spawn_blocking(move || crate::relocate::move_files(&meta, &from, &to))
                    .await
                    .map_err(|e| DaemonError::State(format!("the move stopped: {e}")))
                    .and_then(|r| r.map_err(DaemonError::BadRequest))
            }
            _ => Ok(()),
        };
        let result = moved.and_then(|()| {
            let mut entries = self.lock();
            let e = entries.get_mut(hash).ok_or(DaemonError::NotFound)?;
            let mut record = e.record.clone();
            record.save_path = save_path.clone();
            self.store.save_record(&record)?;
            e.record = record;
            Ok(())
        });
        if let Some(e) = self.lock().get_mut(hash) {
            e.moving = false;
        }
        if was_running {
            self.set_queued(hash);
            self.kick.notify_one();
        }
        self.notify_state(hash);
        result
    }

    /// State changes as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<DaemonEvent> {
        self.events.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Id20, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings back every saved torrent in its saved state (resume data makes it quick: no
    /// verified piece is hashed again), and starts the scheduler that runs the queue.
    pub fn restore(self: &Arc<Self>) {
        for (record, torrent) in self.store.load() {
            let Ok(hash) = Id20::from_hex(&record.info_hash) else {
                continue;
            };
            let magnet = record.magnet.as_deref().and_then(|m| Magnet::parse(m).ok());
            let meta = torrent.and_then(|bytes| match Metainfo::from_bytes(&bytes) {
                Ok(m) => Some(with_magnet_extras(m, magnet.as_ref())),
                Err(e) => {
                    tracing::warn!("saved torrent {} is unreadable: {e}", record.info_hash);
                    None
                }
            });
            if meta.is_none() && magnet.is_none() {
                continue;
            }
            let name = meta
                .as_ref()
                .map(|m| m.info.name.clone())
                .or_else(|| magnet.as_ref().and_then(|m| m.display_name.clone()))
                .unwrap_or_else(|| record.info_hash.clone());
            let paused = record.paused;
            self.lock().insert(
                hash,
                Entry {
                    record,
                    meta: meta.map(Arc::new),
                    name,
                    state: State::Paused,
                    error: None,
                    running: Run::Stopped,
                    status: None,
                    last: TorrentStatus::default(),
                    last_upload: (0, std::time::Instant::now()),
                    moving: false,
                    error_told: false,
                },
            );
            if !paused {
                self.set_queued(&hash);
            }
        }
        tokio::spawn(self.clone().run_scheduler());
    }

    /// Adds a torrent; returns its view. A torrent already there is an error naming it.
    pub fn add(
        self: &Arc<Self>,
        source: AddSource,
        save_path: Option<PathBuf>,
        paused: bool,
    ) -> Result<TorrentView, DaemonError> {
        let (hash, meta, magnet, bytes) = match source {
            AddSource::Torrent(bytes) => {
                let meta = Metainfo::from_bytes(&bytes)
                    .map_err(|e| DaemonError::BadRequest(format!("not a valid torrent: {e}")))?;
                (meta.info_hash, Some(meta), None, Some(bytes))
            }
            AddSource::Magnet(link) => {
                let m = Magnet::parse(&link).map_err(|e| {
                    DaemonError::BadRequest(format!("not a valid magnet link: {e}"))
                })?;
                (m.info_hash, None, Some((link, m)), None)
            }
        };
        let save_path = save_path.unwrap_or_else(|| self.download_dir());
        if !save_path.is_absolute() {
            return Err(DaemonError::BadRequest(format!(
                "the save path must be absolute: {}",
                save_path.display()
            )));
        }
        let name = meta
            .as_ref()
            .map(|m| m.info.name.clone())
            .or_else(|| magnet.as_ref().and_then(|(_, m)| m.display_name.clone()))
            .unwrap_or_else(|| hash.to_hex());
        let view = {
            let mut entries = self.lock();
            if let Some(e) = entries.get(&hash) {
                return Err(DaemonError::Duplicate(e.record.info_hash.clone()));
            }
            let id = entries.values().map(|e| e.record.id).max().unwrap_or(0) + 1;
            let record = EntryRecord {
                id,
                info_hash: hash.to_hex(),
                save_path,
                paused,
                added: now_unix(),
                magnet: magnet.as_ref().map(|(l, _)| l.clone()),
                wanted_files: None,
                download_limit: None,
                upload_limit: None,
                sequential: false,
            };
            if let Some(bytes) = &bytes {
                self.store.save_torrent(&hash, bytes)?;
            }
            self.store.save_record(&record)?;
            let entry = Entry {
                record,
                meta: meta.map(Arc::new),
                name,
                state: State::Paused,
                error: None,
                running: Run::Stopped,
                status: None,
                last: TorrentStatus::default(),
                last_upload: (0, std::time::Instant::now()),
                moving: false,
                error_told: false,
            };
            let view = entry.view();
            entries.insert(hash, entry);
            view
        };
        let _ = self.events.send(DaemonEvent::Added {
            torrent: view.clone(),
        });
        if !paused {
            self.set_queued(&hash);
            self.kick.notify_one();
        }
        Ok(self.get(&hash).unwrap_or(view))
    }

    /// [`Manager::add`] from async code: its parsing and its fsynced writes to the state folder
    /// run on a blocking thread, not on the runtime's workers.
    pub async fn add_blocking(
        self: &Arc<Self>,
        source: AddSource,
        save_path: Option<PathBuf>,
        paused: bool,
    ) -> Result<TorrentView, DaemonError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.add(source, save_path, paused))
            .await
            .map_err(|e| DaemonError::State(format!("adding stopped: {e}")))?
    }

    /// Every torrent, oldest first.
    pub fn list(&self) -> Vec<TorrentView> {
        let entries = self.lock();
        let mut v: Vec<TorrentView> = entries.values().map(Entry::view).collect();
        v.sort_by_key(|t| t.id);
        v
    }

    /// Every torrent's info-hash, oldest first: to walk a long list one view at a time.
    pub fn hashes(&self) -> Vec<Id20> {
        let entries = self.lock();
        let mut v: Vec<(u64, Id20)> = entries.iter().map(|(h, e)| (e.record.id, *h)).collect();
        v.sort_unstable();
        v.into_iter().map(|(_, h)| h).collect()
    }

    /// One torrent.
    pub fn get(&self, hash: &Id20) -> Option<TorrentView> {
        self.lock().get(hash).map(Entry::view)
    }

    /// The info-hash of the torrent with Transmission id `id`.
    pub fn hash_of_id(&self, id: u64) -> Option<Id20> {
        self.lock()
            .iter()
            .find(|(_, e)| e.record.id == id)
            .map(|(h, _)| *h)
    }

    /// The metainfo of a torrent (once known).
    pub fn metainfo(&self, hash: &Id20) -> Option<Arc<Metainfo>> {
        self.lock().get(hash).and_then(|e| e.meta.clone())
    }

    /// Starts (resumes) a torrent.
    pub fn start(self: &Arc<Self>, hash: &Id20) -> Result<(), DaemonError> {
        {
            let mut entries = self.lock();
            let e = entries.get_mut(hash).ok_or(DaemonError::NotFound)?;
            if !e.record.paused && !matches!(e.running, Run::Stopped) {
                return Ok(());
            }
            e.record.paused = false;
            e.error = None;
            self.store.save_record(&e.record)?;
        }
        self.set_queued(hash);
        self.kick.notify_one();
        Ok(())
    }

    /// Chooses the files to download: `wanted[i]` for the torrent's real file `i`, numbered
    /// without its BEP 47 pad files (as `/files` and the Transmission RPC list them); a list
    /// counting the pad files too is accepted as well (its pad entries do not matter). A
    /// running torrent restarts with the new choice (its verified data stays).
    pub async fn set_wanted(
        self: &Arc<Self>,
        hash: &Id20,
        wanted: Vec<bool>,
    ) -> Result<(), DaemonError> {
        let running = {
            let mut entries = self.lock();
            let e = entries.get_mut(hash).ok_or(DaemonError::NotFound)?;
            let files = e
                .meta
                .as_ref()
                .map(|m| &m.info.files)
                .ok_or_else(|| DaemonError::BadRequest("its metadata is not in yet".into()))?;
            let wanted = expand_wanted(files, &wanted).map_err(DaemonError::BadRequest)?;
            e.record.wanted_files = (!wanted.iter().all(|&w| w)).then_some(wanted);
            self.store.save_record(&e.record)?;
            std::mem::replace(&mut e.running, Run::Stopped)
        };
        let was_running = !matches!(running, Run::Stopped);
        self.halt(hash, running).await;
        if was_running {
            self.set_queued(hash);
            self.kick.notify_one();
        }
        Ok(())
    }

    /// The real files wanted (all when no choice was made), numbered without pad files as
    /// [`Manager::set_wanted`] takes them; `None` without metadata.
    pub fn wanted(&self, hash: &Id20) -> Option<Vec<bool>> {
        let entries = self.lock();
        let e = entries.get(hash)?;
        let files = &e.meta.as_ref()?.info.files;
        Some(
            real_files(files)
                .into_iter()
                .map(|i| {
                    e.record
                        .wanted_files
                        .as_ref()
                        .is_none_or(|w| w.get(i).copied().unwrap_or(true))
                })
                .collect(),
        )
    }

    /// Stops (pauses) a torrent: resume data is written, peers are closed.
    pub async fn stop(self: &Arc<Self>, hash: &Id20) -> Result<(), DaemonError> {
        let running = {
            let mut entries = self.lock();
            let e = entries.get_mut(hash).ok_or(DaemonError::NotFound)?;
            e.record.paused = true;
            self.store.save_record(&e.record)?;
            e.state = State::Paused;
            std::mem::replace(&mut e.running, Run::Stopped)
        };
        self.halt(hash, running).await;
        self.notify_state(hash);
        self.kick.notify_one();
        Ok(())
    }

    /// Removes a torrent; with `delete_data`, also its files (only the torrent's own files, and
    /// the folders they leave empty).
    pub async fn remove(
        self: &Arc<Self>,
        hash: &Id20,
        delete_data: bool,
    ) -> Result<(), DaemonError> {
        let entry = self.lock().remove(hash).ok_or(DaemonError::NotFound)?;
        self.halt(hash, entry.running).await;
        self.store.remove(hash);
        if delete_data {
            if let Some(meta) = &entry.meta {
                delete_files(&entry.record.save_path, meta);
            }
        }
        let _ = self.events.send(DaemonEvent::Removed {
            info_hash: hash.to_hex(),
        });
        self.kick.notify_one();
        Ok(())
    }

    /// Checks a torrent's data again: stopped, its resume data dropped, started (the check
    /// hashes every piece).
    pub async fn verify(self: &Arc<Self>, hash: &Id20) -> Result<(), DaemonError> {
        let running = {
            let mut entries = self.lock();
            let e = entries.get_mut(hash).ok_or(DaemonError::NotFound)?;
            std::mem::replace(&mut e.running, Run::Stopped)
        };
        self.halt(hash, running).await;
        let _ = std::fs::remove_file(
            self.store
                .resume_dir()
                .join(format!("{}.shoal-resume", hash.to_hex())),
        );
        let paused = self.lock().get(hash).map(|e| e.record.paused);
        if paused == Some(false) {
            self.set_queued(hash);
            self.kick.notify_one();
        }
        Ok(())
    }

    /// Stops every torrent (resume data written), for a clean exit.
    pub async fn shutdown(self: &Arc<Self>) {
        let all: Vec<(Id20, Run)> = {
            let mut entries = self.lock();
            entries
                .iter_mut()
                .map(|(h, e)| (*h, std::mem::replace(&mut e.running, Run::Stopped)))
                .collect()
        };
        for (hash, running) in all {
            self.halt(&hash, running).await;
        }
    }

    async fn halt(&self, hash: &Id20, running: Run) {
        match running {
            Run::Stopped => {}
            Run::Starting(task) => {
                task.abort();
                let _ = task.await;
            }
            Run::Active(handle) => {
                let last = handle.shutdown().await;
                if let Some(e) = self.lock().get_mut(hash) {
                    e.last = last;
                    e.status = None;
                }
            }
        }
    }

    /// Marks a torrent as waiting for the scheduler.
    fn set_queued(&self, hash: &Id20) {
        if let Some(e) = self.lock().get_mut(hash) {
            if matches!(e.running, Run::Stopped) {
                e.state = State::Queued;
            }
        }
    }

    /// Runs the queue and the seeding limits: woken by every change, and once a second for
    /// the limits that depend on time. Returns when the manager is dropped.
    pub async fn run_scheduler(self: Arc<Self>) {
        loop {
            self.schedule().await;
            tokio::select! {
                _ = self.kick.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// One round: stops seeds past their limits or over `max_active_seeds`, then starts
    /// queued torrents, oldest first, while there is room.
    async fn schedule(self: &Arc<Self>) {
        let cfg = &self.config();
        let now = std::time::Instant::now();
        let mut to_stop: Vec<(Id20, bool)> = Vec::new(); // (hash, paused for good)
        let mut to_start = Vec::new();
        let mut errors = Vec::new();
        let trim;
        {
            let mut entries = self.lock();
            let mut downloads = 0;
            let mut seeds = Vec::new();
            // One pass over every torrent: it runs every second, and at 10,000 torrents the
            // separate passes this one replaced were most of an idle daemon's CPU.
            let (mut starting, mut awake) = (0, 0);
            let mut waiting: Vec<(u64, Id20, bool)> = Vec::new(); // (id, hash, complete)
            for (hash, e) in entries.iter_mut() {
                match &e.running {
                    Run::Starting(_) => starting += 1,
                    Run::Active(h) if !h.is_asleep() => awake += 1,
                    _ => {}
                }
                if e.state == State::Queued && matches!(e.running, Run::Stopped) && !e.moving {
                    // A torrent known complete takes a seed's place, any other a download's.
                    waiting.push((e.record.id, *hash, e.last.is_complete()));
                }
                // Read in place: this runs every second over every torrent.
                let (complete, uploaded, total, error) = {
                    let read = |s: &TorrentStatus| {
                        let error = matches!(s.state, shoal_engine::TorrentState::Error(_));
                        (s.is_complete(), s.uploaded, s.total_bytes, error)
                    };
                    match &e.status {
                        Some(r) => read(&r.borrow()),
                        None => read(&e.last),
                    }
                };
                // A running torrent's error is news (the event stream's `state`).
                if error && !e.error_told && matches!(e.running, Run::Active(_)) {
                    errors.push(*hash);
                }
                e.error_told = error;
                match &e.running {
                    Run::Starting(_) => downloads += 1,
                    Run::Active(_) if !complete => downloads += 1,
                    Run::Active(_) => {
                        if uploaded != e.last_upload.0 {
                            e.last_upload = (uploaded, now);
                        }
                        let ratio_hit = cfg.seed_ratio_limit > 0.0
                            && total > 0
                            && uploaded as f64 >= cfg.seed_ratio_limit * total as f64;
                        let idle_hit = cfg.seed_idle_minutes > 0
                            && now.duration_since(e.last_upload.1)
                                >= Duration::from_secs(cfg.seed_idle_minutes * 60);
                        if ratio_hit || idle_hit {
                            to_stop.push((*hash, true));
                        } else {
                            seeds.push((e.record.id, *hash));
                        }
                    }
                    Run::Stopped => {}
                }
            }
            if cfg.max_active_seeds > 0 && seeds.len() > cfg.max_active_seeds {
                // The newest seeds wait; the oldest keep their places.
                seeds.sort();
                for (_, h) in seeds.split_off(cfg.max_active_seeds) {
                    to_stop.push((h, false));
                }
            }
            let mut room_dl = if cfg.max_active_downloads == 0 {
                usize::MAX
            } else {
                cfg.max_active_downloads.saturating_sub(downloads)
            };
            let mut room_seed = if cfg.max_active_seeds == 0 {
                usize::MAX
            } else {
                cfg.max_active_seeds.saturating_sub(seeds.len())
            };
            waiting.sort_unstable();
            for (_, hash, complete) in waiting {
                let room = if complete {
                    &mut room_seed
                } else {
                    &mut room_dl
                };
                if *room > 0 {
                    *room -= 1;
                    to_start.push(hash);
                }
            }
            trim = self.burst_over(starting, awake) || self.trim_due(now);
        }
        for (hash, for_good) in to_stop {
            let running = {
                let mut entries = self.lock();
                let Some(e) = entries.get_mut(&hash) else {
                    continue;
                };
                if for_good {
                    e.record.paused = true;
                    let _ = self.store.save_record(&e.record);
                    e.state = State::Paused;
                    e.error = None;
                } else {
                    e.state = State::Queued;
                }
                std::mem::replace(&mut e.running, Run::Stopped)
            };
            self.halt(&hash, running).await;
            self.notify_state(&hash);
        }
        for hash in errors {
            self.notify_state(&hash);
        }
        for hash in to_start {
            self.start_entry(hash);
        }
        if trim {
            crate::memory::trim();
            *self.last_trim.lock().unwrap_or_else(|e| e.into_inner()) = now;
        }
    }

    /// Whether the heap is due to be given back anyway: what a burst frees may be freed after
    /// the burst looks over (a restored torrent's structures, say), and a daemon restored
    /// from state was measured at 20–28 MiB resident with ~6 of it live. A trim with nothing
    /// to give back costs microseconds.
    fn trim_due(&self, now: std::time::Instant) -> bool {
        let last = *self.last_trim.lock().unwrap_or_else(|e| e.into_inner());
        now.duration_since(last) >= TRIM_EVERY
    }

    /// Whether a burst of work just ended, so the heap it freed can go back (see
    /// [`crate::memory`]): the last starting torrent has started, or torrents went to sleep.
    /// `starting` and `awake` count the torrents starting and running awake now.
    fn burst_over(&self, starting: usize, awake: usize) -> bool {
        let mut last = self.last_burst.lock().unwrap_or_else(|e| e.into_inner());
        let (was_starting, was_awake) = *last;
        *last = (starting, awake);
        starting == 0 && (was_starting > 0 || awake < was_awake)
    }

    fn notify_state(&self, hash: &Id20) {
        if let Some(v) = self.get(hash) {
            let _ = self.events.send(DaemonEvent::State { torrent: v });
        }
    }

    fn set_state(&self, hash: &Id20, state: State, error: Option<String>) {
        if let Some(e) = self.lock().get_mut(hash) {
            e.state = state;
            e.error = error;
        }
        self.notify_state(hash);
    }

    /// Starts an entry in a task of its own: fetches a magnet's metadata, checks the data,
    /// then runs it; errors put it in `error` state.
    fn start_entry(self: &Arc<Self>, hash: Id20) {
        let me = self.clone();
        let mut entries = self.lock();
        let Some(e) = entries.get_mut(&hash) else {
            return;
        };
        if !matches!(e.running, Run::Stopped) || e.moving {
            return;
        }
        e.state = if e.meta.is_some() {
            State::Checking
        } else {
            State::Metadata
        };
        e.error = None;
        let task = tokio::spawn(async move {
            if let Err(err) = me.run_entry(hash).await {
                tracing::warn!("torrent {}: {err}", hash.to_hex());
                if let Some(e) = me.lock().get_mut(&hash) {
                    e.running = Run::Stopped;
                }
                me.set_state(&hash, State::Error, Some(err.to_string()));
            }
        });
        e.running = Run::Starting(task);
        drop(entries);
        self.notify_state(&hash);
    }

    async fn run_entry(self: &Arc<Self>, hash: Id20) -> Result<(), DaemonError> {
        let (meta, record) = {
            let entries = self.lock();
            let e = entries.get(&hash).ok_or(DaemonError::NotFound)?;
            (e.meta.clone(), e.record.clone())
        };
        let magnet = record.magnet.as_deref().and_then(|m| Magnet::parse(m).ok());
        let meta = match meta {
            Some(m) => m,
            None => {
                let magnet = magnet
                    .clone()
                    .ok_or_else(|| DaemonError::BadRequest("no metadata and no magnet".into()))?;
                let peers = magnet.peers.iter().filter_map(|p| p.parse().ok()).collect();
                let fetched = self
                    .session
                    .fetch_metadata(&magnet, peers, METADATA_DEADLINE)
                    .await
                    .map_err(|e| DaemonError::Engine(e.to_string()))?;
                // Kept as a .torrent with only the info dictionary and a v2 torrent's piece
                // layers (a restart fetches neither again); the magnet (trackers, web seeds)
                // stays in the record.
                self.store
                    .save_torrent(&hash, &fetched.bare_torrent_bytes())?;
                let meta = Arc::new(with_magnet_extras(fetched, Some(&magnet)));
                if let Some(e) = self.lock().get_mut(&hash) {
                    e.meta = Some(meta.clone());
                    e.name = meta.info.name.clone();
                    e.state = State::Checking;
                }
                self.notify_state(&hash);
                meta
            }
        };
        let opts = TorrentOptions {
            save_path: record.save_path.clone(),
            seed_only: false,
            peers: magnet
                .iter()
                .flat_map(|m| m.peers.iter().filter_map(|p| p.parse().ok()))
                .collect(),
            resume: ResumeLocation::StateDir(self.store.resume_dir()),
            trackers: meta.trackers.clone(),
            tracker_config: Default::default(),
            wanted_files: record.wanted_files.clone(),
            super_seed: self.config().super_seed,
            upload_limit: record.upload_limit,
            download_limit: record.download_limit,
            sequential: record.sequential,
        };
        std::fs::create_dir_all(&record.save_path).map_err(|e| {
            DaemonError::Engine(format!("cannot create {}: {e}", record.save_path.display()))
        })?;
        let handle = self
            .session
            .add_torrent(meta.clone(), opts, |_, _| {})
            .await
            .map_err(|e| DaemonError::Engine(e.to_string()))?;
        let mut status = handle.status.clone();
        // Removed meanwhile: the handle comes back to be shut down.
        let orphan = match self.lock().get_mut(&hash) {
            Some(e) => {
                e.status = Some(handle.status.clone());
                e.state = State::Downloading;
                e.running = Run::Active(handle);
                None
            }
            None => Some(handle),
        };
        if let Some(handle) = orphan {
            handle.shutdown().await;
            return Ok(());
        }
        self.notify_state(&hash);
        // Watch a download for its completion, to tell the event stream at once. A torrent
        // that starts complete needs no watcher (its errors, like every torrent's, are told
        // by the scheduler), so a daemon of seeds runs no task per torrent.
        if !status.borrow().is_complete() {
            let me = self.clone();
            tokio::spawn(async move {
                let ended = status
                    .wait_for(|s| {
                        s.is_complete() || matches!(s.state, shoal_engine::TorrentState::Error(_))
                    })
                    .await
                    .map(|s| s.is_complete());
                if let Ok(true) = ended {
                    if let Some(v) = me.get(&hash) {
                        let _ = me.events.send(DaemonEvent::Complete { torrent: v });
                    }
                    // A download's place is free; a seed may be over its limit.
                    me.kick.notify_one();
                }
            });
        }
        Ok(())
    }
}

/// The magnet's trackers and web seeds join those of the metainfo.
fn with_magnet_extras(mut meta: Metainfo, magnet: Option<&Magnet>) -> Metainfo {
    if let Some(m) = magnet {
        for t in &m.trackers {
            if !meta.trackers.iter().flatten().any(|x| x == t) {
                meta.trackers.push(vec![t.clone()]);
            }
        }
        for w in &m.web_seeds {
            if !meta.url_list.contains(w) {
                meta.url_list.push(w.clone());
            }
        }
    }
    meta
}

/// Where each real file of a torrent (BEP 47 pad files not counted) sits in its full file
/// list: entry `n` is the full index of real file `n`.
pub(crate) fn real_files(files: &[shoal_metainfo::FileEntry]) -> Vec<usize> {
    (0..files.len()).filter(|&i| !files[i].is_pad()).collect()
}

/// A choice of files (one flag per real file, or one per file with the pad files counted) as
/// one flag per file of the full list, the pad files' set (the engine never fetches them).
pub(crate) fn expand_wanted(
    files: &[shoal_metainfo::FileEntry],
    wanted: &[bool],
) -> Result<Vec<bool>, String> {
    let real = real_files(files);
    if wanted.len() == files.len() {
        return Ok(files
            .iter()
            .zip(wanted)
            .map(|(f, &w)| w || f.is_pad())
            .collect());
    }
    if wanted.len() != real.len() {
        return Err(if real.len() == files.len() {
            format!(
                "the torrent has {} files, the request names {}",
                real.len(),
                wanted.len()
            )
        } else {
            format!(
                "the torrent has {} files ({} with its pad files), the request names {}",
                real.len(),
                files.len(),
                wanted.len()
            )
        });
    }
    let mut all = vec![true; files.len()];
    for (&i, &w) in real.iter().zip(wanted) {
        all[i] = w;
    }
    Ok(all)
}

/// Deletes the torrent's own files under `save_path` and the folders they leave empty (never
/// anything else: other files in those folders stay, and so do the folders holding them).
fn delete_files(save_path: &Path, meta: &Metainfo) {
    let mut dirs = std::collections::BTreeSet::new();
    for f in &meta.info.files {
        if f.is_pad() {
            continue;
        }
        let path = save_path.join(f.relative_path());
        let _ = std::fs::remove_file(&path);
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == save_path || !d.starts_with(save_path) {
                break;
            }
            dirs.insert(d.to_path_buf());
            dir = d.parent();
        }
    }
    // Deepest first; `remove_dir` fails on a folder that is not empty, which is the point.
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
    let _ = std::fs::remove_file(save_path.join(format!(".{}.shoal-resume", meta.info.name)));
}
