//! Asking peers for blocks, and noticing when they stop answering.
//!
//! Each peer's queue is topped up to its target depth with blocks the picker chooses, each with a
//! deadline from the peer's RTT estimate. Two request-level failure detectors hand blocks to other
//! peers: a request past its deadline is released alone; a peer that has delivered nothing for
//! several times its usual gap between blocks (at least [`STALL_FLOOR`]) has *all* its requests
//! released at once — a frozen peer with a deep queue would otherwise hold most of them until
//! their deadlines, seconds later. Late copies of released blocks from the same peer are still
//! accepted; blocks from anyone else are not.

use std::time::Duration;

use bytes::Bytes;
use shoal_core::Time;
use shoal_picker::{Block, BlockOutcome, BLOCK_SIZE};
use shoal_wire::{BlockRef, Message};
use tracing::debug;

use crate::peer::Peer;
use crate::torrent::{ConnId, DiskJob, Torrent, MAX_DISK_WRITES, MAX_UNSOLICITED};
use crate::violation::PeerViolation;

/// The shortest silence that counts as a stall (measured against a SIGSTOPped libtorrent
/// seeder: below this, a busy-but-healthy peer's scheduling hiccups would trigger it).
pub const STALL_FLOOR: Duration = Duration::from_secs(1);
/// A stall is this many of the peer's usual gaps between blocks without one.
pub const STALL_GAPS: u32 = 8;
/// A peer's queue is topped up once this fraction of its target depth is free (see
/// [`Torrent::fill_requests`]).
const REFILL_FRACTION: usize = 8;

impl Torrent {
    pub(crate) fn fill_all_requests(&mut self, now: Time) {
        for c in self.conns_sorted() {
            self.fill_requests(now, c);
        }
    }

    /// Tops up the peer's queue of requests to its target depth.
    pub(crate) fn fill_requests(&mut self, now: Time, conn: ConnId) {
        if self.disk_writes >= MAX_DISK_WRITES || self.stats.fatal.is_some() {
            return;
        }
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        if peer.peer_choking || !peer.am_interested {
            return;
        }
        let outstanding = self.picker.outstanding(conn);
        let target = peer.queue_target();
        let room = target.saturating_sub(outstanding);
        // A queue that still holds work is topped up in batches of an eighth of its target,
        // not a request per block received: each top-up is a send to the peer (a system call
        // here, a wake-up there) and a pass of the picker.
        if room == 0 || (outstanding > 0 && room < (target / REFILL_FRACTION).max(1)) {
            return;
        }
        let deadline = now + peer.rtt.timeout();
        let blocks = self.picker.pick(conn, room, now, deadline);
        if blocks.is_empty() {
            return;
        }
        if outstanding == 0 {
            if let Some(p) = self.peers.get_mut(&conn) {
                p.waiting_since = Some(now);
            }
        }
        let layout = *self.picker.layout();
        for b in blocks {
            self.send(
                conn,
                Message::Request(BlockRef {
                    piece: b.piece,
                    begin: b.offset(),
                    length: layout.block_len(b),
                }),
            );
        }
    }

    /// Requests past their deadline go back to the picker for other peers; the slow peer is
    /// told not to bother (a copy already on its way is harmless). A request that no other peer
    /// could take (none that unchokes us has the piece) stays with the slow peer, with a later
    /// deadline: releasing it would only ask the same peer again, and a copy already queued
    /// there would be sent twice (measured in `crates/swarmsim/tests/super_seed.rs`, where the
    /// seed is the only source of each piece: 14 % of its upload went to such duplicates).
    pub(crate) fn expire_requests(&mut self, now: Time) {
        for (conn, block) in self.picker.due_requests(now) {
            let elsewhere = self.peers.iter().any(|(&c, p)| {
                c != conn && !p.peer_choking && self.picker.peer_has(c, block.piece)
            });
            if elsewhere {
                continue;
            }
            if let Some(p) = self.peers.get_mut(&conn) {
                p.rtt.on_timeout();
                p.timeouts += 1;
                let deadline = now + p.rtt.timeout();
                self.picker.extend_request(conn, block, deadline);
            }
        }
        let expired = self.picker.expire(now);
        if expired.is_empty() {
            return;
        }
        let layout = *self.picker.layout();
        for (conn, block) in expired {
            let Some(p) = self.peers.get_mut(&conn) else {
                continue;
            };
            p.release(block);
            p.cancel_sent(block);
            p.rtt.on_timeout();
            p.timeouts += 1;
            debug!(conn, ?block, "request timed out");
            self.send(
                conn,
                Message::Cancel(BlockRef {
                    piece: block.piece,
                    begin: block.offset(),
                    length: layout.block_len(block),
                }),
            );
        }
        self.fill_all_requests(now);
    }

    /// When the peer's silence would count as a stall (it has requests out and a known pace).
    pub(crate) fn stall_deadline(&self, conn: ConnId, p: &Peer) -> Option<Time> {
        if p.peer_choking && !p.fast {
            return None;
        }
        let gap = p.block_gap?;
        if self.picker.outstanding(conn) == 0 {
            return None;
        }
        let quiet_from = [p.last_block_at, p.waiting_since]
            .into_iter()
            .flatten()
            .fold(p.connected_at, Time::max);
        let allowed = (gap * STALL_GAPS).max(STALL_FLOOR).min(p.rtt.timeout());
        Some(quiet_from + allowed)
    }

    /// A peer that stopped delivering in the middle of a queue: every request it holds goes to
    /// other peers now, and it gets one request at a time until it delivers again.
    pub(crate) fn detect_stalls(&mut self, now: Time) {
        let mut stalled: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(c, p)| self.stall_deadline(**c, p).is_some_and(|t| now >= t))
            .map(|(c, _)| *c)
            .collect();
        stalled.sort_unstable();
        for conn in stalled {
            debug!(conn, "peer stalled: its requests go to others");
            if let Some(p) = self.peers.get_mut(&conn) {
                // One request at a time until it delivers; its pace is unknown again.
                p.stalled = true;
                p.block_gap = None;
                p.timeouts += 1;
                p.rtt.on_timeout();
            }
            self.picker.unpin(conn);
            self.release_all(now, conn);
        }
    }

    /// The choker says the peer is snubbed: its blocks go elsewhere, one request at a time.
    pub(crate) fn snub(&mut self, now: Time, conn: ConnId) {
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        if p.snubbed_since.is_some() {
            return;
        }
        debug!(conn, "snubbed");
        p.snubbed_since = Some(now);
        self.picker.unpin(conn);
        self.release_all(now, conn);
    }

    /// Releases every request outstanding to `conn` (late copies stay acceptable) and lets the
    /// other peers take them.
    fn release_all(&mut self, now: Time, conn: ConnId) {
        let blocks = self.picker.abort_peer_requests(conn);
        if blocks.is_empty() {
            return;
        }
        let layout = *self.picker.layout();
        if let Some(p) = self.peers.get_mut(&conn) {
            for &b in &blocks {
                p.release(b);
                p.cancel_sent(b);
            }
        }
        // Cancel them, so a peer that wakes up does not spend its upload on them.
        for b in blocks {
            self.send(
                conn,
                Message::Cancel(BlockRef {
                    piece: b.piece,
                    begin: b.offset(),
                    length: layout.block_len(b),
                }),
            );
        }
        self.fill_all_requests(now);
    }

    /// A block arrived. It is accepted only from the peer it was requested from (or a late copy
    /// of a request we released to that same peer); it is written once, and its piece hashed.
    pub(crate) fn on_block(
        &mut self,
        now: Time,
        conn: ConnId,
        piece: u32,
        begin: u32,
        data: Bytes,
    ) -> Result<(), PeerViolation> {
        let invalid = PeerViolation::InvalidBlock {
            piece,
            begin,
            length: data.len() as u32,
        };
        if piece >= self.config.num_pieces || !begin.is_multiple_of(BLOCK_SIZE) {
            return Err(invalid);
        }
        let block = Block::new(piece, begin / BLOCK_SIZE);
        let layout = *self.picker.layout();
        if layout.check_block(block).is_err() || data.len() as u32 != layout.block_len(block) {
            return Err(invalid);
        }
        let sent_at = self.picker.request_sent_at(conn, block);
        let Some(peer) = self.peers.get_mut(&conn) else {
            return Ok(());
        };
        if sent_at.is_none() && !peer.take_released(block) {
            peer.unsolicited += 1;
            if peer.unsolicited > MAX_UNSOLICITED {
                return Err(PeerViolation::Unsolicited(peer.unsolicited));
            }
            return Ok(());
        }
        if let Some(sent) = sent_at {
            peer.rtt.sample(now - sent);
        }
        peer.count_block(data.len(), now);
        peer.snubbed_since = None;
        peer.stalled = false;
        peer.cancels_out.remove(&block);
        if !peer.useful {
            peer.useful = true;
            if let Some(a) = peer.book_addr {
                self.book.succeeded(a);
            }
        }
        self.count_download(data.len());
        match self.picker.block_received(conn, block) {
            Ok(BlockOutcome::New { cancel, .. }) => {
                for other in cancel {
                    if let Some(p) = self.peers.get_mut(&other) {
                        p.release(block);
                        p.cancel_sent(block);
                        self.send(
                            other,
                            Message::Cancel(BlockRef {
                                piece,
                                begin,
                                length: data.len() as u32,
                            }),
                        );
                    }
                }
                self.disk_writes += 1;
                self.push_disk(DiskJob::Write { conn, block, data });
            }
            Ok(BlockOutcome::Duplicate | BlockOutcome::Unexpected) => {}
            Err(_) => return Err(invalid),
        }
        self.fill_requests(now, conn);
        Ok(())
    }
}
