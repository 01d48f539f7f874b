//! One uTP connection as a sans-IO state machine, in the style of quinn-proto's `Connection`.
//!
//! # Driving it
//!
//! The connection never reads a clock, owns no socket and never sleeps. The driver (the
//! multiplexer in [`crate::socket`], or a test) calls, in any order:
//!
//! * inputs: [`handle_datagram`](Connection::handle_datagram) (or
//!   [`handle_packet`](Connection::handle_packet)) for every datagram from the peer that belongs to
//!   this connection, [`handle_timeout`](Connection::handle_timeout) once
//!   [`poll_timeout`](Connection::poll_timeout) has passed, and the application's
//!   [`write`](Connection::write), [`read`](Connection::read), [`close`](Connection::close) and
//!   [`abort`](Connection::abort);
//! * outputs, after every input: [`poll_transmit`](Connection::poll_transmit) until it returns
//!   `None` (each datagram goes to the peer), [`poll_event`](Connection::poll_event) until `None`,
//!   then [`poll_timeout`](Connection::poll_timeout) for the next deadline.
//!
//! # Protocol
//!
//! BEP 29: the initiator picks a random receive id and sends with id + 1 (the SYN carries the
//! receive id); the acceptor mirrors that. Sequence numbers count packets; ST_STATE carries the
//! next sequence number without consuming it, so the initiator takes `seq_nr - 1` of the
//! acceptor's SYN-ACK as its `ack_nr` (as libutp and libtorrent do). Every DATA is acknowledged
//! at once (no delayed ACKs, libtorrent's default); out-of-order data is held and reported with
//! a selective ACK. Losses are detected by three duplicate ACKs, by a selective ACK showing three
//! packets sent after a missing one, or by the retransmission timeout (RFC 6298 through
//! [`RttEstimator`], Karn's rule, exponential back-off). The congestion window is [`Ledbat`]'s,
//! capped by the peer's advertised window.
//!
//! # Closing
//!
//! [`close`](Connection::close) sends a FIN after the data already written: it closes our
//! direction only; the peer's data still arrives until its own FIN ([`Event::Eof`]). When both
//! FINs are acknowledged the connection reports [`Event::Closed`] and lingers
//! ([`Config::time_wait`]) to acknowledge a retransmitted FIN, then reports itself
//! [drained](Connection::is_drained). [`abort`](Connection::abort) sends a RESET and ends at once.

use std::collections::VecDeque;
use std::time::Duration;

use shoal_core::{RttEstimator, Time};

use crate::config::Config;
use crate::error::UtpError;
use crate::ledbat::Ledbat;
use crate::mtu::{Fragmentation, MtuSearch};
use crate::packet::{sack_bit, Header, Packet, PacketType, HEADER_LEN, MAX_SACK_LEN};
use crate::recv_buffer::{Received, RecvBuffer};
use crate::send_buffer::{SendBuffer, SentPacket};
use crate::seq;

/// What the application learns from a connection, from [`Connection::poll_event`].
///
/// Exactly one of [`Closed`](Event::Closed), [`Reset`](Event::Reset) and
/// [`TimedOut`](Event::TimedOut) ends every connection; nothing follows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The handshake completed (the initiator got the SYN's answer; an acceptor is connected as
    /// soon as it exists). Writes before this are buffered.
    Connected,
    /// Data arrived for [`Connection::read`] (edge-triggered: after the buffer was empty).
    Readable,
    /// Room freed in the send buffer after a [`Connection::write`] accepted less than offered.
    Writable,
    /// The peer sent FIN and all its data has arrived: once the buffered data is read,
    /// [`Connection::read`] returns 0 for good.
    Eof,
    /// The connection ended without error.
    Closed {
        /// How.
        reason: CloseReason,
    },
    /// The peer sent ST_RESET: it has no state for this connection.
    Reset,
    /// The peer stopped answering: the SYN or a packet went unacknowledged through all its
    /// retransmissions, or an accepted connection stayed half-open too long.
    TimedOut,
}

/// How a connection ended with [`Event::Closed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Both ends sent FIN and both FINs were acknowledged.
    Graceful,
    /// Our FIN was acknowledged, but the peer then sent nothing, not even its own FIN, for
    /// [`Config::fin_linger`].
    PeerSilent,
    /// The application called [`Connection::abort`]; a RESET was sent.
    Aborted,
}

/// Which end opened the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We sent the SYN.
    Initiator,
    /// We answered a SYN.
    Acceptor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Initiator: SYN sent, no answer yet.
    SynSent,
    /// Data may flow.
    Connected,
    /// Ended (event emitted); lingering until `until` to answer retransmitted FINs.
    Closed { until: Time, over: bool },
}

/// Counters and current estimates, for logs, tests and the engine's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams produced by `poll_transmit`.
    pub packets_sent: u64,
    /// Packets handled (parsed and addressed to this connection).
    pub packets_received: u64,
    /// Payload bytes sent, retransmissions included.
    pub payload_bytes_sent: u64,
    /// Packets sent again (any cause).
    pub retransmits: u64,
    /// Losses detected by duplicate or selective ACKs.
    pub fast_retransmits: u64,
    /// Retransmission timeouts.
    pub timeouts: u64,
    /// Received DATA dropped for lack of buffer room or too far ahead.
    pub dropped_no_room: u64,
    /// Received packets ignored as malformed or out of window.
    pub invalid_packets: u64,
    /// The congestion window, bytes.
    pub cwnd: u32,
    /// The peer's advertised window, bytes.
    pub peer_window: u32,
    /// Bytes in flight.
    pub flight: u32,
    /// Payload bytes per full packet.
    pub mss: u32,
    /// Smoothed RTT, if measured.
    pub srtt: Option<Duration>,
    /// The current retransmission timeout.
    pub rto: Duration,
    /// LEDBAT's latest queuing delay estimate.
    pub queuing_delay: Option<Duration>,
    /// MTU probes sent (path MTU discovery).
    pub mtu_probes: u64,
    /// MTU probes lost: each lowered the ceiling of the search.
    pub mtu_probes_lost: u64,
}

/// One uTP connection. See the [module documentation](self) for how to drive it.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    role: Role,
    state: State,
    recv_id: u16,
    send_id: u16,
    /// Next sequence number to send.
    seq_nr: u16,
    /// Last sequence number received in order.
    ack_nr: u16,
    /// The SYN's sequence number (acceptor: to recognise a retransmitted SYN).
    syn_seq: u16,
    /// Acceptor: our first sequence number, which the SYN's answer carries.
    initial_seq: u16,
    /// Acceptor: the SYN's answer (a pure ST_STATE) is due; it goes before any data.
    syn_ack_pending: bool,
    send: SendBuffer,
    recv: RecvBuffer,
    ledbat: Ledbat,
    rtt: RttEstimator,
    /// Path MTU discovery; full packets carry `mss` bytes, its floor less the header.
    mtu: MtuSearch,
    mss: u32,
    /// How the IP layer may treat the datagram `poll_transmit` returned last.
    last_fragmentation: Fragmentation,
    flight: u32,
    inflight_packets: u32,
    /// The largest flight size in the current and the previous round trip.
    peak_flight: u32,
    prev_peak_flight: u32,
    peak_flight_until: Time,
    tx_counter: u64,
    peer_wnd: u32,
    /// Our latest one-way delay sample of the peer's packets, echoed in every header.
    reply_micro: u32,
    /// The peer's `ack_nr` in its last packet, and how many pure duplicates of it followed.
    last_peer_ack: u16,
    dup_acks: u32,
    ack_pending: bool,
    rto_deadline: Option<Time>,
    consecutive_timeouts: u32,
    /// Blocked by a zero peer window with nothing in flight since then; a probe may be sent at
    /// this time.
    zero_window_probe_at: Option<Time>,
    probe_allowed: bool,
    last_recv: Time,
    last_send: Time,
    /// Acceptor: only the SYN has been heard from the peer so far.
    half_open: bool,
    close_requested: bool,
    /// Our FIN's sequence number, once packetised.
    fin_seq: Option<u16>,
    fin_acked: bool,
    /// The peer's FIN's sequence number.
    peer_eof: Option<u16>,
    /// All the peer's data up to its FIN arrived.
    peer_finished: bool,
    reset_pending: bool,
    write_blocked: bool,
    events: VecDeque<Event>,
    stats: Stats,
}

/// Microseconds since the driver's origin, wrapped to 32 bits (BEP 29 timestamps).
fn micros(now: Time) -> u32 {
    now.since_origin().as_micros() as u32
}

impl Connection {
    fn new(config: Config, role: Role, recv_id: u16, send_id: u16, seq_nr: u16, now: Time) -> Self {
        let mtu = MtuSearch::new(config.min_datagram(), config.peer_datagram(), now);
        let mss = (mtu.datagram() - HEADER_LEN) as u32;
        Connection {
            role,
            state: State::SynSent,
            recv_id,
            send_id,
            seq_nr,
            ack_nr: 0,
            syn_seq: 0,
            initial_seq: seq_nr,
            syn_ack_pending: false,
            send: SendBuffer::new(config.send_buffer, seq_nr),
            // The peer's packets may be as large as our ceiling (its own search may go there).
            recv: RecvBuffer::new(
                config.recv_buffer,
                usize::from(config.max_reorder_packets),
                config.max_payload(),
            ),
            ledbat: Ledbat::new(config.ledbat, mss),
            rtt: RttEstimator::new(config.rtt),
            mtu,
            mss,
            last_fragmentation: Fragmentation::Default,
            flight: 0,
            inflight_packets: 0,
            peak_flight: 0,
            prev_peak_flight: 0,
            peak_flight_until: now,
            tx_counter: 0,
            // Until the peer says otherwise, one packet (it has not told us its window yet).
            peer_wnd: mss,
            reply_micro: 0,
            last_peer_ack: seq_nr.wrapping_sub(1),
            dup_acks: 0,
            ack_pending: false,
            rto_deadline: None,
            consecutive_timeouts: 0,
            zero_window_probe_at: None,
            probe_allowed: false,
            last_recv: now,
            last_send: now,
            half_open: false,
            close_requested: false,
            fin_seq: None,
            fin_acked: false,
            peer_eof: None,
            peer_finished: false,
            reset_pending: false,
            write_blocked: false,
            events: VecDeque::new(),
            stats: Stats::default(),
            config,
        }
    }

    /// Opens a connection: `recv_id` is the random id the peer will address us with (we send
    /// with `recv_id + 1`). The SYN is the first [`poll_transmit`](Self::poll_transmit).
    pub fn connect(config: Config, recv_id: u16, now: Time) -> Self {
        let mut c = Connection::new(
            config,
            Role::Initiator,
            recv_id,
            recv_id.wrapping_add(1),
            1,
            now,
        );
        c.send
            .push(SentPacket::new(PacketType::Syn, Vec::new(), now));
        c.seq_nr = 2;
        c
    }

    /// Answers a SYN (`syn` must be an ST_SYN; the multiplexer checks). `seq_nr` is our random
    /// initial sequence number. The answering ST_STATE is the first
    /// [`poll_transmit`](Self::poll_transmit); [`Event::Connected`] is queued at once.
    pub fn accept(config: Config, syn: &Header, seq_nr: u16, now: Time) -> Self {
        let mut c = Connection::new(
            config,
            Role::Acceptor,
            syn.connection_id.wrapping_add(1),
            syn.connection_id,
            seq_nr,
            now,
        );
        c.state = State::Connected;
        c.ack_nr = syn.seq_nr;
        c.syn_seq = syn.seq_nr;
        c.half_open = true;
        c.peer_wnd = syn.wnd_size;
        c.reply_micro = micros(now).wrapping_sub(syn.timestamp_us);
        c.syn_ack_pending = true;
        c.stats.packets_received = 1;
        c.events.push_back(Event::Connected);
        c
    }

    /// The id the peer addresses our packets with.
    pub fn recv_id(&self) -> u16 {
        self.recv_id
    }

    /// The id we address the peer's packets with.
    pub fn send_id(&self) -> u16 {
        self.send_id
    }

    /// Which end opened the connection.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether this accepted connection has heard nothing but the SYN yet.
    pub fn is_half_open(&self) -> bool {
        self.half_open && !self.is_closed()
    }

    /// Whether the handshake completed and the connection has not ended.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Whether the connection has ended (its final event is queued or was polled).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }

    /// Whether the connection ended, its last datagram went out, its events were polled and
    /// its linger time passed: the driver may forget it.
    pub fn is_drained(&self, now: Time) -> bool {
        match self.state {
            State::Closed { until, over } => {
                (over || now >= until)
                    && self.events.is_empty()
                    && !self.ack_pending
                    && !self.reset_pending
            }
            _ => false,
        }
    }

    /// Whether the peer's FIN arrived with everything before it.
    pub fn peer_finished(&self) -> bool {
        self.peer_finished
    }

    /// Counters and estimates.
    pub fn stats(&self) -> Stats {
        Stats {
            cwnd: self.ledbat.window(),
            peer_window: self.peer_wnd,
            flight: self.flight,
            mss: self.mss,
            srtt: self.rtt.smoothed(),
            rto: self.rto(),
            queuing_delay: self.ledbat.queuing_delay(),
            ..self.stats
        }
    }

    /// The retransmission timeout: the RFC 6298 estimate (500 ms floor, 60 s ceiling) doubled
    /// for each consecutive timeout. As in libtorrent (`packet_timeout`, `m_num_timeouts`), any
    /// valid packet from the peer clears the back-off: it proves the path alive. (RFC 6298 keeps
    /// the back-off until a fresh sample; on a lossy link, where Karn's rule withholds samples
    /// for a while, that let the timeout climb to tens of seconds between single packets.)
    fn rto(&self) -> Duration {
        let shift = self.consecutive_timeouts.min(16);
        self.rtt
            .timeout()
            .saturating_mul(1 << shift)
            .min(self.config.rtt.ceiling)
    }

    // ----- application side -----

    /// Queues application data; returns how many bytes were taken (0 when the send buffer is
    /// full: wait for [`Event::Writable`]). Errors after [`close`](Self::close) or the end.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, UtpError> {
        if self.close_requested || self.is_closed() {
            return Err(UtpError::InvalidState {
                state: if self.is_closed() {
                    "closed"
                } else {
                    "closing"
                },
                op: "write",
            });
        }
        let n = self.send.write(data);
        if n < data.len() {
            self.write_blocked = true;
        }
        Ok(n)
    }

    /// Bytes [`write`](Self::write) would accept now.
    pub fn write_capacity(&self) -> usize {
        if self.close_requested || self.is_closed() {
            0
        } else {
            self.send.free()
        }
    }

    /// Copies received data into `buf`; returns how many bytes (0 when none is buffered, for
    /// good once [`peer_finished`](Self::peer_finished)).
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let before = self.recv.free();
        let n = self.recv.read(buf);
        // Window update: the peer may be stalled on a window we reported nearly closed (below
        // the largest packet it may send).
        let packet = self.config.max_payload();
        if n > 0 && before < packet && self.recv.free() >= packet && self.is_connected() {
            self.ack_pending = true;
        }
        n
    }

    /// Bytes ready for [`read`](Self::read).
    pub fn readable(&self) -> usize {
        self.recv.readable()
    }

    /// The peer reads datagrams as large as [`Config::mtu`] allows (the application knows it,
    /// e.g. from the peer's client id; nothing in BEP 29 says it): the MTU search may go past
    /// [`Config::peer_mtu`] up to [`Config::mtu`].
    pub fn allow_large_packets(&mut self, now: Time) {
        self.mtu.raise_max(self.config.max_datagram(), now);
    }

    /// Closes our direction: a FIN follows the data already written. Idempotent.
    pub fn close(&mut self) {
        self.close_requested = true;
    }

    /// Ends the connection at once with a RESET; [`Event::Closed`] with
    /// [`CloseReason::Aborted`] follows.
    pub fn abort(&mut self, now: Time) {
        if self.is_closed() {
            return;
        }
        self.reset_pending = true;
        self.finish(
            now,
            Event::Closed {
                reason: CloseReason::Aborted,
            },
            Duration::ZERO,
        );
    }

    // ----- outputs -----

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Time> {
        if let State::Closed { until, over } = self.state {
            return (!over).then_some(until);
        }
        let mut t = self.rto_deadline;
        let mut consider = |d: Time| t = Some(t.map_or(d, |t| t.min(d)));
        if let Some(p) = self.zero_window_probe_at {
            consider(p);
        }
        if self.half_open {
            consider(self.last_recv + self.config.half_open_timeout);
        }
        if self.state == State::Connected {
            consider(self.last_send + self.config.keepalive);
            if self.fin_acked && !self.peer_finished {
                consider(self.last_recv + self.config.fin_linger);
            }
        }
        t
    }

    /// Handles the passing of time: retransmission timeouts, half-open and FIN timeouts,
    /// zero-window probes, keepalives and the end of the linger time.
    pub fn handle_timeout(&mut self, now: Time) {
        if let State::Closed { until, over } = &mut self.state {
            if now >= *until {
                *over = true;
            }
            return;
        }
        if self.half_open && now >= self.last_recv + self.config.half_open_timeout {
            self.finish(now, Event::TimedOut, Duration::ZERO);
            return;
        }
        if self.rto_deadline.is_some_and(|d| now >= d) {
            self.rto_deadline = None;
            self.consecutive_timeouts += 1;
            let limit = if self.state == State::SynSent {
                self.config.syn_resends
            } else {
                self.config.max_resends
            };
            if self.consecutive_timeouts > limit {
                self.finish(now, Event::TimedOut, Duration::ZERO);
                return;
            }
            self.stats.timeouts += 1;
            // Two timeouts in a row: perhaps the path's MTU shrank below our packets (a black
            // hole, where no ICMP comes back): back to the smallest packets and search again.
            if self.consecutive_timeouts == 2 {
                self.mtu.on_black_hole(now);
                self.mss = (self.mtu.datagram() - HEADER_LEN) as u32;
            }
            self.ledbat.on_timeout(self.mss);
            // Everything in flight is presumed lost (BEP 29: the window drops to one packet and
            // the oldest is resent first).
            for (s, p) in self.send.iter_mut() {
                if p.in_flight {
                    p.in_flight = false;
                    p.need_resend = true;
                    if self.mtu.on_lost(s, now) {
                        self.stats.mtu_probes_lost += 1;
                    }
                }
            }
            self.flight = 0;
            self.inflight_packets = 0;
        }
        if self.zero_window_probe_at.is_some_and(|d| now >= d) {
            self.zero_window_probe_at = None;
            self.probe_allowed = true;
        }
        if self.state == State::Connected {
            if self.fin_acked
                && !self.peer_finished
                && now >= self.last_recv + self.config.fin_linger
            {
                self.finish(
                    now,
                    Event::Closed {
                        reason: CloseReason::PeerSilent,
                    },
                    Duration::ZERO,
                );
                return;
            }
            if now >= self.last_send + self.config.keepalive {
                self.ack_pending = true;
            }
        }
    }

    /// How the IP layer may treat the datagram [`poll_transmit`](Self::poll_transmit) returned
    /// last: an MTU probe must not be fragmented, a lost probe sent again at its size may be.
    pub fn last_fragmentation(&self) -> Fragmentation {
        self.last_fragmentation
    }

    /// The next datagram to send to the peer, if any.
    pub fn poll_transmit(&mut self, now: Time) -> Option<Vec<u8>> {
        self.last_fragmentation = Fragmentation::Default;
        if self.reset_pending {
            self.reset_pending = false;
            return Some(self.build(now, PacketType::Reset, self.seq_nr, None, &[]));
        }
        if self.syn_ack_pending && self.state == State::Connected {
            // The SYN's answer: always a pure STATE carrying our first sequence number, so the
            // initiator learns it even if data follows and arrives first.
            self.syn_ack_pending = false;
            let ack = self.ack_nr;
            self.ack_nr = self.syn_seq;
            let out = self.build(now, PacketType::State, self.initial_seq, None, &[]);
            self.ack_nr = ack;
            return Some(out);
        }
        match self.state {
            State::Closed { .. } => {
                // Lingering: only acknowledgements of retransmitted FINs.
                if self.ack_pending {
                    self.ack_pending = false;
                    return Some(self.build(now, PacketType::State, self.seq_nr, None, &[]));
                }
                return None;
            }
            State::SynSent => {
                let (seq, _) = self.send.first_to_resend()?;
                return self.transmit_packet(now, seq, false);
            }
            State::Connected => {}
        }
        if let Some(d) = self.transmit_data(now) {
            return Some(d);
        }
        if self.ack_pending {
            self.ack_pending = false;
            let sack = self.recv.sack();
            return Some(self.build(now, PacketType::State, self.seq_nr, sack.as_deref(), &[]));
        }
        None
    }

    /// Whether a packet of `size` bytes fits the windows now. With nothing in flight one packet
    /// always fits the congestion window (BEP 29 allows this when the window is below a packet);
    /// the peer's window is only overridden by a zero-window probe.
    fn window_allows(&mut self, size: u32) -> bool {
        let cwnd_ok =
            self.flight.saturating_add(size) <= self.ledbat.window() || self.inflight_packets == 0;
        let peer_ok = self.flight.saturating_add(size) <= self.peer_wnd;
        if cwnd_ok && peer_ok {
            return true;
        }
        if cwnd_ok && self.inflight_packets == 0 {
            if self.probe_allowed {
                self.probe_allowed = false;
                return true;
            }
            if self.zero_window_probe_at.is_none() {
                self.zero_window_probe_at = Some(self.last_send.max(self.last_recv) + self.rto());
            }
        }
        false
    }

    fn transmit_data(&mut self, now: Time) -> Option<Vec<u8>> {
        // Retransmissions first, oldest first.
        if let Some((seq, p)) = self.send.first_to_resend() {
            let size = p.payload.len() as u32;
            if p.fast_resend || self.window_allows(size) {
                return self.transmit_packet(now, seq, true);
            }
            return None;
        }
        let unsent = self.send.unsent();
        if unsent > 0 && self.send.has_room_for_packet() {
            // An MTU probe: a packet larger than the floor, when enough data waits to fill it.
            if let Some(datagram) = self.mtu.probe_size(now) {
                let size = datagram - HEADER_LEN;
                if unsent >= size && self.window_allows(size as u32) {
                    let payload = self.send.take_unsent(size);
                    let seq = self.push_packet(now, PacketType::Data, payload);
                    self.mtu.probe_sent(seq, datagram);
                    self.stats.mtu_probes += 1;
                    return self.transmit_packet(now, seq, true);
                }
            }
            let size = unsent.min(self.mss as usize);
            // Nagle: a partial packet waits while others are in flight, unless we are closing.
            if size < self.mss as usize && self.inflight_packets > 0 && !self.close_requested {
                return None;
            }
            if !self.window_allows(size as u32) {
                return None;
            }
            let payload = self.send.take_unsent(size);
            let seq = self.push_packet(now, PacketType::Data, payload);
            return self.transmit_packet(now, seq, true);
        }
        if self.close_requested
            && unsent == 0
            && self.fin_seq.is_none()
            && self.send.has_room_for_packet()
        {
            let seq = self.push_packet(now, PacketType::Fin, Vec::new());
            self.fin_seq = Some(seq);
            return self.transmit_packet(now, seq, true);
        }
        None
    }

    fn push_packet(&mut self, now: Time, ty: PacketType, payload: Vec<u8>) -> u16 {
        let seq = self.send.push(SentPacket::new(ty, payload, now));
        self.seq_nr = seq.wrapping_add(1);
        seq
    }

    /// Sends (or resends) the outstanding packet `seq`, piggybacking our acknowledgement and, if
    /// it fits, a selective ACK.
    fn transmit_packet(&mut self, now: Time, seq: u16, with_sack: bool) -> Option<Vec<u8>> {
        self.tx_counter += 1;
        let tx = self.tx_counter;
        // Always present: callers pass the sequence number of an outstanding packet.
        let p = self.send.get_mut(seq)?;
        p.need_resend = false;
        p.fast_resend = false;
        p.in_flight = true;
        p.transmissions += 1;
        p.sent_at = now;
        p.tx_order = tx;
        let ty = p.ty;
        let resent = p.transmissions > 1;
        let payload = std::mem::take(&mut p.payload);
        let size = payload.len() as u32;
        self.last_fragmentation = if self.mtu.is_probe(seq) {
            Fragmentation::Forbid
        } else if HEADER_LEN + payload.len() > self.mtu.datagram() {
            // A lost probe (or a packet from before a black hole): it cannot be made smaller.
            Fragmentation::Allow
        } else {
            Fragmentation::Default
        };
        self.flight = self.flight.saturating_add(size);
        self.inflight_packets += 1;
        self.peak_flight = self.peak_flight.max(self.flight);
        if resent {
            self.stats.retransmits += 1;
        }
        self.stats.payload_bytes_sent += u64::from(size);
        let mut sack = if with_sack { self.recv.sack() } else { None };
        // Room for it within the packets the path is known to carry (never in a probe).
        let limit = self.mtu.datagram().max(HEADER_LEN + payload.len());
        if sack
            .as_ref()
            .is_some_and(|s| HEADER_LEN + 2 + s.len() + payload.len() > limit)
        {
            sack = None; // does not fit: a STATE with it follows
        } else {
            self.ack_pending = false;
        }
        let out = self.build(now, ty, seq, sack.as_deref(), &payload);
        if let Some(p) = self.send.get_mut(seq) {
            p.payload = payload;
        }
        if self.rto_deadline.is_none() {
            self.rto_deadline = Some(now + self.rto());
        }
        Some(out)
    }

    fn build(
        &mut self,
        now: Time,
        ty: PacketType,
        seq_nr: u16,
        sack: Option<&[u8]>,
        payload: &[u8],
    ) -> Vec<u8> {
        let connection_id = if ty == PacketType::Syn {
            self.recv_id
        } else {
            self.send_id
        };
        let header = Header {
            ty,
            connection_id,
            timestamp_us: micros(now),
            timestamp_diff_us: self.reply_micro,
            wnd_size: self.recv.free().min(u32::MAX as usize) as u32,
            seq_nr,
            ack_nr: self.ack_nr,
        };
        self.last_send = now;
        self.stats.packets_sent += 1;
        Packet {
            header,
            sack,
            payload,
        }
        .to_vec()
    }

    // ----- inputs -----

    /// Handles one datagram from the peer. Malformed datagrams are counted and ignored.
    pub fn handle_datagram(&mut self, now: Time, datagram: &[u8]) {
        match Packet::parse(datagram) {
            Ok(p) => self.handle_packet(now, &p),
            Err(_) => self.stats.invalid_packets += 1,
        }
    }

    /// Handles one parsed packet addressed to this connection.
    pub fn handle_packet(&mut self, now: Time, packet: &Packet<'_>) {
        let h = &packet.header;
        if let State::Closed { .. } = self.state {
            // Acknowledge a retransmitted FIN (or any sequenced packet) while lingering.
            if matches!(h.ty, PacketType::Fin | PacketType::Data) && !self.reset_pending {
                self.ack_pending = true;
            }
            return;
        }
        match h.ty {
            PacketType::Reset => {
                self.stats.packets_received += 1;
                // Everything was exchanged but our FIN's acknowledgement, and the peer has
                // forgotten the connection (its linger ended while we backed off): the streams
                // are complete both ways, which is a graceful end.
                let only_fin_left = self.fin_seq.is_some_and(|f| self.send.first_seq() == f);
                let event = if self.peer_finished && only_fin_left {
                    Event::Closed {
                        reason: CloseReason::Graceful,
                    }
                } else {
                    Event::Reset
                };
                self.finish(now, event, Duration::ZERO);
                return;
            }
            PacketType::Syn => {
                self.stats.packets_received += 1;
                // A retransmitted SYN: our STATE was lost (if the initiator had it, it would have
                // sent something else since).
                if self.role == Role::Acceptor && h.seq_nr == self.syn_seq {
                    if self.half_open {
                        // The initiator is alive and still waiting: answer, and keep the slot.
                        self.syn_ack_pending = true;
                        self.last_recv = now;
                    }
                } else {
                    self.stats.invalid_packets += 1;
                }
                return;
            }
            _ => {}
        }
        // The ack must name a packet we sent: from one before the oldest outstanding to the
        // newest. Anything else is stale or forged; drop the whole packet.
        let oldest = self.send.first_seq();
        if !(seq::le(oldest.wrapping_sub(1), h.ack_nr) && seq::lt(h.ack_nr, self.seq_nr)) {
            self.stats.invalid_packets += 1;
            return;
        }
        if self.state == State::SynSent {
            // Only the SYN's answer, a STATE carrying the acceptor's first sequence number, opens
            // the connection; anything else (data that overtook a lost STATE) is dropped and will
            // be resent.
            if h.ty != PacketType::State {
                self.stats.invalid_packets += 1;
                return;
            }
            self.ack_nr = h.seq_nr.wrapping_sub(1);
            self.state = State::Connected;
            self.events.push_back(Event::Connected);
        }
        self.stats.packets_received += 1;
        self.half_open = false;
        self.last_recv = now;
        self.consecutive_timeouts = 0;
        self.reply_micro = micros(now).wrapping_sub(h.timestamp_us);
        self.peer_wnd = h.wnd_size;
        if self.peer_wnd >= self.mss || self.flight > 0 {
            self.zero_window_probe_at = None;
        }
        self.handle_ack(now, packet);
        match h.ty {
            PacketType::Data => self.handle_data(h.seq_nr, packet.payload),
            PacketType::Fin => self.handle_fin(h.seq_nr),
            _ => {}
        }
        self.check_finished(now);
    }

    fn handle_ack(&mut self, now: Time, packet: &Packet<'_>) {
        let h = &packet.header;
        // The flight size LEDBAT's growth is capped against (RFC 6817 2.4.1): the largest in
        // the last round trip, since the acks of one window arrive in a burst and the flight
        // shrinks with each.
        if now >= self.peak_flight_until {
            self.prev_peak_flight = self.peak_flight;
            self.peak_flight = self.flight;
            self.peak_flight_until = now + self.rtt.smoothed().unwrap_or(self.rtt.timeout());
        }
        let flight_before = self.peak_flight.max(self.prev_peak_flight).max(self.flight);
        let mut acked_bytes = 0u32;
        let mut progress = false;
        while let Some(p) = self.send.pop_acked(h.ack_nr) {
            progress = true;
            let s = self.send.first_seq().wrapping_sub(1);
            if !p.sacked && self.mtu.on_acked(s, now) {
                self.mss = (self.mtu.datagram() - HEADER_LEN) as u32;
            }
            self.account_acked(now, &p, &mut acked_bytes);
            if p.ty == PacketType::Fin {
                self.fin_acked = true;
            }
        }
        let pure_dup = !progress
            && h.ty == PacketType::State
            && h.ack_nr == self.last_peer_ack
            && !self.send.is_empty();
        self.last_peer_ack = h.ack_nr;
        let mut lost = 0u32;
        if progress {
            self.dup_acks = 0;
        } else if pure_dup {
            self.dup_acks += 1;
            // BEP 29: three duplicate ACKs: ack_nr + 1 is lost. Once per episode (exactly at 3).
            if self.dup_acks == 3 {
                let s = h.ack_nr.wrapping_add(1);
                if let Some(p) = self.send.get_mut(s) {
                    if p.in_flight && !p.sacked {
                        p.in_flight = false;
                        p.need_resend = true;
                        p.fast_resend = true;
                        self.flight = self.flight.saturating_sub(p.payload.len() as u32);
                        self.inflight_packets = self.inflight_packets.saturating_sub(1);
                        self.stats.fast_retransmits += 1;
                        // A lost MTU probe says the path is narrower, not congested.
                        if self.mtu.on_lost(s, now) {
                            self.stats.mtu_probes_lost += 1;
                        } else {
                            lost += 1;
                        }
                    }
                }
            }
        }
        if let Some(mask) = packet.sack {
            lost += self.handle_sack(now, h.ack_nr, mask, &mut acked_bytes);
        }
        if lost > 0 {
            let rtt = self.rtt.smoothed().unwrap_or(self.rtt.timeout());
            self.ledbat.on_loss(now, rtt, self.mss);
        }
        let delay = Some(h.timestamp_diff_us);
        self.ledbat
            .on_ack(now, acked_bytes, delay, flight_before, self.mss);
        if progress {
            self.rto_deadline = (self.inflight_packets > 0).then(|| now + self.rto());
        }
        if self.write_blocked && self.send.free() > 0 && !self.close_requested {
            self.write_blocked = false;
            self.events.push_back(Event::Writable);
        }
    }

    fn account_acked(&mut self, now: Time, p: &SentPacket, acked_bytes: &mut u32) {
        if p.in_flight {
            self.flight = self.flight.saturating_sub(p.payload.len() as u32);
            self.inflight_packets = self.inflight_packets.saturating_sub(1);
        }
        if !p.sacked {
            *acked_bytes = acked_bytes.saturating_add(p.payload.len() as u32);
            // Karn's rule: a packet sent more than once gives no sample.
            if p.transmissions == 1 {
                self.rtt.sample(now.saturating_since(p.sent_at));
            }
        }
    }

    /// Marks selectively acknowledged packets and declares lost every unacknowledged packet that
    /// three or more packets sent after it overtook. Returns the number declared lost, MTU probes
    /// left out (their loss is no sign of congestion).
    fn handle_sack(&mut self, now: Time, ack_nr: u16, mask: &[u8], acked_bytes: &mut u32) -> u32 {
        let mask = &mask[..mask.len().min(MAX_SACK_LEN)];
        let base = ack_nr.wrapping_add(2);
        let mut samples = Vec::new();
        for i in 0..mask.len() * 8 {
            if !sack_bit(mask, i) {
                continue;
            }
            let s = base.wrapping_add(i as u16);
            if !seq::lt(s, self.seq_nr) {
                break;
            }
            let Some(p) = self.send.get_mut(s) else {
                continue;
            };
            if p.sacked {
                continue;
            }
            p.sacked = true;
            p.need_resend = false;
            if self.mtu.on_acked(s, now) {
                self.mss = (self.mtu.datagram() - HEADER_LEN) as u32;
            }
            let was_in_flight = p.in_flight;
            p.in_flight = false;
            let size = p.payload.len() as u32;
            *acked_bytes = acked_bytes.saturating_add(size);
            if p.transmissions == 1 {
                samples.push(now.saturating_since(p.sent_at));
            }
            if was_in_flight {
                self.flight = self.flight.saturating_sub(size);
                self.inflight_packets = self.inflight_packets.saturating_sub(1);
            }
        }
        for s in samples {
            self.rtt.sample(s);
        }
        // Walk from the newest down, tracking the three latest transmissions among the sacked
        // packets seen; a packet in flight older than the third of them is lost.
        let mut top = [0u64; 3];
        let mut lost = 0u32;
        let mut freed = 0u32;
        let mut freed_packets = 0u32;
        for (s, p) in self.send.iter_mut().rev() {
            if p.sacked {
                let t = p.tx_order;
                if t > top[2] {
                    top[2] = t;
                    top.sort_unstable_by(|a, b| b.cmp(a));
                }
            } else if p.in_flight && top[2] > p.tx_order {
                p.in_flight = false;
                p.need_resend = true;
                p.fast_resend = true;
                freed += p.payload.len() as u32;
                freed_packets += 1;
                self.stats.fast_retransmits += 1;
                // A lost MTU probe says the path is narrower, not congested.
                if self.mtu.on_lost(s, now) {
                    self.stats.mtu_probes_lost += 1;
                } else {
                    lost += 1;
                }
            }
        }
        self.flight = self.flight.saturating_sub(freed);
        self.inflight_packets = self.inflight_packets.saturating_sub(freed_packets);
        lost
    }

    fn handle_data(&mut self, s: u16, payload: &[u8]) {
        if let Some(eof) = self.peer_eof {
            if !seq::lt(s, eof) {
                self.stats.invalid_packets += 1;
                return;
            }
        }
        self.ack_pending = true;
        let offset = seq::distance(self.ack_nr.wrapping_add(1), s);
        if offset >= 0x8000 {
            return; // already received: re-acknowledge
        }
        let was_empty = self.recv.readable() == 0;
        match self.recv.insert(offset, payload) {
            Received::Delivered(n) => {
                self.ack_nr = self.ack_nr.wrapping_add(n);
                if was_empty && self.recv.readable() > 0 {
                    self.events.push_back(Event::Readable);
                }
            }
            Received::Buffered | Received::Duplicate => {}
            Received::Dropped => self.stats.dropped_no_room += 1,
        }
    }

    fn handle_fin(&mut self, s: u16) {
        self.ack_pending = true;
        match self.peer_eof {
            Some(eof) if eof != s => self.stats.invalid_packets += 1,
            _ => self.peer_eof = Some(s),
        }
    }

    /// Advances past the peer's FIN once everything before it arrived, and ends the connection
    /// when both directions are finished.
    fn check_finished(&mut self, now: Time) {
        if let Some(eof) = self.peer_eof {
            if !self.peer_finished && self.ack_nr.wrapping_add(1) == eof {
                self.ack_nr = eof;
                self.peer_finished = true;
                self.events.push_back(Event::Eof);
            }
        }
        if self.peer_finished && self.fin_acked {
            let linger = self.config.time_wait;
            self.finish(
                now,
                Event::Closed {
                    reason: CloseReason::Graceful,
                },
                linger,
            );
        }
    }

    fn finish(&mut self, now: Time, event: Event, linger: Duration) {
        if self.is_closed() {
            return;
        }
        self.state = State::Closed {
            until: now + linger,
            over: false,
        };
        self.rto_deadline = None;
        self.zero_window_probe_at = None;
        self.half_open = false;
        if event
            != (Event::Closed {
                reason: CloseReason::Graceful,
            })
        {
            self.ack_pending = false;
        }
        self.events.push_back(event);
    }
}
