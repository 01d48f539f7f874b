//! Trackers as a peer source: a task per torrent drives the sans-IO [`TrackerSet`] through the
//! session's [`TrackerClient`], feeds the peers it learns to the torrent actor, and reports each
//! tracker's last result for the progress display.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal_core::Id20;
use shoal_tracker::{Stats, TierConfig, TrackerClient, TrackerSet};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::clock::{sleep_until, Clock};
use crate::status::{TorrentStatus, TrackerReport};
use crate::torrent::Event;

/// How long shutdown waits for `stopped` announces.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the task is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    /// Announce on schedule.
    Run,
    /// Send `stopped` and end.
    Stop,
    /// End without telling the trackers, handing the schedule back (the torrent goes to sleep;
    /// the session's announcer keeps announcing it).
    Park,
}

/// A torrent's trackers and their schedule, taken out of a task ([`TrackerTask::park`]) to be
/// driven by someone else.
pub struct ParkedTrackers {
    /// The schedule.
    pub set: TrackerSet,
    /// Each tracker's last result.
    pub reports: Vec<TrackerReport>,
}

/// The running tracker task of one torrent.
pub struct TrackerTask {
    command: watch::Sender<Command>,
    join: JoinHandle<Option<ParkedTrackers>>,
}

impl TrackerTask {
    /// Sends `stopped` to the trackers (bounded) and ends the task.
    /// Returns as soon as every tracker has answered `stopped` or failed; [`STOP_GRACE`] is
    /// a bound, not a wait.
    pub async fn stop(mut self) {
        let _ = self.command.send(Command::Stop);
        if tokio::time::timeout(STOP_GRACE + Duration::from_secs(1), &mut self.join)
            .await
            .is_err()
        {
            self.join.abort();
        }
    }

    /// Ends the task without telling the trackers and returns their schedule, once the
    /// announce in flight (if any) has its answer (bounded by the request time-out).
    pub async fn park(self) -> Option<ParkedTrackers> {
        let TrackerTask { command, join } = self;
        let _ = command.send(Command::Park);
        // `command` lives until the answer: a dropped sender would mean stop.
        let parked = join.await.ok().flatten();
        drop(command);
        parked
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

impl TrackerSource {
    /// The torrent's trackers and their schedule (the first announce due at once); `None`
    /// when it has no usable tracker.
    pub fn build(self) -> Option<TrackerSet> {
        let set = TrackerSet::new(
            self.info_hash,
            self.peer_id,
            self.listen.port(),
            &self.tiers,
            self.config,
            rand::random(),
        );
        for (url, err) in set.rejected() {
            warn!("tracker {url} skipped: {err}");
        }
        // Done at once: no usable tracker.
        (!set.is_done()).then_some(set)
    }
}

/// Starts the task; `None` when the torrent has no usable tracker.
pub fn spawn(
    source: TrackerSource,
    client: Arc<TrackerClient>,
    status: crate::status_watch::StatusReceiver,
    events: mpsc::Sender<Event>,
    clock: Clock,
) -> Option<TrackerTask> {
    let set = source.build()?;
    Some(resume(
        ParkedTrackers {
            set,
            reports: Vec::new(),
        },
        client,
        status,
        events,
        clock,
    ))
}

/// Starts the task with a schedule taken from elsewhere (a torrent waking up).
pub fn resume(
    parked: ParkedTrackers,
    client: Arc<TrackerClient>,
    status: crate::status_watch::StatusReceiver,
    events: mpsc::Sender<Event>,
    clock: Clock,
) -> TrackerTask {
    let (command, command_rx) = watch::channel(Command::Run);
    let join = tokio::spawn(run(parked, client, status, events, clock, command_rx));
    TrackerTask { command, join }
}

fn stats(s: &TorrentStatus) -> Stats {
    Stats {
        uploaded: s.uploaded,
        downloaded: s.downloaded,
        left: s.total_bytes.saturating_sub(s.verified_bytes),
    }
}

async fn run(
    parked: ParkedTrackers,
    client: Arc<TrackerClient>,
    mut status: crate::status_watch::StatusReceiver,
    events: mpsc::Sender<Event>,
    clock: Clock,
    mut stop: watch::Receiver<Command>,
) -> Option<ParkedTrackers> {
    let ParkedTrackers {
        mut set,
        mut reports,
    } = parked;
    // A torrent that starts complete never sends `completed` (BEP 3: only on finishing).
    let mut completed_sent = status.borrow().is_complete();
    // Set once shutdown began: `stopped` announces must end by then.
    let mut stop_deadline: Option<tokio::time::Instant> = None;
    // Whether the set has been told to stop (it is, right after the job in flight).
    let mut set_stopped = false;
    // A command may have come before the task first ran.
    let mut command = *stop.borrow_and_update();
    // A download that finished just before shutdown (before this task saw the change) is
    // still reported `completed`, ahead of `stopped`.
    let mut note_completion =
        |set: &mut TrackerSet, status: &crate::status_watch::StatusReceiver, now| {
            if !completed_sent && status.borrow().is_complete() {
                completed_sent = true;
                set.completed(now);
            }
        };
    loop {
        if command == Command::Stop && stop_deadline.is_none() {
            stop_deadline = Some(tokio::time::Instant::now() + STOP_GRACE);
            note_completion(&mut set, &status, clock.now());
            set.stop(clock.now());
            set_stopped = true;
        }
        loop {
            // Parking takes no new job: the one out has had its answer.
            if command == Command::Park && stop_deadline.is_none() {
                break;
            }
            let Some(job) = set.poll_announce(clock.now()) else {
                break;
            };
            let s = stats(&status.borrow());
            let url = job.url.to_string();
            let announce = client.run_job(&job, s);
            tokio::pin!(announce);
            // A regular announce gives way to shutdown (its tracker is told `stopped` instead);
            // `started`, `completed` and `stopped` get what is left of the grace period, so a
            // download that ends at once still counts as completed at the tracker.
            let result = loop {
                tokio::select! {
                    r = &mut announce => break Some(r),
                    _ = sleep_until(stop_deadline) => return None,
                    r = stop.changed(), if stop_deadline.is_none() => {
                        // Parking waits for this answer, so the schedule stays whole. A
                        // dropped handle stops.
                        command = next_command(r, &mut stop);
                        if command == Command::Stop {
                            stop_deadline = Some(tokio::time::Instant::now() + STOP_GRACE);
                        }
                    }
                }
                if stop_deadline.is_some() && job.event == shoal_tracker::Event::None {
                    break None;
                }
            };
            let now = clock.now();
            let Some(result) = result else {
                // Abandoned for shutdown: the set must not wait for this job's answer.
                set.on_failure(
                    &job,
                    &shoal_tracker::TrackerError::Timeout(Duration::ZERO),
                    now,
                );
                note_completion(&mut set, &status, now);
                set.stop(now);
                set_stopped = true;
                continue;
            };
            let report = match &result {
                Ok(reply) => {
                    info!(tracker = %url, peers = reply.peers.len(), "announce ok");
                    if let Some(w) = &reply.warning {
                        warn!(tracker = %url, "tracker warning: {w}");
                    }
                    if !reply.peers.is_empty() && stop_deadline.is_none() {
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
            if stop_deadline.is_none() {
                let _ = events.send(Event::TrackerReports(reports.clone())).await;
            } else if !set_stopped {
                // Shutdown began while this job was out.
                note_completion(&mut set, &status, now);
                set.stop(now);
                set_stopped = true;
            }
        }
        // Done once every tracker answered `stopped` or failed: shutdown waits no longer.
        if set.is_done() {
            return None;
        }
        if command == Command::Park && stop_deadline.is_none() {
            return Some(ParkedTrackers { set, reports });
        }
        let wake = set
            .next_deadline()
            .map(|t| tokio::time::Instant::from_std(clock.instant(t)));
        tokio::select! {
            _ = sleep_until(wake) => {}
            _ = sleep_until(stop_deadline) => return None,
            changed = status.changed(), if stop_deadline.is_none() => {
                if changed.is_err() {
                    return None;
                }
                note_completion(&mut set, &status, clock.now());
            }
            r = stop.changed(), if stop_deadline.is_none() => {
                command = next_command(r, &mut stop);
            }
        }
    }
}

/// The command after a change (a dropped handle means stop).
fn next_command(
    changed: Result<(), watch::error::RecvError>,
    rx: &mut watch::Receiver<Command>,
) -> Command {
    match changed {
        Ok(()) => *rx.borrow_and_update(),
        Err(_) => Command::Stop,
    }
}
