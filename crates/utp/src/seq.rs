//! 16-bit wrapping sequence numbers (BEP 29 `seq_nr` / `ack_nr`).
//!
//! Sequence numbers count packets, not bytes, and wrap at 65536. Two numbers are compared by
//! the sign of their wrapping difference, as TCP does (RFC 1982 serial number arithmetic): `a`
//! is before `b` when `b - a` (mod 2^16) lies in `1..=0x7fff`. This is only meaningful while the
//! numbers compared are less than half the space apart; the send and receive windows are bounded
//! far below that (see [`crate::MAX_OUTSTANDING`]).

/// `b - a` modulo 2^16: how many steps forward from `a` reach `b`.
#[inline]
pub fn distance(a: u16, b: u16) -> u16 {
    b.wrapping_sub(a)
}

/// The signed wrapping difference `a - b`: positive when `a` is after `b`.
#[inline]
pub fn diff(a: u16, b: u16) -> i16 {
    a.wrapping_sub(b) as i16
}

/// `a` comes strictly before `b` in wrapping order.
#[inline]
pub fn lt(a: u16, b: u16) -> bool {
    diff(a, b) < 0
}

/// `a` comes before `b` or equals it.
#[inline]
pub fn le(a: u16, b: u16) -> bool {
    diff(a, b) <= 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps_around() {
        assert!(lt(65535, 0));
        assert!(lt(65530, 4));
        assert!(!lt(4, 65530));
        assert_eq!(distance(65534, 2), 4);
        assert_eq!(diff(2, 65534), 4);
        assert_eq!(diff(65534, 2), -4);
        assert!(le(7, 7));
        assert!(!lt(7, 7));
    }

    #[test]
    fn half_space_boundary() {
        // 0x7fff ahead is "after"; past 0x8000 it flips to "before" (0x8000 itself is the
        // ambiguous point, never reached since windows are bounded far below it).
        assert!(lt(0, 0x7fff));
        assert!(!lt(0x7fff, 0));
        assert!(!lt(0, 0x8001));
        assert!(lt(0x8001, 0));
    }

    proptest! {
        #[test]
        fn order_is_translation_invariant(a: u16, d in 1u16..0x8000, shift: u16) {
            let b = a.wrapping_add(d);
            prop_assert!(lt(a, b));
            prop_assert!(!lt(b, a));
            prop_assert!(lt(a.wrapping_add(shift), b.wrapping_add(shift)));
            prop_assert_eq!(distance(a, b), d);
        }
    }
}
