//! A bounded, non-recursive bencode scanner.
//!
//! Every byte string from a file or a peer passes through [`scan`] before serde_bencode sees it.
//! serde_bencode is lenient (it accepts `i-0e` and leading zeros) and recursive (a few KB of `l`
//! overflow its stack); the scanner makes that safe: it walks the value with an explicit stack,
//! enforces a nesting limit, rejects the malformed integers libtorrent rejects, and reports the raw
//! byte spans of the top-level dictionary's entries, so that the info-hash can be taken over the
//! exact bytes of `info` as they appear in the file.

use std::ops::Range;

use thiserror::Error;

/// Nesting depth allowed by default. libtorrent's `bdecode` uses 100; real torrents need about 5.
pub const DEFAULT_MAX_DEPTH: usize = 100;

/// Why bytes are not valid bencode. Positions are byte offsets into the input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BencodeError {
    /// The input ended inside a value.
    #[error("bencoded data ends early at byte {0}")]
    UnexpectedEnd(usize),
    /// A byte that cannot start a value.
    #[error("unexpected byte 0x{byte:02x} at byte {pos} (expected a bencoded value)")]
    UnexpectedByte {
        /// Where.
        pos: usize,
        /// What was found.
        byte: u8,
    },
    /// An integer that is empty, has leading zeros, is `-0`, has a non-digit or overflows i64.
    #[error("malformed integer at byte {0}")]
    BadInteger(usize),
    /// A string length that is malformed or runs past the end of the input.
    #[error("malformed or too long string length at byte {0}")]
    BadStringLength(usize),
    /// A dictionary key that is not a byte string.
    #[error("dictionary key at byte {0} is not a string")]
    NonStringKey(usize),
    /// A dictionary ended after a key without its value.
    #[error("dictionary key without a value before byte {0}")]
    MissingDictValue(usize),
    /// Lists and dictionaries nested deeper than the limit.
    #[error("bencoded nesting depth exceeded (limit {0})")]
    DepthExceeded(usize),
    /// More values than the limit (libtorrent's `max_decode_tokens`).
    #[error("bencoded data has more than {0} tokens")]
    TooManyTokens(usize),
    /// Bytes after the end of the top-level value.
    #[error("trailing data after the bencoded value at byte {0}")]
    TrailingData(usize),
}

/// The result of scanning one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// The byte span of the whole value.
    pub span: Range<usize>,
    /// If the value is a dictionary: its entries as (key span, value span), in input order.
    /// The key span covers the key's bytes without the length prefix.
    pub entries: Vec<(Range<usize>, Range<usize>)>,
}

impl Scanned {
    /// The span of the value stored under `key` in a top-level dictionary (the first one if the
    /// key repeats, as libtorrent does).
    pub fn get(&self, buf: &[u8], key: &[u8]) -> Option<Range<usize>> {
        self.entries
            .iter()
            .find(|(k, _)| &buf[k.clone()] == key)
            .map(|(_, v)| v.clone())
    }

    /// True if the scanned value is a dictionary.
    pub fn is_dict(&self, buf: &[u8]) -> bool {
        buf.get(self.span.start) == Some(&b'd')
    }
}

struct Frame {
    is_dict: bool,
    start: usize,
    // For dictionaries: whether the next item is a key, and the last key's span.
    expect_key: bool,
    key: Range<usize>,
}

/// Scans `buf`, which must hold exactly one bencoded value and nothing after it.
pub fn scan(buf: &[u8]) -> Result<Scanned, BencodeError> {
    let scanned = scan_prefix(buf, 0, DEFAULT_MAX_DEPTH)?;
    if scanned.span.end != buf.len() {
        return Err(BencodeError::TrailingData(scanned.span.end));
    }
    Ok(scanned)
}

/// Scans the value that starts at `start` and may be followed by other bytes (a BEP 9 metadata
/// message is a dictionary followed by raw data). The end of the value is `span.end`.
pub fn scan_prefix(buf: &[u8], start: usize, max_depth: usize) -> Result<Scanned, BencodeError> {
    let mut pos = start;
    let mut stack: Vec<Frame> = Vec::new();
    let mut entries = Vec::new();
    loop {
        // Close containers, or read one value.
        let byte = *buf.get(pos).ok_or(BencodeError::UnexpectedEnd(pos))?;
        let completed: Range<usize>;
        if byte == b'e' && !stack.is_empty() {
            let frame = stack.pop().expect("stack is not empty");
            if frame.is_dict && !frame.expect_key {
                return Err(BencodeError::MissingDictValue(pos));
            }
            pos += 1;
            completed = frame.start..pos;
        } else {
            let expecting_key = stack.last().is_some_and(|f| f.is_dict && f.expect_key);
            if expecting_key && !byte.is_ascii_digit() {
                return Err(BencodeError::NonStringKey(pos));
            }
            match byte {
                b'i' => {
                    let end = scan_integer(buf, pos)?;
                    completed = pos..end;
                    pos = end;
                }
                b'0'..=b'9' => {
                    let (data, end) = scan_string(buf, pos)?;
                    // Keys are reported without their length prefix.
                    completed = if expecting_key { data } else { pos..end };
                    pos = end;
                }
                b'l' | b'd' => {
                    if stack.len() >= max_depth {
                        return Err(BencodeError::DepthExceeded(max_depth));
                    }
                    stack.push(Frame {
                        is_dict: byte == b'd',
                        start: pos,
                        expect_key: true,
                        key: 0..0,
                    });
                    pos += 1;
                    continue;
                }
                _ => return Err(BencodeError::UnexpectedByte { pos, byte }),
            }
        }
        // Hand the completed item to its parent.
        let depth = stack.len();
        match stack.last_mut() {
            None => {
                return Ok(Scanned {
                    span: completed,
                    entries,
                })
            }
            Some(parent) if parent.is_dict => {
                if parent.expect_key {
                    parent.key = completed;
                    parent.expect_key = false;
                } else {
                    if depth == 1 {
                        entries.push((parent.key.clone(), completed));
                    }
                    parent.expect_key = true;
                }
            }
            Some(_) => {}
        }
    }
}

/// Checks `i<digits>e` at `pos` and returns the position after it.
fn scan_integer(buf: &[u8], pos: usize) -> Result<usize, BencodeError> {
    let bad = BencodeError::BadInteger(pos);
    let rest = &buf[pos + 1..];
    let end = rest.iter().position(|&b| b == b'e').ok_or(bad.clone())?;
    parse_integer(&rest[..end]).ok_or(bad)?;
    Ok(pos + 1 + end + 1)
}

/// Parses the text of a bencoded integer with libtorrent's strictness.
pub fn parse_integer(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', d)) => (true, d),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return None;
    }
    if negative && digits == b"0" {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        let d = (d - b'0') as i64;
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(d)?
        } else {
            value.checked_add(d)?
        };
    }
    Some(value)
}

/// Checks `<len>:<bytes>` at `pos`; returns the span of the bytes and the position after them.
pub(crate) fn scan_string(buf: &[u8], pos: usize) -> Result<(Range<usize>, usize), BencodeError> {
    let bad = BencodeError::BadStringLength(pos);
    let rest = &buf[pos..];
    // 19 digits overflow no usize on 64-bit and exceed any real input.
    let colon = rest
        .iter()
        .take(20)
        .position(|&b| b == b':')
        .ok_or(bad.clone())?;
    let digits = &rest[..colon];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    let len: usize = std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(bad.clone())?;
    let data_start = pos + colon + 1;
    let data_end = data_start.checked_add(len).ok_or(bad.clone())?;
    if data_end > buf.len() {
        return Err(bad);
    }
    Ok((data_start..data_end, data_end))
}

/// A small canonical bencode writer, for values we create (sorted keys are the caller's job:
/// [`Encoder::dict`] takes its entries pre-sorted).
pub mod write {
    /// Appends `i<n>e`.
    pub fn int(out: &mut Vec<u8>, n: i64) {
        out.push(b'i');
        out.extend_from_slice(n.to_string().as_bytes());
        out.push(b'e');
    }

    /// Appends `<len>:<bytes>`.
    pub fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(b.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scans_values_and_top_level_entries() {
        let buf = b"d3:agei-5e4:infod1:ai1ee4:listl1:xee";
        let s = scan(buf).unwrap();
        assert_eq!(s.span, 0..buf.len());
        assert!(s.is_dict(buf));
        let info = s.get(buf, b"info").unwrap();
        assert_eq!(&buf[info], b"d1:ai1ee");
        assert_eq!(&buf[s.get(buf, b"age").unwrap()], b"i-5e");
        assert_eq!(s.entries.len(), 3);
        assert!(s.get(buf, b"nope").is_none());
    }

    #[test]
    fn rejects_malformed_integers() {
        for bad in [
            &b"ie"[..],
            b"i-e",
            b"i-0e",
            b"i03e",
            b"i1x2e",
            b"i9223372036854775808e",
            b"i12",
        ] {
            assert!(scan(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        for good in [
            &b"i0e"[..],
            b"i-1e",
            b"i9223372036854775807e",
            b"i-9223372036854775808e",
        ] {
            assert!(scan(good).is_ok());
        }
    }

    #[test]
    fn rejects_structural_errors() {
        assert_eq!(scan(b"i1ei2e"), Err(BencodeError::TrailingData(3)));
        assert_eq!(scan(b"di1e1:ae"), Err(BencodeError::NonStringKey(1)));
        assert_eq!(scan(b"d1:ae"), Err(BencodeError::MissingDictValue(4)));
        assert!(matches!(
            scan(b"5:abc"),
            Err(BencodeError::BadStringLength(0))
        ));
        assert!(matches!(scan(b"l"), Err(BencodeError::UnexpectedEnd(1))));
        assert!(matches!(
            scan(b"e"),
            Err(BencodeError::UnexpectedByte { .. })
        ));
        assert!(scan(b"").is_err());
        assert!(scan(b"99999999999999999999999:").is_err());
    }

    #[test]
    fn depth_limit_without_stack_overflow() {
        let mut deep = vec![b'l'; 1_000_000];
        deep.extend(std::iter::repeat_n(b'e', 1_000_000));
        assert_eq!(
            scan(&deep),
            Err(BencodeError::DepthExceeded(DEFAULT_MAX_DEPTH))
        );
        let mut ok = vec![b'l'; 100];
        ok.extend(std::iter::repeat_n(b'e', 100));
        assert!(scan(&ok).is_ok());
    }

    #[test]
    fn prefix_scan_finds_end_of_dict_before_raw_data() {
        let buf = b"d8:msg_typei1e5:piecei0eeRAWDATA";
        let s = scan_prefix(buf, 0, DEFAULT_MAX_DEPTH).unwrap();
        assert_eq!(&buf[s.span.end..], b"RAWDATA");
    }

    fn arb_bencode() -> impl Strategy<Value = Vec<u8>> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(|n| {
                let mut v = Vec::new();
                write::int(&mut v, n);
                v
            }),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(|b| {
                let mut v = Vec::new();
                write::bytes(&mut v, &b);
                v
            }),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(|items| {
                    let mut v = vec![b'l'];
                    items.iter().for_each(|i| v.extend_from_slice(i));
                    v.push(b'e');
                    v
                }),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..8
                )
                .prop_map(|m| {
                    let mut v = vec![b'd'];
                    for (k, val) in m {
                        write::bytes(&mut v, &k);
                        v.extend_from_slice(&val);
                    }
                    v.push(b'e');
                    v
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn valid_bencode_scans_whole_and_agrees_with_serde(v in arb_bencode()) {
            let s = scan(&v).unwrap();
            prop_assert_eq!(s.span, 0..v.len());
            let value: serde_bencode::value::Value = serde_bencode::from_bytes(&v).unwrap();
            // Round trip through serde_bencode gives the same canonical bytes.
            prop_assert_eq!(serde_bencode::to_bytes(&value).unwrap(), v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = scan(&v);
            let _ = scan_prefix(&v, 0, 4);
        }

        #[test]
        fn mutated_bencode_never_panics(v in arb_bencode(), idx in any::<usize>(), byte in any::<u8>()) {
            let mut m = v.clone();
            if !m.is_empty() {
                let i = idx % m.len();
                m[i] = byte;
            }
            if scan(&m).is_ok() {
                // Whatever the scanner accepts, serde_bencode must decode without panicking.
                let _ = serde_bencode::from_bytes::<serde_bencode::value::Value>(&m);
            }
        }
    }
}
