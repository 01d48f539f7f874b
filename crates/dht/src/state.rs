//! The state worth keeping across restarts: the node id (DESIGN: "DHT node id kept across
//! restarts") and the good nodes of both routing tables (BEP 32: one per address family), as a
//! small bencoded file `d2:id20:<id>3:id620:<id>5:nodes<compact v4>6:nodes6<compact v6>e`.
//! `id6` is written only when the IPv6 node's id differs from the IPv4 one (a BEP 42 id for an
//! IPv6 address); files without it, as older versions wrote them, give both nodes `id`. The
//! engine decides where the file lives. It is untrusted on load: bounded size, bounded node
//! count per family, scanned before decoding.

use std::collections::HashMap;

use serde_bencode::value::Value;
use shoal_core::{
    decode_compact_nodes_v4, decode_compact_nodes_v6, encode_compact_node, CompactNode, Id20,
    COMPACT_NODE_V4_LEN, COMPACT_NODE_V6_LEN,
};
use shoal_metainfo::bencode;
use thiserror::Error;

use crate::krpc::Family;

/// Most nodes saved or loaded per address family (a full table of a large DHT holds ~200).
pub const MAX_SAVED_NODES: usize = 400;
/// Largest state file accepted.
pub const MAX_STATE_BYTES: usize = 64 * 1024;

/// Why a state file was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StateError {
    /// Larger than [`MAX_STATE_BYTES`].
    #[error("DHT state file is {0} bytes, more than the {MAX_STATE_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not bencode.
    #[error("DHT state file is not valid bencode: {0}")]
    Bencode(#[from] bencode::BencodeError),
    /// Bencode, but not the expected dictionary.
    #[error("DHT state file has no 20-byte `id`")]
    NoId,
}

/// A node id and known nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhtState {
    /// Our node id (the IPv4 node's, and the IPv6 node's unless `id6` is set).
    pub id: Id20,
    /// The IPv6 node's id when it differs from `id`.
    pub id6: Option<Id20>,
    /// Nodes that were good when saved, of both families (IPv4 ones go to `nodes`, IPv6 ones
    /// to `nodes6`).
    pub nodes: Vec<CompactNode>,
}

impl DhtState {
    /// A state of one id and these nodes.
    pub fn new(id: Id20, nodes: Vec<CompactNode>) -> DhtState {
        DhtState {
            id,
            id6: None,
            nodes,
        }
    }

    /// The id of the node of `family`.
    pub fn id_for(&self, family: Family) -> Id20 {
        match family {
            Family::V4 => self.id,
            Family::V6 => self.id6.unwrap_or(self.id),
        }
    }

    /// The saved nodes of `family`.
    pub fn nodes_of(&self, family: Family) -> impl Iterator<Item = &CompactNode> {
        self.nodes
            .iter()
            .filter(move |n| Family::of(&n.addr) == family)
    }

    /// Bencodes the state: at most [`MAX_SAVED_NODES`] nodes of each family.
    pub fn encode(&self) -> Vec<u8> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for n in self.nodes_of(Family::V4).take(MAX_SAVED_NODES) {
            encode_compact_node(n, &mut v4);
        }
        for n in self.nodes_of(Family::V6).take(MAX_SAVED_NODES) {
            encode_compact_node(n, &mut v6);
        }
        let mut out = Vec::with_capacity(70 + v4.len() + v6.len());
        out.extend_from_slice(b"d2:id20:");
        out.extend_from_slice(self.id.as_bytes());
        if let Some(id6) = self.id6.filter(|i| *i != self.id) {
            out.extend_from_slice(b"3:id620:");
            out.extend_from_slice(id6.as_bytes());
        }
        out.extend_from_slice(format!("5:nodes{}:", v4.len()).as_bytes());
        out.extend_from_slice(&v4);
        out.extend_from_slice(format!("6:nodes6{}:", v6.len()).as_bytes());
        out.extend_from_slice(&v6);
        out.push(b'e');
        out
    }

    /// Decodes a state file. Unknown keys are ignored; malformed node lists are dropped.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        if bytes.len() > MAX_STATE_BYTES {
            return Err(StateError::TooLarge(bytes.len()));
        }
        bencode::scan_prefix(bytes, 0, 8).and_then(|s| {
            if s.span.end == bytes.len() {
                Ok(s)
            } else {
                Err(bencode::BencodeError::TrailingData(s.span.end))
            }
        })?;
        let Ok(Value::Dict(d)) = serde_bencode::from_bytes::<Value>(bytes) else {
            return Err(StateError::NoId);
        };
        let d: HashMap<Vec<u8>, Value> = d;
        let id = match d.get(&b"id"[..]) {
            Some(Value::Bytes(b)) => Id20::from_slice(b).ok_or(StateError::NoId)?,
            _ => return Err(StateError::NoId),
        };
        // A malformed `id6` is ignored: the IPv6 node then uses `id`.
        let id6 = match d.get(&b"id6"[..]) {
            Some(Value::Bytes(b)) => Id20::from_slice(b).filter(|i| *i != id),
            _ => None,
        };
        let mut nodes = Vec::new();
        if let Some(Value::Bytes(b)) = d.get(&b"nodes"[..]) {
            let whole = &b[..b.len() / COMPACT_NODE_V4_LEN * COMPACT_NODE_V4_LEN];
            let mut v4 = decode_compact_nodes_v4(whole).unwrap_or_default();
            v4.retain(|n| n.addr.port() != 0);
            v4.truncate(MAX_SAVED_NODES);
            nodes.extend(v4);
        }
        if let Some(Value::Bytes(b)) = d.get(&b"nodes6"[..]) {
            let whole = &b[..b.len() / COMPACT_NODE_V6_LEN * COMPACT_NODE_V6_LEN];
            let mut v6 = decode_compact_nodes_v6(whole).unwrap_or_default();
            // An IPv4-mapped address in `nodes6` belongs to neither table.
            v6.retain(|n| n.addr.port() != 0 && Family::of(&n.addr) == Family::V6);
            v6.truncate(MAX_SAVED_NODES);
            nodes.extend(v6);
        }
        Ok(DhtState { id, id6, nodes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::SocketAddr;

    #[test]
    fn round_trip() {
        let s = DhtState {
            id: Id20([7; 20]),
            id6: None,
            nodes: vec![
                CompactNode {
                    id: Id20([1; 20]),
                    addr: "127.0.0.1:6881".parse().unwrap(),
                },
                CompactNode {
                    id: Id20([2; 20]),
                    addr: "[::1]:6882".parse().unwrap(),
                },
            ],
        };
        assert_eq!(DhtState::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn untrusted_input() {
        assert!(DhtState::decode(b"").is_err());
        assert!(DhtState::decode(b"de").is_err());
        assert!(DhtState::decode(b"d2:id3:abce").is_err());
        assert!(DhtState::decode(&[b'l'; 100]).is_err());
        assert!(DhtState::decode(&vec![0; MAX_STATE_BYTES + 1]).is_err());
        // A truncated node list keeps the whole entries.
        let mut s = DhtState::new(
            Id20([7; 20]),
            vec![CompactNode {
                id: Id20([1; 20]),
                addr: SocketAddr::from(([10, 0, 0, 1], 1)),
            }],
        )
        .encode();
        s = String::from_utf8_lossy(&s)
            .replace("5:nodes26:", "5:nodes27:")
            .into_bytes();
        let _ = DhtState::decode(&s);
    }

    #[test]
    fn both_families_and_both_ids_round_trip() {
        let node = |i: u8, addr: &str| CompactNode {
            id: Id20([i; 20]),
            addr: addr.parse().unwrap(),
        };
        let s = DhtState {
            id: Id20([7; 20]),
            id6: Some(Id20([8; 20])),
            nodes: vec![
                node(1, "127.0.0.1:6881"),
                node(2, "[::1]:6882"),
                node(3, "10.0.0.3:1"),
                node(4, "[2001:db8::4]:4"),
            ],
        };
        let bytes = s.encode();
        assert!(bytes.starts_with(b"d2:id20:"));
        assert!(bytes.windows(8).any(|w| w == b"3:id620:"));
        let back = DhtState::decode(&bytes).unwrap();
        assert_eq!(back.id_for(Family::V4), Id20([7; 20]));
        assert_eq!(back.id_for(Family::V6), Id20([8; 20]));
        assert_eq!(back.nodes_of(Family::V4).count(), 2);
        assert_eq!(back.nodes_of(Family::V6).count(), 2);
        // Same id for both: no `id6` written, the IPv6 node uses `id`.
        let same = DhtState {
            id6: Some(s.id),
            ..s.clone()
        };
        let back = DhtState::decode(&same.encode()).unwrap();
        assert_eq!(back.id6, None);
        assert_eq!(back.id_for(Family::V6), s.id);
    }

    #[test]
    fn older_files_without_id6_still_load() {
        // As written before the IPv6 DHT: `id`, `nodes` and an empty `nodes6`.
        let mut old = b"d2:id20:".to_vec();
        old.extend_from_slice(&[9; 20]);
        old.extend_from_slice(b"5:nodes26:");
        old.extend_from_slice(&[1; 20]);
        old.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1]);
        old.extend_from_slice(b"6:nodes60:e");
        let s = DhtState::decode(&old).unwrap();
        assert_eq!(s.id_for(Family::V6), Id20([9; 20]));
        assert_eq!(s.nodes.len(), 1);
        assert_eq!(s.encode(), old);
    }

    #[test]
    fn each_family_is_capped_on_its_own() {
        let mut nodes = Vec::new();
        for i in 0..(MAX_SAVED_NODES + 10) as u32 {
            let b = i.to_be_bytes();
            let mut id = [0u8; 20];
            id[..4].copy_from_slice(&b);
            nodes.push(CompactNode {
                id: Id20(id),
                addr: SocketAddr::from(([10, b[1], b[2], b[3]], 1)),
            });
        }
        nodes.push(CompactNode {
            id: Id20([0xee; 20]),
            addr: "[2001:db8::1]:1".parse().unwrap(),
        });
        let back = DhtState::decode(&DhtState::new(Id20([1; 20]), nodes).encode()).unwrap();
        assert_eq!(back.nodes_of(Family::V4).count(), MAX_SAVED_NODES);
        assert_eq!(back.nodes_of(Family::V6).count(), 1);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = DhtState::decode(&bytes);
        }
    }
}
