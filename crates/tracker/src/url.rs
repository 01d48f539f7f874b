//! Tracker URLs: the small part of RFC 3986 that trackers use, and the scrape URL convention.
//!
//! We parse these ourselves rather than pull in a URL crate: a tracker URL is a scheme, a host,
//! an optional port, and a path with an optional query that must be kept byte for byte (private
//! trackers put passkeys there, and BEP 41 sends it to UDP trackers).

use std::fmt;

use crate::TrackerError;

/// Longest tracker URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// How to talk to a tracker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// HTTP (BEP 3).
    Http,
    /// HTTPS: parsed, but the client does not speak TLS yet.
    Https,
    /// UDP (BEP 15).
    Udp,
}

/// A parsed tracker URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TrackerUrl {
    scheme: Scheme,
    host: String,
    port: u16,
    /// Path and query, starting with `/`, exactly as given (no re-encoding).
    path_and_query: String,
}

impl TrackerUrl {
    /// Parses `http://host[:port]/path[?query]`, `https://...` or `udp://host:port[/path]`.
    /// A fragment (`#...`) is dropped.
    pub fn parse(url: &str) -> Result<TrackerUrl, TrackerError> {
        let bad = |reason| TrackerError::InvalidUrl {
            url: url.chars().take(200).collect(),
            reason,
        };
        if url.len() > MAX_URL_LEN {
            return Err(bad("longer than 2048 bytes"));
        }
        if url.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad("contains spaces or control characters"));
        }
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "udp" => Scheme::Udp,
            other => return Err(TrackerError::UnsupportedScheme(other.to_string())),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(split);
        if authority.contains('@') {
            return Err(bad("user names in tracker URLs are not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed '[' in host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match (port, scheme) {
            (Some(p), _) => p.parse::<u16>().map_err(|_| bad("bad port"))?,
            (None, Scheme::Http) => 80,
            (None, Scheme::Https) => 443,
            (None, Scheme::Udp) => return Err(bad("a udp tracker URL needs a port")),
        };
        if port == 0 {
            return Err(bad("port 0"));
        }
        let path_and_query = if tail.starts_with('/') {
            tail.to_string()
        } else {
            format!("/{tail}")
        };
        Ok(TrackerUrl {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path_and_query,
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host name or IP literal (without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (the scheme's default if the URL had none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path and query, starting with `/`, byte for byte as in the URL.
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// `host:port`, with brackets around an IPv6 literal: for `Host:` and for resolving.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The scrape URL, by the convention in the BEP 3 scrape text: if the last path component
    /// starts with `announce`, that word becomes `scrape`; otherwise the tracker cannot scrape
    /// (`None`). A UDP tracker scrapes at the same address (BEP 15).
    pub fn scrape_url(&self) -> Option<TrackerUrl> {
        if self.scheme == Scheme::Udp {
            return Some(self.clone());
        }
        let path_end = self
            .path_and_query
            .find('?')
            .unwrap_or(self.path_and_query.len());
        let path = &self.path_and_query[..path_end];
        let slash = path.rfind('/')?;
        let last = &path[slash + 1..];
        let rest = last.strip_prefix("announce")?;
        let mut out = self.clone();
        out.path_and_query = format!(
            "{}scrape{}{}",
            &path[..slash + 1],
            rest,
            &self.path_and_query[path_end..]
        );
        Some(out)
    }
}

impl fmt::Display for TrackerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Udp => "udp",
        };
        write!(f, "{scheme}://{}{}", self.authority(), self.path_and_query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(s: &str) -> Option<String> {
        TrackerUrl::parse(s)
            .unwrap()
            .scrape_url()
            .map(|u| u.to_string())
    }

    #[test]
    fn scrape_convention_examples_from_the_spec() {
        let ok = [
            (
                "http://example.com/announce",
                "http://example.com:80/scrape",
            ),
            (
                "http://example.com/x/announce",
                "http://example.com:80/x/scrape",
            ),
            (
                "http://example.com/announce.php",
                "http://example.com:80/scrape.php",
            ),
            (
                "http://example.com/announce?x2%0644",
                "http://example.com:80/scrape?x2%0644",
            ),
            // The '/' is in the query, not the path (BEP 48 looks in the path only).
            (
                "http://example.com/announce?x=2/4",
                "http://example.com:80/scrape?x=2/4",
            ),
        ];
        for (a, s) in ok {
            assert_eq!(scrape(a).as_deref(), Some(s), "{a}");
        }
        for a in ["http://example.com/a", "http://example.com/x%064announce"] {
            assert_eq!(scrape(a), None, "{a}");
        }
    }

    #[test]
    fn parses_hosts_ports_and_paths() {
        let u = TrackerUrl::parse("udp://[::1]:6969").unwrap();
        assert_eq!((u.host(), u.port(), u.path_and_query()), ("::1", 6969, "/"));
        assert_eq!(u.authority(), "[::1]:6969");
        let u = TrackerUrl::parse("http://Tracker.Example:8080/announce?pk=AbC#frag").unwrap();
        assert_eq!(u.host(), "tracker.example");
        assert_eq!(u.path_and_query(), "/announce?pk=AbC");
        let u = TrackerUrl::parse("http://example.com?x=1").unwrap();
        assert_eq!(u.path_and_query(), "/?x=1");
        for bad in [
            "udp://example.com/announce",
            "example.com",
            "http://:80/",
            "http://h:0/",
            "http://a b/",
        ] {
            assert!(TrackerUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            TrackerUrl::parse("wss://x/announce"),
            Err(TrackerError::UnsupportedScheme(_))
        ));
    }
}
