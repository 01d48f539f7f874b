//! Piece selection for shoal: which block to ask whom for.
//!
//! A sans-IO policy crate: [`Picker`] takes what peers announce (bitfields, `have`, BEP 6
//! `have_all`/`have_none`), what arrives (blocks, hash results) and the time, and answers with
//! blocks to request, peers to cancel, and requests that timed out. No sockets, no clock, no
//! tokio; randomness is seeded, so a run is reproducible.
//!
//! The policy, with its numbers:
//! - the first [`RANDOM_FIRST_PIECES`] (4, libtorrent's default) pieces are chosen at random,
//!   then rarest first with random tie-breaks (BEP 3 recommends rarest first);
//! - started pieces are finished before new ones are started; under rarest first a started piece
//!   only yields to a strictly rarer new piece, so the only holder of a rare piece (often the
//!   seed) is not spent finishing a common one (this cut the seed's uploads in the 50-leecher
//!   simulation from 1.8 to 1.15 copies);
//! - a piece whose requests were all dropped before any data arrived is no longer "started";
//! - blocks are [`BLOCK_SIZE`] (16 KiB); the last piece and the last block of a piece may be short;
//! - endgame: once every missing block is requested, a block may be asked of a second peer;
//! - each request carries a caller-given deadline; expired requests free their block;
//! - priority 0 pieces are never picked; a sequential mode exists for streaming.

#![warn(missing_docs)]

mod availability;
mod endgame;
mod error;
mod layout;
mod picker;
mod piece_state;

pub use error::PickerError;
pub use layout::{Block, Layout, BLOCK_SIZE};
pub use picker::{
    BlockOutcome, PickMode, Picker, PickerConfig, DEFAULT_PRIORITY, MAX_PRIORITY,
    RANDOM_FIRST_PIECES,
};
pub use piece_state::{BlockState, Request};

/// What identifies a peer to the picker: a small copyable key chosen by the caller, such as a
/// connection slot index (`u32`). `Ord` keeps internal indexes deterministic.
pub trait PeerKey: Copy + Eq + std::hash::Hash + Ord + std::fmt::Debug {}

impl<T: Copy + Eq + std::hash::Hash + Ord + std::fmt::Debug> PeerKey for T {}

#[cfg(test)]
mod picker_tests;
