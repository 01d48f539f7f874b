//! The state worth keeping across restarts: the node id (DESIGN: "DHT node id kept across
//! restarts") and the good nodes, as a small bencoded file
//! `d2:id20:<id>5:nodes<compact v4>6:nodes6<compact v6>e`. The engine decides where it lives.
//! The file is untrusted on load: bounded size, bounded node count, scanned before decoding.

use std::collections::HashMap;

use serde_bencode::value::Value;
use shoal_core::{
    decode_compact_nodes_v4, decode_compact_nodes_v6, encode_compact_node, CompactNode, Id20,
    COMPACT_NODE_V4_LEN, COMPACT_NODE_V6_LEN,
};
use shoal_metainfo::bencode;
use thiserror::Error;

/// Most nodes saved or loaded (a full table of a large DHT holds ~200).
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
    /// Our node id.
    pub id: Id20,
    /// Nodes that were good when saved.
    pub nodes: Vec<CompactNode>,
}

impl DhtState {
    /// Bencodes the state.
    pub fn encode(&self) -> Vec<u8> {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for n in self.nodes.iter().take(MAX_SAVED_NODES) {
            if n.addr.is_ipv4() {
                encode_compact_node(n, &mut v4);
            } else {
                encode_compact_node(n, &mut v6);
            }
        }
        let mut out = Vec::with_capacity(40 + v4.len() + v6.len());
        out.extend_from_slice(b"d2:id20:");
        out.extend_from_slice(self.id.as_bytes());
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
        let mut nodes = Vec::new();
        if let Some(Value::Bytes(b)) = d.get(&b"nodes"[..]) {
            let whole = &b[..b.len() / COMPACT_NODE_V4_LEN * COMPACT_NODE_V4_LEN];
            nodes.extend(decode_compact_nodes_v4(whole).unwrap_or_default());
        }
        if let Some(Value::Bytes(b)) = d.get(&b"nodes6"[..]) {
            let whole = &b[..b.len() / COMPACT_NODE_V6_LEN * COMPACT_NODE_V6_LEN];
            nodes.extend(decode_compact_nodes_v6(whole).unwrap_or_default());
        }
        nodes.retain(|n| n.addr.port() != 0);
        nodes.truncate(MAX_SAVED_NODES);
        Ok(DhtState { id, nodes })
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
        let mut s = DhtState {
            id: Id20([7; 20]),
            nodes: vec![CompactNode {
                id: Id20([1; 20]),
                addr: SocketAddr::from(([10, 0, 0, 1], 1)),
            }],
        }
        .encode();
        s = String::from_utf8_lossy(&s)
            .replace("5:nodes26:", "5:nodes27:")
            .into_bytes();
        let _ = DhtState::decode(&s);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = DhtState::decode(&bytes);
        }
    }
}
