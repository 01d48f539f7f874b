//! Connection-level tests: two [`Connection`]s wired by hand, every datagram in view, so single
//! behaviours (ids, wrap-around, fast retransmit, Karn's rule, windows, back-off) can be pinned.

use std::time::Duration;

use shoal_core::Time;

use crate::connection::{CloseReason, Connection, Event};
use crate::packet::{sack_bit, Header, Packet, PacketType};
use crate::Config;

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

fn parse(d: &[u8]) -> Packet<'_> {
    Packet::parse(d).expect("own packets parse")
}

fn drain(c: &mut Connection, now: Time) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| c.poll_transmit(now)).collect()
}

fn events(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// A connected pair: A initiated with receive id 100, B answered with initial sequence
/// number `b_seq`. Time is at 10 ms.
fn pair(config: Config, b_seq: u16) -> (Connection, Connection, Time) {
    let t0 = Time::ZERO;
    let mut a = Connection::connect(config, 100, t0);
    let syn = a.poll_transmit(t0).unwrap();
    let mut b = Connection::accept(config, &parse(&syn).header, b_seq, t0);
    let now = Time::from_millis(10);
    for d in drain(&mut b, now) {
        a.handle_datagram(now, &d);
    }
    assert!(a.is_connected());
    assert_eq!(events(&mut a), vec![Event::Connected]);
    assert_eq!(events(&mut b), vec![Event::Connected]);
    (a, b, now)
}

/// A hand-made packet from the peer.
fn craft(
    ty: PacketType,
    conn_id: u16,
    seq_nr: u16,
    ack_nr: u16,
    sack: Option<&[u8]>,
    payload: &[u8],
) -> Vec<u8> {
    Packet {
        header: Header {
            ty,
            connection_id: conn_id,
            timestamp_us: 0,
            timestamp_diff_us: 0,
            wnd_size: 1 << 20,
            seq_nr,
            ack_nr,
        },
        sack,
        payload,
    }
    .to_vec()
}

#[test]
fn connection_ids_follow_bep29() {
    let config = Config::default();
    let mut a = Connection::connect(config, 100, Time::ZERO);
    assert_eq!((a.recv_id(), a.send_id()), (100, 101));
    let syn = a.poll_transmit(Time::ZERO).unwrap();
    let h = parse(&syn).header;
    assert_eq!((h.ty, h.connection_id, h.seq_nr), (PacketType::Syn, 100, 1));
    let mut b = Connection::accept(config, &h, 5000, Time::ZERO);
    assert_eq!((b.recv_id(), b.send_id()), (101, 100));
    let ack = b.poll_transmit(Time::ZERO).unwrap();
    let h = parse(&ack).header;
    // The SYN's answer: a STATE to A's receive id, carrying B's first sequence number.
    assert_eq!(
        (h.ty, h.connection_id, h.seq_nr, h.ack_nr),
        (PacketType::State, 100, 5000, 1)
    );
    a.handle_datagram(Time::ZERO, &ack);
    a.write(b"hi").unwrap();
    let data = a.poll_transmit(Time::ZERO).unwrap();
    let h = parse(&data).header;
    assert_eq!(
        (h.ty, h.connection_id, h.seq_nr, h.ack_nr),
        (PacketType::Data, 101, 2, 4999)
    );
}

#[test]
fn data_across_sequence_wrap_around() {
    let (mut a, mut b, mut now) = pair(Config::default(), 65533);
    let msg: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(b.write(&msg).unwrap(), msg.len());
    let mut got = Vec::new();
    let mut seqs = Vec::new();
    for _ in 0..50 {
        now += ms(5);
        for d in drain(&mut b, now) {
            let h = parse(&d).header;
            if h.ty == PacketType::Data {
                seqs.push(h.seq_nr);
            }
            a.handle_datagram(now, &d);
        }
        for d in drain(&mut a, now) {
            b.handle_datagram(now, &d);
        }
        let mut buf = [0u8; 4096];
        loop {
            let n = a.read(&mut buf);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(got, msg);
    assert!(seqs.contains(&65535) && seqs.contains(&0), "{seqs:?}");
    assert_eq!(b.stats().flight, 0);
}

/// The default configuration without the MTU search: full packets of 1432 bytes from the start,
/// for tests that pin window and loss behaviours to packet counts.
fn fixed_mtu() -> Config {
    Config {
        mtu_floor: 1500,
        ..Config::default()
    }
}

/// A sends `n` full packets; returns them.
fn send_packets(a: &mut Connection, now: Time, n: usize) -> Vec<Vec<u8>> {
    let mss = a.stats().mss as usize;
    a.write(&vec![7u8; mss * n]).unwrap();
    drain(a, now)
}

/// A pair where A's congestion window has room for at least `n` packets: B acknowledges a
/// first burst so that A leaves its initial window.
fn warmed_pair(n: usize) -> (Connection, Connection, Time) {
    let (mut a, mut b, mut now) = pair(fixed_mtu(), 1000);
    while (a.stats().cwnd as usize) < n * a.stats().mss as usize {
        // A full window each round trip, so the window is never application-limited.
        let cwnd_packets = (a.stats().cwnd / a.stats().mss) as usize;
        let burst = send_packets(&mut a, now, cwnd_packets);
        now += ms(10);
        for d in burst {
            b.handle_datagram(now, &d);
        }
        for d in drain(&mut b, now) {
            a.handle_datagram(now, &d);
        }
        let mut sink = vec![0u8; 1 << 16];
        while b.read(&mut sink) > 0 {}
    }
    (a, b, now)
}

#[test]
fn three_duplicate_acks_resend_the_missing_packet() {
    let (mut a, mut b, mut now) = warmed_pair(6);
    let pkts = send_packets(&mut a, now, 5);
    assert_eq!(pkts.len(), 5);
    let first = parse(&pkts[0]).header.seq_nr;
    now += ms(10);
    // The first is lost; B would acknowledge the others with duplicate acks (here without
    // selective ACKs, to exercise the duplicate-ack rule alone).
    let last_acked = first.wrapping_sub(1);
    for _ in 0..3 {
        a.handle_datagram(
            now,
            &craft(PacketType::State, 100, 1, last_acked, None, &[]),
        );
    }
    let out = drain(&mut a, now);
    assert_eq!(out.len(), 1, "exactly the missing packet is resent");
    assert_eq!(parse(&out[0]).header.seq_nr, first);
    assert_eq!(a.stats().fast_retransmits, 1);
    // A fourth duplicate does not resend it again.
    a.handle_datagram(
        now,
        &craft(PacketType::State, 100, 1, last_acked, None, &[]),
    );
    assert!(drain(&mut a, now).is_empty());
    let _ = &mut b;
}

#[test]
fn selective_ack_of_three_later_packets_resends_and_halves() {
    let (mut a, mut b, mut now) = warmed_pair(8);
    let cwnd_before = a.stats().cwnd;
    let pkts = send_packets(&mut a, now, 5);
    let first = parse(&pkts[0]).header.seq_nr;
    now += ms(10);
    // B gets 2..5 but not 1: it answers with a selective ACK.
    for d in &pkts[1..] {
        b.handle_datagram(now, d);
    }
    let acks = drain(&mut b, now);
    let sack_state = acks.last().unwrap();
    let p = parse(sack_state);
    assert_eq!(p.header.ack_nr, first.wrapping_sub(1));
    let mask = p.sack.expect("selective ACK for the gap");
    // Bit 0 is first + 1.
    assert!((0..4).all(|i| sack_bit(mask, i)));
    a.handle_datagram(now, sack_state);
    let out = drain(&mut a, now);
    assert_eq!(
        parse(&out[0]).header.seq_nr,
        first,
        "the hole is resent first"
    );
    assert!(a.stats().cwnd <= cwnd_before / 2 + a.stats().mss);
    // The resent packet fills the hole; B acknowledges all five at once.
    b.handle_datagram(now, &out[0]);
    let acks = drain(&mut b, now);
    let last = parse(acks.last().unwrap());
    assert_eq!(last.header.ack_nr, first.wrapping_add(4));
    assert!(last.sack.is_none());
}

#[test]
fn karn_no_rtt_sample_from_a_resent_packet() {
    let config = Config::default();
    let mut a = Connection::connect(config, 7, Time::ZERO);
    let syn = a.poll_transmit(Time::ZERO).unwrap();
    // The SYN times out once and is resent.
    assert_eq!(a.poll_timeout(), Some(Time::from_secs(1)));
    a.handle_timeout(Time::from_secs(1));
    let again = a.poll_transmit(Time::from_secs(1)).unwrap();
    assert_eq!(parse(&again).header.ty, PacketType::Syn);
    // The answer arrives; which SYN it answers is unknown, so no sample.
    let mut b = Connection::accept(config, &parse(&syn).header, 9, Time::from_secs(1));
    let ack = b.poll_transmit(Time::from_millis(1100)).unwrap();
    a.handle_datagram(Time::from_millis(1100), &ack);
    assert!(a.is_connected());
    assert_eq!(a.stats().srtt, None);
    // A packet sent once does give one.
    a.write(b"x").unwrap();
    let d = a.poll_transmit(Time::from_millis(1200)).unwrap();
    b.handle_datagram(Time::from_millis(1230), &d);
    let ack = b.poll_transmit(Time::from_millis(1230)).unwrap();
    a.handle_datagram(Time::from_millis(1260), &ack);
    assert_eq!(a.stats().srtt, Some(ms(60)));
}

#[test]
fn retransmission_timeout_backs_off_then_gives_up() {
    let config = Config::default();
    let (mut a, _b, now) = pair(config, 300);
    a.write(b"lost forever").unwrap();
    assert_eq!(drain(&mut a, now).len(), 1);
    // No sample yet (the SYN's answer came from a SYN sent once, 10 ms: floor 500 ms).
    let mut t = now;
    let mut gaps = Vec::new();
    while let Some(next) = a.poll_timeout() {
        if a.is_closed() {
            break;
        }
        gaps.push(next - t);
        t = next;
        a.handle_timeout(t);
        let _ = drain(&mut a, t);
    }
    assert_eq!(events(&mut a), vec![Event::TimedOut]);
    // 3 resends (libtorrent's utp_num_resends), each wait twice the last.
    assert_eq!(gaps.len(), 4, "{gaps:?}");
    for w in gaps.windows(2) {
        assert_eq!(w[1], w[0] * 2, "{gaps:?}");
    }
    assert_eq!(a.stats().retransmits, 3);
}

#[test]
fn receive_window_is_advertised_and_data_beyond_it_is_not_acked() {
    let config = Config {
        recv_buffer: 4000,
        ..Config::default()
    };
    let (mut a, mut b, now) = pair(config, 40);
    let _ = &mut a;
    // The peer ignores our window: 4 packets of 1400 bytes at once, into a 4000-byte buffer.
    let mut acked = Vec::new();
    for i in 0..4u16 {
        b.handle_datagram(
            now,
            &craft(PacketType::Data, 101, 2 + i, 39, None, &[1u8; 1400]),
        );
        for d in drain(&mut b, now) {
            let h = parse(&d).header;
            acked.push((h.ack_nr, h.wnd_size));
        }
    }
    // Two fit (2800 bytes, 1200 left): acked. The third does not: the ack stays at 3.
    assert_eq!(acked, vec![(2, 2600), (3, 1200), (3, 1200), (3, 1200)]);
    assert_eq!(b.stats().dropped_no_room, 2);
    // The application reads: the window reopens, and B says so unprompted.
    let mut buf = [0u8; 4000];
    assert_eq!(b.read(&mut buf), 2800);
    let update = drain(&mut b, now);
    assert_eq!(update.len(), 1);
    assert_eq!(parse(&update[0]).header.wnd_size, 4000);
}

#[test]
fn reorder_buffer_is_bounded() {
    let config = Config {
        max_reorder_packets: 8,
        ..Config::default()
    };
    let (_a, mut b, now) = pair(config, 40);
    // Next expected from A is 2; 2 + 8 is too far ahead, 2 + 7 is kept.
    b.handle_datagram(now, &craft(PacketType::Data, 101, 10, 39, None, b"far"));
    b.handle_datagram(now, &craft(PacketType::Data, 101, 9, 39, None, b"near"));
    assert_eq!(b.stats().dropped_no_room, 1);
    let acks = drain(&mut b, now);
    let last = parse(acks.last().unwrap());
    assert_eq!(last.header.ack_nr, 1);
    let mask = last.sack.unwrap();
    // Bit i is 3 + i: 9 is bit 6; 10 was not kept.
    assert!(sack_bit(mask, 6) && !sack_bit(mask, 7));
}

#[test]
fn acks_outside_the_window_are_ignored() {
    let (mut a, _b, now) = pair(Config::default(), 40);
    // A has sent nothing since the SYN (seq 1): an ack of 500 is forged or stale.
    a.handle_datagram(now, &craft(PacketType::Data, 100, 40, 500, None, b"evil"));
    assert_eq!(a.readable(), 0);
    assert_eq!(a.stats().invalid_packets, 1);
    // A plausible one is taken.
    a.handle_datagram(now, &craft(PacketType::Data, 100, 40, 1, None, b"good"));
    assert_eq!(a.readable(), 4);
}

#[test]
fn stalled_reader_stops_the_sender_then_it_resumes() {
    let config = Config {
        recv_buffer: 16 * 1024,
        ..Config::default()
    };
    let (mut a, mut b, mut now) = pair(config, 40);
    let total = 200_000;
    let mut written = 0;
    let mut read = 0;
    let mut buf = vec![0u8; 1 << 16];
    for round in 0..400 {
        if written < total {
            written += a.write(&vec![3u8; total - written]).unwrap();
        }
        now += ms(5);
        for d in drain(&mut a, now) {
            b.handle_datagram(now, &d);
        }
        now += ms(5);
        for d in drain(&mut b, now) {
            a.handle_datagram(now, &d);
        }
        if let Some(t) = a.poll_timeout() {
            if t <= now {
                a.handle_timeout(now);
            }
        }
        // The reader sleeps for rounds 10..60; in that time the sender stops at B's window.
        if !(10..60).contains(&round) {
            read += b.read(&mut buf);
        } else {
            assert!(b.readable() <= 16 * 1024);
            assert!(a.stats().flight as usize <= 16 * 1024);
        }
    }
    assert_eq!(read, total);
    assert!(!events(&mut a).contains(&Event::TimedOut));
}

#[test]
fn graceful_close_both_ways() {
    let (mut a, mut b, mut now) = pair(Config::default(), 65535);
    a.write(b"request").unwrap();
    a.close();
    assert!(a.write(b"more").is_err());
    let mut step = |a: &mut Connection, b: &mut Connection| {
        now += ms(5);
        for d in drain(a, now) {
            b.handle_datagram(now, &d);
        }
        for d in drain(b, now) {
            a.handle_datagram(now, &d);
        }
        now
    };
    step(&mut a, &mut b);
    assert_eq!(events(&mut b), vec![Event::Readable, Event::Eof]);
    let mut buf = [0u8; 16];
    assert_eq!(b.read(&mut buf), 7);
    assert!(b.peer_finished());
    b.write(b"answer").unwrap();
    b.close();
    let t = step(&mut b, &mut a);
    assert_eq!(
        events(&mut a),
        vec![
            Event::Readable,
            Event::Eof,
            Event::Closed {
                reason: CloseReason::Graceful
            }
        ]
    );
    step(&mut a, &mut b);
    assert_eq!(
        events(&mut b),
        vec![Event::Closed {
            reason: CloseReason::Graceful
        }]
    );
    // A lingers to answer a retransmitted FIN, then is drained.
    assert!(!a.is_drained(t));
    let end = a.poll_timeout().unwrap();
    a.handle_timeout(end);
    assert!(a.is_drained(end));
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn reset_ends_the_connection() {
    let (mut a, _b, now) = pair(Config::default(), 40);
    a.handle_datagram(now, &craft(PacketType::Reset, 100, 40, 1, None, &[]));
    assert_eq!(events(&mut a), vec![Event::Reset]);
    assert!(a.is_closed());
    assert!(a.write(b"x").is_err());
}

#[test]
fn arbitrary_datagrams_never_panic() {
    // The same loop as the `utp_connection` fuzz target, over a deterministic stream.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..200 {
        let (mut a, _b, mut now) = pair(Config::default(), next() as u16);
        a.write(&[1u8; 5000]).unwrap();
        for _ in 0..50 {
            let len = (next() % 80) as usize;
            let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if d.len() >= 20 && next() % 2 == 0 {
                // Mostly well-formed headers aimed at this connection.
                d[0] = ((next() % 5) as u8) << 4 | 1;
                d[1] = (next() % 3) as u8;
                d[2..4].copy_from_slice(&100u16.to_be_bytes());
            }
            now += ms(next() % 700);
            a.handle_datagram(now, &d);
            a.handle_timeout(now);
            let _ = drain(&mut a, now);
            let _ = events(&mut a);
            let mut buf = [0u8; 512];
            let _ = a.read(&mut buf);
        }
    }
}

/// Moves everything both ways for `rounds` steps of 5 ms, dropping what `path` refuses (by
/// datagram size and fragmentation flag); returns the bytes B read and A's DATA packet sizes.
fn run_path(
    a: &mut Connection,
    b: &mut Connection,
    mut now: Time,
    rounds: usize,
    path: impl Fn(usize, crate::Fragmentation) -> bool,
) -> (Vec<u8>, Vec<usize>) {
    let mut got = Vec::new();
    let mut sizes = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    for _ in 0..rounds {
        now += ms(5);
        if a.poll_timeout().is_some_and(|t| t <= now) {
            a.handle_timeout(now);
        }
        while let Some(d) = a.poll_transmit(now) {
            if parse(&d).header.ty == PacketType::Data {
                sizes.push(d.len());
            }
            if path(d.len(), a.last_fragmentation()) {
                b.handle_datagram(now, &d);
            }
        }
        for d in drain(b, now) {
            a.handle_datagram(now, &d);
        }
        loop {
            let n = b.read(&mut buf);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    }
    (got, sizes)
}

#[test]
fn packets_start_small_and_probes_grow_them_to_the_ceiling() {
    let (mut a, mut b, now) = pair(Config::default(), 500);
    assert_eq!(a.stats().mss, 508, "576 - 48 - 20: the conservative start");
    let msg: Vec<u8> = (0..400_000u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(a.write(&msg).unwrap(), msg.len());
    let (got, sizes) = run_path(&mut a, &mut b, now, 400, |_, _| true);
    assert_eq!(got, msg, "the stream arrives whole and in order");
    assert_eq!(
        a.stats().mss,
        1432,
        "the search reached the 1500-byte ceiling"
    );
    assert_eq!(
        a.stats().mtu_probes,
        1,
        "one probe of the ceiling: {:?}",
        a.stats()
    );
    assert_eq!(a.stats().mtu_probes_lost, 0);
    assert_eq!(sizes[0], 1452, "the first data packet probes the ceiling");
    assert!(sizes.iter().all(|&s| s <= 1452), "never above the ceiling");
}

#[test]
fn a_probe_too_large_for_the_path_is_lost_and_the_search_settles_below_it() {
    // A path of 1200-byte datagrams that drops larger ones unless they may be fragmented (as a
    // router would, with DF set); a fragmentable one arrives (the IP layer splits it).
    let path = 1200;
    let (mut a, mut b, now) = pair(Config::default(), 77);
    let msg: Vec<u8> = (0..600_000u32).map(|i| (i % 241) as u8).collect();
    assert_eq!(a.write(&msg).unwrap(), msg.len());
    let (got, sizes) = run_path(&mut a, &mut b, now, 2000, |len, frag| {
        len <= path || frag == crate::Fragmentation::Allow
    });
    assert_eq!(
        got, msg,
        "the lost probes' data is resent and arrives in order"
    );
    let s = a.stats();
    assert!(s.mtu_probes_lost >= 1, "{s:?}");
    let datagram = s.mss as usize + 20;
    assert!(
        datagram <= path && datagram + crate::mtu::SEARCH_DONE_WITHIN > path,
        "settled at {datagram} for a {path}-byte path"
    );
    // Probes too large happened, but no normal packet went above the path.
    assert!(sizes.iter().any(|&l| l > path));
    // Only probes were lost (a probe sent last may need its timeout to be found lost).
    assert!(s.fast_retransmits <= s.mtu_probes_lost, "{s:?}");
    assert!(s.timeouts <= s.mtu_probes_lost, "{s:?}");
}

#[test]
fn probes_are_sent_unfragmentable_and_their_resends_fragmentable() {
    let (mut a, _b, now) = pair(Config::default(), 9);
    a.write(&vec![1u8; 100_000]).unwrap();
    let mut flags = Vec::new();
    while let Some(d) = a.poll_transmit(now) {
        flags.push((d.len(), a.last_fragmentation()));
    }
    let probe = flags
        .iter()
        .find(|(l, _)| *l > 528)
        .expect("a probe among the first packets");
    assert_eq!(probe.1, crate::Fragmentation::Forbid);
    assert!(flags
        .iter()
        .filter(|(l, _)| *l <= 528)
        .all(|(_, f)| *f == crate::Fragmentation::Default));
    // Everything in flight times out: the probe counts as lost, and its resend may fragment.
    let t = a.poll_timeout().unwrap();
    a.handle_timeout(t);
    let resent = a.poll_transmit(t).unwrap();
    assert!(resent.len() > 528 || a.poll_transmit(t).is_some());
    assert_eq!(a.stats().mtu_probes_lost, 1);
}

#[test]
fn above_the_peer_mtu_only_once_allowed() {
    // A 9000-byte interface, a peer not known to read more than 1500.
    let config = Config {
        mtu: 9000,
        ..Config::default()
    };
    let (mut a, mut b, now) = pair(config, 3);
    let msg: Vec<u8> = (0..600_000u32).map(|i| (i % 239) as u8).collect();
    assert_eq!(a.write(&msg[..200_000]).unwrap(), 200_000);
    let (got, sizes) = run_path(&mut a, &mut b, now, 200, |_, _| true);
    assert_eq!(got, &msg[..200_000]);
    assert!(sizes.iter().all(|&s| s <= 1452), "above 1500 without leave");
    assert_eq!(a.stats().mss, 1432);
    // The application learns the peer reads large datagrams.
    let now = now + ms(1000);
    a.allow_large_packets(now);
    assert_eq!(a.write(&msg[200_000..]).unwrap(), 400_000);
    let (got, sizes) = run_path(&mut a, &mut b, now, 200, |_, _| true);
    assert_eq!(got, &msg[200_000..]);
    assert!(sizes.contains(&8952), "a probe of the 9000 ceiling");
    assert_eq!(a.stats().mss, 8932);
}
