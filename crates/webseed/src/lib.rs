//! Web seeds (BEP 19): HTTP and HTTPS servers that hold a torrent's files, used as permanently
//! unchoked seeds.
//!
//! * [`url`]: the URL of each file on a `url-list` entry.
//! * [`queue`]: block requests joined into runs of consecutive bytes, fetched with range
//!   requests, and the answers cut back into blocks (sans-IO).
//! * [`response`]: checking a server's answer (`206` and its `Content-Range`, `200` from a
//!   server without ranges, redirects, `Retry-After`) before its bytes are used.
//! * [`retry`]: the back-off between attempts at a failing server.
//! * [`fetch`]: the tokio side: one keep-alive HTTP/1.1 connection per web seed (TLS for
//!   `https://`), from the `--bind` address.
//!
//! The engine runs a web seed as one more link of the torrent machine: the machine sees a peer
//! that has every piece and never chokes, and verifies what it sends like any peer's blocks (a
//! web seed whose data fails the hash is banned like a peer).

#![warn(missing_docs)]

mod error;
pub mod fetch;
pub mod queue;
pub mod response;
pub mod retry;
pub mod url;

pub use error::WebSeedError;
pub use fetch::HttpSource;
pub use queue::{BlockRequest, RequestQueue, Run, RunAssembler, Segment};
pub use retry::Backoff;
pub use url::WebSeedUrl;
