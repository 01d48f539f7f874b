//! The Mainline DHT (BEP 5) for shoal: a sans-IO node and a thin tokio UDP driver.
//!
//! * [`krpc`]: the bencoded messages, with a pure, bounded [`krpc::decode`].
//! * [`routing_table`], [`rpc`], [`lookup`]: Kademlia's table, the failure detector and the
//!   iterative lookups.
//! * [`token`], [`peer_store`], [`rate_limit`], [`bep42`]: serving other nodes safely.
//! * [`sample`] (BEP 51 `sample_infohashes`), [`bep44`] and [`item_store`] (BEP 44 `get` and
//!   `put`): the extension queries other nodes send.
//! * [`crawler`]: a sans-IO BEP 51 crawler that walks the keyspace for info-hashes, within a
//!   query budget.
//! * [`node::DhtNode`]: the state machine (packets and time in, packets, events and the next
//!   deadline out), in the style of quinn-proto, for one address family.
//! * [`dual::DualNode`]: BEP 32, the IPv4 and IPv6 DHTs side by side: one node and one routing
//!   table per family, `nodes6` and `want`, lookups on both.
//! * [`state`]: the node ids and good nodes of both families, saved and loaded.
//! * `driver::Dht` (feature `driver`, on by default): binds a UDP socket per family and drives a
//!   [`dual::DualNode`] from a tokio task.

#![warn(missing_docs)]

pub mod bep42;
pub mod bep44;
pub mod crawler;
#[cfg(feature = "driver")]
pub mod driver;
pub mod dual;
pub mod item_store;
pub mod krpc;
pub mod lookup;
pub mod node;
pub mod peer_store;
pub mod rate_limit;
pub mod routing_table;
pub mod rpc;
pub mod sample;
pub mod state;
pub mod token;

pub use dual::DualNode;
pub use krpc::{decode, Family, KrpcError, Msg, Want};
pub use lookup::{LookupKind, LookupStats};
pub use node::{DhtConfig, DhtError, DhtNode, Event, LookupId, NodeStats, SampleReply};
pub use state::{DhtState, StateError};

/// The public bootstrap routers of the Mainline DHT, for the command line only (never used in
/// tests, which stay on 127.0.0.0/8). Host names: the caller resolves them.
pub const DEFAULT_BOOTSTRAP: &[&str] = &[
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
    "dht.libtorrent.org:25401",
];
