//! A torrent's place in the session, awake or asleep.
//!
//! An awake torrent has an actor (its task, event queue, machine and open storage), a tracker
//! task and a DHT task. A complete torrent with no peers for [`SessionConfig::sleep_after`] goes
//! to sleep: all of that ends (resume data written, files closed) and only its [`Spec`] and
//! status snapshot stay; its trackers and the DHT are announced to by the session's one
//! [`crate::announcer`]. An incoming peer, a tracker's answer with leechers, or a request that
//! needs the actor wakes it: its storage opens from resume data (no piece is hashed again) and a
//! new actor starts from where the old one stopped. A complete torrent added or restored with
//! nothing to do starts asleep.
//!
//! Changes of life (the first data check, waking, going to sleep) are [`Life::Busy`]: whoever
//! needs the torrent meanwhile waits for the change to finish and looks again.
//!
//! [`SessionConfig::sleep_after`]: crate::SessionConfig::sleep_after

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shoal_core::Id20;
use shoal_metainfo::Metainfo;
use shoal_storage::Storage;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::session::{swarm_hashes, Shared, TorrentOptions};
use crate::status::{TorrentState, TorrentStatus};
use crate::torrent::{Event, TorrentActor};
use crate::tracker_source::TrackerTask;
use crate::EngineError;

/// Events queued to a torrent actor before peers must wait.
const EVENT_QUEUE: usize = 1024;

/// What a torrent is, for its whole life in the session (asleep too).
pub(crate) struct Spec {
    /// The torrent.
    pub meta: Arc<Metainfo>,
    /// How it was added (its `peers` were handed to its first run).
    pub opts: TorrentOptions,
    /// Its own rate caps.
    pub limits: Arc<crate::connection::TorrentLimits>,
    /// Its flow in the fair sharing of the session's rate caps.
    pub flow: u64,
    /// Whether it picks pieces in order (each run follows; see
    /// [`crate::torrent::TorrentContext::sequential`]).
    pub sequential: Arc<AtomicBool>,
    /// Its status, published by whichever run it is in, and kept while it sleeps.
    pub status: crate::status_watch::StatusSender,
}

/// A torrent known to the session.
pub(crate) struct Slot {
    pub spec: Spec,
    life: Mutex<Life>,
}

/// Where a torrent is.
pub(crate) enum Life {
    /// Changing (checking its data, waking up, going to sleep): the change's [`Busy`] holds the
    /// sender; once it is dropped, look again.
    Busy(watch::Receiver<()>),
    /// Its actor runs.
    Awake(Awake),
    /// Asleep: no task, no open file.
    Asleep,
    /// Shut down (or failed to wake).
    Gone,
}

/// What runs for an awake torrent.
pub(crate) struct Awake {
    /// Its actor's events.
    pub events: mpsc::Sender<Event>,
    task: JoinHandle<()>,
    /// A tracker task per swarm hash with usable trackers (a hybrid announces both hashes).
    trackers: Vec<(Id20, TrackerTask)>,
    /// A DHT task per swarm hash.
    dht_tasks: Vec<JoinHandle<()>>,
    /// Downloading or with peers: counts in the split of the peer budget.
    pub active: Arc<AtomicBool>,
    /// Since when it has been complete with no peer (`None`: it is not).
    idle_since: Option<Instant>,
}

/// A change of life in progress. Finish it with [`Busy::finish`]; dropped unfinished (the
/// future that ran it was dropped), the torrent is gone. Either way the waiters look again.
pub(crate) struct Busy {
    slot: Arc<Slot>,
    _done: watch::Sender<()>,
}

impl Busy {
    /// Ends the change: the torrent is now `life`.
    pub fn finish(self, life: Life) {
        *self.slot.lock() = life;
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut life = self.slot.lock();
        if matches!(*life, Life::Busy(_)) {
            *life = Life::Gone;
        }
    }
}

impl Slot {
    /// A new slot, busy with its first start.
    pub fn new(spec: Spec) -> (Arc<Slot>, Busy) {
        let (tx, rx) = watch::channel(());
        let slot = Arc::new(Slot {
            spec,
            life: Mutex::new(Life::Busy(rx)),
        });
        let busy = Busy {
            slot: slot.clone(),
            _done: tx,
        };
        (slot, busy)
    }

    pub fn lock(&self) -> MutexGuard<'_, Life> {
        self.life.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the slot busy (the caller changes its life); the old life is returned.
    fn begin(self: &Arc<Self>, life: &mut Life) -> (Life, Busy) {
        let (tx, rx) = watch::channel(());
        let old = std::mem::replace(life, Life::Busy(rx));
        let busy = Busy {
            slot: self.clone(),
            _done: tx,
        };
        (old, busy)
    }

    /// Tells an awake torrent's actor that its pick mode changed (a sleeping one reads it when
    /// it wakes). A full queue is fine: the actor reads the mode on its next turn anyway.
    pub fn nudge_pick_mode(&self) {
        if let Life::Awake(a) = &*self.lock() {
            let _ = a.events.try_send(Event::PickModeChanged);
        }
    }

    /// Whether the torrent is awake and counts in the split of the peer budget.
    pub fn is_active(&self) -> bool {
        match &*self.lock() {
            Life::Awake(a) => a.active.load(std::sync::atomic::Ordering::Relaxed),
            _ => false,
        }
    }

    /// Whether it is asleep.
    pub fn is_asleep(&self) -> bool {
        matches!(*self.lock(), Life::Asleep)
    }

    /// The torrent's event queue, waking it if it sleeps and waiting (up to `wait`) for a change
    /// in progress; `None` once it is gone, failed to wake, or is still changing after `wait`.
    pub async fn events(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        wait: Duration,
    ) -> Option<mpsc::Sender<Event>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut changing = {
                let mut life = self.lock();
                match &*life {
                    Life::Awake(a) => return Some(a.events.clone()),
                    Life::Gone => return None,
                    Life::Busy(rx) => rx.clone(),
                    Life::Asleep => {
                        let (_, busy) = self.begin(&mut life);
                        let Life::Busy(rx) = &*life else {
                            unreachable!("just set")
                        };
                        let rx = rx.clone();
                        tokio::spawn(wake(shared.clone(), busy));
                        rx
                    }
                }
            };
            // The sender never sends: this returns once it is dropped.
            if tokio::time::timeout_at(deadline, changing.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    /// Called every few seconds: notes whether an awake torrent is idle (complete, no peer) and
    /// puts it to sleep once it has been for `after`.
    pub fn sleep_if_idle(self: &Arc<Self>, shared: &Arc<Shared>, after: Duration, now: Instant) {
        let mut life = self.lock();
        let Life::Awake(awake) = &mut *life else {
            return;
        };
        let idle = {
            let s = self.spec.status.borrow();
            s.is_complete() && s.peers == 0
        };
        if !idle {
            awake.idle_since = None;
            return;
        }
        let since = *awake.idle_since.get_or_insert(now);
        if now.duration_since(since) < after {
            return;
        }
        let (old, busy) = self.begin(&mut life);
        drop(life);
        let Life::Awake(awake) = old else {
            unreachable!("matched above")
        };
        debug!(info_hash = %self.spec.meta.info_hash, "idle: going to sleep");
        tokio::spawn(sleep(shared.clone(), awake, busy));
    }

    /// Ends the torrent whatever its life: an awake one stops as before (`stopped` to its
    /// trackers, resume data written), a sleeping one tells its trackers `stopped`.
    pub async fn shut_down(self: &Arc<Self>, shared: &Arc<Shared>) {
        loop {
            // The lock is let go before anything is awaited.
            let was = {
                let mut life = self.lock();
                match std::mem::replace(&mut *life, Life::Gone) {
                    Life::Busy(rx) => {
                        *life = Life::Busy(rx.clone());
                        Life::Busy(rx)
                    }
                    other => other,
                }
            };
            match was {
                Life::Gone => return,
                Life::Busy(mut changing) => {
                    let _ = changing.changed().await;
                }
                Life::Asleep => {
                    for hash in swarm_hashes(&self.spec.meta) {
                        let parked = shared.announcer.unpark(&hash, shared.clock.now());
                        if let Some(parked) = parked {
                            // Nobody reads its events: the task only says `stopped`.
                            let (tx, _) = mpsc::channel(1);
                            crate::tracker_source::resume(
                                parked,
                                shared.trackers.clone(),
                                self.spec.status.subscribe(),
                                tx,
                                shared.clock,
                            )
                            .stop()
                            .await;
                        }
                    }
                    return;
                }
                Life::Awake(awake) => {
                    awake.shut_down().await;
                    return;
                }
            }
        }
    }
}

impl Awake {
    /// Stops its tasks: `stopped` to the trackers first (bounded), while the counters are
    /// final; then the actor (resume data written, connections closed).
    async fn shut_down(self) {
        for t in &self.dht_tasks {
            t.abort();
        }
        for (_, t) in self.trackers {
            t.stop().await;
        }
        stop_actor(&self.events, self.task).await;
    }
}

async fn stop_actor(events: &mpsc::Sender<Event>, task: JoinHandle<()>) {
    let (done_tx, done_rx) = oneshot::channel();
    if events.send(Event::Shutdown(done_tx)).await.is_ok() {
        let _ = done_rx.await;
    }
    let _ = task.await;
}

/// Starts the torrent's actor on its opened and checked storage, and its tracker and DHT tasks,
/// for each of its swarm hashes (the trackers' schedules taken back from the announcer if it
/// slept).
pub(crate) fn start(
    shared: &Arc<Shared>,
    slot: &Arc<Slot>,
    storage: Arc<Storage>,
    peers: Vec<std::net::SocketAddr>,
) -> Result<Awake, EngineError> {
    let spec = &slot.spec;
    let info_hash = spec.meta.info_hash;
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let active = Arc::new(AtomicBool::new(false));
    let ctx = shared.context(spec, storage, active.clone());
    let actor = TorrentActor::new(ctx, tx.clone(), rx, spec.status.clone())?;
    let task = tokio::spawn(actor.run());
    let status = spec.status.subscribe();
    // A hybrid is announced under both hashes, as libtorrent does: v1 and v2 peers find it.
    let hashes = swarm_hashes(&spec.meta);
    let mut trackers = Vec::new();
    for &hash in &hashes {
        let task = match shared.announcer.unpark(&hash, shared.clock.now()) {
            Some(p) => Some(crate::tracker_source::resume(
                p,
                shared.trackers.clone(),
                status.clone(),
                tx.clone(),
                shared.clock,
            )),
            None => crate::tracker_source::spawn(
                shared.tracker_source(spec, hash),
                shared.trackers.clone(),
                status.clone(),
                tx.clone(),
                shared.clock,
            ),
        };
        trackers.extend(task.map(|t| (hash, t)));
    }
    // BEP 27: private torrents use their trackers only, never the DHT.
    let dht_tasks = match (&shared.dht, spec.meta.info.private) {
        (Some((dht, bootstrapped)), false) => hashes
            .iter()
            .map(|&hash| {
                crate::dht_source::spawn(
                    dht.clone(),
                    hash,
                    shared.listen_addr.port(),
                    bootstrapped.clone(),
                    status.clone(),
                    tx.clone(),
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    if !peers.is_empty() && tx.try_send(Event::AddPeers(peers)).is_err() {
        warn!(%info_hash, "the peers given could not be queued");
    }
    Ok(Awake {
        events: tx,
        task,
        trackers,
        dht_tasks,
        active,
        idle_since: None,
    })
}

/// Wakes a sleeping torrent: opens its storage (resume data, so nothing is hashed unless its
/// files changed meanwhile) and starts it.
async fn wake(shared: Arc<Shared>, busy: Busy) {
    let slot = busy.slot.clone();
    let info_hash = slot.spec.meta.info_hash;
    let started = async {
        let storage =
            crate::session::open_and_check(slot.spec.meta.clone(), &slot.spec.opts, |_, _| {})
                .await?;
        start(&shared, &slot, storage, Vec::new())
    }
    .await;
    match started {
        Ok(awake) => {
            debug!(%info_hash, "woken up");
            busy.finish(Life::Awake(awake));
            shared.rebalance();
        }
        Err(e) => {
            warn!(%info_hash, "cannot wake the torrent: {e}");
            slot.spec
                .status
                .send_modify(|s| s.state = TorrentState::Error(e.to_string()));
            busy.finish(Life::Gone);
        }
    }
}

/// Puts an idle torrent to sleep: its trackers' schedule goes to the announcer, its actor stops
/// (resume data written, files closed), and its status stays with what a resting torrent shows.
async fn sleep(shared: Arc<Shared>, awake: Awake, busy: Busy) {
    let slot = busy.slot.clone();
    for t in &awake.dht_tasks {
        t.abort();
    }
    let mut parked = Vec::new();
    for (hash, t) in awake.trackers {
        parked.push((hash, t.park().await));
    }
    stop_actor(&awake.events, awake.task).await;
    slot.spec.status.send_modify(rest);
    // Each swarm hash's announces (a hybrid has two), with or without trackers (the DHT).
    for hash in swarm_hashes(&slot.spec.meta) {
        let trackers = parked
            .iter_mut()
            .find(|(h, _)| *h == hash)
            .and_then(|(_, t)| t.take());
        shared.announcer.park(
            &shared,
            &slot,
            hash,
            trackers,
            crate::dht_source::ANNOUNCE_INTERVAL,
        );
    }
    busy.finish(Life::Asleep);
    shared.rebalance();
}

/// What a resting torrent shows: nothing moving, no peer.
pub(crate) fn rest(s: &mut TorrentStatus) {
    s.peers = 0;
    s.down_rate = 0.0;
    s.up_rate = 0.0;
    s.peer_encryption.clear();
    s.distributed_copies = 0.0;
    s.super_seeding = false;
}
