//! Fetching a v2 torrent's piece layers from peers (BEP 52), for a magnet link.
//!
//! A magnet link gives the info dictionary (BEP 9), which holds each file's `pieces root` but not
//! its piece layer; without the layer a piece of a file longer than one piece cannot be verified.
//! The layers are asked of peers with `hash request`s whose base layer is the piece layer, in
//! chunks of at most 512 hashes (as libtorrent asks), each with the uncle hashes up to the file's
//! root. An answer is kept only if it folds up to the root we trust from the info dictionary, so
//! any peer may answer. Files of at most one piece need no layer (their root is the piece's hash).
//! Sans-IO: the caller sends [`PieceLayerFetch::requests`] and hands back each `hashes` answer.

use std::collections::BTreeMap;

use shoal_core::Id32;
use shoal_metainfo::{merkle, Info};
use shoal_wire::HashRequest;

/// Piece-layer hashes asked for in one request (libtorrent asks for 512 and rejects other
/// counts except at the end of a layer).
pub const LAYER_CHUNK: u32 = 512;

/// One file's layer being fetched.
#[derive(Clone, Debug)]
struct FileLayer {
    root: Id32,
    /// Entries of the layer (one per piece of the file); zero until proven.
    layer: Vec<Id32>,
    /// Per chunk of [`LAYER_CHUNK`] entries: proven.
    proven: Vec<bool>,
}

/// The piece layers of a torrent's files, as peers prove them.
#[derive(Clone, Debug)]
pub struct PieceLayerFetch {
    /// log2(blocks per piece): the piece layer's height above the leaves.
    depth: u32,
    files: Vec<FileLayer>,
}

impl PieceLayerFetch {
    /// The layers `info` needs (none for a v1 torrent, or when every file fits in a piece).
    pub fn new(info: &Info) -> PieceLayerFetch {
        let pl = u64::from(info.piece_length);
        let mut files = Vec::new();
        for (i, f) in info.files.iter().enumerate() {
            let Some(root) = info.pieces_root(i) else {
                continue;
            };
            if !merkle::has_piece_layer(f.length, pl) {
                continue;
            }
            let n = merkle::file_num_pieces(f.length, pl) as usize;
            files.push(FileLayer {
                root: *root,
                layer: vec![Id32::ZERO; n],
                proven: vec![false; n.div_ceil(LAYER_CHUNK as usize)],
            });
        }
        PieceLayerFetch {
            depth: merkle::blocks_per_piece(pl).trailing_zeros(),
            files,
        }
    }

    /// Whether every layer is proven (at once true when none is needed).
    pub fn is_done(&self) -> bool {
        self.files.iter().all(|f| f.proven.iter().all(|p| *p))
    }

    /// The requests still to be answered.
    pub fn requests(&self) -> Vec<HashRequest> {
        let mut out = Vec::new();
        for f in &self.files {
            let n = f.layer.len() as u32;
            // Enough proof layers to reach the root from any chunk of a layer this wide.
            let top = n.next_power_of_two().trailing_zeros();
            for (c, proven) in f.proven.iter().enumerate() {
                if *proven {
                    continue;
                }
                let index = c as u32 * LAYER_CHUNK;
                let length = (n - index).next_power_of_two().min(LAYER_CHUNK);
                out.push(HashRequest {
                    pieces_root: f.root,
                    base_layer: self.depth,
                    index,
                    length,
                    proof_layers: top - 1,
                });
            }
        }
        out
    }

    /// A `hashes` answer: kept if it is one of our requests and folds up to the file's root.
    /// Returns whether it was kept.
    pub fn on_hashes(&mut self, req: &HashRequest, hashes: &[Id32]) -> bool {
        if !self.requests().contains(req) {
            return false;
        }
        let depth = self.depth;
        let Some(f) = self.files.iter_mut().find(|f| f.root == req.pieces_root) else {
            return false;
        };
        let len = req.length as usize;
        if hashes.len() != len + req.proof_hashes() as usize {
            return false;
        }
        let (nodes, uncles) = hashes.split_at(len);
        let sub = merkle::root_of(nodes, len, merkle::pad_hash(depth));
        let pos = u64::from(req.index / req.length);
        if merkle::fold_proof(sub, pos, uncles) != f.root {
            return false;
        }
        let start = req.index as usize;
        let end = (start + len).min(f.layer.len());
        f.layer[start..end].copy_from_slice(&nodes[..end - start]);
        f.proven[start / LAYER_CHUNK as usize] = true;
        true
    }

    /// The proven layers by file root (complete once [`Self::is_done`]).
    pub fn into_layers(self) -> BTreeMap<Id32, Vec<Id32>> {
        self.files.into_iter().map(|f| (f.root, f.layer)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An info dict of one v2 file of `pieces` pieces of 32 KiB, and its tree.
    fn layer_of(pieces: usize) -> (Vec<Id32>, Id32) {
        let blocks: Vec<Id32> = (0..pieces * 2)
            .map(|i| merkle::hash_block(&i.to_le_bytes()))
            .collect();
        (
            merkle::piece_layer(&blocks, 32768),
            merkle::file_root(&blocks, 32768).unwrap(),
        )
    }

    fn fetch_for(root: Id32, pieces: usize) -> PieceLayerFetch {
        PieceLayerFetch {
            depth: 1,
            files: vec![FileLayer {
                root,
                layer: vec![Id32::ZERO; pieces],
                proven: vec![false; pieces.div_ceil(LAYER_CHUNK as usize)],
            }],
        }
    }

    /// What a peer with the whole layer answers.
    fn answer(layer: &[Id32], req: &HashRequest) -> Vec<Id32> {
        merkle::LayerTree::above(layer, merkle::pad_hash(1))
            .layer_proof(
                layer,
                u64::from(req.index),
                u64::from(req.length),
                req.proof_layers,
            )
            .unwrap()
    }

    #[test]
    fn a_small_layer_comes_in_one_request_without_uncles() {
        let (layer, root) = layer_of(5);
        let mut f = fetch_for(root, 5);
        let reqs = f.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(
            (reqs[0].index, reqs[0].length, reqs[0].base_layer),
            (0, 8, 1)
        );
        assert_eq!(reqs[0].proof_hashes(), 0);
        // A wrong entry does not fold to the root.
        let mut bad = answer(&layer, &reqs[0]);
        bad[2] = Id32([9; 32]);
        assert!(!f.on_hashes(&reqs[0], &bad));
        assert!(!f.is_done());
        assert!(f.on_hashes(&reqs[0], &answer(&layer, &reqs[0])));
        assert!(f.is_done() && f.requests().is_empty());
        assert_eq!(f.into_layers()[&root], layer);
    }

    #[test]
    fn a_large_layer_comes_in_chunks_each_proven_to_the_root() {
        let (layer, root) = layer_of(1300);
        let mut f = fetch_for(root, 1300);
        let reqs = f.requests();
        let shape: Vec<(u32, u32)> = reqs.iter().map(|r| (r.index, r.length)).collect();
        assert_eq!(shape, [(0, 512), (512, 512), (1024, 512)]);
        // 2048 wide: two uncles reach the root from a chunk of 512.
        assert!(reqs.iter().all(|r| r.proof_hashes() == 2));
        // An answer to a request never made, or cut short, is not kept.
        let other = HashRequest {
            index: 256,
            length: 256,
            ..reqs[0]
        };
        assert!(!f.on_hashes(&other, &answer(&layer, &other)));
        assert!(!f.on_hashes(&reqs[1], &answer(&layer, &reqs[1])[..513]));
        for r in &reqs {
            assert!(f.on_hashes(r, &answer(&layer, r)));
        }
        assert!(f.is_done());
        assert_eq!(f.into_layers()[&root], layer);
    }
}
