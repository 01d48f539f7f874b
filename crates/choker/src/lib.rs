//! Choking for shoal: whom to upload to.
//!
//! A sans-IO policy crate. The engine hands [`Choker::tick`] one [`PeerStats`] per connected peer
//! and the time; the choker answers with a [`ChokeDecision`]: the peers to unchoke and to choke
//! (a minimal diff against what it decided before), the peers that just became snubbed, and when
//! to call again. No sockets, no clock, seeded randomness.
//!
//! The policy and its numbers (BEP 3, Bram Cohen's "Incentives Build Robustness in BitTorrent",
//! libtorrent's defaults):
//! - every 10 s, the 4 interested peers that sent us the most over the last 20 s are unchoked
//!   (tit-for-tat); when seeding, slots go round robin instead;
//! - one optimistic unchoke, rotated every 30 s; peers connected for less than 60 s are three
//!   times as likely to get it;
//! - a peer that sent no block for 60 s while we wanted from it is snubbed: it loses its regular
//!   slot, and one more optimistic slot opens;
//! - uninterested peers never hold a slot.

#![warn(missing_docs)]

mod choker;
mod stats;

pub use choker::{ChokeDecision, Choker, ChokerConfig};
pub use stats::PeerStats;

/// What identifies a peer to the choker: a small copyable key chosen by the caller (the same one
/// the picker uses, e.g. a connection slot index). `Ord` keeps the output deterministic.
pub trait PeerKey: Copy + Eq + std::hash::Hash + Ord + std::fmt::Debug {}

impl<T: Copy + Eq + std::hash::Hash + Ord + std::fmt::Debug> PeerKey for T {}

#[cfg(test)]
mod tests;
