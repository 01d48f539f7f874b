//! Two uTP endpoints joined by a simulated link: deterministic (seeded rng), virtual time, no
//! sockets and no sleeping. The link loses, duplicates, delays and reorders datagrams, and can
//! have a rate-limited bottleneck with a tail-drop queue.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_core::Time;
use shoal_utp::{
    CloseReason, Config, ConnectionHandle, Event, Header, Packet, PacketType, SocketConfig,
    UtpError, UtpSocket,
};

/// One direction of the link.
#[derive(Clone, Copy, Debug)]
struct LinkParams {
    /// Propagation delay.
    delay: Duration,
    /// Uniform extra delay in `0..jitter` (reorders packets closer than that).
    jitter: Duration,
    /// Probability a datagram is lost.
    loss: f64,
    /// Probability a datagram is delivered twice.
    dup: f64,
    /// Probability a datagram is held back an extra `reorder_delay` (overtaken by later ones).
    reorder: f64,
    reorder_delay: Duration,
    /// Bottleneck rate in bytes per second; `None` for infinite.
    rate: Option<u64>,
    /// The bottleneck's queue, as the longest wait before transmission; more is dropped.
    queue: Duration,
}

impl LinkParams {
    fn clean(delay_ms: u64) -> Self {
        LinkParams {
            delay: Duration::from_micros(delay_ms * 1000),
            jitter: Duration::ZERO,
            loss: 0.0,
            dup: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            rate: None,
            queue: Duration::from_secs(1),
        }
    }
}

/// A datagram on the wire: (arrival, tie-break, destination, bytes).
type InTransit = (Time, u64, usize, Vec<u8>);

struct Sim {
    now: Time,
    rng: StdRng,
    sockets: [UtpSocket; 2],
    addrs: [SocketAddr; 2],
    links: [LinkParams; 2],
    /// When each direction's bottleneck finishes sending what it has queued.
    busy_until: [Time; 2],
    wire: BinaryHeap<Reverse<InTransit>>,
    counter: u64,
    /// Set to cut both directions (a peer that vanished).
    cut: bool,
    /// Queue waits at the bottleneck of direction 0 (time, wait) for DATA packets.
    queue_waits: Vec<(Time, Duration)>,
    datagrams: [u64; 2],
}

impl Sim {
    fn new(seed: u64, config: SocketConfig, a_to_b: LinkParams, b_to_a: LinkParams) -> Self {
        Sim {
            now: Time::ZERO,
            rng: StdRng::seed_from_u64(seed),
            sockets: [
                UtpSocket::new(config, seed ^ 0xa),
                UtpSocket::new(config, seed ^ 0xb),
            ],
            addrs: [
                "10.0.0.1:6881".parse().unwrap(),
                "10.0.0.2:6881".parse().unwrap(),
            ],
            links: [a_to_b, b_to_a],
            busy_until: [Time::ZERO; 2],
            wire: BinaryHeap::new(),
            counter: 0,
            cut: false,
            queue_waits: Vec::new(),
            datagrams: [0; 2],
        }
    }

    fn send(&mut self, from: usize, bytes: Vec<u8>) {
        self.datagrams[from] += 1;
        if std::env::var("UTP_TRACE").is_ok() {
            let p = Packet::parse(&bytes).unwrap();
            eprintln!(
                "{:?} {from}-> {:?} seq {} ack {} len {} sack {:?}",
                self.now,
                p.header.ty,
                p.header.seq_nr,
                p.header.ack_nr,
                p.payload.len(),
                p.sack
            );
        }
        if self.cut {
            return;
        }
        let link = self.links[from];
        if self.rng.random_bool(link.loss) {
            return;
        }
        let copies = if self.rng.random_bool(link.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let mut depart = self.now;
            if let Some(rate) = link.rate {
                // Serialisation at the bottleneck, after what is queued; tail drop.
                let start = self.busy_until[from].max(self.now);
                let wait = start - self.now;
                if wait > link.queue {
                    return;
                }
                let tx = Duration::from_nanos(bytes.len() as u64 * 1_000_000_000 / rate);
                depart = start + tx;
                self.busy_until[from] = depart;
                if from == 0 && bytes.len() > 100 {
                    self.queue_waits.push((self.now, wait));
                }
            }
            let mut arrive = depart + link.delay;
            if !link.jitter.is_zero() {
                arrive += link.jitter.mul_f64(self.rng.random::<f64>());
            }
            if self.rng.random_bool(link.reorder) {
                arrive += link.reorder_delay;
            }
            self.counter += 1;
            self.wire
                .push(Reverse((arrive, self.counter, 1 - from, bytes.clone())));
        }
    }

    /// Moves every pending datagram from both sockets onto the link.
    fn flush(&mut self) {
        for i in 0..2 {
            while let Some(t) = self.sockets[i].poll_transmit(self.now) {
                assert_eq!(t.destination, self.addrs[1 - i]);
                self.send(i, t.contents);
            }
        }
    }

    /// Advances virtual time to the next arrival or deadline and handles it. False when
    /// nothing is left to happen.
    fn step(&mut self) -> bool {
        let mut next = self.wire.peek().map(|Reverse((t, ..))| *t);
        for s in &self.sockets {
            if let Some(t) = s.poll_timeout() {
                next = Some(next.map_or(t, |n: Time| n.min(t)));
            }
        }
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        while let Some(Reverse((t, ..))) = self.wire.peek() {
            if *t > self.now {
                break;
            }
            let Some(Reverse((_, _, to, bytes))) = self.wire.pop() else {
                break;
            };
            let from = self.addrs[1 - to];
            let _ = self.sockets[to].handle_datagram(self.now, from, &bytes);
        }
        for s in &mut self.sockets {
            if s.poll_timeout().is_some_and(|t| t <= self.now) {
                s.handle_timeout(self.now);
            }
        }
        true
    }
}

/// The byte at stream offset `i` (direction `dir`): not periodic at any packet size.
fn pattern(dir: usize, i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i / 251) as u8 ^ (dir as u8 * 0x5a)
}

/// One end's view of a transfer.
#[derive(Default, Debug)]
struct End {
    handle: Option<ConnectionHandle>,
    written: u64,
    received: u64,
    eof: bool,
    closed: bool,
    end: Option<Event>,
    end_time: Option<Time>,
    connected: bool,
}

struct Outcome {
    ends: [End; 2],
    time: Time,
}

/// Runs a transfer of `sizes[0]` bytes from A to B and `sizes[1]` from B to A; each end closes
/// once it wrote everything; readers check every byte. `cut_at`: virtual time at which the
/// link is cut. Stops when both ends ended or at `limit`.
fn run(sim: &mut Sim, sizes: [u64; 2], limit: Time, cut_at: Option<Time>) -> Outcome {
    let mut ends = [End::default(), End::default()];
    ends[0].handle = Some(sim.sockets[0].connect(sim.now, sim.addrs[1]).unwrap());
    let mut buf = vec![0u8; 64 * 1024];
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if cut_at.is_some_and(|t| sim.now >= t) {
            sim.cut = true;
        }
        if ends[1].handle.is_none() {
            ends[1].handle = sim.sockets[1].accept();
        }
        for i in 0..2 {
            while let Some((h, ev)) = sim.sockets[i].poll_event() {
                assert_eq!(Some(h), ends[i].handle, "event for an unknown connection");
                match ev {
                    Event::Connected => ends[i].connected = true,
                    Event::Eof => ends[i].eof = true,
                    Event::Readable | Event::Writable => {}
                    other => {
                        assert!(ends[i].end.is_none(), "two final events");
                        ends[i].end = Some(other);
                        ends[i].end_time = Some(sim.now);
                    }
                }
            }
            let Some(h) = ends[i].handle else { continue };
            let Some(c) = sim.sockets[i].connection(h) else {
                continue;
            };
            // Write.
            while ends[i].connected
                && ends[i].end.is_none()
                && !ends[i].closed
                && ends[i].written < sizes[i]
            {
                let n = (sizes[i] - ends[i].written).min(chunk.len() as u64) as usize;
                for (k, b) in chunk[..n].iter_mut().enumerate() {
                    *b = pattern(i, ends[i].written + k as u64);
                }
                let w = c.write(&chunk[..n]).unwrap();
                ends[i].written += w as u64;
                if w < n {
                    break;
                }
            }
            if ends[i].written == sizes[i] && !ends[i].closed && ends[i].connected {
                c.close();
                ends[i].closed = true;
            }
            // Read and check.
            loop {
                let n = c.read(&mut buf);
                if n == 0 {
                    break;
                }
                for (k, b) in buf[..n].iter().enumerate() {
                    let off = ends[i].received + k as u64;
                    assert_eq!(*b, pattern(1 - i, off), "end {i}: wrong byte at {off}");
                }
                ends[i].received += n as u64;
                assert!(ends[i].received <= sizes[1 - i], "end {i}: too many bytes");
            }
        }
        sim.flush();
        if ends.iter().all(|e| e.end.is_some()) || sim.now > limit {
            break;
        }
        if !sim.step() {
            break;
        }
    }
    Outcome {
        ends,
        time: sim.now,
    }
}

fn assert_clean(o: &Outcome, sizes: [u64; 2]) {
    for i in 0..2 {
        let e = &o.ends[i];
        assert_eq!(e.received, sizes[1 - i], "end {i} received");
        assert!(e.eof, "end {i} saw no EOF");
        assert_eq!(
            e.end,
            Some(Event::Closed {
                reason: CloseReason::Graceful
            }),
            "end {i} at {:?}",
            o.time
        );
    }
}

fn lossy(delay_ms: u64, loss: f64, dup: f64, reorder: f64) -> LinkParams {
    LinkParams {
        delay: Duration::from_millis(delay_ms),
        jitter: Duration::from_millis(delay_ms / 4 + 1),
        loss,
        dup,
        reorder,
        reorder_delay: Duration::from_millis(delay_ms + 5),
        rate: None,
        queue: Duration::from_secs(1),
    }
}

#[test]
fn clean_link_transfer_both_directions() {
    let sizes = [1 << 20, 300_000];
    let mut sim = Sim::new(
        1,
        SocketConfig::default(),
        LinkParams::clean(10),
        LinkParams::clean(10),
    );
    let o = run(&mut sim, sizes, Time::from_secs(60), None);
    assert_clean(&o, sizes);
}

#[test]
fn several_mib_through_loss_duplication_and_reordering() {
    let sizes = [4 << 20, 1 << 20];
    let link = lossy(20, 0.03, 0.02, 0.05);
    let mut sim = Sim::new(7, SocketConfig::default(), link, link);
    let o = run(&mut sim, sizes, Time::from_secs(600), None);
    assert_clean(&o, sizes);
    let s = sim.sockets[0].len();
    assert!(s <= 1, "{s}");
    println!(
        "4 MiB + 1 MiB over 3 % loss, 2 % dup, 5 % reorder, 40 ms RTT: {:?} virtual, {} + {} datagrams",
        o.time, sim.datagrams[0], sim.datagrams[1]
    );
}

proptest! {
    // Seeded like every simulation here: the same cases on every run.
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_0029),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever the link does, every byte arrives exactly once and in order, and both ends
    /// close gracefully.
    ///
    /// The connections tolerate 8 consecutive timeouts here instead of the default 3 (2 for
    /// the SYN; libtorrent's), and the acceptor waits for the handshake as long: with 3, a packet or its acknowledgement lost four times in a row ends
    /// the connection by design (`vanished_peer_times_out_in_bounded_time` tests that bound),
    /// and at 15 % loss each way that happens in a few runs out of a hundred. The property
    /// under test is the stream's integrity and the close handshake, not the give-up policy.
    #[test]
    fn stream_arrives_exactly_once_in_order(
        seed: u64,
        delay_ms in 1u64..60,
        loss in 0.0f64..0.15,
        dup in 0.0f64..0.1,
        reorder in 0.0f64..0.2,
        a_to_b in 0u64..1_000_000,
        b_to_a in 0u64..200_000,
    ) {
        let sizes = [a_to_b, b_to_a];
        let link = lossy(delay_ms, loss, dup, reorder);
        let config = SocketConfig {
            connection: Config {
                max_resends: 8,
                syn_resends: 8,
                half_open_timeout: Duration::from_secs(600),
                ..Config::default()
            },
            ..SocketConfig::default()
        };
        let mut sim = Sim::new(seed, config, link, link);
        let o = run(&mut sim, sizes, Time::from_secs(3600), None);
        assert_clean(&o, sizes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_0030),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The same with the default configuration (libtorrent's 3 resends) on a mildly lossy link.
    #[test]
    fn stream_arrives_with_default_config(
        seed: u64,
        delay_ms in 1u64..100,
        loss in 0.0f64..0.03,
        dup in 0.0f64..0.05,
        reorder in 0.0f64..0.1,
        a_to_b in 0u64..1_000_000,
        b_to_a in 0u64..200_000,
    ) {
        let sizes = [a_to_b, b_to_a];
        let link = lossy(delay_ms, loss, dup, reorder);
        let mut sim = Sim::new(seed, SocketConfig::default(), link, link);
        let o = run(&mut sim, sizes, Time::from_secs(3600), None);
        assert_clean(&o, sizes);
    }
}

#[test]
fn vanished_peer_times_out_in_bounded_time() {
    let mut sim = Sim::new(
        3,
        SocketConfig::default(),
        LinkParams::clean(25),
        LinkParams::clean(25),
    );
    let cut = Time::from_secs(2);
    let o = run(&mut sim, [64 << 20, 0], Time::from_secs(600), Some(cut));
    let a = &o.ends[0];
    assert_eq!(a.end, Some(Event::TimedOut));
    let took = a.end_time.unwrap() - cut;
    println!("sender timed out {took:?} after the peer vanished");
    // 4 RTOs from the 500 ms floor, doubling: 0.5 + 1 + 2 + 4 = 7.5 s, plus slack for the RTO
    // at the time of the cut.
    assert!(took < Duration::from_secs(20), "{took:?}");
    // The receiver, with nothing in flight, only notices through the application's own
    // timeouts; it must not have ended in error.
    assert!(!matches!(o.ends[1].end, Some(Event::Reset)));
}

#[test]
fn connect_to_nobody_times_out_after_syn_resends() {
    let mut sim = Sim::new(
        4,
        SocketConfig::default(),
        LinkParams::clean(5),
        LinkParams::clean(5),
    );
    sim.cut = true;
    let o = run(&mut sim, [10, 0], Time::from_secs(600), None);
    assert_eq!(o.ends[0].end, Some(Event::TimedOut));
    // SYN at 0, resent at 1 s and 3 s; gives up at 7 s (1 + 2 + 4, libtorrent's 2 SYN resends).
    assert_eq!(o.ends[0].end_time, Some(Time::from_secs(7)));
    assert_eq!(sim.datagrams[0], 3);
}

#[test]
fn throughput_on_a_clean_fast_link() {
    // 0.5 ms each way (1 ms RTT), no loss: slow start then the receive window's 1 MiB per RTT.
    let mib = 8u64;
    let sizes = [mib << 20, 0];
    let mut sim = Sim::new(
        5,
        SocketConfig::default(),
        LinkParams::clean(0),
        LinkParams::clean(0),
    );
    sim.links[0].delay = Duration::from_micros(500);
    sim.links[1].delay = Duration::from_micros(500);
    let o = run(&mut sim, sizes, Time::from_secs(60), None);
    assert_clean(&o, sizes);
    let rtts = o.ends[1].end_time.unwrap().since_origin().as_secs_f64() / 0.001;
    // A lingers after its graceful close: its statistics are still there.
    let h = o.ends[0].handle.unwrap();
    let stats = sim.sockets[0].connection(h).unwrap().stats();
    println!(
        "{mib} MiB in {rtts:.0} virtual RTTs; cwnd {} KiB, {} retransmits, srtt {:?}",
        stats.cwnd / 1024,
        stats.retransmits,
        stats.srtt
    );
    assert_eq!(stats.retransmits, 0);
    // The window grew from 2 packets to the receive window (1 MiB).
    assert!(stats.cwnd >= 512 * 1024, "cwnd {}", stats.cwnd);
    // Slow start reaches the 1 MiB window in ~10 RTTs; then ~1 MiB per RTT.
    assert!(rtts < 40.0, "{rtts} RTTs");
}

#[test]
fn ledbat_holds_the_bottleneck_queue_near_target() {
    // A 1 MB/s uplink with a one-second (bloated) queue and 25 ms each way.
    let mut up = LinkParams::clean(25);
    up.rate = Some(1_000_000);
    up.queue = Duration::from_secs(1);
    let sizes = [20_000_000, 0];
    let mut sim = Sim::new(6, SocketConfig::default(), up, LinkParams::clean(25));
    let o = run(&mut sim, sizes, Time::from_secs(600), None);
    assert_clean(&o, sizes);
    let secs = o.time.since_origin().as_secs_f64();
    let waits: Vec<f64> = sim
        .queue_waits
        .iter()
        .filter(|(t, _)| t.since_origin() > Duration::from_secs(10))
        .map(|(_, w)| w.as_secs_f64() * 1000.0)
        .collect();
    let mean = waits.iter().sum::<f64>() / waits.len() as f64;
    let max = waits.iter().cloned().fold(0.0, f64::max);
    let rate = sizes[0] as f64 / secs / 1e6;
    println!("bottleneck 1 MB/s: {rate:.2} MB/s goodput over {secs:.1} s, queue after 10 s: mean {mean:.1} ms, max {max:.1} ms");
    assert!(
        (80.0..=120.0).contains(&mean),
        "mean queuing delay {mean} ms"
    );
    assert!(max < 200.0, "max queuing delay {max} ms");
    assert!(rate > 0.85, "goodput {rate} MB/s of 1");
}

/// A SYN from `port` with connection id `id`.
fn syn(id: u16) -> Vec<u8> {
    Packet {
        header: Header {
            ty: PacketType::Syn,
            connection_id: id,
            timestamp_us: 0,
            timestamp_diff_us: 0,
            wnd_size: 1 << 20,
            seq_nr: 1,
            ack_nr: 0,
        },
        sack: None,
        payload: &[],
    }
    .to_vec()
}

#[test]
fn syn_flood_is_bounded() {
    let config = SocketConfig {
        max_half_open: 16,
        max_connections: 40,
        ..SocketConfig::default()
    };
    let mut s = UtpSocket::new(config, 9);
    let mut refused = 0;
    for i in 0..10_000u32 {
        let from: SocketAddr = format!(
            "10.{}.{}.{}:{}",
            i >> 16,
            (i >> 8) & 255,
            i & 255,
            1000 + i % 5000
        )
        .parse()
        .unwrap();
        match s.handle_datagram(Time::ZERO, from, &syn(i as u16)) {
            Ok(()) => {}
            Err(UtpError::HalfOpenLimit { max: 16 }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(s.len(), 16);
    assert_eq!(s.half_open(), 16);
    assert_eq!(refused, 10_000 - 16);
    // Each accepted SYN is answered once, refused ones not at all.
    let mut answers = 0;
    while s.poll_transmit(Time::ZERO).is_some() {
        answers += 1;
    }
    assert_eq!(answers, 16);
    // The half-open slots expire, and the socket forgets them.
    let later = Time::from_secs(11);
    s.handle_timeout(later);
    while s.poll_event().is_some() {}
    assert_eq!(s.half_open(), 0);
    assert_eq!(s.len(), 0);
    // Then a real peer gets in.
    let peer: SocketAddr = "192.0.2.1:6881".parse().unwrap();
    s.handle_datagram(later, peer, &syn(77)).unwrap();
    assert!(s.accept().is_some());
}

#[test]
fn connection_cap_refuses_with_reset() {
    let config = SocketConfig {
        max_half_open: 100,
        max_connections: 4,
        ..SocketConfig::default()
    };
    let mut s = UtpSocket::new(config, 1);
    let peer: SocketAddr = "192.0.2.1:6881".parse().unwrap();
    for id in 0..4u16 {
        s.handle_datagram(Time::ZERO, peer, &syn(id * 10)).unwrap();
    }
    while s.poll_transmit(Time::ZERO).is_some() {}
    assert_eq!(
        s.handle_datagram(Time::ZERO, peer, &syn(999)),
        Err(UtpError::ConnectionLimit { max: 4 })
    );
    let t = s.poll_transmit(Time::ZERO).unwrap();
    assert_eq!(
        Packet::parse(&t.contents).unwrap().header.ty,
        PacketType::Reset
    );
    assert!(s.connect(Time::ZERO, peer).is_err());
    // A retransmitted SYN of an existing connection is answered again, not refused.
    s.handle_datagram(Time::ZERO, peer, &syn(10)).unwrap();
    let t = s.poll_transmit(Time::ZERO).unwrap();
    assert_eq!(
        Packet::parse(&t.contents).unwrap().header.ty,
        PacketType::State
    );
}

#[test]
fn garbage_and_unknown_connections() {
    let mut s = UtpSocket::new(SocketConfig::default(), 2);
    let peer: SocketAddr = "192.0.2.1:6881".parse().unwrap();
    assert!(s
        .handle_datagram(Time::ZERO, peer, b"d1:ad2:id20:")
        .is_err());
    // A DATA for no connection is answered with a RESET; a RESET is not answered.
    let mut data = syn(5);
    data[0] = 0x01;
    s.handle_datagram(Time::ZERO, peer, &data).unwrap();
    let t = s.poll_transmit(Time::ZERO).unwrap();
    assert_eq!(
        Packet::parse(&t.contents).unwrap().header.ty,
        PacketType::Reset
    );
    let mut reset = syn(5);
    reset[0] = 0x31;
    s.handle_datagram(Time::ZERO, peer, &reset).unwrap();
    assert!(s.poll_transmit(Time::ZERO).is_none());
    assert!(shoal_utp::looks_like_utp(&syn(1)));
    assert!(!shoal_utp::looks_like_utp(
        b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe"
    ));
}

#[test]
fn reset_from_peer_ends_the_connection() {
    let mut sim = Sim::new(
        8,
        SocketConfig::default(),
        LinkParams::clean(5),
        LinkParams::clean(5),
    );
    let a = sim.sockets[0].connect(sim.now, sim.addrs[1]).unwrap();
    let b = loop {
        sim.flush();
        sim.step();
        if let Some(b) = sim.sockets[1].accept() {
            break b;
        }
    };
    // Let the SYN's answer reach A (the next event; B's half-open timeout is 10 s away).
    sim.flush();
    sim.step();
    assert_eq!(sim.now, Time::from_millis(10));
    sim.sockets[1].connection(b).unwrap().abort(sim.now);
    for _ in 0..20 {
        sim.flush();
        if !sim.step() {
            break;
        }
    }
    let mut got = Vec::new();
    while let Some((h, e)) = sim.sockets[0].poll_event() {
        assert_eq!(h, a);
        got.push(e);
    }
    assert_eq!(got, vec![Event::Connected, Event::Reset]);
}

#[test]
fn small_receive_window_is_respected() {
    // The reader stalls; the sender must stop at the advertised window, then resume.
    let config = SocketConfig {
        connection: Config {
            recv_buffer: 20_000,
            ..Config::default()
        },
        ..SocketConfig::default()
    };
    let sizes = [500_000, 0];
    let mut sim = Sim::new(10, config, LinkParams::clean(5), LinkParams::clean(5));
    let o = run(&mut sim, sizes, Time::from_secs(120), None);
    assert_clean(&o, sizes);
}
