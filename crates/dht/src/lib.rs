//! The Mainline DHT (BEP 5) for shoal: a sans-IO node and a thin tokio UDP driver.
//!
//! * [`krpc`]: the bencoded messages, with a pure, bounded [`krpc::decode`].
//! * [`routing_table`], [`rpc`], [`lookup`]: Kademlia's table, the failure detector and the
//!   iterative lookups.
//! * [`token`], [`peer_store`], [`rate_limit`], [`bep42`]: serving other nodes safely.
//! * [`node::DhtNode`]: the state machine (packets and time in, packets, events and the next
//!   deadline out), in the style of quinn-proto.
//! * [`state`]: the node id and good nodes, saved and loaded.
//! * `driver::Dht` (feature `driver`, on by default): binds a UDP socket and drives a node from a
//!   tokio task.

#![warn(missing_docs)]

pub mod bep42;
#[cfg(feature = "driver")]
pub mod driver;
pub mod krpc;
pub mod lookup;
pub mod node;
pub mod peer_store;
pub mod rate_limit;
pub mod routing_table;
pub mod rpc;
pub mod state;
pub mod token;

pub use krpc::{decode, KrpcError, Msg};
pub use lookup::{LookupKind, LookupStats};
pub use node::{DhtConfig, DhtError, DhtNode, Event, LookupId, NodeStats};
pub use state::{DhtState, StateError};

/// The public bootstrap routers of the Mainline DHT, for the command line only (never used in
/// tests, which stay on 127.0.0.0/8). Host names: the caller resolves them.
pub const DEFAULT_BOOTSTRAP: &[&str] = &[
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
    "dht.libtorrent.org:25401",
];
