//! The uTP packet: the 20-byte version 1 header, the extension chain, and the selective ACK
//! extension (BEP 29, "header format").
//!
//! [`Packet::parse`] borrows from the datagram and never panics: every length is checked before
//! it is used, the extension chain is bounded by [`MAX_EXTENSIONS`], and unknown extensions are
//! skipped. [`Packet::encode`] writes the same layout; parse-then-encode-then-parse is the
//! identity on everything the parser keeps (unknown extensions are dropped).

use crate::error::PacketError;

/// Length of the fixed header.
pub const HEADER_LEN: usize = 20;
/// The only protocol version.
pub const VERSION: u8 = 1;
/// Extension type of the selective ACK.
pub const EXT_SACK: u8 = 1;
/// The longest extension chain accepted. Real clients send at most two (selective ACK and
/// libtorrent's close reason); the bound stops a datagram of empty extensions from costing more
/// than a few steps.
pub const MAX_EXTENSIONS: usize = 8;
/// The longest selective ACK bitmask we accept or send, in bytes. The extension's one-byte length
/// field already bounds it to 252; libtorrent sends at most 32 bytes (256 packets past
/// `ack_nr + 1`), and so do we, since our reorder buffer is bounded below that.
pub const MAX_SACK_LEN: usize = 32;

/// The five packet types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// ST_DATA: a payload, consumes a sequence number.
    Data = 0,
    /// ST_FIN: the sender's last packet; consumes a sequence number.
    Fin = 1,
    /// ST_STATE: an acknowledgement without payload; does not consume a sequence number.
    State = 2,
    /// ST_RESET: the sender has no state for this connection.
    Reset = 3,
    /// ST_SYN: opens a connection; consumes sequence number 1 of the initiator.
    Syn = 4,
}

impl PacketType {
    fn from_nibble(n: u8) -> Result<Self, PacketError> {
        Ok(match n {
            0 => PacketType::Data,
            1 => PacketType::Fin,
            2 => PacketType::State,
            3 => PacketType::Reset,
            4 => PacketType::Syn,
            other => return Err(PacketError::Type(other)),
        })
    }
}

/// The fixed header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// What kind of packet this is.
    pub ty: PacketType,
    /// The receiver's connection id (the SYN carries the initiator's receive id).
    pub connection_id: u16,
    /// The sender's clock in microseconds (wrapping) when the packet was sent.
    pub timestamp_us: u32,
    /// The sender's latest one-way delay sample of the reverse path: its clock minus our
    /// `timestamp_us` when our last packet arrived; 0 when it has none.
    pub timestamp_diff_us: u32,
    /// The sender's free receive buffer, in bytes.
    pub wnd_size: u32,
    /// This packet's sequence number (for ST_STATE, the next number the sender will use).
    pub seq_nr: u16,
    /// The last sequence number the sender received in order from us.
    pub ack_nr: u16,
}

/// A parsed packet, borrowing the selective ACK bitmask and the payload from the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The fixed header.
    pub header: Header,
    /// The selective ACK bitmask, if the packet carries one: bit `i` (byte `i / 8`, bit `i % 8`,
    /// least significant first) acknowledges `ack_nr + 2 + i`. Its length is a non-zero multiple
    /// of 4, at most [`MAX_SACK_LEN`] bytes once accepted by a connection.
    pub sack: Option<&'a [u8]>,
    /// The payload.
    pub payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Parses one datagram. Unknown extensions are skipped; a selective ACK longer than
    /// [`MAX_SACK_LEN`] is accepted here (the format allows it) and truncated by the consumer.
    pub fn parse(buf: &'a [u8]) -> Result<Packet<'a>, PacketError> {
        if buf.len() < HEADER_LEN {
            return Err(PacketError::TooShort { len: buf.len() });
        }
        let version = buf[0] & 0x0f;
        if version != VERSION {
            return Err(PacketError::Version(version));
        }
        let ty = PacketType::from_nibble(buf[0] >> 4)?;
        let be16 = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
        let be32 = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let header = Header {
            ty,
            connection_id: be16(2),
            timestamp_us: be32(4),
            timestamp_diff_us: be32(8),
            wnd_size: be32(12),
            seq_nr: be16(16),
            ack_nr: be16(18),
        };
        let mut next_ext = buf[1];
        let mut pos = HEADER_LEN;
        let mut sack = None;
        let mut count = 0;
        while next_ext != 0 {
            count += 1;
            if count > MAX_EXTENSIONS {
                return Err(PacketError::TooManyExtensions {
                    max: MAX_EXTENSIONS,
                });
            }
            let (Some(&following), Some(&len)) = (buf.get(pos), buf.get(pos + 1)) else {
                return Err(PacketError::ExtensionTruncated { offset: pos });
            };
            let len = usize::from(len);
            let body = buf
                .get(pos + 2..pos + 2 + len)
                .ok_or(PacketError::ExtensionTruncated { offset: pos })?;
            if next_ext == EXT_SACK {
                if len == 0 || len % 4 != 0 {
                    return Err(PacketError::SackLength { len });
                }
                if sack.is_some() {
                    return Err(PacketError::DuplicateSack);
                }
                sack = Some(body);
            }
            next_ext = following;
            pos += 2 + len;
        }
        Ok(Packet {
            header,
            sack,
            payload: &buf[pos..],
        })
    }

    /// The encoded length of this packet.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.sack.map_or(0, |s| 2 + s.len()) + self.payload.len()
    }

    /// Appends the encoded packet to `out`.
    ///
    /// The selective ACK, if any, must be a non-zero multiple of 4 bytes and at most 252 bytes
    /// long (the one-byte length field); the connection only ever builds such masks.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let h = &self.header;
        out.reserve(self.encoded_len());
        out.push(((h.ty as u8) << 4) | VERSION);
        out.push(if self.sack.is_some() { EXT_SACK } else { 0 });
        out.extend_from_slice(&h.connection_id.to_be_bytes());
        out.extend_from_slice(&h.timestamp_us.to_be_bytes());
        out.extend_from_slice(&h.timestamp_diff_us.to_be_bytes());
        out.extend_from_slice(&h.wnd_size.to_be_bytes());
        out.extend_from_slice(&h.seq_nr.to_be_bytes());
        out.extend_from_slice(&h.ack_nr.to_be_bytes());
        if let Some(mask) = self.sack {
            debug_assert!(!mask.is_empty() && mask.len() % 4 == 0 && mask.len() <= 252);
            out.push(0);
            out.push(mask.len().min(252) as u8);
            out.extend_from_slice(&mask[..mask.len().min(252)]);
        }
        out.extend_from_slice(self.payload);
    }

    /// The encoded packet as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        v
    }
}

/// Whether bit `i` of a selective ACK mask is set (it acknowledges `ack_nr + 2 + i`).
pub fn sack_bit(mask: &[u8], i: usize) -> bool {
    mask.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(ty: PacketType) -> Header {
        Header {
            ty,
            connection_id: 0x1234,
            timestamp_us: 0xdead_beef,
            timestamp_diff_us: 77,
            wnd_size: 1 << 20,
            seq_nr: 65535,
            ack_nr: 3,
        }
    }

    #[test]
    fn header_layout_matches_bep29() {
        let p = Packet {
            header: header(PacketType::Syn),
            sack: None,
            payload: b"",
        };
        let b = p.to_vec();
        assert_eq!(b.len(), 20);
        // type in the high nibble, version in the low one (BEP 29's fixed layout).
        assert_eq!(b[0], 0x41);
        assert_eq!(b[1], 0);
        assert_eq!(&b[2..4], &[0x12, 0x34]);
        assert_eq!(&b[4..8], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&b[16..18], &[0xff, 0xff]);
        assert_eq!(Packet::parse(&b).unwrap(), p);
    }

    #[test]
    fn sack_and_payload_roundtrip() {
        let mask = [0b0000_0101, 0, 0, 0x80];
        let p = Packet {
            header: header(PacketType::State),
            sack: Some(&mask),
            payload: b"",
        };
        let b = p.to_vec();
        assert_eq!(b[1], EXT_SACK);
        assert_eq!(&b[20..22], &[0, 4]);
        let q = Packet::parse(&b).unwrap();
        assert_eq!(q, p);
        let m = q.sack.unwrap();
        assert!(sack_bit(m, 0) && !sack_bit(m, 1) && sack_bit(m, 2) && sack_bit(m, 31));
        assert!(!sack_bit(m, 32));
    }

    #[test]
    fn unknown_extensions_are_skipped() {
        let mut b = Packet {
            header: header(PacketType::Data),
            sack: None,
            payload: b"",
        }
        .to_vec();
        b[1] = 9; // unknown extension first
        b.extend_from_slice(&[EXT_SACK, 3, 1, 2, 3]); // next = SACK, len 3
        b.extend_from_slice(&[0, 4, 0xff, 0, 0, 0]); // SACK, last
        b.extend_from_slice(b"hello");
        let p = Packet::parse(&b).unwrap();
        assert_eq!(p.sack, Some(&[0xff, 0, 0, 0][..]));
        assert_eq!(p.payload, b"hello");
    }

    #[test]
    fn precise_errors() {
        assert_eq!(
            Packet::parse(&[0x41; 5]),
            Err(PacketError::TooShort { len: 5 })
        );
        let good = Packet {
            header: header(PacketType::Data),
            sack: None,
            payload: b"x",
        }
        .to_vec();
        let mut b = good.clone();
        b[0] = 0x42;
        assert_eq!(Packet::parse(&b), Err(PacketError::Version(2)));
        b[0] = 0x51;
        assert_eq!(Packet::parse(&b), Err(PacketError::Type(5)));
        let mut b = good[..20].to_vec();
        b[1] = EXT_SACK;
        assert_eq!(
            Packet::parse(&b),
            Err(PacketError::ExtensionTruncated { offset: 20 })
        );
        b.extend_from_slice(&[0, 8, 0, 0]);
        assert_eq!(
            Packet::parse(&b),
            Err(PacketError::ExtensionTruncated { offset: 20 })
        );
        let mut c = good[..20].to_vec();
        c[1] = EXT_SACK;
        c.extend_from_slice(&[0, 3, 0, 0, 0]);
        assert_eq!(Packet::parse(&c), Err(PacketError::SackLength { len: 3 }));
        let mut d = good[..20].to_vec();
        d[1] = EXT_SACK;
        d.extend_from_slice(&[EXT_SACK, 4, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
        assert_eq!(Packet::parse(&d), Err(PacketError::DuplicateSack));
        let mut e = good[..20].to_vec();
        e[1] = 7;
        for _ in 0..20 {
            e.extend_from_slice(&[7, 0]);
        }
        assert_eq!(
            Packet::parse(&e),
            Err(PacketError::TooManyExtensions {
                max: MAX_EXTENSIONS
            })
        );
    }

    fn arb_type() -> impl Strategy<Value = PacketType> {
        prop_oneof![
            Just(PacketType::Data),
            Just(PacketType::Fin),
            Just(PacketType::State),
            Just(PacketType::Reset),
            Just(PacketType::Syn),
        ]
    }

    proptest! {
        #[test]
        fn encode_parse_roundtrip(
            ty in arb_type(),
            connection_id: u16,
            timestamp_us: u32,
            timestamp_diff_us: u32,
            wnd_size: u32,
            seq_nr: u16,
            ack_nr: u16,
            sack_words in proptest::option::of(1usize..=8),
            sack_seed: u64,
            payload in proptest::collection::vec(any::<u8>(), 0..1500),
        ) {
            let mask: Option<Vec<u8>> = sack_words
                .map(|w| (0..w * 4).map(|i| (sack_seed >> (i % 64)) as u8).collect());
            let p = Packet {
                header: Header { ty, connection_id, timestamp_us, timestamp_diff_us, wnd_size, seq_nr, ack_nr },
                sack: mask.as_deref(),
                payload: &payload,
            };
            let bytes = p.to_vec();
            prop_assert_eq!(bytes.len(), p.encoded_len());
            prop_assert_eq!(Packet::parse(&bytes), Ok(p));
        }

        #[test]
        fn parse_never_panics_and_reencodes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(p) = Packet::parse(&bytes) {
                let again = p.to_vec();
                prop_assert_eq!(Packet::parse(&again), Ok(p));
            }
        }
    }
}
