//! The tokio driver: one task owns a UDP socket and a [`DhtNode`], moves datagrams and time in
//! and out, and serves commands from cloneable [`Dht`] handles. All protocol logic stays in the
//! sans-IO node.
//!
//! How the engine finds peers for a torrent and announces it:
//!
//! ```no_run
//! # async fn example() -> Result<(), shoal_dht::driver::DriverError> {
//! use shoal_core::Id20;
//! use shoal_dht::driver::Dht;
//! use shoal_dht::DhtConfig;
//!
//! let addr = "0.0.0.0:6881".parse().unwrap();
//! let dht = Dht::bind(addr, DhtConfig::for_addr(&addr)).await?;
//! // Saved nodes (`Dht::bind_with_state`), or the public routers (the CLI resolves them).
//! let mut routers = Vec::new();
//! for host in shoal_dht::DEFAULT_BOOTSTRAP {
//!     if let Ok(addrs) = tokio::net::lookup_host(host).await {
//!         routers.extend(addrs.filter(|a| a.is_ipv4()));
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

use shoal_core::{CompactNode, Id20, Time};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;

use crate::krpc::MAX_PACKET;
use crate::node::{DhtConfig, DhtError, DhtNode, Event, LookupId, NodeStats, SampleReply};
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
    /// Our node id.
    pub id: Id20,
    /// Nodes in the routing table.
    pub table_len: usize,
    /// Counters.
    pub stats: NodeStats,
    /// Lookups running.
    pub lookups: usize,
    /// Our external IP, once two nodes agree on it.
    pub external_ip: Option<IpAddr>,
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
    local_addr: SocketAddr,
}

/// Commands queued to the driver before senders wait.
const COMMAND_QUEUE: usize = 64;

impl Dht {
    /// Binds `addr` and starts a node with a fresh id (or the id of `state`) on the current tokio
    /// runtime.
    pub async fn bind(addr: SocketAddr, config: DhtConfig) -> Result<Dht, DriverError> {
        Self::bind_with_state(addr, config, None).await
    }

    /// Like [`bind`](Self::bind), restoring the id and known nodes of a saved state.
    ///
    /// On a loopback address the one-node-per-IP rule is turned off whatever `config` says:
    /// every node there shares 127.0.0.0/8.
    pub async fn bind_with_state(
        addr: SocketAddr,
        mut config: DhtConfig,
        state: Option<DhtState>,
    ) -> Result<Dht, DriverError> {
        let socket = UdpSocket::bind(addr).await?;
        let local_addr = socket.local_addr()?;
        if local_addr.ip().is_loopback() {
            config.routing.restrict_ips = false;
        }
        let origin = Instant::now();
        let seed: u64 = rand::random();
        let node = match state {
            Some(s) => DhtNode::from_state(config, Time::ZERO, seed, &s),
            None => DhtNode::new(config, Time::ZERO, seed),
        };
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        tokio::spawn(run(socket, node, origin, rx));
        Ok(Dht { tx, local_addr })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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

    /// Joins the DHT through `addrs`; returns the routing table size once the bootstrap lookup
    /// is done.
    pub async fn bootstrap(&self, addrs: Vec<SocketAddr>) -> Result<usize, DriverError> {
        Ok(self.call(|tx| Command::Bootstrap(addrs, tx)).await??)
    }

    /// Starts a `get_peers` lookup; the receiver yields each peer found once and closes when the
    /// lookup is done.
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
    /// nodes; returns when they have answered or timed out.
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

    /// The node id and good nodes, to be written with [`DhtState::encode`].
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

async fn run(
    socket: UdpSocket,
    mut node: DhtNode,
    origin: Instant,
    mut rx: mpsc::Receiver<Command>,
) {
    // One byte more than accepted, so oversized datagrams are seen (and rejected) as such.
    let mut buf = vec![0u8; MAX_PACKET + 1];
    let mut w = Waiters::default();
    loop {
        while let Some((to, bytes)) = node.poll_transmit() {
            if let Err(e) = socket.send_to(&bytes, to).await {
                debug!(%to, error = %e, "DHT send failed");
            }
        }
        while let Some(e) = node.poll_event() {
            dispatch(&mut w, &node, e);
        }
        let deadline = origin + node.next_timeout().since_origin();
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => node.handle_packet(now_of(origin), from, &buf[..n]),
                Err(e) => debug!(error = %e, "DHT receive failed"),
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

fn command(node: &mut DhtNode, w: &mut Waiters, now: Time, c: Command) {
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
                table_len: node.table().len(),
                stats: node.stats(),
                lookups: node.lookups_running(),
                external_ip: node.external_ip(),
            });
        }
    }
}

fn dispatch(w: &mut Waiters, node: &DhtNode, e: Event) {
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
                let _ = tx.send(Ok(node.table().len()));
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
