//! The bencode reading used for .torrent files: as lenient as libtorrent's `bdecode`, and no more.
//!
//! libtorrent loads a v1 torrent whose bencoding has what it calls soft errors (integers or string
//! lengths with leading zeros, `-0`, unsorted or repeated dictionary keys) and ignores bytes after
//! the top-level value; only when the info dictionary has a `meta version` do soft errors refuse
//! it. This reader accepts the same, says whether it met a soft error, keeps dictionary entries in
//! file order (a lookup finds the first of repeated keys, as libtorrent's does) and records each
//! value's byte span, so the info-hash is taken over the exact bytes of `info`. Nesting is bounded
//! by [`bencode::DEFAULT_MAX_DEPTH`] and the number of values by [`MAX_TOKENS`], as in libtorrent.

use std::ops::Range;

use crate::bencode::{self, BencodeError};

/// Most bencode tokens (one per value, one more per list or dictionary end) in one .torrent, as
/// libtorrent's `load_torrent_limits::max_decode_tokens`.
pub const MAX_TOKENS: usize = 3_000_000;

/// A decoded value borrowing the input, with its byte span.
#[derive(Debug, Clone)]
pub(crate) struct Val<'a> {
    pub span: Range<usize>,
    pub kind: Kind<'a>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Val<'a>>),
    /// Entries in file order.
    Dict(Vec<(&'a [u8], Val<'a>)>),
}

impl<'a> Val<'a> {
    pub fn int(&self) -> Option<i64> {
        match self.kind {
            Kind::Int(i) => Some(i),
            _ => None,
        }
    }

    pub fn bytes(&self) -> Option<&'a [u8]> {
        match self.kind {
            Kind::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn list(&self) -> Option<&[Val<'a>]> {
        match &self.kind {
            Kind::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn dict(&self) -> Option<&[(&'a [u8], Val<'a>)]> {
        match &self.kind {
            Kind::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The first value stored under `key`, if this is a dictionary.
    pub fn get(&self, key: &[u8]) -> Option<&Val<'a>> {
        self.dict()?.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// `get` restricted to one type, as libtorrent's `dict_find_string` and friends: the first
    /// value under `key` counts, and if it has another type the key counts as absent.
    pub fn get_bytes(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.get(key)?.bytes()
    }

    pub fn get_int(&self, key: &[u8]) -> Option<i64> {
        self.get(key)?.int()
    }

    pub fn get_list(&self, key: &[u8]) -> Option<&[Val<'a>]> {
        self.get(key)?.list()
    }

    pub fn get_dict(&self, key: &[u8]) -> Option<&Val<'a>> {
        self.get(key).filter(|v| v.dict().is_some())
    }
}

/// A decoded value and what the reader noticed.
pub(crate) struct Decoded<'a> {
    pub value: Val<'a>,
    /// A leading zero, `-0` aside, or an unsorted or repeated key somewhere inside the value.
    pub soft_error: bool,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    tokens: usize,
    soft_error: bool,
}

/// Decodes the value at the start of `buf`; bytes after it are not looked at.
pub(crate) fn decode(buf: &[u8]) -> Result<Decoded<'_>, BencodeError> {
    let mut r = Reader {
        buf,
        pos: 0,
        tokens: 0,
        soft_error: false,
    };
    let value = r.value(0)?;
    Ok(Decoded {
        value,
        soft_error: r.soft_error,
    })
}

impl<'a> Reader<'a> {
    fn token(&mut self) -> Result<(), BencodeError> {
        self.tokens += 1;
        if self.tokens > MAX_TOKENS {
            return Err(BencodeError::TooManyTokens(MAX_TOKENS));
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Val<'a>, BencodeError> {
        let start = self.pos;
        let byte = *self
            .buf
            .get(start)
            .ok_or(BencodeError::UnexpectedEnd(start))?;
        self.token()?;
        let kind = match byte {
            b'i' => Kind::Int(self.integer()?),
            b'0'..=b'9' => Kind::Bytes(self.string()?),
            b'l' | b'd' => {
                if depth >= bencode::DEFAULT_MAX_DEPTH {
                    return Err(BencodeError::DepthExceeded(bencode::DEFAULT_MAX_DEPTH));
                }
                self.pos += 1;
                if byte == b'l' {
                    let mut items = Vec::new();
                    while self.peek()? != b'e' {
                        items.push(self.value(depth + 1)?);
                    }
                    self.pos += 1;
                    self.token()?;
                    Kind::List(items)
                } else {
                    let mut entries: Vec<(&'a [u8], Val<'a>)> = Vec::new();
                    while self.peek()? != b'e' {
                        if !self.peek()?.is_ascii_digit() {
                            return Err(BencodeError::NonStringKey(self.pos));
                        }
                        self.token()?;
                        let key = self.string()?;
                        if self.peek()? == b'e' {
                            return Err(BencodeError::MissingDictValue(self.pos));
                        }
                        if let Some((last, _)) = entries.last() {
                            if *last >= key {
                                self.soft_error = true;
                            }
                        }
                        let v = self.value(depth + 1)?;
                        entries.push((key, v));
                    }
                    self.pos += 1;
                    self.token()?;
                    Kind::Dict(entries)
                }
            }
            _ => return Err(BencodeError::UnexpectedByte { pos: start, byte }),
        };
        Ok(Val {
            span: start..self.pos,
            kind,
        })
    }

    fn peek(&self) -> Result<u8, BencodeError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::UnexpectedEnd(self.pos))
    }

    /// `i<digits>e`, with an optional `-`; leading zeros and `-0` are soft errors.
    fn integer(&mut self) -> Result<i64, BencodeError> {
        let start = self.pos;
        let bad = BencodeError::BadInteger(start);
        let rest = &self.buf[start + 1..];
        let end = rest
            .iter()
            .position(|&b| b == b'e')
            .ok_or(BencodeError::UnexpectedEnd(self.buf.len()))?;
        let text = &rest[..end];
        let (negative, digits) = match text.split_first() {
            Some((b'-', d)) => (true, d),
            _ => (false, text),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad);
        }
        if text.len() > 1 && text[0] == b'0' {
            self.soft_error = true;
        }
        let mut value: i64 = 0;
        for &d in digits {
            let d = (d - b'0') as i64;
            value = value.checked_mul(10).ok_or(bad.clone())?;
            value = if negative {
                value.checked_sub(d)
            } else {
                value.checked_add(d)
            }
            .ok_or(bad.clone())?;
        }
        self.pos = start + 1 + end + 1;
        Ok(value)
    }

    /// `<len>:<bytes>`; a length with a leading zero is a soft error.
    fn string(&mut self) -> Result<&'a [u8], BencodeError> {
        let start = self.pos;
        let (span, end) = crate::bencode::scan_string(self.buf, start)?;
        // The digits run from `start` to the colon just before the data.
        let digits = span.start - 1 - start;
        if digits > 1 && self.buf[start] == b'0' {
            self.soft_error = true;
        }
        self.pos = end;
        Ok(&self.buf[span])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_like_libtorrent() {
        let d = decode(b"d1:bi05e1:ai-0e1:ai7ee trailing").unwrap();
        assert!(d.soft_error);
        assert_eq!(d.value.get_int(b"b"), Some(5));
        assert_eq!(d.value.get_int(b"a"), Some(0));
        assert_eq!(d.value.span, 0..22);
        let d = decode(b"d1:ai1e1:b02:xye").unwrap();
        assert!(d.soft_error);
        assert_eq!(d.value.get_bytes(b"b"), Some(&b"xy"[..]));
        assert!(!decode(b"d1:ai0e1:bi-1ee").unwrap().soft_error);
        for bad in [
            &b"i+1e"[..],
            b"ie",
            b"i-e",
            b"d1:ae",
            b"di1ei2ee",
            b"l",
            b"5:ab",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn depth_and_tokens_are_bounded() {
        let deep = vec![b'l'; 100_000];
        assert!(matches!(decode(&deep), Err(BencodeError::DepthExceeded(_))));
        let mut many = b"l".to_vec();
        many.extend(b"le".repeat(MAX_TOKENS / 2));
        many.push(b'e');
        assert!(matches!(decode(&many), Err(BencodeError::TooManyTokens(_))));
    }
}
