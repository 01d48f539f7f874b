//! Token buckets for the global upload and download caps.

use std::time::Duration;

use shoal_core::Time;

/// A token bucket: `rate` bytes per second, bursts up to `burst` bytes. Sans-IO: the caller
/// passes the time and sleeps for the returned delay.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    tokens: f64,
    last: Time,
}

impl TokenBucket {
    /// A bucket refilled at `rate` bytes/s; the burst is a quarter second of rate, at least one
    /// 16 KiB block plus header so a single block can always pass.
    pub fn new(rate: u64, now: Time) -> Self {
        let burst = (rate / 4).max(16 * 1024 + 13);
        TokenBucket {
            rate,
            burst,
            tokens: burst as f64,
            last: now,
        }
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
        self.tokens -= n as f64;
        if self.tokens >= 0.0 || self.rate == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate as f64)
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
}
