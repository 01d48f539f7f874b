//! One HTTP GET to a tracker, with a body-size limit.
//!
//! Built on hyper's low-level HTTP/1 client connection: a tracker request is one GET on a fresh
//! connection (`Connection: close`), so a pooled client adds nothing, and hyper is already our
//! server's HTTP stack. Time-outs are the caller's (see [`crate::TrackerClient`]).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use shoal_core::LocalBind;
use std::net::SocketAddr;
use tokio::net::{TcpSocket, TcpStream};

use crate::url::{Scheme, TrackerUrl};
use crate::TrackerError;

/// The HTTP status and body of a reply.
#[derive(Debug)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Body, at most the limit given.
    pub body: Vec<u8>,
}

/// Aborts the connection task when the request is done or dropped (time-out).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn io_err(e: impl std::fmt::Display) -> TrackerError {
    TrackerError::Io(e.to_string())
}

/// Connects to `addr` from the bound address of its family; a family the binding forbids is
/// refused before any socket is made. Also used by web seeds (BEP 19).
pub async fn connect(addr: SocketAddr, bind: LocalBind) -> std::io::Result<TcpStream> {
    let source = bind.source_for(addr)?;
    let sock = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source {
        sock.bind((ip, 0).into())
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind {ip}: {e}")))?;
    }
    sock.connect(addr).await
}

/// hyper's HTTP/1 client over `io`, its connection driven by a task that ends with the request.
async fn handshake<T>(
    io: T,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
        AbortOnDrop,
    ),
    TrackerError,
>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(io_err)?;
    let task = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    Ok((sender, task))
}

/// GETs `path_and_query` from the tracker at `url`'s host, reading at most `max_body` bytes of
/// body, from `bind`'s address, over TLS for `https://`.
pub async fn http_get(
    url: &TrackerUrl,
    path_and_query: &str,
    user_agent: &str,
    max_body: usize,
    bind: LocalBind,
) -> Result<HttpReply, TrackerError> {
    if !matches!(url.scheme(), Scheme::Http | Scheme::Https) {
        return Err(TrackerError::UnsupportedScheme(url.to_string()));
    }
    let addrs: Vec<_> = tokio::net::lookup_host(url.authority())
        .await
        .map_err(|_| TrackerError::Resolve(url.host().to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(TrackerError::Resolve(url.host().to_string()));
    }
    let mut last_err = None;
    let mut stream = None;
    for addr in addrs {
        match connect(addr, bind).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let stream = match (stream, last_err) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(e.into()),
        (None, None) => return Err(TrackerError::Resolve(url.host().to_string())),
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, _conn) = if url.scheme() == Scheme::Https {
        let tls = crate::tls::connect(url.host(), stream).await?;
        handshake(tls).await?
    } else {
        handshake(stream).await?
    };
    let host = HeaderValue::from_str(&url.authority()).map_err(io_err)?;
    let req = Request::get(path_and_query)
        .header(HOST, host)
        .header(USER_AGENT, user_agent)
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|_| TrackerError::InvalidUrl {
            url: format!("{url}{path_and_query}").chars().take(200).collect(),
            reason: "not a valid HTTP request target",
        })?;
    let resp = sender.send_request(req).await.map_err(io_err)?;
    let status = resp.status().as_u16();
    let declared = resp
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_body as u64) {
        return Err(TrackerError::TooLarge { limit: max_body });
    }
    let body = Limited::new(resp.into_body(), max_body)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                TrackerError::TooLarge { limit: max_body }
            } else {
                io_err(e)
            }
        })?
        .to_bytes();
    Ok(HttpReply {
        status,
        body: body.to_vec(),
    })
}
