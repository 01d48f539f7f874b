//! The merkle hash messages of BEP 52: `hash request` (21), `hashes` (22), `hash reject` (23).
//!
//! A request names a file by its `pieces root` and asks for `length` consecutive hashes of one
//! layer of its tree (`base layer`, 0 = the 16 KiB leaves) from `index`, plus the uncle hashes of
//! `proof layers` layers above them so the answer can be checked against a hash the asker already
//! trusts. The wire layer checks sizes only; whether a request fits a file's tree is the torrent's
//! business ([`HashRequest::is_well_formed`] covers what needs no tree).

use shoal_core::Id32;

/// Most hashes of the base layer one request may ask for: libtorrent's bound (8192 leaves cover
/// a 128 MiB piece); BEP 52 says requests SHOULD NOT exceed 512.
pub const MAX_HASH_COUNT: u32 = 8192;
/// Most uncle hashes a `hashes` message may add: one per layer, and no tree shoal loads is 64
/// layers deep.
pub const MAX_PROOF_HASHES: u32 = 64;
/// Bytes of a `hash request` / `hash reject` payload: root, base layer, index, length, proof layers.
pub const HASH_REQUEST_LEN: usize = 32 + 4 * 4;

/// The payload of `hash request` and `hash reject`, and the head of `hashes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HashRequest {
    /// The file's merkle root (`pieces root`).
    pub pieces_root: Id32,
    /// Layers above the leaves of the first hash wanted (0: block hashes).
    pub base_layer: u32,
    /// Offset, in hashes, of the first hash wanted in the base layer.
    pub index: u32,
    /// Hashes wanted from the base layer.
    pub length: u32,
    /// Ancestor layers whose uncle hashes are wanted too.
    pub proof_layers: u32,
}

impl HashRequest {
    /// What BEP 52 demands of every request, whatever the file: `length` a power of two of at
    /// least 2, at most [`MAX_HASH_COUNT`], and `index` a multiple of it.
    pub fn is_well_formed(&self) -> bool {
        self.length >= 2
            && self.length <= MAX_HASH_COUNT
            && self.length.is_power_of_two()
            && self.index.is_multiple_of(self.length)
    }

    /// Uncle hashes a `hashes` answer carries after the base-layer hashes: the first
    /// `log2(length) - 1` proof layers are covered by the hashes themselves (BEP 52), which is
    /// libtorrent's `proof_layers - (log2(length) - 1)`, at least zero.
    pub fn proof_hashes(&self) -> u32 {
        let inside = i64::from(self.length.max(1).next_power_of_two().trailing_zeros());
        (i64::from(self.proof_layers) - (inside - 1)).clamp(0, i64::from(u32::MAX)) as u32
    }

    pub(crate) fn encode_into(&self, out: &mut bytes::BytesMut) {
        use bytes::BufMut;
        out.extend_from_slice(&self.pieces_root.0);
        out.put_u32(self.base_layer);
        out.put_u32(self.index);
        out.put_u32(self.length);
        out.put_u32(self.proof_layers);
    }

    /// Decodes the first [`HASH_REQUEST_LEN`] bytes of `p` (the caller checked the length).
    pub(crate) fn decode_from(p: &[u8]) -> Option<HashRequest> {
        let at = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        if p.len() < HASH_REQUEST_LEN {
            return None;
        }
        Some(HashRequest {
            pieces_root: Id32::from_slice(&p[..32])?,
            base_layer: at(32),
            index: at(36),
            length: at(40),
            proof_layers: at(44),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(index: u32, length: u32, proof_layers: u32) -> HashRequest {
        HashRequest {
            pieces_root: Id32([7; 32]),
            base_layer: 0,
            index,
            length,
            proof_layers,
        }
    }

    #[test]
    fn well_formed_requests() {
        assert!(req(0, 2, 0).is_well_formed());
        assert!(req(512, 512, 3).is_well_formed());
        assert!(!req(3, 1, 0).is_well_formed());
        assert!(!req(0, 0, 0).is_well_formed());
        assert!(!req(0, 3, 0).is_well_formed());
        assert!(!req(2, 4, 0).is_well_formed());
        assert!(!req(0, MAX_HASH_COUNT * 2, 0).is_well_formed());
    }

    #[test]
    fn proof_hash_counts_follow_bep_52() {
        // Two hashes: their parent's sibling is the first uncle.
        assert_eq!(req(0, 2, 3).proof_hashes(), 3);
        // 16 hashes: the first 3 proof layers lie inside the subtree they span.
        assert_eq!(req(0, 16, 3).proof_hashes(), 0);
        assert_eq!(req(0, 16, 5).proof_hashes(), 2);
        assert_eq!(req(0, 1, 2).proof_hashes(), 3);
        assert_eq!(req(0, 512, 0).proof_hashes(), 0);
    }
}
