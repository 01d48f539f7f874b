//! Names and paths come from other people's metadata: anything may be in them. Before they are
//! stored they lose control characters and are cut to a bounded length; search words become an
//! FTS5 query of quoted terms, so no user input is ever read as FTS5 syntax.

/// Longest name stored, in bytes (a real torrent name is rarely over 200).
pub const MAX_NAME: usize = 1024;
/// Longest file path stored, in bytes.
pub const MAX_PATH: usize = 1024;
/// Most search words used.
pub const MAX_WORDS: usize = 16;

/// `s` without control characters (each becomes a space, runs of them one space), trimmed,
/// and cut to at most `max` bytes on a character boundary.
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    let mut space = false;
    for c in s.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' {
            if space || out.is_empty() {
                continue;
            }
            space = true;
        } else {
            space = false;
        }
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out.truncate(out.trim_end().len());
    out
}

/// An FTS5 query that matches rows holding every word of `words` (as a prefix-free term each;
/// a word with punctuation inside, such as `24.04`, becomes a phrase). `None` when there is no
/// word to look for.
pub fn fts_query(words: &str) -> Option<String> {
    let terms: Vec<String> = words
        .split_whitespace()
        .map(|w| w.replace('"', " "))
        .map(|w| w.trim().to_string())
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .take(MAX_WORDS)
        .map(|w| format!("\"{}\"", clean(&w, 128)))
        .collect();
    if terms.is_empty() {
        None
    } else {
        Some(terms.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cleaning() {
        assert_eq!(clean("a\u{0}b\n\n\tc\u{7f} ", 100), "a b c");
        assert_eq!(clean("\u{1b}[31mred", 100), "[31mred");
        assert_eq!(clean("ééé", 5), "éé");
        assert_eq!(clean(&"x".repeat(100_000), MAX_NAME).len(), MAX_NAME);
    }

    #[test]
    fn queries() {
        assert_eq!(
            fts_query("ubuntu 24.04"),
            Some("\"ubuntu\" \"24.04\"".into())
        );
        assert_eq!(
            fts_query("a\"b OR NEAR("),
            Some("\"a b\" \"OR\" \"NEAR(\"".into())
        );
        assert_eq!(fts_query("  - \" "), None);
    }

    proptest! {
        #[test]
        fn clean_output_is_bounded_and_free_of_controls(s in ".{0,300}", max in 0usize..200) {
            let c = clean(&s, max);
            prop_assert!(c.len() <= max);
            prop_assert!(!c.chars().any(char::is_control));
        }
    }
}
