//! The session's lifecycle: a stopped torrent leaves the registry (it can be added again), and
//! nothing the session started outlives it (its DHT node's UDP port is free again).

use std::net::SocketAddr;
use std::time::Duration;

use shoal_engine::{DhtSettings, ResumeLocation, Session, SessionConfig, TorrentOptions};
use shoal_metainfo::TorrentBuilder;

fn options(save: &std::path::Path) -> TorrentOptions {
    TorrentOptions {
        save_path: save.to_path_buf(),
        seed_only: true,
        peers: Vec::new(),
        resume: ResumeLocation::Disabled,
        trackers: Vec::new(),
        tracker_config: Default::default(),
        wanted_files: None,
        super_seed: false,
        upload_limit: None,
        download_limit: None,
        sequential: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_torrent_can_be_added_again() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.bin");
    std::fs::write(&file, vec![7u8; 100_000]).unwrap();
    let created = TorrentBuilder::new(&file)
        .no_date()
        .build(&mut |_, _| {})
        .unwrap();
    let session = Session::bind(SessionConfig {
        listen: "127.0.0.2:0".parse().unwrap(),
        ..SessionConfig::default()
    })
    .await
    .unwrap();
    for _ in 0..3 {
        let meta = created.metainfo.clone();
        let handle = session
            .add_torrent(meta, options(dir.path()), |_, _| {})
            .await
            .expect("added (again)");
        // A second add of the same torrent while it runs is refused.
        let dup = session
            .add_torrent(created.metainfo.clone(), options(dir.path()), |_, _| {})
            .await;
        assert!(dup.is_err());
        handle.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_session_stops_its_dht_node() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::bind(SessionConfig {
        listen: "127.0.0.3:0".parse().unwrap(),
        // A loopback bootstrap node that does not exist: nothing leaves the machine.
        dht: Some(DhtSettings {
            bootstrap: vec!["127.0.0.3:9".into()],
            // With a state file, a saver task runs every 5 minutes: it must not keep the node.
            state_file: Some(dir.path().join("dht.state")),
        }),
        ..SessionConfig::default()
    })
    .await
    .unwrap();
    let dht: SocketAddr = session.dht_addr().expect("a DHT node");
    drop(session);
    // Bounded wait for the node's task to end and release its socket.
    for _ in 0..100 {
        if std::net::UdpSocket::bind(dht).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the DHT node outlived its session ({dht} still bound)");
}
