//! One peer connection: dialling with a timeout, the handshake, and the reader and writer tasks
//! that move messages between the socket and the torrent driver. They know nothing of the
//! torrent: bytes become messages, messages become bytes, and the end of the socket is reported.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use shoal_wire::frame::{decode_frame, Limits};
use shoal_wire::{Handshake, Message, HANDSHAKE_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use shoal_torrent::CloseReason;

use crate::clock::Clock;
use crate::rate_limit::TokenBucket;

/// Identifies a connection to whoever receives its [`LinkEvent`]s.
pub type LinkId = u32;

/// What a connection's tasks report. The receiver (the torrent driver) wraps these in its own
/// event type through `From`, so connections know nothing of torrents.
#[derive(Debug)]
pub enum LinkEvent {
    /// Messages arrived: every whole message one read brought, in order (one hand-off per read,
    /// not per message).
    Messages(LinkId, Vec<Message>),
    /// The connection ended (EOF, I/O or framing error).
    Closed(LinkId, CloseReason),
    /// The writer wrote this many bytes of block payload.
    Sent(LinkId, usize),
}

/// Send a keep-alive after this long without writing anything (BEP 3: peers drop connections
/// silent for two minutes; libtorrent and Transmission send one every 2 minutes minus a margin).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(90);
/// Messages queued to one peer's writer before the actor waits (bounded memory per peer).
pub const PEER_QUEUE: usize = 512;
/// Bytes the writer gathers into one `write` call.
const WRITE_BATCH: usize = 256 * 1024;

/// The session-wide rate limits, shared by every connection.
#[derive(Debug, Default)]
pub struct RateLimits {
    /// Upload cap (payload bytes of `piece` messages).
    pub upload: Option<Mutex<TokenBucket>>,
    /// Download cap (all bytes read from peers).
    pub download: Option<Mutex<TokenBucket>>,
}

impl RateLimits {
    /// Caps in bytes per second (`None` = unlimited).
    pub fn new(upload: Option<u64>, download: Option<u64>, clock: &Clock) -> Self {
        let bucket = |r: Option<u64>| r.map(|r| Mutex::new(TokenBucket::new(r, clock.now())));
        RateLimits {
            upload: bucket(upload),
            download: bucket(download),
        }
    }
}

async fn throttle(bucket: &Option<Mutex<TokenBucket>>, bytes: usize, clock: &Clock) {
    let wait = match bucket {
        Some(b) => b
            .lock()
            .map(|mut b| b.take(bytes as u64, clock.now()))
            .unwrap_or_default(),
        None => return,
    };
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

/// Dials `addr` (from `bind_ip` if given, so peers on 127.0.0.2 and 127.0.0.3 look like different
/// hosts), sends our handshake and reads theirs, each step under `timeout`. Returns the stream,
/// the peer's handshake and any bytes that arrived after it.
pub async fn dial(
    addr: SocketAddr,
    bind_ip: Option<IpAddr>,
    ours: Handshake,
    timeout: Duration,
) -> io::Result<(TcpStream, Handshake, BytesMut)> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = bind_ip.filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == addr.is_ipv4()) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let mut stream = tokio::time::timeout(timeout, socket.connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    stream.write_all(&ours.encode()).await?;
    let (theirs, rest) = read_handshake(&mut stream, timeout).await?;
    if theirs.info_hash != ours.info_hash {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "peer answered with another info-hash",
        ));
    }
    Ok((stream, theirs, rest))
}

/// Reads the peer's 68-byte handshake under `timeout`; returns it and the bytes after it.
pub async fn read_handshake(
    stream: &mut TcpStream,
    timeout: Duration,
) -> io::Result<(Handshake, BytesMut)> {
    let mut buf = BytesMut::with_capacity(1024);
    let read = async {
        loop {
            match Handshake::decode(&buf) {
                Ok(Some(h)) => return Ok(h),
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the handshake",
                ));
            }
        }
    };
    let hs = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))??;
    let rest = buf.split_off(HANDSHAKE_LEN);
    Ok((hs, rest))
}

/// The driver's end of a running connection. Dropping it stops both tasks and closes the socket.
#[derive(Debug)]
pub struct PeerLink {
    /// Messages to send to the peer.
    pub tx: mpsc::Sender<Message>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// Starts the reader and writer tasks of an established connection; they report to `events`.
pub fn spawn<E: From<LinkEvent> + Send + 'static>(
    stream: TcpStream,
    key: LinkId,
    leftover: BytesMut,
    limits: Limits,
    events: mpsc::Sender<E>,
    rates: Arc<RateLimits>,
    clock: Clock,
) -> PeerLink {
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(PEER_QUEUE);
    let reader = tokio::spawn(read_loop(
        rd,
        key,
        leftover,
        limits,
        events.clone(),
        rates.clone(),
        clock,
    ));
    let writer = tokio::spawn(write_loop(wr, key, rx, events, rates, clock));
    PeerLink { tx, reader, writer }
}

async fn read_loop<E: From<LinkEvent>>(
    mut rd: OwnedReadHalf,
    key: LinkId,
    mut buf: BytesMut,
    limits: Limits,
    events: mpsc::Sender<E>,
    rates: Arc<RateLimits>,
    clock: Clock,
) {
    let reason = loop {
        let mut batch = Vec::new();
        let failed = loop {
            match decode_frame(&mut buf, &limits) {
                Ok(Some(msg)) => batch.push(msg),
                Ok(None) => break None,
                Err(e) => break Some(CloseReason::Io(format!("protocol error: {e}"))),
            }
        };
        // What came before a framing error still counts.
        if !batch.is_empty()
            && events
                .send(LinkEvent::Messages(key, batch).into())
                .await
                .is_err()
        {
            return;
        }
        if let Some(reason) = failed {
            let _ = events.send(LinkEvent::Closed(key, reason).into()).await;
            return;
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => break CloseReason::ClosedByPeer,
            Ok(n) => throttle(&rates.download, n, &clock).await,
            Err(e) => break CloseReason::Io(format!("read error: {e}")),
        }
    };
    let _ = events.send(LinkEvent::Closed(key, reason).into()).await;
}

async fn write_loop<E: From<LinkEvent>>(
    mut wr: OwnedWriteHalf,
    key: LinkId,
    mut rx: mpsc::Receiver<Message>,
    events: mpsc::Sender<E>,
    rates: Arc<RateLimits>,
    clock: Clock,
) {
    let mut out = BytesMut::with_capacity(WRITE_BATCH);
    let reason = loop {
        let first = match tokio::time::timeout(KEEPALIVE_INTERVAL, rx.recv()).await {
            Err(_) => Message::KeepAlive,
            Ok(None) => {
                let _ = wr.shutdown().await;
                return;
            }
            Ok(Some(m)) => m,
        };
        let mut payload = 0;
        let mut next = Some(first);
        while let Some(msg) = next {
            if let Message::Piece { data, .. } = &msg {
                payload += data.len();
            }
            msg.encode(&mut out);
            next = if out.len() < WRITE_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        throttle(&rates.upload, payload, &clock).await;
        if let Err(e) = wr.write_all(&out).await {
            break CloseReason::Io(format!("write error: {e}"));
        }
        out.clear();
        // Block bytes written: the machine may start more reads for this peer. Awaited, never
        // dropped, so uploads to it cannot stall for want of this news.
        if payload > 0
            && events
                .send(LinkEvent::Sent(key, payload).into())
                .await
                .is_err()
        {
            return;
        }
    };
    let _ = events.send(LinkEvent::Closed(key, reason).into()).await;
}
