//! A DHT of shoal nodes over real UDP on 127.0.0.1, in one tokio runtime.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_core::Id20;
use shoal_dht::driver::{Dht, DhtBind};
use shoal_dht::{DhtConfig, DhtState};

const NODES: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_four_nodes_over_udp() {
    tokio::time::timeout(Duration::from_secs(60), run())
        .await
        .expect("the UDP DHT test took more than 60 s");
}

async fn run() {
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        nodes.push(Dht::bind(local, DhtConfig::loopback()).await.unwrap());
    }
    // Bootstrap in a chain: each node knows only the previous one.
    for i in 1..NODES {
        let prev = nodes[i - 1].local_addr();
        let n = nodes[i].bootstrap(vec![prev]).await.unwrap();
        assert!(n >= 1, "node {i} has an empty table after bootstrap");
    }
    let mut sizes = Vec::new();
    for n in &nodes {
        sizes.push(n.status().await.unwrap().table_len);
    }
    println!("udp: {NODES} nodes bootstrapped in a chain; table sizes {sizes:?}");

    // Announce on the last node, look up from the first.
    let info_hash = Id20::from_hex("d460b8af98f716752723c9fa5b0b57995ee43085").unwrap();
    let r = nodes[NODES - 1]
        .announce(info_hash, Some(6999))
        .await
        .unwrap();
    println!("udp: announce acked by {} nodes", r.acked);
    assert!(r.acked >= 1);
    // Retried a few times: a loaded machine can push replies past the loopback timeouts.
    let found = find(&nodes[0], info_hash, "127.0.0.1:6999".parse().unwrap()).await;
    println!("udp: get_peers from node 0 found {found:?}");
    assert!(found.contains(&"127.0.0.1:6999".parse().unwrap()));

    // Implied port: the announcing node's DHT port is used.
    let h2 = Id20([0x42; 20]);
    nodes[5].announce(h2, None).await.unwrap();
    let found = find(&nodes[17], h2, nodes[5].local_addr()).await;
    assert!(found.contains(&nodes[5].local_addr()));

    // Ping, and a ping to a closed port that nobody answers.
    let id = nodes[3].ping(nodes[4].local_addr()).await.unwrap();
    assert_eq!(id, Some(nodes[4].status().await.unwrap().id));
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let none = nodes[3].ping(silent.local_addr().unwrap()).await.unwrap();
    assert_eq!(none, None);

    // Save and restore: the id survives, and the saved nodes bootstrap the new node.
    let state = nodes[10].save_state().await.unwrap();
    assert!(!state.nodes.is_empty());
    let bytes = state.encode();
    let restored = DhtState::decode(&bytes).unwrap();
    drop(nodes.remove(10));
    let again = Dht::bind_with_state(local, DhtConfig::loopback(), Some(restored))
        .await
        .unwrap();
    assert_eq!(again.status().await.unwrap().id, state.id);
    let n = again.bootstrap(Vec::new()).await.unwrap();
    assert!(n >= 1);
}

/// Runs get_peers up to 5 times until `want` is among the peers; returns all peers seen.
async fn find(dht: &Dht, info_hash: Id20, want: SocketAddr) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    for _ in 0..5 {
        let mut rx = dht.get_peers(info_hash).await.unwrap();
        while let Some(p) = rx.recv().await {
            found.push(p);
        }
        if found.contains(&want) {
            break;
        }
    }
    found
}

/// BEP 51 over real UDP: a shoal node that stores announces answers `sample_infohashes` from
/// another shoal node, with the hashes announced to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_infohashes_over_udp() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let a = Dht::bind(local, DhtConfig::loopback()).await.unwrap();
        let b = Dht::bind(local, DhtConfig::loopback()).await.unwrap();
        b.bootstrap(vec![a.local_addr()]).await.unwrap();
        let hashes = [Id20([1; 20]), Id20([2; 20]), Id20([3; 20])];
        for h in hashes {
            assert!(b.announce(h, Some(7000)).await.unwrap().acked >= 1);
        }
        let reply = b
            .sample_infohashes(a.local_addr(), Id20([9; 20]))
            .await
            .unwrap()
            .expect("an answer");
        let mut got = reply.samples.expect("BEP 51 samples");
        got.sort();
        assert_eq!(got, hashes.to_vec());
        assert_eq!(reply.num, Some(3));
        assert!(reply.interval.is_some_and(|i| (0..=21_600).contains(&i)));
        // Nobody listening: `None`, not an error.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let none = b
            .sample_infohashes(silent.local_addr().unwrap(), Id20([9; 20]))
            .await
            .unwrap();
        assert!(none.is_none());
    })
    .await
    .expect("took more than 30 s");
}

/// BEP 32 over real UDP on `[::1]`: IPv6-only nodes learn each other through `nodes6`, store
/// and hand out 18-byte peers; a dual-stack node runs both tables, finds peers of both families
/// for one torrent, and saves and restores both tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_nodes_exchange_nodes6_and_a_dual_stack_node_uses_both() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let six: SocketAddr = "[::1]:0".parse().unwrap();
        let four: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let a = Dht::bind(six, DhtConfig::loopback()).await.unwrap();
        let b = Dht::bind(six, DhtConfig::loopback()).await.unwrap();
        let c = Dht::bind(six, DhtConfig::loopback()).await.unwrap();
        assert!(a.local_addr().is_ipv6() && a.local_addr_v4().is_none());
        assert!(b.bootstrap(vec![a.local_addr()]).await.unwrap() >= 1);
        assert!(c.bootstrap(vec![a.local_addr()]).await.unwrap() >= 1);
        // C never heard of B but through A's `nodes6`.
        let b_id = b.status().await.unwrap().id;
        let closest = c.find_node(b_id).await.unwrap();
        assert!(
            closest
                .iter()
                .any(|n| n.id == b_id && n.addr == b.local_addr()),
            "{closest:?}"
        );
        assert_eq!(c.status().await.unwrap().table_len_v6, 2);

        // An IPv6 announce stores an IPv6 peer (18-byte `values`).
        let h = Id20([0x66; 20]);
        assert!(b.announce(h, Some(6999)).await.unwrap().acked >= 1);
        let want6: SocketAddr = "[::1]:6999".parse().unwrap();
        assert!(find(&c, h, want6).await.contains(&want6));

        // A dual-stack node: IPv4 through an IPv4 node (which knows one more), IPv6 through A.
        let e = Dht::bind(four, DhtConfig::loopback()).await.unwrap();
        let f = Dht::bind(four, DhtConfig::loopback()).await.unwrap();
        assert!(f.bootstrap(vec![e.local_addr()]).await.unwrap() >= 1);
        let bind = DhtBind {
            v4: Some(four),
            v6: Some(six),
            v6_optional: false,
        };
        let d = Dht::bind_dual(bind, DhtConfig::loopback(), None)
            .await
            .unwrap();
        let (d4, d6) = (d.local_addr_v4().unwrap(), d.local_addr_v6().unwrap());
        assert_eq!(d4.port(), d6.port(), "one port for both families");
        let n = d
            .bootstrap(vec![e.local_addr(), a.local_addr()])
            .await
            .unwrap();
        let s = d.status().await.unwrap();
        assert!(
            n >= 3 && s.table_len_v6 >= 1 && s.table_len > s.table_len_v6,
            "{s:?}"
        );
        // The same torrent announced on both DHTs (stored by F and C, which D asks): one lookup
        // finds both peers.
        let g = Id20([0x46; 20]);
        assert!(e.announce(g, Some(4444)).await.unwrap().acked >= 1);
        assert!(b.announce(g, Some(6666)).await.unwrap().acked >= 1);
        let p4: SocketAddr = "127.0.0.1:4444".parse().unwrap();
        let p6: SocketAddr = "[::1]:6666".parse().unwrap();
        let mut found = Vec::new();
        for _ in 0..5 {
            let mut rx = d.get_peers(g).await.unwrap();
            while let Some(p) = rx.recv().await {
                found.push(p);
            }
            if found.contains(&p4) && found.contains(&p6) {
                break;
            }
        }
        assert!(found.contains(&p4) && found.contains(&p6), "{found:?}");
        // D announces on both families.
        let r = d.announce(Id20([0x99; 20]), Some(5555)).await.unwrap();
        assert!(r.acked >= 2, "{r:?}");

        // Its state holds both tables, and brings both back.
        let state = d.save_state().await.unwrap();
        let restored = DhtState::decode(&state.encode()).unwrap();
        assert_eq!(restored, state);
        assert!(restored.nodes.iter().any(|n| n.addr.is_ipv4()));
        assert!(restored.nodes.iter().any(|n| n.addr.is_ipv6()));
        let id = d.status().await.unwrap().id;
        drop(d);
        let again = Dht::bind_dual(bind, DhtConfig::loopback(), Some(restored))
            .await
            .unwrap();
        assert_eq!(again.status().await.unwrap().id, id);
        again.bootstrap(Vec::new()).await.unwrap();
        let s = again.status().await.unwrap();
        assert!(s.table_len_v6 >= 1 && s.table_len > s.table_len_v6, "{s:?}");
    })
    .await
    .expect("the IPv6 DHT test took more than 60 s");
}

/// `DhtBind::dual_for` an unspecified address: an IPv4 socket and an IPv6-only one on one port;
/// a specific address: that family only, and no IPv6 socket for an IPv4 address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_for_binds_what_it_says() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = Dht::bind_dual(
        DhtBind::dual_for(SocketAddr::from(([0, 0, 0, 0], 0))),
        DhtConfig::default(),
        None,
    )
    .await
    .unwrap();
    let (v4, v6) = (d.local_addr_v4().unwrap(), d.local_addr_v6());
    if let Some(v6) = v6 {
        assert_eq!(v4.port(), v6.port());
    }
    let only4 = Dht::bind_dual(
        DhtBind::dual_for(SocketAddr::from(([127, 0, 0, 1], port))),
        DhtConfig::loopback(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(only4.local_addr_v6(), None);
    assert_eq!(only4.local_addr(), SocketAddr::from(([127, 0, 0, 1], port)));
    // An IPv6 address the user gave that cannot be bound is an error, not IPv4 alone.
    let bad = DhtBind {
        v4: Some("127.0.0.1:0".parse().unwrap()),
        v6: Some("[2001:db8::1]:0".parse().unwrap()),
        v6_optional: false,
    };
    assert!(Dht::bind_dual(bad, DhtConfig::loopback(), None)
        .await
        .is_err());
}
