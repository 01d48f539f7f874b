//! A swarm simulator for shoal's policies: many peers in one process, simulated time in fixed
//! ticks, a seeded rng, no sockets.
//!
//! Every simulated peer runs the real [`Picker`] and [`Choker`]. Each tick: seeds that have done
//! their share leave, expired requests are freed, interest is updated, chokers whose time has come
//! run, downloaders fill their request queues on the connections that unchoke them, and every
//! uploader sends blocks round robin over its unchoked connections as far as its upload capacity
//! allows. A completed piece is verified at once and announced with `have` to every other peer.
//!
//! The model leaves out what the policies do not decide: latency (a block requested in a tick can
//! arrive in the same tick), download capacity (unlimited), the handshake, hashing and disk.
//! Connections form a full mesh. Every byte received is accounted by source and by why it was
//! sent (the uploader was a seed, it unchoked us optimistically, or it reciprocated), which is
//! what the scenarios in `tests/` assert on.

#![warn(missing_docs)]

mod swarm;

pub use swarm::{PeerSpec, SimConfig, SnubEvent, Stats, Swarm};

pub use shoal_choker::{Choker, ChokerConfig};
pub use shoal_picker::{PickMode, Picker};
