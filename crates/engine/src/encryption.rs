//! The stream layer between the socket and the wire codec: MSE/PE (`shoal-mse`) driven over
//! TCP, for dialled and accepted connections, under the session's [`EncryptionPolicy`].
//!
//! After the handshakes a connection is a [`PeerStream`]: the socket and its [`Cipher`]. The
//! reader and writer tasks apply the cipher in place on their own buffers (no copy), and for
//! plaintext the cipher is a passthrough that touches nothing.
//!
//! The socket is a [`Transport`]: TCP, or a uTP stream of the session's [`UtpEndpoint`]. MSE
//! and the handshakes run the same over either.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use shoal_core::{Id20, LocalBind};
use shoal_mse::{classify, Incoming};
use shoal_wire::{Handshake, HANDSHAKE_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tracing::debug;

use crate::utp_driver::{UtpEndpoint, UtpStream};

pub use shoal_mse::{Cipher, Encryption, EncryptionPolicy};

/// The socket under a peer connection.
#[derive(Debug)]
pub enum Transport {
    /// TCP.
    Tcp(TcpStream),
    /// uTP over the session's UDP socket.
    Utp(UtpStream),
}

impl Transport {
    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Transport::Tcp(t) => t.peer_addr(),
            Transport::Utp(u) => Ok(u.peer_addr()),
        }
    }

    /// "tcp" or "utp".
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Tcp(_) => "tcp",
            Transport::Utp(_) => "utp",
        }
    }

    /// Read and write halves for the reader and writer tasks: TCP's `into_split` (no lock),
    /// `tokio::io::split` for uTP (whose stream locks its socket state anyway).
    pub fn into_split(self) -> (TransportRead, TransportWrite) {
        match self {
            Transport::Tcp(t) => {
                let (r, w) = t.into_split();
                (TransportRead::Tcp(r), TransportWrite::Tcp(w))
            }
            Transport::Utp(u) => {
                let (r, w) = tokio::io::split(u);
                (TransportRead::Utp(r), TransportWrite::Utp(w))
            }
        }
    }
}

/// The read half of a [`Transport`].
#[derive(Debug)]
pub enum TransportRead {
    /// TCP.
    Tcp(OwnedReadHalf),
    /// uTP.
    Utp(tokio::io::ReadHalf<UtpStream>),
}

/// The write half of a [`Transport`].
#[derive(Debug)]
pub enum TransportWrite {
    /// TCP.
    Tcp(OwnedWriteHalf),
    /// uTP.
    Utp(tokio::io::WriteHalf<UtpStream>),
}

macro_rules! delegate_read {
    ($t:ty) => {
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Tcp(t) => Pin::new(t).poll_read(cx, buf),
                    Self::Utp(u) => Pin::new(u).poll_read(cx, buf),
                }
            }
        }
    };
}

macro_rules! delegate_write {
    ($t:ty) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    Self::Tcp(t) => Pin::new(t).poll_write(cx, buf),
                    Self::Utp(u) => Pin::new(u).poll_write(cx, buf),
                }
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    Self::Tcp(t) => Pin::new(t).poll_write_vectored(cx, bufs),
                    Self::Utp(u) => Pin::new(u).poll_write_vectored(cx, bufs),
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    Self::Tcp(t) => t.is_write_vectored(),
                    Self::Utp(u) => u.is_write_vectored(),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Tcp(t) => Pin::new(t).poll_flush(cx),
                    Self::Utp(u) => Pin::new(u).poll_flush(cx),
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    Self::Tcp(t) => Pin::new(t).poll_shutdown(cx),
                    Self::Utp(u) => Pin::new(u).poll_shutdown(cx),
                }
            }
        }
    };
}

delegate_read!(Transport);
delegate_read!(TransportRead);
delegate_write!(Transport);
delegate_write!(TransportWrite);

/// How to open an outgoing connection.
#[derive(Clone, Debug)]
pub enum Via {
    /// TCP, from `LocalBind`'s address of the peer's family.
    Tcp(LocalBind),
    /// uTP over this endpoint (already bound to the listen address).
    Utp(Arc<UtpEndpoint>),
}

impl Via {
    /// "TCP" or "uTP", for logs.
    fn name(&self) -> &'static str {
        match self {
            Via::Tcp(_) => "TCP",
            Via::Utp(_) => "uTP",
        }
    }
}

/// A connection past its handshakes: the socket, the cipher for what follows, and what was
/// agreed (for status).
#[derive(Debug)]
pub struct PeerStream {
    /// The socket.
    pub transport: Transport,
    /// Encrypts what we send, decrypts what we read, from here on.
    pub cipher: Cipher,
    /// Plaintext, MSE with plaintext, or RC4.
    pub encryption: Encryption,
}

impl PeerStream {
    pub(crate) fn plaintext(transport: Transport) -> Self {
        PeerStream {
            transport,
            cipher: Cipher::plaintext(),
            encryption: Encryption::Plaintext,
        }
    }

    /// Encrypts `buf` in place and writes all of it.
    pub async fn write_all(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.cipher.encrypt(buf);
        self.transport.write_all(buf).await
    }

    /// "tcp" or "utp".
    pub fn transport(&self) -> &'static str {
        self.transport.name()
    }

    /// Reads into the free space of `buf` and decrypts what arrived; 0 at end of stream.
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let start = buf.len();
        let n = self.transport.read_buf(buf).await?;
        self.cipher.decrypt(&mut buf[start..]);
        Ok(n)
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

/// Marks an error of opening the connection itself (as opposed to a handshake over one that
/// opened): only such a failure is worth trying the other transport for.
#[derive(Debug)]
struct ConnectFailed(io::Error);

impl std::fmt::Display for ConnectFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ConnectFailed {}

fn is_connect_failure(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<ConnectFailed>())
}

/// Opens a connection to `addr` the way `via` says, under `timeout`. Its errors are marked
/// [`ConnectFailed`].
async fn connect(addr: SocketAddr, via: &Via, timeout: Duration) -> io::Result<Transport> {
    let opened = match via {
        Via::Tcp(bind) => connect_tcp(addr, *bind, timeout).await.map(Transport::Tcp),
        Via::Utp(endpoint) => match tokio::time::timeout(timeout, endpoint.connect(addr)).await {
            Ok(r) => r.map(Transport::Utp),
            Err(_) => Err(timed_out("uTP connect")),
        },
    };
    opened.map_err(|e| io::Error::new(e.kind(), ConnectFailed(e)))
}

/// Opens a TCP connection to `addr` from `bind`'s address of its family (so peers on
/// 127.0.0.2 and 127.0.0.3 look like different hosts, and `--bind` holds) under `timeout`. A
/// family the binding forbids, or a bound address that is gone, fails here: never a fallback.
async fn connect_tcp(
    addr: SocketAddr,
    bind: LocalBind,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let source = bind.source_for(addr)?;
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {ip}: {e}")))?;
    }
    let stream = tokio::time::timeout(timeout, socket.connect(addr))
        .await
        .map_err(|_| timed_out("connect"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Dials `addr` and completes both handshakes (MSE if the policy says so, then BitTorrent's),
/// each under `timeout`. Under [`EncryptionPolicy::Prefer`] a peer that fails the encrypted
/// handshake is dialled again in plaintext. Returns the stream, the peer's handshake and the
/// (decrypted) bytes that followed it. The peer must answer with our info-hash, or with
/// `upgrade` (BEP 52: a hybrid's truncated v2 hash, when we set the v2 bit).
pub async fn dial(
    addr: SocketAddr,
    via: &Via,
    ours: Handshake,
    upgrade: Option<Id20>,
    timeout: Duration,
    policy: EncryptionPolicy,
) -> io::Result<(PeerStream, Handshake, BytesMut)> {
    if policy.dials_encrypted() {
        // A peer that cannot be reached at all is not redialled.
        let transport = connect(addr, via, timeout).await?;
        match tokio::time::timeout(timeout, dial_encrypted(transport, ours, upgrade, policy)).await
        {
            Ok(Ok(done)) => return Ok(done),
            Ok(Err(e)) if policy.falls_back_to_plaintext() => {
                debug!(%addr, "encrypted handshake failed ({e}); redialling in plaintext");
            }
            Err(_) if policy.falls_back_to_plaintext() => {
                debug!(%addr, "encrypted handshake timed out; redialling in plaintext");
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(timed_out("encrypted handshake")),
        }
    }
    let mut stream = PeerStream::plaintext(connect(addr, via, timeout).await?);
    stream.write_all(&mut ours.encode()).await?;
    let (theirs, rest) = read_handshake(&mut stream, BytesMut::new(), timeout).await?;
    check_info_hash(&ours, upgrade, &theirs)?;
    Ok((stream, theirs, rest))
}

/// [`dial`] over the transports `utp` allows, the second only if the first cannot connect at
/// all (a peer that accepted and then failed the handshake would not do better over the other):
/// TCP then uTP (`On`, the default), uTP then TCP (`Prefer`), uTP only (`Only`) or TCP only
/// (`Off`, or no endpoint).
///
/// Why TCP first by default, where libtorrent dials uTP first: measured on loopback against
/// libtorrent 2.0.8 seeders, 64 MiB, median of 3 (`benches/utp_dial.py 64 3`, README "uTP"): a
/// seeder with libtorrent's defaults (both transports) served the download in 0.46 s over TCP
/// dialled first against 1.87 s over uTP dialled first (libtorrent's uTP is the slow end); a
/// TCP-only seeder (aria2, rqbit, anything with uTP off) in 0.59 s against 7.4 s, the uTP SYN's
/// whole retry schedule (1 + 2 + 4 s) spent before TCP; a uTP-only seeder costs a TCP-first dial
/// one refused connect (1.8 s against 0.8 s median, within libtorrent's uTP run-to-run spread).
pub async fn dial_as(
    addr: SocketAddr,
    bind: LocalBind,
    utp: (crate::UtpMode, Option<&Arc<UtpEndpoint>>),
    ours: Handshake,
    upgrade: Option<Id20>,
    timeout: Duration,
    policy: EncryptionPolicy,
) -> io::Result<(PeerStream, Handshake, BytesMut)> {
    let tcp = Via::Tcp(bind);
    let (first, then) = match utp {
        (crate::UtpMode::Only, Some(u)) => (Via::Utp(u.clone()), None),
        (crate::UtpMode::Prefer, Some(u)) => (Via::Utp(u.clone()), Some(tcp)),
        (crate::UtpMode::On, Some(u)) => (tcp, Some(Via::Utp(u.clone()))),
        _ => (tcp, None),
    };
    let dialled = dial(addr, &first, ours, upgrade, timeout, policy).await;
    let dialled = match (dialled, then) {
        (Err(e), Some(then)) if is_connect_failure(&e) => {
            debug!(%addr, "{} dial failed ({e}); dialling {}", first.name(), then.name());
            dial(addr, &then, ours, upgrade, timeout, policy).await
        }
        (dialled, _) => dialled,
    };
    if let Ok((stream, theirs, _)) = &dialled {
        note_peer(stream, theirs);
    }
    dialled
}

/// Over uTP, lets a peer that is another shoal (its peer id says so) get packets as large as
/// the path carries: shoal reads any datagram, while libtorrent truncates those above 1500
/// bytes (see `shoal_utp::Config::peer_mtu`). A peer that fakes the id only hurts itself.
fn note_peer(stream: &PeerStream, theirs: &Handshake) {
    if let Transport::Utp(u) = &stream.transport {
        if theirs.peer_id.0.starts_with(b"-SH") {
            u.allow_large_packets();
        }
    }
}

fn check_info_hash(ours: &Handshake, upgrade: Option<Id20>, theirs: &Handshake) -> io::Result<()> {
    if theirs.info_hash != ours.info_hash && Some(theirs.info_hash) != upgrade {
        return Err(invalid("peer answered with another info-hash"));
    }
    Ok(())
}

/// The initiator's MSE handshake with our BitTorrent handshake as its initial payload (as
/// libtorrent sends it), then the peer's BitTorrent handshake through the cipher.
async fn dial_encrypted(
    mut tcp: Transport,
    ours: Handshake,
    upgrade: Option<Id20>,
    policy: EncryptionPolicy,
) -> io::Result<(PeerStream, Handshake, BytesMut)> {
    let mse = shoal_mse::Handshake::initiator(
        ours.info_hash,
        policy.provide(),
        &ours.encode(),
        &mut rand::rng(),
    );
    let (done, rest) = run_mse(&mut tcp, mse, BytesMut::new()).await?;
    let mut stream = PeerStream {
        transport: tcp,
        cipher: done.cipher,
        encryption: Encryption::of(done.method),
    };
    let mut rest = rest;
    stream.cipher.decrypt(&mut rest);
    // Bounded by the caller's timeout.
    let (theirs, rest) = read_handshake(&mut stream, rest, Duration::MAX).await?;
    check_info_hash(&ours, upgrade, &theirs)?;
    Ok((stream, theirs, rest))
}

/// Drives an MSE handshake over `tcp` (either transport) until it is established, starting with bytes already
/// read (`buf`). Returns the result and the bytes read past its end, still encrypted.
async fn run_mse(
    tcp: &mut Transport,
    mut mse: shoal_mse::Handshake,
    mut buf: BytesMut,
) -> io::Result<(shoal_mse::Established, BytesMut)> {
    loop {
        if let Some(out) = mse.poll_transmit() {
            tcp.write_all(&out).await?;
        }
        if !buf.is_empty() {
            let took = mse.handle_input(&buf).map_err(invalid)?;
            let _ = buf.split_to(took);
            if let Some(out) = mse.poll_transmit() {
                tcp.write_all(&out).await?;
            }
        }
        if mse.is_established() {
            break;
        }
        buf.reserve(4096);
        if tcp.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed during the encrypted handshake",
            ));
        }
    }
    let done = mse
        .into_established()
        .ok_or_else(|| invalid("encrypted handshake not finished"))?;
    Ok((done, buf))
}

/// Reads the peer's 68-byte BitTorrent handshake (after `buf`, bytes already read and
/// decrypted) under `timeout`; returns it and the bytes after it.
pub async fn read_handshake(
    stream: &mut PeerStream,
    mut buf: BytesMut,
    timeout: Duration,
) -> io::Result<(Handshake, BytesMut)> {
    let read = async {
        loop {
            match Handshake::decode(&buf) {
                Ok(Some(h)) => return Ok(h),
                Ok(None) => {}
                Err(e) => return Err(invalid(e)),
            }
            buf.reserve(1024);
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the handshake",
                ));
            }
        }
    };
    let hs = match tokio::time::timeout(timeout, read).await {
        Ok(r) => r?,
        Err(_) => return Err(timed_out("handshake")),
    };
    let rest = buf.split_off(HANDSHAKE_LEN);
    Ok((hs, rest))
}

/// An incoming connection: tells plaintext from MSE by its first bytes, runs the MSE receiver
/// if needed (the torrent found among `info_hashes`), and reads the peer's BitTorrent
/// handshake, all under `timeout`. Our handshake is the caller's to send, with
/// [`PeerStream::write_all`]. Refuses what `policy` does not accept.
pub async fn accept(
    mut tcp: Transport,
    timeout: Duration,
    policy: EncryptionPolicy,
    info_hashes: impl FnOnce() -> Vec<Id20>,
) -> io::Result<(PeerStream, Handshake, BytesMut)> {
    let work = async {
        let mut buf = BytesMut::with_capacity(1024);
        let kind = loop {
            match classify(&buf) {
                Incoming::NeedMore => {}
                kind => break kind,
            }
            if tcp.read_buf(&mut buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed before the handshake",
                ));
            }
        };
        match kind {
            Incoming::Plaintext if !policy.accepts_plaintext() => {
                Err(invalid("plaintext peer refused: encryption is required"))
            }
            Incoming::Encrypted if !policy.accepts_encrypted() => {
                Err(invalid("encrypted peer refused: encryption is disabled"))
            }
            Incoming::Encrypted => {
                let mse = shoal_mse::Handshake::receiver(info_hashes(), policy, &mut rand::rng());
                let (done, mut rest) = run_mse(&mut tcp, mse, buf).await?;
                let mut stream = PeerStream {
                    transport: tcp,
                    cipher: done.cipher,
                    encryption: Encryption::of(done.method),
                };
                stream.cipher.decrypt(&mut rest);
                // The initiator's IA (its handshake, usually) comes before the rest.
                let mut start = BytesMut::from(&done.initial_payload[..]);
                start.extend_from_slice(&rest);
                let (theirs, rest) = read_handshake(&mut stream, start, Duration::MAX).await?;
                if theirs.info_hash != done.info_hash {
                    return Err(invalid(
                        "handshake names another torrent than the encrypted one",
                    ));
                }
                Ok((stream, theirs, rest))
            }
            _ => {
                let mut stream = PeerStream::plaintext(tcp);
                read_handshake(&mut stream, buf, Duration::MAX)
                    .await
                    .map(|(h, rest)| (stream, h, rest))
            }
        }
    };
    let accepted = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| timed_out("handshake"))?;
    if let Ok((stream, theirs, _)) = &accepted {
        note_peer(stream, theirs);
    }
    accepted
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn hs(n: u8) -> Handshake {
        Handshake::new(Id20([7; 20]), Id20([n; 20]))
    }

    /// A listener that accepts up to `tries` connections (a `prefer` dialler may redial) under
    /// `policy`, answers each with its handshake and `pong`, and reports what it agreed.
    async fn acceptor(
        policy: EncryptionPolicy,
        tries: usize,
    ) -> (
        SocketAddr,
        tokio::task::JoinHandle<Vec<io::Result<Encryption>>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut results = Vec::new();
            for _ in 0..tries {
                let Ok(Ok((tcp, _))) = tokio::time::timeout(TIMEOUT, listener.accept()).await
                else {
                    break;
                };
                let r = async {
                    let (mut stream, theirs, rest) =
                        accept(Transport::Tcp(tcp), TIMEOUT, policy, || {
                            vec![Id20([1; 20]), Id20([7; 20])]
                        })
                        .await?;
                    assert_eq!(theirs.peer_id, Id20([1; 20]));
                    assert!(rest.is_empty());
                    stream.write_all(&mut hs(2).encode()).await?;
                    stream.write_all(&mut b"pong".to_vec()).await?;
                    // Hold the socket until the dialler has read.
                    let mut buf = BytesMut::new();
                    let _ = stream.read_buf(&mut buf).await;
                    Ok(stream.encryption)
                }
                .await;
                let done = r.is_ok();
                results.push(r);
                if done {
                    break;
                }
            }
            results
        });
        (addr, task)
    }

    async fn meet(
        dialler: EncryptionPolicy,
        acceptor_policy: EncryptionPolicy,
    ) -> io::Result<Encryption> {
        let tries = if dialler.falls_back_to_plaintext() {
            2
        } else {
            1
        };
        let (addr, task) = acceptor(acceptor_policy, tries).await;
        let via = Via::Tcp(LocalBind::default());
        let dialled = dial(addr, &via, hs(1), None, TIMEOUT, dialler).await;
        let result = match dialled {
            Ok((mut stream, theirs, mut rest)) => {
                assert_eq!(theirs.peer_id, Id20([2; 20]));
                while rest.len() < 4 {
                    assert!(stream.read_buf(&mut rest).await? > 0);
                }
                assert_eq!(&rest[..], b"pong");
                let _ = stream.write_all(&mut b"bye".to_vec()).await;
                Ok(stream.encryption)
            }
            Err(e) => Err(e),
        };
        let accepted = task.await.unwrap();
        if let Ok(e) = &result {
            assert_eq!(accepted.last().unwrap().as_ref().ok(), Some(e));
        }
        result
    }

    #[tokio::test]
    async fn policies_meet_as_documented() {
        use EncryptionPolicy::*;
        for (d, a, expect) in [
            // Both offered: the receiver takes plaintext after the handshake, as libtorrent.
            (Prefer, Prefer, Some(Encryption::MsePlaintext)),
            (Require, Prefer, Some(Encryption::Rc4)),
            (Prefer, Require, Some(Encryption::Rc4)),
            (Require, Require, Some(Encryption::Rc4)),
            // The encrypted attempt is refused; `prefer` redials in plaintext.
            (Prefer, Disable, Some(Encryption::Plaintext)),
            (Disable, Prefer, Some(Encryption::Plaintext)),
            (Disable, Disable, Some(Encryption::Plaintext)),
            (Disable, Require, None),
            (Require, Disable, None),
        ] {
            let got = meet(d, a).await;
            assert_eq!(got.as_ref().ok(), expect.as_ref(), "{d} dials {a}: {got:?}");
        }
    }

    /// MSE (RC4 required both ways) and the BitTorrent handshakes over uTP, as over TCP.
    #[tokio::test]
    async fn encrypted_handshake_over_utp() {
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let a = Arc::new(UtpEndpoint::bind(local, crate::clock::Clock::new()).unwrap());
        let b = UtpEndpoint::bind(local, crate::clock::Clock::new()).unwrap();
        let b_addr = b.local_addr();
        let policy = EncryptionPolicy::Require;
        let server = tokio::spawn(async move {
            let (utp, _) = b.accept().await.unwrap();
            let (mut stream, theirs, rest) =
                accept(Transport::Utp(utp), TIMEOUT, policy, || vec![Id20([7; 20])])
                    .await
                    .unwrap();
            assert_eq!(theirs.peer_id, Id20([1; 20]));
            assert!(rest.is_empty());
            assert_eq!(stream.transport(), "utp");
            stream.write_all(&mut hs(2).encode()).await.unwrap();
            stream.write_all(&mut b"pong".to_vec()).await.unwrap();
            let mut buf = BytesMut::new();
            let _ = stream.read_buf(&mut buf).await;
            stream.encryption
        });
        let via = Via::Utp(a.clone());
        let (mut stream, theirs, mut rest) = dial(b_addr, &via, hs(1), None, TIMEOUT, policy)
            .await
            .unwrap();
        assert_eq!(theirs.peer_id, Id20([2; 20]));
        while rest.len() < 4 {
            assert!(stream.read_buf(&mut rest).await.unwrap() > 0);
        }
        assert_eq!(&rest[..], b"pong");
        assert_eq!(stream.transport(), "utp");
        assert_eq!(stream.encryption, Encryption::Rc4);
        stream.write_all(&mut b"bye".to_vec()).await.unwrap();
        assert_eq!(server.await.unwrap(), Encryption::Rc4);
    }

    /// A peer that sends a public key and then never the synchronisation hash is dropped once
    /// PadA's bound is past, not when the timeout fires.
    #[tokio::test]
    async fn missing_sync_hash_drops_the_peer_at_the_bound() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let key = shoal_mse::KeyPair::generate(&mut rand::rng());
            let _ = tcp.write_all(key.public()).await;
            let _ = tcp.write_all(&[0x5A; 2000]).await;
            let mut sink = Vec::new();
            let _ = tcp.read_to_end(&mut sink).await;
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let started = std::time::Instant::now();
        let err = accept(
            Transport::Tcp(tcp),
            Duration::from_secs(30),
            EncryptionPolicy::Prefer,
            || vec![Id20([7; 20])],
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("synchronisation"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        client.abort();
    }
}
