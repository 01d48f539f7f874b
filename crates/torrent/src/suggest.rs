//! Seed suggestions (BEP 6 `suggest`): while we seed, each unchoked downloader is told a few
//! pieces to ask for, pieces no other downloader was offered yet.
//!
//! Why: downloaders pick the rarest pieces, and to each of them every piece only the seed holds
//! is equally rare. Two of them often choose the same one before either has announced it, and
//! the seed uploads it twice. When the seed's uplink is the swarm's bottleneck every such
//! duplicate delays everyone (measured in `crates/swarmsim/tests/capped_seed.rs`). A downloader
//! that honours suggestions (shoal's picker takes a suggested piece when it is as rare as its own
//! choice; libtorrent also prefers suggested pieces) then fetches distinct pieces from the seed,
//! and spreads them among itself. Unlike super-seeding (BEP 16) nothing is hidden: a downloader
//! that ignores suggestions is served as before.

use rand::Rng;
use shoal_wire::Message;

use crate::torrent::{ConnId, Torrent};

/// Pieces suggested ahead to each unchoked downloader. Each request for one of them brings the
/// next suggestion, so a downloader always has this many to choose from.
pub(crate) const SUGGEST_AHEAD: usize = 4;

impl Torrent {
    /// Suggests pieces to `conn` until it has [`SUGGEST_AHEAD`] it has not asked for, if we
    /// seed, it speaks BEP 6, is interested and unchoked.
    pub(crate) fn top_up_suggestions(&mut self, conn: ConnId) {
        // A super-seeder tells each peer of its pieces one by one (`superseed.rs`).
        if self.picker.num_have() != self.config.num_pieces || self.super_seed.is_some() {
            return;
        }
        loop {
            let Some(peer) = self.peers.get(&conn) else {
                return;
            };
            if !peer.fast
                || peer.am_choking
                || !peer.peer_interested
                || peer.suggested_out.len() >= SUGGEST_AHEAD
            {
                return;
            }
            let Some(piece) = self.choose_suggestion(conn) else {
                return;
            };
            if let Some(peer) = self.peers.get_mut(&conn) {
                peer.suggested_out.push(piece);
            }
            let offered = &mut self.offered[piece as usize];
            *offered = offered.saturating_add(1);
            self.send(conn, Message::Suggest(piece));
        }
    }

    /// The piece to suggest to `conn`: one it lacks, offered to the fewest downloaders so far,
    /// then held by the fewest connected peers, ties broken at random. O(pieces) at worst; the
    /// scan stops at the first piece never offered and held by nobody, which is most of them
    /// until the swarm holds a copy.
    fn choose_suggestion(&mut self, conn: ConnId) -> Option<u32> {
        let n = self.config.num_pieces;
        if n == 0 {
            return None;
        }
        let peer = self.peers.get(&conn)?;
        let start = self.rng.random_range(0..n);
        let mut best: Option<((u16, u32), u32)> = None;
        for i in 0..n {
            let p = (start + i) % n;
            if self.picker.peer_has(conn, p) || peer.suggested_out.contains(&p) {
                continue;
            }
            let key = (self.offered[p as usize], self.picker.availability(p));
            if best.is_none_or(|(b, _)| key < b) {
                best = Some((key, p));
                if key == (0, 0) {
                    break;
                }
            }
        }
        best.map(|(_, p)| p)
    }

    /// `conn` asked for a block of `piece` or announced it: a suggestion of it is used up, and
    /// a piece it chose itself counts as offered so it is not suggested to others.
    pub(crate) fn suggestion_used(&mut self, conn: ConnId, piece: u32) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        if let Some(pos) = peer.suggested_out.iter().position(|&p| p == piece) {
            peer.suggested_out.swap_remove(pos);
            self.top_up_suggestions(conn);
        } else if let Some(o) = self.offered.get_mut(piece as usize) {
            *o = (*o).max(1);
        }
    }

    /// Suggestions `conn` never used (it was choked, or left) are handed back, so the pieces
    /// can be offered to someone else.
    pub(crate) fn withdraw_suggestions(&mut self, conn: ConnId) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        for p in peer.suggested_out.drain(..) {
            if let Some(o) = self.offered.get_mut(p as usize) {
                *o = o.saturating_sub(1);
            }
        }
    }
}
