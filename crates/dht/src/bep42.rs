//! BEP 42 (DHT security extension): node ids tied to the node's external IP.
//!
//! The top 21 bits of a node id must equal the top 21 bits of
//! `crc32c((ip & mask) | (r << 29))` (IPv4; IPv6 uses the first 8 bytes of the address, a wider
//! mask and `r << 61`), where `r` is the low 3 bits of the id's last byte. Nodes on local networks
//! are exempt (BEP 42: "local IPs ... are exempt from this requirement").

use std::net::IpAddr;

use shoal_core::Id20;

const V4_MASK: [u8; 4] = [0x03, 0x0f, 0x3f, 0xff];
const V6_MASK: [u8; 8] = [0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff];

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bitwise: only a few bytes are hashed
/// per call, so no table is needed.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn ip_crc(ip: IpAddr, r: u8) -> u32 {
    let r = r & 7;
    match ip {
        IpAddr::V4(v4) => {
            let mut b = v4.octets();
            for (x, m) in b.iter_mut().zip(V4_MASK) {
                *x &= m;
            }
            b[0] |= r << 5;
            crc32c(&b)
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let mut b = [0u8; 8];
            for i in 0..8 {
                b[i] = o[i] & V6_MASK[i];
            }
            b[0] |= r << 5;
            crc32c(&b)
        }
    }
}

/// A BEP 42 node id for `ip`. `rand` supplies the random parts: its byte 19 is the `rand` of the
/// BEP (its low 3 bits select `r`), bytes 2 (low 3 bits) to 18 stay random.
pub fn node_id_for_ip(ip: IpAddr, rand: [u8; 20]) -> Id20 {
    let crc = ip_crc(ip, rand[19]);
    let mut id = rand;
    id[0] = (crc >> 24) as u8;
    id[1] = (crc >> 16) as u8;
    id[2] = ((crc >> 8) as u8 & 0xf8) | (rand[2] & 0x07);
    Id20(id)
}

/// True if `id` is a valid BEP 42 id for `ip` (top 21 bits match).
pub fn is_valid_id(id: &Id20, ip: IpAddr) -> bool {
    let crc = ip_crc(ip, id.0[19]);
    id.0[0] == (crc >> 24) as u8
        && id.0[1] == (crc >> 16) as u8
        && (id.0[2] & 0xf8) == ((crc >> 8) as u8 & 0xf8)
}

/// Addresses BEP 42 exempts: loopback, private, link-local (and their IPv6 counterparts).
pub fn is_exempt(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            v6.is_loopback() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

/// True if `id` is acceptable for a node at `ip`: valid, or exempt because `ip` is local.
pub fn check(id: &Id20, ip: IpAddr) -> bool {
    is_exempt(ip) || is_valid_id(id, ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value() {
        // The standard check value of CRC-32C over "123456789".
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn bep42_vectors() {
        let data = include_str!("../tests/data/bep42_vectors.tsv");
        let mut rows = 0;
        for line in data.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let cols: Vec<&str> = line.split('\t').collect();
            let ip: IpAddr = cols[0].parse().unwrap();
            let rand: u8 = cols[1].parse().unwrap();
            let example = Id20::from_hex(cols[2]).unwrap();
            assert!(is_valid_id(&example, ip), "{line}");
            assert_eq!(example.0[19], rand);
            // An id we make from the example's random parts keeps the BEP's prefix.
            let made = node_id_for_ip(ip, example.0);
            assert_eq!(made.to_hex()[..6], cols[3][..6], "{line}");
            assert_eq!(made, example);
            // Another address does not validate it.
            let other: IpAddr = "1.2.3.4".parse().unwrap();
            assert!(!is_valid_id(&example, other) || other == ip);
            rows += 1;
        }
        assert_eq!(rows, 5);
    }

    #[test]
    fn exemptions() {
        assert!(is_exempt("127.0.0.5".parse().unwrap()));
        assert!(is_exempt("192.168.1.1".parse().unwrap()));
        assert!(is_exempt("::1".parse().unwrap()));
        assert!(!is_exempt("8.8.8.8".parse().unwrap()));
        assert!(check(&Id20::ZERO, "10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn ipv6_ids_validate() {
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        for r in 0..8u8 {
            let mut rand = [0x5au8; 20];
            rand[19] = r;
            let id = node_id_for_ip(ip, rand);
            assert!(is_valid_id(&id, ip));
        }
    }
}
