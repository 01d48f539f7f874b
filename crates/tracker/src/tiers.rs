//! The announce state machine over a torrent's tracker tiers (BEP 12), sans-IO.
//!
//! [`TrackerSet`] decides which tracker to announce to, with which event, and when; the caller
//! performs the request (see [`crate::TrackerClient`]) and reports back. It never reads a clock
//! or touches a socket, so failover and back-off are tested with a made-up `Time`.
//!
//! Rules:
//! - Each tier is shuffled once; a tracker that answers moves to the front of its tier.
//! - An announce round tries trackers in order, tier by tier, and stops at the first answer.
//!   A tracker that fails is skipped until its back-off expires (doubling per consecutive
//!   failure), so a dead first tier costs one time-out, not one per round.
//! - `started` is sent until a tracker accepts it; `completed` once, after it; `stopped` when
//!   leaving, and only if some tracker was told `started`.
//! - The next regular announce comes after the tracker's `interval`, never sooner than its
//!   `min interval`, both clamped to the configured bounds.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use shoal_core::{Id20, Time};

use crate::announce::{AnnounceRequest, AnnounceResponse, Event};
use crate::url::{Scheme, TrackerUrl};
use crate::TrackerError;

/// Most trackers kept per torrent (across tiers); a torrent cannot make us juggle more.
pub const MAX_TRACKERS: usize = 64;

/// Timing and sizes for a [`TrackerSet`].
#[derive(Clone, Debug)]
pub struct TierConfig {
    /// Re-announce interval when the tracker gives none.
    pub default_interval: Duration,
    /// Shortest interval accepted from a tracker (lower values are raised to this).
    pub min_interval: Duration,
    /// Longest interval accepted from a tracker (higher values are lowered to this).
    pub max_interval: Duration,
    /// Back-off after a tracker's first consecutive failure; doubled per further failure.
    pub retry_base: Duration,
    /// Longest back-off.
    pub retry_max: Duration,
    /// Time allowed for one announce request, HTTP or UDP (the driver enforces it).
    pub request_timeout: Duration,
    /// Peers asked for in regular announces (`stopped` asks for 0).
    pub numwant: u32,
    /// Keep `https://` trackers (true: the client speaks TLS; false leaves them out, e.g. for a
    /// client built without it).
    pub https: bool,
}

impl Default for TierConfig {
    fn default() -> Self {
        TierConfig {
            default_interval: Duration::from_secs(1800),
            min_interval: Duration::from_secs(60),
            max_interval: Duration::from_secs(4 * 3600),
            retry_base: Duration::from_secs(15),
            retry_max: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(30),
            numwant: 50,
            https: true,
        }
    }
}

/// The torrent's transfer counters at announce time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes uploaded since `started`.
    pub uploaded: u64,
    /// Bytes downloaded since `started`.
    pub downloaded: u64,
    /// Bytes still missing.
    pub left: u64,
}

/// One announce to perform, handed out by [`TrackerSet::poll_announce`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceJob {
    /// Identifies the job when its outcome is reported.
    pub id: u64,
    /// The tracker.
    pub url: TrackerUrl,
    /// The event to send.
    pub event: Event,
    /// The time allowed for the request.
    pub timeout: Duration,
    info_hash: Id20,
    peer_id: Id20,
    port: u16,
    key: u32,
    numwant: u32,
    tracker_id: Option<Vec<u8>>,
}

impl AnnounceJob {
    /// The request to send, with the torrent's counters.
    pub fn request(&self, stats: Stats) -> AnnounceRequest {
        AnnounceRequest {
            info_hash: self.info_hash,
            peer_id: self.peer_id,
            port: self.port,
            uploaded: stats.uploaded,
            downloaded: stats.downloaded,
            left: stats.left,
            event: self.event,
            numwant: Some(self.numwant),
            key: self.key,
            tracker_id: self.tracker_id.clone(),
            compact: true,
            ipv6: None,
        }
    }
}

#[derive(Clone, Debug)]
struct Tracker {
    url: TrackerUrl,
    /// Consecutive failures.
    fails: u32,
    /// Not tried before this.
    retry_at: Time,
    tracker_id: Option<Vec<u8>>,
    last_error: Option<String>,
}

/// What a [`TrackerSet`] knows about one tracker, for display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerStatus {
    /// The tracker.
    pub url: TrackerUrl,
    /// Its tier (0 first).
    pub tier: usize,
    /// Consecutive failures (0 once it answers).
    pub fails: u32,
    /// Not tried again before this.
    pub retry_at: Time,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<String>,
}

/// The trackers of one torrent and the announce schedule. See the module docs for the rules.
#[derive(Debug)]
pub struct TrackerSet {
    info_hash: Id20,
    peer_id: Id20,
    port: u16,
    key: u32,
    config: TierConfig,
    tiers: Vec<Vec<Tracker>>,
    rejected: Vec<(String, TrackerError)>,
    next_job: u64,
    /// The job out, and the position (tier, index) of its tracker.
    in_flight: Option<(u64, usize, usize)>,
    /// The position to try next within the current round; `None` between rounds.
    round: Option<(usize, usize)>,
    /// Position of the tracker that answered last.
    last_ok: Option<(usize, usize)>,
    next_announce: Time,
    /// Earliest time a regular (event-less) announce may go out.
    not_before: Time,
    started_acked: bool,
    completed_pending: bool,
    stopping: bool,
    done: bool,
}

impl TrackerSet {
    /// Builds the set from `tiers` (as in `Metainfo::trackers`; a plain `announce` is one tier of
    /// one). Tiers are shuffled with a generator seeded by `seed`, which also picks `key`. URLs
    /// that do not parse, duplicates, schemes the client cannot speak, and trackers beyond
    /// [`MAX_TRACKERS`] are left out and listed by [`TrackerSet::rejected`]. The first announce
    /// (`started`) is due at once.
    pub fn new(
        info_hash: Id20,
        peer_id: Id20,
        port: u16,
        tiers: &[Vec<String>],
        config: TierConfig,
        seed: u64,
    ) -> TrackerSet {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut rejected = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<Vec<Tracker>> = Vec::new();
        for tier in tiers {
            let mut t = Vec::new();
            for s in tier {
                let url = match TrackerUrl::parse(s) {
                    Ok(u) if u.scheme() == Scheme::Https && !config.https => {
                        rejected.push((s.clone(), TrackerError::UnsupportedScheme("https".into())));
                        continue;
                    }
                    Ok(u) => u,
                    Err(e) => {
                        rejected.push((s.clone(), e));
                        continue;
                    }
                };
                if seen.len() >= MAX_TRACKERS {
                    rejected.push((
                        s.clone(),
                        TrackerError::InvalidUrl {
                            url: s.clone(),
                            reason: "more than 64 trackers",
                        },
                    ));
                    continue;
                }
                if !seen.insert(url.clone()) {
                    continue;
                }
                t.push(Tracker {
                    url,
                    fails: 0,
                    retry_at: Time::ZERO,
                    tracker_id: None,
                    last_error: None,
                });
            }
            if !t.is_empty() {
                t.shuffle(&mut rng);
                out.push(t);
            }
        }
        TrackerSet {
            info_hash,
            peer_id,
            port,
            key: rng.random(),
            config,
            tiers: out,
            rejected,
            next_job: 1,
            in_flight: None,
            round: None,
            last_ok: None,
            next_announce: Time::ZERO,
            not_before: Time::ZERO,
            started_acked: false,
            completed_pending: false,
            stopping: false,
            done: false,
        }
    }

    /// Trackers left out at construction, with the reason.
    pub fn rejected(&self) -> &[(String, TrackerError)] {
        &self.rejected
    }

    /// The tiers in their current order (after shuffling and promotions).
    pub fn tiers(&self) -> Vec<Vec<&TrackerUrl>> {
        self.tiers
            .iter()
            .map(|t| t.iter().map(|tr| &tr.url).collect())
            .collect()
    }

    /// Every tracker in order, with its failure count and last error.
    pub fn status(&self) -> Vec<TrackerStatus> {
        self.tiers
            .iter()
            .enumerate()
            .flat_map(|(tier, t)| {
                t.iter().map(move |tr| TrackerStatus {
                    url: tr.url.clone(),
                    tier,
                    fails: tr.fails,
                    retry_at: tr.retry_at,
                    last_error: tr.last_error.clone(),
                })
            })
            .collect()
    }

    /// The tracker that answered last (the one to scrape), if any has.
    pub fn current(&self) -> Option<&TrackerUrl> {
        let (t, i) = self.last_ok?;
        self.tiers.get(t)?.get(i).map(|tr| &tr.url)
    }

    /// True once there is nothing more to send: `stopped` was delivered (or could not be, or
    /// was not needed), or the set has no trackers.
    pub fn is_done(&self) -> bool {
        self.done || self.tiers.is_empty()
    }

    /// The event the next announce carries.
    fn pending_event(&self) -> Event {
        if self.stopping && !(self.completed_pending && self.started_acked) {
            Event::Stopped
        } else if !self.started_acked {
            Event::Started
        } else if self.completed_pending {
            Event::Completed
        } else {
            Event::None
        }
    }

    fn backoff(&self, fails: u32) -> Duration {
        let factor = 1u32 << fails.saturating_sub(1).min(16);
        self.config
            .retry_base
            .saturating_mul(factor)
            .min(self.config.retry_max)
    }

    /// The next announce to perform at `now`, if one is due and none is in flight.
    pub fn poll_announce(&mut self, now: Time) -> Option<AnnounceJob> {
        if self.is_done() || self.in_flight.is_some() || now < self.next_announce {
            return None;
        }
        let (mut t, mut i) = self.round.unwrap_or((0, 0));
        while t < self.tiers.len() {
            if i >= self.tiers[t].len() {
                t += 1;
                i = 0;
                continue;
            }
            if self.tiers[t][i].retry_at <= now {
                return Some(self.make_job(t, i));
            }
            i += 1;
        }
        // Every tracker failed this round or is backing off.
        self.round = None;
        if self.stopping {
            // `stopped` is a courtesy; do not hold up shutdown retrying it.
            self.done = true;
            return None;
        }
        let earliest = self
            .tiers
            .iter()
            .flatten()
            .map(|tr| tr.retry_at)
            .min()
            .unwrap_or(now);
        self.next_announce = earliest.max(now + Duration::from_millis(1));
        None
    }

    fn make_job(&mut self, t: usize, i: usize) -> AnnounceJob {
        let id = self.next_job;
        self.next_job += 1;
        self.in_flight = Some((id, t, i));
        self.round = Some((t, i));
        let event = self.pending_event();
        let tracker = &self.tiers[t][i];
        AnnounceJob {
            id,
            url: tracker.url.clone(),
            event,
            timeout: self.config.request_timeout,
            info_hash: self.info_hash,
            peer_id: self.peer_id,
            port: self.port,
            key: self.key,
            numwant: if event == Event::Stopped {
                0
            } else {
                self.config.numwant
            },
            tracker_id: tracker.tracker_id.clone(),
        }
    }

    fn take_in_flight(&mut self, job: &AnnounceJob) -> Option<(usize, usize)> {
        match self.in_flight {
            Some((id, t, i)) if id == job.id => {
                self.in_flight = None;
                Some((t, i))
            }
            _ => None,
        }
    }

    /// Reports a tracker's answer to `job`. The tracker moves to the front of its tier and the
    /// next announce is scheduled after its interval. Outcomes of unknown or old jobs are ignored.
    pub fn on_response(&mut self, job: &AnnounceJob, resp: &AnnounceResponse, now: Time) {
        let Some((t, i)) = self.take_in_flight(job) else {
            return;
        };
        self.round = None;
        let mut tracker = self.tiers[t].remove(i);
        tracker.fails = 0;
        tracker.retry_at = Time::ZERO;
        tracker.last_error = None;
        if resp.tracker_id.is_some() {
            tracker.tracker_id = resp.tracker_id.clone();
        }
        self.tiers[t].insert(0, tracker);
        self.last_ok = Some((t, 0));

        let clamp = |d: Duration| d.clamp(self.config.min_interval, self.config.max_interval);
        let min = clamp(resp.min_interval.unwrap_or(self.config.min_interval));
        let interval = clamp(resp.interval.unwrap_or(self.config.default_interval)).max(min);
        self.next_announce = now + interval;
        self.not_before = now + min;
        match job.event {
            Event::Started => self.started_acked = true,
            Event::Completed => self.completed_pending = false,
            Event::Stopped => self.done = true,
            Event::None => {}
        }
        // An event that arrived while this job was out goes at once.
        if !self.done && (self.stopping || self.completed_pending) {
            self.next_announce = now;
        }
    }

    /// Reports that `job` failed (refused, garbage, time-out, unreachable). The tracker backs
    /// off, and the next tracker of the round is due at once.
    pub fn on_failure(&mut self, job: &AnnounceJob, err: &TrackerError, now: Time) {
        let Some((t, i)) = self.take_in_flight(job) else {
            return;
        };
        let fails = self.tiers[t][i].fails.saturating_add(1);
        let retry_at = now + self.backoff(fails);
        let tracker = &mut self.tiers[t][i];
        tracker.fails = fails;
        tracker.retry_at = retry_at;
        tracker.last_error = Some(err.to_string());
        if self.last_ok == Some((t, i)) {
            self.last_ok = None;
        }
        self.round = Some((t, i + 1));
        if self.stopping {
            // Leaving: a `completed` that failed is not retried; `stopped` comes next.
            self.completed_pending = false;
        }
        if self.stopping && !self.started_acked {
            // Asked to stop while the first `started` was out, and it failed: no tracker knows us.
            self.done = true;
        }
    }

    /// Call when the download completes: `completed` goes out at once (after `started`, if that
    /// is still pending). Not for torrents that start complete.
    pub fn completed(&mut self, now: Time) {
        if self.done {
            return;
        }
        self.completed_pending = true;
        self.round = None;
        self.next_announce = self.next_announce.min(now);
    }

    /// Call when leaving the swarm: `stopped` goes out at once, with one round of failover and no
    /// retries (after a pending `completed`: a download that finished just before shutdown is
    /// still counted as one). If no tracker ever accepted `started`, there is nothing to send
    /// and the set is done at once.
    pub fn stop(&mut self, now: Time) {
        if self.done {
            return;
        }
        self.stopping = true;
        if !self.started_acked && self.in_flight.is_none() {
            self.done = true;
            return;
        }
        self.round = None;
        for tr in self.tiers.iter_mut().flatten() {
            tr.retry_at = Time::ZERO;
        }
        self.next_announce = now;
    }

    /// Asks for an early announce to get more peers; it goes out at once or when the tracker's
    /// `min interval` allows.
    pub fn force_announce(&mut self, now: Time) {
        if self.is_done() || self.in_flight.is_some() {
            return;
        }
        self.next_announce = self.next_announce.min(self.not_before.max(now));
    }

    /// When [`TrackerSet::poll_announce`] next has something to do; `None` while a job is in
    /// flight (its outcome will tell) or when done.
    pub fn next_deadline(&self) -> Option<Time> {
        if self.is_done() || self.in_flight.is_some() {
            None
        } else {
            Some(self.next_announce)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn set(tiers: &[&[&str]]) -> TrackerSet {
        let tiers: Vec<Vec<String>> = tiers
            .iter()
            .map(|t| t.iter().map(|s| s.to_string()).collect())
            .collect();
        TrackerSet::new(
            Id20([1; 20]),
            Id20([2; 20]),
            6881,
            &tiers,
            TierConfig::default(),
            7,
        )
    }

    fn ok(interval: u64) -> AnnounceResponse {
        AnnounceResponse {
            interval: Some(Duration::from_secs(interval)),
            ..Default::default()
        }
    }

    fn fail() -> TrackerError {
        TrackerError::Timeout(S)
    }

    #[test]
    fn started_then_regular_then_completed_then_stopped() {
        let mut s = set(&[&["http://a/announce"]]);
        let now = Time::ZERO;
        let j = s.poll_announce(now).unwrap();
        assert_eq!(j.event, Event::Started);
        assert!(s.poll_announce(now).is_none(), "one job at a time");
        assert_eq!(s.next_deadline(), None);
        s.on_response(&j, &ok(100), now);
        assert_eq!(s.next_deadline(), Some(Time::from_secs(100)));
        assert!(s.poll_announce(Time::from_secs(99)).is_none());
        let j = s.poll_announce(Time::from_secs(100)).unwrap();
        assert_eq!(j.event, Event::None);
        assert_eq!(j.request(Stats::default()).numwant, Some(50));
        s.on_response(&j, &ok(100), Time::from_secs(100));
        s.completed(Time::from_secs(150));
        let j = s.poll_announce(Time::from_secs(150)).unwrap();
        assert_eq!(j.event, Event::Completed);
        s.on_response(&j, &ok(100), Time::from_secs(150));
        assert_eq!(s.poll_announce(Time::from_secs(200)), None);
        s.stop(Time::from_secs(200));
        let j = s.poll_announce(Time::from_secs(200)).unwrap();
        assert_eq!(j.event, Event::Stopped);
        assert_eq!(j.request(Stats::default()).numwant, Some(0));
        s.on_response(&j, &ok(100), Time::from_secs(200));
        assert!(s.is_done());
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn intervals_respect_min_interval_and_bounds() {
        let mut s = set(&[&["http://a/announce"]]);
        let j = s.poll_announce(Time::ZERO).unwrap();
        let resp = AnnounceResponse {
            interval: Some(Duration::from_secs(5)),
            min_interval: Some(Duration::from_secs(120)),
            ..Default::default()
        };
        s.on_response(&j, &resp, Time::ZERO);
        assert_eq!(s.next_deadline(), Some(Time::from_secs(120)));
        let j = s.poll_announce(Time::from_secs(120)).unwrap();
        s.on_response(&j, &ok(u32::MAX as u64), Time::from_secs(120));
        assert_eq!(s.next_deadline(), Some(Time::from_secs(120 + 4 * 3600)));
        // A forced announce still waits for min interval.
        s.force_announce(Time::from_secs(130));
        assert_eq!(s.next_deadline(), Some(Time::from_secs(180)));
    }

    #[test]
    fn failover_across_tiers_and_promotion_within_a_tier() {
        let mut s = set(&[&["http://a/announce", "http://b/announce"], &["udp://c:1"]]);
        let first_tier: Vec<String> = s.tiers()[0].iter().map(|u| u.to_string()).collect();
        let now = Time::ZERO;
        let j1 = s.poll_announce(now).unwrap();
        assert_eq!(j1.url.to_string(), first_tier[0]);
        s.on_failure(&j1, &fail(), now);
        let j2 = s.poll_announce(now).unwrap();
        assert_eq!(j2.url.to_string(), first_tier[1]);
        assert_eq!(j2.event, Event::Started);
        s.on_failure(&j2, &fail(), now);
        let j3 = s.poll_announce(now).unwrap();
        assert_eq!(j3.url.to_string(), "udp://c:1/");
        s.on_response(&j3, &ok(1800), now);
        // Next round: the first tier again (its back-off has expired by then).
        let t = Time::from_secs(1800);
        let j4 = s.poll_announce(t).unwrap();
        assert_eq!(j4.url.to_string(), first_tier[0]);
        assert_eq!(j4.event, Event::None);
        s.on_failure(&j4, &fail(), t);
        let j5 = s.poll_announce(t).unwrap();
        assert_eq!(j5.url.to_string(), first_tier[1]);
        s.on_response(&j5, &ok(1800), t);
        let now_first: Vec<String> = s.tiers()[0].iter().map(|u| u.to_string()).collect();
        assert_eq!(
            now_first,
            vec![first_tier[1].clone(), first_tier[0].clone()]
        );
    }

    #[test]
    fn failing_trackers_back_off_exponentially() {
        let mut s = set(&[&["http://a/announce"]]);
        let mut now = Time::ZERO;
        let mut waits = Vec::new();
        for _ in 0..10 {
            let j = s.poll_announce(now).unwrap();
            assert_eq!(j.event, Event::Started);
            s.on_failure(&j, &fail(), now);
            assert!(s.poll_announce(now).is_none());
            let next = s.next_deadline().unwrap();
            waits.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(
            waits,
            vec![15, 30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
        );
    }

    #[test]
    fn stop_without_started_sends_nothing_and_failed_stop_gives_up() {
        let mut s = set(&[&["http://a/announce"]]);
        s.stop(Time::ZERO);
        assert!(s.is_done());
        assert!(s.poll_announce(Time::ZERO).is_none());

        let mut s = set(&[&["http://a/announce"], &["http://b/announce"]]);
        let j = s.poll_announce(Time::ZERO).unwrap();
        s.on_response(&j, &ok(1800), Time::ZERO);
        s.stop(Time::from_secs(10));
        let j = s.poll_announce(Time::from_secs(10)).unwrap();
        assert_eq!(j.event, Event::Stopped);
        s.on_failure(&j, &fail(), Time::from_secs(10));
        let j = s.poll_announce(Time::from_secs(10)).unwrap();
        assert_eq!(j.event, Event::Stopped);
        s.on_failure(&j, &fail(), Time::from_secs(10));
        assert!(s.poll_announce(Time::from_secs(10)).is_none());
        assert!(s.is_done());
    }

    #[test]
    fn stop_ends_in_done_as_soon_as_every_tracker_answered_or_failed() {
        // The driver's shutdown: a regular announce in flight is abandoned (reported failed),
        // `stop()` follows, the `stopped` job goes out, and its answer makes the set done with
        // nothing left to wait for.
        let mut s = set(&[&["http://a/announce"]]);
        let j = s.poll_announce(Time::ZERO).unwrap();
        s.on_response(&j, &ok(10), Time::ZERO);
        let regular = s.poll_announce(Time::from_secs(60)).unwrap();
        assert_eq!(regular.event, Event::None);
        s.on_failure(&regular, &fail(), Time::from_secs(61));
        s.stop(Time::from_secs(61));
        assert!(!s.is_done());
        let stopped = s.poll_announce(Time::from_secs(61)).unwrap();
        assert_eq!(stopped.event, Event::Stopped);
        s.on_response(&stopped, &ok(10), Time::from_secs(61));
        assert!(s.is_done());
        assert_eq!(s.next_deadline(), None);
        assert!(s.poll_announce(Time::from_secs(61)).is_none());

        // `stop()` while `started` is out: once `started` is answered, `stopped` follows at once.
        let mut s = set(&[&["http://a/announce"]]);
        let started = s.poll_announce(Time::ZERO).unwrap();
        s.stop(Time::ZERO);
        assert!(!s.is_done(), "the tracker may have taken `started`");
        s.on_response(&started, &ok(10), Time::ZERO);
        let stopped = s.poll_announce(Time::ZERO).unwrap();
        assert_eq!(stopped.event, Event::Stopped);
        s.on_response(&stopped, &ok(10), Time::ZERO);
        assert!(s.is_done());

        // Two tiers: the first answers `stopped`, the second is never asked.
        let mut s = set(&[&["http://a/announce"], &["http://b/announce"]]);
        let j = s.poll_announce(Time::ZERO).unwrap();
        s.on_response(&j, &ok(10), Time::ZERO);
        s.stop(Time::from_secs(1));
        let stopped = s.poll_announce(Time::from_secs(1)).unwrap();
        assert_eq!(stopped.url.to_string(), "http://a:80/announce");
        s.on_response(&stopped, &ok(10), Time::from_secs(1));
        assert!(s.is_done());
    }

    #[test]
    fn completed_just_before_leaving_goes_out_before_stopped() {
        // Finished and told to stop while `started` was out: completed, then stopped.
        let mut s = set(&[&["http://a/announce"]]);
        let started = s.poll_announce(Time::ZERO).unwrap();
        s.completed(Time::ZERO);
        s.stop(Time::ZERO);
        s.on_response(&started, &ok(10), Time::ZERO);
        let j = s.poll_announce(Time::ZERO).unwrap();
        assert_eq!(j.event, Event::Completed);
        s.on_response(&j, &ok(10), Time::ZERO);
        let j = s.poll_announce(Time::ZERO).unwrap();
        assert_eq!(j.event, Event::Stopped);
        s.on_response(&j, &ok(10), Time::ZERO);
        assert!(s.is_done());

        // A `completed` that fails while leaving is not retried: `stopped` goes to the next.
        let mut s = set(&[&["http://a/announce", "http://b/announce"]]);
        let j = s.poll_announce(Time::ZERO).unwrap();
        s.on_response(&j, &ok(10), Time::ZERO);
        s.completed(Time::from_secs(1));
        s.stop(Time::from_secs(1));
        let completed = s.poll_announce(Time::from_secs(1)).unwrap();
        assert_eq!(completed.event, Event::Completed);
        s.on_failure(&completed, &fail(), Time::from_secs(1));
        let j = s.poll_announce(Time::from_secs(1)).unwrap();
        assert_eq!(j.event, Event::Stopped);
        assert_ne!(j.url, completed.url, "the tier's other tracker");

        // Nobody took `started`: nothing to send, `completed` included.
        let mut s = set(&[&["http://a/announce"]]);
        s.completed(Time::ZERO);
        s.stop(Time::ZERO);
        assert!(s.is_done());
        assert!(s.poll_announce(Time::ZERO).is_none());
    }

    #[test]
    fn completed_during_a_job_goes_out_next_and_stale_outcomes_are_ignored() {
        let mut s = set(&[&["http://a/announce"]]);
        let j = s.poll_announce(Time::ZERO).unwrap();
        s.completed(Time::ZERO);
        s.on_failure(
            &AnnounceJob {
                id: 999,
                ..j.clone()
            },
            &fail(),
            Time::ZERO,
        );
        assert_eq!(s.next_deadline(), None, "job still in flight");
        s.on_response(&j, &ok(1800), Time::from_secs(1));
        let j = s.poll_announce(Time::from_secs(1)).unwrap();
        assert_eq!(j.event, Event::Completed);
    }

    #[test]
    fn bad_and_duplicate_urls_are_left_out() {
        let s = set(&[
            &["http://a/announce", "nonsense", "wss://s/announce"],
            &["http://a/announce"],
        ]);
        assert_eq!(s.tiers().len(), 1);
        assert_eq!(s.rejected().len(), 2);
        // https is kept.
        let s = set(&[&["https://s/announce"]]);
        assert_eq!((s.tiers().len(), s.rejected().len()), (1, 0));
        let empty = set(&[]);
        assert!(empty.is_done());
    }

    #[test]
    fn tracker_id_is_sent_back() {
        let mut s = set(&[&["http://a/announce"]]);
        let j = s.poll_announce(Time::ZERO).unwrap();
        let resp = AnnounceResponse {
            tracker_id: Some(b"xyz".to_vec()),
            ..ok(60)
        };
        s.on_response(&j, &resp, Time::ZERO);
        let j = s.poll_announce(Time::from_secs(60)).unwrap();
        assert_eq!(
            j.request(Stats::default()).tracker_id,
            Some(b"xyz".to_vec())
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            Poll,
            Answer(u32),
            Fail,
            Completed,
            Stop,
            Force,
            Wait(u16),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => Just(Op::Poll),
                2 => (0u32..5000).prop_map(Op::Answer),
                2 => Just(Op::Fail),
                1 => Just(Op::Completed),
                1 => Just(Op::Stop),
                1 => Just(Op::Force),
                3 => any::<u16>().prop_map(Op::Wait),
            ]
        }

        proptest! {
            /// Whatever happens: one job at a time, no job before its deadline, `started` before
            /// anything else is acknowledged, nothing after done, and never a panic.
            #[test]
            fn schedule_invariants(ops in proptest::collection::vec(op(), 0..200), seed in any::<u64>()) {
                let tiers = vec![
                    vec!["http://a/announce".to_string(), "udp://b:1".to_string()],
                    vec!["http://c/announce".to_string()],
                ];
                let mut s = TrackerSet::new(Id20([1; 20]), Id20([2; 20]), 1, &tiers, TierConfig::default(), seed);
                let mut now = Time::ZERO;
                let mut job: Option<AnnounceJob> = None;
                let mut acked_started = false;
                for op in ops {
                    match op {
                        Op::Poll => {
                            let deadline = s.next_deadline();
                            if let Some(j) = s.poll_announce(now) {
                                prop_assert!(job.is_none(), "two jobs at once");
                                prop_assert!(deadline.is_some_and(|d| d <= now));
                                if !acked_started && j.event != Event::Stopped {
                                    prop_assert_eq!(j.event, Event::Started);
                                }
                                job = Some(j);
                            }
                        }
                        Op::Answer(secs) => {
                            if let Some(j) = job.take() {
                                acked_started |= j.event == Event::Started;
                                s.on_response(&j, &ok(secs.into()), now);
                            }
                        }
                        Op::Fail => {
                            if let Some(j) = job.take() {
                                s.on_failure(&j, &fail(), now);
                            }
                        }
                        Op::Completed => s.completed(now),
                        Op::Stop => s.stop(now),
                        Op::Force => s.force_announce(now),
                        Op::Wait(secs) => now += Duration::from_secs(secs.into()),
                    }
                    if s.is_done() && job.is_none() {
                        prop_assert!(s.poll_announce(now).is_none());
                        prop_assert!(s.next_deadline().is_none());
                    }
                }
            }
        }
    }
}
