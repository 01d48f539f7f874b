//! The merkle trees of BEP 52: SHA-256 over 16 KiB blocks, one tree per file.
//!
//! A file's leaves are the SHA-256 of each 16 KiB block (the last one may be shorter), padded with
//! zero hashes up to a power of two; each inner node is the SHA-256 of its two children. The root
//! is the file's `pieces root`. The *piece layer* is the layer whose nodes each cover one piece:
//! `log2(piece length / 16 KiB)` layers above the leaves. It lists one hash per piece of the file;
//! the nodes past the end of the file, which only balance the tree, are left out, and stand for a
//! subtree of zero leaves ([`pad_hash`]). A file of one piece or less has no piece layer: its root
//! is the hash of its blocks padded to the next power of two (not to a whole piece).

use sha2::{Digest, Sha256};
use shoal_core::Id32;

/// Bytes per merkle leaf.
pub const BLOCK_SIZE: u64 = 16 * 1024;

/// SHA-256 of one block (a leaf).
pub fn hash_block(data: &[u8]) -> Id32 {
    Id32(Sha256::digest(data).into())
}

/// SHA-256 of two children: their parent.
pub fn hash_pair(left: &Id32, right: &Id32) -> Id32 {
    let mut h = Sha256::new();
    h.update(left.0);
    h.update(right.0);
    Id32(h.finalize().into())
}

/// The root of a subtree of `2^depth` zero leaves: what stands for data past the end of a file.
pub fn pad_hash(depth: u32) -> Id32 {
    (0..depth).fold(Id32::ZERO, |h, _| hash_pair(&h, &h))
}

/// The layer above `layer`: each pair of nodes hashed together, an odd last node paired with
/// `pad` (the node standing for an all-zero subtree at this layer).
fn parent_layer(layer: &[Id32], pad: Id32) -> Vec<Id32> {
    layer
        .chunks(2)
        .map(|p| hash_pair(&p[0], p.get(1).unwrap_or(&pad)))
        .collect()
}

/// The root of a tree whose bottom layer is `nodes`, padded with `pad` up to `width` nodes
/// (`pad` is the node that stands for an all-zero subtree at that layer). `width` is rounded up
/// to a power of two no smaller than `nodes.len()`.
pub fn root_of(nodes: &[Id32], width: usize, pad: Id32) -> Id32 {
    let width = width.max(nodes.len()).max(1).next_power_of_two();
    let mut layer = nodes.to_vec();
    let mut pad = pad;
    let mut w = width;
    while w > 1 {
        layer = parent_layer(&layer, pad);
        pad = hash_pair(&pad, &pad);
        w /= 2;
    }
    layer.first().copied().unwrap_or(pad)
}

/// Blocks per piece for a piece length (a power of two of at least 16 KiB).
pub fn blocks_per_piece(piece_length: u64) -> u64 {
    (piece_length / BLOCK_SIZE).max(1)
}

/// Number of 16 KiB blocks (leaves with data) in a file of `length` bytes.
pub fn num_blocks(length: u64) -> u64 {
    length.div_ceil(BLOCK_SIZE)
}

/// Number of pieces of a file of `length` bytes: the entries of its piece layer when it has one.
pub fn file_num_pieces(length: u64, piece_length: u64) -> u64 {
    length.div_ceil(piece_length)
}

/// Whether a file of `length` bytes has a piece layer (BEP 52: only files larger than a piece).
pub fn has_piece_layer(length: u64, piece_length: u64) -> bool {
    length > piece_length
}

/// The hash of one piece of a file from the hashes of its blocks: the root of the piece's
/// subtree, its missing leaves (past the end of the file) zero. This is the piece layer entry.
pub fn piece_hash(block_hashes: &[Id32], piece_length: u64) -> Id32 {
    root_of(
        block_hashes,
        blocks_per_piece(piece_length) as usize,
        Id32::ZERO,
    )
}

/// A file's `pieces root` from the hashes of all its blocks. `None` for an empty file.
pub fn file_root(block_hashes: &[Id32], piece_length: u64) -> Option<Id32> {
    if block_hashes.is_empty() {
        return None;
    }
    let bpp = blocks_per_piece(piece_length) as usize;
    if block_hashes.len() <= bpp {
        return Some(root_of(block_hashes, block_hashes.len(), Id32::ZERO));
    }
    let layer = piece_layer(block_hashes, piece_length);
    Some(root_from_piece_layer(&layer, piece_length))
}

/// The piece layer of a file from the hashes of all its blocks: one entry per piece.
pub fn piece_layer(block_hashes: &[Id32], piece_length: u64) -> Vec<Id32> {
    let bpp = blocks_per_piece(piece_length) as usize;
    block_hashes
        .chunks(bpp)
        .map(|c| piece_hash(c, piece_length))
        .collect()
}

/// The root of a file's tree from its piece layer (for a file of more than one piece).
pub fn root_from_piece_layer(layer: &[Id32], piece_length: u64) -> Id32 {
    let depth = blocks_per_piece(piece_length).trailing_zeros();
    root_of(layer, layer.len(), pad_hash(depth))
}

/// A file's root from the hashes of one piece when the file is that piece alone (its length is
/// at most `piece_length`): the blocks are padded to the next power of two only.
pub fn single_piece_root(block_hashes: &[Id32]) -> Id32 {
    root_of(block_hashes, block_hashes.len(), Id32::ZERO)
}

/// Whether `layer` is the right piece layer for a file of `length` bytes whose root is `root`:
/// one hash per piece, and they hash up to the root.
pub fn piece_layer_matches(layer: &[Id32], length: u64, piece_length: u64, root: &Id32) -> bool {
    layer.len() as u64 == file_num_pieces(length, piece_length)
        && !layer.is_empty()
        && root_from_piece_layer(layer, piece_length) == *root
}

/// Folds a proof: starting from `node` at position `index` of its layer, hashes it with each
/// uncle in turn (the sibling at each layer going up) and returns the node reached.
pub fn fold_proof(node: Id32, index: u64, uncles: &[Id32]) -> Id32 {
    let mut h = node;
    let mut i = index;
    for uncle in uncles {
        h = if i.is_multiple_of(2) {
            hash_pair(&h, uncle)
        } else {
            hash_pair(uncle, &h)
        };
        i /= 2;
    }
    h
}

/// Verifies one block against its piece-layer entry: `block_index` is the block's position within
/// the piece, and `uncles` are the `log2(blocks per piece)` sibling hashes from the leaf layer up.
/// A bad block is known from this block alone.
pub fn verify_block(
    block_hash: &Id32,
    block_index: u64,
    uncles: &[Id32],
    piece_layer_entry: &Id32,
    piece_length: u64,
) -> bool {
    let depth = blocks_per_piece(piece_length).trailing_zeros() as usize;
    uncles.len() == depth
        && block_index < blocks_per_piece(piece_length)
        && fold_proof(*block_hash, block_index, uncles) == *piece_layer_entry
}

/// The uncle hashes of leaf `block_index` within a piece, from the piece's block hashes (padded
/// with zero leaves): what a peer sends with a block so it can be checked alone.
pub fn uncles_in_piece(block_hashes: &[Id32], block_index: u64, piece_length: u64) -> Vec<Id32> {
    let bpp = blocks_per_piece(piece_length) as usize;
    let mut layer = block_hashes.to_vec();
    layer.resize(bpp, Id32::ZERO);
    let mut i = block_index as usize;
    let mut out = Vec::new();
    while layer.len() > 1 {
        out.push(layer.get(i ^ 1).copied().unwrap_or(Id32::ZERO));
        layer = parent_layer(&layer, Id32::ZERO);
        i /= 2;
    }
    out
}

/// The uncle hashes of node `pos` of `layer` and of its ancestors, `count` of them from the
/// lowest up. `layer` is one layer of a tree `width` nodes wide (rounded up to a power of two);
/// nodes past its end stand for zero subtrees (`pad`). `None` when the tree has fewer than
/// `count` layers above the node.
pub fn uncles(layer: &[Id32], width: usize, pad: Id32, pos: u64, count: u32) -> Option<Vec<Id32>> {
    let mut w = width.max(layer.len()).max(1).next_power_of_two();
    let mut cur = layer.to_vec();
    let mut pad = pad;
    let mut pos = pos;
    // `count` may come from a peer: reserve no more than a tree can be deep.
    let mut out = Vec::with_capacity(count.min(64) as usize);
    while out.len() < count as usize {
        if w < 2 || pos >= w as u64 {
            return None;
        }
        out.push(cur.get((pos ^ 1) as usize).copied().unwrap_or(pad));
        cur = parent_layer(&cur, pad);
        pad = hash_pair(&pad, &pad);
        w /= 2;
        pos /= 2;
    }
    Some(out)
}

/// The layers of a file's tree above one of its layers (the piece layer), each built once, so
/// that a proof is a lookup. Rebuilding them for each hash request cost as many SHA-256 as the
/// layer has nodes (~2M for the largest files) on the torrent's own task, at a peer's request.
/// Holds about as many hashes as the layer itself; the layer is not copied but passed in.
#[derive(Clone, Debug)]
pub struct LayerTree {
    /// `upper[k]` is the layer `k + 1` above the base; the last is the root's.
    upper: Vec<Vec<Id32>>,
    /// The node for an all-zero subtree at the base (`pads[0]`) and at each layer above.
    pads: Vec<Id32>,
    /// The base's width: its length rounded up to a power of two.
    width: u64,
}

impl LayerTree {
    /// The tree above `base`, whose missing nodes (past its end) stand for zero subtrees `pad`.
    pub fn above(base: &[Id32], pad: Id32) -> LayerTree {
        let width = (base.len() as u64).max(1).next_power_of_two();
        let mut upper: Vec<Vec<Id32>> = Vec::new();
        let mut pads = vec![pad];
        let mut w = width;
        while w > 1 {
            let below = upper.last().map_or(base, Vec::as_slice);
            let pad = *pads.last().unwrap_or(&pad);
            upper.push(parent_layer(below, pad));
            pads.push(hash_pair(&pad, &pad));
            w /= 2;
        }
        LayerTree { upper, pads, width }
    }

    /// The tree's root.
    pub fn root(&self, base: &[Id32]) -> Id32 {
        match self.upper.last() {
            Some(top) => top
                .first()
                .copied()
                .unwrap_or(self.pads[self.pads.len() - 1]),
            None => base.first().copied().unwrap_or(self.pads[0]),
        }
    }

    /// Node `i` of layer `level` (0: the base).
    fn node(&self, base: &[Id32], level: usize, i: u64) -> Id32 {
        let layer = if level == 0 {
            base
        } else {
            &self.upper[level - 1]
        };
        layer.get(i as usize).copied().unwrap_or(self.pads[level])
    }

    /// As [`uncles`] over the base: the `count` uncle hashes of base node `pos` and of its
    /// ancestors, from the lowest up, starting `from_level` layers above the base (the node's
    /// ancestor there). `None` when the tree is not that deep or `pos` is outside it.
    pub fn uncles(
        &self,
        base: &[Id32],
        pos: u64,
        from_level: u32,
        count: u32,
    ) -> Option<Vec<Id32>> {
        let depth = self.upper.len() as u64;
        if count > 0 && (pos >= self.width || u64::from(from_level) + u64::from(count) > depth) {
            return None;
        }
        let from = from_level as usize;
        Some(
            (from..from + count as usize)
                .map(|level| self.node(base, level, (pos >> level) ^ 1))
                .collect(),
        )
    }

    /// The answer to a BEP 52 hash request for base nodes: the `length` nodes from `index`
    /// (nodes past the base's end stand for zero subtrees), then the uncle hashes of the proof
    /// layers not covered by them (BEP 52: the first `log2(length) - 1` proof layers are
    /// omitted), from the lowest up. `None` when the request does not fit the tree.
    pub fn layer_proof(
        &self,
        base: &[Id32],
        index: u64,
        length: u64,
        proof_layers: u32,
    ) -> Option<Vec<Id32>> {
        if length < 2
            || !length.is_power_of_two()
            || !index.is_multiple_of(length)
            || index.checked_add(length)? > self.width
        {
            return None;
        }
        let covered = length.trailing_zeros();
        let uncles = (i64::from(proof_layers) - (i64::from(covered) - 1)).max(0) as u32;
        let mut out: Vec<Id32> = (index..index + length)
            .map(|i| self.node(base, 0, i))
            .collect();
        out.extend(self.uncles(base, index, covered, uncles)?);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference [`LayerTree::layer_proof`] is checked against: the same answer from one
    /// whole `layer` (missing nodes stand for `pad`), rebuilding the layers above each time.
    fn layer_proof(
        layer: &[Id32],
        pad: Id32,
        index: u64,
        length: u64,
        proof_layers: u32,
    ) -> Option<Vec<Id32>> {
        let width = (layer.len() as u64).max(1).next_power_of_two();
        if length < 2
            || !length.is_power_of_two()
            || !index.is_multiple_of(length)
            || index + length > width
        {
            return None;
        }
        let node = |l: &[Id32], p: Id32, i: u64| l.get(i as usize).copied().unwrap_or(p);
        let mut out: Vec<Id32> = (index..index + length)
            .map(|i| node(layer, pad, i))
            .collect();
        let covered = length.trailing_zeros();
        let uncles = (i64::from(proof_layers) - (i64::from(covered) - 1)).max(0) as u32;
        // Walk up to the layer where the requested nodes are one subtree, then collect siblings.
        let mut cur = layer.to_vec();
        let mut pad = pad;
        let mut w = width;
        let mut pos = index;
        let mut climbed = 0;
        let mut taken = 0;
        while taken < uncles {
            if climbed >= covered {
                if w < 2 {
                    return None;
                }
                out.push(node(&cur, pad, pos ^ 1));
                taken += 1;
            }
            cur = parent_layer(&cur, pad);
            pad = hash_pair(&pad, &pad);
            w /= 2;
            pos /= 2;
            climbed += 1;
        }
        Some(out)
    }

    fn h(data: &[u8]) -> Id32 {
        hash_block(data)
    }

    #[test]
    fn sha256_known_values() {
        // FIPS 180-2 test vector.
        assert_eq!(
            h(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // The parent of two zero leaves is SHA-256 of 64 zero bytes.
        assert_eq!(
            pad_hash(1).to_hex(),
            "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b"
        );
        assert_eq!(pad_hash(0), Id32::ZERO);
    }

    #[test]
    fn hand_computed_roots() {
        let a = h(&[1u8; 16384]);
        let b = h(&[2u8; 100]);
        let c = h(&[3u8; 16384]);
        // One block: the root is the block's hash.
        assert_eq!(file_root(&[a], 16384), Some(a));
        // Two blocks in a 64 KiB piece: padded to 2 leaves, not to 4.
        assert_eq!(file_root(&[a, b], 65536), Some(hash_pair(&a, &b)));
        // Three blocks in a 64 KiB piece: padded with one zero leaf.
        let three = hash_pair(&hash_pair(&a, &b), &hash_pair(&c, &Id32::ZERO));
        assert_eq!(file_root(&[a, b, c], 65536), Some(three));
        assert_eq!(single_piece_root(&[a, b, c]), three);
        // Three blocks with 16 KiB pieces: the piece layer is the leaves.
        assert_eq!(piece_layer(&[a, b, c], 16384), vec![a, b, c]);
        assert_eq!(file_root(&[a, b, c], 16384), Some(three));
        // Three blocks with 32 KiB pieces: two pieces, the second padded with a zero leaf;
        // the layer has two entries, and the root is their parent.
        let layer = piece_layer(&[a, b, c], 32768);
        assert_eq!(layer, vec![hash_pair(&a, &b), hash_pair(&c, &Id32::ZERO)]);
        assert_eq!(file_root(&[a, b, c], 32768), Some(three));
        assert!(piece_layer_matches(&layer, 2 * 16384 + 100, 32768, &three));
        assert!(!piece_layer_matches(
            &layer[..1],
            2 * 16384 + 100,
            32768,
            &three
        ));
        // Five blocks with 32 KiB pieces: three pieces, the tree's fourth piece is a pad subtree.
        let five = [a, b, c, a, b];
        let layer = piece_layer(&five, 32768);
        assert_eq!(layer.len(), 3);
        let want = hash_pair(
            &hash_pair(&layer[0], &layer[1]),
            &hash_pair(&layer[2], &pad_hash(1)),
        );
        assert_eq!(root_from_piece_layer(&layer, 32768), want);
        // The same root as padding the leaves with zeros to 8.
        let mut leaves = five.to_vec();
        leaves.resize(8, Id32::ZERO);
        assert_eq!(root_of(&leaves, 8, Id32::ZERO), want);
        assert_eq!(file_root(&[], 16384), None);
    }

    #[test]
    fn a_layer_tree_answers_as_the_rebuilding_functions_do() {
        for len in [1usize, 2, 3, 5, 8, 13, 64, 100] {
            let layer: Vec<Id32> = (0..len).map(|i| h(&(i as u32).to_le_bytes())).collect();
            let pad = pad_hash(4);
            let tree = LayerTree::above(&layer, pad);
            let width = layer.len().next_power_of_two() as u64;
            assert_eq!(
                tree.root(&layer),
                root_of(&layer, layer.len(), pad),
                "len {len}"
            );
            for pos in 0..width + 2 {
                for count in 0..9 {
                    assert_eq!(
                        tree.uncles(&layer, pos, 0, count),
                        uncles(&layer, layer.len(), pad, pos, count),
                        "len {len} pos {pos} count {count}"
                    );
                }
            }
            let mut length = 2;
            while length <= width * 2 {
                for index in (0..width + length).step_by(length as usize) {
                    for proof_layers in 0..10 {
                        assert_eq!(
                            tree.layer_proof(&layer, index, length, proof_layers),
                            layer_proof(&layer, pad, index, length, proof_layers),
                            "len {len} index {index} length {length} proof {proof_layers}"
                        );
                    }
                }
                length *= 2;
            }
            // Malformed requests a peer may send.
            assert!(tree.layer_proof(&layer, 1, 2, 0).is_none());
            assert!(tree.layer_proof(&layer, 0, 3, 0).is_none());
            assert!(tree.layer_proof(&layer, u64::MAX - 1, 2, 0).is_none());
            assert!(tree.uncles(&layer, u64::MAX, 0, 1).is_none());
        }
    }

    #[test]
    fn layer_proofs_fold_to_the_root() {
        // A file of 5 pieces of 2 blocks each (32 KiB pieces): its piece layer has 5 entries in a
        // tree 8 wide.
        let blocks: Vec<Id32> = (0..10u8).map(|i| h(&[i; 16384])).collect();
        let layer = piece_layer(&blocks, 32768);
        let root = file_root(&blocks, 32768).unwrap();
        let pad = pad_hash(1);
        // Two entries and enough proof for the root: 2 uncles (layers 2 and 3 above them).
        let got = layer_proof(&layer, pad, 2, 2, 2).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(&got[..2], &layer[2..4]);
        let sub = hash_pair(&got[0], &got[1]);
        assert_eq!(fold_proof(sub, 1, &got[2..]), root);
        // Four entries from 4 (one real, three pad): one uncle for 2 proof layers.
        let got = layer_proof(&layer, pad, 4, 4, 2).unwrap();
        assert_eq!(got.len(), 5);
        assert_eq!(got[1], pad);
        let sub = root_of(&got[..4], 4, pad);
        assert_eq!(fold_proof(sub, 1, &got[4..]), root);
        // Past the tree, misaligned, not a power of two, or more proof than layers: refused.
        assert!(layer_proof(&layer, pad, 8, 2, 0).is_none());
        assert!(layer_proof(&layer, pad, 1, 2, 0).is_none());
        assert!(layer_proof(&layer, pad, 0, 3, 0).is_none());
        assert!(layer_proof(&layer, pad, 0, 2, 4).is_none());
        assert_eq!(layer_proof(&layer, pad, 0, 8, 0).unwrap().len(), 8);
    }

    #[test]
    fn uncles_fold_to_the_root() {
        let blocks: Vec<Id32> = (0..10u8).map(|i| h(&[i; 16384])).collect();
        let layer = piece_layer(&blocks, 32768);
        let root = file_root(&blocks, 32768).unwrap();
        // Entry 4 of 5 in a tree 8 wide: three uncles reach the root.
        let u = uncles(&layer, layer.len(), pad_hash(1), 4, 3).unwrap();
        assert_eq!(u[0], pad_hash(1));
        assert_eq!(fold_proof(layer[4], 4, &u), root);
        // Fewer is a prefix; more than the tree has is refused.
        assert_eq!(uncles(&layer, 5, pad_hash(1), 4, 1).unwrap(), u[..1]);
        assert!(uncles(&layer, 5, pad_hash(1), 4, 4).is_none());
        assert!(uncles(&layer, 5, pad_hash(1), 8, 1).is_none());
        // A count from a peer's request is refused, not allocated for.
        assert!(uncles(&layer, 5, pad_hash(1), 4, u32::MAX).is_none());
    }

    #[test]
    fn blocks_verify_against_their_piece_entry() {
        let blocks: Vec<Id32> = (0..3u8).map(|i| h(&[i; 16384])).collect();
        let entry = piece_hash(&blocks, 65536);
        for i in 0..3 {
            let uncles = uncles_in_piece(&blocks, i, 65536);
            assert_eq!(uncles.len(), 2);
            assert!(verify_block(&blocks[i as usize], i, &uncles, &entry, 65536));
            // The wrong block, the wrong position, or too few uncles all fail.
            assert!(!verify_block(&h(b"bad"), i, &uncles, &entry, 65536));
            assert!(!verify_block(
                &blocks[i as usize],
                i ^ 1,
                &uncles,
                &entry,
                65536
            ));
            assert!(!verify_block(
                &blocks[i as usize],
                i,
                &uncles[..1],
                &entry,
                65536
            ));
        }
        assert!(!verify_block(&blocks[0], 4, &[], &entry, 65536));
    }
}
