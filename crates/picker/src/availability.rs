//! Who has what: the pieces of each peer and the count of peers holding each piece.

use crate::PickerError;

/// A fixed-size set of piece indices, one bit per piece, with its population kept up to date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PieceSet {
    words: Vec<u64>,
    len: u32,
    count: u32,
}

impl PieceSet {
    /// The empty set over `len` pieces.
    pub(crate) fn empty(len: u32) -> Self {
        PieceSet {
            words: vec![0; (len as usize).div_ceil(64)],
            len,
            count: 0,
        }
    }

    /// Parses a BEP 3 bitfield payload: high bit of the first byte is piece 0; the length must be
    /// exactly `ceil(len / 8)` and the spare bits must be zero.
    pub(crate) fn from_wire(bytes: &[u8], len: u32) -> Result<Self, PickerError> {
        let expected = (len as usize).div_ceil(8);
        if bytes.len() != expected {
            return Err(PickerError::BitfieldLength {
                got: bytes.len(),
                expected,
            });
        }
        let mut set = PieceSet::empty(len);
        for (i, &byte) in bytes.iter().enumerate() {
            for bit in 0..8 {
                if byte & (0x80 >> bit) != 0 {
                    let piece = (i * 8 + bit) as u32;
                    if piece >= len {
                        return Err(PickerError::BitfieldSpareBits);
                    }
                    set.insert(piece);
                }
            }
        }
        Ok(set)
    }

    pub(crate) fn contains(&self, piece: u32) -> bool {
        self.words[(piece / 64) as usize] & (1 << (piece % 64)) != 0
    }

    /// Adds `piece`; true if it was not there.
    pub(crate) fn insert(&mut self, piece: u32) -> bool {
        let w = &mut self.words[(piece / 64) as usize];
        let bit = 1 << (piece % 64);
        let new = *w & bit == 0;
        *w |= bit;
        // Written as a branch: `self.count += u32::from(new)` is miscompiled by rustc 1.95 at
        // opt-level >= 2 without overflow checks (the count stayed 0 in this module's test
        // `insert_remove_count` under `--release`).
        if new {
            self.count += 1;
        }
        new
    }

    /// Removes `piece`; true if it was there.
    pub(crate) fn remove(&mut self, piece: u32) -> bool {
        let w = &mut self.words[(piece / 64) as usize];
        let bit = 1 << (piece % 64);
        let old = *w & bit != 0;
        *w &= !bit;
        if old {
            self.count -= 1;
        }
        old
    }

    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    pub(crate) fn is_full(&self) -> bool {
        self.count == self.len
    }

    /// The members in increasing order; O(len / 64 + count).
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros();
                w &= w - 1;
                Some(i as u32 * 64 + b)
            })
        })
    }

    /// True if the two sets share a member; O(len / 64).
    pub(crate) fn intersects(&self, other: &PieceSet) -> bool {
        self.words.iter().zip(&other.words).any(|(a, b)| a & b != 0)
    }
}

/// What one peer has. Seeds (a full bitfield or BEP 6 `have_all`) are kept apart: they add one to
/// every piece's availability, which changes no piece's rank, so joining or leaving costs O(1).
#[derive(Clone, Debug)]
pub(crate) enum PeerPieces {
    /// Every piece.
    All,
    /// Exactly these pieces.
    Some(PieceSet),
}

impl PeerPieces {
    pub(crate) fn contains(&self, piece: u32) -> bool {
        match self {
            PeerPieces::All => true,
            PeerPieces::Some(set) => set.contains(piece),
        }
    }
}

/// Per-piece count of the non-seed peers holding it, plus the number of seeds, and how many
/// pieces have each count (so the swarm's least available piece is known in O(1)).
#[derive(Clone, Debug)]
pub(crate) struct Availability {
    counts: Vec<u32>,
    seeds: u32,
    /// `histogram[c]`: pieces whose non-seed count is `c`.
    histogram: Vec<u32>,
    /// The smallest non-seed count of any piece (0 for a torrent without pieces).
    min: u32,
}

impl Availability {
    pub(crate) fn new(pieces: u32) -> Self {
        Availability {
            counts: vec![0; pieces as usize],
            seeds: 0,
            histogram: vec![pieces],
            min: 0,
        }
    }

    /// How many connected peers have `piece`, seeds included.
    pub(crate) fn of(&self, piece: u32) -> u32 {
        self.counts[piece as usize] + self.seeds
    }

    /// The count without seeds: what rarest first ranks by (seeds shift every piece equally).
    pub(crate) fn rank(&self, piece: u32) -> u32 {
        self.counts[piece as usize]
    }

    pub(crate) fn inc(&mut self, piece: u32) {
        let c = self.counts[piece as usize];
        self.counts[piece as usize] = c + 1;
        if self.histogram.len() <= c as usize + 1 {
            self.histogram.resize(c as usize + 2, 0);
        }
        self.histogram[c as usize] -= 1;
        self.histogram[c as usize + 1] += 1;
        if c == self.min && self.histogram[c as usize] == 0 {
            self.min = c + 1;
        }
    }

    pub(crate) fn dec(&mut self, piece: u32) {
        let c = self.counts[piece as usize];
        if c == 0 {
            return;
        }
        self.counts[piece as usize] = c - 1;
        self.histogram[c as usize] -= 1;
        self.histogram[c as usize - 1] += 1;
        self.min = self.min.min(c - 1);
    }

    pub(crate) fn add_seed(&mut self) {
        self.seeds += 1;
    }

    pub(crate) fn remove_seed(&mut self) {
        self.seeds = self.seeds.saturating_sub(1);
    }

    /// The availability of the least available piece, seeds included.
    pub(crate) fn min(&self) -> u32 {
        self.min + self.seeds
    }

    /// Pieces whose availability is above [`min`](Self::min).
    pub(crate) fn above_min(&self) -> u32 {
        let pieces = self.counts.len() as u32;
        pieces - self.histogram.get(self.min as usize).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_bitfield_high_bit_first() {
        let s = PieceSet::from_wire(&[0b1000_0001, 0b0100_0000], 10).unwrap();
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 7, 9]);
        assert_eq!(s.count(), 3);
    }

    #[test]
    fn wire_bitfield_rejects_bad_length_and_spare_bits() {
        assert!(matches!(
            PieceSet::from_wire(&[0], 10),
            Err(PickerError::BitfieldLength { .. })
        ));
        assert_eq!(
            PieceSet::from_wire(&[0, 0b0010_0000], 10),
            Err(PickerError::BitfieldSpareBits)
        );
    }

    #[test]
    fn least_available_piece_is_tracked() {
        let mut a = Availability::new(3);
        assert_eq!((a.min(), a.above_min()), (0, 0));
        a.inc(0);
        a.inc(1);
        assert_eq!((a.min(), a.above_min()), (0, 2));
        a.inc(2);
        assert_eq!((a.min(), a.above_min()), (1, 0));
        a.inc(2);
        a.add_seed();
        assert_eq!((a.min(), a.above_min()), (2, 1));
        a.dec(0);
        assert_eq!((a.min(), a.above_min()), (1, 2));
        a.dec(0);
        assert_eq!(a.min(), 1, "a count never goes below zero");
        a.remove_seed();
        assert_eq!((a.min(), a.above_min()), (0, 2));
    }

    #[test]
    fn insert_remove_count() {
        let mut s = PieceSet::empty(130);
        assert!(s.insert(129));
        assert!(!s.insert(129));
        assert!(s.insert(0));
        assert_eq!(s.count(), 2);
        assert!(s.remove(129));
        assert!(!s.remove(129));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0]);
    }
}
