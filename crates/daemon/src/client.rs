//! The remote CLI's side: requests to a running daemon's JSON API.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// A daemon's address and token.
#[derive(Clone, Debug)]
pub struct ApiClient {
    /// `IP:PORT` (or `host:port`) of the API.
    pub addr: String,
    /// The bearer token.
    pub token: String,
}

/// A response: status and body.
#[derive(Debug)]
pub struct ApiResponse {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl ApiResponse {
    /// The body as JSON (`null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The API's `error` message, or the status.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| format!("HTTP status {}", self.status))
    }
}

async fn connect(
    addr: &str,
) -> std::io::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

impl ApiClient {
    fn request(
        &self,
        method: &str,
        path: &str,
        ctype: &str,
        body: Vec<u8>,
    ) -> Request<Full<Bytes>> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.addr)
            .header(AUTHORIZATION, format!("Bearer {}", self.token));
        if !ctype.is_empty() {
            req = req.header(CONTENT_TYPE, ctype);
        }
        req.body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
    }

    /// One request; the whole body read.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        ctype: &str,
        body: Vec<u8>,
    ) -> std::io::Result<ApiResponse> {
        let mut sender = connect(&self.addr).await?;
        let resp = sender
            .send_request(self.request(method, path, ctype, body))
            .await
            .map_err(std::io::Error::other)?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes()
            .to_vec();
        Ok(ApiResponse { status, body })
    }

    /// Follows the event stream: calls `on_event` with each event's JSON until the stream ends
    /// (or `on_event` returns false).
    pub async fn events(
        &self,
        mut on_event: impl FnMut(serde_json::Value) -> bool,
    ) -> std::io::Result<u16> {
        let mut sender = connect(&self.addr).await?;
        let resp = sender
            .send_request(self.request("GET", "/api/v1/events", "", Vec::new()))
            .await
            .map_err(std::io::Error::other)?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Ok(status);
        }
        let mut body = resp.into_body();
        let mut pending = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(std::io::Error::other)?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            // Events end with a blank line; only `data:` lines matter here.
            while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = pending.drain(..end + 2).collect();
                for line in String::from_utf8_lossy(&event).lines() {
                    if let Some(data) = line.strip_prefix("data:") {
                        let v =
                            serde_json::from_str(data.trim()).unwrap_or(serde_json::Value::Null);
                        if !on_event(v) {
                            return Ok(status);
                        }
                    }
                }
            }
            // A stream that never ends an event must not grow without bound.
            if pending.len() > 1 << 20 {
                pending.clear();
            }
        }
        Ok(status)
    }
}
