//! The addresses a torrent knows, when each may be dialled, and which are banned.
//!
//! Sans-IO: the torrent machine feeds it sources (`--peer`, trackers, DHT, PEX, incoming peers'
//! listen addresses), connection outcomes and the time, and asks which addresses to dial now.
//!
//! Lifecycle of an address: known -> in use (being dialled, or connected either way) -> closed.
//! A connection that exchanged data is a *success*: its address's failure count goes back to 0
//! and, when it closes, it is dialled again after [`BASE_BACKOFF`]. Only attempts that never got
//! that far count as failures, so a peer that comes and goes over a long session is never given
//! up, while an address that never answers is given up after [`MAX_FAILURES`].

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
            || self.entries.contains_key(&addr)
        {
            return false;
        }
        if self.entries.len() >= MAX_KNOWN && !self.evict_one() {
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

    /// Makes room when full: an address given up is forgotten first, else one that never
    /// connected and is waiting longest for its next attempt. Junk from one source (a peer's PEX,
    /// say) can then never lock out every later address.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .entries
            .iter()
            .filter(|(_, e)| !e.connected && e.failures > 0)
            .max_by_key(|(a, e)| (e.failures >= MAX_FAILURES, e.failures, e.next_attempt, **a))
            .map(|(a, _)| *a);
        match victim {
            Some(a) => {
                self.entries.remove(&a);
                true
            }
            None => false,
        }
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

    /// A connection to `addr` is being attempted, or is up (we dialled it, or it is the listen
    /// address of a peer that connected to us): it is not dialled while in use. An address not yet
    /// known is added (if the book has room).
    pub fn connecting(&mut self, addr: SocketAddr, now: Time) {
        if self.banned.contains(&addr.ip()) || addr.port() == 0 {
            return;
        }
        if !self.entries.contains_key(&addr) && self.entries.len() >= MAX_KNOWN {
            return;
        }
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

    /// A connection that was up has closed. If it had [`succeeded`](Self::succeeded), the
    /// address is due again after [`BASE_BACKOFF`] with no failure counted; otherwise this
    /// counts as a failure (see [`failed`](Self::failed)).
    pub fn closed(&mut self, addr: SocketAddr, succeeded: bool, now: Time, rng: &mut impl Rng) {
        if !succeeded {
            return self.failed(addr, now, rng);
        }
        if let Some(e) = self.entries.get_mut(&addr) {
            e.connected = false;
            e.failures = 0;
            let jitter = rng.random_range(0.75..1.25);
            e.next_attempt = now + BASE_BACKOFF.mul_f64(jitter);
        }
    }

    /// Whether `addr` is in use (being dialled or connected).
    pub fn in_use(&self, addr: SocketAddr) -> bool {
        self.entries.get(&addr).is_some_and(|e| e.connected)
    }

    /// A dial failed, or a connection ended before exchanging anything: retry after an
    /// exponential back-off with jitter; given up after [`MAX_FAILURES`] in a row.
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
    fn a_peer_that_keeps_coming_back_is_never_given_up() {
        // A seeding session of many reconnects: every connection exchanged data, so none counts
        // as a failure and the address is always due again soon after it leaves.
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let mut book = PeerBook::new();
        let a: SocketAddr = "127.0.0.2:6881".parse().unwrap();
        let mut now = Time::ZERO;
        book.add(a, now);
        for _ in 0..(MAX_FAILURES * 4) {
            assert_eq!(book.due(now, 10), vec![a]);
            book.connecting(a, now);
            book.succeeded(a);
            now += Duration::from_secs(30);
            book.closed(a, true, now, &mut rng);
            let next = book.next_due().expect("due again");
            assert!(next - now <= BASE_BACKOFF.mul_f64(1.25));
            now = next;
        }
        // A connection that never exchanged anything still counts as a failure.
        book.connecting(a, now);
        book.closed(a, false, now, &mut rng);
        assert!(book.next_due().unwrap() > now);
    }

    #[test]
    fn an_incoming_peers_listen_address_is_dialled_again_after_it_leaves() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut book = PeerBook::new();
        let listen: SocketAddr = "127.0.0.3:7000".parse().unwrap();
        // It connected to us and told us where it listens: in use, not dialled.
        book.connecting(listen, Time::ZERO);
        assert!(book.in_use(listen));
        assert!(book.due(Time::ZERO, 10).is_empty());
        book.succeeded(listen);
        book.closed(listen, true, Time::from_secs(60), &mut rng);
        assert!(!book.in_use(listen));
        assert_eq!(
            book.due(Time::from_secs(60) + BASE_BACKOFF * 2, 10),
            vec![listen]
        );
    }

    #[test]
    fn a_full_book_forgets_failed_addresses_for_new_ones() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let mut book = PeerBook::new();
        let junk = |i: usize| SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 1));
        for i in 0..MAX_KNOWN {
            assert!(book.add(junk(i), Time::ZERO));
        }
        // Full of untried addresses: a new one waits.
        let good: SocketAddr = "127.0.0.9:6881".parse().unwrap();
        assert!(!book.add(good, Time::ZERO));
        // Once the junk has failed, new addresses get in.
        for i in 0..10 {
            book.connecting(junk(i), Time::ZERO);
            book.failed(junk(i), Time::ZERO, &mut rng);
        }
        assert!(book.add(good, Time::ZERO));
        assert_eq!(book.len(), MAX_KNOWN);
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
