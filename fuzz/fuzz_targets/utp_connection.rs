//! Arbitrary datagrams and time steps into a connected uTP connection and into the multiplexer:
//! no panic, and the connection's bounds hold (flight within the congestion and send buffers,
//! readable data within the receive buffer).
//!
//! Input: a sequence of records `[delay_ms, len, bytes...]`. Half of the records get a
//! well-formed header aimed at the connection patched in, to get past the parser.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shoal_core::Time;
use shoal_utp::{Config, Connection, Packet, SocketConfig, UtpSocket};

fuzz_target!(|data: &[u8]| {
    let config = Config::default();
    let mut a = Connection::connect(config, 100, Time::ZERO);
    let Some(syn) = a.poll_transmit(Time::ZERO) else {
        return;
    };
    let Ok(syn) = Packet::parse(&syn) else { return };
    let mut b = Connection::accept(config, &syn.header, 40, Time::ZERO);
    while let Some(d) = b.poll_transmit(Time::ZERO) {
        a.handle_datagram(Time::ZERO, &d);
    }
    let _ = a.write(&[7u8; 20_000]);
    let mut socket = UtpSocket::new(SocketConfig::default(), 1);
    let peer: SocketAddr = "192.0.2.1:6881".parse().unwrap();
    let mut now = Time::ZERO;
    let mut rest = data;
    while let [delay, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (body, tail) = tail.split_at(len);
        rest = tail;
        now += Duration::from_millis(u64::from(*delay) * 8);
        let mut d = body.to_vec();
        if d.len() >= 20 && delay & 1 == 1 {
            d[0] = ((d[0] % 5) << 4) | 1;
            d[1] %= 3;
            d[2..4].copy_from_slice(&100u16.to_be_bytes());
        }
        a.handle_datagram(now, &d);
        a.handle_timeout(now);
        while a.poll_transmit(now).is_some() {}
        while a.poll_event().is_some() {}
        let mut buf = [0u8; 1024];
        let _ = a.read(&mut buf);
        let s = a.stats();
        assert!(s.flight as usize <= config.send_buffer);
        assert!(a.readable() <= config.recv_buffer);

        let _ = socket.handle_datagram(now, peer, &d);
        socket.handle_timeout(now);
        while socket.poll_transmit(now).is_some() {}
        while socket.poll_event().is_some() {}
        while socket.accept().is_some() {}
    }
});
