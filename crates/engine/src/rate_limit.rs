//! Rate limits: token buckets (a torrent's own caps) and [`FairShare`] (a session-wide cap
//! shared fairly between torrents). Both are sans-IO: the caller passes the time and sleeps for
//! the returned delay.

use std::collections::HashMap;
use std::time::Duration;

use shoal_core::Time;

/// The smallest burst: one 16 KiB block plus its message header, so a single block can always
/// pass.
const MIN_BURST: u64 = 16 * 1024 + 13;

/// A rate cap that can be made and changed at run time: what [`crate::connection::Caps`]
/// holds one of per direction.
pub trait Cap {
    /// A cap of `rate` bytes per second (0: unlimited).
    fn new(rate: u64, now: Time) -> Self;
    /// The rate, bytes per second (0: unlimited).
    fn rate(&self) -> u64;
    /// Changes the rate from `now` on (0: unlimited).
    fn set_rate(&mut self, rate: u64, now: Time);
}

impl Cap for TokenBucket {
    fn new(rate: u64, now: Time) -> Self {
        TokenBucket::new(rate, now)
    }
    fn rate(&self) -> u64 {
        TokenBucket::rate(self)
    }
    fn set_rate(&mut self, rate: u64, now: Time) {
        TokenBucket::set_rate(self, rate, now)
    }
}

impl Cap for FairShare {
    fn new(rate: u64, now: Time) -> Self {
        FairShare::new(rate, now)
    }
    fn rate(&self) -> u64 {
        FairShare::rate(self)
    }
    fn set_rate(&mut self, rate: u64, now: Time) {
        FairShare::set_rate(self, rate, now)
    }
}

/// A token bucket: `rate` bytes per second, bursts up to `burst` bytes; rate 0 lets everything
/// through at once (no limit).
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    tokens: f64,
    last: Time,
    /// Counts rate changes, so waiting callers can tell their wait is out of date.
    generation: u64,
}

impl TokenBucket {
    /// A bucket refilled at `rate` bytes/s (0: unlimited); the burst is a quarter second of
    /// rate, at least one 16 KiB block plus header so a single block can always pass.
    pub fn new(rate: u64, now: Time) -> Self {
        let burst = burst_of(rate);
        TokenBucket {
            rate,
            burst,
            tokens: burst as f64,
            last: now,
            generation: 0,
        }
    }

    /// The rate, bytes per second (0: unlimited).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Changes with every [`TokenBucket::set_rate`]: a wait computed before is out of date.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Changes the rate from `now` on (0: unlimited). Debt already owed stays (bounded by the
    /// new burst), so changing the rate never lets a burst through.
    pub fn set_rate(&mut self, rate: u64, now: Time) {
        self.refill(now);
        self.generation += 1;
        let was_unlimited = self.rate == 0;
        self.rate = rate;
        self.burst = burst_of(rate);
        self.tokens = if was_unlimited {
            self.burst as f64
        } else {
            self.tokens.clamp(-(self.burst as f64), self.burst as f64)
        };
    }

    fn refill(&mut self, now: Time) {
        let elapsed = now.saturating_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate as f64).min(self.burst as f64);
    }

    /// Takes `n` bytes' worth of tokens. The bucket may go into debt (so a large message is never
    /// stuck); the returned delay is how long the caller must wait before sending more.
    pub fn take(&mut self, n: u64, now: Time) -> Duration {
        self.refill(now);
        if self.rate == 0 {
            return Duration::ZERO;
        }
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate as f64)
        }
    }
}

impl TokenBucket {
    /// How long a caller that took tokens must still wait now (zero once its debt is paid, or
    /// the rate was lifted meanwhile).
    pub fn delay(&mut self, now: Time) -> Duration {
        self.refill(now);
        if self.rate == 0 || self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate as f64)
        }
    }
}

fn burst_of(rate: u64) -> u64 {
    (rate / 4).max(MIN_BURST)
}

/// Identifies who shares a [`FairShare`] cap: one per running torrent.
pub type FlowId = u64;

/// A session-wide cap shared fairly between flows (torrents), however many connections each
/// has: the bytes each flow took and has not yet "paid for" at the cap's rate are its backlog,
/// and backlogs drain as in fluid fair queueing (GPS) — every flow with a backlog is served at
/// the same speed, `rate / backlogged flows`, and a flow's drained share goes to the others.
/// So two busy torrents get half the cap each even if one has ten connections and the other
/// one, while a torrent alone gets all of it (nothing is kept back for flows that do not use
/// it). A flow's wait is how long its backlog takes to drain under that sharing, less the
/// burst the cap allows.
///
/// Memory is bounded by the flows with a backlog: a drained flow is forgotten.
#[derive(Clone, Debug)]
pub struct FairShare {
    rate: u64,
    burst: u64,
    /// Bytes each flow still owes, in no particular order.
    backlog: HashMap<FlowId, f64>,
    last: Time,
    /// Counts rate changes, so waiting callers can tell their wait is out of date.
    generation: u64,
}

impl FairShare {
    /// A cap of `rate` bytes per second (0: unlimited).
    pub fn new(rate: u64, now: Time) -> Self {
        FairShare {
            rate,
            burst: burst_of(rate),
            backlog: HashMap::new(),
            last: now,
            generation: 0,
        }
    }

    /// The cap, bytes per second (0: unlimited).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Changes with every [`FairShare::set_rate`]: a wait computed before is out of date.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Changes the cap from `now` on (0: unlimited, which forgets every backlog).
    pub fn set_rate(&mut self, rate: u64, now: Time) {
        self.drain(now);
        self.generation += 1;
        self.rate = rate;
        self.burst = burst_of(rate);
        if rate == 0 {
            self.backlog.clear();
        }
    }

    /// Flows with bytes still owed (for tests and the status).
    pub fn backlogged(&self) -> usize {
        self.backlog.len()
    }

    /// Serves the backlogs for the time since the last call, equally among the flows that have
    /// one (a flow that empties hands its part to the rest).
    fn drain(&mut self, now: Time) {
        let elapsed = now.saturating_since(self.last).as_secs_f64();
        self.last = now;
        if self.rate == 0 || self.backlog.is_empty() {
            return;
        }
        let mut budget = elapsed * self.rate as f64;
        while budget > 0.0 && !self.backlog.is_empty() {
            let k = self.backlog.len() as f64;
            let smallest = self.backlog.values().copied().fold(f64::INFINITY, f64::min);
            let each = (budget / k).min(smallest);
            budget -= each * k;
            for b in self.backlog.values_mut() {
                *b -= each;
            }
            // Emptied flows leave (a little slack for rounding).
            self.backlog.retain(|_, b| *b > 1e-6);
        }
    }

    /// `flow` moved `n` bytes: returns how long it must wait before moving more.
    pub fn take(&mut self, flow: FlowId, n: u64, now: Time) -> Duration {
        self.drain(now);
        if self.rate == 0 || n == 0 {
            return Duration::ZERO;
        }
        *self.backlog.entry(flow).or_insert(0.0) += n as f64;
        self.wait_of(flow)
    }

    /// How long `flow` must still wait now, for what it took before (zero once its backlog is
    /// paid, or the cap was lifted meanwhile).
    pub fn delay(&mut self, flow: FlowId, now: Time) -> Duration {
        self.drain(now);
        if self.rate == 0 {
            return Duration::ZERO;
        }
        self.wait_of(flow)
    }

    fn wait_of(&self, flow: FlowId) -> Duration {
        let Some(&mine) = self.backlog.get(&flow) else {
            return Duration::ZERO;
        };
        // Under fair sharing, the flow's backlog is gone once every flow has been served
        // `min(its backlog, mine)`.
        let before_mine: f64 = self.backlog.values().map(|&b| b.min(mine)).sum();
        let secs = (before_mine - self.burst as f64) / self.rate as f64;
        if secs > 0.0 {
            Duration::from_secs_f64(secs)
        } else {
            Duration::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_run_rate_matches_the_cap() {
        let rate = 1_000_000;
        let mut now = Time::ZERO;
        let mut bucket = TokenBucket::new(rate, now);
        let mut sent = 0u64;
        // Send 16 KiB blocks as fast as the bucket allows for 10 simulated seconds.
        while now < Time::from_secs(10) {
            let wait = bucket.take(16384, now);
            sent += 16384;
            now += wait.max(Duration::from_micros(1));
        }
        let achieved = sent as f64 / 10.0;
        assert!(achieved < rate as f64 * 1.05, "{achieved}");
        assert!(achieved > rate as f64 * 0.95, "{achieved}");
    }

    #[test]
    fn a_bucket_changes_rate_and_unlimited_passes_everything() {
        let mut now = Time::ZERO;
        let mut bucket = TokenBucket::new(0, now);
        for _ in 0..1000 {
            assert_eq!(bucket.take(1 << 20, now), Duration::ZERO);
        }
        // Limited from now on: no debt carried over from the unlimited time.
        bucket.set_rate(100_000, now);
        let mut sent = 0u64;
        while now < Time::from_secs(10) {
            let wait = bucket.take(16384, now);
            sent += 16384;
            now += wait.max(Duration::from_micros(1));
        }
        let achieved = sent as f64 / 10.0;
        assert!((95_000.0..105_000.0).contains(&achieved), "{achieved}");
        bucket.set_rate(0, now);
        assert_eq!(bucket.take(1 << 30, now), Duration::ZERO);
    }

    /// Greedy connections, each moving `chunk` bytes then waiting what the cap says, for
    /// `secs` simulated seconds; returns the bytes each flow moved in the last `secs - 5`
    /// seconds (the first five are the start-up burst: every connection takes a chunk at once,
    /// paid for later). `conns` lists each connection's flow. Deterministic: the earliest
    /// connection goes next, ties by index.
    fn simulate(cap: &mut FairShare, conns: &[FlowId], chunk: u64, secs: u64) -> Vec<u64> {
        let warm_up = Time::from_secs(5);
        let flows = conns.iter().max().map_or(0, |&m| m as usize + 1);
        let mut moved = vec![0u64; flows];
        let mut next = vec![Time::ZERO; conns.len()];
        let end = Time::from_secs(secs);
        loop {
            let (i, &t) = next
                .iter()
                .enumerate()
                .min_by_key(|(i, t)| (**t, *i))
                .expect("connections");
            if t >= end {
                break;
            }
            let wait = cap.take(conns[i], chunk, t);
            if t >= warm_up {
                moved[conns[i] as usize] += chunk;
            }
            next[i] = t + wait.max(Duration::from_micros(10));
        }
        moved
    }

    #[test]
    fn busy_torrents_share_the_cap_equally_whatever_their_connections() {
        let rate = 1_000_000;
        let mut cap = FairShare::new(rate, Time::ZERO);
        // Torrent 0 has ten connections, torrent 1 one.
        let mut conns = vec![0; 10];
        conns.push(1);
        let moved = simulate(&mut cap, &conns, 65_536, 25);
        let per_sec: Vec<f64> = moved.iter().map(|&b| b as f64 / 20.0).collect();
        for r in &per_sec {
            assert!((450_000.0..560_000.0).contains(r), "{per_sec:?}");
        }
        let total: f64 = per_sec.iter().sum();
        assert!((950_000.0..1_060_000.0).contains(&total), "{total}");
    }

    #[test]
    fn a_torrent_alone_gets_the_whole_cap_and_drained_flows_are_forgotten() {
        let rate = 1_000_000;
        let mut cap = FairShare::new(rate, Time::ZERO);
        let moved = simulate(&mut cap, &[3, 3, 3], 65_536, 15);
        let r = moved[3] as f64 / 10.0;
        assert!((950_000.0..1_060_000.0).contains(&r), "{r}");
        // A second later every backlog is paid: nothing is kept.
        cap.take(3, 0, Time::from_secs(20));
        assert_eq!(cap.backlogged(), 0);
    }

    #[test]
    fn a_waiting_flow_learns_when_the_cap_is_lifted_or_lowered() {
        let mut cap = FairShare::new(100_000, Time::ZERO);
        let wait = cap.take(1, 1_000_000, Time::ZERO);
        assert!(wait > Duration::from_secs(8), "{wait:?}");
        // Half-way through, the delay left has shrunk accordingly.
        let left = cap.delay(1, Time::from_secs(4));
        assert!(left < wait - Duration::from_secs(3), "{left:?}");
        // Lifted: no wait at all; lowered: longer.
        cap.set_rate(200_000, Time::from_secs(4));
        assert!(cap.delay(1, Time::from_secs(4)) < left);
        cap.set_rate(0, Time::from_secs(4));
        assert_eq!(cap.delay(1, Time::from_secs(4)), Duration::ZERO);
        assert_eq!(cap.generation(), 2);
        let mut bucket = TokenBucket::new(100_000, Time::ZERO);
        let wait = bucket.take(1_000_000, Time::ZERO);
        assert_eq!(bucket.delay(Time::ZERO), wait);
        bucket.set_rate(0, Time::from_secs(1));
        assert_eq!(bucket.generation(), 1);
        assert_eq!(bucket.delay(Time::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn the_cap_changes_at_run_time() {
        let mut cap = FairShare::new(1_000_000, Time::ZERO);
        let moved = simulate(&mut cap, &[0, 1], 16_384, 10);
        assert!(moved.iter().sum::<u64>() < 5_300_000, "{moved:?}");
        cap.set_rate(0, Time::from_secs(10));
        assert_eq!(cap.take(0, 1 << 30, Time::from_secs(10)), Duration::ZERO);
        assert_eq!(cap.backlogged(), 0);
    }
}
