//! Path sanitising: a torrent can never make shoal write outside its target folder.
//!
//! The rules follow libtorrent 2.0 where it has them (its tests name the expected results):
//! - path separators (`/`, `\`) inside an element are removed, so `temp/../../abc` as a name gives
//!   `temp....abc`; an element made only of removed characters becomes `_`;
//! - empty, `.` and `..` elements are dropped;
//! - bytes that are not valid UTF-8 become `_`; NUL and Unicode direction overrides are removed;
//! - an element longer than 240 bytes is truncated, keeping its extension;
//! - two files that end up with the same path are renamed `name.1`, `name.2`, ….

use std::collections::HashSet;

/// Longest element kept, in bytes (libtorrent truncates to 240 and keeps the extension).
pub const MAX_ELEMENT_LEN: usize = 240;

/// Unicode characters that reorder text on screen and can disguise a file's real extension.
const DIRECTION_OVERRIDES: &[char] = &[
    '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}',
];

/// Decodes UTF-8, replacing each invalid sequence with `_` (as libtorrent does).
pub fn lossy_utf8(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // SAFETY-free: the prefix is valid UTF-8 by the error's own report.
                out.push_str(std::str::from_utf8(&rest[..valid]).unwrap_or_default());
                out.push('_');
                let skip = e.error_len().unwrap_or(rest.len() - valid);
                rest = &rest[valid + skip..];
            }
        }
    }
}

/// Sanitises one path element. `None` means the element is dropped (empty, `.` or `..`).
pub fn sanitize_element(raw: &[u8]) -> Option<String> {
    if raw.is_empty() || raw == b"." || raw == b".." {
        return None;
    }
    let decoded = lossy_utf8(raw);
    let mut kept: String = decoded
        .chars()
        .filter(|c| !matches!(c, '/' | '\\' | '\0') && !DIRECTION_OVERRIDES.contains(c))
        .collect();
    if kept.is_empty() {
        kept.push('_');
    }
    // After removing separators, a lone "." or ".." would still walk the tree.
    if kept == "." || kept == ".." {
        kept = "_".to_string();
    }
    Some(truncate_element(kept))
}

fn truncate_element(s: String) -> String {
    if s.len() <= MAX_ELEMENT_LEN {
        return s;
    }
    let (stem, ext) = match s.rfind('.') {
        Some(dot) if dot > 0 && s.len() - dot <= 20 => s.split_at(dot),
        _ => (s.as_str(), ""),
    };
    let mut cut = MAX_ELEMENT_LEN.min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &stem[..cut], ext)
}

/// Sanitises a list of elements; a path with no elements left becomes `_`.
pub fn sanitize_path<'a>(elements: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    let mut out: Vec<String> = elements.into_iter().filter_map(sanitize_element).collect();
    if out.is_empty() {
        out.push("_".to_string());
    }
    out
}

/// Renames files whose path equals an earlier file's path, or a folder that other files live in,
/// by adding `.1`, `.2`, … before the extension of the last element.
pub fn make_unique(paths: &mut [Vec<String>]) {
    let dirs: HashSet<Vec<String>> = paths
        .iter()
        .flat_map(|p| (1..p.len()).map(move |n| p[..n].to_vec()))
        .collect();
    let mut seen: HashSet<Vec<String>> = HashSet::with_capacity(paths.len());
    for path in paths.iter_mut() {
        if !seen.contains(path) && !dirs.contains(path) {
            seen.insert(path.clone());
            continue;
        }
        let last = path.pop().unwrap_or_default();
        let (stem, ext) = match last.rfind('.') {
            Some(dot) if dot > 0 => last.split_at(dot),
            _ => (last.as_str(), ""),
        };
        // Bounded: at most paths.len() names are taken, so one of the first len+1 is free.
        for n in 1..=seen.len() + dirs.len() + 1 {
            let mut candidate = path.clone();
            candidate.push(format!("{stem}.{n}{ext}"));
            if !seen.contains(&candidate) && !dirs.contains(&candidate) {
                *path = candidate;
                break;
            }
        }
        seen.insert(path.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(s: &[u8]) -> Option<String> {
        sanitize_element(s)
    }

    #[test]
    fn libtorrent_examples() {
        assert_eq!(el(b"temp/../../abc").unwrap(), "temp....abc");
        assert_eq!(el(b"/").unwrap(), "_");
        assert_eq!(el(b"\\").unwrap(), "_");
        assert_eq!(el(b"\\est2").unwrap(), "est2");
        assert_eq!(el(b".."), None);
        assert_eq!(el(b"."), None);
        assert_eq!(el(b""), None);
        assert_eq!(el(b"\xffestMB").unwrap(), "_estMB");
        assert_eq!(sanitize_path([&b"/"[..], b"/", b"bar"]), ["_", "_", "bar"]);
        assert_eq!(sanitize_path([&b".."[..], b"..", b"bar"]), ["bar"]);
        assert_eq!(sanitize_path([&b""[..]]), ["_"]);
    }

    #[test]
    fn separators_dots_and_nul_never_survive() {
        for raw in [
            &b"a/b"[..],
            b"../x",
            b"./",
            b"a\0b",
            b"..\\..",
            b"/.",
            b"./.",
        ] {
            if let Some(s) = el(raw) {
                assert!(!s.contains('/') && !s.contains('\\') && !s.contains('\0'));
                assert!(s != "." && s != ".." && !s.is_empty(), "{s:?}");
            }
        }
    }

    #[test]
    fn long_names_keep_extension() {
        let name = format!("{}.23456789", "abcdefghij0123456789".repeat(15));
        let s = el(name.as_bytes()).unwrap();
        assert_eq!(s.len(), 249);
        assert!(s.ends_with(".23456789"));
        let multibyte = "é".repeat(200);
        assert!(el(multibyte.as_bytes()).unwrap().len() <= MAX_ELEMENT_LEN);
    }

    #[test]
    fn duplicates_are_renamed() {
        let mut paths = vec![
            vec!["t".to_string(), "foo".to_string()],
            vec!["t".to_string(), "foo".to_string()],
            vec!["t".to_string(), "a.txt".to_string()],
            vec!["t".to_string(), "a.txt".to_string()],
            vec!["t".to_string(), "d".to_string()],
            vec!["t".to_string(), "d".to_string(), "x".to_string()],
        ];
        make_unique(&mut paths);
        assert_eq!(paths[1], ["t", "foo.1"]);
        assert_eq!(paths[3], ["t", "a.1.txt"]);
        assert_eq!(paths[4], ["t", "d.1"]);
        let set: HashSet<_> = paths.iter().collect();
        assert_eq!(set.len(), paths.len());
    }
}
