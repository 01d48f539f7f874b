//! BEP 52 hash requests from peers. A piece-layer request is answered from the torrent's piece
//! layers; a leaf-layer request (base layer 0: block hashes) from the piece's leaves read back
//! from the disk, for a piece we have. Both carry the uncle hashes asked for. Whatever we cannot
//! or will not answer gets a `hash reject`, never silence (BEP 52).

use std::collections::HashMap;

use shoal_core::Id32;
use shoal_metainfo::merkle::{self, LayerTree};
use shoal_wire::{HashRequest, Message};

use crate::torrent::{ConnId, DiskJob, Torrent, V2File};

/// Leaf-layer requests one peer may have waiting on the disk at once; more are rejected (each
/// costs a piece read).
pub(crate) const MAX_LEAF_READS: usize = 4;

/// What answering hash requests keeps between requests.
#[derive(Debug, Default)]
pub(crate) struct HashAnswers {
    /// Leaf-layer requests waiting for their piece's leaves, by piece.
    waiting: HashMap<u32, Vec<(ConnId, HashRequest)>>,
    /// The layers above each file's piece layer, by the file's root, built on the first
    /// request that needs them (about as many hashes as the piece layer). Building is once per
    /// file, here on the torrent's task: 242 ms for the largest layer the metainfo allows (2M
    /// pieces, release build), ~2 ms for a 16,000-piece file.
    trees: HashMap<Id32, LayerTree>,
}

/// Where a piece lies in its file's tree.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PieceInTree {
    /// The file.
    pub file: V2File,
    /// The piece's index within the file.
    pub index: u32,
    /// Leaves of file data in the piece.
    pub leaves: u32,
    /// The file is this piece alone: its tree is its leaves padded to a power of two, and its
    /// root the file's `pieces root` (no piece layer).
    pub single: bool,
}

impl PieceInTree {
    /// Leaves in the piece's subtree: a whole piece's, or for a file of one piece its leaves
    /// rounded up to a power of two.
    pub fn width(&self, piece_length: u32) -> u32 {
        if self.single {
            self.leaves.max(1).next_power_of_two()
        } else {
            merkle::blocks_per_piece(u64::from(piece_length)) as u32
        }
    }
}

impl Torrent {
    /// The v2 file that `piece` belongs to, and where in its tree the piece lies.
    pub(crate) fn piece_in_tree(&self, piece: u32) -> Option<PieceInTree> {
        let files = &self.config.v2_files;
        let i = files
            .partition_point(|f| f.first_piece <= piece)
            .checked_sub(1)?;
        let file = files[i];
        let pl = u64::from(self.config.piece_length);
        let index = piece - file.first_piece;
        if u64::from(index) >= merkle::file_num_pieces(file.length, pl) {
            return None;
        }
        let bpp = merkle::blocks_per_piece(pl);
        let leaves = (merkle::num_blocks(file.length) - u64::from(index) * bpp).min(bpp) as u32;
        Some(PieceInTree {
            file,
            index,
            leaves,
            single: !merkle::has_piece_layer(file.length, pl),
        })
    }

    fn v2_file_of_root(&self, root: &Id32) -> Option<V2File> {
        self.config
            .v2_files
            .iter()
            .find(|f| f.pieces_root == *root)
            .copied()
    }

    pub(crate) fn on_hash_request(&mut self, conn: ConnId, req: HashRequest) {
        let depth = merkle::blocks_per_piece(u64::from(self.config.piece_length)).trailing_zeros();
        // With 16 KiB pieces the leaves are the piece layer.
        if req.base_layer != 0 || depth == 0 {
            let answer = self.answer_from_piece_layer(&req);
            self.send(conn, answer);
            return;
        }
        let piece = self.leaf_request_piece(&req);
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        match piece {
            Some(piece) if peer.leaf_reads < MAX_LEAF_READS => {
                peer.leaf_reads += 1;
                let waiting = self.hash_answers.waiting.entry(piece).or_default();
                waiting.push((conn, req));
                if waiting.len() == 1 {
                    self.push_disk(DiskJob::ReadLeaves { piece });
                }
            }
            _ => self.send(conn, Message::HashReject(req)),
        }
    }

    /// The answer to a request for (part of) a file's piece layer, from our piece layers.
    fn answer_from_piece_layer(&mut self, req: &HashRequest) -> Message {
        let depth = merkle::blocks_per_piece(u64::from(self.config.piece_length)).trailing_zeros();
        let hashes = if req.base_layer == depth && req.is_well_formed() {
            self.piece_layer_tree(&req.pieces_root)
                .and_then(|(layer, tree)| {
                    tree.layer_proof(
                        layer,
                        u64::from(req.index),
                        u64::from(req.length),
                        req.proof_layers,
                    )
                })
        } else {
            None
        };
        match hashes {
            Some(hashes) => Message::Hashes { req: *req, hashes },
            None => Message::HashReject(*req),
        }
    }

    /// The piece layer of the file whose root is `root` and the tree above it (built now if
    /// this is the first request for it); `None` for a file we have no piece layer of.
    fn piece_layer_tree(&mut self, root: &Id32) -> Option<(&[Id32], &LayerTree)> {
        let layer = self.config.piece_layers.get(root)?;
        let depth = merkle::blocks_per_piece(u64::from(self.config.piece_length)).trailing_zeros();
        let tree = self
            .hash_answers
            .trees
            .entry(*root)
            .or_insert_with(|| LayerTree::above(layer, merkle::pad_hash(depth)));
        Some((layer, tree))
    }

    /// The piece a leaf-layer request's hashes lie in, if we can answer it: well formed, of a
    /// file we carry, within one piece, which we have.
    fn leaf_request_piece(&self, req: &HashRequest) -> Option<u32> {
        if !req.is_well_formed() {
            return None;
        }
        let file = self.v2_file_of_root(&req.pieces_root)?;
        let first = self.piece_in_tree(file.first_piece)?;
        let width = first.width(self.config.piece_length);
        let k = req.index / width;
        if req.length > width || (first.single && k > 0) {
            return None;
        }
        let piece = file.first_piece.checked_add(k)?;
        let at = self.piece_in_tree(piece)?;
        (at.file == file && self.picker.have(piece)).then_some(piece)
    }

    /// The hashes answering `req` from the leaves of `piece` (and, for uncles above the piece,
    /// the file's piece layer). `None` when the tree cannot give what was asked.
    fn leaf_answer(&mut self, req: &HashRequest, piece: u32, leaves: &[Id32]) -> Option<Vec<Id32>> {
        let at = self.piece_in_tree(piece)?;
        let width = at.width(self.config.piece_length) as usize;
        if leaves.len() > width {
            return None;
        }
        let mut nodes = leaves.to_vec();
        nodes.resize(width, Id32::ZERO);
        let start = (req.index as usize) % width;
        let len = req.length as usize;
        if start + len > width {
            return None;
        }
        let mut out = nodes[start..start + len].to_vec();
        let wanted = req.proof_hashes();
        // Up to the piece's subtree root from the leaves, then up the piece layer.
        for _ in 0..len.trailing_zeros() {
            nodes = nodes
                .chunks_exact(2)
                .map(|p| merkle::hash_pair(&p[0], &p[1]))
                .collect();
        }
        let inside = wanted.min((width / len).trailing_zeros());
        out.extend(merkle::uncles(
            &nodes,
            nodes.len(),
            Id32::ZERO,
            (start / len) as u64,
            inside,
        )?);
        let above = wanted - inside;
        if above > 0 {
            if at.single {
                return None;
            }
            let (layer, tree) = self.piece_layer_tree(&at.file.pieces_root)?;
            out.extend(tree.uncles(layer, u64::from(at.index), 0, above)?);
        }
        Some(out)
    }

    /// The leaves of `piece` came back from the disk: answer the peers waiting for them, and
    /// hand them to the block ban if it asked.
    pub(crate) fn on_leaves(
        &mut self,
        now: shoal_core::Time,
        piece: u32,
        result: Result<Vec<Id32>, String>,
    ) {
        for (conn, req) in self.hash_answers.waiting.remove(&piece).unwrap_or_default() {
            if let Some(p) = self.peers.get_mut(&conn) {
                p.leaf_reads = p.leaf_reads.saturating_sub(1);
            }
            let hashes = result
                .as_ref()
                .ok()
                .and_then(|leaves| self.leaf_answer(&req, piece, leaves));
            let msg = match hashes {
                Some(hashes) => Message::Hashes { req, hashes },
                None => Message::HashReject(req),
            };
            self.send(conn, msg);
        }
        self.block_ban_leaves(now, piece, result);
    }
}
