//! Path sanitising: a torrent can never make shoal write outside its target folder.
//!
//! The rules are libtorrent's (`sanitize_append_path_element` and `resolve_duplicate_filenames`
//! at the commit the conformance set names), element by element:
//! - `/` and `\` are removed, so `temp/../../abc` as a name gives `temp....abc`; so are NUL and the
//!   invisible formatting characters that can disguise a name (direction marks, overrides and
//!   isolates, zero-width characters, word joiners, the BOM);
//! - control characters (C0, DEL, C1) and each invalid UTF-8 sequence become one `_`;
//! - an element that ends up empty or made only of one or two dots is dropped from a torrent
//!   name, and becomes `_` inside a file path, so a path keeps its number of elements;
//! - an element is cut once it reaches 240 bytes, keeping an extension whose dot is among the
//!   last 9 bytes;
//! - two files whose paths are equal ignoring ASCII case (or a file named like a folder) are told
//!   apart by a counter before the extension: `name.1.ext`, `name.2.ext`, …; pad files of equal
//!   size may share a name. More than [`MAX_DUPLICATE_FILENAMES`] failed tries refuse the torrent.

use std::collections::HashSet;

use crate::MetainfoError;

/// Length in bytes at which an element is cut (libtorrent: 240, then the extension).
pub const MAX_ELEMENT_LEN: usize = 240;

/// Most failed renaming tries for duplicate file names (libtorrent's `max_duplicate_filenames`).
pub const MAX_DUPLICATE_FILENAMES: usize = 500;

/// Decodes UTF-8, replacing each invalid sequence with `_` (for text such as comments).
pub fn lossy_utf8(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while !rest.is_empty() {
        let (cp, len) = parse_codepoint(rest);
        match cp.and_then(char::from_u32) {
            Some(c) => out.push(c),
            None => out.push('_'),
        }
        rest = &rest[len.min(rest.len())..];
    }
    out
}

/// One UTF-8 sequence at the start of `s` (not empty): its code point, or `None` if invalid,
/// and how many bytes it takes. Invalid sequences take the length their lead byte announces
/// (up to 5), or one byte for a byte that cannot lead, as libtorrent's `parse_utf8_codepoint`.
fn parse_codepoint(s: &[u8]) -> (Option<u32>, usize) {
    let b = s[0];
    let len = match b {
        0x00..=0x7f => return (Some(b as u32), 1),
        _ if b >> 5 == 0b110 => 2,
        _ if b >> 4 == 0b1110 => 3,
        _ if b >> 3 == 0b11110 => 4,
        _ if b >> 2 == 0b111110 => 5,
        _ => return (None, 1),
    };
    if len > s.len() {
        return (None, s.len());
    }
    if len > 4 {
        return (None, len);
    }
    let mut cp = (b as u32) & (0x7f >> len);
    for &c in &s[1..len] {
        if c & 0xc0 != 0x80 {
            return (None, len);
        }
        cp = (cp << 6) | (c as u32 & 0x3f);
    }
    let min = [0, 0, 0x80, 0x800, 0x10000][len];
    if cp < min || cp > 0x10ffff || (0xd800..=0xdfff).contains(&cp) {
        return (None, len);
    }
    (Some(cp), len)
}

/// Characters removed from names: separators, NUL, and invisible formatting characters.
fn is_removed(cp: u32) -> bool {
    matches!(cp, 0 | 0x2f | 0x5c | 0x061c | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064
        | 0x2066..=0x2069 | 0xfeff)
}

/// Characters replaced by `_`: control characters.
fn is_replaced(cp: u32) -> bool {
    cp < 0x20 || cp == 0x7f || (0x80..=0x9f).contains(&cp)
}

/// Sanitises one element. `force` is for file paths, where every element must give one: there an
/// element that would vanish becomes `_`; without it (a torrent name) `None` is returned.
pub fn sanitize_path_element(raw: &[u8], force: bool) -> Option<String> {
    if raw == b"." && !force {
        return None;
    }
    if raw.is_empty() {
        return Some("_".to_string());
    }
    let mut out = String::new();
    let mut added = 0usize;
    let mut dots = 0usize;
    let mut found_extension = false;
    let mut i = 0;
    while i < raw.len() {
        let (cp, len) = parse_codepoint(&raw[i..]);
        let c = match cp {
            Some(cp) if is_removed(cp) => {
                i += len;
                continue;
            }
            Some(cp) if !is_replaced(cp) => char::from_u32(cp),
            _ => None,
        };
        let Some(c) = c else {
            out.push('_');
            added += 1;
            i += len;
            continue;
        };
        out.push(c);
        if c == '.' {
            dots += 1;
        }
        added += len;
        if added >= MAX_ELEMENT_LEN && !found_extension {
            // Keep an extension whose dot is among the last 9 bytes and after this character.
            let floor = raw.len().saturating_sub(10).max(i);
            match (floor + 1..raw.len()).rev().find(|&j| raw[j] == b'.') {
                Some(dot) => {
                    found_extension = true;
                    i = dot;
                    continue;
                }
                None => break,
            }
        }
        i += len;
    }
    if added == dots && added <= 2 {
        return force.then(|| "_".to_string());
    }
    Some(out)
}

/// Sanitises one element of a torrent name: `None` when nothing is left of it.
pub fn sanitize_element(raw: &[u8]) -> Option<String> {
    sanitize_path_element(raw, false)
}

/// Sanitises the elements of a file path: each gives exactly one element.
pub fn sanitize_path<'a>(elements: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    elements
        .into_iter()
        .filter_map(|e| sanitize_path_element(e, true))
        .collect()
}

/// `path` split into (everything before the extension, the extension with its dot), as
/// libtorrent's `remove_extension` and `extension` on the full path: the extension is the last
/// element's, from its last dot, even at the element's start.
fn split_extension(path: &str) -> (&str, &str) {
    let last = path.rfind('/').map_or(0, |s| s + 1);
    match path[last..].rfind('.') {
        Some(dot) if last + dot > 0 => path.split_at(last + dot),
        _ => (path, ""),
    }
}

/// Gives every file a path no other file or folder has, ignoring ASCII case, as libtorrent does:
/// a file whose path is taken gets a counter before its extension. Pad files of equal size may
/// share a path. `files` holds each file's path and, for pad files, its size. Returns the new
/// paths by file index, or an error after more than [`MAX_DUPLICATE_FILENAMES`] taken candidates.
pub fn make_unique(
    files: &[(Vec<String>, Option<u64>)],
) -> Result<Vec<(usize, Vec<String>)>, MetainfoError> {
    let joined: Vec<String> = files
        .iter()
        .map(|(p, _)| p.join("/").to_ascii_lowercase())
        .collect();
    // Folders first, so that no file can take a folder's name.
    let mut taken: HashSet<String> = HashSet::new();
    let mut previous: &[String] = &[];
    for (p, _) in files {
        let folders = &p[..p.len().saturating_sub(1)];
        // Folders shared with the previous file are in already.
        let shared = folders
            .iter()
            .zip(previous)
            .take_while(|(a, b)| a == b)
            .count();
        let mut prefix = String::new();
        for (n, element) in folders.iter().enumerate() {
            if n > 0 {
                prefix.push('/');
            }
            prefix.push_str(&element.to_ascii_lowercase());
            if n >= shared {
                taken.insert(prefix.clone());
            }
        }
        previous = folders;
    }
    // The file that holds each taken path, with its pad size, to let equal pad files share.
    let mut holder: std::collections::HashMap<String, Option<u64>> = Default::default();
    let mut renamed = Vec::new();
    let mut collisions = 0usize;
    for (i, (path, pad)) in files.iter().enumerate() {
        let key = &joined[i];
        if !taken.contains(key) {
            taken.insert(key.clone());
            holder.insert(key.clone(), *pad);
            continue;
        }
        if pad.is_some() && holder.get(key).is_some_and(|h| h == pad) {
            continue;
        }
        let full = path.join("/");
        let (base, ext) = split_extension(&full);
        let mut n = 0u64;
        let new = loop {
            n += 1;
            let candidate = format!("{base}.{n}{ext}");
            let lower = candidate.to_ascii_lowercase();
            if !taken.contains(&lower) {
                taken.insert(lower.clone());
                holder.insert(lower, *pad);
                break candidate;
            }
            collisions += 1;
            if collisions > MAX_DUPLICATE_FILENAMES {
                return Err(MetainfoError::TooManyDuplicateFilenames);
            }
        };
        renamed.push((i, new.split('/').map(str::to_string).collect()));
    }
    Ok(renamed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(s: &[u8]) -> Option<String> {
        sanitize_element(s)
    }

    fn forced(s: &[u8]) -> String {
        sanitize_path_element(s, true).unwrap()
    }

    #[test]
    fn libtorrent_examples() {
        assert_eq!(el(b"temp/../../abc").unwrap(), "temp....abc");
        assert_eq!(el(b"/"), None);
        assert_eq!(el(b"//\\"), None);
        assert_eq!(forced(b"/"), "_");
        assert_eq!(el(b"\\est2").unwrap(), "est2");
        assert_eq!(el(b".."), None);
        assert_eq!(el(b"."), None);
        assert_eq!(el(b"").unwrap(), "_");
        assert_eq!(forced(b".."), "_");
        assert_eq!(forced(b"."), "_");
        assert_eq!(el(b"\xffestMB").unwrap(), "_estMB");
        assert_eq!(el(b"\0\0\xed\0\x80").unwrap(), "_");
        assert_eq!(el(b"a...b").unwrap(), "a...b");
        assert_eq!(el(b"abc...").unwrap(), "abc...");
        assert_eq!(el(b"\x08").unwrap(), "_");
        assert_eq!(el(b"\x08?filename=4").unwrap(), "_?filename=4");
        assert_eq!(el(b"filename\xc2\xa1").unwrap(), "filename\u{a1}");
        assert_eq!(el(b"filename\xc2").unwrap(), "filename_");
        assert_eq!(el(b"filename\xe2\x9f").unwrap(), "filename_");
        assert_eq!(el(b"filename\xf0\x9f\x92").unwrap(), "filename_");
        assert_eq!(
            el(b"filename\xf8\x9f\x9f\x9f\x9ffoobar").unwrap(),
            "filename_foobar"
        );
        assert_eq!(el(b"filename\xc0\xae").unwrap(), "filename_");
        assert_eq!(el(b"filename\xe0\x80\xae").unwrap(), "filename_");
        assert_eq!(el(b"filename\xf0\x80\x80\xae").unwrap(), "filename_");
        assert_eq!(el("foo\u{200e}bar".as_bytes()).unwrap(), "foobar");
        assert_eq!(el("foo\u{202b}bar".as_bytes()).unwrap(), "foobar");
        assert_eq!(el("foo\u{2067}bar\u{feff}".as_bytes()).unwrap(), "foobar");
        assert_eq!(el("a\u{85}b\x7f".as_bytes()).unwrap(), "a_b_");
        assert_eq!(sanitize_path([&b"/"[..], b"/", b"bar"]), ["_", "_", "bar"]);
        assert_eq!(
            sanitize_path([&b".."[..], b"..", b"bar"]),
            ["_", "_", "bar"]
        );
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
            for force in [false, true] {
                if let Some(s) = sanitize_path_element(raw, force) {
                    assert!(!s.contains('/') && !s.contains('\\') && !s.contains('\0'));
                    assert!(s != "." && s != ".." && !s.is_empty(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn long_names_keep_a_short_extension() {
        let name = format!("{}.23456789", "abcdefghij0123456789".repeat(15));
        let s = el(name.as_bytes()).unwrap();
        assert_eq!(s.len(), 249);
        assert!(s.ends_with(".23456789"));
        let long_ext = format!("{}.extension1", "x".repeat(300));
        assert_eq!(el(long_ext.as_bytes()).unwrap(), "x".repeat(240));
        let multibyte = format!("a{}.txt", "\u{20ac}".repeat(100));
        let s = el(multibyte.as_bytes()).unwrap();
        assert_eq!(s.len(), 241 + 4);
        assert!(s.ends_with("\u{20ac}.txt"));
    }

    fn paths(list: &[&str]) -> Vec<(Vec<String>, Option<u64>)> {
        list.iter()
            .map(|p| (p.split('/').map(str::to_string).collect(), None))
            .collect()
    }

    #[test]
    fn duplicates_are_renamed() {
        let files = paths(&[
            "t/foo", "t/foo", "t/a.txt", "t/A.TXT", "t/d", "t/d/x", "t/.h", "t/.h",
        ]);
        let renamed = make_unique(&files).unwrap();
        let get = |i: usize| {
            renamed
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, p)| p.join("/"))
        };
        assert_eq!(get(0), None);
        assert_eq!(get(1).unwrap(), "t/foo.1");
        assert_eq!(get(3).unwrap(), "t/A.1.TXT");
        assert_eq!(get(4).unwrap(), "t/d.1");
        assert_eq!(get(7).unwrap(), "t/.1.h");
    }

    #[test]
    fn equal_pad_files_share_a_name_and_renaming_is_bounded() {
        let mut files = paths(&["t/.pad/7", "t/.pad/7", "t/.pad/7"]);
        files[0].1 = Some(7);
        files[1].1 = Some(7);
        files[2].1 = Some(9);
        let renamed = make_unique(&files).unwrap();
        assert_eq!(renamed.len(), 1);
        assert_eq!(renamed[0].0, 2);
        assert!(make_unique(&paths(&["t/a"; 33])).is_ok());
        assert!(make_unique(&paths(&["t/a"; 34])).is_err());
    }
}
