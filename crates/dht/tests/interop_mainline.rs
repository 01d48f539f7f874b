//! Interop with the `mainline` crate's loopback `Testnet` (a different Rust implementation of
//! BEP 5; it answers only 4-byte transaction ids, which is what shoal sends).

#![allow(deprecated)] // mainline's blocking API is marked deprecated in favour of its async one.

use std::net::SocketAddr;
use std::time::Duration;

use mainline::{Id, Testnet};
use shoal_core::Id20;
use shoal_dht::driver::Dht;
use shoal_dht::DhtConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoal_and_mainline_find_each_other() {
    tokio::time::timeout(Duration::from_secs(90), run())
        .await
        .expect("the mainline interop test took more than 90 s");
}

async fn run() {
    // Testnet::builder binds 127.0.0.1 (loopback only).
    let testnet = tokio::task::spawn_blocking(|| Testnet::builder(10).build().unwrap())
        .await
        .unwrap();
    let bootstrap: Vec<SocketAddr> = testnet
        .bootstrap
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(bootstrap.iter().all(|a| a.ip().is_loopback()));

    let dht = Dht::bind("127.0.0.1:0".parse().unwrap(), DhtConfig::loopback())
        .await
        .unwrap();
    let n = dht.bootstrap(bootstrap.clone()).await.unwrap();
    println!("mainline interop: shoal bootstrapped from 10 mainline nodes, table {n} nodes");
    assert!(n >= 3);
    assert!(dht.ping(bootstrap[0]).await.unwrap().is_some());

    // mainline announces, shoal finds it.
    let h1 = Id20([0x11; 20]);
    let node = testnet.nodes[3].clone();
    tokio::task::spawn_blocking(move || {
        node.announce_peer(Id::from_bytes(h1.0).unwrap(), Some(7777))
            .unwrap()
    })
    .await
    .unwrap();
    let want: SocketAddr = "127.0.0.1:7777".parse().unwrap();
    let mut found = Vec::new();
    for _ in 0..5 {
        let mut rx = dht.get_peers(h1).await.unwrap();
        while let Some(p) = rx.recv().await {
            found.push(p);
        }
        if found.contains(&want) {
            break;
        }
    }
    println!("mainline interop: shoal get_peers found {found:?}");
    assert!(found.contains(&want));

    // shoal announces, mainline finds it.
    let h2 = Id20([0x22; 20]);
    let r = dht.announce(h2, Some(8888)).await.unwrap();
    println!(
        "mainline interop: shoal announce acked by {} mainline nodes",
        r.acked
    );
    assert!(r.acked >= 1);
    let mut peers = Vec::new();
    for _ in 0..3 {
        let node = testnet.nodes[7].clone();
        peers = tokio::task::spawn_blocking(move || {
            node.get_peers(Id::from_bytes(h2.0).unwrap())
                .flatten()
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        if peers.iter().any(|p| p.port() == 8888) {
            break;
        }
    }
    println!("mainline interop: mainline get_peers found {peers:?}");
    assert!(peers.iter().any(|p| p.port() == 8888));
}
