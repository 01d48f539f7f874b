//! The tokio driver of uTP (`shoal-utp`): one task per UDP socket moves datagrams and time into
//! the sans-IO [`UtpSocket`] and its datagrams back out; [`UtpStream`]s give each connection
//! `AsyncRead` + `AsyncWrite`, so peer-connection code can run over uTP as over TCP.
//!
//! # Design
//!
//! The [`UtpSocket`] (which owns every [`Connection`](shoal_utp::Connection)) sits behind one
//! mutex shared by the endpoint task and the streams. A stream reads from and writes to its
//! connection directly under that lock, so there is no second buffer: the connection's bounded
//! receive buffer *is* the backpressure (a stream that stops reading lets the advertised window
//! close), and its bounded send buffer is the write capacity. After a read or write the stream
//! wakes the task, which drains [`UtpSocket::poll_transmit`] to the UDP socket and routes
//! [`UtpSocket::poll_event`]s to the streams' wakers. No protocol decision is made here.
//!
//! Datagrams that are not uTP ([`looks_like_utp`] false: KRPC starts with `d`) go to an
//! optional "other" channel, so the DHT shares the socket ([`UtpEndpoint::bind_with`],
//! [`UtpEndpoint::udp_socket`]; the session does this when uTP and the DHT both run).
//!
//! Dropping a [`UtpStream`] closes its connection (FIN after the data written; whatever arrives
//! afterwards is read and discarded until the connection ends). Dropping the [`UtpEndpoint`]
//! ends everything: its connections are aborted (RESET), the task exits, and streams still held
//! fail with `ConnectionAborted` (data received but not yet read is lost, as with a reset).

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use shoal_core::Time;
use shoal_utp::{
    looks_like_utp, ConnectionHandle, Event, Fragmentation, SocketConfig, Transmit, UtpSocket,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{debug, trace};

use crate::clock::{sleep_until, Clock};

/// Accepted connections not yet taken by [`UtpEndpoint::accept`]; more are aborted.
const MAX_ACCEPT_BACKLOG: usize = 64;
/// Datagrams sent per turn of the task's loop before it looks at the socket again.
const SEND_BATCH: usize = 256;
/// Datagrams received per turn of the task's loop.
const RECV_BATCH: usize = 64;
/// The UDP socket buffers asked for (best effort): a full congestion window of datagrams.
const SOCKET_BUFFER: usize = 4 << 20;
/// The largest UDP datagram.
const MAX_DATAGRAM: usize = 65_536;
/// Datagrams taken from the multiplexer at once, under its lock, before sending them.
const OUTBOX: usize = 64;

/// How a connection ended, as the stream reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// Ended without error (both FINs, or our FIN and a silent peer, or our abort).
    Closed,
    /// The peer sent RESET.
    Reset,
    /// The peer stopped answering (or never answered the SYN).
    TimedOut,
}

impl Ended {
    fn error(self) -> io::Error {
        match self {
            Ended::Closed => io::Error::new(io::ErrorKind::BrokenPipe, "uTP connection closed"),
            Ended::Reset => io::Error::new(io::ErrorKind::ConnectionReset, "uTP connection reset"),
            Ended::TimedOut => io::Error::new(io::ErrorKind::TimedOut, "uTP connection timed out"),
        }
    }
}

/// What the driver knows about one connection besides the connection itself.
#[derive(Default)]
struct StreamState {
    connected: bool,
    ended: Option<Ended>,
    /// `poll_shutdown` was called: writes fail.
    shutdown: bool,
    /// The stream was dropped: the task discards what arrives until the connection ends.
    dropped: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl StreamState {
    fn wake_all(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

struct State {
    socket: UtpSocket,
    streams: HashMap<ConnectionHandle, StreamState>,
    accepted: VecDeque<(ConnectionHandle, SocketAddr)>,
    /// The endpoint task has exited.
    dead: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the endpoint task: a stream wrote, read, closed or was dropped.
    wake: Notify,
    /// Wakes `accept`.
    accept: Notify,
    clock: Clock,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent-enough state; go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn aborted() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "uTP endpoint closed")
}

/// One UDP socket carrying uTP connections, driven by its own tokio task. See the
/// [module documentation](self).
pub struct UtpEndpoint {
    shared: Arc<Shared>,
    udp: Arc<UdpSocket>,
    local_addr: SocketAddr,
    /// Dropped with the endpoint: tells the task to abort everything and exit.
    _shutdown: oneshot::Sender<()>,
}

impl UtpEndpoint {
    /// Binds a UDP socket on `addr` and starts its task (default [`SocketConfig`], accepting
    /// connections, non-uTP datagrams dropped). Must be called within a tokio runtime.
    pub fn bind(addr: SocketAddr, clock: Clock) -> io::Result<UtpEndpoint> {
        Self::bind_with(addr, clock, SocketConfig::default(), None)
    }

    /// Like [`bind`](Self::bind), with the multiplexer's configuration and a channel for the
    /// datagrams that are not uTP (the DHT's, once it shares the socket). Such datagrams are
    /// dropped when the channel is full or closed.
    pub fn bind_with(
        addr: SocketAddr,
        clock: Clock,
        config: SocketConfig,
        other: Option<mpsc::Sender<(SocketAddr, Bytes)>>,
    ) -> io::Result<UtpEndpoint> {
        let udp = Arc::new(bind_udp(addr)?);
        let local_addr = udp.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                socket: UtpSocket::new(config, rand::random()),
                streams: HashMap::new(),
                accepted: VecDeque::new(),
                dead: false,
            }),
            wake: Notify::new(),
            accept: Notify::new(),
            clock,
        });
        let (tx, rx) = oneshot::channel();
        tokio::spawn(run(udp.clone(), shared.clone(), other, rx));
        Ok(UtpEndpoint {
            shared,
            udp,
            local_addr,
            _shutdown: tx,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Opens a uTP connection to `addr`. Fails with `TimedOut` when the SYN goes unanswered
    /// through its retransmissions (about 7 s with the default configuration) and with
    /// `ConnectionReset` when the peer refuses it.
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<UtpStream> {
        let handle = {
            let mut st = self.shared.lock();
            if st.dead {
                return Err(aborted());
            }
            let now = self.shared.clock.now();
            let handle = st.socket.connect(now, addr).map_err(io::Error::other)?;
            st.streams.insert(handle, StreamState::default());
            handle
        };
        self.shared.wake.notify_one();
        // Dropping this future drops the stream, which closes the connection.
        let stream = UtpStream {
            shared: self.shared.clone(),
            handle,
            peer_addr: addr,
        };
        poll_fn(|cx| stream.poll_connected(cx)).await?;
        Ok(stream)
    }

    /// The next connection a peer opened, and its address.
    pub async fn accept(&self) -> io::Result<(UtpStream, SocketAddr)> {
        loop {
            let notified = self.shared.accept.notified();
            {
                let mut st = self.shared.lock();
                if let Some((handle, addr)) = st.accepted.pop_front() {
                    if !st.accepted.is_empty() {
                        // Another `accept` may be waiting for the next one.
                        self.shared.accept.notify_one();
                    }
                    return Ok((
                        UtpStream {
                            shared: self.shared.clone(),
                            handle,
                            peer_addr: addr,
                        },
                        addr,
                    ));
                }
                if st.dead {
                    return Err(aborted());
                }
            }
            notified.await;
        }
    }

    /// The endpoint's UDP socket, for a protocol that shares it (the DHT sends on it; what it
    /// receives arrives through the channel given to [`bind_with`](Self::bind_with)).
    pub fn udp_socket(&self) -> Arc<UdpSocket> {
        self.udp.clone()
    }

    /// Sends a datagram that is not uTP (the DHT's) from the endpoint's socket.
    pub async fn send_other(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.udp.send_to(datagram, to).await
    }
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // One socket per family, as the engine's listeners and the DHT's nodes: no v4-mapped
        // addresses on an IPv6 socket.
        socket.set_only_v6(true)?;
    }
    // Best effort: the kernel may cap these.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// The endpoint task.
async fn run(
    udp: Arc<UdpSocket>,
    shared: Arc<Shared>,
    other: Option<mpsc::Sender<(SocketAddr, Bytes)>>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let clock = shared.clock;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut outbox: VecDeque<Transmit> = VecDeque::new();
    // More datagrams may be waiting in the socket after a full batch.
    let mut more = false;
    let mut df = DontFragment::new(&udp);
    loop {
        let deadline = shared
            .lock()
            .socket
            .poll_timeout()
            .map(|t| tokio::time::Instant::from_std(clock.instant(t)));
        let blocked = !outbox.is_empty();
        tokio::select! {
            _ = &mut shutdown => break,
            r = udp.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    let mut st = shared.lock();
                    input(&mut st, &clock, &other, from, &buf[..n]);
                    // Take what else is queued without going round the loop.
                    for _ in 1..RECV_BATCH {
                        match udp.try_recv_from(&mut buf) {
                            Ok((n, from)) => input(&mut st, &clock, &other, from, &buf[..n]),
                            Err(_) => break,
                        }
                    }
                }
                // ICMP errors reported on an unconnected socket (Windows) and the like.
                Err(e) => trace!(error = %e, "uTP socket recv error"),
            },
            _ = sleep_until(deadline) => shared.lock().socket.handle_timeout(clock.now()),
            _ = shared.wake.notified() => {}
            _ = udp.writable(), if blocked => {}
            _ = std::future::ready(()), if more => {}
        }
        more = flush(&udp, &shared, &clock, &mut outbox, &mut df);
    }
    // Shutting down: abort every connection, send the RESETs once (best effort), fail streams.
    let mut st = shared.lock();
    let now = clock.now();
    let handles: Vec<ConnectionHandle> = st.streams.keys().copied().collect();
    for h in handles {
        if let Some(conn) = st.socket.connection(h) {
            conn.abort(now);
        }
    }
    while let Some(t) = st.socket.poll_transmit(now) {
        let _ = udp.try_send_to(&t.contents, t.destination);
    }
    st.dead = true;
    for s in st.streams.values_mut() {
        s.wake_all();
    }
    drop(st);
    shared.accept.notify_waiters();
    debug!("uTP endpoint closed");
}

/// One datagram in: to uTP, or to the "other" hook.
fn input(
    st: &mut State,
    clock: &Clock,
    other: &Option<mpsc::Sender<(SocketAddr, Bytes)>>,
    from: SocketAddr,
    datagram: &[u8],
) {
    if looks_like_utp(datagram) {
        if let Err(e) = st.socket.handle_datagram(clock.now(), from, datagram) {
            trace!(%from, error = %e, "uTP datagram dropped");
        }
    } else if let Some(tx) = other {
        let _ = tx.try_send((from, Bytes::copy_from_slice(datagram)));
    }
}

/// Routes events and accepted connections to the streams, then sends what the connections
/// have to send (at most [`SEND_BATCH`]; a blocked datagram waits in `outbox`). Returns whether
/// there may be more to do at once.
fn flush(
    udp: &UdpSocket,
    shared: &Shared,
    clock: &Clock,
    outbox: &mut VecDeque<Transmit>,
    df: &mut DontFragment,
) -> bool {
    let mut accepted_any = false;
    let mut sent = 0;
    loop {
        {
            let mut st = shared.lock();
            let now = clock.now();
            route(&mut st, now, &mut accepted_any);
            if outbox.is_empty() {
                while outbox.len() < OUTBOX {
                    match st.socket.poll_transmit(now) {
                        Some(t) => outbox.push_back(t),
                        None => break,
                    }
                }
                // Sending may have produced events (a connection that ended).
                route(&mut st, now, &mut accepted_any);
            }
        }
        if outbox.is_empty() {
            break;
        }
        while let Some(t) = outbox.front() {
            df.set(udp, t.fragmentation);
            match udp.try_send_to(&t.contents, t.destination) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if accepted_any {
                        shared.accept.notify_one();
                    }
                    return false;
                }
                // Unreachable and the like: the datagram is lost; uTP retransmits or times out.
                Err(e) => trace!(to = %t.destination, error = %e, "uTP send failed"),
            }
            outbox.pop_front();
            sent += 1;
        }
        if sent >= SEND_BATCH {
            break;
        }
    }
    if accepted_any {
        shared.accept.notify_one();
    }
    sent >= SEND_BATCH
}

/// The socket's IP "don't fragment" mode, switched per datagram as uTP's MTU search asks
/// ([`Fragmentation`]): a probe goes out with DF and never fragmented locally (Linux
/// `IP_PMTUDISC_PROBE`), a lost probe resent at its size may be fragmented (`IP_PMTUDISC_DONT`),
/// everything else has the kernel's default (`IP_PMTUDISC_WANT`: DF, and local fragmentation
/// only above a path MTU that ICMP taught it). Only probes and their resends switch it, so the
/// system calls are rare. Elsewhere than Linux the flag is ignored.
struct DontFragment {
    current: Fragmentation,
    v6: bool,
}

impl DontFragment {
    fn new(udp: &UdpSocket) -> Self {
        DontFragment {
            current: Fragmentation::Default,
            v6: udp.local_addr().is_ok_and(|a| a.is_ipv6()),
        }
    }

    fn set(&mut self, udp: &UdpSocket, wanted: Fragmentation) {
        if wanted == self.current {
            return;
        }
        match set_pmtu_discover(udp, self.v6, wanted) {
            Ok(()) => self.current = wanted,
            Err(e) => {
                trace!(error = %e, "cannot set the uTP socket's DF mode");
                // Not retried for every datagram: the default stays.
                self.current = wanted;
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn set_pmtu_discover(udp: &UdpSocket, v6: bool, f: Fragmentation) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (level, name, value) = match (v6, f) {
        (false, Fragmentation::Forbid) => (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_PROBE,
        ),
        (false, Fragmentation::Allow) => (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DONT,
        ),
        (false, _) => (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_WANT,
        ),
        (true, Fragmentation::Forbid) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_PROBE,
        ),
        (true, Fragmentation::Allow) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DONT,
        ),
        (true, _) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_WANT,
        ),
    };
    let value: libc::c_int = value;
    // SAFETY: `udp` owns a valid socket descriptor for the duration of the call, and the option
    // is an int, passed by pointer with its size as the kernel expects.
    let r = unsafe {
        libc::setsockopt(
            udp.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_pmtu_discover(_udp: &UdpSocket, _v6: bool, _f: Fragmentation) -> io::Result<()> {
    Ok(())
}

/// Hands events to the streams' wakers and queues accepted connections.
fn route(st: &mut State, now: Time, accepted_any: &mut bool) {
    while let Some(handle) = st.socket.accept() {
        if st.accepted.len() >= MAX_ACCEPT_BACKLOG {
            if let Some(conn) = st.socket.connection(handle) {
                conn.abort(now);
            }
            continue;
        }
        let Some(addr) = st.socket.remote(handle) else {
            continue;
        };
        st.streams.insert(handle, StreamState::default());
        st.accepted.push_back((handle, addr));
        *accepted_any = true;
    }
    while let Some((handle, event)) = st.socket.poll_event() {
        let Some(s) = st.streams.get_mut(&handle) else {
            continue;
        };
        let ended = match event {
            Event::Connected => {
                s.connected = true;
                None
            }
            Event::Readable | Event::Eof => None,
            Event::Writable => None,
            Event::Closed { .. } => Some(Ended::Closed),
            Event::Reset => Some(Ended::Reset),
            Event::TimedOut => Some(Ended::TimedOut),
            _ => None,
        };
        if let Some(e) = ended {
            s.ended = Some(e);
        }
        if s.dropped {
            if ended.is_some() {
                st.streams.remove(&handle);
            } else if let Some(conn) = st.socket.connection(handle) {
                discard(conn);
            }
            continue;
        }
        match event {
            Event::Readable | Event::Eof => {
                if let Some(w) = s.read_waker.take() {
                    w.wake();
                }
            }
            Event::Writable => {
                if let Some(w) = s.write_waker.take() {
                    w.wake();
                }
            }
            _ => s.wake_all(),
        }
    }
}

/// Reads and drops what a connection whose stream is gone received.
fn discard(conn: &mut shoal_utp::Connection) {
    let mut scratch = [0u8; 4096];
    while conn.read(&mut scratch) > 0 {}
}

/// One uTP connection as a byte stream: `AsyncRead` + `AsyncWrite`, like a `TcpStream`.
/// `poll_shutdown` sends FIN; `poll_flush` returns at once (the driver sends as soon as the
/// congestion window allows). Dropping it closes the connection.
pub struct UtpStream {
    shared: Arc<Shared>,
    handle: ConnectionHandle,
    peer_addr: SocketAddr,
}

impl UtpStream {
    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The peer reads datagrams up to the interface's MTU (it is known to: another shoal): the
    /// connection's MTU search may go past 1500 bytes (on loopback, to 64 KiB).
    pub fn allow_large_packets(&self) {
        let mut st = self.shared.lock();
        let now = self.shared.clock.now();
        if let Some(conn) = st.socket.connection(self.handle) {
            conn.allow_large_packets(now);
        }
        drop(st);
        self.shared.wake.notify_one();
    }

    fn poll_connected(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.shared.lock();
        if st.dead {
            return Poll::Ready(Err(aborted()));
        }
        let Some(s) = st.streams.get_mut(&self.handle) else {
            return Poll::Ready(Err(aborted()));
        };
        if s.connected {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = s.ended {
            return Poll::Ready(Err(e.error()));
        }
        s.write_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncRead for UtpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let this = self.get_mut();
        let mut st = this.shared.lock();
        if st.dead {
            return Poll::Ready(Err(aborted()));
        }
        let mut finished = false;
        if let Some(conn) = st.socket.connection(this.handle) {
            let n = conn.read(buf.initialize_unfilled());
            if n > 0 {
                buf.advance(n);
                drop(st);
                // The read may have reopened the window: the task sends the update.
                this.shared.wake.notify_one();
                return Poll::Ready(Ok(()));
            }
            finished = conn.peer_finished();
        }
        if finished {
            return Poll::Ready(Ok(()));
        }
        let Some(s) = st.streams.get_mut(&this.handle) else {
            return Poll::Ready(Err(aborted()));
        };
        match s.ended {
            Some(Ended::Closed) => return Poll::Ready(Ok(())),
            Some(e) => return Poll::Ready(Err(e.error())),
            None => {}
        }
        s.read_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for UtpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        let mut st = this.shared.lock();
        let dead = st.dead;
        let Some(s) = st.streams.get(&this.handle) else {
            return Poll::Ready(Err(aborted()));
        };
        if let Some(e) = s.ended {
            return Poll::Ready(Err(e.error()));
        }
        if dead {
            return Poll::Ready(Err(aborted()));
        }
        if s.shutdown {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "uTP stream shut down for writing",
            )));
        }
        let written = match st.socket.connection(this.handle) {
            Some(conn) => conn.write(data),
            None => return Poll::Ready(Err(Ended::Closed.error())),
        };
        match written {
            Ok(0) => {
                if let Some(s) = st.streams.get_mut(&this.handle) {
                    s.write_waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Ok(n) => {
                drop(st);
                this.shared.wake.notify_one();
                Poll::Ready(Ok(n))
            }
            Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, e))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut st = this.shared.lock();
        if let Some(s) = st.streams.get_mut(&this.handle) {
            s.shutdown = true;
        }
        if let Some(conn) = st.socket.connection(this.handle) {
            conn.close();
        }
        drop(st);
        this.shared.wake.notify_one();
        Poll::Ready(Ok(()))
    }
}

impl Drop for UtpStream {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        let ended = match st.streams.get_mut(&self.handle) {
            Some(s) => {
                s.dropped = true;
                s.read_waker = None;
                s.write_waker = None;
                s.ended.is_some()
            }
            None => true,
        };
        if ended || st.dead {
            st.streams.remove(&self.handle);
            return;
        }
        if let Some(conn) = st.socket.connection(self.handle) {
            conn.close();
            discard(conn);
        }
        drop(st);
        self.shared.wake.notify_one();
    }
}

impl std::fmt::Debug for UtpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtpStream")
            .field("handle", &self.handle)
            .field("peer_addr", &self.peer_addr)
            .finish()
    }
}

impl std::fmt::Debug for UtpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtpEndpoint")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}
