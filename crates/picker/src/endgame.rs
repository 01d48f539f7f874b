//! Endgame: once every missing block is requested, ask a second peer for blocks still in flight,
//! so the last pieces do not wait on the slowest connection. The first copy to arrive wins and
//! [`BlockOutcome::New`](crate::BlockOutcome::New) names the other peers to `cancel`.

use shoal_core::Time;

use crate::piece_state::BlockState;
use crate::{Block, PeerKey, Picker};

impl<P: PeerKey> Picker<P> {
    /// Adds duplicate requests for `peer` until `out` holds `max`. Blocks with the fewest
    /// requesters come first; a block is never asked twice of the same peer, nor of more than
    /// `endgame_max_requesters` peers. O(blocks of partial pieces) — endgame is short.
    pub(crate) fn pick_endgame(
        &mut self,
        peer: P,
        max: usize,
        now: Time,
        deadline: Time,
        out: &mut Vec<Block>,
    ) {
        let limit = self.endgame_max();
        let mut options: Vec<(usize, Block)> = Vec::new();
        for (&p, pp) in &self.partial {
            if !self.wanted(p) || !pp.allows(peer) || !self.peer_has(peer, p) {
                continue;
            }
            for (i, b) in pp.blocks.iter().enumerate() {
                if let BlockState::Requested(reqs) = b {
                    if reqs.len() < limit && reqs.iter().all(|r| r.peer != peer) {
                        options.push((reqs.len(), Block::new(p, i as u32)));
                    }
                }
            }
        }
        options.sort_unstable();
        for (_, block) in options.into_iter().take(max.saturating_sub(out.len())) {
            self.add_requester(block, peer, now, deadline);
            out.push(block);
        }
    }
}
