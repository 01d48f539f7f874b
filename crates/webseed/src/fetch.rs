//! The tokio side of a web seed: range requests over one keep-alive HTTP/1.1 connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{
    HeaderValue, CONTENT_LENGTH, CONTENT_RANGE, HOST, LOCATION, RANGE, RETRY_AFTER, USER_AGENT,
};
use hyper::Request;
use hyper_util::rt::TokioIo;
use shoal_core::LocalBind;
use shoal_tracker::url::{Scheme, TrackerUrl};

use crate::response::{check_response, Accept, ResponseHead};
use crate::{WebSeedError, WebSeedUrl};

/// Redirects followed for one request (as browsers and libtorrent bound them).
pub const MAX_REDIRECTS: usize = 5;
/// Connecting (TCP and TLS) must take no longer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From sending a request to its response head, and between two pieces of a body.
const IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Aborts the connection's task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One HTTP/1.1 connection to one server.
struct Conn {
    /// `scheme://host:port` it goes to.
    origin: String,
    peer: SocketAddr,
    sender: SendRequest<Empty<Bytes>>,
    _task: AbortOnDrop,
}

/// A web seed's HTTP client: requests ranges of the torrent's files, reusing one connection.
pub struct HttpSource {
    url: WebSeedUrl,
    bind: LocalBind,
    user_agent: String,
    conn: Option<Conn>,
    /// Files the server redirected elsewhere, and where (remembered: every range of the file
    /// would be redirected the same way).
    moved: HashMap<usize, TrackerUrl>,
}

/// The body of one range answer: yields exactly the range's bytes.
pub struct RangeBody {
    body: Incoming,
    remaining: u64,
    expected: u64,
    /// The connection, when it cannot be reused (a `200` whose rest is not read): kept alive
    /// until the body is dropped.
    _conn: Option<Conn>,
}

impl RangeBody {
    /// The next bytes of the range; `None` once all of it has come.
    pub async fn next(&mut self) -> Result<Option<Bytes>, WebSeedError> {
        loop {
            if self.remaining == 0 {
                return Ok(None);
            }
            let frame = tokio::time::timeout(IDLE_TIMEOUT, self.body.frame())
                .await
                .map_err(|_| WebSeedError::Timeout("waiting for the body"))?;
            match frame {
                None => {
                    return Err(WebSeedError::ShortBody {
                        expected: self.expected,
                        got: self.expected - self.remaining,
                    })
                }
                Some(Err(e)) => return Err(WebSeedError::Io(e.to_string())),
                Some(Ok(f)) => {
                    let Ok(mut data) = f.into_data() else {
                        continue; // trailers
                    };
                    if data.len() as u64 > self.remaining {
                        data.truncate(self.remaining as usize);
                    }
                    self.remaining -= data.len() as u64;
                    if !data.is_empty() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

impl HttpSource {
    /// A client for `url`, connecting from `bind`'s address.
    pub fn new(url: WebSeedUrl, bind: LocalBind) -> HttpSource {
        HttpSource {
            url,
            bind,
            user_agent: format!("shoal/{}", env!("CARGO_PKG_VERSION")),
            conn: None,
            moved: HashMap::new(),
        }
    }

    /// The web seed's URL.
    pub fn url(&self) -> &WebSeedUrl {
        &self.url
    }

    /// Connects to the server (if not connected) and returns its address.
    pub async fn connect(&mut self) -> Result<SocketAddr, WebSeedError> {
        let server = self.url.server.clone();
        self.connection(&server).await.map(|c| c.peer)
    }

    /// Requests `len` bytes at `offset` of file `file` (`file_len` bytes long).
    pub async fn get(
        &mut self,
        file: usize,
        offset: u64,
        len: u64,
        file_len: u64,
    ) -> Result<RangeBody, WebSeedError> {
        let mut redirects = 0;
        loop {
            let (server, target) = match self.moved.get(&file) {
                Some(u) => (u.clone(), u.path_and_query().to_string()),
                None => {
                    let target = self.url.targets.get(file).cloned().ok_or_else(|| {
                        WebSeedError::Url(format!("no file {file} in this torrent"))
                    })?;
                    (self.url.server.clone(), target)
                }
            };
            let response = self.send(&server, &target, offset, len).await?;
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
            };
            let head = ResponseHead {
                status: response.status().as_u16(),
                content_range: header(CONTENT_RANGE),
                content_length: header(CONTENT_LENGTH).and_then(|v| v.trim().parse().ok()),
                retry_after: header(RETRY_AFTER),
                location: header(LOCATION),
            };
            let now_unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            match check_response(&head, offset, len, file_len, now_unix) {
                Ok(Accept::Partial) => {
                    return Ok(RangeBody {
                        body: response.into_body(),
                        remaining: len,
                        expected: len,
                        _conn: None,
                    })
                }
                Ok(Accept::WholeFile) => {
                    return Ok(RangeBody {
                        body: response.into_body(),
                        remaining: len,
                        expected: len,
                        _conn: self.conn.take(),
                    })
                }
                Ok(Accept::Redirect(location)) => {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        return Err(WebSeedError::Redirect(format!(
                            "more than {MAX_REDIRECTS} redirects"
                        )));
                    }
                    let to = resolve_location(&server, &location)?;
                    // The body of a redirect is not read: this connection is done.
                    drop(response);
                    self.conn = None;
                    self.moved.insert(file, to);
                }
                Err(e) => {
                    self.conn = None;
                    return Err(e);
                }
            }
        }
    }

    /// Sends the range request on a ready connection, reconnecting once if the kept-alive one
    /// was closed by the server meanwhile.
    async fn send(
        &mut self,
        server: &TrackerUrl,
        target: &str,
        offset: u64,
        len: u64,
    ) -> Result<hyper::Response<Incoming>, WebSeedError> {
        let mut last = None;
        for _ in 0..2 {
            let user_agent = self.user_agent.clone();
            let conn = self.connection(server).await?;
            let request = Request::get(target)
                .header(HOST, server.authority())
                .header(USER_AGENT, user_agent)
                .header(RANGE, format!("bytes={}-{}", offset, offset + len - 1))
                .body(Empty::<Bytes>::new())
                .map_err(|_| WebSeedError::Url(format!("{target:?} is not a request target")))?;
            let sent = async {
                conn.sender.ready().await?;
                conn.sender.send_request(request).await
            };
            match tokio::time::timeout(IDLE_TIMEOUT, sent).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(e)) => {
                    self.conn = None;
                    last = Some(WebSeedError::Io(e.to_string()));
                }
                Err(_) => {
                    self.conn = None;
                    return Err(WebSeedError::Timeout("waiting for the answer"));
                }
            }
        }
        Err(last.unwrap_or(WebSeedError::Io("connection closed".into())))
    }

    /// The open connection to `server`'s origin, opened if needed.
    async fn connection(&mut self, server: &TrackerUrl) -> Result<&mut Conn, WebSeedError> {
        let origin = origin(server);
        if self
            .conn
            .as_ref()
            .is_some_and(|c| c.origin != origin || c.sender.is_closed())
        {
            self.conn = None;
        }
        if self.conn.is_none() {
            let conn = tokio::time::timeout(CONNECT_TIMEOUT, open(server, self.bind))
                .await
                .map_err(|_| WebSeedError::Timeout("connecting"))??;
            self.conn = Some(conn);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| WebSeedError::Io("not connected".into()))
    }
}

fn origin(u: &TrackerUrl) -> String {
    let scheme = if u.scheme() == Scheme::Https {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}", u.authority())
}

/// A redirect's `Location`: an absolute `http(s)://` URL, or an absolute path on the same server.
fn resolve_location(from: &TrackerUrl, location: &str) -> Result<TrackerUrl, WebSeedError> {
    let absolute = if location.starts_with('/') && !location.starts_with("//") {
        format!("{}{location}", origin(from))
    } else {
        location.to_string()
    };
    let to = TrackerUrl::parse(&absolute).map_err(|e| WebSeedError::Redirect(e.to_string()))?;
    if !matches!(to.scheme(), Scheme::Http | Scheme::Https) {
        return Err(WebSeedError::Redirect(format!(
            "to a {:?} URL",
            to.scheme()
        )));
    }
    Ok(to)
}

/// Opens a connection to `server` (TLS for `https://`) from `bind`'s address.
async fn open(server: &TrackerUrl, bind: LocalBind) -> Result<Conn, WebSeedError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(server.authority())
        .await
        .map_err(|_| WebSeedError::Resolve(server.host().to_string()))?
        .collect();
    let mut last = WebSeedError::Resolve(server.host().to_string());
    for addr in addrs {
        let tcp = match shoal_tracker::http_client::connect(addr, bind).await {
            Ok(t) => t,
            Err(e) => {
                last = WebSeedError::Io(format!("connecting to {addr}: {e}"));
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (sender, task) = if server.scheme() == Scheme::Https {
            let tls = shoal_tracker::tls::connect(server.host(), tcp)
                .await
                .map_err(|e| WebSeedError::Io(e.to_string()))?;
            handshake(tls).await?
        } else {
            handshake(tcp).await?
        };
        return Ok(Conn {
            origin: origin(server),
            peer: addr,
            sender,
            _task: task,
        });
    }
    Err(last)
}

async fn handshake<T>(io: T) -> Result<(SendRequest<Empty<Bytes>>, AbortOnDrop), WebSeedError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| WebSeedError::Io(e.to_string()))?;
    let task = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    Ok((sender, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_server() {
        let from = TrackerUrl::parse("http://127.0.0.9:8000/a/b").unwrap();
        let to = resolve_location(&from, "/c/d?x=1").unwrap();
        assert_eq!(to.authority(), "127.0.0.9:8000");
        assert_eq!(to.path_and_query(), "/c/d?x=1");
        let to = resolve_location(&from, "https://mirror.test/f").unwrap();
        assert_eq!(to.scheme(), Scheme::Https);
        assert!(resolve_location(&from, "udp://x:1/").is_err());
        assert!(resolve_location(&from, "relative/path").is_err());
    }
}
