//! The session's announcer for sleeping torrents: one task owns the tracker schedules
//! ([`TrackerSet`]s, sans-IO) and DHT announce times of every sleeping torrent, sleeps until the
//! earliest is due, and runs the announces that are (a bounded number at once). A sleeping
//! torrent thus costs no task and no timer of its own. A tracker answer that names peers while
//! the swarm has leechers wakes the torrent and hands it the peers, as an awake seed would dial
//! them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use shoal_core::{Id20, Time};
use shoal_tracker::{AnnounceJob, AnnounceResponse, Stats, TrackerError};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::{debug, info};

use crate::clock::sleep_until;
use crate::session::Shared;
use crate::slot::Slot;
use crate::status::TrackerReport;
use crate::torrent::Event;
use crate::tracker_source::ParkedTrackers;

/// Announces out at once, trackers and DHT together: enough to keep up with thousands of
/// sleeping torrents announcing every half hour, few enough that a dead tracker's time-outs
/// hold little.
const MAX_OUT: usize = 32;

/// A sleeping torrent's DHT announce after one no node acknowledged (the DHT may still be
/// joining): later than an awake torrent's eager retry, as nobody waits for this one.
const DHT_RETRY: Duration = Duration::from_secs(120);

/// How long a wake-up for a tracker's peers waits for the torrent.
const WAKE_WAIT: Duration = Duration::from_secs(30);

/// The schedules of the sleeping torrents, by the hash announced (a hybrid has an entry under
/// each of its two swarm hashes).
#[derive(Default)]
pub(crate) struct Announcer {
    parked: Mutex<HashMap<Id20, Parked>>,
    kick: Notify,
}

/// A sleeping torrent's announces.
struct Parked {
    slot: Arc<Slot>,
    trackers: Option<ParkedTrackers>,
    /// The tracker announce out, if any.
    out: Option<AnnounceJob>,
    /// When its next DHT announce is due (`None`: it is not on the DHT — private, or no DHT).
    dht_due: Option<Time>,
    dht_out: bool,
}

/// An announce's result (a tracker's boxed: it is large, the DHT's small).
enum Outcome {
    Tracker(Box<(AnnounceJob, Result<AnnounceResponse, TrackerError>)>),
    Dht(usize),
}

impl Announcer {
    fn lock(&self) -> MutexGuard<'_, HashMap<Id20, Parked>> {
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes over a torrent going to sleep, for its swarm hash `hash`: its trackers' schedule
    /// for that hash, and a DHT announce of it `dht_in` from now if the torrent is public and
    /// the session runs the DHT. Nothing is kept for a hash with neither.
    pub fn park(
        &self,
        shared: &Shared,
        slot: &Arc<Slot>,
        hash: Id20,
        trackers: Option<ParkedTrackers>,
        dht_in: Duration,
    ) {
        let on_dht = shared.dht.is_some() && !slot.spec.meta.info.private;
        if trackers.is_none() && !on_dht {
            return;
        }
        let parked = Parked {
            slot: slot.clone(),
            trackers,
            out: None,
            dht_due: on_dht.then(|| shared.clock.now() + dht_in),
            dht_out: false,
        };
        self.lock().insert(hash, parked);
        self.kick.notify_one();
    }

    /// Gives a waking (or stopping) torrent its trackers' schedule for `info_hash` back. An
    /// announce still out is given up as failed, so the schedule does not wait for its answer.
    pub fn unpark(&self, info_hash: &Id20, now: Time) -> Option<ParkedTrackers> {
        let mut p = self.lock().remove(info_hash)?;
        if let (Some(job), Some(t)) = (p.out.take(), p.trackers.as_mut()) {
            t.set
                .on_failure(&job, &TrackerError::Timeout(Duration::ZERO), now);
        }
        p.trackers
    }
}

/// The announcer's task: runs due announces, sleeps until the next is due or a torrent is
/// parked.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut jobs: JoinSet<(Id20, Outcome)> = JoinSet::new();
    loop {
        let now = shared.clock.now();
        let mut next: Option<Time> = None;
        {
            let mut parked = shared.announcer.lock();
            let dht_ready = shared.dht.as_ref().is_some_and(|(_, b)| *b.borrow());
            for (hash, p) in parked.iter_mut() {
                if let Some(t) = p.trackers.as_mut() {
                    if p.out.is_none() && jobs.len() < MAX_OUT {
                        if let Some(job) = t.set.poll_announce(now) {
                            let stats = stats(&p.slot);
                            let client = shared.trackers.clone();
                            let (hash, j) = (*hash, job.clone());
                            jobs.spawn(async move {
                                let r = client.run_job(&j, stats).await;
                                (hash, Outcome::Tracker(Box::new((j, r))))
                            });
                            p.out = Some(job);
                        }
                    }
                    next = min(next, t.set.next_deadline());
                }
                if let (Some(due), false) = (p.dht_due, p.dht_out) {
                    if due <= now && dht_ready && jobs.len() < MAX_OUT {
                        let (dht, _) = shared.dht.as_ref().expect("dht_ready");
                        let (dht, hash, port) = (dht.clone(), *hash, shared.listen_addr.port());
                        jobs.spawn(async move {
                            let acked = match dht.announce(hash, Some(port)).await {
                                Ok(r) => r.acked,
                                Err(e) => {
                                    debug!("DHT announce failed: {e}");
                                    0
                                }
                            };
                            (hash, Outcome::Dht(acked))
                        });
                        p.dht_out = true;
                    } else {
                        // Not bootstrapped yet: look again in a while.
                        next = min(next, Some(due.max(now + Duration::from_secs(5))));
                    }
                }
            }
        }
        let wake = next.map(|t| tokio::time::Instant::from_std(shared.clock.instant(t)));
        tokio::select! {
            _ = shared.announcer.kick.notified() => {}
            _ = sleep_until(wake) => {}
            Some(Ok((hash, outcome))) = jobs.join_next() => on_outcome(&shared, hash, outcome),
        }
    }
}

fn min(a: Option<Time>, b: Option<Time>) -> Option<Time> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn stats(slot: &Slot) -> Stats {
    let s = slot.spec.status.borrow();
    Stats {
        uploaded: s.uploaded,
        downloaded: s.downloaded,
        left: s.total_bytes.saturating_sub(s.verified_bytes),
    }
}

fn on_outcome(shared: &Arc<Shared>, hash: Id20, outcome: Outcome) {
    let now = shared.clock.now();
    let mut wake: Option<(Arc<Slot>, Vec<SocketAddr>)> = None;
    {
        let mut parked = shared.announcer.lock();
        // Woken or stopped meanwhile: the answer is not needed.
        let Some(p) = parked.get_mut(&hash) else {
            return;
        };
        match outcome {
            Outcome::Dht(acked) => {
                info!(%hash, acked, "DHT announce (asleep)");
                p.dht_out = false;
                let wait = if acked == 0 {
                    DHT_RETRY
                } else {
                    crate::dht_source::ANNOUNCE_INTERVAL
                };
                p.dht_due = Some(now + wait);
            }
            Outcome::Tracker(boxed) => {
                let (job, result) = *boxed;
                if p.out.as_ref().map(|j| j.id) != Some(job.id) {
                    return;
                }
                p.out = None;
                let Some(t) = p.trackers.as_mut() else {
                    return;
                };
                let url = job.url.to_string();
                let report = match &result {
                    Ok(reply) => {
                        info!(tracker = %url, %hash, peers = reply.peers.len(), "announce ok (asleep)");
                        t.set.on_response(&job, reply, now);
                        if !reply.peers.is_empty() && reply.leechers != Some(0) {
                            wake = Some((p.slot.clone(), reply.peers.clone()));
                        }
                        TrackerReport {
                            url: url.clone(),
                            ok: true,
                            message: reply.warning.clone().unwrap_or_else(|| "ok".into()),
                            peers: reply.peers.len(),
                        }
                    }
                    Err(e) => {
                        debug!(tracker = %url, "announce failed: {e}");
                        t.set.on_failure(&job, e, now);
                        TrackerReport {
                            url: url.clone(),
                            ok: false,
                            message: e.to_string(),
                            peers: 0,
                        }
                    }
                };
                t.reports.retain(|r| r.url != url);
                t.reports.push(report);
                let reports = t.reports.clone();
                p.slot.spec.status.send_modify(|s| s.trackers = reports);
            }
        }
    }
    // The swarm has leechers we could serve: wake up and dial them, as an awake seed would.
    if let Some((slot, peers)) = wake {
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Some(events) = slot.events(&shared, WAKE_WAIT).await {
                let _ = events.send(Event::AddPeers(peers)).await;
            }
        });
    }
}
