//! Many uTP connections over one UDP socket, sans-IO: the multiplexer the engine's driver feeds
//! with every uTP datagram of its UDP socket (the one it shares with the DHT; see
//! [`looks_like_utp`]).
//!
//! Connections are keyed by (remote address, the connection id the peer addresses us with). A
//! SYN for an unknown key opens an accepted connection, within two bounds: the number of
//! connections ([`SocketConfig::max_connections`]) and the number of accepted connections still
//! half-open, i.e. that heard nothing after the SYN ([`SocketConfig::max_half_open`]) — the
//! SYN-flood bound: a flood of spoofed SYNs fills at most that many slots, each for at most
//! [`Config::half_open_timeout`], and costs one 20-byte answer per SYN. A non-SYN packet for an
//! unknown connection is answered with ST_RESET (as libtorrent does), through a bounded queue.
//!
//! # Driving it
//!
//! Like [`Connection`]: [`handle_datagram`](UtpSocket::handle_datagram),
//! [`handle_timeout`](UtpSocket::handle_timeout), [`connect`](UtpSocket::connect) and the
//! application's calls through [`connection`](UtpSocket::connection) are inputs; after each,
//! drain [`poll_transmit`](UtpSocket::poll_transmit), [`accept`](UtpSocket::accept) and
//! [`poll_event`](UtpSocket::poll_event), and sleep until
//! [`poll_timeout`](UtpSocket::poll_timeout). Connections that ended are forgotten once drained;
//! their handles then name nothing.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_core::Time;

use crate::config::Config;
use crate::connection::{Connection, Event};
use crate::error::UtpError;
use crate::mtu::Fragmentation;
use crate::packet::{Header, Packet, PacketType, VERSION};

/// Names a connection of a [`UtpSocket`]. Never reused within one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionHandle(pub u64);

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub destination: SocketAddr,
    /// The bytes.
    pub contents: Vec<u8>,
    /// Whether the IP layer may fragment it (MTU probes must not be; see [`crate::mtu`]).
    pub fragmentation: Fragmentation,
}

/// The bounds and tunables of a [`UtpSocket`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SocketConfig {
    /// Each connection's configuration.
    pub connection: Config,
    /// Whether SYNs are accepted at all.
    pub accept: bool,
    /// The most connections, outgoing and accepted. 512: libtorrent's default
    /// `connections_limit` is 200 peers per session, and uTP is only part of them.
    pub max_connections: usize,
    /// The most accepted connections that have heard nothing after the SYN. 32.
    pub max_half_open: usize,
    /// The most RESETs (answers to packets for unknown connections) queued at once; the rest are
    /// not answered. 64.
    pub max_pending_resets: usize,
    /// The MTU search's ceiling ([`Config::mtu`]) for connections with a loopback address, whose
    /// interface carries far larger packets than Ethernet (Linux's `lo`: 65536). Larger packets
    /// mean fewer of them per byte: loopback transfers are bound by per-packet costs. Used only
    /// once the application allows it for a peer known to read such datagrams
    /// ([`Connection::allow_large_packets`]; [`Config::peer_mtu`] until then).
    pub loopback_mtu: u16,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            connection: Config::default(),
            accept: true,
            max_connections: 512,
            max_half_open: 32,
            max_pending_resets: 64,
            loopback_mtu: LOOPBACK_MTU,
        }
    }
}

/// The default [`SocketConfig::loopback_mtu`]: 65535, the most an IPv4 packet can be (Linux's
/// `lo` has an MTU of 65536). Measured (`benches/utp.py`, 256 MiB shoal->shoal, release): 1500
/// ran at 65-79 MB/s, 9000 at 132-147, 16384 at 174-196, 65535 at 215-220 (TCP: ~210).
pub const LOOPBACK_MTU: u16 = u16::MAX;

/// Whether a datagram on a shared UDP socket is uTP rather than KRPC: a uTP version 1 header
/// with a known type. (KRPC messages are bencoded dictionaries and start with `d`, 0x64, whose
/// low nibble is 4: never uTP version 1.)
pub fn looks_like_utp(datagram: &[u8]) -> bool {
    datagram.len() >= crate::packet::HEADER_LEN
        && datagram[0] & 0x0f == VERSION
        && datagram[0] >> 4 <= PacketType::Syn as u8
}

struct Entry {
    remote: SocketAddr,
    conn: Connection,
    deadline: Option<Time>,
}

/// The multiplexer. See the [module documentation](self).
pub struct UtpSocket {
    config: SocketConfig,
    rng: StdRng,
    next_handle: u64,
    conns: HashMap<ConnectionHandle, Entry>,
    /// (remote, the id the peer addresses us with) -> connection.
    by_key: HashMap<(SocketAddr, u16), ConnectionHandle>,
    /// (remote, the id we address the peer with) -> connection, to match a RESET that carries
    /// our send id.
    by_send_id: HashMap<(SocketAddr, u16), ConnectionHandle>,
    /// Deadlines of all connections, earliest first.
    timers: BTreeSet<(Time, ConnectionHandle)>,
    /// Connections that may have something to send, round robin.
    dirty: VecDeque<ConnectionHandle>,
    dirty_set: HashSet<ConnectionHandle>,
    half_open: HashSet<ConnectionHandle>,
    accept_queue: VecDeque<ConnectionHandle>,
    events: VecDeque<(ConnectionHandle, Event)>,
    resets: VecDeque<Transmit>,
    /// The latest time handed to any input.
    last_now: Time,
}

impl UtpSocket {
    /// A socket; `seed` seeds the connection ids and initial sequence numbers (use a random
    /// seed outside tests).
    pub fn new(config: SocketConfig, seed: u64) -> Self {
        UtpSocket {
            config,
            rng: StdRng::seed_from_u64(seed),
            next_handle: 0,
            conns: HashMap::new(),
            by_key: HashMap::new(),
            by_send_id: HashMap::new(),
            timers: BTreeSet::new(),
            dirty: VecDeque::new(),
            dirty_set: HashSet::new(),
            half_open: HashSet::new(),
            accept_queue: VecDeque::new(),
            events: VecDeque::new(),
            resets: VecDeque::new(),
            last_now: Time::ZERO,
        }
    }

    /// How many connections are held (ended ones until drained).
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether no connection is held.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// How many accepted connections are half-open.
    pub fn half_open(&self) -> usize {
        self.half_open.len()
    }

    /// Opens a connection to `remote`; its SYN is in the next [`poll_transmit`](Self::poll_transmit).
    pub fn connect(&mut self, now: Time, remote: SocketAddr) -> Result<ConnectionHandle, UtpError> {
        self.last_now = self.last_now.max(now);
        if self.conns.len() >= self.config.max_connections {
            return Err(UtpError::ConnectionLimit {
                max: self.config.max_connections,
            });
        }
        // The peer will address us with recv_id; pick one free for this peer.
        let recv_id = (0..16)
            .map(|_| self.rng.random::<u16>())
            .find(|id| !self.by_key.contains_key(&(remote, *id)))
            .ok_or(UtpError::NoConnectionId)?;
        let conn = Connection::connect(self.connection_config(remote), recv_id, now);
        Ok(self.insert(now, remote, conn))
    }

    /// The configuration of a connection with `remote`: a higher MTU ceiling on loopback.
    fn connection_config(&self, remote: SocketAddr) -> Config {
        let mut c = self.config.connection;
        if remote.ip().is_loopback() {
            c.mtu = c.mtu.max(self.config.loopback_mtu);
        }
        c
    }

    fn insert(&mut self, now: Time, remote: SocketAddr, conn: Connection) -> ConnectionHandle {
        let handle = ConnectionHandle(self.next_handle);
        self.next_handle += 1;
        self.by_key.insert((remote, conn.recv_id()), handle);
        self.by_send_id.insert((remote, conn.send_id()), handle);
        self.conns.insert(
            handle,
            Entry {
                remote,
                conn,
                deadline: None,
            },
        );
        self.after(now, handle);
        handle
    }

    /// The connection behind `handle`, for the application's `write`, `read`, `close` and
    /// `stats`. Marks it as possibly having something to send.
    pub fn connection(&mut self, handle: ConnectionHandle) -> Option<&mut Connection> {
        if !self.conns.contains_key(&handle) {
            return None;
        }
        self.mark_dirty(handle);
        self.conns.get_mut(&handle).map(|e| &mut e.conn)
    }

    /// The remote address of a connection.
    pub fn remote(&self, handle: ConnectionHandle) -> Option<SocketAddr> {
        self.conns.get(&handle).map(|e| e.remote)
    }

    /// The next accepted connection not yet taken.
    pub fn accept(&mut self) -> Option<ConnectionHandle> {
        while let Some(h) = self.accept_queue.pop_front() {
            if self.conns.contains_key(&h) {
                return Some(h);
            }
        }
        None
    }

    /// The next event of any connection.
    pub fn poll_event(&mut self) -> Option<(ConnectionHandle, Event)> {
        if self.events.is_empty() {
            // Events the application's own calls caused (`abort`, say) before any transmit.
            let dirty: Vec<ConnectionHandle> = self.dirty.iter().copied().collect();
            for h in dirty {
                if let Some(e) = self.conns.get_mut(&h) {
                    while let Some(ev) = e.conn.poll_event() {
                        self.events.push_back((h, ev));
                    }
                }
            }
        }
        let ev = self.events.pop_front();
        if let Some((h, _)) = ev {
            // Its last event taken: an ended connection may now be forgotten.
            self.reap_if_drained(h, self.last_now);
        }
        ev
    }

    /// The earliest deadline of any connection.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Runs every connection whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Time) {
        self.last_now = self.last_now.max(now);
        // Each expired connection runs once per call: a deadline that stays due (a keepalive
        // waiting for `poll_transmit`) must not spin this loop.
        let due: Vec<(Time, ConnectionHandle)> = self
            .timers
            .range(..=(now, ConnectionHandle(u64::MAX)))
            .copied()
            .collect();
        for (t, h) in due {
            self.timers.remove(&(t, h));
            if let Some(e) = self.conns.get_mut(&h) {
                e.deadline = None;
                e.conn.handle_timeout(now);
            }
            self.after(now, h);
        }
    }

    /// Handles one datagram from `remote`. Errors say why it was dropped (malformed, or a SYN
    /// refused by a bound); they concern that datagram only.
    pub fn handle_datagram(
        &mut self,
        now: Time,
        remote: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), UtpError> {
        self.last_now = self.last_now.max(now);
        let packet = Packet::parse(datagram)?;
        let h = packet.header;
        if h.ty == PacketType::Syn {
            return self.handle_syn(now, remote, &packet);
        }
        let handle = match self.by_key.get(&(remote, h.connection_id)) {
            Some(&handle) => Some(handle),
            // A RESET may carry the id we send with (libtorrent answers with the id it received).
            None if h.ty == PacketType::Reset => {
                self.by_send_id.get(&(remote, h.connection_id)).copied()
            }
            None => None,
        };
        match handle {
            Some(handle) => {
                if let Some(e) = self.conns.get_mut(&handle) {
                    e.conn.handle_packet(now, &packet);
                }
                self.after(now, handle);
            }
            None if h.ty != PacketType::Reset => self.queue_reset(now, remote, &h),
            None => {}
        }
        Ok(())
    }

    fn handle_syn(
        &mut self,
        now: Time,
        remote: SocketAddr,
        packet: &Packet<'_>,
    ) -> Result<(), UtpError> {
        let h = packet.header;
        let key = (remote, h.connection_id.wrapping_add(1));
        if let Some(&handle) = self.by_key.get(&key) {
            // A retransmitted SYN: the connection answers it again.
            if let Some(e) = self.conns.get_mut(&handle) {
                e.conn.handle_packet(now, packet);
            }
            self.after(now, handle);
            return Ok(());
        }
        if !self.config.accept {
            self.queue_reset(now, remote, &h);
            return Ok(());
        }
        if self.conns.len() >= self.config.max_connections {
            self.queue_reset(now, remote, &h);
            return Err(UtpError::ConnectionLimit {
                max: self.config.max_connections,
            });
        }
        if self.half_open.len() >= self.config.max_half_open {
            // No answer: under a flood, answering costs as much as the flood.
            return Err(UtpError::HalfOpenLimit {
                max: self.config.max_half_open,
            });
        }
        let seq_nr = self.rng.random::<u16>();
        let conn = Connection::accept(self.connection_config(remote), &h, seq_nr, now);
        let handle = self.insert(now, remote, conn);
        self.accept_queue.push_back(handle);
        Ok(())
    }

    fn queue_reset(&mut self, now: Time, remote: SocketAddr, h: &Header) {
        if self.resets.len() >= self.config.max_pending_resets {
            return;
        }
        let header = Header {
            ty: PacketType::Reset,
            connection_id: h.connection_id,
            timestamp_us: now.since_origin().as_micros() as u32,
            timestamp_diff_us: 0,
            wnd_size: 0,
            seq_nr: self.rng.random(),
            ack_nr: h.seq_nr,
        };
        let contents = Packet {
            header,
            sack: None,
            payload: &[],
        }
        .to_vec();
        self.resets.push_back(Transmit {
            destination: remote,
            contents,
            fragmentation: Fragmentation::Default,
        });
    }

    /// The next datagram to send, from any connection (round robin) or a RESET.
    pub fn poll_transmit(&mut self, now: Time) -> Option<Transmit> {
        self.last_now = self.last_now.max(now);
        if let Some(t) = self.resets.pop_front() {
            return Some(t);
        }
        while let Some(handle) = self.dirty.pop_front() {
            let Some(e) = self.conns.get_mut(&handle) else {
                self.dirty_set.remove(&handle);
                continue;
            };
            match e.conn.poll_transmit(now) {
                Some(contents) => {
                    let destination = e.remote;
                    let fragmentation = e.conn.last_fragmentation();
                    // It may have more: back of the queue, so others get their turn.
                    self.dirty.push_back(handle);
                    self.after_transmit(now, handle);
                    return Some(Transmit {
                        destination,
                        contents,
                        fragmentation,
                    });
                }
                None => {
                    self.dirty_set.remove(&handle);
                    self.after_transmit(now, handle);
                }
            }
        }
        None
    }

    fn mark_dirty(&mut self, handle: ConnectionHandle) {
        if self.dirty_set.insert(handle) {
            self.dirty.push_back(handle);
        }
    }

    /// Bookkeeping after a connection changed by an input: events out, timer updated, half-open
    /// set, removal when drained; and it may now have something to send.
    fn after(&mut self, now: Time, handle: ConnectionHandle) {
        self.mark_dirty(handle);
        self.after_transmit(now, handle);
    }

    fn after_transmit(&mut self, now: Time, handle: ConnectionHandle) {
        let Some(e) = self.conns.get_mut(&handle) else {
            return;
        };
        while let Some(ev) = e.conn.poll_event() {
            self.events.push_back((handle, ev));
        }
        let deadline = e.conn.poll_timeout();
        if deadline != e.deadline {
            if let Some(old) = e.deadline {
                self.timers.remove(&(old, handle));
            }
            if let Some(new) = deadline {
                self.timers.insert((new, handle));
            }
            e.deadline = deadline;
        }
        if e.conn.is_half_open() {
            self.half_open.insert(handle);
        } else {
            self.half_open.remove(&handle);
        }
        self.reap_if_drained(handle, now);
    }

    fn reap_if_drained(&mut self, handle: ConnectionHandle, now: Time) {
        let Some(e) = self.conns.get(&handle) else {
            return;
        };
        // A connection's events are handed over only when polled; keep it until then.
        if self.events.iter().any(|(h, _)| *h == handle) {
            return;
        }
        if !e.conn.is_drained(now) {
            return;
        }
        if let Some(e) = self.conns.remove(&handle) {
            self.by_key.remove(&(e.remote, e.conn.recv_id()));
            let send_key = (e.remote, e.conn.send_id());
            if self.by_send_id.get(&send_key) == Some(&handle) {
                self.by_send_id.remove(&send_key);
            }
            if let Some(d) = e.deadline {
                self.timers.remove(&(d, handle));
            }
            self.half_open.remove(&handle);
            self.dirty_set.remove(&handle);
        }
    }
}
