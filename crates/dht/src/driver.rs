//! The tokio driver: one task owns a UDP socket per address family and a [`DualNode`] (one
//! [`DhtNode`](crate::DhtNode) per family, BEP 32), moves datagrams and time in and out, and
//! serves commands from cloneable [`Dht`] handles. All protocol logic stays in the sans-IO
//! nodes.
//!
//! [`Dht::bind`] runs the family of the address it is given; [`Dht::bind_dual`] runs both: an
//! IPv4 socket and an IPv6-only one (so both can share a port), where a host without IPv6 may
//! just run IPv4 ([`DhtBind::v6_optional`]).
//!
//! How the engine finds peers for a torrent and announces it:
//!
//! ```no_run
//! # async fn example() -> Result<(), shoal_dht::driver::DriverError> {
//! use shoal_core::Id20;
//! use shoal_dht::driver::{Dht, DhtBind};
//! use shoal_dht::DhtConfig;
//!
//! let addr = "0.0.0.0:6881".parse().unwrap();
//! // IPv4 on 0.0.0.0:6881 and, where the host has IPv6, IPv6 on [::]:6881 (BEP 32).
//! let dht = Dht::bind_dual(DhtBind::dual_for(addr), DhtConfig::for_addr(&addr), None).await?;
//! // Saved nodes (the last argument), or the public routers (the CLI resolves them); each
//! // family's node joins through the addresses of its family.
//! let mut routers = Vec::new();
//! for host in shoal_dht::DEFAULT_BOOTSTRAP {
//!     if let Ok(addrs) = tokio::net::lookup_host(host).await {
//!         routers.extend(addrs);
//!     }
//! }
//! dht.bootstrap(routers).await?;
//! let info_hash = Id20::from_hex("d460b8af98f716752723c9fa5b0b57995ee43085").unwrap();
//! let mut peers = dht.get_peers(info_hash).await?;
//! while let Some(peer) = peers.recv().await {
//!     // dial `peer`
//!     let _ = peer;
//! }
//! // Every 15 to 30 minutes while the torrent runs: announce our TCP listen port.
//! dht.announce(info_hash, Some(6881)).await?;
//! // On shutdown: keep the id and good nodes for the next start.
//! let state = dht.save_state().await?.encode();
//! # let _ = state;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;

use shoal_core::{CompactNode, Id20, Time};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;

use crate::dual::DualNode;
use crate::krpc::{Family, MAX_PACKET};
use crate::node::{DhtConfig, DhtError, Event, LookupId, NodeStats, SampleReply};
use crate::state::DhtState;

/// Errors of the [`Dht`] handle.
#[derive(Debug, Error)]
pub enum DriverError {
    /// Binding the UDP socket failed.
    #[error("cannot bind the DHT socket: {0}")]
    Io(#[from] io::Error),
    /// The node refused the command.
    #[error(transparent)]
    Dht(#[from] DhtError),
    /// The driver task has stopped.
    #[error("the DHT task has stopped")]
    Closed,
}

/// What a finished announce reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnnounceResult {
    /// Nodes that accepted the announce.
    pub acked: usize,
    /// Peers found by the lookup before the announce (also sent to no one else).
    pub peers_found: usize,
}

/// A snapshot of the node for status displays and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhtStatus {
    /// Our node id (the IPv4 node's when both run).
    pub id: Id20,
    /// Nodes in the routing tables, both families.
    pub table_len: usize,
    /// Nodes in the IPv6 routing table (BEP 32), part of `table_len`.
    pub table_len_v6: usize,
    /// Counters, both families.
    pub stats: NodeStats,
    /// Lookups running.
    pub lookups: usize,
    /// Our external IPv4 address (or IPv6 when only IPv6 runs), once two nodes agree on it.
    pub external_ip: Option<IpAddr>,
}

/// Where the driver's sockets are bound: an IPv4 address, an IPv6 address, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhtBind {
    /// The IPv4 socket's address; `None`: no IPv4 DHT.
    pub v4: Option<SocketAddr>,
    /// The IPv6 socket's address (an IPv6-only socket); `None`: no IPv6 DHT.
    pub v6: Option<SocketAddr>,
    /// When the IPv6 socket cannot be bound (no IPv6 on the host, the port taken) the DHT runs
    /// on IPv4 alone instead of failing. For `[::]` picked by default, not for an address the
    /// user gave.
    pub v6_optional: bool,
}

impl DhtBind {
    /// One socket on `addr`, of its family.
    pub fn single(addr: SocketAddr) -> DhtBind {
        match Family::of(&addr) {
            Family::V4 => DhtBind {
                v4: Some(addr),
                v6: None,
                v6_optional: false,
            },
            Family::V6 => DhtBind {
                v4: None,
                v6: Some(addr),
                v6_optional: false,
            },
        }
    }

    /// For an unspecified `addr` (`0.0.0.0` or `[::]`): both families at its port, IPv6 where
    /// the host has it. For a specific address: that address alone.
    pub fn dual_for(addr: SocketAddr) -> DhtBind {
        if !addr.ip().is_unspecified() {
            return Self::single(addr);
        }
        DhtBind {
            v4: Some(SocketAddr::from(([0, 0, 0, 0], addr.port()))),
            v6: Some(SocketAddr::from((
                std::net::Ipv6Addr::UNSPECIFIED,
                addr.port(),
            ))),
            v6_optional: true,
        }
    }
}

enum Command {
    Bootstrap(Vec<SocketAddr>, oneshot::Sender<Result<usize, DhtError>>),
    GetPeers(
        Id20,
        mpsc::UnboundedSender<SocketAddr>,
        oneshot::Sender<Result<(), DhtError>>,
    ),
    Announce(
        Id20,
        Option<u16>,
        oneshot::Sender<Result<AnnounceResult, DhtError>>,
    ),
    FindNode(Id20, oneshot::Sender<Result<Vec<CompactNode>, DhtError>>),
    Ping(SocketAddr, oneshot::Sender<Result<Option<Id20>, DhtError>>),
    Sample(
        SocketAddr,
        Id20,
        oneshot::Sender<Result<Option<SampleReply>, DhtError>>,
    ),
    SaveState(oneshot::Sender<DhtState>),
    Status(oneshot::Sender<DhtStatus>),
}

/// A handle to a running DHT node. Cloning gives another handle to the same node; the node stops
/// when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct Dht {
    tx: mpsc::Sender<Command>,
    local_v4: Option<SocketAddr>,
    local_v6: Option<SocketAddr>,
}

/// A UDP socket the DHT shares with another protocol (uTP, as libtorrent shares one socket per
/// address): that protocol's task receives every datagram and hands over the DHT's (KRPC is a
/// bencoded dictionary: its first byte is `d`) through `incoming`; the DHT sends on `socket`
/// itself. Datagrams longer than a KRPC packet may be are rejected as from an own socket.
#[derive(Debug)]
pub struct SharedSocket {
    /// The socket, for sending (and its local address).
    pub socket: Arc<UdpSocket>,
    /// The datagrams meant for the DHT, with their sender.
    pub incoming: mpsc::Receiver<(SocketAddr, Bytes)>,
}

/// A socket of one family: the DHT's own, or one it shares.
enum Sock {
    Own(UdpSocket),
    Shared(SharedSocket),
}

impl Sock {
    async fn send_to(&self, bytes: &[u8], to: SocketAddr) -> io::Result<usize> {
        match self {
            Sock::Own(s) => s.send_to(bytes, to).await,
            Sock::Shared(s) => s.socket.send_to(bytes, to).await,
        }
    }

    /// The next datagram into `buf` (cut to its length, which is one byte more than a KRPC
    /// packet may be, so an oversized one is still seen as such). A shared socket whose owner
    /// has gone yields nothing more.
    async fn recv(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        match self {
            Sock::Own(s) => s.recv_from(buf).await,
            Sock::Shared(s) => match s.incoming.recv().await {
                Some((from, d)) => {
                    let n = d.len().min(buf.len());
                    buf[..n].copy_from_slice(&d[..n]);
                    Ok((n, from))
                }
                None => std::future::pending().await,
            },
        }
    }
}

/// An IPv6-only UDP socket on `addr`: it can share its port with an IPv4 socket.
fn bind_v6(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_only_v6(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// `config` for the node of `family` on the socket bound at `local`: the family set, the
/// one-node-per-IP rule off on loopback (every local node shares the address), and the
/// external IP kept only if it is of that family.
fn config_for(config: &DhtConfig, family: Family, local: SocketAddr) -> DhtConfig {
    let mut c = config.clone();
    c.family = family;
    if local.ip().is_loopback() {
        c.routing.restrict_ips = false;
    }
    if c.external_ip
        .is_some_and(|ip| Family::of(&SocketAddr::new(ip, 0)) != family)
    {
        c.external_ip = None;
    }
    c
}

/// Commands queued to the driver before senders wait.
const COMMAND_QUEUE: usize = 64;

impl Dht {
    /// Binds `addr` and starts a node with a fresh id (or the id of `state`) on the current tokio
    /// runtime.
    pub async fn bind(addr: SocketAddr, config: DhtConfig) -> Result<Dht, DriverError> {
        Self::bind_with_state(addr, config, None).await
    }

    /// Like [`bind`](Self::bind), restoring the id and known nodes of a saved state. The node
    /// is of `addr`'s family (`config.family` is set to it).
    ///
    /// On a loopback address the one-node-per-IP rule is turned off whatever `config` says:
    /// every node there shares 127.0.0.0/8.
    pub async fn bind_with_state(
        addr: SocketAddr,
        config: DhtConfig,
        state: Option<DhtState>,
    ) -> Result<Dht, DriverError> {
        Self::bind_dual(DhtBind::single(addr), config, state).await
    }

    /// Binds a socket per family of `bind` and starts a node for each (BEP 32), restoring the
    /// ids and nodes of `state`. `config` serves both (its `family` is set per node). The IPv6
    /// socket is IPv6-only and takes the IPv4 socket's port when both ask for the same one.
    pub async fn bind_dual(
        bind: DhtBind,
        config: DhtConfig,
        state: Option<DhtState>,
    ) -> Result<Dht, DriverError> {
        Self::bind_dual_shared(bind, config, state, &mut None).await
    }

    /// Like [`bind_dual`](Self::bind_dual), with the socket of one family shared with another
    /// protocol ([`SharedSocket`]): it takes the place of that family's address in `bind`.
    /// `shared` is taken only once every socket is bound, so on an error the caller still has
    /// it (to retry with other ports, say).
    pub async fn bind_dual_shared(
        bind: DhtBind,
        config: DhtConfig,
        state: Option<DhtState>,
        shared: &mut Option<SharedSocket>,
    ) -> Result<Dht, DriverError> {
        let shared_addr = match shared {
            Some(s) => Some(s.socket.local_addr()?),
            None => None,
        };
        let shared_family = shared_addr.map(|a| Family::of(&a));
        let asked_v4 = bind
            .v4
            .or(shared_addr.filter(|_| shared_family == Some(Family::V4)));
        let (bind, shared_v4, shared_v6) = match shared_family {
            Some(Family::V4) => (DhtBind { v4: None, ..bind }, true, false),
            Some(Family::V6) => (DhtBind { v6: None, ..bind }, false, true),
            None => (bind, false, false),
        };
        let own4 = match bind.v4 {
            Some(a) => Some(UdpSocket::bind(a).await?),
            None => None,
        };
        let local_v4 = match (&own4, shared_v4) {
            (Some(s), _) => Some(s.local_addr()?),
            (None, true) => shared_addr,
            (None, false) => None,
        };
        let sock6 = match bind.v6 {
            None => None,
            Some(a) => {
                // The same port as IPv4 when both asked for the same (libtorrent listens on one
                // port for every socket too).
                let same_port = match (asked_v4, local_v4) {
                    (Some(asked), Some(got)) if asked.port() == a.port() => {
                        Some(SocketAddr::new(a.ip(), got.port()))
                    }
                    _ => None,
                };
                let first = same_port.unwrap_or(a);
                let r = match bind_v6(first) {
                    Err(_) if same_port.is_some() && a.port() == 0 => bind_v6(a),
                    r => r,
                };
                match r {
                    Ok(s) => Some(s),
                    Err(e) if bind.v6_optional && local_v4.is_some() => {
                        debug!(addr = %first, error = %e, "no IPv6 DHT socket; IPv4 only");
                        None
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let local_v6 = match (&sock6, shared_v6) {
            (Some(s), _) => Some(s.local_addr()?),
            (None, true) => shared_addr,
            (None, false) => None,
        };
        if local_v4.is_none() && local_v6.is_none() {
            return Err(DriverError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no address to bind the DHT to",
            )));
        }
        let origin = Instant::now();
        let seed: u64 = rand::random();
        let node = DualNode::new(
            local_v4.map(|a| config_for(&config, Family::V4, a)),
            local_v6.map(|a| config_for(&config, Family::V6, a)),
            Time::ZERO,
            seed,
            state.as_ref(),
        );
        // Everything is bound: only now is the shared socket taken.
        let taken = if shared_family.is_some() {
            shared.take().map(Sock::Shared)
        } else {
            None
        };
        let (sock4, sock6) = match shared_family {
            Some(Family::V4) => (taken, sock6.map(Sock::Own)),
            Some(Family::V6) => (own4.map(Sock::Own), taken),
            None => (own4.map(Sock::Own), sock6.map(Sock::Own)),
        };
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        tokio::spawn(run(sock4, sock6, node, origin, rx));
        Ok(Dht {
            tx,
            local_v4,
            local_v6,
        })
    }

    /// The bound UDP address: the IPv4 socket's, or the IPv6 one's when only IPv6 runs.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_v4
            .or(self.local_v6)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The IPv4 socket's address, if the IPv4 DHT runs.
    pub fn local_addr_v4(&self) -> Option<SocketAddr> {
        self.local_v4
    }

    /// The IPv6 socket's address, if the IPv6 DHT runs.
    pub fn local_addr_v6(&self) -> Option<SocketAddr> {
        self.local_v6
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| DriverError::Closed)?;
        rx.await.map_err(|_| DriverError::Closed)
    }

    /// Joins the DHT through `addrs` (each family's node through the addresses of its family);
    /// returns the size of both routing tables once the bootstrap lookups are done.
    pub async fn bootstrap(&self, addrs: Vec<SocketAddr>) -> Result<usize, DriverError> {
        Ok(self.call(|tx| Command::Bootstrap(addrs, tx)).await??)
    }

    /// Starts a `get_peers` lookup on every family that runs; the receiver yields each peer
    /// found once (IPv4 and IPv6 peers) and closes when the lookups are done.
    pub async fn get_peers(
        &self,
        info_hash: Id20,
    ) -> Result<mpsc::UnboundedReceiver<SocketAddr>, DriverError> {
        let (ptx, prx) = mpsc::unbounded_channel();
        self.call(|tx| Command::GetPeers(info_hash, ptx, tx))
            .await??;
        Ok(prx)
    }

    /// Announces `info_hash` on `port` (`None`: implied port, the DHT socket's) to the k closest
    /// nodes of each family that runs; returns when they have answered or timed out.
    pub async fn announce(
        &self,
        info_hash: Id20,
        port: Option<u16>,
    ) -> Result<AnnounceResult, DriverError> {
        Ok(self
            .call(|tx| Command::Announce(info_hash, port, tx))
            .await??)
    }

    /// The nodes closest to `target` that answered.
    pub async fn find_node(&self, target: Id20) -> Result<Vec<CompactNode>, DriverError> {
        Ok(self.call(|tx| Command::FindNode(target, tx)).await??)
    }

    /// Pings `addr`: its node id, or `None` if it did not answer in time.
    pub async fn ping(&self, addr: SocketAddr) -> Result<Option<Id20>, DriverError> {
        Ok(self.call(|tx| Command::Ping(addr, tx)).await??)
    }

    /// Sends one BEP 51 `sample_infohashes` query to `addr` (nodes wanted near `target`): the
    /// reply, or `None` after an error or a timeout. The crawler paces these calls.
    pub async fn sample_infohashes(
        &self,
        addr: SocketAddr,
        target: Id20,
    ) -> Result<Option<SampleReply>, DriverError> {
        Ok(self.call(|tx| Command::Sample(addr, target, tx)).await??)
    }

    /// The node ids and good nodes of both families, to be written with [`DhtState::encode`].
    pub async fn save_state(&self) -> Result<DhtState, DriverError> {
        self.call(Command::SaveState).await
    }

    /// A status snapshot.
    pub async fn status(&self) -> Result<DhtStatus, DriverError> {
        self.call(Command::Status).await
    }
}

type Reply<T> = oneshot::Sender<Result<T, DhtError>>;

/// Callers waiting on lookups.
#[derive(Default)]
struct Waiters {
    bootstrap: HashMap<LookupId, Reply<usize>>,
    peers: HashMap<LookupId, mpsc::UnboundedSender<SocketAddr>>,
    announce: HashMap<LookupId, (usize, Reply<AnnounceResult>)>,
    find: HashMap<LookupId, Reply<Vec<CompactNode>>>,
    pings: HashMap<SocketAddr, Vec<Reply<Option<Id20>>>>,
    samples: HashMap<LookupId, Reply<Option<SampleReply>>>,
}

fn now_of(origin: Instant) -> Time {
    Time::from_duration(origin.elapsed())
}

/// A datagram from `sock`, or never when there is no socket.
async fn recv_on(sock: Option<&mut Sock>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv(buf).await,
        None => std::future::pending().await,
    }
}

/// The IPv4 form of an IPv4-mapped IPv6 address, so it leaves from the IPv4 socket.
fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => addr,
        },
        v4 => v4,
    }
}

async fn run(
    mut sock4: Option<Sock>,
    mut sock6: Option<Sock>,
    mut node: DualNode,
    origin: Instant,
    mut rx: mpsc::Receiver<Command>,
) {
    // One byte more than accepted, so oversized datagrams are seen (and rejected) as such.
    let mut buf4 = vec![0u8; MAX_PACKET + 1];
    let mut buf6 = vec![0u8; MAX_PACKET + 1];
    let mut w = Waiters::default();
    loop {
        while let Some((to, bytes)) = node.poll_transmit() {
            let to = unmapped(to);
            let sock = match Family::of(&to) {
                Family::V4 => sock4.as_ref(),
                Family::V6 => sock6.as_ref(),
            };
            let Some(sock) = sock else {
                continue;
            };
            if let Err(e) = sock.send_to(&bytes, to).await {
                debug!(%to, error = %e, "DHT send failed");
            }
        }
        while let Some(e) = node.poll_event() {
            dispatch(&mut w, &node, e);
        }
        let deadline = origin + node.next_timeout().since_origin();
        tokio::select! {
            r = recv_on(sock4.as_mut(), &mut buf4) => match r {
                Ok((n, from)) => node.handle_packet(now_of(origin), from, &buf4[..n]),
                Err(e) => debug!(error = %e, "DHT receive failed (IPv4)"),
            },
            r = recv_on(sock6.as_mut(), &mut buf6) => match r {
                Ok((n, from)) => node.handle_packet(now_of(origin), from, &buf6[..n]),
                Err(e) => debug!(error = %e, "DHT receive failed (IPv6)"),
            },
            cmd = rx.recv() => match cmd {
                Some(c) => command(&mut node, &mut w, now_of(origin), c),
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => {}
        }
        let now = now_of(origin);
        if node.next_timeout() <= now {
            node.handle_timeout(now);
        }
    }
}

/// Nodes in both routing tables.
fn table_len(node: &DualNode) -> usize {
    [Family::V4, Family::V6]
        .iter()
        .filter_map(|f| node.table(*f))
        .map(|t| t.len())
        .sum()
}

fn command(node: &mut DualNode, w: &mut Waiters, now: Time, c: Command) {
    match c {
        Command::Bootstrap(addrs, tx) => match node.bootstrap(now, &addrs) {
            Ok(id) => {
                w.bootstrap.insert(id, tx);
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        },
        Command::GetPeers(h, ptx, tx) => match node.get_peers(now, h) {
            Ok(id) => {
                w.peers.insert(id, ptx);
                let _ = tx.send(Ok(()));
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        },
        Command::Announce(h, port, tx) => match node.announce(now, h, port) {
            Ok(id) => {
                w.announce.insert(id, (0, tx));
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        },
        Command::FindNode(t, tx) => match node.find_node(now, t) {
            Ok(id) => {
                w.find.insert(id, tx);
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        },
        Command::Ping(addr, tx) => match node.ping(now, addr) {
            Ok(()) => w.pings.entry(addr).or_default().push(tx),
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        },
        Command::Sample(addr, target, tx) => match node.sample_infohashes(now, addr, target) {
            Ok(id) => {
                w.samples.insert(id, tx);
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        },
        Command::SaveState(tx) => {
            let _ = tx.send(node.save_state(now));
        }
        Command::Status(tx) => {
            let _ = tx.send(DhtStatus {
                id: node.id(),
                table_len: table_len(node),
                table_len_v6: node.table(Family::V6).map_or(0, |t| t.len()),
                stats: node.stats(),
                lookups: node.lookups_running(),
                external_ip: node
                    .external_ip(Family::V4)
                    .or_else(|| node.external_ip(Family::V6)),
            });
        }
    }
}

fn dispatch(w: &mut Waiters, node: &DualNode, e: Event) {
    match e {
        Event::Peers { id, peers, .. } => {
            if let Some(tx) = w.peers.get(&id) {
                for p in peers {
                    let _ = tx.send(p);
                }
            } else if let Some((n, _)) = w.announce.get_mut(&id) {
                *n += peers.len();
            }
        }
        Event::LookupDone { id, closest, .. } => {
            if let Some(tx) = w.bootstrap.remove(&id) {
                let _ = tx.send(Ok(table_len(node)));
            }
            // Dropping the sender closes the caller's peer stream.
            w.peers.remove(&id);
            if let Some(tx) = w.find.remove(&id) {
                let _ = tx.send(Ok(closest));
            }
        }
        Event::AnnounceDone { id, acked, .. } => {
            if let Some((peers_found, tx)) = w.announce.remove(&id) {
                let _ = tx.send(Ok(AnnounceResult { acked, peers_found }));
            }
        }
        Event::ExternalIp { ip, id_matches } => {
            debug!(%ip, id_matches, "DHT nodes agree on our external IP");
        }
        Event::Samples { id, reply, .. } => {
            if let Some(tx) = w.samples.remove(&id) {
                let _ = tx.send(Ok(Some(reply)));
            }
        }
        Event::SampleFailed { id, .. } => {
            if let Some(tx) = w.samples.remove(&id) {
                let _ = tx.send(Ok(None));
            }
        }
        Event::Pong { addr, id } => {
            if let Some(list) = w.pings.remove(&addr) {
                for tx in list {
                    let _ = tx.send(Ok(id));
                }
            }
        }
    }
}
