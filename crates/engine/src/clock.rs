//! Maps the runtime's instants onto the sans-IO [`Time`] the protocol crates take.

use std::time::Instant;

use shoal_core::Time;

/// The engine's clock: time since the session started.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        Clock {
            origin: Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Time {
        Time::from_duration(self.origin.elapsed())
    }

    /// The instant of `t`, for sleeping until it.
    pub fn instant(&self, t: Time) -> Instant {
        self.origin + t.since_origin()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Sleeps until `at`, or forever when there is no `at` (a `select!` branch for an optional
/// deadline).
pub async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
