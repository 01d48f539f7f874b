//! Naming the bad blocks of a failed v2 piece from the blocks alone (BEP 52).
//!
//! When a piece that several IPs sent blocks of fails its check, the leaves (SHA-256 of each
//! 16 KiB block) of what we received are read back from the disk, and a peer that speaks v2 and
//! has the piece is asked for the piece's true leaves (`hash request`, base layer 0). The answer
//! is checked against the piece-layer entry we already trust (for a file of one piece, its
//! `pieces root`), so any peer may answer, a liar included: it cannot forge leaves that hash to
//! the trusted entry. The senders of the blocks whose leaves differ are banned at once, and
//! nobody else. The piece is held while the first peer is asked: when its answer proves out, the
//! good blocks are kept (on disk and in the picker) and only the bad ones are fetched again. A
//! request that is rejected, goes unanswered for [`HASH_ANSWER_TIMEOUT`], or whose answer does
//! not prove out releases the piece the v1 way (`bans.rs`: per-block SHA-1 evidence, the whole
//! piece fetched again) and goes to another peer, [`MAX_ASKS`] peers in all; so when nobody
//! answers, the smart ban still names the culprits once the piece passes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use shoal_core::{Id32, Time};
use shoal_metainfo::merkle;
use shoal_wire::{HashRequest, Message};
use tracing::{debug, info, warn};

use crate::bans::Evidence;
use crate::torrent::{ConnId, DiskJob, Torrent};

/// How long a peer has to answer a hash request before another is asked.
pub const HASH_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Peers asked for one piece's leaves before giving up (the v1 smart ban then decides).
pub const MAX_ASKS: usize = 3;
/// Failed pieces followed at once; past this a failure goes the v1 way only.
const MAX_CASES: usize = 64;

/// One failed piece being judged.
#[derive(Debug)]
struct Case {
    /// Who sent each block (by block index).
    senders: Vec<Option<IpAddr>>,
    /// The leaves of the data received, once read back.
    received: Option<Vec<Id32>>,
    /// The request for the piece's leaves.
    req: HashRequest,
    /// What the leaves must hash to.
    expected: Id32,
    /// The peer asked now, and when it has to have answered.
    asked: Option<(ConnId, Time)>,
    /// Peers asked so far.
    tried: Vec<ConnId>,
    /// The piece waits for this case (no block of it is requested): until the leaves are read
    /// and the first peer has answered.
    held: bool,
    /// The proven bad blocks, while the others are being kept on disk.
    keeping: Option<Vec<u32>>,
}

/// The failed v2 pieces being judged, by piece.
#[derive(Debug, Default)]
pub(crate) struct BlockBan {
    cases: BTreeMap<u32, Case>,
}

impl BlockBan {
    /// When the earliest outstanding request times out.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        self.cases
            .values()
            .filter_map(|c| c.asked.map(|a| a.1))
            .min()
    }
}

impl Torrent {
    /// The hash request for the leaves of `piece`, and the trusted hash they must fold to.
    /// `None` for a v1 torrent, a pad piece, or a piece of one block (its only sender is known).
    fn leaf_request(&self, piece: u32) -> Option<(HashRequest, Id32)> {
        let at = self.piece_in_tree(piece)?;
        if at.leaves < 2 {
            return None;
        }
        let width = at.width(self.config.piece_length);
        let expected = if at.single {
            at.file.pieces_root
        } else {
            *self
                .config
                .piece_layers
                .get(&at.file.pieces_root)?
                .get(at.index as usize)?
        };
        let req = HashRequest {
            pieces_root: at.file.pieces_root,
            base_layer: 0,
            index: at.index.checked_mul(width)?,
            length: width,
            // The leaves span the piece's subtree, whose root we trust: no uncle is needed.
            proof_layers: width.trailing_zeros() - 1,
        };
        Some((req, expected))
    }

    /// A piece several IPs sent failed: starts judging it block by block if it is a v2 piece.
    /// Returns false when it cannot be (the caller goes the v1 way at once).
    pub(crate) fn start_block_ban(&mut self, piece: u32, senders: &[Option<IpAddr>]) -> bool {
        if self.block_ban.cases.len() >= MAX_CASES || self.block_ban.cases.contains_key(&piece) {
            return false;
        }
        let Some((req, expected)) = self.leaf_request(piece) else {
            return false;
        };
        self.block_ban.cases.insert(
            piece,
            Case {
                senders: senders.to_vec(),
                received: None,
                req,
                expected,
                asked: None,
                tried: Vec::new(),
                held: true,
                keeping: None,
            },
        );
        // The piece is held (no new requests) until its leaves are read.
        self.push_disk(DiskJob::ReadLeaves { piece });
        true
    }

    /// The leaves of a failed piece came back (or a peer's leaf request's, which is not ours).
    pub(crate) fn block_ban_leaves(
        &mut self,
        now: Time,
        piece: u32,
        result: Result<Vec<Id32>, String>,
    ) {
        let Some(case) = self.block_ban.cases.get_mut(&piece) else {
            return;
        };
        if case.received.is_some() {
            return;
        }
        match result {
            Ok(leaves) => {
                case.received = Some(leaves);
                self.ask_next(now, piece);
            }
            Err(e) => {
                warn!(piece, "cannot read the failed piece's leaves: {e}");
                self.release(piece);
                self.block_ban.cases.remove(&piece);
            }
        }
    }

    /// The piece stops waiting for the proof: on to the v1 evidence, then the whole piece is
    /// fetched again (the case may go on asking, to ban).
    fn release(&mut self, piece: u32) {
        let Some(case) = self.block_ban.cases.get_mut(&piece) else {
            return;
        };
        if !std::mem::take(&mut case.held) {
            return;
        }
        let senders = case.senders.clone();
        self.request_block_hashes(piece, Evidence::Failed(senders));
    }

    /// Asks the next peer for the piece's leaves, or gives up. Only the first peer is waited for
    /// with the piece held.
    fn ask_next(&mut self, now: Time, piece: u32) {
        if self
            .block_ban
            .cases
            .get(&piece)
            .is_some_and(|c| !c.tried.is_empty())
        {
            self.release(piece);
        }
        let Some(case) = self.block_ban.cases.get(&piece) else {
            return;
        };
        let mut candidates: Vec<(bool, std::cmp::Reverse<usize>, ConnId)> = self
            .peers
            .iter()
            .filter(|(c, p)| {
                p.v2 && !case.tried.contains(c)
                    && self.picker.peer_has(**c, piece)
                    && !self.book.is_banned(p.addr.ip())
            })
            // Peers that sent none of the piece first, then those that sent the most of it: a
            // culprit that slipped in one bad block may well stall on the question.
            .map(|(c, p)| {
                let sent = case
                    .senders
                    .iter()
                    .filter(|s| **s == Some(p.addr.ip()))
                    .count();
                (sent > 0, std::cmp::Reverse(sent), *c)
            })
            .collect();
        candidates.sort_unstable();
        let next = candidates.first().map(|c| c.2);
        match next {
            Some(conn) if case.tried.len() < MAX_ASKS => {
                let req = case.req;
                if let Some(case) = self.block_ban.cases.get_mut(&piece) {
                    case.asked = Some((conn, now + HASH_ANSWER_TIMEOUT));
                    case.tried.push(conn);
                }
                debug!(piece, conn, "asking for the piece's block hashes");
                self.send(conn, Message::HashRequest(req));
            }
            _ => {
                info!(
                    piece,
                    asked = case.tried.len(),
                    "no peer proved the piece's block hashes: the smart ban decides"
                );
                self.release(piece);
                self.block_ban.cases.remove(&piece);
            }
        }
    }

    /// The case whose request this is, asked of `conn`.
    fn case_asked(&self, conn: ConnId, req: &HashRequest) -> Option<u32> {
        self.block_ban
            .cases
            .iter()
            .find(|(_, c)| c.req == *req && c.asked.is_some_and(|a| a.0 == conn))
            .map(|(p, _)| *p)
    }

    /// A `hashes` message: if it answers our request for a failed piece's leaves and proves out,
    /// the senders of the blocks that differ are banned.
    pub(crate) fn on_hashes(
        &mut self,
        now: Time,
        conn: ConnId,
        req: HashRequest,
        hashes: Vec<Id32>,
    ) {
        let Some(piece) = self.case_asked(conn, &req) else {
            return;
        };
        let Some(case) = self.block_ban.cases.get(&piece) else {
            return;
        };
        let len = req.length as usize;
        let proven = hashes.len() == len + req.proof_hashes() as usize
            && merkle::root_of(&hashes[..len], len, Id32::ZERO) == case.expected;
        if !proven {
            warn!(
                piece,
                conn, "a peer's block hashes do not match the piece layer"
            );
            return self.ask_next(now, piece);
        }
        let Some(case) = self.block_ban.cases.get_mut(&piece) else {
            return;
        };
        case.asked = None;
        let received = case.received.clone().unwrap_or_default();
        let mut culprits: Vec<IpAddr> = Vec::new();
        let mut bad: Vec<u32> = Vec::new();
        for (i, (got, good)) in received.iter().zip(&hashes[..len]).enumerate() {
            if got == good {
                continue;
            }
            bad.push(i as u32);
            if let Some(Some(ip)) = case.senders.get(i) {
                warn!(piece, block = i, %ip, "block differs from its proven hash");
                if !culprits.contains(ip) {
                    culprits.push(*ip);
                }
            }
        }
        let keep_others = case.held && !bad.is_empty();
        if keep_others {
            // The good blocks stay; the piece waits until the disk has them back as received.
            let blocks = case.senders.len();
            let keep = (0..blocks as u32).map(|i| !bad.contains(&i)).collect();
            case.keeping = Some(bad);
            self.push_disk(DiskJob::KeepBlocks { piece, keep });
        } else {
            self.release(piece);
            self.block_ban.cases.remove(&piece);
        }
        for ip in culprits {
            self.ban(now, ip);
        }
    }

    /// The disk kept the good blocks of a piece: only the bad ones are fetched again.
    pub(crate) fn on_blocks_kept(&mut self, now: Time, piece: u32, result: Result<(), String>) {
        let Some(case) = self.block_ban.cases.remove(&piece) else {
            return;
        };
        let bad = case.keeping.unwrap_or_default();
        match result {
            Ok(()) => {
                info!(piece, blocks = ?bad, "fetching only the bad blocks again");
                if let Err(e) = self.picker.blocks_failed(piece, &bad) {
                    warn!("picker: {e}");
                }
                self.fill_all_requests(now);
            }
            Err(e) => {
                warn!(piece, "cannot keep the good blocks: {e}");
                self.reset_failed_piece(now, piece, &[]);
            }
        }
    }

    /// A `hash reject` of our request: ask another peer.
    pub(crate) fn on_hash_reject(&mut self, now: Time, conn: ConnId, req: HashRequest) {
        if let Some(piece) = self.case_asked(conn, &req) {
            debug!(piece, conn, "block hash request rejected");
            self.ask_next(now, piece);
        }
    }

    /// Requests past their deadline, or whose peer left, go to another peer.
    pub(crate) fn block_ban_timeouts(&mut self, now: Time) {
        // (A case keeping its good blocks asks nobody: `asked` is empty.)
        let due: Vec<u32> = self
            .block_ban
            .cases
            .iter()
            .filter(|(_, c)| {
                c.asked
                    .is_some_and(|(conn, t)| t <= now || !self.peers.contains_key(&conn))
            })
            .map(|(p, _)| *p)
            .collect();
        for piece in due {
            self.ask_next(now, piece);
        }
    }
}
