//! Magnet URIs (BEP 9), with `x.pe` peer addresses, BEP 53 `so` file selection, and the v2
//! info-hash of BEP 52 (`xt=urn:btmh:1220…`, a SHA-256 multihash); a hybrid link carries both.

use std::fmt::Write as _;

use shoal_core::{Id20, Id32};

use crate::MetainfoError;

/// Longest magnet URI accepted.
const MAX_MAGNET_LEN: usize = 64 * 1024;

/// A parsed magnet link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Magnet {
    /// The 20-byte info-hash the swarm knows: the v1 one from `xt=urn:btih:` (hex or base32), or
    /// for a v2-only link the v2 one truncated to 20 bytes (BEP 52).
    pub info_hash: Id20,
    /// The v2 info-hash from `xt=urn:btmh:1220<64 hex digits>`.
    pub info_hash_v2: Option<Id32>,
    /// Whether the link has a v1 `btih` (false for a v2-only link).
    pub v1: bool,
    /// `dn`: display name.
    pub display_name: Option<String>,
    /// `tr`: tracker URLs, each its own tier (as libtorrent does).
    pub trackers: Vec<String>,
    /// `x.pe`: peer addresses, `host:port`.
    pub peers: Vec<String>,
    /// `so` (BEP 53): the indices of the files to download; `None` means all.
    pub select_only: Option<Vec<u32>>,
    /// `ws`: web seed URLs (BEP 19), as `url-list` in a .torrent file.
    pub web_seeds: Vec<String>,
}

/// Decodes `%XX` escapes and `+` (a space, in query strings) into raw bytes; `None` for a
/// malformed escape. Shared by magnet links and tracker query strings.
pub fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                let text = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

fn decode_param(s: &str) -> Result<String, MetainfoError> {
    let bytes = percent_decode(s.as_bytes())
        .ok_or_else(|| MetainfoError::Magnet(format!("bad percent-escape in {s:?}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Parses a BEP 53 file selection (`so=`, `--files`): comma-separated indices and inclusive
/// ranges, e.g. `0,2,4-6`; sorted and de-duplicated.
pub fn parse_select_only(s: &str) -> Result<Vec<u32>, MetainfoError> {
    const MAX_SELECTED: u64 = 1 << 20;
    let bad = || MetainfoError::Magnet(format!("bad 'so' file selection {s:?}"));
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: u32 = a.trim().parse().map_err(|_| bad())?;
        let b: u32 = b.trim().parse().map_err(|_| bad())?;
        if a > b || out.len() as u64 + (b - a) as u64 >= MAX_SELECTED {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

impl Magnet {
    /// A magnet for the v1 `info_hash` with nothing else.
    pub fn new(info_hash: Id20) -> Self {
        Magnet {
            info_hash,
            info_hash_v2: None,
            v1: true,
            display_name: None,
            trackers: Vec::new(),
            peers: Vec::new(),
            select_only: None,
            web_seeds: Vec::new(),
        }
    }

    /// The v1 info-hash, if the link has one.
    pub fn info_hash_v1(&self) -> Option<Id20> {
        self.v1.then_some(self.info_hash)
    }

    /// True for a link with only a v2 info-hash.
    pub fn is_v2_only(&self) -> bool {
        !self.v1
    }

    /// Parses `magnet:?xt=urn:btih:…&xt=urn:btmh:1220…&dn=…&tr=…&x.pe=…&so=…&ws=…` (at least one
    /// of the two `xt`). Unknown parameters are ignored.
    pub fn parse(uri: &str) -> Result<Magnet, MetainfoError> {
        if uri.len() > MAX_MAGNET_LEN {
            return Err(MetainfoError::Magnet("longer than 64 KiB".into()));
        }
        let query = uri
            .strip_prefix("magnet:?")
            .ok_or_else(|| MetainfoError::Magnet("does not start with 'magnet:?'".into()))?;
        let mut magnet = Magnet::new(Id20::ZERO);
        magnet.v1 = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode_param(value)?;
            // Parameters may carry a numeric suffix: tr.1, xt.1 (BEP 9 allows several).
            let base = key.split('.').next().unwrap_or(key);
            match (key, base) {
                ("x.pe", _) => magnet.peers.push(value),
                (_, "xt") => {
                    if let Some(h) = strip_prefix_ignore_case(&value, "urn:btih:") {
                        magnet.info_hash = h
                            .parse()
                            .map_err(|_| MetainfoError::Magnet(format!("bad info-hash {h:?}")))?;
                        magnet.v1 = true;
                    } else if let Some(h) = strip_prefix_ignore_case(&value, "urn:btmh:") {
                        magnet.info_hash_v2 = Some(parse_btmh(h)?);
                    }
                }
                (_, "dn") => magnet.display_name = Some(value),
                (_, "tr") if !value.is_empty() && !magnet.trackers.contains(&value) => {
                    magnet.trackers.push(value)
                }
                (_, "so") => magnet.select_only = Some(parse_select_only(&value)?),
                (_, "ws") if !value.is_empty() && !magnet.web_seeds.contains(&value) => {
                    magnet.web_seeds.push(value)
                }
                _ => {}
            }
        }
        match (magnet.v1, magnet.info_hash_v2) {
            (true, _) => {}
            (false, Some(v2)) => magnet.info_hash = v2.truncated(),
            (false, None) => {
                return Err(MetainfoError::Magnet(
                    "no 'xt=urn:btih:' or 'xt=urn:btmh:' info-hash".into(),
                ))
            }
        }
        Ok(magnet)
    }
}

/// `s` without `prefix`, compared ignoring ASCII case (`urn:BTIH:` appears in the wild).
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// A `btmh` multihash: `12` (SHA2-256), `20` (32 bytes), then the digest, all in hex; libtorrent
/// accepts nothing else.
fn parse_btmh(h: &str) -> Result<Id32, MetainfoError> {
    let bad = || {
        MetainfoError::Magnet(format!(
            "bad v2 info-hash {h:?} (expected 1220 and 64 hex digits)"
        ))
    };
    let digest = strip_prefix_ignore_case(h, "1220").ok_or_else(bad)?;
    digest.parse().map_err(|_| bad())
}

impl std::fmt::Display for Magnet {
    /// Produces `magnet:?xt=urn:btih:<hex>&xt=urn:btmh:1220<hex>` (each hash the link has) with
    /// `dn`, `tr`, `ws`, `x.pe` and `so` as present.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut sep = '?';
        if self.v1 {
            write!(f, "magnet:?xt=urn:btih:{}", self.info_hash.to_hex())?;
            sep = '&';
        } else {
            f.write_str("magnet:")?;
        }
        if let Some(v2) = &self.info_hash_v2 {
            write!(f, "{sep}xt=urn:btmh:1220{}", v2.to_hex())?;
        }
        if let Some(dn) = &self.display_name {
            write!(f, "&dn={}", percent_encode(dn.as_bytes()))?;
        }
        for tr in &self.trackers {
            write!(f, "&tr={}", percent_encode(tr.as_bytes()))?;
        }
        for ws in &self.web_seeds {
            write!(f, "&ws={}", percent_encode(ws.as_bytes()))?;
        }
        for pe in &self.peers {
            write!(f, "&x.pe={}", percent_encode(pe.as_bytes()))?;
        }
        if let Some(so) = &self.select_only {
            let list: Vec<String> = so.iter().map(u32::to_string).collect();
            write!(f, "&so={}", list.join(","))?;
        }
        Ok(())
    }
}

impl crate::Metainfo {
    /// The magnet link of this torrent: its info-hashes (v1, v2 or both), name, every tracker and
    /// web seed.
    pub fn magnet(&self) -> Magnet {
        Magnet {
            info_hash: self.info_hash,
            info_hash_v2: self.info_hash_v2,
            v1: self.version().has_v1(),
            display_name: Some(self.info.name.clone()),
            trackers: self.trackers.iter().flatten().cloned().collect(),
            peers: Vec::new(),
            select_only: None,
            web_seeds: self.url_list.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_hex_and_base32() {
        let hex = "d460b8af98f716752723c9fa5b0b57995ee43085";
        let id = Id20::from_hex(hex).unwrap();
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{}&dn=My+File%20x&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce&tr=udp://127.0.0.1:6969&x.pe=127.0.0.2:6881&so=0,2,4-6",
            hex.to_uppercase()
        ))
        .unwrap();
        assert_eq!(m.info_hash, id);
        assert_eq!(m.display_name.as_deref(), Some("My File x"));
        assert!(m.web_seeds.is_empty());
        assert_eq!(
            m.trackers,
            ["http://127.0.0.1:6969/announce", "udp://127.0.0.1:6969"]
        );
        assert_eq!(m.peers, ["127.0.0.2:6881"]);
        assert_eq!(m.select_only, Some(vec![0, 2, 4, 5, 6]));
        let b32 = Magnet::parse(&format!("magnet:?xt=urn:btih:{}", id.to_base32())).unwrap();
        assert_eq!(b32.info_hash, id);
    }

    #[test]
    fn web_seeds_from_ws() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{}&ws=http%3A%2F%2F127.0.0.9%3A8000%2Fd%2F&ws=https://m.test/f&ws=https://m.test/f",
            "a".repeat(40)
        ))
        .unwrap();
        assert_eq!(
            m.web_seeds,
            vec!["http://127.0.0.9:8000/d/", "https://m.test/f"]
        );
        assert!(m
            .to_string()
            .contains("&ws=http%3A%2F%2F127.0.0.9%3A8000%2Fd%2F"));
    }

    #[test]
    fn v2_and_hybrid_links() {
        let v1 = "d460b8af98f716752723c9fa5b0b57995ee43085";
        let v2 = "518fbaf39b37020c896e8768a967da6d76bbd5ef7a02c761021b65a72c6cfa11";
        // v2-only: the swarm knows it by the truncated SHA-256.
        let m = Magnet::parse(&format!("magnet:?xt=urn:btmh:1220{v2}&dn=x")).unwrap();
        assert!(m.is_v2_only());
        assert_eq!(m.info_hash_v2.unwrap().to_hex(), v2);
        assert_eq!(m.info_hash.to_hex(), &v2[..40]);
        assert_eq!(m.info_hash_v1(), None);
        assert_eq!(m.to_string(), format!("magnet:?xt=urn:btmh:1220{v2}&dn=x"));
        // Hybrid, in either order and any case: the v1 hash is the swarm's.
        for link in [
            format!("magnet:?xt=urn:btih:{v1}&xt=urn:btmh:1220{v2}"),
            format!(
                "magnet:?xt=urn:btmh:1220{}&xt=urn:btih:{v1}",
                v2.to_uppercase()
            ),
            format!("magnet:?xt.1=urn:BTMH:1220{v2}&xt.2=URN:btih:{v1}"),
        ] {
            let m = Magnet::parse(&link).unwrap();
            assert!(!m.is_v2_only(), "{link}");
            assert_eq!(m.info_hash.to_hex(), v1);
            assert_eq!(m.info_hash_v1().map(|h| h.to_hex()).as_deref(), Some(v1));
            assert_eq!(m.info_hash_v2.unwrap().to_hex(), v2);
            assert_eq!(
                m.to_string(),
                format!("magnet:?xt=urn:btih:{v1}&xt=urn:btmh:1220{v2}")
            );
        }
        // Only SHA2-256 multihashes of 32 bytes, as libtorrent.
        for bad in [
            format!("magnet:?xt=urn:btmh:1120{v2}"),
            format!("magnet:?xt=urn:btmh:1220{}", &v2[..62]),
            format!("magnet:?xt=urn:btmh:{v2}"),
            format!("magnet:?xt=urn:btmh:1220{v2}00"),
            format!("magnet:?xt=urn:btih:{v1}&xt=urn:btmh:1220zz"),
        ] {
            assert!(Magnet::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_links() {
        assert!(Magnet::parse("http://x").is_err());
        assert!(Magnet::parse("magnet:?dn=x").is_err());
        assert!(Magnet::parse("magnet:?xt=urn:btih:abc").is_err());
        assert!(Magnet::parse("magnet:?xt=urn:btih:%zz").is_err());
        assert!(Magnet::parse(&format!("magnet:?xt=urn:btih:{}&so=5-2", "a".repeat(40))).is_err());
        assert!(Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{}&so=0-4294967295",
            "a".repeat(40)
        ))
        .is_err());
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(
            hash in any::<[u8; 20]>(),
            hash_v2 in any::<[u8; 32]>(),
            kind in 0..3u8,
            dn in proptest::option::of(".{0,30}"),
            trackers in proptest::collection::vec("[a-z]{1,10}://[ -~]{0,20}", 0..3),
            so in proptest::option::of(proptest::collection::btree_set(0u32..100, 0..5)),
        ) {
            let mut trackers = trackers;
            trackers.dedup();
            let m = Magnet {
                // v1 only, v2 only, hybrid.
                info_hash: if kind == 1 { Id32(hash_v2).truncated() } else { Id20(hash) },
                info_hash_v2: (kind > 0).then_some(Id32(hash_v2)),
                v1: kind != 1,
                display_name: dn,
                trackers: trackers.into_iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect(),
                peers: vec!["127.0.0.2:1".into()],
                select_only: so.map(|s| s.into_iter().collect()),
                web_seeds: vec!["http://127.0.0.9:8000/d/".into()],
            };
            prop_assert_eq!(Magnet::parse(&m.to_string()).unwrap(), m);
        }

        #[test]
        fn never_panics(s in "magnet:\\?.{0,100}") {
            let _ = Magnet::parse(&s);
        }
    }
}
