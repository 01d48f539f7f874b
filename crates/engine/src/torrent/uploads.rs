//! Serving peers' requests: queued up to our `reqq`, read on the disk pool a few at a time per
//! peer, and only while the peer is unchoked.

use shoal_picker::BLOCK_SIZE;
use shoal_wire::{BlockRef, Message};

use super::{DiskDone, PeerKey, TorrentActor};
use crate::peer::{MAX_PENDING_UPLOADS, OUR_REQQ};

impl TorrentActor {
    pub(super) fn on_request(&mut self, key: PeerKey, req: BlockRef) -> Result<(), String> {
        let info = &self.ctx.meta.info;
        let valid = req.piece < info.num_pieces()
            && req.length > 0
            && req.length <= BLOCK_SIZE
            && req.begin as u64 + req.length as u64 <= info.piece_size(req.piece) as u64;
        if !valid {
            return Err(format!("invalid request {req:?}"));
        }
        let have = self.picker.have(req.piece);
        let Some(peer) = self.peers.get_mut(&key) else {
            return Ok(());
        };
        let queued = peer.upload_queue.len() + peer.pending_uploads;
        if peer.am_choking || !have || queued >= OUR_REQQ {
            if peer.fast {
                self.send(key, Message::Reject(req));
            }
            return Ok(());
        }
        peer.upload_queue.push_back(req);
        self.pump_uploads(key);
        Ok(())
    }

    /// Starts disk reads for the peer's queued requests, a bounded number at a time.
    pub(super) fn pump_uploads(&mut self, key: PeerKey) {
        loop {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            let in_writer = peer
                .link
                .piece_bytes
                .load(std::sync::atomic::Ordering::Acquire);
            if peer.pending_uploads >= MAX_PENDING_UPLOADS
                || in_writer + peer.pending_uploads * BLOCK_SIZE as usize
                    >= crate::connection::WRITER_PIECE_BYTES
            {
                return;
            }
            let Some(req) = peer.upload_queue.pop_front() else {
                return;
            };
            peer.pending_uploads += 1;
            peer.cancelled.remove(&req);
            self.disk_inflight += 1;
            let storage = self.ctx.storage.clone();
            let tx = self.disk_tx.clone();
            let job = move || {
                let result = storage.read_block(req.piece, req.begin, req.length);
                let _ = tx.send(DiskDone::Read {
                    peer: key,
                    req,
                    result,
                });
            };
            if self.ctx.pool.submit(job).is_err() {
                self.fatal("the disk pool stopped".into());
                return;
            }
        }
    }
}
