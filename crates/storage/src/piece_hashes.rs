//! What a piece must hash to: the SHA-1 of v1 torrents, the merkle subtree root of v2 torrents
//! (BEP 52), or both for hybrids.
//!
//! A v2 piece lies within one file (files start on piece boundaries; pad bytes may follow the
//! file's end). Its leaves are the SHA-256 of each 16 KiB block of the file's bytes in the piece,
//! the last one shorter; pad bytes are not hashed. The piece is good when the root of its leaves
//! equals the file's piece-layer entry (zero leaves up to a whole piece) or, for a file of at most
//! one piece, the file's `pieces root` (zero leaves up to the next power of two only).

use std::collections::BTreeMap;

use shoal_core::{Id20, Id32};
use shoal_metainfo::{merkle, Info};

use crate::error::{Result, StorageError};
use crate::layout::BLOCK_SIZE;

/// The v2 facts of one piece.
#[derive(Clone, Copy, Debug)]
pub(crate) struct V2Piece {
    /// The piece-layer entry, or the file root for a file of one piece.
    expected: Id32,
    /// Bytes of file data at the start of the piece; what follows is pad.
    pub data_len: u32,
    /// The file is this piece alone: its root pads the leaves to a power of two, not a piece.
    single: bool,
}

/// The expected hashes of every piece.
pub(crate) struct PieceHashes {
    /// SHA-1 per piece; empty for a v2-only torrent.
    v1: Vec<Id20>,
    /// Per piece, for v2 and hybrid torrents; empty for v1. `None` for a piece of pad only.
    v2: Vec<Option<V2Piece>>,
    piece_length: u64,
}

impl PieceHashes {
    /// The hashes of `info`; a v2 file longer than one piece needs its piece layer in `layers`.
    pub fn new(info: &Info, layers: &BTreeMap<Id32, Vec<Id32>>) -> Result<PieceHashes> {
        let pl = u64::from(info.piece_length);
        let mut v2 = Vec::new();
        if info.v2.is_some() {
            v2 = vec![None; info.num_pieces() as usize];
            for (i, f) in info.files.iter().enumerate() {
                let Some(root) = info.pieces_root(i) else {
                    continue;
                };
                if !f.offset.is_multiple_of(pl) {
                    return Err(StorageError::InvalidLayout(format!(
                        "v2 file {} does not start on a piece boundary",
                        f.display_path()
                    )));
                }
                let first = (f.offset / pl) as usize;
                let n = merkle::file_num_pieces(f.length, pl) as usize;
                let single = !merkle::has_piece_layer(f.length, pl);
                let layer: Vec<Id32> = if single {
                    vec![*root]
                } else {
                    match layers.get(root) {
                        Some(l) if l.len() == n => l.clone(),
                        _ => {
                            return Err(StorageError::MissingPieceLayer(f.display_path()));
                        }
                    }
                };
                for (k, expected) in layer.into_iter().enumerate() {
                    let Some(slot) = v2.get_mut(first + k) else {
                        return Err(StorageError::InvalidLayout(format!(
                            "v2 file {} runs past the last piece",
                            f.display_path()
                        )));
                    };
                    let data_len = (f.length - k as u64 * pl).min(pl) as u32;
                    *slot = Some(V2Piece {
                        expected,
                        data_len,
                        single,
                    });
                }
            }
        }
        Ok(PieceHashes {
            v1: info.pieces.clone(),
            v2,
            piece_length: pl,
        })
    }

    /// The torrent has SHA-1 piece hashes.
    pub fn has_v1(&self) -> bool {
        !self.v1.is_empty()
    }

    /// The torrent has merkle trees.
    pub fn has_v2(&self) -> bool {
        !self.v2.is_empty()
    }

    /// The expected SHA-1 of a piece.
    pub fn v1(&self, piece: u32) -> Option<&Id20> {
        self.v1.get(piece as usize)
    }

    /// The v2 facts of a piece (none for v1 torrents and pad-only pieces).
    pub fn v2(&self, piece: u32) -> Option<&V2Piece> {
        self.v2.get(piece as usize)?.as_ref()
    }

    /// The merkle leaf of the block at `offset` in `piece` from the block's bytes (pad bytes
    /// past the file's end are cut off); `None` for a block of pad only or a v1 torrent.
    pub fn leaf(&self, piece: u32, offset: u32, block: &[u8]) -> Option<Id32> {
        let v = self.v2(piece)?;
        if offset >= v.data_len {
            return None;
        }
        let end = (v.data_len - offset).min(block.len() as u32) as usize;
        Some(merkle::hash_block(&block[..end]))
    }

    /// Leaves of the file data in `piece`: one per 16 KiB block up to `data_len`.
    pub fn num_leaves(&self, piece: u32) -> usize {
        self.v2(piece)
            .map_or(0, |v| v.data_len.div_ceil(BLOCK_SIZE) as usize)
    }

    /// Whether the leaves of `piece` hash to its expected v2 hash (true for a piece with no v2
    /// hash: pad only, or a v1 torrent).
    pub fn v2_matches(&self, piece: u32, leaves: &[Id32]) -> bool {
        let Some(v) = self.v2(piece) else {
            return true;
        };
        let root = if v.single {
            merkle::single_piece_root(leaves)
        } else {
            merkle::piece_hash(leaves, self.piece_length)
        };
        root == v.expected
    }

    /// Whether a whole piece's bytes (`data`, pad zeros included) pass every check it has.
    pub fn matches(&self, piece: u32, data: &[u8]) -> bool {
        use sha1::{Digest, Sha1};
        if let Some(want) = self.v1(piece) {
            if Sha1::digest(data)[..] != want.as_bytes()[..] {
                return false;
            }
        }
        if self.v2(piece).is_some() {
            let leaves: Vec<Id32> = data
                .chunks(BLOCK_SIZE as usize)
                .enumerate()
                .filter_map(|(i, b)| self.leaf(piece, i as u32 * BLOCK_SIZE, b))
                .collect();
            return self.v2_matches(piece, &leaves);
        }
        self.has_v1() || self.has_v2()
    }
}
