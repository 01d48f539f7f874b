//! Trackers for shoal: announce and scrape over HTTP (BEP 3, 23, 7, 48) and UDP (BEP 15, 41),
//! BEP 12 tiers with failover, and an embedded tracker.
//!
//! - Pure, panic-free parsers and encoders for untrusted bytes: [`parse_http_announce`],
//!   [`parse_http_scrape`], [`parse_udp_response`], [`parse_udp_request`],
//!   [`parse_announce_query`]; a fuzz target can call them directly.
//! - [`TrackerSet`]: the sans-IO announce state machine over a torrent's tiers. It says which
//!   tracker to announce to and when; it never touches a socket or a clock.
//! - [`TrackerClient`]: the thin async driver that performs one HTTP or UDP announce or scrape,
//!   with a request-level time-out; [`announce_round`] runs a set's due jobs through it.
//! - [`server`]: an embedded tracker (HTTP, and UDP when enabled) that keeps swarms in memory.
//!
//! How an engine drives one torrent's trackers (the peers come back in each answer):
//!
//! ```no_run
//! use shoal_core::{Id20, Time};
//! use shoal_tracker::{Stats, TierConfig, TrackerClient, TrackerSet};
//!
//! # async fn run(info_hash: Id20, peer_id: Id20, tiers: Vec<Vec<String>>) {
//! let client = TrackerClient::default(); // one per session
//! let mut set = TrackerSet::new(info_hash, peer_id, 6881, &tiers, TierConfig::default(), 42);
//! let origin = tokio::time::Instant::now();
//! let now = || Time::from_duration(origin.elapsed());
//! while !set.is_done() {
//!     while let Some(job) = set.poll_announce(now()) {
//!         let stats = Stats { uploaded: 0, downloaded: 0, left: 1000 };
//!         match client.run_job(&job, stats).await {
//!             Ok(reply) => {
//!                 // hand reply.peers to the peer book
//!                 set.on_response(&job, &reply, now());
//!             }
//!             Err(e) => set.on_failure(&job, &e, now()),
//!         }
//!     }
//!     let Some(at) = set.next_deadline() else { break };
//!     // In an engine: select! on this sleep and on "completed" / "stop" commands, which call
//!     // set.completed(now()) / set.stop(now()) and loop again.
//!     tokio::time::sleep_until(origin + at.since_origin()).await;
//! }
//! # }
//! ```

#![deny(missing_docs)]

pub mod announce;
mod client;
mod error;
pub mod http_client;
pub mod http_query;
pub mod http_response;
pub mod server;
pub mod swarm;
pub mod tiers;
pub mod tls;
pub mod udp_client;
pub mod udp_packet;
pub mod url;

pub use announce::{AnnounceRequest, AnnounceResponse, Event, ScrapeStats, MAX_PEERS_PER_REPLY};
pub use client::{announce_round, ClientConfig, RoundOutcome, TrackerClient};
pub use error::TrackerError;
pub use http_query::{parse_announce_query, parse_scrape_query};
pub use http_response::{parse_http_announce, parse_http_scrape, MAX_BODY_LEN};
pub use server::{RunningTracker, ServerConfig};
pub use shoal_core::LocalBind;
pub use swarm::{SwarmConfig, Swarms};
pub use tiers::{AnnounceJob, Stats, TierConfig, TrackerSet, TrackerStatus};
pub use udp_client::UdpConfig;
pub use udp_packet::{parse_udp_request, parse_udp_response, UdpRequest, UdpResponse};
pub use url::TrackerUrl;
