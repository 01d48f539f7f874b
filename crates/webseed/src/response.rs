//! Checking a web server's answer to a range request before any of its bytes are used.

use std::time::Duration;

use crate::retry::parse_retry_after;
use crate::WebSeedError;

/// The parts of an HTTP response head that matter here.
#[derive(Clone, Debug, Default)]
pub struct ResponseHead<'a> {
    /// Status code.
    pub status: u16,
    /// `Content-Range`, if any.
    pub content_range: Option<&'a str>,
    /// `Content-Length`, if any.
    pub content_length: Option<u64>,
    /// `Retry-After`, if any.
    pub retry_after: Option<&'a str>,
    /// `Location`, if any.
    pub location: Option<&'a str>,
}

/// What to do with a response's body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Accept {
    /// `206 Partial Content` for exactly the range asked: its body is the range; the connection
    /// can be reused.
    Partial,
    /// `200 OK` with the whole file, for a range that starts at 0: the first `len` bytes are the
    /// range; the connection must be closed after them (the rest of the body is not read).
    WholeFile,
    /// A redirect (`301`, `302`, `303`, `307`, `308`) to this URL.
    Redirect(String),
}

/// Checks the answer to `Range: bytes=offset-(offset+len-1)` of a file `file_len` bytes long.
/// `now_unix` dates a `Retry-After` given as an HTTP date.
pub fn check_response(
    head: &ResponseHead<'_>,
    offset: u64,
    len: u64,
    file_len: u64,
    now_unix: u64,
) -> Result<Accept, WebSeedError> {
    match head.status {
        206 => {
            let range = head
                .content_range
                .ok_or(WebSeedError::BadRange("206 without a Content-Range".into()))?;
            let (first, last, total) = parse_content_range(range)
                .ok_or_else(|| WebSeedError::BadRange(format!("unreadable {range:?}")))?;
            if first != offset || last != offset + len - 1 {
                return Err(WebSeedError::BadRange(format!(
                    "asked for bytes {offset}-{}, got {first}-{last}",
                    offset + len - 1
                )));
            }
            if total.is_some_and(|t| t != file_len) {
                return Err(WebSeedError::WrongSize {
                    expected: file_len,
                    got: total.unwrap_or_default(),
                });
            }
            if head.content_length.is_some_and(|l| l != len) {
                return Err(WebSeedError::BadRange(
                    "Content-Length does not match the range".into(),
                ));
            }
            Ok(Accept::Partial)
        }
        200 => {
            // A server that ignores Range sends the whole file. Usable when the range starts the
            // file (the rest is not read); anything else would mean downloading and throwing
            // away everything before it for every request.
            if head.content_length.is_some_and(|l| l != file_len) {
                return Err(WebSeedError::WrongSize {
                    expected: file_len,
                    got: head.content_length.unwrap_or_default(),
                });
            }
            if offset != 0 {
                return Err(WebSeedError::NoRanges);
            }
            Ok(Accept::WholeFile)
        }
        301 | 302 | 303 | 307 | 308 => match head.location {
            Some(l) if !l.is_empty() => Ok(Accept::Redirect(l.to_string())),
            _ => Err(WebSeedError::Status {
                status: head.status,
                retry_after: None,
            }),
        },
        status => Err(WebSeedError::Status {
            status,
            retry_after: head
                .retry_after
                .and_then(|v| parse_retry_after(v, now_unix))
                .map(Duration::from_secs),
        }),
    }
}

/// Parses `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`).
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.trim().split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    if last < first {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((first, last, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16) -> ResponseHead<'static> {
        ResponseHead {
            status,
            ..Default::default()
        }
    }

    #[test]
    fn partial_content_must_match_the_range() {
        let mut h = head(206);
        h.content_range = Some("bytes 100-199/1000");
        h.content_length = Some(100);
        assert_eq!(
            check_response(&h, 100, 100, 1000, 0).unwrap(),
            Accept::Partial
        );
        assert!(matches!(
            check_response(&h, 100, 50, 1000, 0),
            Err(WebSeedError::BadRange(_))
        ));
        assert!(matches!(
            check_response(&h, 100, 100, 999, 0),
            Err(WebSeedError::WrongSize { .. })
        ));
        h.content_range = Some("bytes 100-199/*");
        assert_eq!(
            check_response(&h, 100, 100, 1000, 0).unwrap(),
            Accept::Partial
        );
        h.content_range = None;
        assert!(check_response(&h, 100, 100, 1000, 0).is_err());
        h.content_range = Some("bytes 199-100/1000");
        assert!(check_response(&h, 100, 100, 1000, 0).is_err());
    }

    #[test]
    fn whole_file_only_from_the_start() {
        let mut h = head(200);
        h.content_length = Some(1000);
        assert_eq!(
            check_response(&h, 0, 100, 1000, 0).unwrap(),
            Accept::WholeFile
        );
        assert_eq!(
            check_response(&h, 10, 100, 1000, 0).unwrap_err(),
            WebSeedError::NoRanges
        );
        h.content_length = Some(5);
        assert!(matches!(
            check_response(&h, 0, 100, 1000, 0),
            Err(WebSeedError::WrongSize { .. })
        ));
    }

    #[test]
    fn errors_carry_retry_after() {
        let mut h = head(503);
        h.retry_after = Some("120");
        assert_eq!(
            check_response(&h, 0, 1, 1, 0).unwrap_err(),
            WebSeedError::Status {
                status: 503,
                retry_after: Some(Duration::from_secs(120))
            }
        );
        let mut h = head(302);
        h.location = Some("http://mirror.test/f");
        assert_eq!(
            check_response(&h, 0, 1, 1, 0).unwrap(),
            Accept::Redirect("http://mirror.test/f".into())
        );
    }
}
