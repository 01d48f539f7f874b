//! Per-source-IP token buckets for incoming queries, so that shoal cannot be used to amplify
//! traffic toward a spoofed address, nor be flooded by one host.

use std::collections::HashMap;
use std::net::IpAddr;

use shoal_core::Time;

/// Rate-limit settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimitConfig {
    /// Queries per second answered per IP in the long run. libtorrent's dos_blocker allows 5 per
    /// second before blocking an IP; we allow 20, since answers cost little and a real client may
    /// run several lookups at once.
    pub per_second: f64,
    /// Burst allowed above the rate.
    pub burst: f64,
    /// Most IPs tracked; when full, idle entries are dropped and unknown IPs are refused until
    /// there is room (bounded memory under a spoofed-source flood).
    pub max_ips: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_second: 20.0,
            burst: 50.0,
            max_ips: 10_000,
        }
    }
}

/// Token buckets keyed by source IP.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    buckets: HashMap<IpAddr, (f64, Time)>,
}

impl RateLimiter {
    /// An empty limiter.
    pub fn new(config: RateLimitConfig) -> Self {
        RateLimiter {
            config,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `ip`; false means drop the packet.
    pub fn allow(&mut self, now: Time, ip: IpAddr) -> bool {
        let cfg = self.config;
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= cfg.max_ips {
            // Drop buckets that have refilled completely: they carry no information.
            self.buckets.retain(|_, (tokens, last)| {
                let t = *tokens + now.saturating_since(*last).as_secs_f64() * cfg.per_second;
                t < cfg.burst
            });
            if self.buckets.len() >= cfg.max_ips {
                return false;
            }
        }
        let (tokens, last) = self.buckets.entry(ip).or_insert((cfg.burst, now));
        *tokens =
            (*tokens + now.saturating_since(*last).as_secs_f64() * cfg.per_second).min(cfg.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills() {
        let cfg = RateLimitConfig {
            per_second: 2.0,
            burst: 4.0,
            max_ips: 2,
        };
        let mut r = RateLimiter::new(cfg);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        for _ in 0..4 {
            assert!(r.allow(Time::ZERO, a));
        }
        assert!(!r.allow(Time::ZERO, a));
        // Other IPs are not affected.
        assert!(r.allow(Time::ZERO, b));
        // Table full of busy IPs: a new IP is refused.
        assert!(!r.allow(Time::ZERO, c));
        // Half a second later one token is back.
        assert!(r.allow(Time::from_millis(500), a));
        assert!(!r.allow(Time::from_millis(500), a));
        // Later both buckets are full again and evictable.
        assert!(r.allow(Time::from_secs(10), c));
    }
}
