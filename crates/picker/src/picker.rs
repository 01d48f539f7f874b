//! The picker: which block to ask whom for.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shoal_core::Time;

use crate::availability::{Availability, PeerPieces, PieceSet};
use crate::piece_state::{BlockState, PartialPiece, Request};
use crate::{Block, Layout, PeerKey, PickerError};

/// libtorrent's `initial_picker_threshold`: pieces are picked at random until this many are
/// complete, so that we quickly have something to trade (a piece everyone already has is cheap
/// to get at random, and the rarest one may come from a single slow peer).
pub const RANDOM_FIRST_PIECES: u32 = 4;

/// The highest piece priority (libtorrent's scale: 0 = skip, 1..=7, default 4).
pub const MAX_PRIORITY: u8 = 7;

/// The priority pieces start with.
pub const DEFAULT_PRIORITY: u8 = 4;

/// How new pieces are chosen once partial pieces cannot take more requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PickMode {
    /// Random until [`PickerConfig::random_first_pieces`] are complete, then rarest first (ties
    /// broken by a random order drawn at construction). The default and the right choice for
    /// swarm health.
    #[default]
    RarestFirst,
    /// Always a random piece the peer has. For comparison in simulations.
    Random,
    /// The lowest-index piece the peer has: for streaming, and for comparison in simulations.
    Sequential,
}

/// Tunables of a [`Picker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PickerConfig {
    /// How new pieces are chosen.
    pub mode: PickMode,
    /// Pieces picked at random before rarest first takes over ([`RANDOM_FIRST_PIECES`]).
    pub random_first_pieces: u32,
    /// In endgame, how many peers may be asked for the same block at once. 2: "a second peer".
    pub endgame_max_requesters: usize,
}

impl Default for PickerConfig {
    fn default() -> Self {
        PickerConfig {
            mode: PickMode::RarestFirst,
            random_first_pieces: RANDOM_FIRST_PIECES,
            endgame_max_requesters: 2,
        }
    }
}

/// What [`Picker::block_received`] made of a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockOutcome<P> {
    /// New data, kept.
    New {
        /// Other peers this block was also requested from (endgame): send them `cancel`.
        cancel: Vec<P>,
        /// Every block of the piece is here: hash it, then call [`Picker::piece_verified`] or
        /// [`Picker::piece_failed`].
        piece_complete: bool,
    },
    /// We already have this block (a late duplicate after a timeout or in endgame): drop it.
    Duplicate,
    /// The piece was never started (or was skipped): unrequested data, drop it.
    Unexpected,
}

/// Bookkeeping of one connected peer.
#[derive(Clone, Debug)]
struct PeerEntry {
    pieces: PeerPieces,
    /// Blocks requested from this peer and not yet answered.
    requests: BTreeSet<Block>,
    /// Pieces it suggested (BEP 6 `suggest`), oldest first, at most [`MAX_SUGGESTIONS`].
    suggested: VecDeque<u32>,
}

/// Suggestions kept per peer; older ones are forgotten (libtorrent keeps a similar handful).
pub const MAX_SUGGESTIONS: usize = 16;

/// Rank of a not-yet-started piece: higher priority first, then rarer, then the random tie-break.
type CandidateKey = (Reverse<u8>, u32, u32, u32);

/// Piece and block selection for one torrent, as a plain deterministic state machine.
///
/// `P` is the caller's key for a peer (for example a connection slot index): any small `Copy`
/// type. The picker never reads a clock; times are given with each call, and randomness comes from
/// a [`SmallRng`] seeded at construction.
///
/// How the engine drives it: [`add_peer`](Self::add_peer) on connect, then the peer's
/// bitfield / `have_all` / `have_none` and each `have`; [`pick`](Self::pick) when the peer unchokes
/// us and its request queue has room (the deadline comes from the peer's RTT estimator);
/// [`block_received`](Self::block_received) for each block (sending `cancel` to the peers it
/// names); [`piece_verified`](Self::piece_verified) or [`piece_failed`](Self::piece_failed) after
/// hashing; [`expire`](Self::expire) at [`next_deadline`](Self::next_deadline);
/// [`abort_peer_requests`](Self::abort_peer_requests) when the peer chokes us without the fast
/// extension or is snubbed; [`remove_peer`](Self::remove_peer) on disconnect.
///
/// Costs: `have` and a peer leaving are O(log n) per piece touched; seeds join and leave in O(1);
/// `pick` is O(partial pieces + log n) for a seed and, for other peers, the smaller of a walk of the
/// rarest-first order until a piece the peer has (usually short) and a scan of the peer's bitfield
/// (O(n / 64 + pieces it has)). Random first and sequential picks may scan O(n) in the worst case.
#[derive(Clone, Debug)]
pub struct Picker<P: PeerKey> {
    layout: Layout,
    config: PickerConfig,
    rng: SmallRng,
    /// Verified pieces.
    have: PieceSet,
    /// Pieces we want and do not have (priority > 0); drives interest and completion.
    want: PieceSet,
    priority: Vec<u8>,
    availability: Availability,
    /// Random tie-break rank of each piece, fixed at construction.
    tiebreak: Vec<u32>,
    /// Wanted pieces neither started nor verified, in pick order (rarest first).
    candidates: BTreeSet<CandidateKey>,
    /// Started, unverified pieces (wanted or not).
    pub(crate) partial: BTreeMap<u32, PartialPiece<P>>,
    peers: HashMap<P, PeerEntry>,
    /// Every outstanding request by deadline, for [`expire`](Self::expire).
    deadlines: BTreeSet<(Time, Block, P)>,
    /// Open blocks of wanted pieces; zero with pieces still missing means endgame.
    open_blocks: u64,
}

impl<P: PeerKey> Picker<P> {
    /// A picker for a torrent of `pieces` pieces of `piece_len` bytes, `total_len` bytes in all,
    /// with default settings, randomness seeded with `seed`.
    pub fn new(
        pieces: u32,
        piece_len: u32,
        total_len: u64,
        seed: u64,
    ) -> Result<Self, PickerError> {
        Ok(Self::with_config(
            Layout::new(pieces, piece_len, total_len)?,
            PickerConfig::default(),
            seed,
        ))
    }

    /// A picker for `layout` with explicit settings.
    pub fn with_config(layout: Layout, config: PickerConfig, seed: u64) -> Self {
        let n = layout.pieces();
        let mut rng = SmallRng::seed_from_u64(seed);
        let tiebreak = (0..n).map(|_| rng.random::<u32>()).collect();
        let mut want = PieceSet::empty(n);
        let mut open_blocks = 0;
        for p in 0..n {
            want.insert(p);
            open_blocks += u64::from(layout.blocks_in_piece(p));
        }
        let mut picker = Picker {
            layout,
            config,
            rng,
            have: PieceSet::empty(n),
            want,
            priority: vec![DEFAULT_PRIORITY; n as usize],
            availability: Availability::new(n),
            tiebreak,
            candidates: BTreeSet::new(),
            partial: BTreeMap::new(),
            peers: HashMap::new(),
            deadlines: BTreeSet::new(),
            open_blocks,
        };
        for p in 0..n {
            picker.candidates.insert(picker.key(p));
        }
        picker
    }

    /// The torrent's geometry.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Changes how new pieces are chosen (already started pieces are unaffected).
    pub fn set_mode(&mut self, mode: PickMode) {
        self.config.mode = mode;
    }

    // ----- our pieces and priorities -----

    /// Whether `piece` is verified.
    pub fn have(&self, piece: u32) -> bool {
        piece < self.layout.pieces() && self.have.contains(piece)
    }

    /// How many pieces are verified.
    pub fn num_have(&self) -> u32 {
        self.have.count()
    }

    /// True when every piece of priority > 0 is verified.
    pub fn is_complete(&self) -> bool {
        self.want.count() == 0
    }

    /// Sets `piece`'s priority: 0 = never pick (skipped file), 1..=7, higher picked first.
    pub fn set_piece_priority(&mut self, piece: u32, priority: u8) -> Result<(), PickerError> {
        self.layout.check_piece(piece)?;
        if priority > MAX_PRIORITY {
            return Err(PickerError::PriorityOutOfRange(priority));
        }
        let before = self.open_of_wanted(piece);
        self.uncandidate(piece);
        self.priority[piece as usize] = priority;
        if !self.have.contains(piece) && priority > 0 {
            self.want.insert(piece);
        } else {
            self.want.remove(piece);
        }
        self.recandidate(piece);
        self.open_blocks = self.open_blocks - before + self.open_of_wanted(piece);
        Ok(())
    }

    /// `piece`'s priority.
    pub fn piece_priority(&self, piece: u32) -> u8 {
        self.priority.get(piece as usize).copied().unwrap_or(0)
    }

    /// Records `piece` as verified: after a passed hash check, or from resume data. Any requests
    /// still out for it are forgotten (the caller should cancel them).
    pub fn piece_verified(&mut self, piece: u32) -> Result<(), PickerError> {
        self.layout.check_piece(piece)?;
        if self.have.contains(piece) {
            return Ok(());
        }
        self.open_blocks -= self.open_of_wanted(piece);
        self.uncandidate(piece);
        if let Some(pp) = self.partial.remove(&piece) {
            for (i, b) in pp.blocks.iter().enumerate() {
                if let BlockState::Requested(reqs) = b {
                    let block = Block::new(piece, i as u32);
                    for r in reqs {
                        self.forget_request(r.peer, block, r.deadline);
                    }
                }
            }
        }
        self.have.insert(piece);
        self.want.remove(piece);
        Ok(())
    }

    /// A completed piece failed its hash check and its bad blocks are known (BEP 52: each block's
    /// hash proven against the piece's): only the blocks in `bad` return to open, the others keep
    /// their data. Indices that are not received blocks of the piece are skipped.
    pub fn blocks_failed(&mut self, piece: u32, bad: &[u32]) -> Result<(), PickerError> {
        self.layout.check_piece(piece)?;
        let wanted = self.want.contains(piece);
        let pp = self
            .partial
            .get_mut(&piece)
            .ok_or(PickerError::PieceNotInProgress(piece))?;
        let mut reopened = 0u32;
        for &i in bad {
            if let Some(b @ BlockState::Received { .. }) = pp.blocks.get_mut(i as usize) {
                *b = BlockState::Open;
                pp.received -= 1;
                pp.open += 1;
                reopened += 1;
            }
        }
        if wanted {
            self.open_blocks += u64::from(reopened);
        }
        Ok(())
    }

    /// A completed piece failed its hash check: every block returns to open, and if `restrict_to`
    /// is given only that peer will be asked for the piece from now on (to find out whether it is
    /// the one sending bad data). Returns the peers whose data went into the piece.
    pub fn piece_failed(
        &mut self,
        piece: u32,
        restrict_to: Option<P>,
    ) -> Result<Vec<P>, PickerError> {
        self.layout.check_piece(piece)?;
        let wanted = self.want.contains(piece);
        let mut pp = self
            .partial
            .remove(&piece)
            .ok_or(PickerError::PieceNotInProgress(piece))?;
        let mut contributors = Vec::new();
        for (i, b) in pp.blocks.iter().enumerate() {
            match b {
                BlockState::Received { from } => contributors.push(*from),
                BlockState::Requested(reqs) => {
                    for r in reqs {
                        self.forget_request(r.peer, Block::new(piece, i as u32), r.deadline);
                    }
                }
                _ => {}
            }
        }
        contributors.sort();
        contributors.dedup();
        if wanted {
            self.open_blocks -= u64::from(pp.open);
        }
        pp = PartialPiece::new(pp.blocks.len() as u32);
        pp.restricted = restrict_to;
        if wanted {
            self.open_blocks += u64::from(pp.open);
        }
        self.partial.insert(piece, pp);
        Ok(contributors)
    }

    // ----- peers and availability -----

    /// The peer suggested `piece` (BEP 6). A suggested piece is picked from that peer before
    /// the rarest-first choice when it is just as rare (and as important): a seed that hands
    /// each downloader different pieces so keeps two downloaders from fetching the same piece
    /// from it while neither has announced it, at no cost to rarest first. Out-of-range pieces
    /// are ignored.
    pub fn suggest(&mut self, peer: P, piece: u32) {
        if piece >= self.layout.pieces() {
            return;
        }
        if let Some(e) = self.peers.get_mut(&peer) {
            if !e.suggested.contains(&piece) {
                if e.suggested.len() >= MAX_SUGGESTIONS {
                    e.suggested.pop_front();
                }
                e.suggested.push_back(piece);
            }
        }
    }

    /// A new connection, knowing nothing of its pieces yet (as after BEP 6 `have_none`).
    pub fn add_peer(&mut self, peer: P) {
        if !self.peers.contains_key(&peer) {
            self.peers.insert(
                peer,
                PeerEntry {
                    pieces: PeerPieces::Some(PieceSet::empty(self.layout.pieces())),
                    requests: BTreeSet::new(),
                    suggested: VecDeque::new(),
                },
            );
        }
    }

    /// The peer disconnected: its pieces leave the availability counts and its requests are freed
    /// for others. Returns the freed blocks.
    pub fn remove_peer(&mut self, peer: P) -> Vec<Block> {
        let freed = self.abort_peer_requests(peer);
        if let Some(entry) = self.peers.remove(&peer) {
            self.withdraw(entry.pieces);
        }
        for pp in self.partial.values_mut() {
            if pp.restricted == Some(peer) {
                pp.restricted = None;
            }
        }
        freed
    }

    /// The peer's `bitfield` message (BEP 3 wire format). A full bitfield makes it a seed.
    pub fn peer_bitfield(&mut self, peer: P, bitfield: &[u8]) -> Result<(), PickerError> {
        let set = PieceSet::from_wire(bitfield, self.layout.pieces())?;
        if set.is_full() {
            return self.set_peer_pieces(peer, PeerPieces::All);
        }
        self.set_peer_pieces(peer, PeerPieces::Some(set))
    }

    /// BEP 6 `have_all`: the peer is a seed.
    pub fn peer_have_all(&mut self, peer: P) -> Result<(), PickerError> {
        self.set_peer_pieces(peer, PeerPieces::All)
    }

    /// BEP 6 `have_none`: the peer has nothing (yet).
    pub fn peer_have_none(&mut self, peer: P) -> Result<(), PickerError> {
        let empty = PeerPieces::Some(PieceSet::empty(self.layout.pieces()));
        self.set_peer_pieces(peer, empty)
    }

    /// The peer's `have` message.
    pub fn peer_have(&mut self, peer: P, piece: u32) -> Result<(), PickerError> {
        self.layout.check_piece(piece)?;
        let entry = self.peers.get_mut(&peer).ok_or(PickerError::UnknownPeer)?;
        if let PeerPieces::Some(set) = &mut entry.pieces {
            if !set.contains(piece) {
                set.insert(piece);
                self.uncandidate(piece);
                self.availability.inc(piece);
                self.recandidate(piece);
            }
        }
        Ok(())
    }

    /// Whether the peer has `piece` (false for unknown peers).
    pub fn peer_has(&self, peer: P, piece: u32) -> bool {
        piece < self.layout.pieces()
            && self
                .peers
                .get(&peer)
                .is_some_and(|e| e.pieces.contains(piece))
    }

    /// Whether the peer has every piece (a seed).
    pub fn peer_is_seed(&self, peer: P) -> bool {
        self.peers.get(&peer).is_some_and(|e| match &e.pieces {
            PeerPieces::All => true,
            PeerPieces::Some(set) => set.is_full(),
        })
    }

    /// How many connected peers have `piece`, seeds included.
    pub fn availability(&self, piece: u32) -> u32 {
        self.availability.of(piece)
    }

    /// The availability of the least available piece among connected peers (seeds included):
    /// at least 1 when they hold every piece between them.
    pub fn min_availability(&self) -> u32 {
        self.availability.min()
    }

    /// The swarm's distributed copies among connected peers, as libtorrent and the clients built
    /// on it show "availability": the least available piece's count, plus the fraction of pieces
    /// held by more peers than that. Below 1.0, some piece is held by no connected peer.
    pub fn distributed_copies(&self) -> f64 {
        let n = self.layout.pieces();
        if n == 0 {
            return 0.0;
        }
        f64::from(self.availability.min()) + f64::from(self.availability.above_min()) / f64::from(n)
    }

    /// Whether the peer has a piece we want: whether we should be interested in it.
    pub fn is_interesting(&self, peer: P) -> bool {
        match self.peers.get(&peer).map(|e| &e.pieces) {
            None => false,
            Some(PeerPieces::All) => self.want.count() > 0,
            Some(PeerPieces::Some(set)) => set.intersects(&self.want),
        }
    }

    fn set_peer_pieces(&mut self, peer: P, pieces: PeerPieces) -> Result<(), PickerError> {
        let entry = self.peers.get_mut(&peer).ok_or(PickerError::UnknownPeer)?;
        let old = std::mem::replace(&mut entry.pieces, pieces.clone());
        self.withdraw(old);
        match pieces {
            PeerPieces::All => self.availability.add_seed(),
            PeerPieces::Some(set) => {
                for p in set.iter() {
                    self.uncandidate(p);
                    self.availability.inc(p);
                    self.recandidate(p);
                }
            }
        }
        Ok(())
    }

    /// Takes a peer's pieces out of the availability counts.
    fn withdraw(&mut self, pieces: PeerPieces) {
        match pieces {
            PeerPieces::All => self.availability.remove_seed(),
            PeerPieces::Some(set) => {
                for p in set.iter() {
                    self.uncandidate(p);
                    self.availability.dec(p);
                    self.recandidate(p);
                }
            }
        }
    }

    // ----- picking -----

    /// True when every block still missing is already requested: further picks may duplicate
    /// requests (endgame).
    pub fn in_endgame(&self) -> bool {
        self.open_blocks == 0 && self.want.count() > 0
    }

    /// Up to `max` blocks to request from `peer` now, each marked requested with `deadline`.
    ///
    /// Order: open blocks of partial pieces the peer has (the rarest, then the most advanced
    /// first, so pieces complete fast), then new pieces chosen by the [`PickMode`], then, in
    /// endgame only, blocks already requested from another peer. Only pieces the peer has are
    /// ever picked. Under rarest first (after the random first pieces) a partial piece yields to
    /// a strictly rarer (or higher priority) new piece.
    pub fn pick(&mut self, peer: P, max: usize, now: Time, deadline: Time) -> Vec<Block> {
        let mut out = Vec::new();
        if max == 0 || !self.peers.contains_key(&peer) || self.want.count() == 0 {
            return out;
        }
        // 1 and 2: finish started pieces, then start new ones. In rarest-first proper, a started
        // piece goes first only if it is at least as rare (and as important) as the best new piece
        // this peer offers: otherwise a piece begun from a common source would be finished from
        // the only holder of a rare one (typically the seed), spending its upload on a piece
        // others could have given us. O(partial pieces) per piece touched.
        let rarest = self.config.mode == PickMode::RarestFirst
            && self.have.count() >= self.config.random_first_pieces;
        while out.len() < max {
            let started = self
                .partial
                .iter()
                .filter(|(&p, pp)| {
                    pp.open > 0
                        && self.want.contains(p)
                        && pp.allows(peer)
                        && self.peer_has(peer, p)
                })
                .map(|(&p, pp)| {
                    let prio = Reverse(self.priority[p as usize]);
                    ((prio, self.availability.rank(p)), pp.open, p)
                })
                .min();
            let piece = match started {
                Some((rank, _, p)) if rarest => match self.choose_new_piece(peer) {
                    Some(q) if (self.key(q).0, self.key(q).1) < rank => self.start_piece(q),
                    _ => p,
                },
                Some((_, _, p)) => p,
                None => match self.choose_new_piece(peer) {
                    Some(q) => self.start_piece(q),
                    None => break,
                },
            };
            self.take_open(piece, peer, max, now, deadline, &mut out);
        }
        // 3. Endgame: duplicate requests, only once nothing is left open anywhere.
        if out.len() < max && self.in_endgame() {
            self.pick_endgame(peer, max, now, deadline, &mut out);
        }
        out
    }

    /// Moves a candidate into the started pieces.
    fn start_piece(&mut self, p: u32) -> u32 {
        self.uncandidate(p);
        self.partial
            .insert(p, PartialPiece::new(self.layout.blocks_in_piece(p)));
        p
    }

    /// Requests open blocks of started piece `p` from `peer` until `out` holds `max`.
    fn take_open(
        &mut self,
        p: u32,
        peer: P,
        max: usize,
        now: Time,
        deadline: Time,
        out: &mut Vec<Block>,
    ) {
        let wanted = self.want.contains(p);
        let Some(pp) = self.partial.get_mut(&p) else {
            return;
        };
        for (i, b) in pp.blocks.iter_mut().enumerate() {
            if out.len() >= max || pp.open == 0 {
                break;
            }
            if *b == BlockState::Open {
                *b = BlockState::Requested(vec![Request {
                    peer,
                    sent_at: now,
                    deadline,
                }]);
                pp.open -= 1;
                if wanted {
                    self.open_blocks -= 1;
                }
                let block = Block::new(p, i as u32);
                self.deadlines.insert((deadline, block, peer));
                if let Some(e) = self.peers.get_mut(&peer) {
                    e.requests.insert(block);
                }
                out.push(block);
            }
        }
    }

    /// Adds one more requester to `block` (endgame), assuming the caller checked it is allowed.
    pub(crate) fn add_requester(&mut self, block: Block, peer: P, now: Time, deadline: Time) {
        if let Some(BlockState::Requested(reqs)) = self
            .partial
            .get_mut(&block.piece)
            .map(|pp| &mut pp.blocks[block.index as usize])
        {
            reqs.push(Request {
                peer,
                sent_at: now,
                deadline,
            });
            self.deadlines.insert((deadline, block, peer));
            if let Some(e) = self.peers.get_mut(&peer) {
                e.requests.insert(block);
            }
        }
    }

    /// A piece not yet started that `peer` has, by the pick mode.
    fn choose_new_piece(&mut self, peer: P) -> Option<u32> {
        let random = self.config.mode == PickMode::Random
            || (self.config.mode == PickMode::RarestFirst
                && self.have.count() < self.config.random_first_pieces);
        if random {
            // While the first pieces are picked at random, a suggestion is as good a random
            // choice as any (and one no other downloader of that seed was given).
            if self.config.mode == PickMode::RarestFirst {
                if let Some(p) = self.suggestion(peer, None) {
                    return Some(p);
                }
            }
            return self.choose_random(peer);
        }
        if self.config.mode == PickMode::Sequential {
            // O(n) worst case; the streaming window will replace this scan.
            return (0..self.layout.pieces())
                .find(|&p| self.is_candidate(p) && self.peer_has(peer, p));
        }
        let best = self.choose_rarest(peer)?;
        Some(self.suggestion(peer, Some(best)).unwrap_or(best))
    }

    /// The first of the peer's suggestions still worth starting whose priority and rarity are
    /// at least those of `best` (the rarest-first choice; `None`: any); stale suggestions are
    /// dropped on the way.
    fn suggestion(&mut self, peer: P, best: Option<u32>) -> Option<u32> {
        let bar = best.map(|b| (self.key(b).0, self.key(b).1));
        let mut suggested = std::mem::take(&mut self.peers.get_mut(&peer)?.suggested);
        // A suggestion stays until its piece is started or had (it may be looked at many times
        // before a pick actually starts a new piece).
        suggested.retain(|&p| self.is_candidate(p) && self.peer_has(peer, p));
        let chosen = suggested.iter().copied().find(|&p| {
            let k = self.key(p);
            bar.is_none_or(|bar| (k.0, k.1) <= bar)
        });
        if let Some(e) = self.peers.get_mut(&peer) {
            e.suggested = suggested;
        }
        chosen
    }

    /// The rarest-first choice among the pieces the peer has.
    fn choose_rarest(&self, peer: P) -> Option<u32> {
        let entry = self.peers.get(&peer)?;
        match &entry.pieces {
            PeerPieces::All => self.candidates.first().map(|k| k.3),
            PeerPieces::Some(set) => {
                if u64::from(set.count()) * 8 < self.candidates.len() as u64 {
                    // Few pieces: the best of the peer's own, O(n / 64 + its pieces).
                    set.iter()
                        .filter(|&p| self.is_candidate(p))
                        .map(|p| self.key(p))
                        .min()
                        .map(|k| k.3)
                } else {
                    // Walk the rarest-first order; pieces with no non-seed holder cannot be
                    // the peer's, so each priority class starts at availability 1.
                    (1..=MAX_PRIORITY).rev().find_map(|prio| {
                        let lo = (Reverse(prio), 1, 0, 0);
                        let hi = (Reverse(prio), u32::MAX, u32::MAX, u32::MAX);
                        self.candidates
                            .range(lo..=hi)
                            .find(|k| set.contains(k.3))
                            .map(|k| k.3)
                    })
                }
            }
        }
    }

    /// A uniformly random candidate the peer has, by sampling, else the first one after a random
    /// start (O(n) worst case, only while the first few pieces are picked or in random mode).
    fn choose_random(&mut self, peer: P) -> Option<u32> {
        let n = self.layout.pieces();
        for _ in 0..64 {
            let p = self.rng.random_range(0..n);
            if self.is_candidate(p) && self.peer_has(peer, p) {
                return Some(p);
            }
        }
        let start = self.rng.random_range(0..n);
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&p| self.is_candidate(p) && self.peer_has(peer, p))
    }

    // ----- arrivals, timeouts, aborts -----

    /// A block arrived from `peer`. See [`BlockOutcome`].
    pub fn block_received(
        &mut self,
        peer: P,
        block: Block,
    ) -> Result<BlockOutcome<P>, PickerError> {
        self.layout.check_block(block)?;
        if self.have.contains(block.piece) {
            self.drop_request(peer, block);
            return Ok(BlockOutcome::Duplicate);
        }
        let wanted = self.want.contains(block.piece);
        let Some(pp) = self.partial.get_mut(&block.piece) else {
            return Ok(BlockOutcome::Unexpected);
        };
        let state = std::mem::replace(
            &mut pp.blocks[block.index as usize],
            BlockState::Received { from: peer },
        );
        let reqs = match state {
            BlockState::Open => {
                // Late, after its request expired: still good data.
                pp.open -= 1;
                if wanted {
                    self.open_blocks -= 1;
                }
                Vec::new()
            }
            BlockState::Requested(reqs) => reqs,
            old @ (BlockState::Received { .. } | BlockState::Verified) => {
                pp.blocks[block.index as usize] = old;
                self.drop_request(peer, block);
                return Ok(BlockOutcome::Duplicate);
            }
        };
        pp.received += 1;
        let piece_complete = pp.is_complete();
        let mut cancel = Vec::new();
        for r in reqs {
            self.forget_request(r.peer, block, r.deadline);
            if r.peer != peer {
                cancel.push(r.peer);
            }
        }
        Ok(BlockOutcome::New {
            cancel,
            piece_complete,
        })
    }

    /// The earliest request deadline, if any request is outstanding: when to call
    /// [`expire`](Self::expire) next.
    pub fn next_deadline(&self) -> Option<Time> {
        self.deadlines.first().map(|d| d.0)
    }

    /// Frees every request whose deadline is at or before `now` and returns them as
    /// `(peer, block)`. A freed block may be picked for another peer; if the slow peer's data
    /// arrives later it is still accepted (or reported as a duplicate). O(expired × log n).
    pub fn expire(&mut self, now: Time) -> Vec<(P, Block)> {
        let mut out = Vec::new();
        while let Some(&(deadline, block, peer)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.drop_request(peer, block);
            out.push((peer, block));
        }
        out
    }

    /// The requests whose deadline is at or before `now`, as `(peer, block)`, left in place
    /// (see [`extend_request`](Self::extend_request) and [`expire`](Self::expire)).
    pub fn due_requests(&self, now: Time) -> Vec<(P, Block)> {
        self.deadlines
            .iter()
            .take_while(|d| d.0 <= now)
            .map(|&(_, block, peer)| (peer, block))
            .collect()
    }

    /// Moves the deadline of `block`'s request to `peer` to `deadline` (keeping it outstanding).
    /// True if the request was outstanding.
    pub fn extend_request(&mut self, peer: P, block: Block, deadline: Time) -> bool {
        let Some(BlockState::Requested(reqs)) = self
            .partial
            .get_mut(&block.piece)
            .and_then(|pp| pp.blocks.get_mut(block.index as usize))
        else {
            return false;
        };
        let Some(r) = reqs.iter_mut().find(|r| r.peer == peer) else {
            return false;
        };
        self.deadlines.remove(&(r.deadline, block, peer));
        r.deadline = deadline;
        self.deadlines.insert((deadline, block, peer));
        true
    }

    /// Frees one request (the peer rejected it, or we cancelled it). True if it was outstanding.
    pub fn abort_request(&mut self, peer: P, block: Block) -> bool {
        self.layout.check_block(block).is_ok() && self.drop_request(peer, block)
    }

    /// Frees every request outstanding to `peer` (it choked us without the fast extension, or it
    /// is snubbed). Returns the blocks, in order.
    pub fn abort_peer_requests(&mut self, peer: P) -> Vec<Block> {
        let blocks: Vec<Block> = match self.peers.get(&peer) {
            Some(e) => e.requests.iter().copied().collect(),
            None => return Vec::new(),
        };
        for &b in &blocks {
            self.drop_request(peer, b);
        }
        blocks
    }

    /// How many requests are outstanding to `peer`.
    pub fn outstanding(&self, peer: P) -> usize {
        self.peers.get(&peer).map_or(0, |e| e.requests.len())
    }

    /// The blocks outstanding to `peer`, in order. The picker is the one record of who was
    /// asked for what.
    pub fn requests_of(&self, peer: P) -> Vec<Block> {
        self.peers
            .get(&peer)
            .map_or_else(Vec::new, |e| e.requests.iter().copied().collect())
    }

    /// Whether `block` is outstanding to `peer`, and since when.
    pub fn request_sent_at(&self, peer: P, block: Block) -> Option<Time> {
        let pp = self.partial.get(&block.piece)?;
        match pp.blocks.get(block.index as usize)? {
            BlockState::Requested(reqs) => reqs.iter().find(|r| r.peer == peer).map(|r| r.sent_at),
            _ => None,
        }
    }

    /// Who sent each block of a started piece (`None` for blocks not received): the evidence a
    /// smart ban keeps when the piece fails its hash check. Empty for a piece not in progress.
    pub fn block_senders(&self, piece: u32) -> Vec<Option<P>> {
        self.partial.get(&piece).map_or_else(Vec::new, |pp| {
            pp.blocks
                .iter()
                .map(|b| match b {
                    BlockState::Received { from } => Some(*from),
                    _ => None,
                })
                .collect()
        })
    }

    /// The state of one block.
    pub fn block_state(&self, block: Block) -> Result<BlockState<P>, PickerError> {
        self.layout.check_block(block)?;
        if self.have.contains(block.piece) {
            return Ok(BlockState::Verified);
        }
        Ok(self
            .partial
            .get(&block.piece)
            .map_or(BlockState::Open, |pp| {
                pp.blocks[block.index as usize].clone()
            }))
    }

    /// Lifts every pin to `peer` (it choked us, stalled or was snubbed): a piece pinned to a
    /// peer that will not send it must not wait for it forever.
    pub fn unpin(&mut self, peer: P) {
        for pp in self.partial.values_mut() {
            if pp.restricted == Some(peer) {
                pp.restricted = None;
            }
        }
    }

    /// The peer a failed piece is restricted to, if any.
    pub fn restricted_to(&self, piece: u32) -> Option<P> {
        self.partial.get(&piece).and_then(|pp| pp.restricted)
    }

    /// Removes `peer`'s request for `block`; the block becomes open if nobody else has it.
    fn drop_request(&mut self, peer: P, block: Block) -> bool {
        let wanted = self.want.contains(block.piece);
        let Some(pp) = self.partial.get_mut(&block.piece) else {
            return false;
        };
        // A block index from a peer's message may be out of range: not a request of ours.
        let Some(slot) = pp.blocks.get_mut(block.index as usize) else {
            return false;
        };
        let BlockState::Requested(reqs) = slot else {
            return false;
        };
        let Some(pos) = reqs.iter().position(|r| r.peer == peer) else {
            return false;
        };
        let r = reqs.swap_remove(pos);
        if reqs.is_empty() {
            *slot = BlockState::Open;
            pp.open += 1;
            if wanted {
                self.open_blocks += 1;
            }
        }
        // Nothing received and nothing in flight: the piece is not really started, so it goes
        // back to the rarest-first order instead of being finished first from whoever has it.
        let untouched = pp.open as usize == pp.blocks.len() && pp.restricted.is_none();
        self.forget_request(peer, block, r.deadline);
        if untouched {
            self.partial.remove(&block.piece);
            self.recandidate(block.piece);
        }
        true
    }

    /// Removes a request from the deadline index and the peer's list (not from the block).
    fn forget_request(&mut self, peer: P, block: Block, deadline: Time) {
        self.deadlines.remove(&(deadline, block, peer));
        if let Some(e) = self.peers.get_mut(&peer) {
            e.requests.remove(&block);
        }
    }

    // ----- candidate index -----

    fn key(&self, p: u32) -> CandidateKey {
        (
            Reverse(self.priority[p as usize]),
            self.availability.rank(p),
            self.tiebreak[p as usize],
            p,
        )
    }

    /// A wanted piece that is neither verified nor started.
    pub(crate) fn is_candidate(&self, p: u32) -> bool {
        self.want.contains(p) && !self.partial.contains_key(&p)
    }

    /// Call before changing anything `key` or `is_candidate` depend on...
    fn uncandidate(&mut self, p: u32) {
        if self.is_candidate(p) {
            let k = self.key(p);
            self.candidates.remove(&k);
        }
    }

    /// ...and this after.
    fn recandidate(&mut self, p: u32) {
        if self.is_candidate(p) {
            let k = self.key(p);
            self.candidates.insert(k);
        }
    }

    /// Open blocks of `piece` counted in `open_blocks` (zero unless wanted).
    fn open_of_wanted(&self, piece: u32) -> u64 {
        if !self.want.contains(piece) {
            return 0;
        }
        u64::from(
            self.partial
                .get(&piece)
                .map_or(self.layout.blocks_in_piece(piece), |pp| pp.open),
        )
    }

    pub(crate) fn wanted(&self, p: u32) -> bool {
        self.want.contains(p)
    }

    pub(crate) fn endgame_max(&self) -> usize {
        self.config.endgame_max_requesters
    }
}
