use crate::PickerError;

/// The size of a block: the unit of a `request` message. 16 KiB is what every current client
/// sends and the most most clients accept (BEP 3 mentions 2^14 as the usual request size).
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// One block: the `index`-th 16 KiB slice of `piece`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Block {
    /// The piece index.
    pub piece: u32,
    /// The block index inside the piece (byte offset / [`BLOCK_SIZE`]).
    pub index: u32,
}

impl Block {
    /// A block by piece and block index.
    pub const fn new(piece: u32, index: u32) -> Self {
        Block { piece, index }
    }

    /// The byte offset of this block inside its piece (the `begin` of a request).
    pub const fn offset(self) -> u32 {
        self.index * BLOCK_SIZE
    }
}

/// The geometry of a torrent: how many pieces, how long each is, and where blocks fall.
///
/// Every piece has `piece_len` bytes except the last, which holds what is left; every block has
/// [`BLOCK_SIZE`] bytes except the last of each piece, which may be short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pieces: u32,
    piece_len: u32,
    total_len: u64,
}

impl Layout {
    /// Checks that `pieces` pieces of `piece_len` bytes hold exactly `total_len` bytes, the last
    /// piece being possibly short.
    pub fn new(pieces: u32, piece_len: u32, total_len: u64) -> Result<Self, PickerError> {
        let bad = PickerError::InvalidLayout {
            pieces,
            piece_len,
            total_len,
        };
        if pieces == 0 || piece_len == 0 || total_len == 0 {
            return Err(bad);
        }
        if total_len.div_ceil(u64::from(piece_len)) != u64::from(pieces) {
            return Err(bad);
        }
        Ok(Layout {
            pieces,
            piece_len,
            total_len,
        })
    }

    /// The number of pieces.
    pub fn pieces(&self) -> u32 {
        self.pieces
    }

    /// The total length of the torrent's data.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The length of `piece` (short for the last piece).
    pub fn piece_len(&self, piece: u32) -> u32 {
        if piece.checked_add(1) == Some(self.pieces) {
            (self.total_len - u64::from(self.piece_len) * u64::from(self.pieces - 1)) as u32
        } else {
            self.piece_len
        }
    }

    /// How many blocks `piece` has.
    pub fn blocks_in_piece(&self, piece: u32) -> u32 {
        self.piece_len(piece).div_ceil(BLOCK_SIZE)
    }

    /// The length of `block` (short for the last block of a piece); 0 for a block past the end
    /// of its piece (check untrusted blocks with [`check_block`](Self::check_block)).
    pub fn block_len(&self, block: Block) -> u32 {
        let piece_len = self.piece_len(block.piece);
        piece_len
            .saturating_sub(block.index.saturating_mul(BLOCK_SIZE))
            .min(BLOCK_SIZE)
    }

    /// Checks that `block` exists in this torrent.
    pub fn check_block(&self, block: Block) -> Result<(), PickerError> {
        self.check_piece(block.piece)?;
        if block.index >= self.blocks_in_piece(block.piece) {
            return Err(PickerError::BlockOutOfRange {
                piece: block.piece,
                index: block.index,
            });
        }
        Ok(())
    }

    /// Checks that `piece` exists in this torrent.
    pub fn check_piece(&self, piece: u32) -> Result<(), PickerError> {
        if piece >= self.pieces {
            return Err(PickerError::PieceOutOfRange(piece));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_piece_and_last_block_are_short() {
        // 3 pieces of 40 KiB, 100 KiB in all: the last piece has 20 KiB.
        let l = Layout::new(3, 40 * 1024, 100 * 1024).unwrap();
        assert_eq!(l.piece_len(0), 40 * 1024);
        assert_eq!(l.piece_len(2), 20 * 1024);
        assert_eq!(l.blocks_in_piece(0), 3);
        assert_eq!(l.block_len(Block::new(0, 2)), 8 * 1024);
        assert_eq!(l.blocks_in_piece(2), 2);
        assert_eq!(l.block_len(Block::new(2, 1)), 4 * 1024);
        assert!(l.check_block(Block::new(2, 2)).is_err());
        assert!(l.check_block(Block::new(3, 0)).is_err());
    }

    #[test]
    fn inconsistent_geometry_is_refused() {
        assert!(Layout::new(2, 1024, 4096).is_err());
        assert!(Layout::new(4, 1024, 3000).is_err());
        assert!(Layout::new(3, 1024, 3000).is_ok());
        assert!(Layout::new(0, 1024, 0).is_err());
    }
}

#[cfg(test)]
mod hostile_input_tests {
    use super::*;

    #[test]
    fn block_len_past_the_end_is_zero() {
        let l = Layout::new(2, 32 * 1024, 40 * 1024).unwrap();
        assert_eq!(l.block_len(Block::new(1, 0)), 8 * 1024);
        assert_eq!(l.block_len(Block::new(1, 5)), 0);
        assert_eq!(l.block_len(Block::new(0, u32::MAX)), 0);
        assert!(l.check_block(Block::new(1, 1)).is_err());
        assert_eq!(l.piece_len(u32::MAX), 32 * 1024);
    }
}
