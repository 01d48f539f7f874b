//! Hash failures and bans. A piece that fails its hash check:
//! - sent whole by one IP: that IP is banned at once (nobody else touched it);
//! - sent by several: nobody is blamed yet. Each block is hashed and remembered with its sender
//!   ([`SmartBan`](crate::smart_ban::SmartBan)), the piece is fetched again, and when it passes
//!   the senders whose blocks differ from the good data are banned. A piece that fails again is
//!   pinned to one of its earlier contributors at a time, so a piece only bad peers offer still
//!   ends up sent whole by one of them.
//! - of a v2 or hybrid torrent: the true block hashes are also asked of a peer and proven
//!   against the piece layer (`block_ban.rs`), which names the bad blocks' senders at once.

use std::net::IpAddr;

use shoal_core::Time;
use tracing::warn;

use crate::torrent::{ConnId, DiskJob, Torrent, TorrentEvent};
use crate::violation::CloseReason;

/// Why block hashes of a piece were asked for.
#[derive(Clone, Debug)]
pub(crate) enum Evidence {
    /// The piece failed; these IPs sent its blocks (by block index).
    Failed(Vec<Option<IpAddr>>),
    /// The piece passed after earlier failures: compare.
    Passed,
}

impl Torrent {
    pub(crate) fn on_hash_failed(&mut self, now: Time, piece: u32) {
        self.stats.hash_failures += 1;
        self.push_event(TorrentEvent::HashFailed(piece));
        let conns = self.picker.block_senders(piece);
        let senders: Vec<Option<IpAddr>> = conns
            .iter()
            .map(|c| c.and_then(|c| self.conn_ips.get(&c).copied()))
            .collect();
        // A block whose sender's IP is no longer known counts as another sender: the "sent
        // whole by one IP" shortcut must never blame the one IP still on record.
        let unknown = conns
            .iter()
            .zip(&senders)
            .any(|(c, ip)| c.is_some() && ip.is_none());
        let mut ips: Vec<IpAddr> = senders.iter().flatten().copied().collect();
        ips.sort();
        ips.dedup();
        warn!(piece, ?ips, unknown, "piece failed its hash check");
        if let ([only], false) = (&ips[..], unknown) {
            // Nobody else sent any of it: that peer sent bad data.
            let only = *only;
            self.ban(now, only);
            self.reset_failed_piece(now, piece, &[]);
            return;
        }
        // A v2 piece: the bad blocks are named from proven leaf hashes (`block_ban.rs`), which
        // goes on to the v1 evidence below once the leaves are read.
        if self.start_block_ban(piece, &senders) {
            return;
        }
        // Hold the piece (no new requests) until its bad data is hashed block by block.
        self.request_block_hashes(piece, Evidence::Failed(senders));
    }

    pub(crate) fn request_block_hashes(&mut self, piece: u32, why: Evidence) {
        self.hashing.insert(piece, why);
        self.push_disk(DiskJob::HashBlocks { piece });
    }

    pub(crate) fn on_block_hashes(
        &mut self,
        now: Time,
        piece: u32,
        result: Result<Vec<[u8; 20]>, String>,
    ) {
        let Some(why) = self.hashing.remove(&piece) else {
            return;
        };
        match (why, result) {
            (Evidence::Failed(senders), Ok(hashes)) => {
                self.smart_ban.record_failure(piece, &senders, &hashes);
                let ips: Vec<IpAddr> = senders.iter().flatten().copied().collect();
                self.reset_failed_piece(now, piece, &ips);
            }
            (Evidence::Failed(senders), Err(e)) => {
                warn!(piece, "cannot hash the failed piece's blocks: {e}");
                let ips: Vec<IpAddr> = senders.iter().flatten().copied().collect();
                self.reset_failed_piece(now, piece, &ips);
            }
            (Evidence::Passed, Ok(good)) => {
                for ip in self.smart_ban.on_pass(piece, &good) {
                    self.ban(now, ip);
                }
            }
            (Evidence::Passed, Err(e)) => warn!(piece, "cannot hash the piece's blocks: {e}"),
        }
    }

    /// The piece's blocks are open again. After a repeat failure the piece is pinned to one of
    /// its contributors, a different one each time.
    pub(crate) fn reset_failed_piece(&mut self, now: Time, piece: u32, contributors: &[IpAddr]) {
        let attempts = self.failures.entry(piece).or_insert(0);
        *attempts += 1;
        let attempts = *attempts;
        let restrict = if attempts >= 2 && !contributors.is_empty() {
            let mut ips = contributors.to_vec();
            ips.sort();
            ips.dedup();
            let ip = ips[(attempts as usize) % ips.len()];
            self.peers
                .iter()
                .filter(|(_, p)| p.addr.ip() == ip)
                .map(|(c, _)| *c)
                .min()
        } else {
            None
        };
        if let Err(e) = self.picker.piece_failed(piece, restrict) {
            warn!("picker: {e}");
        }
        self.fill_all_requests(now);
    }

    /// Bans an IP: its connections close and it is never dialled or accepted again.
    pub(crate) fn ban(&mut self, now: Time, ip: IpAddr) {
        if self.book.is_banned(ip) {
            return;
        }
        warn!(%ip, "banning peer: it sent data that failed the hash check");
        self.book.ban(ip);
        self.stats.banned.push(ip);
        self.push_event(TorrentEvent::Banned(ip));
        let mut conns: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.addr.ip() == ip)
            .map(|(k, _)| *k)
            .collect();
        conns.sort_unstable();
        for c in conns {
            self.close(now, c, CloseReason::Banned);
        }
    }
}
