//! A DHT of shoal nodes over real UDP on 127.0.0.1, in one tokio runtime.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_core::Id20;
use shoal_dht::driver::Dht;
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
