//! A swarm simulator for shoal: many peers in one process, simulated time, a seeded rng, no
//! sockets, and every peer the real torrent machine, [`shoal_torrent::Torrent`].
//!
//! The simulator decides nothing a client decides. It only does what the engine's tokio driver
//! and the world around it do:
//!
//! - **links**: each peer has an uplink of a given rate (block payload leaves it one block at a
//!   time, round robin over its connections, and the machine hears `handle_sent` as it does);
//!   every message then takes the link's one-way latency. Control messages take the latency
//!   alone. Download capacity is unlimited;
//! - **disk**: jobs are answered at once from an in-memory store that checks each written block
//!   byte for byte against the content and reports a piece verified when its last block lands;
//!   reads serve the content;
//! - **time**: event-driven; the clock jumps to the next delivery, uplink completion or machine
//!   deadline ([`Torrent::poll_timeout`](shoal_torrent::Torrent::poll_timeout)), no fixed tick;
//! - **dials**: a dial connects the two machines after two latencies if the target is up and
//!   both accept, else `handle_dial_failed`; peers learn addresses from a "tracker" sample when
//!   they join, then from incoming connections and PEX, as the machine does;
//! - **the world**: arrivals, departures (killed, leaving when done or after some copies),
//!   freezes (SIGSTOP: connections stay up and silent) and flapping links.
//!
//! Simplifications: control messages never wait behind blocks on an uplink, download capacity is
//! unlimited, the disk answers at once, a dial takes two latencies, and a frozen peer's dial
//! attempts fail at once instead of timing out.
//!
//! Choking, requests, snubbing, stall detection, endgame, reconnection: all of it is the
//! machine's. What the scenarios in `tests/` measure is therefore the code that ships. Runs are
//! deterministic: one seed drives the sim and every machine, and nothing depends on hash-map
//! order ([`Stats`] compares equal between two runs of the same seed).
//!
//! Scenarios (`cargo test -p shoal-swarmsim -- --nocapture` prints their figures): piece
//! selection modes and a departing seed (`distribution`), tit-for-tat and a free rider
//! (`tit_for_tat`), a frozen peer (`snubbing`), 300 and 1,000 leechers on one seed (`scale`), a
//! flapping peer over an hour, a frozen seeder and a replaced seeder (`churn`), and same seed,
//! same run (`determinism`).

#![warn(missing_docs)]

mod swarm;

pub use swarm::{CancelEvent, PeerSpec, SimConfig, Stats, Swarm};

pub use shoal_torrent::{Block, PickMode, Torrent};
