//! Disk results: writes (and the hash check that ends a piece), reads, block hashes, merkle
//! leaves, resume data.

use shoal_core::Time;
use tracing::warn;

use crate::torrent::{DiskDone, Torrent, TorrentEvent, WriteResult, MAX_DISK_WRITES};

impl Torrent {
    /// The answer to a job from [`Torrent::poll_disk`]. A storage error stops the torrent
    /// ([`TorrentEvent::Fatal`]); verified data is kept.
    pub fn handle_disk(&mut self, now: Time, done: DiskDone) {
        match done {
            DiskDone::Written {
                conn,
                block,
                result,
            } => {
                let was_full = self.disk_writes >= MAX_DISK_WRITES;
                self.disk_writes = self.disk_writes.saturating_sub(1);
                match result {
                    Ok(WriteResult::Stored | WriteResult::Duplicate) => {}
                    Ok(WriteResult::PieceVerified) => self.on_piece_verified(now, block.piece),
                    Ok(WriteResult::PieceFailed) => self.on_hash_failed(now, block.piece),
                    Err(e) => return self.fatal(now, e),
                }
                if was_full || self.disk_writes == 0 {
                    // Back-pressure released: everyone may ask again.
                    self.fill_all_requests(now);
                } else {
                    self.fill_requests(now, conn);
                }
            }
            DiskDone::Read { conn, req, result } => {
                self.disk_reads = self.disk_reads.saturating_sub(1);
                match result {
                    Ok(data) => self.on_read(now, conn, req, data),
                    Err(e) => self.fatal(now, e),
                }
            }
            DiskDone::BlockHashes { piece, result } => self.on_block_hashes(now, piece, result),
            DiskDone::Leaves { piece, result } => self.on_leaves(now, piece, result),
            DiskDone::BlocksKept { piece, result } => self.on_blocks_kept(now, piece, result),
            DiskDone::ResumeFlushed(result) => {
                if let Err(e) = result {
                    warn!("writing resume data failed: {e}");
                }
            }
        }
    }
}

impl TorrentEvent {
    /// Whether the event ends the torrent.
    pub fn is_fatal(&self) -> bool {
        matches!(self, TorrentEvent::Fatal(_))
    }
}
