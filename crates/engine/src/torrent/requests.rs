//! Asking peers for blocks: each peer's queue is topped up to its target depth with blocks the
//! picker chooses, each with a deadline from the peer's RTT estimate.

use shoal_wire::{BlockRef, Message};

use super::{PeerKey, TorrentActor, MAX_DISK_INFLIGHT};

impl TorrentActor {
    pub(super) fn fill_all_requests(&mut self) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.fill_requests(k);
        }
    }

    /// Tops up the peer's queue of requests to its target depth.
    pub(super) fn fill_requests(&mut self, key: PeerKey) {
        if self.disk_inflight >= MAX_DISK_INFLIGHT || self.fatal.is_some() {
            return;
        }
        let now = self.now();
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        if peer.peer_choking || !peer.am_interested {
            return;
        }
        let room = peer.queue_target().saturating_sub(peer.requests.len());
        if room == 0 {
            return;
        }
        let deadline = now + peer.rtt.timeout();
        let blocks = self.picker.pick(key, room, now, deadline);
        if blocks.is_empty() {
            return;
        }
        let layout = *self.picker.layout();
        let mut msgs = Vec::with_capacity(blocks.len());
        if let Some(peer) = self.peers.get_mut(&key) {
            if peer.requests.is_empty() {
                peer.waiting_since = Some(now);
            }
            for b in blocks {
                peer.requests.insert(b, now);
                msgs.push(Message::Request(BlockRef {
                    piece: b.piece,
                    begin: b.offset(),
                    length: layout.block_len(b),
                }));
            }
        }
        for m in msgs {
            self.send(key, m);
        }
    }
}
