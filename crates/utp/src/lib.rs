//! uTP, the uTorrent transport protocol (BEP 29), with LEDBAT congestion control (RFC 6817),
//! sans-IO.
//!
//! * [`packet`]: the 20-byte header, the extension chain and the selective ACK; a parser that
//!   never panics.
//! * [`seq`]: 16-bit wrapping sequence number arithmetic.
//! * [`ledbat`]: the delay-based congestion window: base delay over a sliding history of
//!   per-minute minima, the window's growth and decrease, slow start, halving on loss.
//! * [`mtu`]: path MTU discovery: packets start small, probes of larger sizes search for the
//!   largest the path carries (a binary search; a lost probe lowers the ceiling).
//! * [`send_buffer`], [`recv_buffer`]: the bounded buffers of each direction (the receive side
//!   holds the reorder buffer and builds selective ACKs).
//! * [`Connection`]: one connection as a state machine in the style of quinn-proto: datagrams,
//!   application calls and time in; datagrams, [`Event`]s and the next deadline out.
//! * [`UtpSocket`]: many connections on one UDP socket, keyed by (remote address, connection
//!   id), accepting SYNs within a connection cap and a half-open (SYN flood) bound.
//!
//! Nothing here owns a socket, a thread or a timer: the engine's driver moves datagrams and
//! [`shoal_core::Time`] in and datagrams out. Every buffer is bounded ([`Config`],
//! [`SocketConfig`], [`MAX_OUTSTANDING`], [`packet::MAX_SACK_LEN`]).

//!
//! Not implemented, by choice or not yet: the BEP 29 shrinking of packets on slow links, delayed ACKs (every DATA is acknowledged at
//! once, libtorrent's default), pacing, clock-drift correction of the base delay (the 10-minute
//! history forgets a drifted base instead), and libtorrent's close-reason extension (skipped
//! like any unknown extension). An idle connection (nothing in flight) sends keepalives but
//! cannot notice a vanished peer; the BitTorrent layer's own keepalives put data in flight.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
pub mod connection;
mod error;
pub mod ledbat;
pub mod mtu;
pub mod packet;
pub mod recv_buffer;
pub mod send_buffer;
pub mod seq;
pub mod socket;

pub use config::{Config, MIN_PAYLOAD};
pub use connection::{CloseReason, Connection, Event, Role, Stats};
pub use error::{PacketError, UtpError};
pub use ledbat::{Ledbat, LedbatConfig};
pub use mtu::Fragmentation;
pub use packet::{Header, Packet, PacketType};
pub use send_buffer::MAX_OUTSTANDING;
pub use socket::{
    looks_like_utp, ConnectionHandle, SocketConfig, Transmit, UtpSocket, LOOPBACK_MTU,
};

#[cfg(test)]
mod tests;
