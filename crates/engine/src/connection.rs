//! One peer connection: the reader and writer tasks that move messages between the socket and
//! the torrent driver (dialling and the handshakes are in `encryption`). They know nothing of the
//! torrent: bytes become messages, messages become bytes, and the end of the socket is reported.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use shoal_mse::{Encryption, HalfCipher};
use shoal_wire::frame::{decode_frame, frame_missing, Limits};
use shoal_wire::Message;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use shoal_torrent::CloseReason;

use crate::clock::Clock;
pub use crate::encryption::{accept, dial, dial_as, read_handshake, PeerStream, Transport, Via};
use crate::encryption::{TransportRead, TransportWrite};
use crate::rate_limit::{Cap, FairShare, FlowId, TokenBucket};
use crate::receive_budget::{ReceiveBudget, ReceiveCredit};
use crate::socket_buffers::{self, ReadBuf};
use shoal_core::Time;

/// Identifies a connection to whoever receives its [`LinkEvent`]s.
pub type LinkId = u32;

/// What a connection's tasks report. The receiver (the torrent driver) wraps these in its own
/// event type through `From`, so connections know nothing of torrents.
#[derive(Debug)]
pub enum LinkEvent {
    /// Messages arrived: every whole message one read brought, in order (one hand-off per read,
    /// not per message), with the credit claimed for their block payload.
    Messages(LinkId, Vec<Message>, ReceiveCredit),
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

/// An upload cap (payload bytes of `piece` messages) and a download cap (all bytes read from
/// peers), changeable at run time.
#[derive(Debug)]
pub struct Caps<C> {
    /// Upload cap.
    pub upload: Mutex<C>,
    /// Download cap.
    pub download: Mutex<C>,
}

/// The session-wide rate limits, shared by every connection and fairly between torrents (see
/// [`FairShare`]).
pub type RateLimits = Caps<FairShare>;

/// One torrent's own caps, on top of the session's; shared by the torrent's connections.
pub type TorrentLimits = Caps<TokenBucket>;

impl<C: Cap> Default for Caps<C> {
    fn default() -> Self {
        Caps::new(None, None, Time::ZERO)
    }
}

/// `None` (or 0) as the buckets' "unlimited" 0.
fn rate_of(r: Option<u64>) -> u64 {
    r.unwrap_or(0)
}

/// The buckets' 0 as `None`.
fn limit_of(r: u64) -> Option<u64> {
    (r > 0).then_some(r)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<C: Cap> Caps<C> {
    /// Caps in bytes per second (`None` = unlimited).
    pub fn new(upload: Option<u64>, download: Option<u64>, now: Time) -> Self {
        Caps {
            upload: Mutex::new(C::new(rate_of(upload), now)),
            download: Mutex::new(C::new(rate_of(download), now)),
        }
    }

    /// Changes both caps (bytes per second, `None` = unlimited); connections follow at once.
    pub fn set(&self, upload: Option<u64>, download: Option<u64>, now: Time) {
        lock(&self.upload).set_rate(rate_of(upload), now);
        lock(&self.download).set_rate(rate_of(download), now);
    }

    /// The caps: (upload, download), `None` = unlimited.
    pub fn get(&self) -> (Option<u64>, Option<u64>) {
        (
            limit_of(lock(&self.upload).rate()),
            limit_of(lock(&self.download).rate()),
        )
    }
}

/// The limits one connection obeys: the session's (as its torrent's flow) and its torrent's.
#[derive(Clone, Debug)]
pub struct LinkRates {
    /// The session's caps.
    pub session: Arc<RateLimits>,
    /// The torrent's caps.
    pub torrent: Arc<TorrentLimits>,
    /// The torrent's flow in the session's fair sharing.
    pub flow: FlowId,
}

/// Which way bytes go.
#[derive(Clone, Copy)]
enum Way {
    Up,
    Down,
}

/// A long wait is cut in slices of this, so a cap changed meanwhile (lifted, raised, lowered)
/// counts from the next slice on, not after the wait the old cap set.
const THROTTLE_SLICE: Duration = Duration::from_millis(250);

/// Waits as long as the stricter of the session's and the torrent's caps says after moving
/// `bytes`.
async fn throttle(rates: &LinkRates, way: Way, bytes: usize, clock: &Clock) {
    if bytes == 0 {
        return;
    }
    let now = clock.now();
    let n = bytes as u64;
    let (session, torrent) = match way {
        Way::Up => (&rates.session.upload, &rates.torrent.upload),
        Way::Down => (&rates.session.download, &rates.torrent.download),
    };
    let (wait, mut generations) = {
        let (mut s, mut t) = (lock(session), lock(torrent));
        let wait = s.take(rates.flow, n, now).max(t.take(n, now));
        (wait, (s.generation(), t.generation()))
    };
    let mut until = now + wait;
    loop {
        let now = clock.now();
        if now >= until {
            return;
        }
        tokio::time::sleep((until - now).min(THROTTLE_SLICE)).await;
        // A cap changed meanwhile: the wait left is what the new caps say.
        let now = clock.now();
        let (mut s, mut t) = (lock(session), lock(torrent));
        let current = (s.generation(), t.generation());
        if current != generations {
            generations = current;
            until = now + s.delay(rates.flow, now).max(t.delay(now));
        }
    }
}

/// The driver's end of a running connection. Dropping it stops both tasks and closes the socket.
#[derive(Debug)]
pub struct PeerLink {
    /// Messages to send to the peer.
    pub tx: mpsc::Sender<Message>,
    /// The peer's address (`None` if the socket could not tell).
    pub addr: Option<SocketAddr>,
    /// What the connection's handshake agreed.
    pub encryption: Encryption,
    /// "tcp" or "utp" ("web" for a web seed).
    pub transport: &'static str,
    /// The tasks that stop with the link (none for a web seed, whose task outlives its links).
    tasks: Vec<JoinHandle<()>>,
}

impl PeerLink {
    /// A link without a socket of its own: the messages go to `tx` (a web seed's task, which
    /// sees the channel close when the link is dropped).
    pub fn detached(tx: mpsc::Sender<Message>) -> PeerLink {
        PeerLink {
            tx,
            addr: None,
            encryption: Encryption::Plaintext,
            transport: "web",
            tasks: Vec::new(),
        }
    }
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the reader and writer tasks of an established connection; they report to `events`.
/// `leftover` is what was read (and decrypted) past the handshake.
#[allow(clippy::too_many_arguments)]
pub fn spawn<E: From<LinkEvent> + Send + 'static>(
    stream: PeerStream,
    key: LinkId,
    leftover: BytesMut,
    limits: Limits,
    events: mpsc::Sender<E>,
    rates: LinkRates,
    budget: ReceiveBudget,
    clock: Clock,
) -> PeerLink {
    let addr = stream.transport.peer_addr().ok();
    let encryption = stream.encryption;
    let transport = stream.transport();
    let (rd, wr) = stream.transport.into_split();
    let (encrypt, decrypt) = stream.cipher.split();
    let (tx, rx) = mpsc::channel(PEER_QUEUE);
    let reader = tokio::spawn(read_loop(
        ReadSide { rd, decrypt },
        key,
        leftover,
        limits,
        events.clone(),
        (rates.clone(), budget),
        clock,
    ));
    let writer = tokio::spawn(write_loop(wr, encrypt, key, rx, events, rates, clock));
    PeerLink {
        tx,
        addr,
        encryption,
        transport,
        tasks: vec![reader, writer],
    }
}

/// The socket's read half and what decrypts it (a passthrough for plaintext).
struct ReadSide {
    rd: TransportRead,
    decrypt: HalfCipher,
}

/// Free space a read needs at least; with less, the read buffer is renewed first.
const READ_SPARE: usize = 16 * 1024;
/// The size of a renewed read buffer. 256 KiB rather than 64: a third of the `recv` calls
/// (26,000 per GiB with 64 KiB, 9,000 with 256), each of which also sends the window update.
const READ_BUFFER: usize = socket_buffers::MAX_HELD_SIZE;

/// Makes room in the read buffer for the next read: [`READ_SPARE`], or the rest of a larger
/// frame. A buffer no block split off it still holds is reused, its partial frame moved to the
/// front; otherwise the partial frame moves to a renewed buffer (reused, see
/// [`socket_buffers`]) and the old one stays with its blocks. (`BytesMut::reserve` instead grows a buffer it could reuse by copying all of it,
/// consumed bytes included: ~0.4 bytes copied per byte received, measured with callgrind.)
fn make_room(buf: &mut ReadBuf) {
    buf.rewind_if_free();
    let bytes = &mut buf.bytes;
    let want = READ_SPARE.max(frame_missing(bytes));
    if bytes.capacity() - bytes.len() >= want {
        return;
    }
    let size = READ_BUFFER.max(bytes.len() + want);
    if bytes.try_reclaim(size - bytes.len()) {
        return;
    }
    let mut fresh = socket_buffers::take(size);
    fresh.bytes.extend_from_slice(bytes);
    // The old buffer goes back to the pool, still shared with its blocks.
    *buf = fresh;
}

async fn read_loop<E: From<LinkEvent>>(
    ReadSide {
        mut rd,
        mut decrypt,
    }: ReadSide,
    key: LinkId,
    buf: BytesMut,
    limits: Limits,
    events: mpsc::Sender<E>,
    (rates, budget): (LinkRates, ReceiveBudget),
    clock: Clock,
) {
    let mut buf = ReadBuf::unpooled(buf);
    let reason = loop {
        let mut batch = Vec::new();
        let failed = loop {
            match decode_frame(&mut buf.bytes, &limits) {
                Ok(Some(msg)) => batch.push(msg),
                Ok(None) => break None,
                Err(e) => break Some(CloseReason::Io(format!("protocol error: {e}"))),
            }
        };
        // What came before a framing error still counts.
        if !batch.is_empty() {
            let payload = batch
                .iter()
                .map(|m| match m {
                    Message::Piece { data, .. } => data.len(),
                    _ => 0,
                })
                .sum();
            let credit = budget.claim(payload).await;
            if events
                .send(LinkEvent::Messages(key, batch, credit).into())
                .await
                .is_err()
            {
                return;
            }
        }
        if let Some(reason) = failed {
            let _ = events.send(LinkEvent::Closed(key, reason).into()).await;
            return;
        }
        make_room(&mut buf);
        let start = buf.bytes.len();
        match rd.read_buf(&mut buf.bytes).await {
            Ok(0) => break CloseReason::ClosedByPeer,
            Ok(n) => {
                // In place on the new bytes only; nothing at all for plaintext.
                decrypt.apply(&mut buf.bytes[start..]);
                throttle(&rates, Way::Down, n, &clock).await
            }
            Err(e) => break CloseReason::Io(format!("read error: {e}")),
        }
    };
    let _ = events.send(LinkEvent::Closed(key, reason).into()).await;
}

/// The most buffers one vectored write takes (Linux's `IOV_MAX`; more is refused). A batch
/// of tiny blocks (a peer may ask for 1-byte blocks) could hold more.
const MAX_IOV: usize = 1024;

/// Writes every byte of `parts`, in order, with as few system calls as the socket allows.
async fn write_all_vectored(wr: &mut TransportWrite, parts: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| IoSlice::new(p))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = wr.write_vectored(&rest[..rest.len().min(MAX_IOV)]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

async fn write_loop<E: From<LinkEvent>>(
    mut wr: TransportWrite,
    mut encrypt: HalfCipher,
    key: LinkId,
    mut rx: mpsc::Receiver<Message>,
    events: mpsc::Sender<E>,
    rates: LinkRates,
    clock: Clock,
) {
    let mut out = BytesMut::with_capacity(WRITE_BATCH);
    // Plaintext over a socket that takes vectored writes: blocks go out from the buffers the
    // disk read them into, not copied into `out` first (a seeder's third copy of every byte).
    let vectored = encrypt.is_passthrough() && wr.is_write_vectored();
    let mut parts: Vec<Bytes> = Vec::new();
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
        let mut batched = 0;
        let mut next = Some(first);
        while let Some(msg) = next {
            if let Message::Piece { data, .. } = &msg {
                payload += data.len();
            }
            batched += msg.wire_len();
            if vectored {
                if let Some(block) = msg.encode_head(&mut out) {
                    parts.push(out.split().freeze());
                    parts.push(block.clone());
                }
            } else {
                msg.encode(&mut out);
            }
            next = if batched < WRITE_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        throttle(&rates, Way::Up, payload, &clock).await;
        let written = if parts.is_empty() {
            encrypt.apply(&mut out);
            wr.write_all(&out).await
        } else {
            parts.push(out.split().freeze());
            write_all_vectored(&mut wr, &parts).await
        };
        if let Err(e) = written {
            break CloseReason::Io(format!("write error: {e}"));
        }
        parts.clear();
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, Bytes};

    /// A read buffer no block holds is reused with its partial frame moved to the front; one
    /// a block still holds is left to it; a frame larger than a buffer gets room for all of it.
    #[test]
    fn make_room_reuses_free_buffers_and_keeps_partial_frames() {
        let frame = |len: u32, fill: u8| {
            let mut f = BytesMut::new();
            f.put_u32(len);
            f.put_bytes(fill, len as usize);
            f
        };
        let mut buf = ReadBuf::unpooled(BytesMut::with_capacity(READ_BUFFER));
        buf.bytes.extend_from_slice(&frame(200_000, 1));
        buf.bytes.extend_from_slice(&frame(100_000, 2)[..50_000]);
        let start = buf.bytes.as_ptr();
        let block = buf.bytes.split_to(200_004).freeze();
        drop(block);
        make_room(&mut buf);
        assert_eq!(buf.bytes.as_ptr(), start, "the same allocation");
        assert!(buf.bytes.capacity() - buf.bytes.len() >= 50_004);
        assert_eq!(&buf.bytes[..], &frame(100_000, 2)[..50_000]);

        // A block still holds the buffer: the partial frame moves to a renewed one.
        buf.bytes.extend_from_slice(&frame(100_000, 2)[50_000..]);
        buf.bytes.extend_from_slice(&frame(200_000, 3)[..150_000]);
        let block = buf.bytes.split_to(100_004).freeze();
        make_room(&mut buf);
        assert_ne!(buf.bytes.as_ptr(), block.as_ptr());
        assert_eq!(&block[..], &frame(100_000, 2)[..]);
        assert_eq!(&buf.bytes[..], &frame(200_000, 3)[..150_000]);
        assert!(buf.bytes.capacity() - buf.bytes.len() >= 50_004);

        // A frame larger than a buffer: room for the whole of it.
        let mut buf = ReadBuf::unpooled(BytesMut::new());
        buf.bytes.extend_from_slice(&frame(200_000, 4)[..100]);
        make_room(&mut buf);
        assert!(buf.bytes.capacity() - buf.bytes.len() >= 200_004 - 100);
        assert_eq!(&buf.bytes[..], &frame(200_000, 4)[..100]);
    }
    use shoal_wire::BlockRef;
    use tokio::net::{TcpListener, TcpStream};

    /// What the writer sends is byte for byte what `encode` lays out, in order, however little
    /// the socket takes per write: plaintext blocks go out by vectored writes, not copied, and
    /// a reader that lags makes those writes partial.
    #[tokio::test]
    async fn the_writer_sends_what_encode_lays_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (mut server, _) = accepted.unwrap();
        let stream = PeerStream::plaintext(Transport::Tcp(client.unwrap()));
        let (events, _events_rx) = mpsc::channel::<LinkEvent>(1024);
        let rates = LinkRates {
            session: Arc::new(RateLimits::default()),
            torrent: Arc::new(TorrentLimits::default()),
            flow: 0,
        };
        let link = spawn(
            stream,
            1,
            BytesMut::new(),
            Limits::for_pieces(1000),
            events,
            rates,
            ReceiveBudget::new(1 << 20),
            Clock::new(),
        );
        let mut expected = BytesMut::new();
        let mut sent = Vec::new();
        // Hundreds of 1-byte blocks in a row: a batch of many small buffers.
        for i in 0..3_000u32 {
            let m = Message::Piece {
                piece: i,
                begin: 0,
                data: Bytes::from(vec![i as u8]),
            };
            m.encode(&mut expected);
            sent.push(m);
        }
        // ~10 MB: more than loopback's socket buffers hold.
        for i in 0..1_600u32 {
            let len = [16_384usize, 1, 7_000, 0][i as usize % 4];
            let data: Bytes = (0..len).map(|j| (i as usize + j) as u8).collect();
            let msgs = [
                Message::Piece {
                    piece: i,
                    begin: 16_384,
                    data,
                },
                Message::Have(i),
                Message::Request(BlockRef {
                    piece: i,
                    begin: 0,
                    length: 16_384,
                }),
            ];
            for m in msgs {
                m.encode(&mut expected);
                sent.push(m);
            }
        }
        let tx = link.tx.clone();
        let sender = tokio::spawn(async move {
            for m in sent {
                tx.send(m).await.unwrap();
            }
        });
        // Fall behind so the writer's socket fills and its writes come back partial.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(Duration::from_secs(20), server.read_exact(&mut got))
            .await
            .expect("every byte arrives")
            .unwrap();
        assert!(got == expected[..], "the bytes differ");
        sender.await.unwrap();
    }
}
