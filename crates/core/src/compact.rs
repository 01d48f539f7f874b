//! Compact binary encodings of peers (BEP 23, BEP 7) and DHT nodes (BEP 5, BEP 32).
//!
//! A compact peer is the IP address in network byte order followed by the port (6 bytes for IPv4,
//! 18 for IPv6). A compact node is the 20-byte node id followed by a compact peer.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::{CoreError, Id20};

/// Bytes in one compact IPv4 peer.
pub const COMPACT_PEER_V4_LEN: usize = 6;
/// Bytes in one compact IPv6 peer.
pub const COMPACT_PEER_V6_LEN: usize = 18;
/// Bytes in one compact IPv4 node (id + peer).
pub const COMPACT_NODE_V4_LEN: usize = 26;
/// Bytes in one compact IPv6 node (id + peer).
pub const COMPACT_NODE_V6_LEN: usize = 38;

/// A DHT node: its id and its UDP address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CompactNode {
    /// The node id.
    pub id: Id20,
    /// The node's UDP address.
    pub addr: SocketAddr,
}

/// Appends the compact form of `addr` (6 or 18 bytes) to `out`.
pub fn encode_compact_peer(addr: &SocketAddr, out: &mut Vec<u8>) {
    match addr {
        SocketAddr::V4(a) => out.extend_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => out.extend_from_slice(&a.ip().octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Appends the compact form of `node` (26 or 38 bytes) to `out`.
pub fn encode_compact_node(node: &CompactNode, out: &mut Vec<u8>) {
    out.extend_from_slice(node.id.as_bytes());
    encode_compact_peer(&node.addr, out);
}

fn check_len(what: &'static str, bytes: &[u8], unit: usize) -> Result<(), CoreError> {
    if !bytes.len().is_multiple_of(unit) {
        return Err(CoreError::BadLength {
            what,
            len: bytes.len(),
            unit,
        });
    }
    Ok(())
}

fn peer_v4(b: &[u8]) -> SocketAddr {
    let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be_bytes([b[4], b[5]])))
}

fn peer_v6(b: &[u8]) -> SocketAddr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&b[..16]);
    let port = u16::from_be_bytes([b[16], b[17]]);
    SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, 0))
}

fn node(b: &[u8], peer: fn(&[u8]) -> SocketAddr) -> CompactNode {
    let mut id = [0u8; 20];
    id.copy_from_slice(&b[..20]);
    CompactNode {
        id: Id20(id),
        addr: peer(&b[20..]),
    }
}

/// Decodes a string of compact IPv4 peers (`peers` in a tracker reply, `values` in the DHT).
pub fn decode_compact_peers_v4(bytes: &[u8]) -> Result<Vec<SocketAddr>, CoreError> {
    check_len("compact IPv4 peers", bytes, COMPACT_PEER_V4_LEN)?;
    Ok(bytes
        .chunks_exact(COMPACT_PEER_V4_LEN)
        .map(peer_v4)
        .collect())
}

/// Decodes a string of compact IPv6 peers (`peers6`, BEP 7).
pub fn decode_compact_peers_v6(bytes: &[u8]) -> Result<Vec<SocketAddr>, CoreError> {
    check_len("compact IPv6 peers", bytes, COMPACT_PEER_V6_LEN)?;
    Ok(bytes
        .chunks_exact(COMPACT_PEER_V6_LEN)
        .map(peer_v6)
        .collect())
}

/// Decodes a string of compact IPv4 nodes (`nodes` in a DHT reply).
pub fn decode_compact_nodes_v4(bytes: &[u8]) -> Result<Vec<CompactNode>, CoreError> {
    check_len("compact IPv4 nodes", bytes, COMPACT_NODE_V4_LEN)?;
    Ok(bytes
        .chunks_exact(COMPACT_NODE_V4_LEN)
        .map(|b| node(b, peer_v4))
        .collect())
}

/// Decodes a string of compact IPv6 nodes (`nodes6`, BEP 32).
pub fn decode_compact_nodes_v6(bytes: &[u8]) -> Result<Vec<CompactNode>, CoreError> {
    check_len("compact IPv6 nodes", bytes, COMPACT_NODE_V6_LEN)?;
    Ok(bytes
        .chunks_exact(COMPACT_NODE_V6_LEN)
        .map(|b| node(b, peer_v6))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn peer_v4_known_bytes() {
        let addr: SocketAddr = "127.0.0.2:6881".parse().unwrap();
        let mut out = Vec::new();
        encode_compact_peer(&addr, &mut out);
        assert_eq!(out, [127, 0, 0, 2, 0x1a, 0xe1]);
        assert_eq!(decode_compact_peers_v4(&out).unwrap(), vec![addr]);
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert!(decode_compact_peers_v4(&[1, 2, 3]).is_err());
        assert!(decode_compact_peers_v6(&[0; 17]).is_err());
        assert!(decode_compact_nodes_v4(&[0; 25]).is_err());
        assert!(decode_compact_nodes_v6(&[0; 39]).is_err());
        assert!(decode_compact_peers_v4(&[]).unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn nodes_round_trip(id in any::<[u8; 20]>(), ip4 in any::<[u8; 4]>(), ip6 in any::<[u8; 16]>(), port in any::<u16>()) {
            let n4 = CompactNode { id: Id20(id), addr: SocketAddr::from((Ipv4Addr::from(ip4), port)) };
            let n6 = CompactNode { id: Id20(id), addr: SocketAddr::from((Ipv6Addr::from(ip6), port)) };
            let mut b4 = Vec::new();
            encode_compact_node(&n4, &mut b4);
            let mut b6 = Vec::new();
            encode_compact_node(&n6, &mut b6);
            prop_assert_eq!(b4.len(), COMPACT_NODE_V4_LEN);
            prop_assert_eq!(b6.len(), COMPACT_NODE_V6_LEN);
            prop_assert_eq!(decode_compact_nodes_v4(&b4).unwrap(), vec![n4]);
            prop_assert_eq!(decode_compact_nodes_v6(&b6).unwrap(), vec![n6]);
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_compact_peers_v4(&bytes);
            let _ = decode_compact_peers_v6(&bytes);
            let _ = decode_compact_nodes_v4(&bytes);
            let _ = decode_compact_nodes_v6(&bytes);
        }
    }
}
