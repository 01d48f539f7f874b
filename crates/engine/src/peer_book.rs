//! The addresses a torrent knows, when each may be dialled, and which are banned.
//!
//! Sans-IO: the torrent actor feeds it sources (`--peer`, trackers, DHT, incoming), connection
//! outcomes and the time, and asks which addresses to dial now.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::Rng;
use shoal_core::Time;

/// First retry delay after a failed or dropped connection.
pub const BASE_BACKOFF: Duration = Duration::from_secs(2);
/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Failures in a row after which an address is given up.
pub const MAX_FAILURES: u32 = 8;
/// Most addresses remembered per torrent (a hostile source cannot grow memory without bound).
pub const MAX_KNOWN: usize = 2000;

#[derive(Clone, Debug)]
struct Entry {
    failures: u32,
    next_attempt: Time,
    connected: bool,
}

/// Known peer addresses with exponential back-off and an IP ban list.
#[derive(Debug, Default)]
pub struct PeerBook {
    entries: HashMap<SocketAddr, Entry>,
    banned: HashSet<IpAddr>,
    /// Our own listen address, never dialled (trackers include the announcer in replies).
    pub own_addr: Option<SocketAddr>,
}

impl PeerBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an address from any source; returns false if it was already known, banned or the
    /// book is full.
    pub fn add(&mut self, addr: SocketAddr, now: Time) -> bool {
        if self.banned.contains(&addr.ip())
            || Some(addr) == self.own_addr
            || addr.port() == 0
            || self.entries.len() >= MAX_KNOWN
            || self.entries.contains_key(&addr)
        {
            return false;
        }
        self.entries.insert(
            addr,
            Entry {
                failures: 0,
                next_attempt: now,
                connected: false,
            },
        );
        true
    }

    /// Addresses that may be dialled now (not connected, not backing off), at most `max`.
    pub fn due(&self, now: Time, max: usize) -> Vec<SocketAddr> {
        let mut due: Vec<(Time, SocketAddr)> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.connected && e.next_attempt <= now && e.failures < MAX_FAILURES)
            .map(|(a, e)| (e.next_attempt, *a))
            .collect();
        due.sort();
        due.into_iter().take(max).map(|(_, a)| a).collect()
    }

    /// The earliest time an address becomes due, if any is waiting.
    pub fn next_due(&self) -> Option<Time> {
        self.entries
            .values()
            .filter(|e| !e.connected && e.failures < MAX_FAILURES)
            .map(|e| e.next_attempt)
            .min()
    }

    /// A connection to `addr` is being attempted or was accepted.
    pub fn connecting(&mut self, addr: SocketAddr, now: Time) {
        let e = self.entries.entry(addr).or_insert(Entry {
            failures: 0,
            next_attempt: now,
            connected: false,
        });
        e.connected = true;
    }

    /// A connection exchanged data successfully: its failure count is reset.
    pub fn succeeded(&mut self, addr: SocketAddr) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.failures = 0;
        }
    }

    /// A connection failed or ended: retry after an exponential back-off with jitter.
    pub fn failed(&mut self, addr: SocketAddr, now: Time, rng: &mut impl Rng) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.connected = false;
            e.failures += 1;
            let exp = BASE_BACKOFF
                .saturating_mul(1 << (e.failures - 1).min(16))
                .min(MAX_BACKOFF);
            // +-25 % jitter so many peers do not retry in lockstep.
            let jitter = rng.random_range(0.75..1.25);
            e.next_attempt = now + exp.mul_f64(jitter);
        }
    }

    /// Bans an IP: never dialled or accepted again for this torrent.
    pub fn ban(&mut self, ip: IpAddr) {
        self.banned.insert(ip);
        self.entries.retain(|a, _| a.ip() != ip);
    }

    /// Whether `ip` is banned.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.banned.contains(&ip)
    }

    /// Number of known addresses.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no address is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_grows_and_gives_up() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut book = PeerBook::new();
        let a: SocketAddr = "127.0.0.2:6881".parse().unwrap();
        let mut now = Time::ZERO;
        assert!(book.add(a, now));
        assert!(!book.add(a, now));
        let mut delays = Vec::new();
        for _ in 0..MAX_FAILURES {
            assert_eq!(book.due(now, 10), vec![a]);
            book.connecting(a, now);
            assert!(book.due(now, 10).is_empty(), "not dialled twice");
            book.failed(a, now, &mut rng);
            match book.next_due() {
                Some(next) => {
                    delays.push(next - now);
                    now = next;
                }
                None => break,
            }
        }
        assert_eq!(delays.len() as u32, MAX_FAILURES - 1);
        assert!(book.due(now + MAX_BACKOFF, 10).is_empty(), "given up");
        assert!(delays.windows(2).all(|w| w[1] >= w[0].mul_f64(0.5)));
        assert!(delays.last().unwrap() > &Duration::from_secs(60));
    }

    #[test]
    fn banned_ips_are_never_due() {
        let mut book = PeerBook::new();
        let a: SocketAddr = "127.0.0.5:1".parse().unwrap();
        book.add(a, Time::ZERO);
        book.ban(a.ip());
        assert!(book.due(Time::ZERO, 10).is_empty());
        assert!(!book.add("127.0.0.5:2".parse().unwrap(), Time::ZERO));
        assert!(book.is_banned(a.ip()));
    }
}
