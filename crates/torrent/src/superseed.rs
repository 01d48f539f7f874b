//! Super-seeding (BEP 16): an initial seed that hands out each piece once.
//!
//! The seed claims to have nothing (BEP 6 `have_none`, or no bitfield at all for a peer without
//! the fast extension, as libtorrent does) and offers each peer a piece with a `have`: one that no
//! connected peer holds and no other peer is being offered. A peer is offered its next piece only
//! once the piece it was given is seen on another peer (a `have` from a third peer, BEP 16's
//! "strict" rule), so what the seed uploads is new to the swarm and the peers spread it.
//!
//! Choices where BEP 16 leaves them open:
//!
//! - **Two offers per peer**, as libtorrent (`m_superseed_piece[2]`, two `have`s when the peer
//!   connects): the peer downloads its second piece while its first spreads, instead of idling
//!   for a round trip of the swarm per piece. Each is still a piece nobody else was given.
//! - **No duplicate offers**: only pieces no connected peer holds and nobody is being offered are
//!   offered. libtorrent then falls back to the rarest piece (which a peer holds), an upload the
//!   swarm could have made; here the peer waits, and that piece spreads among the peers.
//! - **Requests**: a piece we announced to the peer is served (even after its offer moved on, so
//!   a peer that was told we have a piece never loops on rejects for it); any other piece is
//!   rejected with BEP 6 `reject`, or ignored for a peer without the fast extension, as libtorrent
//!   rejects requests for pieces it does not super-seed to that peer.
//! - **Timeouts** (BEP 16 and libtorrent have none): an offer that makes no progress for
//!   [`OFFER_TIMEOUT`] goes back to the pool and the peer gets a new one. This covers a peer that
//!   never downloads its piece (the clock stops while we choke it: it cannot) and one that never
//!   re-shares it (a free rider, or a client that suppresses redundant `have`s).
//! - **A lone leecher**: when no other connected peer lacks the piece a peer just completed,
//!   nobody can re-share it, so the peer gets its next piece at once instead of after the timeout
//!   (rtorrent's initial seeding has a similar fast start with few peers).
//! - **The end**: once every piece is held by a connected peer (the swarm is self-sufficient)
//!   super-seeding stops for good: each peer is sent a `have` for every piece it lacks and was
//!   not told of, and the torrent serves as a normal seed.

use std::time::Duration;

use rand::Rng;
use shoal_core::Time;
use shoal_wire::Message;
use tracing::info;

use crate::torrent::{ConnId, Torrent};

/// Pieces offered to a peer at a time (libtorrent's two).
pub const SUPER_SEED_SLOTS: usize = 2;

/// How long an offer may go without progress before its piece goes back to the pool and the peer
/// gets another. While the peer lacks the piece the clock runs only while we unchoke it and
/// restarts at each block we send it of the piece; from its `have` on, the piece has this long
/// to show up on another peer. Only the first kind of expiry can cost a duplicate upload (the
/// piece is offered again while the slow peer may still fetch it); the second only gives the
/// peer a new piece. Measured in `crates/swarmsim/tests/super_seed.rs` (50 leechers, 64 KiB
/// pieces, a 128 KiB/s seed): 3 s re-offered pieces still on their way (1.25 copies), 5 s to
/// 120 s all gave 1.000 copies, also with 5 free riders among the 50; 30 s leaves a wide margin
/// for slower links and larger pieces.
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(30);

/// One piece offered to one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The piece.
    pub piece: u32,
    /// When it goes back to the pool (`None`: paused, we choke the peer and it lacks the piece).
    pub deadline: Option<Time>,
}

/// The torrent's super-seeding state (present while super-seeding).
#[derive(Debug)]
pub(crate) struct SuperSeed {
    /// Per piece, the peers it is offered to now.
    live: Vec<u16>,
}

impl SuperSeed {
    pub(crate) fn new(pieces: u32) -> Self {
        SuperSeed {
            live: vec![0; pieces as usize],
        }
    }
}

impl Torrent {
    /// Whether the torrent is super-seeding (BEP 16) now.
    pub fn is_super_seeding(&self) -> bool {
        self.super_seed.is_some()
    }

    /// A new connection while super-seeding: `have_none` for a BEP 6 peer (no bitfield for the
    /// others: BEP 3 lets a peer with nothing omit it), then its first offers.
    pub(crate) fn super_seed_connected(&mut self, now: Time, conn: ConnId, fast: bool) {
        if fast {
            self.send(conn, Message::HaveNone);
        }
        self.super_seed_fill(now, conn);
    }

    /// Offers pieces to `conn` until it has [`SUPER_SEED_SLOTS`], while there are pieces to
    /// offer.
    pub(crate) fn super_seed_fill(&mut self, now: Time, conn: ConnId) {
        if self.super_seed.is_none() {
            return;
        }
        loop {
            let Some(peer) = self.peers.get(&conn) else {
                return;
            };
            if peer.offers.len() >= SUPER_SEED_SLOTS {
                return;
            }
            let running = !peer.am_choking;
            let Some(piece) = self.super_seed_choose(conn) else {
                return;
            };
            if let Some(ss) = &mut self.super_seed {
                ss.live[piece as usize] = ss.live[piece as usize].saturating_add(1);
            }
            if let Some(peer) = self.peers.get_mut(&conn) {
                peer.offers.push(Offer {
                    piece,
                    deadline: running.then_some(now + OFFER_TIMEOUT),
                });
                peer.announced.insert(piece);
            }
            self.send(conn, Message::Have(piece));
        }
    }

    /// A piece to offer to `conn`: one it lacks, no connected peer holds, nobody is offered, and
    /// it was not told of before; scanned from a random start (libtorrent picks at random among
    /// the rarest).
    fn super_seed_choose(&mut self, conn: ConnId) -> Option<u32> {
        let n = self.config.num_pieces;
        let ss = self.super_seed.as_ref()?;
        let peer = self.peers.get(&conn)?;
        if n == 0 {
            return None;
        }
        let start = self.rng.random_range(0..n);
        (0..n).map(|i| (start + i) % n).find(|&p| {
            ss.live[p as usize] == 0
                && self.picker.availability(p) == 0
                && !peer.announced.contains(&p)
        })
    }

    /// Takes `conn`'s offer of `piece` back (it spread, timed out, or the peer had it); the
    /// caller refills.
    fn super_seed_release(&mut self, conn: ConnId, piece: u32) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        let before = peer.offers.len();
        peer.offers.retain(|o| o.piece != piece);
        if peer.offers.len() < before {
            if let Some(ss) = &mut self.super_seed {
                let l = &mut ss.live[piece as usize];
                *l = l.saturating_sub(1);
            }
        }
    }

    /// Re-examines `conn`'s offers: one whose piece another connected peer holds has done its
    /// job (or is moot); one the peer completed with nobody left to pass it to is done too (a
    /// lone leecher); one past its deadline goes back to the pool. Then refills.
    fn super_seed_review(&mut self, now: Time, conn: ConnId) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        let others = self.peers.len() as u32 - 1;
        let mut done = Vec::new();
        for o in &peer.offers {
            let mine = self.picker.peer_has(conn, o.piece);
            let elsewhere = self.picker.availability(o.piece) - u32::from(mine);
            let nobody_lacks = mine && elsewhere >= others;
            let expired = o.deadline.is_some_and(|d| now >= d);
            if elsewhere >= 1 || nobody_lacks || expired {
                done.push(o.piece);
            }
        }
        for p in done {
            self.super_seed_release(conn, p);
        }
        self.super_seed_fill(now, conn);
    }

    /// Re-examines every peer (after a peer left, or at a deadline).
    pub(crate) fn super_seed_review_all(&mut self, now: Time) {
        if self.super_seed.is_none() {
            return;
        }
        for c in self.conns_sorted() {
            self.super_seed_review(now, c);
        }
    }

    /// `conn` announced `piece`: its own offer of it now waits to be seen elsewhere (from now,
    /// for [`OFFER_TIMEOUT`]), and other peers' offers of it have spread.
    pub(crate) fn super_seed_have(&mut self, now: Time, conn: ConnId, piece: u32) {
        if self.super_seed.is_none() {
            return;
        }
        if let Some(peer) = self.peers.get_mut(&conn) {
            for o in &mut peer.offers {
                if o.piece == piece {
                    o.deadline = Some(now + OFFER_TIMEOUT);
                }
            }
        }
        let offered_to: Vec<ConnId> = self
            .conns_sorted()
            .into_iter()
            .filter(|c| {
                self.peers
                    .get(c)
                    .is_some_and(|p| p.offers.iter().any(|o| o.piece == piece))
            })
            .collect();
        for c in offered_to {
            self.super_seed_review(now, c);
        }
        self.super_seed_check_end(now);
    }

    /// `conn`'s bitfield (or `have_all`) arrived: offers of pieces it already had are taken
    /// back (nothing was uploaded for them), then everything is checked as after a `have`.
    pub(crate) fn super_seed_bitfield(&mut self, now: Time, conn: ConnId) {
        if self.super_seed.is_none() {
            return;
        }
        let had: Vec<u32> = self.peers.get(&conn).map_or_else(Vec::new, |p| {
            p.offers
                .iter()
                .map(|o| o.piece)
                .filter(|&x| self.picker.peer_has(conn, x))
                .collect()
        });
        for p in had {
            self.super_seed_release(conn, p);
        }
        if !self.super_seed_check_end(now) {
            // Its pieces may be ones other peers are offered: those offers have spread.
            self.super_seed_review_all(now);
        }
    }

    /// We choke or unchoke `conn`: the deadline of an offer it has not completed stops while it
    /// cannot download it and starts afresh when it can.
    pub(crate) fn super_seed_choked(&mut self, now: Time, conn: ConnId, choked: bool) {
        if self.super_seed.is_none() {
            return;
        }
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        for o in &mut peer.offers {
            if !self.picker.peer_has(conn, o.piece) {
                o.deadline = (!choked).then_some(now + OFFER_TIMEOUT);
            }
        }
    }

    /// We sent `conn` a block of `piece`: its offer of that piece is making progress.
    pub(crate) fn super_seed_sent(&mut self, now: Time, conn: ConnId, piece: u32) {
        if self.super_seed.is_none() {
            return;
        }
        if let Some(peer) = self.peers.get_mut(&conn) {
            for o in &mut peer.offers {
                if o.piece == piece && o.deadline.is_some() {
                    o.deadline = Some(now + OFFER_TIMEOUT);
                }
            }
        }
    }

    /// `conn` is closing: its offers go back to the pool.
    pub(crate) fn super_seed_closing(&mut self, conn: ConnId) {
        if self.super_seed.is_none() {
            return;
        }
        let pieces: Vec<u32> = self
            .peers
            .get(&conn)
            .map_or_else(Vec::new, |p| p.offers.iter().map(|o| o.piece).collect());
        for p in pieces {
            self.super_seed_release(conn, p);
        }
    }

    /// The earliest offer deadline.
    pub(crate) fn super_seed_deadline(&self) -> Option<Time> {
        self.super_seed.as_ref()?;
        self.peers
            .values()
            .flat_map(|p| p.offers.iter().filter_map(|o| o.deadline))
            .min()
    }

    /// Whether a request for `piece` from `conn` may be served: always once super-seeding is
    /// over, else only for a piece we announced to it.
    pub(crate) fn super_seed_allows(&self, conn: ConnId, piece: u32) -> bool {
        self.super_seed.is_none()
            || self
                .peers
                .get(&conn)
                .is_some_and(|p| p.announced.contains(&piece))
    }

    /// Ends super-seeding once every piece is held by a connected peer; true if it ended.
    pub(crate) fn super_seed_check_end(&mut self, now: Time) -> bool {
        if self.super_seed.is_none() || self.picker.min_availability() == 0 {
            return false;
        }
        info!("the swarm holds every piece: super-seeding ends, seeding normally");
        self.super_seed = None;
        let n = self.config.num_pieces;
        for c in self.conns_sorted() {
            let Some(peer) = self.peers.get_mut(&c) else {
                continue;
            };
            peer.offers.clear();
            let announced = std::mem::take(&mut peer.announced);
            // A `have` for each piece it lacks and was not told of (no second bitfield: BEP 3
            // allows only one, first).
            for p in 0..n {
                if !announced.contains(&p) && !self.picker.peer_has(c, p) {
                    self.send(c, Message::Have(p));
                }
            }
            self.top_up_suggestions(c);
        }
        self.fill_free_slots(now);
        true
    }
}
