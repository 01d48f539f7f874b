//! When to try a failing web seed again.

use std::time::Duration;

/// The first wait after a failure: libtorrent's `urlseed_wait_retry` default.
pub const FIRST_RETRY: Duration = Duration::from_secs(30);
/// The longest wait, also the most a server's `Retry-After` is honoured for: a source that asks
/// for days is asked again within the hour rather than forgotten for the download's lifetime.
pub const MAX_RETRY: Duration = Duration::from_secs(3600);

/// Consecutive failures of one web seed and the wait they earn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Records a failure; returns how long to wait before the next attempt: the server's
    /// `Retry-After` if it gave one, else [`FIRST_RETRY`] doubled per failure in a row, both at
    /// most [`MAX_RETRY`].
    pub fn failed(&mut self, retry_after: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let doubled = FIRST_RETRY.saturating_mul(1 << (self.failures - 1).min(10));
        retry_after
            .unwrap_or(doubled)
            .clamp(Duration::from_secs(1), MAX_RETRY)
    }

    /// Records a success (data arrived): the next failure starts again at [`FIRST_RETRY`].
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Parses `Retry-After` (RFC 9110: delay-seconds or an HTTP date) into seconds from `now_unix`.
/// A date in the past is 0; anything unreadable is `None`.
pub fn parse_retry_after(value: &str, now_unix: u64) -> Option<u64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs);
    }
    parse_http_date(v).map(|at| at.saturating_sub(now_unix))
}

/// IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`, the only form servers must send, as seconds
/// since 1970.
fn parse_http_date(v: &str) -> Option<u64> {
    let (_weekday, rest) = v.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as u64
        + 1;
    let year: u64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    if !(1..=31).contains(&day) || year < 1970 || *h > 23 || *m > 59 || *s > 60 {
        return None;
    }
    Some(days_since_epoch(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian, year ≥ 1970).
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    let leap = |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let days_before_year: u64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    const CUMULATIVE: [u64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let mut d = days_before_year + CUMULATIVE[(month - 1) as usize] + day - 1;
    if month > 2 && leap(year) {
        d += 1;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_thirty_seconds_and_caps() {
        let mut b = Backoff::default();
        assert_eq!(b.failed(None), Duration::from_secs(30));
        assert_eq!(b.failed(None), Duration::from_secs(60));
        assert_eq!(b.failed(None), Duration::from_secs(120));
        for _ in 0..20 {
            b.failed(None);
        }
        assert_eq!(b.failed(None), MAX_RETRY);
        b.succeeded();
        assert_eq!(b.failed(None), FIRST_RETRY);
    }

    #[test]
    fn retry_after_wins_within_bounds() {
        let mut b = Backoff::default();
        assert_eq!(
            b.failed(Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            b.failed(Some(Duration::from_secs(0))),
            Duration::from_secs(1)
        );
        assert_eq!(b.failed(Some(Duration::from_secs(86_400 * 3))), MAX_RETRY);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("120", 0), Some(120));
        // 1994-11-06 08:49:37 UTC is 784111777.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_700),
            Some(77)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 900_000_000),
            Some(0)
        );
        // 2024-03-01 00:00:00 UTC (after a leap day) is 1709251200.
        assert_eq!(
            parse_retry_after("Fri, 01 Mar 2024 00:00:00 GMT", 1_709_251_000),
            Some(200)
        );
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("Sun, 06 Foo 1994 08:49:37 GMT", 0), None);
        assert_eq!(parse_retry_after("", 0), None);
    }
}
