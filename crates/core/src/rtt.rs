//! Round-trip time estimation and retransmission-style timeouts (the failure detector).
//!
//! The algorithm is RFC 6298 ("Computing TCP's Retransmission Timer"): a smoothed mean (SRTT) and a
//! mean deviation (RTTVAR) of the samples, gains alpha = 1/8 and beta = 1/4, and a timeout of
//! `SRTT + 4 * RTTVAR` clamped between a floor and a ceiling. Before the first sample the timeout is
//! a fixed initial value. Every timeout doubles the current timeout (exponential back-off, RFC 6298
//! section 5.5) until a new sample arrives. The same estimator serves block requests to peers,
//! tracker announces and DHT queries; only the [`RttConfig`] differs.

use std::time::Duration;

/// The bounds an [`RttEstimator`] works within.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RttConfig {
    /// The timeout used before any sample has been taken (RFC 6298 2.1 says 1 s).
    pub initial: Duration,
    /// The lowest timeout ever returned (RFC 6298 2.4 says 1 s for TCP; a DHT may want less).
    pub floor: Duration,
    /// The highest timeout ever returned, back-off included (RFC 6298 2.5 allows 60 s, which is
    /// also libtorrent's default `request_timeout` ceiling for peers).
    pub ceiling: Duration,
}

impl Default for RttConfig {
    /// RFC 6298's numbers: 1 s initial, 1 s floor, 60 s ceiling.
    fn default() -> Self {
        RttConfig {
            initial: Duration::from_secs(1),
            floor: Duration::from_secs(1),
            ceiling: Duration::from_secs(60),
        }
    }
}

/// Smoothed RTT, its deviation, and the timeout derived from them (RFC 6298).
///
/// Feed it with [`sample`](Self::sample) when a response arrives (only for requests that were not
/// retried, Karn's rule), ask [`timeout`](Self::timeout) when sending, and call
/// [`on_timeout`](Self::on_timeout) when a deadline passes without an answer.
#[derive(Clone, Debug)]
pub struct RttEstimator {
    config: RttConfig,
    /// `(srtt, rttvar)`, `None` before the first sample.
    stats: Option<(Duration, Duration)>,
    /// How many times the timeout has been doubled since the last sample.
    backoff: u32,
}

/// Back-off stops doubling after this many timeouts in a row; the ceiling is hit long before.
const MAX_BACKOFF_SHIFT: u32 = 16;

impl RttEstimator {
    /// A fresh estimator with no sample yet.
    pub fn new(config: RttConfig) -> Self {
        RttEstimator {
            config,
            stats: None,
            backoff: 0,
        }
    }

    /// Records one measured round trip and clears any back-off.
    pub fn sample(&mut self, rtt: Duration) {
        self.stats = Some(match self.stats {
            // RFC 6298 2.2: SRTT <- R, RTTVAR <- R/2.
            None => (rtt, rtt / 2),
            // RFC 6298 2.3: RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R|, then SRTT <- 7/8 SRTT + 1/8 R.
            Some((srtt, rttvar)) => {
                let err = srtt.abs_diff(rtt);
                let rttvar = rttvar * 3 / 4 + err / 4;
                let srtt = srtt * 7 / 8 + rtt / 8;
                (srtt, rttvar)
            }
        });
        self.backoff = 0;
    }

    /// Doubles the timeout (up to the ceiling) after a deadline passed without an answer.
    pub fn on_timeout(&mut self) {
        self.backoff = (self.backoff + 1).min(MAX_BACKOFF_SHIFT);
    }

    /// The smoothed round-trip time, if any sample was taken.
    pub fn smoothed(&self) -> Option<Duration> {
        self.stats.map(|(s, _)| s)
    }

    /// The mean deviation of the round-trip time, if any sample was taken.
    pub fn deviation(&self) -> Option<Duration> {
        self.stats.map(|(_, v)| v)
    }

    /// How long to wait for an answer to a request sent now.
    pub fn timeout(&self) -> Duration {
        let base = match self.stats {
            None => self.config.initial,
            Some((srtt, rttvar)) => srtt.saturating_add(rttvar.saturating_mul(4)),
        };
        let base = base.max(self.config.floor).min(self.config.ceiling);
        base.saturating_mul(1u32 << self.backoff)
            .min(self.config.ceiling)
    }
}

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator::new(RttConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    fn open() -> RttEstimator {
        RttEstimator::new(RttConfig {
            initial: ms(3000),
            floor: ms(1),
            ceiling: ms(120_000),
        })
    }

    #[test]
    fn initial_timeout_before_any_sample() {
        let e = open();
        assert_eq!(e.timeout(), ms(3000));
        assert_eq!(e.smoothed(), None);
        assert_eq!(RttEstimator::default().timeout(), Duration::from_secs(1));
    }

    #[test]
    fn first_sample_sets_mean_and_half_deviation() {
        let mut e = open();
        e.sample(ms(400));
        assert_eq!(e.smoothed(), Some(ms(400)));
        assert_eq!(e.deviation(), Some(ms(200)));
        // 400 + 4 * 200
        assert_eq!(e.timeout(), ms(1200));
    }

    #[test]
    fn later_samples_use_alpha_eighth_and_beta_quarter() {
        let mut e = open();
        e.sample(ms(400));
        e.sample(ms(800));
        // rttvar = 3/4 * 200 + 1/4 * |400 - 800| = 150 + 100 = 250
        // srtt = 7/8 * 400 + 1/8 * 800 = 350 + 100 = 450
        assert_eq!(e.deviation(), Some(ms(250)));
        assert_eq!(e.smoothed(), Some(ms(450)));
        assert_eq!(e.timeout(), ms(450 + 4 * 250));
    }

    #[test]
    fn steady_samples_converge() {
        let mut e = open();
        for _ in 0..200 {
            e.sample(ms(100));
        }
        assert_eq!(e.smoothed(), Some(ms(100)));
        assert!(e.deviation().unwrap() < ms(1));
        assert!(e.timeout() < ms(104));
    }

    #[test]
    fn floor_and_ceiling_clamp() {
        let mut e = RttEstimator::new(RttConfig {
            initial: ms(500),
            floor: ms(200),
            ceiling: ms(2000),
        });
        for _ in 0..100 {
            e.sample(ms(10));
        }
        assert_eq!(e.timeout(), ms(200));
        e.sample(ms(60_000));
        assert_eq!(e.timeout(), ms(2000));
    }

    #[test]
    fn timeouts_back_off_exponentially_until_a_sample() {
        let mut e = open();
        e.sample(ms(400)); // timeout 1200
        e.on_timeout();
        assert_eq!(e.timeout(), ms(2400));
        e.on_timeout();
        assert_eq!(e.timeout(), ms(4800));
        for _ in 0..100 {
            e.on_timeout();
        }
        assert_eq!(e.timeout(), ms(120_000));
        e.sample(ms(400));
        assert!(e.timeout() < ms(2400));
    }

    #[test]
    fn initial_timeout_backs_off_too() {
        let mut e = open();
        e.on_timeout();
        assert_eq!(e.timeout(), ms(6000));
    }
}
