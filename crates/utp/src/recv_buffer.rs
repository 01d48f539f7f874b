//! The receive side: data ready for the application, and the reorder buffer of packets that
//! arrived ahead of a gap. Both are bounded by one byte budget, which is the window advertised
//! to the peer; the reorder buffer is also bounded in packets.

use std::collections::VecDeque;

use crate::packet::MAX_SACK_LEN;

/// What became of a received DATA payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// It was the next expected packet: it and `n - 1` buffered successors are now readable.
    Delivered(u16),
    /// It arrived ahead of a gap and is kept.
    Buffered,
    /// Already held (a duplicate).
    Duplicate,
    /// No room (or too far ahead): dropped, and so not acknowledged.
    Dropped,
}

/// Received data, bounded.
#[derive(Debug)]
pub struct RecvBuffer {
    readable: VecDeque<u8>,
    /// Index `i` holds the packet `i` after the next expected one (index 0 is always `None`).
    reorder: VecDeque<Option<Vec<u8>>>,
    reorder_bytes: usize,
    capacity: usize,
    max_reorder: usize,
    /// The largest payload a packet may carry; kept free for the next in-order packet.
    reserve: usize,
}

impl RecvBuffer {
    /// A buffer of `capacity` bytes that keeps packets at most `max_reorder` ahead; `reserve`
    /// bytes of the budget are kept for the next in-order packet so that out-of-order packets
    /// can never fill the buffer and block the gap from being filled.
    pub fn new(capacity: usize, max_reorder: usize, reserve: usize) -> Self {
        RecvBuffer {
            readable: VecDeque::new(),
            reorder: VecDeque::new(),
            reorder_bytes: 0,
            capacity,
            max_reorder: max_reorder.max(1),
            reserve,
        }
    }

    /// Bytes still free: the window to advertise.
    pub fn free(&self) -> usize {
        self.capacity
            .saturating_sub(self.readable.len() + self.reorder_bytes)
    }

    /// Bytes ready for the application.
    pub fn readable(&self) -> usize {
        self.readable.len()
    }

    /// Whether any out-of-order packet is held (a selective ACK is due).
    pub fn has_gap(&self) -> bool {
        // The last slot is always a held packet: slots are only created up to a packet stored.
        !self.reorder.is_empty()
    }

    /// Takes a payload that is `offset` packets after the next expected one.
    pub fn insert(&mut self, offset: u16, payload: &[u8]) -> Received {
        let offset = usize::from(offset);
        if offset >= self.max_reorder {
            return Received::Dropped;
        }
        if offset == 0 {
            if payload.len() > self.free() {
                return Received::Dropped;
            }
            self.readable.extend(payload);
            self.reorder.pop_front();
            let mut n = 1u16;
            while let Some(Some(_)) = self.reorder.front() {
                if let Some(Some(p)) = self.reorder.pop_front() {
                    self.reorder_bytes -= p.len();
                    self.readable.extend(&p);
                    n += 1;
                }
            }
            // Index 0 is the new gap; drop it if nothing follows.
            if self.reorder.front().is_some_and(Option::is_none) && self.reorder.len() == 1 {
                self.reorder.clear();
            }
            return Received::Delivered(n);
        }
        if self.reorder.get(offset).is_some_and(Option::is_some) {
            return Received::Duplicate;
        }
        if payload.len() + self.reserve > self.free() {
            return Received::Dropped;
        }
        if self.reorder.len() <= offset {
            self.reorder.resize(offset + 1, None);
        }
        self.reorder_bytes += payload.len();
        self.reorder[offset] = Some(payload.to_vec());
        Received::Buffered
    }

    /// Copies readable bytes into `buf`, returning how many.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.readable.len());
        for (dst, src) in buf.iter_mut().zip(self.readable.drain(..n)) {
            *dst = src;
        }
        n
    }

    /// The selective ACK bitmask for the held packets: bit `i` is the packet `i + 2` after the
    /// last in-order one (offset `i + 1` here), at most [`MAX_SACK_LEN`] bytes, a multiple of 4.
    pub fn sack(&self) -> Option<Vec<u8>> {
        let last = self.reorder.iter().rposition(Option::is_some)?;
        let bits = last.min(MAX_SACK_LEN * 8); // offsets 1..=last map to bits 0..last
        let len = bits.div_ceil(32).max(1) * 4;
        let mut mask = vec![0u8; len];
        for (i, slot) in self.reorder.iter().skip(1).take(len * 8).enumerate() {
            if slot.is_some() {
                mask[i / 8] |= 1 << (i % 8);
            }
        }
        Some(mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::sack_bit;

    #[test]
    fn in_order_and_reordered_delivery() {
        let mut b = RecvBuffer::new(100, 16, 10);
        assert_eq!(b.insert(2, b"cc"), Received::Buffered);
        assert_eq!(b.insert(2, b"cc"), Received::Duplicate);
        assert!(b.has_gap());
        let m = b.sack().unwrap();
        assert_eq!(m.len(), 4);
        assert!(!sack_bit(&m, 0) && sack_bit(&m, 1));
        assert_eq!(b.insert(1, b"bb"), Received::Buffered);
        assert_eq!(b.insert(0, b"aa"), Received::Delivered(3));
        assert!(!b.has_gap());
        assert_eq!(b.sack(), None);
        let mut out = [0u8; 10];
        assert_eq!(b.read(&mut out), 6);
        assert_eq!(&out[..6], b"aabbcc");
    }

    #[test]
    fn bounded_by_bytes_and_distance() {
        let mut b = RecvBuffer::new(10, 4, 3);
        assert_eq!(b.insert(4, b"x"), Received::Dropped, "too far ahead");
        assert_eq!(b.insert(1, b"1234567"), Received::Buffered);
        // 3 free bytes remain, all reserved for the in-order packet.
        assert_eq!(b.insert(2, b"y"), Received::Dropped);
        assert_eq!(b.insert(0, b"abcd"), Received::Dropped, "does not fit");
        assert_eq!(b.insert(0, b"abc"), Received::Delivered(2));
        assert_eq!(b.free(), 0);
    }

    #[test]
    fn sack_is_capped() {
        let mut b = RecvBuffer::new(1 << 20, 1000, 0);
        assert_eq!(b.insert(900, b"z"), Received::Buffered);
        assert_eq!(b.insert(5, b"z"), Received::Buffered);
        let m = b.sack().unwrap();
        assert_eq!(m.len(), MAX_SACK_LEN);
        assert!(sack_bit(&m, 4));
    }
}
