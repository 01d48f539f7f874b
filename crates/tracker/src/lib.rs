//! Trackers for shoal: announce and scrape over HTTP (BEP 3, 23, 7, 48) and UDP (BEP 15, 41),
//!
//! - Pure, panic-free parsers and encoders for untrusted bytes: [`parse_http_announce`],
//!   [`parse_http_scrape`], [`parse_udp_response`], [`parse_udp_request`],
//!   [`parse_announce_query`]; a fuzz target can call them directly.
//!   tracker to announce to and when; it never touches a socket or a clock.
//! - [`TrackerClient`]: the thin async driver that performs one HTTP or UDP announce or scrape,
//!   with a request-level time-out; [`announce_round`] runs a set's due jobs through it.

pub mod announce;
mod error;
pub mod http_query;
pub mod http_response;
pub mod tiers;
pub mod udp_packet;
pub mod url;

pub use announce::{AnnounceRequest, AnnounceResponse, Event, ScrapeStats, MAX_PEERS_PER_REPLY};
pub use error::TrackerError;
pub use http_query::{parse_announce_query, parse_scrape_query};
pub use http_response::{parse_http_announce, parse_http_scrape, MAX_BODY_LEN};
pub use tiers::{AnnounceJob, Stats, TierConfig, TrackerSet};
pub use udp_packet::{parse_udp_request, parse_udp_response, UdpRequest, UdpResponse};
pub use url::TrackerUrl;
