use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in time for sans-IO code: the time elapsed since an arbitrary origin chosen by the driver.
///
/// Protocol state machines never read a clock; they are handed a `Time` with each input. The tokio
/// layer maps `Instant`s onto it (`Time::from_duration(instant - origin)`), and simulations simply
/// count up from [`Time::ZERO`], so tests are deterministic.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Time(Duration);

impl Time {
    /// The origin.
    pub const ZERO: Time = Time(Duration::ZERO);

    /// The time `d` after the origin.
    pub const fn from_duration(d: Duration) -> Self {
        Time(d)
    }

    /// The time `ms` milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Self {
        Time(Duration::from_millis(ms))
    }

    /// The time `s` seconds after the origin.
    pub const fn from_secs(s: u64) -> Self {
        Time(Duration::from_secs(s))
    }

    /// How long after the origin this is.
    pub const fn since_origin(self) -> Duration {
        self.0
    }

    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d))
    }
}

impl AddAssign<Duration> for Time {
    fn add_assign(&mut self, d: Duration) {
        self.0 = self.0.saturating_add(d);
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    /// Saturating: a later `rhs` gives zero rather than a panic.
    fn sub(self, rhs: Time) -> Duration {
        self.saturating_since(rhs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Time::from_secs(5);
        assert_eq!(t + Duration::from_secs(1), Time::from_secs(6));
        assert_eq!(Time::from_secs(1) - t, Duration::ZERO);
        assert_eq!(t - Time::from_millis(1500), Duration::from_millis(3500));
    }
}
