//! BEP 11 peer exchange (`ut_pex`): peers tell each other about the peers they are connected to.

use std::net::SocketAddr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_bencode::value::Value;
use shoal_core::{decode_compact_peers_v4, decode_compact_peers_v6, encode_compact_peer};
use shoal_metainfo::bencode;

use crate::WireError;

/// BEP 11: at most 50 added (and 50 dropped) peers per message.
pub const MAX_PEX_PEERS: usize = 50;

/// One `ut_pex` message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PexMessage {
    /// Peers the sender connected to since its last message (IPv4 and IPv6).
    pub added: Vec<SocketAddr>,
    /// Peers the sender disconnected from.
    pub dropped: Vec<SocketAddr>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    added: Option<Value>,
    #[serde(default)]
    added6: Option<Value>,
    #[serde(default)]
    dropped: Option<Value>,
    #[serde(default)]
    dropped6: Option<Value>,
}

/// Fields in bencode key order.
#[derive(Serialize)]
struct Out {
    #[serde(with = "serde_bytes")]
    added: Vec<u8>,
    #[serde(rename = "added.f", with = "serde_bytes")]
    added_f: Vec<u8>,
    #[serde(with = "serde_bytes")]
    added6: Vec<u8>,
    #[serde(rename = "added6.f", with = "serde_bytes")]
    added6_f: Vec<u8>,
    #[serde(with = "serde_bytes")]
    dropped: Vec<u8>,
    #[serde(with = "serde_bytes")]
    dropped6: Vec<u8>,
}

fn peers(v4: &Option<Value>, v6: &Option<Value>) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    if let Some(Value::Bytes(b)) = v4 {
        // A string of the wrong length is ignored rather than fatal: the rest may be useful.
        out.extend(decode_compact_peers_v4(b).unwrap_or_default());
    }
    if let Some(Value::Bytes(b)) = v6 {
        out.extend(decode_compact_peers_v6(b).unwrap_or_default());
    }
    out.truncate(MAX_PEX_PEERS);
    out
}

impl PexMessage {
    /// Decodes a `ut_pex` payload (after the extension id byte). At most 50 peers per list are
    /// kept, whatever the sender claims.
    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let bad = |m: String| WireError::BadExtended(format!("ut_pex: {m}"));
        let scanned = bencode::scan(payload).map_err(|e| bad(e.to_string()))?;
        if !scanned.is_dict(payload) {
            return Err(bad("not a dictionary".into()));
        }
        let raw: Raw = serde_bencode::from_bytes(payload).map_err(|e| bad(e.to_string()))?;
        Ok(PexMessage {
            added: peers(&raw.added, &raw.added6),
            dropped: peers(&raw.dropped, &raw.dropped6),
        })
    }

    /// Encodes the payload; lists longer than 50 are cut.
    pub fn encode(&self) -> Bytes {
        let mut out = Out {
            added: Vec::new(),
            added_f: Vec::new(),
            added6: Vec::new(),
            added6_f: Vec::new(),
            dropped: Vec::new(),
            dropped6: Vec::new(),
        };
        for a in self.added.iter().take(MAX_PEX_PEERS) {
            if a.is_ipv4() {
                encode_compact_peer(a, &mut out.added);
                out.added_f.push(0);
            } else {
                encode_compact_peer(a, &mut out.added6);
                out.added6_f.push(0);
            }
        }
        for d in self.dropped.iter().take(MAX_PEX_PEERS) {
            let list = if d.is_ipv4() {
                &mut out.dropped
            } else {
                &mut out.dropped6
            };
            encode_compact_peer(d, list);
        }
        Bytes::from(serde_bencode::to_bytes(&out).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_caps() {
        let m = PexMessage {
            added: vec![
                "127.0.0.2:6881".parse().unwrap(),
                "[::1]:7000".parse().unwrap(),
            ],
            dropped: vec!["127.0.0.9:1".parse().unwrap()],
        };
        assert_eq!(PexMessage::decode(&m.encode()).unwrap(), m);
        let many = PexMessage {
            added: (0..200u16)
                .map(|i| SocketAddr::from(([127, 0, 0, 1], 1000 + i)))
                .collect(),
            dropped: Vec::new(),
        };
        assert_eq!(PexMessage::decode(&many.encode()).unwrap().added.len(), 50);
        assert!(PexMessage::decode(b"i1e").is_err());
        // aria2's empty message
        assert_eq!(PexMessage::decode(b"de").unwrap(), PexMessage::default());
    }
}
