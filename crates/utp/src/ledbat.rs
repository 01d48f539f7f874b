//! LEDBAT congestion control (RFC 6817) as uTP uses it (BEP 29, "congestion control").
//!
//! The sender learns the one-way delay of its packets from the `timestamp_difference_microseconds`
//! the receiver echoes in every acknowledgement. The clocks of the two hosts are unrelated, so
//! only differences matter: the *base delay* is the minimum sample over a sliding history of
//! per-minute minima ([`BASE_HISTORY_MINUTES`] of them, RFC 6817 section 4.2's `BASE_HISTORY`),
//! and the *queuing delay* is the latest sample minus the base. The window then moves by
//!
//! ```text
//! off_target = (TARGET - queuing_delay) / TARGET          (at most 1)
//! cwnd      += GAIN * off_target * bytes_acked * MSS / cwnd
//! ```
//!
//! so it grows by up to `GAIN * MSS` bytes per round trip while the queue is below the target and
//! shrinks in proportion above it (at most halving per round trip). On top of RFC 6817 this has
//! what libtorrent's uTP adds: a slow start (the window grows by the bytes acknowledged, doubling
//! per round trip) until the first loss or until the queuing delay reaches 90 % of the target —
//! then the window halves back to the one that caused that delay a round trip earlier — and
//! TCP's halving on loss, at most once per round trip. A timeout drops the window to one packet (RFC 6817 section 2.4.2 and BEP 29).
//! The window never grows more than `ALLOWED_INCREASE` packets past what was actually in flight
//! (RFC 6817 section 2.4.1), so an application-limited sender does not bank a huge window.

use std::collections::VecDeque;
use std::time::Duration;

use shoal_core::Time;

/// How many one-minute minima the base delay is taken over (RFC 6817 `BASE_HISTORY`, 10). The
/// base delay forgets a route change or a clock that drifted after at most this many minutes.
pub const BASE_HISTORY_MINUTES: usize = 10;
/// RFC 6817 `ALLOWED_INCREASE`: the window may exceed the flight size by this many packets.
pub const ALLOWED_INCREASE: u32 = 2;

/// The tunables of [`Ledbat`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LedbatConfig {
    /// The queuing delay LEDBAT aims for. 100 ms, the value BEP 29 and libtorrent
    /// (`utp_target_delay`) use; RFC 6817 allows at most 100 ms.
    pub target: Duration,
    /// `GAIN` of RFC 6817: how many packets per round trip the window grows by at zero queuing
    /// delay. 1 as the RFC recommends (libtorrent's `utp_gain_factor` of 3000 bytes is about two
    /// of our packets).
    pub gain: f64,
    /// The window right after the connection opens, in packets (RFC 6817 `INIT_CWND`, 2).
    pub initial_window_packets: u32,
    /// The largest window, in bytes; the receive windows of both ends bound it as well.
    pub max_window: u32,
}

impl Default for LedbatConfig {
    fn default() -> Self {
        LedbatConfig {
            target: Duration::from_millis(100),
            gain: 1.0,
            initial_window_packets: 2,
            max_window: 4 << 20,
        }
    }
}

/// The sliding minimum of one-way delay samples: one minimum per minute, the last
/// [`BASE_HISTORY_MINUTES`] minutes kept.
///
/// Samples are raw `timestamp_difference_microseconds` values, differences of two unrelated
/// 32-bit microsecond clocks, so they are compared with wrapping arithmetic.
#[derive(Clone, Debug, Default)]
pub struct DelayHistory {
    minima: VecDeque<u32>,
    minute_start: Option<Time>,
    base: Option<u32>,
}

/// `a` is below `b` on the wrapping 32-bit circle.
fn wrapping_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl DelayHistory {
    /// Records one sample taken at `now` and returns its queuing delay (the sample minus the
    /// base delay).
    pub fn add_sample(&mut self, now: Time, sample: u32) -> Duration {
        let new_minute = match self.minute_start {
            None => true,
            Some(start) => now.saturating_since(start) >= Duration::from_secs(60),
        };
        if new_minute {
            self.minute_start = Some(now);
            if self.minima.len() == BASE_HISTORY_MINUTES {
                self.minima.pop_front();
            }
            self.minima.push_back(sample);
            self.base = self
                .minima
                .iter()
                .copied()
                .reduce(|a, b| if wrapping_lt(b, a) { b } else { a });
        } else if let Some(last) = self.minima.back_mut() {
            if wrapping_lt(sample, *last) {
                *last = sample;
            }
        }
        match self.base {
            Some(base) if wrapping_lt(sample, base) => {
                self.base = Some(sample);
                Duration::ZERO
            }
            Some(base) => Duration::from_micros(u64::from(sample.wrapping_sub(base))),
            None => Duration::ZERO,
        }
    }

    /// The current base delay sample, if any sample was taken.
    pub fn base(&self) -> Option<u32> {
        self.base
    }
}

/// The congestion window of one connection.
#[derive(Clone, Debug)]
pub struct Ledbat {
    config: LedbatConfig,
    /// Bytes; a float so that sub-byte increments from many small acks add up.
    cwnd: f64,
    slow_start: bool,
    history: DelayHistory,
    queuing_delay: Option<Duration>,
    last_cut: Option<Time>,
}

impl Ledbat {
    /// A window of `initial_window_packets` packets of `mss` bytes.
    pub fn new(config: LedbatConfig, mss: u32) -> Self {
        let cwnd = f64::from(config.initial_window_packets.max(1)) * f64::from(mss);
        Ledbat {
            config,
            cwnd: cwnd.min(f64::from(config.max_window)),
            slow_start: true,
            history: DelayHistory::default(),
            queuing_delay: None,
            last_cut: None,
        }
    }

    /// The congestion window in bytes.
    pub fn window(&self) -> u32 {
        self.cwnd as u32
    }

    /// Whether the window is still in slow start.
    pub fn in_slow_start(&self) -> bool {
        self.slow_start
    }

    /// The latest queuing delay estimate.
    pub fn queuing_delay(&self) -> Option<Duration> {
        self.queuing_delay
    }

    /// The configuration.
    pub fn config(&self) -> &LedbatConfig {
        &self.config
    }

    /// An acknowledgement for `bytes_acked` new bytes arrived at `now`, carrying the peer's
    /// one-way delay sample `delay_sample` (`timestamp_difference_microseconds`; `None` or zero
    /// means no sample). `flight_before` is the flight size the growth is capped against (the
    /// largest flight of the last round trip: the connection tracks it) and `mss` the current
    /// packet payload size.
    pub fn on_ack(
        &mut self,
        now: Time,
        bytes_acked: u32,
        delay_sample: Option<u32>,
        flight_before: u32,
        mss: u32,
    ) {
        if let Some(sample) = delay_sample.filter(|&s| s != 0) {
            self.queuing_delay = Some(self.history.add_sample(now, sample));
        }
        if bytes_acked == 0 {
            return;
        }
        let target = self.config.target.as_secs_f64().max(1e-6);
        let queuing = self.queuing_delay.unwrap_or(Duration::ZERO).as_secs_f64();
        // At most 1 above (growth of GAIN packets per round trip); below, the decrease is
        // proportional to how far the queue is over the target, bounded per ack so that a
        // round trip of acks at most halves the window (no faster than TCP, RFC 6817 2.4.2).
        let off_target = ((target - queuing) / target).min(1.0);
        let mss_f = f64::from(mss.max(1));
        let cwnd = self.cwnd.max(mss_f);
        let acked = f64::from(bytes_acked);
        let mut delta = (self.config.gain * off_target * acked * mss_f / cwnd).max(-acked / 2.0);
        if self.slow_start {
            if queuing > 0.9 * target {
                // The delay that ends slow start was caused by the window of one round trip
                // ago, half of today's: go back to it instead of draining the overshoot one
                // packet per round trip.
                self.slow_start = false;
                self.cwnd = (self.cwnd / 2.0).max(mss_f);
                return;
            }
            delta = delta.max(acked);
        }
        let old = self.cwnd;
        let mut new = self.cwnd + delta;
        if delta > 0.0 {
            // RFC 6817 2.4.1: no more than ALLOWED_INCREASE packets beyond the flight size, or
            // the bytes this ack covers if more (one coalesced ack may cover a whole window,
            // and slow start must still double).
            let cap = f64::from(flight_before) + (f64::from(ALLOWED_INCREASE) * mss_f).max(acked);
            new = new.min(cap.max(old));
        }
        self.cwnd = new.clamp(mss_f, f64::from(self.config.max_window).max(mss_f));
    }

    /// A packet was lost (duplicate acks or selective acks): halve the window, at most once per
    /// `rtt`, and leave slow start.
    pub fn on_loss(&mut self, now: Time, rtt: Duration, mss: u32) {
        self.slow_start = false;
        if let Some(last) = self.last_cut {
            if now.saturating_since(last) < rtt {
                return;
            }
        }
        self.last_cut = Some(now);
        self.cwnd = (self.cwnd / 2.0).max(f64::from(mss.max(1)));
    }

    /// The retransmission timer fired: one packet.
    pub fn on_timeout(&mut self, mss: u32) {
        self.slow_start = false;
        self.cwnd = f64::from(mss.max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u32 = 1000;

    fn ms(x: u64) -> Duration {
        Duration::from_millis(x)
    }

    /// A window out of slow start with `packets` packets.
    fn steady(packets: u32) -> Ledbat {
        let mut l = Ledbat::new(LedbatConfig::default(), MSS);
        l.slow_start = false;
        l.cwnd = f64::from(packets * MSS);
        l
    }

    /// Acks one full window with every packet seeing `delay_us` one-way delay.
    fn ack_window(l: &mut Ledbat, now: Time, delay_us: u32) {
        let packets = l.window() / MSS;
        for _ in 0..packets {
            let w = l.window();
            l.on_ack(now, MSS, Some(delay_us), w, MSS);
        }
    }

    #[test]
    fn grows_when_delay_is_below_target() {
        let mut l = steady(10);
        // Base delay 20 ms, then 20 ms samples: zero queuing, full gain: ~1 packet per RTT.
        ack_window(&mut l, Time::ZERO, 20_000);
        let w = l.window();
        assert!(w > 10 * MSS && w <= 11 * MSS + 1, "{w}");
        assert_eq!(l.queuing_delay(), Some(Duration::ZERO));
    }

    #[test]
    fn shrinks_when_delay_is_above_target() {
        let mut l = steady(10);
        l.on_ack(Time::ZERO, 0, Some(20_000), 0, MSS); // base 20 ms
        ack_window(&mut l, Time::from_millis(10), 20_000 + 180_000); // 180 ms queued
        assert!(l.window() < 10 * MSS, "{}", l.window());
        assert_eq!(l.queuing_delay(), Some(ms(180)));
    }

    #[test]
    fn holds_at_target() {
        let mut l = steady(10);
        l.on_ack(Time::ZERO, 0, Some(5_000), 0, MSS);
        ack_window(&mut l, Time::from_millis(10), 105_000);
        assert_eq!(l.window(), 10 * MSS);
    }

    #[test]
    fn halves_on_loss_once_per_rtt() {
        let mut l = steady(16);
        l.on_loss(Time::from_secs(1), ms(100), MSS);
        assert_eq!(l.window(), 8 * MSS);
        l.on_loss(Time::from_millis(1050), ms(100), MSS);
        assert_eq!(
            l.window(),
            8 * MSS,
            "second loss in the same RTT is ignored"
        );
        l.on_loss(Time::from_millis(1150), ms(100), MSS);
        assert_eq!(l.window(), 4 * MSS);
        for i in 0..10 {
            l.on_loss(Time::from_secs(2 + i), ms(100), MSS);
        }
        assert_eq!(l.window(), MSS, "never below one packet");
    }

    #[test]
    fn timeout_drops_to_one_packet() {
        let mut l = steady(30);
        l.on_timeout(MSS);
        assert_eq!(l.window(), MSS);
    }

    #[test]
    fn slow_start_doubles_until_delay_builds() {
        let mut l = Ledbat::new(LedbatConfig::default(), MSS);
        assert_eq!(l.window(), 2 * MSS);
        ack_window(&mut l, Time::ZERO, 1000);
        assert_eq!(l.window(), 4 * MSS);
        ack_window(&mut l, Time::ZERO, 1000);
        assert_eq!(l.window(), 8 * MSS);
        // Queue builds past 90 % of the target: slow start ends, back to the window that built it.
        let w = l.window();
        l.on_ack(Time::ZERO, MSS, Some(1000 + 95_000), w, MSS);
        assert!(!l.in_slow_start());
        assert_eq!(l.window(), 4 * MSS);
    }

    #[test]
    fn application_limited_sender_does_not_inflate() {
        let mut l = steady(10);
        for _ in 0..1000 {
            l.on_ack(Time::ZERO, MSS, Some(1000), MSS, MSS); // one packet in flight each time
        }
        assert_eq!(l.window(), 10 * MSS);
    }

    #[test]
    fn base_delay_is_a_sliding_minimum_over_minutes() {
        let mut h = DelayHistory::default();
        assert_eq!(h.add_sample(Time::ZERO, 50_000), Duration::ZERO);
        assert_eq!(h.add_sample(Time::from_secs(1), 70_000), ms(20));
        // A lower sample in a later minute lowers the base.
        assert_eq!(h.add_sample(Time::from_secs(61), 40_000), Duration::ZERO);
        assert_eq!(h.base(), Some(40_000));
        // After BASE_HISTORY_MINUTES more minutes of higher samples the old minimum is gone.
        for m in 0..BASE_HISTORY_MINUTES as u64 {
            h.add_sample(Time::from_secs(122 + 61 * m), 60_000);
        }
        assert_eq!(h.base(), Some(60_000));
    }

    #[test]
    fn delay_samples_wrap() {
        let mut h = DelayHistory::default();
        h.add_sample(Time::ZERO, u32::MAX - 1000);
        // 2000 us later on the wrapping circle.
        assert_eq!(h.add_sample(Time::ZERO, 1000), Duration::from_micros(2001));
        assert_eq!(h.base(), Some(u32::MAX - 1000));
    }
}
