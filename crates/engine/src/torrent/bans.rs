//! Hash failures and bans: who sent the blocks of a piece that failed its check, how suspicion
//! adds up, and banning an IP.

use std::net::IpAddr;

use tracing::warn;

use super::{PeerKey, TorrentActor, BAN_POINTS};

impl TorrentActor {
    pub(super) fn on_hash_failed(&mut self, piece: u32, contributors: Vec<u64>, _last: PeerKey) {
        self.status.hash_failures += 1;
        let keys: Vec<PeerKey> = contributors.iter().map(|&c| c as PeerKey).collect();
        let sole = keys.len() == 1;
        let mut worst: Option<(u32, PeerKey)> = None;
        let mut to_ban = Vec::new();
        for &k in &keys {
            let Some(p) = self.peers.get(&k) else {
                continue;
            };
            let ip = p.addr.ip();
            let points = self.ban_points.entry(ip).or_default();
            *points += if sole { BAN_POINTS } else { 1 };
            if *points >= BAN_POINTS {
                to_ban.push(ip);
            }
            if worst.is_none_or(|(w, _)| *points > w) {
                worst = Some((*points, k));
            }
        }
        warn!(piece, ?contributors, "piece failed its hash check");
        // Let the most suspected contributor alone fetch the piece again, to find the culprit.
        let restrict = worst.map(|(_, k)| k).filter(|_| !sole);
        if let Err(e) = self.picker.piece_failed(piece, restrict) {
            warn!("picker: {e}");
        }
        for ip in to_ban {
            self.ban(ip);
        }
        self.fill_all_requests();
    }

    pub(super) fn ban(&mut self, ip: IpAddr) {
        if self.book.is_banned(ip) {
            return;
        }
        warn!(%ip, "banning peer: it sent data that failed the hash check");
        self.book.ban(ip);
        self.status.banned.push(ip);
        let keys: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.addr.ip() == ip)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            self.disconnect(k, "banned");
        }
    }
}
