//! The embedded tracker's memory: torrents, their peers, expiry, caps. Sans-IO: every call
//! takes the time, so expiry is tested without waiting.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use shoal_core::{Id20, Time};

use crate::announce::{AnnounceRequest, AnnounceResponse, Event, ScrapeStats};

/// Limits and timing of the embedded tracker.
#[derive(Clone, Debug)]
pub struct SwarmConfig {
    /// The `interval` told to clients.
    pub interval: Duration,
    /// The `min interval` told to clients.
    pub min_interval: Duration,
    /// A peer that has not announced for this long is dropped (default: 2 x interval).
    pub peer_ttl: Duration,
    /// Most torrents tracked; announces for new torrents beyond it are refused.
    pub max_torrents: usize,
    /// Most peers kept per torrent; further peers get an answer but are not stored.
    pub max_peers_per_torrent: usize,
    /// Peers returned when the client does not say `numwant`.
    pub default_numwant: u32,
    /// Most peers returned in one answer.
    pub max_numwant: u32,
    /// If set, only these torrents are tracked (like opentracker's whitelist).
    pub whitelist: Option<HashSet<Id20>>,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            interval: Duration::from_secs(1800),
            min_interval: Duration::from_secs(900),
            peer_ttl: Duration::from_secs(3600),
            max_torrents: 10_000,
            max_peers_per_torrent: 5_000,
            default_numwant: 50,
            max_numwant: 200,
            whitelist: None,
        }
    }
}

impl SwarmConfig {
    /// The defaults with this interval (min interval half of it, peers expiring after twice it).
    pub fn with_interval(interval: Duration) -> SwarmConfig {
        SwarmConfig {
            interval,
            min_interval: interval / 2,
            peer_ttl: interval * 2,
            ..SwarmConfig::default()
        }
    }
}

#[derive(Debug)]
struct Peer {
    seeder: bool,
    expires: Time,
    /// The BEP 7 `ipv6=` address of a peer that announced over IPv4: handed out, never
    /// counted (the peer is counted once, by its source address).
    alias: bool,
}

#[derive(Debug, Default)]
struct Swarm {
    peers: HashMap<SocketAddr, Peer>,
    completed: u32,
}

impl Swarm {
    fn stats(&self, now: Time) -> ScrapeStats {
        let (mut seeders, mut leechers) = (0u32, 0u32);
        for p in self.peers.values().filter(|p| p.expires > now && !p.alias) {
            if p.seeder {
                seeders += 1;
            } else {
                leechers += 1;
            }
        }
        ScrapeStats {
            seeders,
            leechers,
            completed: self.completed,
        }
    }
}

/// All swarms the embedded tracker knows.
#[derive(Debug, Default)]
pub struct Swarms {
    config: SwarmConfig,
    torrents: HashMap<Id20, Swarm>,
}

impl Swarms {
    /// An empty tracker.
    pub fn new(config: SwarmConfig) -> Swarms {
        Swarms {
            config,
            torrents: HashMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SwarmConfig {
        &self.config
    }

    /// Number of torrents with at least one live peer or a completed count.
    pub fn torrent_count(&self) -> usize {
        self.torrents.len()
    }

    /// Handles an announce from the peer at `peer` (the request's source IP and its `port`).
    /// Returns the answer, or the failure reason to send.
    ///
    /// A peer that announces over IPv4 with BEP 7 `ipv6=` is also stored at that IPv6 address
    /// (same port), so IPv6 peers get it in `peers6`. BEP 7 warns that the parameter lets one
    /// announce someone else's address; what it can do here is bounded like any announce: one
    /// extra address per announcing peer, under the same per-torrent cap and expiry.
    pub fn announce(
        &mut self,
        req: &AnnounceRequest,
        peer: SocketAddr,
        now: Time,
    ) -> Result<AnnounceResponse, String> {
        if let Some(w) = &self.config.whitelist {
            if !w.contains(&req.info_hash) {
                return Err("torrent is not tracked here".into());
            }
        }
        if req.port == 0 {
            return Err("port 0 is not a valid peer port".into());
        }
        let full = self.torrents.len() >= self.config.max_torrents;
        if full && !self.torrents.contains_key(&req.info_hash) {
            return Err("tracker is full: too many torrents".into());
        }
        let cfg = &self.config;
        let swarm = self.torrents.entry(req.info_hash).or_default();
        let alias = req
            .ipv6
            .filter(|_| peer.is_ipv4())
            .map(|ip| SocketAddr::new(IpAddr::V6(ip), req.port));
        let mut peers = Vec::new();
        if req.event == Event::Stopped {
            swarm.peers.remove(&peer);
            if let Some(a) = alias {
                swarm.peers.remove(&a);
            }
        } else {
            for (addr, is_alias) in std::iter::once((peer, false)).chain(alias.map(|a| (a, true))) {
                let known = swarm.peers.contains_key(&addr);
                if known || swarm.peers.len() < cfg.max_peers_per_torrent {
                    swarm.peers.insert(
                        addr,
                        Peer {
                            seeder: req.left == 0,
                            expires: now + cfg.peer_ttl,
                            alias: is_alias,
                        },
                    );
                }
            }
            if req.event == Event::Completed {
                swarm.completed = swarm.completed.saturating_add(1);
            }
            let want = req
                .numwant
                .unwrap_or(cfg.default_numwant)
                .min(cfg.max_numwant) as usize;
            // A seeder needs no other seeders.
            let seeding = req.left == 0;
            peers.extend(
                swarm
                    .peers
                    .iter()
                    .filter(|(a, p)| {
                        **a != peer
                            && Some(**a) != alias
                            && p.expires > now
                            && !(seeding && p.seeder)
                    })
                    .map(|(a, _)| *a)
                    .take(want),
            );
        }
        let stats = swarm.stats(now);
        if swarm.peers.is_empty() && swarm.completed == 0 {
            self.torrents.remove(&req.info_hash);
        }
        Ok(AnnounceResponse {
            interval: Some(self.config.interval),
            min_interval: Some(self.config.min_interval),
            warning: None,
            tracker_id: None,
            seeders: Some(stats.seeders),
            leechers: Some(stats.leechers),
            downloaded: Some(stats.completed),
            peers,
        })
    }

    /// Counts for each requested torrent that is tracked, sorted by info-hash (unknown ones are
    /// left out, as opentracker does).
    pub fn scrape(&self, hashes: &[Id20], now: Time) -> Vec<(Id20, ScrapeStats)> {
        let mut out: Vec<(Id20, ScrapeStats)> = hashes
            .iter()
            .filter_map(|h| self.torrents.get(h).map(|s| (*h, s.stats(now))))
            .collect();
        out.sort_by_key(|(h, _)| *h);
        out.dedup_by_key(|(h, _)| *h);
        out
    }

    /// Drops peers that have not announced within the TTL, and torrents left with nothing.
    pub fn expire(&mut self, now: Time) {
        self.torrents.retain(|_, s| {
            s.peers.retain(|_, p| p.expires > now);
            !s.peers.is_empty() || s.completed > 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(port: u16, left: u64, event: Event) -> AnnounceRequest {
        AnnounceRequest {
            info_hash: Id20([9; 20]),
            peer_id: Id20([port as u8; 20]),
            port,
            uploaded: 0,
            downloaded: 0,
            left,
            event,
            numwant: None,
            key: 0,
            tracker_id: None,
            compact: true,
            ipv6: None,
        }
    }

    fn addr(i: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, i], port))
    }

    #[test]
    fn peers_see_each_other_and_counts_add_up() {
        let mut s = Swarms::new(SwarmConfig::with_interval(Duration::from_secs(10)));
        let t = Time::ZERO;
        let a = s
            .announce(&req(1, 0, Event::Started), addr(2, 1), t)
            .unwrap();
        assert!(a.peers.is_empty());
        let b = s
            .announce(&req(2, 5, Event::Started), addr(3, 2), t)
            .unwrap();
        assert_eq!(b.peers, vec![addr(2, 1)]);
        assert_eq!((b.seeders, b.leechers), (Some(1), Some(1)));
        s.announce(&req(2, 0, Event::Completed), addr(3, 2), t)
            .unwrap();
        let sc = s.scrape(&[Id20([9; 20]), Id20([8; 20])], t);
        assert_eq!(
            sc,
            vec![(
                Id20([9; 20]),
                ScrapeStats {
                    seeders: 2,
                    leechers: 0,
                    completed: 1
                }
            )]
        );
        s.announce(&req(2, 0, Event::Stopped), addr(3, 2), t)
            .unwrap();
        assert_eq!(s.scrape(&[Id20([9; 20])], t)[0].1.seeders, 1);
    }

    #[test]
    fn bep7_ipv6_address_is_handed_out_but_counted_once() {
        let mut s = Swarms::new(SwarmConfig::with_interval(Duration::from_secs(10)));
        let t = Time::ZERO;
        let mut seeder = req(1, 0, Event::Started);
        seeder.ipv6 = Some("::1".parse().unwrap());
        let a = s.announce(&seeder, addr(2, 1), t).unwrap();
        assert!(a.peers.is_empty(), "not its own addresses: {:?}", a.peers);
        assert_eq!((a.seeders, a.leechers), (Some(1), Some(0)));
        let b = s
            .announce(&req(2, 5, Event::Started), addr(3, 2), t)
            .unwrap();
        let mut peers = b.peers.clone();
        peers.sort();
        assert_eq!(
            peers,
            vec![addr(2, 1), "[::1]:1".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!((b.seeders, b.leechers), (Some(1), Some(1)));
        // Over IPv6 the source address is the one stored; `ipv6=` adds nothing.
        let mut six = req(3, 5, Event::Started);
        six.ipv6 = Some("2001:db8::3".parse().unwrap());
        s.announce(&six, "[::1]:3".parse().unwrap(), t).unwrap();
        assert_eq!(s.scrape(&[Id20([9; 20])], t)[0].1.leechers, 2);
        // `stopped` removes both addresses.
        let mut stop = seeder.clone();
        stop.event = Event::Stopped;
        s.announce(&stop, addr(2, 1), t).unwrap();
        let c = s.announce(&req(2, 5, Event::None), addr(3, 2), t).unwrap();
        assert_eq!(c.peers, vec!["[::1]:3".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn peers_expire_after_the_ttl() {
        let mut s = Swarms::new(SwarmConfig::with_interval(Duration::from_secs(10)));
        s.announce(&req(1, 5, Event::Started), addr(2, 1), Time::ZERO)
            .unwrap();
        let at = |secs| Time::from_secs(secs);
        let seen = s
            .announce(&req(2, 5, Event::Started), addr(3, 2), at(19))
            .unwrap();
        assert_eq!(seen.peers.len(), 1);
        // Peer 1 announced at 0 with a TTL of 20 s: gone at 20, even before a sweep.
        let seen = s
            .announce(&req(2, 5, Event::None), addr(3, 2), at(20))
            .unwrap();
        assert!(seen.peers.is_empty());
        s.expire(at(20));
        assert_eq!(s.scrape(&[Id20([9; 20])], at(20))[0].1.leechers, 1);
        s.expire(at(40));
        assert_eq!(s.torrent_count(), 0);
    }

    #[test]
    fn caps_and_whitelist() {
        let mut cfg = SwarmConfig {
            max_torrents: 1,
            max_peers_per_torrent: 2,
            ..SwarmConfig::default()
        };
        let mut s = Swarms::new(cfg.clone());
        for i in 0..5 {
            s.announce(&req(1, 5, Event::Started), addr(i, 1), Time::ZERO)
                .unwrap();
        }
        assert_eq!(s.scrape(&[Id20([9; 20])], Time::ZERO)[0].1.leechers, 2);
        let mut other = req(1, 5, Event::Started);
        other.info_hash = Id20([1; 20]);
        assert!(s.announce(&other, addr(1, 1), Time::ZERO).is_err());
        let mut numwant = req(7, 5, Event::None);
        numwant.numwant = Some(1);
        assert_eq!(
            s.announce(&numwant, addr(9, 9), Time::ZERO)
                .unwrap()
                .peers
                .len(),
            1
        );

        cfg.whitelist = Some([Id20([1; 20])].into_iter().collect());
        let mut s = Swarms::new(cfg);
        assert!(s
            .announce(&req(1, 5, Event::Started), addr(2, 1), Time::ZERO)
            .is_err());
        assert!(s.announce(&other, addr(2, 1), Time::ZERO).is_ok());
    }
}
