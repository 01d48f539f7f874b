//! The BEP 15 client: connection ids, transaction ids, retransmission.
//!
//! - A connection id is used for at most [`UdpConfig::connection_id_lifetime`] (one minute by the
//!   spec) after it was received, then a fresh one is asked for; a stale one is never reused.
//! - An error reply to a request that used a cached id (opentracker's `Connection ID
//!   missmatch.` after a restart) drops the id and reconnects once.
//! - Every reply's transaction id is checked; replies to other transactions, and packets that do
//!   not parse, are ignored, as if lost.
//! - A request unanswered after `base_timeout * 2^n` is sent again, `n` counting up to
//!   `max_retries` (BEP 15: 15 s and 8).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use shoal_core::{Id20, LocalBind};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::announce::{AnnounceRequest, AnnounceResponse, ScrapeStats};
use crate::http_query::MAX_SCRAPE_HASHES;
use crate::udp_packet::{
    encode_udp_request, parse_udp_response_for, Family, UdpRequest, UdpResponse, MAX_PACKET_LEN,
};
use crate::url::{Scheme, TrackerUrl};
use crate::TrackerError;

/// Timing of the UDP client.
#[derive(Clone, Debug)]
pub struct UdpConfig {
    /// First retransmission time-out (BEP 15: 15 s); doubled on each retransmission.
    pub base_timeout: Duration,
    /// Retransmissions before giving up (BEP 15: 8).
    pub max_retries: u32,
    /// How long a connection id is used after it was received (BEP 15: one minute).
    pub connection_id_lifetime: Duration,
    /// Local addresses to send from (default: any).
    pub bind: LocalBind,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            base_timeout: Duration::from_secs(15),
            max_retries: 8,
            connection_id_lifetime: Duration::from_secs(60),
            bind: LocalBind::default(),
        }
    }
}

/// A UDP tracker client; keeps connection ids per tracker address. Cheap to share (`&self`).
#[derive(Debug, Default)]
pub struct UdpClient {
    config: UdpConfig,
    connections: Mutex<HashMap<SocketAddr, (u64, Instant)>>,
}

/// What one exchange should get back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Connect,
    Announce,
    Scrape,
}

fn wanted(resp: &UdpResponse, want: Want) -> bool {
    matches!(
        (resp, want),
        (UdpResponse::Connect { .. }, Want::Connect)
            | (UdpResponse::Announce { .. }, Want::Announce)
            | (UdpResponse::EmptyAnnounce { .. }, Want::Announce)
            | (UdpResponse::Scrape { .. }, Want::Scrape)
            | (UdpResponse::Error { .. }, _)
    )
}

impl UdpClient {
    /// A client with the given timing.
    pub fn new(config: UdpConfig) -> UdpClient {
        UdpClient {
            config,
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets every cached connection id.
    pub fn forget_connections(&self) {
        if let Ok(mut c) = self.connections.lock() {
            c.clear();
        }
    }

    async fn socket(&self, url: &TrackerUrl) -> Result<(UdpSocket, SocketAddr), TrackerError> {
        if url.scheme() != Scheme::Udp {
            return Err(TrackerError::UnsupportedScheme(url.to_string()));
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(url.authority())
            .await
            .map_err(|_| TrackerError::Resolve(url.host().to_string()))?
            .collect();
        // Prefer IPv4: our compact peers and listen port are mostly IPv4. Only families the
        // binding allows are used.
        let bind = self.config.bind;
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4() && bind.allows(**a))
            .or_else(|| addrs.iter().find(|a| bind.allows(**a)))
            .or(addrs.first())
            .copied()
            .ok_or_else(|| TrackerError::Resolve(url.host().to_string()))?;
        let local: SocketAddr = match (bind.source_for(addr).map_err(std::io::Error::from)?, addr) {
            (Some(ip), _) => (ip, 0).into(),
            (None, SocketAddr::V4(_)) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            (None, SocketAddr::V6(_)) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let sock = UdpSocket::bind(local).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot bind {}: {e}", local.ip()))
        })?;
        sock.connect(addr).await?;
        Ok((sock, addr))
    }

    /// The connection id held for the tracker at `addr`, if any and still fresh.
    pub fn connection_id_for(&self, addr: SocketAddr) -> Option<u64> {
        self.cached(addr).map(|(id, _)| id)
    }

    /// A fresh cached id and when it was received; a stale one is never handed out.
    fn cached(&self, addr: SocketAddr) -> Option<(u64, Instant)> {
        let c = self.connections.lock().ok()?;
        let (id, at) = c.get(&addr)?;
        (at.elapsed() < self.config.connection_id_lifetime).then_some((*id, *at))
    }

    fn forget(&self, addr: SocketAddr) {
        if let Ok(mut c) = self.connections.lock() {
            c.remove(&addr);
        }
    }

    /// Sends `packet` (rebuilt per attempt with a fresh transaction id) until a reply of the
    /// wanted kind with that transaction id arrives. `attempt` is the BEP 15 `n`, shared by the
    /// connect and the request that follows it.
    async fn exchange(
        &self,
        sock: &UdpSocket,
        family: Family,
        attempt: &mut u32,
        want: Want,
        build: &(dyn Fn(u32) -> Vec<u8> + Sync),
        id_expires: Option<Instant>,
    ) -> Result<Option<UdpResponse>, TrackerError> {
        let mut buf = vec![0u8; MAX_PACKET_LEN];
        loop {
            let tid: u32 = rand::random();
            sock.send(&build(tid)).await?;
            let wait = self
                .config
                .base_timeout
                .saturating_mul(1u32 << (*attempt).min(16));
            let deadline = Instant::now() + wait;
            loop {
                let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                    Err(_) => break,
                    // ICMP port unreachable shows up here on Linux: keep waiting like a loss,
                    // the retransmission schedule decides when to give up.
                    Ok(Err(_)) => {
                        tokio::time::sleep_until(deadline).await;
                        break;
                    }
                    Ok(Ok(n)) => n,
                };
                match parse_udp_response_for(&buf[..n], family) {
                    Ok(resp) if resp.transaction_id() == tid && wanted(&resp, want) => {
                        return Ok(Some(resp))
                    }
                    // Another transaction, or not a reply: ignore it, as if it was lost.
                    _ => {
                        tracing::trace!(len = n, "ignored a UDP packet that is not our reply");
                        continue;
                    }
                }
            }
            *attempt += 1;
            if *attempt > self.config.max_retries {
                return Err(TrackerError::Timeout(self.total_wait()));
            }
            if id_expires.is_some_and(|e| Instant::now() >= e) {
                // The connection id went stale while we waited: the caller connects again
                // (BEP 15's "announce times out" example), keeping `attempt`.
                return Ok(None);
            }
        }
    }

    /// The whole BEP 15 schedule's time, for the time-out message.
    fn total_wait(&self) -> Duration {
        (0..=self.config.max_retries.min(16))
            .map(|n| self.config.base_timeout.saturating_mul(1 << n))
            .fold(Duration::ZERO, Duration::saturating_add)
    }

    async fn connection_id(
        &self,
        sock: &UdpSocket,
        addr: SocketAddr,
        attempt: &mut u32,
    ) -> Result<(u64, bool, Instant), TrackerError> {
        let lifetime = self.config.connection_id_lifetime;
        if let Some((id, at)) = self.cached(addr) {
            return Ok((id, true, at + lifetime));
        }
        let build = |tid| {
            encode_udp_request(&UdpRequest::Connect {
                transaction_id: tid,
            })
        };
        match self
            .exchange(
                sock,
                Family::of(&addr),
                attempt,
                Want::Connect,
                &build,
                None,
            )
            .await?
        {
            Some(UdpResponse::Connect { connection_id, .. }) => {
                let at = Instant::now();
                if let Ok(mut c) = self.connections.lock() {
                    c.insert(addr, (connection_id, at));
                }
                Ok((connection_id, false, at + lifetime))
            }
            Some(UdpResponse::Error { message, .. }) => Err(TrackerError::Failure(message)),
            _ => Err(TrackerError::Malformed(
                "unexpected reply to connect".into(),
            )),
        }
    }

    /// Connects if needed and performs one request built from the connection id; retries once
    /// with a fresh connection id if a cached one was refused.
    async fn request(
        &self,
        url: &TrackerUrl,
        want: Want,
        build: &(dyn Fn(u64, u32) -> Vec<u8> + Sync),
    ) -> Result<UdpResponse, TrackerError> {
        let (sock, addr) = self.socket(url).await?;
        let family = Family::of(&addr);
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            let (cid, was_cached, expires) = self.connection_id(&sock, addr, &mut attempt).await?;
            let resp = self
                .exchange(
                    &sock,
                    family,
                    &mut attempt,
                    want,
                    &|tid| build(cid, tid),
                    Some(expires),
                )
                .await;
            match resp {
                Ok(None) => self.forget(addr),
                Ok(Some(UdpResponse::Error { message, .. })) if was_cached && !refreshed => {
                    // Most likely the tracker restarted and no longer knows this id.
                    tracing::debug!(%addr, "tracker refused a cached connection id ({message}); reconnecting");
                    self.forget(addr);
                    refreshed = true;
                }
                Ok(Some(UdpResponse::Error { message, .. })) => {
                    return Err(TrackerError::Failure(message))
                }
                Err(TrackerError::Timeout(d)) => {
                    self.forget(addr);
                    return Err(TrackerError::Timeout(d));
                }
                Ok(Some(resp)) => return Ok(resp),
                Err(e) => return Err(e),
            }
        }
    }

    /// Announces to a `udp://` tracker. The URL's path and query go along as BEP 41 URLData.
    pub async fn announce(
        &self,
        url: &TrackerUrl,
        req: &AnnounceRequest,
    ) -> Result<AnnounceResponse, TrackerError> {
        let url_data = match url.path_and_query() {
            "/" => Vec::new(),
            p => p.as_bytes().to_vec(),
        };
        let build = |cid, tid| {
            encode_udp_request(&UdpRequest::Announce {
                connection_id: cid,
                transaction_id: tid,
                request: req.clone(),
                ip: 0,
                url_data: url_data.clone(),
            })
        };
        match self.request(url, Want::Announce, &build).await? {
            UdpResponse::Announce {
                interval,
                leechers,
                seeders,
                peers,
                ..
            } => Ok(AnnounceResponse {
                interval: Some(Duration::from_secs(interval.into())),
                min_interval: None,
                warning: None,
                tracker_id: None,
                seeders: Some(seeders),
                leechers: Some(leechers),
                downloaded: None,
                peers,
            }),
            UdpResponse::EmptyAnnounce { .. } => Err(TrackerError::EmptyAnnounceReply),
            _ => Err(TrackerError::Malformed(
                "unexpected reply to announce".into(),
            )),
        }
    }

    /// Scrapes up to 74 torrents from a `udp://` tracker. Torrents the tracker left out of its
    /// reply are left out of the result (opentracker omits non-whitelisted ones).
    pub async fn scrape(
        &self,
        url: &TrackerUrl,
        hashes: &[Id20],
    ) -> Result<Vec<(Id20, ScrapeStats)>, TrackerError> {
        let hashes = &hashes[..hashes.len().min(MAX_SCRAPE_HASHES)];
        let build = |cid, tid| {
            encode_udp_request(&UdpRequest::Scrape {
                connection_id: cid,
                transaction_id: tid,
                info_hashes: hashes.to_vec(),
            })
        };
        match self.request(url, Want::Scrape, &build).await? {
            UdpResponse::Scrape { entries, .. } => {
                Ok(hashes.iter().copied().zip(entries).collect())
            }
            _ => Err(TrackerError::Malformed("unexpected reply to scrape".into())),
        }
    }
}
