//! BEP 32 on untrusted input: a dual-stack node (an IPv4 and an IPv6 node with their own tables)
//! fed arbitrary packets from either family, after a bootstrap and a lookup whose replies the
//! packets may answer (`want`, `nodes6`, 18-byte `values`, nodes leaking across), never panics,
//! sends only datagrams that decode and fit the packet limit, each to an address of the family
//! of the node that sent it; the state file decoder takes the same bytes.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use shoal_core::{Id20, Time};
use shoal_dht::krpc::{Body, MAX_PACKET};
use shoal_dht::{DhtConfig, DhtState, DualNode, Family};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = DhtState::decode(data) {
        let again = DhtState::decode(&s.encode()).expect("a state re-decodes");
        assert_eq!(again.id_for(Family::V6), s.id_for(Family::V6));
    }
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let v4: SocketAddr = "10.0.0.1:6881".parse().unwrap();
    let v6: SocketAddr = "[2001:db8::1]:6881".parse().unwrap();
    let six = DhtConfig {
        family: Family::V6,
        ..DhtConfig::default()
    };
    let mut n = DualNode::new(Some(DhtConfig::default()), Some(six), Time::ZERO, 1, None);
    let _ = n.bootstrap(Time::ZERO, &[v4, v6]);
    let _ = n.get_peers(Time::ZERO, Id20([first; 20]));
    // The replies carry transaction ids the node made: splice the first one in, so responses
    // are matched and their node lists used.
    let mut tids = Vec::new();
    while let Some((_, bytes)) = n.poll_transmit() {
        if let Ok(m) = shoal_dht::decode(&bytes) {
            tids.push(m.tid);
        }
    }
    let from = if first & 1 == 0 { v4 } else { v6 };
    let mut packet = rest.to_vec();
    if first & 2 != 0 {
        if let (Ok(mut m), Some(tid)) = (shoal_dht::decode(rest), tids.first()) {
            m.tid = tid.clone();
            packet = m.encode();
        }
    }
    for (i, t) in [0u64, 10, 6000].into_iter().enumerate() {
        if i == 0 {
            n.handle_packet(Time::from_millis(t), from, &packet);
        } else {
            n.handle_timeout(Time::from_millis(t));
        }
        while let Some((to, bytes)) = n.poll_transmit() {
            assert!(bytes.len() <= MAX_PACKET);
            let m = shoal_dht::decode(&bytes).expect("what we send decodes");
            if let Body::Response(r) = &m.body {
                // Values of the asker's family only (BEP 32).
                assert!(r.values.iter().all(|p| Family::of(p) == Family::of(&to)));
            }
        }
        while n.poll_event().is_some() {}
    }
});
