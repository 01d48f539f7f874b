//! Magnet URIs (BEP 9), with `x.pe` peer addresses and BEP 53 `so` file selection.

use std::fmt::Write as _;

use shoal_core::Id20;

use crate::MetainfoError;

/// Longest magnet URI accepted.
const MAX_MAGNET_LEN: usize = 64 * 1024;

/// A parsed magnet link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Magnet {
    /// The v1 info-hash from `xt=urn:btih:` (hex or base32).
    pub info_hash: Id20,
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
    /// A magnet for `info_hash` with nothing else.
    pub fn new(info_hash: Id20) -> Self {
        Magnet {
            info_hash,
            display_name: None,
            trackers: Vec::new(),
            peers: Vec::new(),
            select_only: None,
            web_seeds: Vec::new(),
        }
    }

    /// Parses `magnet:?xt=urn:btih:…&dn=…&tr=…&x.pe=…&so=…&ws=…`. Unknown parameters are ignored.
    pub fn parse(uri: &str) -> Result<Magnet, MetainfoError> {
        if uri.len() > MAX_MAGNET_LEN {
            return Err(MetainfoError::Magnet("longer than 64 KiB".into()));
        }
        let query = uri
            .strip_prefix("magnet:?")
            .ok_or_else(|| MetainfoError::Magnet("does not start with 'magnet:?'".into()))?;
        let mut magnet = Magnet::new(Id20::ZERO);
        let mut have_hash = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode_param(value)?;
            // Parameters may carry a numeric suffix: tr.1, xt.1 (BEP 9 allows several).
            let base = key.split('.').next().unwrap_or(key);
            match (key, base) {
                ("x.pe", _) => magnet.peers.push(value),
                (_, "xt") => {
                    if let Some(h) = value.strip_prefix("urn:btih:") {
                        magnet.info_hash = h
                            .parse()
                            .map_err(|_| MetainfoError::Magnet(format!("bad info-hash {h:?}")))?;
                        have_hash = true;
                    }
                    // urn:btmh: (v2) is ignored: shoal speaks v1.
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
        if !have_hash {
            return Err(MetainfoError::Magnet(
                "no 'xt=urn:btih:' info-hash (v2-only magnets are not supported)".into(),
            ));
        }
        Ok(magnet)
    }
}

impl std::fmt::Display for Magnet {
    /// Produces `magnet:?xt=urn:btih:<hex>` with `dn`, `tr`, `ws`, `x.pe` and `so` as present.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "magnet:?xt=urn:btih:{}", self.info_hash.to_hex())?;
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
    /// The magnet link of this torrent: info-hash, name, every tracker and web seed.
    pub fn magnet(&self) -> Magnet {
        Magnet {
            info_hash: self.info_hash,
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
            dn in proptest::option::of(".{0,30}"),
            trackers in proptest::collection::vec("[a-z]{1,10}://[ -~]{0,20}", 0..3),
            so in proptest::option::of(proptest::collection::btree_set(0u32..100, 0..5)),
        ) {
            let mut trackers = trackers;
            trackers.dedup();
            let m = Magnet {
                info_hash: Id20(hash),
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
