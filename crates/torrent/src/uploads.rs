//! Serving peers' requests: queued up to our `reqq`, read from disk a few at a time per peer,
//! and only while the peer is unchoked and its writer is not backed up.

use bytes::Bytes;
use shoal_core::Time;
use shoal_picker::BLOCK_SIZE;
use shoal_wire::{BlockRef, Message};

use crate::peer::{MAX_PENDING_UPLOADS, OUR_REQQ};
use crate::torrent::{ConnId, DiskJob, Torrent};
use crate::violation::PeerViolation;

impl Torrent {
    pub(crate) fn on_request(
        &mut self,
        now: Time,
        conn: ConnId,
        req: BlockRef,
    ) -> Result<(), PeerViolation> {
        let layout = self.picker.layout();
        let valid = req.piece < self.config.num_pieces
            && req.length > 0
            && req.length <= BLOCK_SIZE
            && u64::from(req.begin) + u64::from(req.length)
                <= u64::from(layout.piece_len(req.piece));
        if !valid {
            return Err(PeerViolation::InvalidRequest {
                piece: req.piece,
                begin: req.begin,
                length: req.length,
            });
        }
        // A super-seeder serves only pieces it announced to this peer (BEP 16).
        let have = self.picker.have(req.piece) && self.super_seed_allows(conn, req.piece);
        let Some(peer) = self.peers.get_mut(&conn) else {
            return Ok(());
        };
        let queued = peer.upload_queue.len() + peer.pending_uploads;
        if peer.am_choking || !have || queued >= OUR_REQQ {
            if peer.fast {
                self.send(conn, Message::Reject(req));
            }
            return Ok(());
        }
        peer.upload_queue.push_back(req);
        self.suggestion_used(conn, req.piece);
        self.pump_uploads(now, conn);
        Ok(())
    }

    pub(crate) fn on_cancel(&mut self, conn: ConnId, req: BlockRef) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        if let Some(pos) = peer.upload_queue.iter().position(|r| *r == req) {
            peer.upload_queue.remove(pos);
        } else if peer.pending_uploads > 0 && peer.cancelled.len() < MAX_PENDING_UPLOADS {
            // Only a read in flight can be cancelled, and at most that many are: a flood of
            // made-up cancels cannot grow the set.
            peer.cancelled.insert(req);
        }
    }

    /// Starts disk reads for the peer's queued requests, a bounded number at a time.
    pub(crate) fn pump_uploads(&mut self, _now: Time, conn: ConnId) {
        if self.stats.fatal.is_some() {
            return;
        }
        loop {
            let Some(peer) = self.peers.get_mut(&conn) else {
                return;
            };
            if peer.pending_uploads >= MAX_PENDING_UPLOADS
                || peer.writer_bytes + peer.pending_uploads * BLOCK_SIZE as usize
                    >= peer.writer_budget()
            {
                return;
            }
            let Some(req) = peer.upload_queue.pop_front() else {
                return;
            };
            peer.pending_uploads += 1;
            peer.cancelled.remove(&req);
            self.disk_reads += 1;
            self.push_disk(DiskJob::Read { conn, req });
        }
    }

    /// A read finished: send the block if the peer still wants it and is unchoked.
    pub(crate) fn on_read(&mut self, now: Time, conn: ConnId, req: BlockRef, data: Bytes) {
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        p.pending_uploads = p.pending_uploads.saturating_sub(1);
        if p.cancelled.remove(&req) {
            self.pump_uploads(now, conn);
            return;
        }
        if p.am_choking {
            if p.fast {
                self.send(conn, Message::Reject(req));
            }
            self.pump_uploads(now, conn);
            return;
        }
        p.uploaded += data.len() as u64;
        p.writer_bytes += data.len();
        if !p.useful {
            p.useful = true;
            if let Some(a) = p.book_addr {
                self.book.succeeded(a);
            }
        }
        self.count_upload(data.len());
        self.super_seed_sent(now, conn, req.piece);
        self.send(
            conn,
            Message::Piece {
                piece: req.piece,
                begin: req.begin,
                data,
            },
        );
        self.pump_uploads(now, conn);
    }
}
