//! The URL of each file of a torrent on a web seed (BEP 19).
//!
//! BEP 19: a `url-list` entry ending in `/` is a folder to which the torrent's `name` (and, for a
//! multi-file torrent, each file's `path`) is added; for a single-file torrent an entry without
//! the slash is the file itself. A multi-file entry without the slash is taken as the folder
//! anyway (libtorrent does the same: the file list cannot be anywhere else).

use shoal_metainfo::{percent_encode, Info};
use shoal_tracker::url::{Scheme, TrackerUrl};

use crate::WebSeedError;

/// A web seed: its server and the request target of every file of the torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSeedUrl {
    /// The `url-list` entry as given.
    pub original: String,
    /// The server (scheme, host, port); its path is the entry's.
    pub server: TrackerUrl,
    /// Per file of the torrent (same index as `Info::files`): the path and query to GET.
    pub targets: Vec<String>,
}

impl WebSeedUrl {
    /// Parses `url` for `info`'s files. Only `http://` and `https://` are spoken (BEP 19 allows
    /// FTP too; a client "should ignore any protocols it does not know").
    pub fn new(url: &str, info: &Info) -> Result<WebSeedUrl, WebSeedError> {
        let server = TrackerUrl::parse(url).map_err(|e| WebSeedError::Url(e.to_string()))?;
        if !matches!(server.scheme(), Scheme::Http | Scheme::Https) {
            return Err(WebSeedError::Url(format!(
                "{}: only http:// and https:// web seeds are supported",
                truncate(url)
            )));
        }
        let (path, query) = match server.path_and_query().split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (server.path_and_query(), None),
        };
        let targets = info
            .files
            .iter()
            .map(|f| {
                let mut target = path.to_string();
                if info.multi_file {
                    // The file's path starts with the torrent's name (see `FileEntry::path`).
                    for c in &f.path {
                        if !target.ends_with('/') {
                            target.push('/');
                        }
                        target.push_str(&percent_encode(c.as_bytes()));
                    }
                } else if target.ends_with('/') {
                    target.push_str(&percent_encode(info.name.as_bytes()));
                }
                if let Some(q) = query {
                    target.push('?');
                    target.push_str(q);
                }
                target
            })
            .collect();
        Ok(WebSeedUrl {
            original: url.to_string(),
            server,
            targets,
        })
    }

    /// The full URL of file `file`, for messages.
    pub fn file_url(&self, file: usize) -> String {
        let scheme = match self.server.scheme() {
            Scheme::Https => "https",
            _ => "http",
        };
        let target = self.targets.get(file).map(String::as_str).unwrap_or("/");
        format!("{scheme}://{}{target}", self.server.authority())
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::Id20;
    use shoal_metainfo::{FileAttr, FileEntry};

    fn info(multi: bool, files: &[(&[&str], u64)]) -> Info {
        let mut offset = 0;
        let files = files
            .iter()
            .map(|(p, len)| {
                let e = FileEntry {
                    path: p.iter().map(|s| s.to_string()).collect(),
                    length: *len,
                    offset,
                    attr: FileAttr::default(),
                    symlink_target: None,
                };
                offset += len;
                e
            })
            .collect();
        Info {
            name: "my files".into(),
            piece_length: 16384,
            pieces: vec![Id20::default(); offset.div_ceil(16384) as usize],
            files,
            total_length: offset,
            private: false,
            multi_file: multi,
            v2: None,
        }
    }

    #[test]
    fn single_file_entry_is_the_file_unless_it_is_a_folder() {
        let i = info(false, &[(&["my files"], 10)]);
        let w = WebSeedUrl::new("http://127.0.0.9:8080/dl/f.bin", &i).unwrap();
        assert_eq!(w.targets, vec!["/dl/f.bin"]);
        let w = WebSeedUrl::new("http://127.0.0.9:8080/dl/", &i).unwrap();
        assert_eq!(w.targets, vec!["/dl/my%20files"]);
        assert_eq!(w.file_url(0), "http://127.0.0.9:8080/dl/my%20files");
    }

    #[test]
    fn multi_file_adds_name_and_escaped_path() {
        let i = info(
            true,
            &[
                (&["my files", "a", "b c.txt"], 5),
                (&["my files", "ü#?.bin"], 7),
            ],
        );
        for base in ["https://example.test/pub/", "https://example.test/pub"] {
            let w = WebSeedUrl::new(base, &i).unwrap();
            assert_eq!(
                w.targets,
                vec![
                    "/pub/my%20files/a/b%20c.txt",
                    "/pub/my%20files/%C3%BC%23%3F.bin"
                ]
            );
        }
    }

    #[test]
    fn query_stays_after_the_path() {
        let i = info(false, &[(&["my files"], 10)]);
        let w = WebSeedUrl::new("http://h/d/?key=1", &i).unwrap();
        assert_eq!(w.targets, vec!["/d/my%20files?key=1"]);
    }

    #[test]
    fn other_schemes_are_refused() {
        let i = info(false, &[(&["x"], 1)]);
        assert!(WebSeedUrl::new("ftp://h/x", &i).is_err());
        assert!(WebSeedUrl::new("udp://h:1/x", &i).is_err());
        assert!(WebSeedUrl::new("not a url", &i).is_err());
    }
}
