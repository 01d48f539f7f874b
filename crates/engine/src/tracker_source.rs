//! Trackers as a peer source: a task per torrent drives the sans-IO [`TrackerSet`] through the
//! session's [`TrackerClient`], feeds the peers it learns to the torrent actor, and reports each
//! tracker's last result for the progress display.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use shoal_core::Id20;
use shoal_tracker::{Stats, TierConfig, TrackerClient, TrackerSet};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::status::{TorrentStatus, TrackerReport};
use crate::torrent::Event;

/// How long shutdown waits for `stopped` announces.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The running tracker task of one torrent.
pub struct TrackerTask {
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
}

impl TrackerTask {
    /// Sends `stopped` to the trackers (bounded) and ends the task.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(STOP_GRACE + Duration::from_secs(1), self.join).await;
    }
}

/// Everything the task needs.
pub struct TrackerSource {
    /// The torrent.
    pub info_hash: Id20,
    /// Our peer id.
    pub peer_id: Id20,
    /// Our listen address (its port is announced).
    pub listen: SocketAddr,
    /// Tracker tiers.
    pub tiers: Vec<Vec<String>>,
    /// Timing of announces and failover.
    pub config: TierConfig,
}

/// Starts the task; `None` when the torrent has no usable tracker.
pub fn spawn(
    source: TrackerSource,
    client: Arc<TrackerClient>,
    status: watch::Receiver<TorrentStatus>,
    events: mpsc::Sender<Event>,
    clock: Clock,
) -> Option<TrackerTask> {
    let set = TrackerSet::new(
        source.info_hash,
        source.peer_id,
        source.listen.port(),
        &source.tiers,
        source.config,
        rand::random(),
    );
    for (url, err) in set.rejected() {
        warn!("tracker {url} skipped: {err}");
    }
    if set.current().is_none() {
        return None;
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let join = tokio::spawn(run(set, client, status, events, clock, stop_rx));
    Some(TrackerTask {
        stop: stop_tx,
        join,
    })
}

fn stats(s: &TorrentStatus) -> Stats {
    Stats {
        uploaded: s.uploaded,
        downloaded: s.downloaded,
        left: s.total_bytes.saturating_sub(s.verified_bytes),
    }
}

async fn run(
    mut set: TrackerSet,
    client: Arc<TrackerClient>,
    mut status: watch::Receiver<TorrentStatus>,
    events: mpsc::Sender<Event>,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) {
    // A torrent that starts complete never sends `completed` (BEP 3: only on finishing).
    let mut completed_sent = status.borrow().is_complete();
    let mut stopping = false;
    let mut stop_deadline = None;
    let mut reports: Vec<TrackerReport> = Vec::new();
    while !set.is_done() {
        while let Some(job) = set.poll_announce(clock.now()) {
            let s = stats(&status.borrow());
            let url = job.url.to_string();
            let result = client.run_job(&job, s).await;
            let now = clock.now();
            let report = match &result {
                Ok(reply) => {
                    info!(tracker = %url, peers = reply.peers.len(), "announce ok");
                    if let Some(w) = &reply.warning {
                        warn!(tracker = %url, "tracker warning: {w}");
                    }
                    if !reply.peers.is_empty() && !stopping {
                        let _ = events.send(Event::AddPeers(reply.peers.clone())).await;
                    }
                    set.on_response(&job, reply, now);
                    TrackerReport {
                        url: url.clone(),
                        ok: true,
                        message: reply.warning.clone().unwrap_or_else(|| "ok".into()),
                        peers: reply.peers.len(),
                    }
                }
                Err(e) => {
                    debug!(tracker = %url, "announce failed: {e}");
                    set.on_failure(&job, e, now);
                    TrackerReport {
                        url: url.clone(),
                        ok: false,
                        message: e.to_string(),
                        peers: 0,
                    }
                }
            };
            reports.retain(|r| r.url != url);
            reports.push(report);
            let _ = events.send(Event::TrackerReports(reports.clone())).await;
            if stop_deadline.is_some_and(|d: tokio::time::Instant| tokio::time::Instant::now() >= d)
            {
                return;
            }
        }
        let wake = set
            .next_deadline()
            .map(|t| tokio::time::Instant::from_std(clock.instant(t)));
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let give_up = async {
            match stop_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = give_up => return,
            changed = status.changed(), if !stopping => {
                if changed.is_err() {
                    return;
                }
                if !completed_sent && status.borrow().is_complete() {
                    completed_sent = true;
                    set.completed(clock.now());
                }
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                stop_deadline = Some(tokio::time::Instant::now() + STOP_GRACE);
                set.stop(clock.now());
            }
        }
    }
}

/// Whether an address may be used as the source of tracker traffic.
pub fn bind_v4(listen: SocketAddr) -> Option<std::net::Ipv4Addr> {
    match listen.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}
