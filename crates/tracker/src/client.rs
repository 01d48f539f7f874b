//! The thin async driver: one announce or scrape to one tracker, HTTP or UDP, under a time-out;
//! and [`announce_round`], which runs a [`TrackerSet`]'s due jobs through it.

use std::net::Ipv6Addr;
use std::time::Duration;

use shoal_core::{Id20, LocalBind, Time};

use crate::announce::{AnnounceRequest, AnnounceResponse, ScrapeStats};
use crate::http_client::http_get;
use crate::http_query::{announce_query, scrape_query};
use crate::http_response::{failure_reason, parse_http_announce, parse_http_scrape, MAX_BODY_LEN};
use crate::tiers::{AnnounceJob, Stats, TrackerSet};
use crate::udp_client::{UdpClient, UdpConfig};
use crate::url::{Scheme, TrackerUrl};
use crate::TrackerError;

/// Settings of a [`TrackerClient`].
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `User-Agent` sent to HTTP trackers.
    pub user_agent: String,
    /// Time allowed for a scrape (announces use their job's time-out).
    pub scrape_timeout: Duration,
    /// Largest HTTP body read.
    pub max_body: usize,
    /// UDP timing.
    pub udp: UdpConfig,
    /// Local addresses to announce from (HTTP, HTTPS and UDP); default: any. When strict,
    /// a tracker reachable only over a family without an address is not contacted.
    pub bind: LocalBind,
    /// Our IPv6 address, sent as BEP 7 `ipv6=` in HTTP announces (unless the request has its
    /// own): the session sets it when it listens on a global or loopback IPv6 address, so a
    /// tracker reached over IPv4 hands it out in `peers6` too. UDP announces have no such field.
    pub announce_ipv6: Option<Ipv6Addr>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            user_agent: concat!("shoal/", env!("CARGO_PKG_VERSION")).to_string(),
            scrape_timeout: Duration::from_secs(30),
            max_body: MAX_BODY_LEN,
            udp: UdpConfig::default(),
            bind: LocalBind::default(),
            announce_ipv6: None,
        }
    }
}

/// Performs announces and scrapes. One per session; share it by reference.
#[derive(Debug, Default)]
pub struct TrackerClient {
    config: ClientConfig,
    udp: UdpClient,
}

impl TrackerClient {
    /// A client with these settings.
    pub fn new(config: ClientConfig) -> TrackerClient {
        let mut udp = config.udp.clone();
        if udp.bind == LocalBind::default() {
            udp.bind = config.bind;
        }
        let udp = UdpClient::new(udp);
        TrackerClient { config, udp }
    }

    /// The UDP half, e.g. to forget cached connection ids.
    pub fn udp(&self) -> &UdpClient {
        &self.udp
    }

    /// Announces to `url`, no time-out (see [`TrackerClient::run_job`]).
    pub async fn announce(
        &self,
        url: &TrackerUrl,
        req: &AnnounceRequest,
    ) -> Result<AnnounceResponse, TrackerError> {
        match url.scheme() {
            Scheme::Udp => self.udp.announce(url, req).await,
            Scheme::Http | Scheme::Https => {
                let target = match (req.ipv6, self.config.announce_ipv6) {
                    (None, Some(ip)) => {
                        let mut with = req.clone();
                        with.ipv6 = Some(ip);
                        announce_query(url.path_and_query(), &with)
                    }
                    _ => announce_query(url.path_and_query(), req),
                };
                let reply = http_get(
                    url,
                    &target,
                    &self.config.user_agent,
                    self.config.max_body,
                    self.config.bind,
                )
                .await?;
                if reply.status != 200 {
                    return Err(TrackerError::HttpStatus {
                        status: reply.status,
                        failure: failure_reason(&reply.body),
                    });
                }
                parse_http_announce(&reply.body)
            }
        }
    }

    /// Scrapes `hashes` (at most 74) from the tracker whose announce URL is `announce_url`.
    pub async fn scrape(
        &self,
        announce_url: &TrackerUrl,
        hashes: &[Id20],
    ) -> Result<Vec<(Id20, ScrapeStats)>, TrackerError> {
        let url = announce_url
            .scrape_url()
            .ok_or_else(|| TrackerError::NoScrapeUrl(announce_url.to_string()))?;
        let t = self.config.scrape_timeout;
        let work = async {
            match url.scheme() {
                Scheme::Udp => self.udp.scrape(&url, hashes).await,
                Scheme::Http | Scheme::Https => {
                    let target = scrape_query(url.path_and_query(), hashes);
                    let reply = http_get(
                        &url,
                        &target,
                        &self.config.user_agent,
                        self.config.max_body,
                        self.config.bind,
                    )
                    .await?;
                    if reply.status != 200 {
                        return Err(TrackerError::HttpStatus {
                            status: reply.status,
                            failure: failure_reason(&reply.body),
                        });
                    }
                    parse_http_scrape(&reply.body)
                }
            }
        };
        tokio::time::timeout(t, work)
            .await
            .unwrap_or(Err(TrackerError::Timeout(t)))
    }

    /// Performs `job` with the torrent's counters, within the job's time-out.
    pub async fn run_job(
        &self,
        job: &AnnounceJob,
        stats: Stats,
    ) -> Result<AnnounceResponse, TrackerError> {
        let req = job.request(stats);
        tokio::time::timeout(job.timeout, self.announce(&job.url, &req))
            .await
            .unwrap_or(Err(TrackerError::Timeout(job.timeout)))
    }
}

/// The outcome of [`announce_round`].
#[derive(Debug, Default)]
pub struct RoundOutcome {
    /// The answer that ended the round, and which tracker gave it.
    pub response: Option<(TrackerUrl, AnnounceResponse)>,
    /// The trackers that failed on the way, in order.
    pub errors: Vec<(TrackerUrl, TrackerError)>,
}

/// Runs every job `set` has due now, one after the other (failover), until one tracker answers
/// or none is due. `now` reads the driver's clock. For an engine that awaits other things at the
/// same time, the loop to copy is: `poll_announce` -> `run_job` -> `on_response`/`on_failure`,
/// then sleep until `next_deadline`.
pub async fn announce_round(
    set: &mut TrackerSet,
    client: &TrackerClient,
    stats: Stats,
    now: impl Fn() -> Time,
) -> RoundOutcome {
    let mut out = RoundOutcome::default();
    while let Some(job) = set.poll_announce(now()) {
        match client.run_job(&job, stats).await {
            Ok(resp) => {
                tracing::debug!(tracker = %job.url, event = ?job.event, peers = resp.peers.len(), "announced");
                if let Some(w) = &resp.warning {
                    tracing::warn!(tracker = %job.url, "tracker warning: {w}");
                }
                set.on_response(&job, &resp, now());
                out.response = Some((job.url, resp));
                break;
            }
            Err(e) => {
                tracing::debug!(tracker = %job.url, event = ?job.event, "announce failed: {e}");
                set.on_failure(&job, &e, now());
                out.errors.push((job.url, e));
            }
        }
    }
    out
}
