//! What the engine tells the choker about each peer, and what the choker remembers of it.

use std::collections::VecDeque;

use shoal_core::Time;

/// One peer's state as the engine sees it at the time of a [`Choker::tick`](crate::Choker::tick).
///
/// Byte counters are cumulative since the connection opened (payload bytes): the choker takes the
/// difference at each round itself, so calling it between rounds (for snub checks) is harmless
/// and the engine need not reset anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStats<P> {
    /// The peer.
    pub peer: P,
    /// Bytes of block data received from the peer since it connected.
    pub downloaded: u64,
    /// Bytes of block data sent to the peer since it connected.
    pub uploaded: u64,
    /// The peer is interested in us (wants to download): only such peers get slots.
    pub peer_interested: bool,
    /// We are interested in the peer.
    pub am_interested: bool,
    /// The peer chokes us.
    pub peer_choking: bool,
    /// Requests we have outstanding to the peer.
    pub requests_out: usize,
    /// When the connection was established.
    pub connected_at: Time,
    /// When the last block arrived from the peer (or, if later, when we started wanting from it);
    /// `None` if never.
    pub last_block_at: Option<Time>,
}

impl<P> PeerStats<P> {
    /// Whether we are waiting on the peer: interested, and either unchoked by it or with
    /// requests out (BEP 6 peers may serve requests while choking).
    pub fn wants_from(&self) -> bool {
        self.am_interested && (!self.peer_choking || self.requests_out > 0)
    }

    /// Since when we count silence for anti-snubbing.
    pub(crate) fn silent_since(&self) -> Time {
        self.last_block_at
            .map_or(self.connected_at, |t| t.max(self.connected_at))
    }
}

/// What the choker remembers of a peer between calls.
#[derive(Clone, Debug, Default)]
pub(crate) struct History {
    /// Counter values at the last round.
    last_down: u64,
    last_up: u64,
    /// Bytes per round over the last few rounds, newest last.
    down: VecDeque<u64>,
    up: VecDeque<u64>,
    pub(crate) snubbed: bool,
    /// Since when we have been continuously wanting from the peer, as seen by the choker.
    pub(crate) wanting_since: Option<Time>,
    /// When the current unchoke began (if unchoked).
    pub(crate) unchoked_at: Option<Time>,
    /// When it was last choked after having been unchoked.
    pub(crate) choked_at: Option<Time>,
}

impl History {
    /// Closes a round: records the bytes moved since the previous one, keeping `window` rounds.
    pub(crate) fn close_round<P>(&mut self, s: &PeerStats<P>, window: usize) {
        let d = s.downloaded.saturating_sub(self.last_down);
        let u = s.uploaded.saturating_sub(self.last_up);
        self.last_down = s.downloaded;
        self.last_up = s.uploaded;
        self.down.push_back(d);
        self.up.push_back(u);
        while self.down.len() > window.max(1) {
            self.down.pop_front();
        }
        while self.up.len() > window.max(1) {
            self.up.pop_front();
        }
    }

    /// Bytes received from the peer over the window.
    pub(crate) fn down_sum(&self) -> u64 {
        self.down.iter().sum()
    }

    /// Bytes sent to the peer over the window.
    pub(crate) fn up_sum(&self) -> u64 {
        self.up.iter().sum()
    }
}
