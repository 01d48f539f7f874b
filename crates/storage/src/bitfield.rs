//! A fixed-length bit set in wire order (BEP 3: the high bit of the first byte is piece 0), so
//! the verified set can go out as a `bitfield` message as it is.

/// A set of piece indices `0..len`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitfield {
    bits: Vec<u8>,
    len: u32,
}

impl Bitfield {
    /// An empty set for `len` pieces.
    pub fn new(len: u32) -> Bitfield {
        Bitfield {
            bits: vec![0; len.div_ceil(8) as usize],
            len,
        }
    }

    /// Rebuild from wire bytes; `None` when the length is wrong or a spare bit is set.
    pub fn from_bytes(bytes: &[u8], len: u32) -> Option<Bitfield> {
        if bytes.len() != len.div_ceil(8) as usize {
            return None;
        }
        let spare = (bytes.len() * 8) as u32 - len;
        if spare > 0 {
            let mask = (1u8 << spare) - 1;
            if bytes.last().copied().unwrap_or(0) & mask != 0 {
                return None;
            }
        }
        Some(Bitfield {
            bits: bytes.to_vec(),
            len,
        })
    }

    /// The wire bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Number of pieces the set covers.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when the set covers no pieces at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `i` is in the set (false when out of range).
    pub fn get(&self, i: u32) -> bool {
        i < self.len && self.bits[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Add `i` (ignored when out of range).
    pub fn set(&mut self, i: u32) {
        if i < self.len {
            self.bits[(i / 8) as usize] |= 0x80 >> (i % 8);
        }
    }

    /// Remove `i` (ignored when out of range).
    pub fn clear(&mut self, i: u32) {
        if i < self.len {
            self.bits[(i / 8) as usize] &= !(0x80 >> (i % 8));
        }
    }

    /// Number of pieces in the set.
    pub fn count(&self) -> u32 {
        self.bits.iter().map(|b| b.count_ones()).sum()
    }

    /// True when every piece is in the set.
    pub fn all(&self) -> bool {
        self.count() == self.len
    }

    /// The indices in the set, ascending.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_order_and_spare_bits() {
        let mut b = Bitfield::new(10);
        b.set(0);
        b.set(9);
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count(), 2);
        assert_eq!(Bitfield::from_bytes(&[0x80, 0x40], 10), Some(b.clone()));
        assert_eq!(Bitfield::from_bytes(&[0x80, 0x41], 10), None);
        assert_eq!(Bitfield::from_bytes(&[0x80], 10), None);
        b.clear(0);
        assert_eq!(b.ones().collect::<Vec<_>>(), vec![9]);
        assert!(!b.get(100));
    }
}
