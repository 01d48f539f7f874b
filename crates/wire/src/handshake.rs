//! The 68-byte handshake that opens every connection (BEP 3).

use shoal_core::Id20;

use crate::WireError;

/// The protocol string, preceded on the wire by its length (19).
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
/// Bytes in a handshake.
pub const HANDSHAKE_LEN: usize = 68;

/// A peer's handshake: its capabilities (reserved bits), the torrent and its peer id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The 8 reserved bytes; see the `supports_*` methods.
    pub reserved: [u8; 8],
    /// The torrent.
    pub info_hash: Id20,
    /// The sender's peer id.
    pub peer_id: Id20,
}

impl Handshake {
    /// shoal's handshake: extension protocol (BEP 10), fast extension (BEP 6) and DHT (BEP 5).
    pub fn new(info_hash: Id20, peer_id: Id20) -> Self {
        let mut reserved = [0u8; 8];
        reserved[5] |= 0x10; // BEP 10
        reserved[7] |= 0x04; // BEP 6
        reserved[7] |= 0x01; // BEP 5
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    /// Clears the DHT bit (private torrents, or DHT off).
    pub fn without_dht(mut self) -> Self {
        self.reserved[7] &= !0x01;
        self
    }

    /// Sets the v2 bit (BEP 52: the 4th most significant bit of the last reserved byte): we
    /// speak v2, so a peer given the v1 info-hash of a hybrid may answer with the v2 one.
    pub fn with_v2(mut self) -> Self {
        self.reserved[7] |= 0x10;
        self
    }

    /// BEP 52: the peer speaks BitTorrent v2.
    pub fn supports_v2(&self) -> bool {
        self.reserved[7] & 0x10 != 0
    }

    /// BEP 10 extension protocol.
    pub fn supports_extended(&self) -> bool {
        self.reserved[5] & 0x10 != 0
    }

    /// BEP 6 fast extension.
    pub fn supports_fast(&self) -> bool {
        self.reserved[7] & 0x04 != 0
    }

    /// BEP 5 DHT (the peer will send `port`).
    pub fn supports_dht(&self) -> bool {
        self.reserved[7] & 0x01 != 0
    }

    /// The 68 bytes on the wire.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = 19;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(self.info_hash.as_bytes());
        out[48..68].copy_from_slice(self.peer_id.as_bytes());
        out
    }

    /// Decodes the first 68 bytes of `buf`; `Ok(None)` if fewer have arrived. A wrong protocol
    /// string is detected as soon as its bytes arrive.
    pub fn decode(buf: &[u8]) -> Result<Option<Handshake>, WireError> {
        let seen = buf.len().min(20);
        let mut expected = [0u8; 20];
        expected[0] = 19;
        expected[1..].copy_from_slice(PROTOCOL);
        if buf[..seen] != expected[..seen] {
            return Err(WireError::BadProtocol);
        }
        if buf.len() < HANDSHAKE_LEN {
            return Ok(None);
        }
        let mut reserved = [0u8; 8];
        reserved.copy_from_slice(&buf[20..28]);
        Ok(Some(Handshake {
            reserved,
            info_hash: Id20::from_slice(&buf[28..48]).ok_or(WireError::BadProtocol)?,
            peer_id: Id20::from_slice(&buf[48..68]).ok_or(WireError::BadProtocol)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bits() {
        let h = Handshake::new(Id20([1; 20]), Id20([2; 20]));
        let bytes = h.encode();
        assert_eq!(Handshake::decode(&bytes).unwrap(), Some(h));
        assert!(h.supports_extended() && h.supports_fast() && h.supports_dht());
        assert!(!h.without_dht().supports_dht());
        assert!(!h.supports_v2());
        let v2 = h.with_v2();
        assert!(v2.supports_v2() && v2.supports_fast() && v2.supports_dht());
        assert_eq!(v2.encode()[27], 0x10 | 0x04 | 0x01);
        assert_eq!(Handshake::decode(&bytes[..30]).unwrap(), None);
        assert_eq!(Handshake::decode(&[]).unwrap(), None);
    }

    #[test]
    fn wrong_protocol_is_seen_early() {
        assert_eq!(
            Handshake::decode(b"GET / HTTP/1.1"),
            Err(WireError::BadProtocol)
        );
        assert_eq!(Handshake::decode(&[18]), Err(WireError::BadProtocol));
    }
}
