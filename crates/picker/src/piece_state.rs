//! The download state of one piece: what happened to each of its blocks.

use shoal_core::Time;

/// One outstanding request of a block to a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<P> {
    /// Whom it was sent to.
    pub peer: P,
    /// When it was handed out.
    pub sent_at: Time,
    /// When the caller stops waiting for it (see [`Picker::expire`](crate::Picker::expire)).
    pub deadline: Time,
}

/// Where one block stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockState<P> {
    /// Nobody has been asked for it (or every request for it was dropped or expired).
    Open,
    /// Asked of one peer, or of several in endgame.
    Requested(Vec<Request<P>>),
    /// Its data arrived from this peer; the piece is not verified yet.
    Received {
        /// The peer whose data we kept (a suspect if the piece fails its hash check).
        from: P,
    },
    /// Its piece passed the hash check.
    Verified,
}

/// A piece that has been started and not yet verified.
#[derive(Clone, Debug)]
pub(crate) struct PartialPiece<P> {
    pub(crate) blocks: Vec<BlockState<P>>,
    /// Blocks in [`BlockState::Open`].
    pub(crate) open: u32,
    /// Blocks in [`BlockState::Received`].
    pub(crate) received: u32,
    /// After a hash failure the caller may pin the piece to one peer to find the culprit.
    pub(crate) restricted: Option<P>,
}

impl<P: Copy + PartialEq> PartialPiece<P> {
    pub(crate) fn new(blocks: u32) -> Self {
        PartialPiece {
            blocks: vec![BlockState::Open; blocks as usize],
            open: blocks,
            received: 0,
            restricted: None,
        }
    }

    /// May `peer` be asked for blocks of this piece?
    pub(crate) fn allows(&self, peer: P) -> bool {
        self.restricted.is_none_or(|r| r == peer)
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.received as usize == self.blocks.len()
    }
}
