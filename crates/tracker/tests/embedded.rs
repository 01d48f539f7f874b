//! The embedded tracker, driven by this crate's own client over HTTP and UDP on 127.0.0.x.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use shoal_core::{Id20, Time};
use shoal_tracker::http_client::http_get;
use shoal_tracker::http_query::announce_query;
use shoal_tracker::udp_client::UdpConfig;
use shoal_tracker::{
    announce_round, parse_http_announce, AnnounceRequest, ClientConfig, Event, RunningTracker,
    ScrapeStats, ServerConfig, Stats, SwarmConfig, TierConfig, TrackerClient, TrackerSet,
    TrackerUrl,
};

async fn tracker(swarm: SwarmConfig) -> RunningTracker {
    RunningTracker::start(ServerConfig {
        http: Some("127.0.0.1:0".parse().unwrap()),
        udp: Some("127.0.0.1:0".parse().unwrap()),
        swarm,
        ..ServerConfig::default()
    })
    .await
    .unwrap()
}

fn client(ip: [u8; 4]) -> TrackerClient {
    TrackerClient::new(ClientConfig {
        bind: shoal_core::LocalBind::loose(Ipv4Addr::from(ip).into()),
        udp: UdpConfig {
            base_timeout: Duration::from_millis(500),
            max_retries: 3,
            ..UdpConfig::default()
        },
        ..ClientConfig::default()
    })
}

fn request(hash: u8, peer: u8, port: u16, left: u64, event: Event) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: Id20([hash; 20]),
        peer_id: Id20([peer; 20]),
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event,
        numwant: Some(50),
        key: peer.into(),
        tracker_id: None,
        compact: true,
        ipv6: None,
    }
}

async fn two_peers_see_each_other(url: &str, hash: u8) {
    let url = TrackerUrl::parse(url).unwrap();
    let (a, b) = (client([127, 0, 0, 2]), client([127, 0, 0, 3]));
    let seed = request(hash, 2, 7001, 0, Event::Started);
    let leech = request(hash, 3, 7002, 100, Event::Started);
    let r = a.announce(&url, &seed).await.unwrap();
    assert!(r.peers.is_empty(), "{:?}", r.peers);
    assert_eq!(r.interval, Some(Duration::from_secs(1800)));
    let r = b.announce(&url, &leech).await.unwrap();
    assert_eq!(
        r.peers,
        vec!["127.0.0.2:7001".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!((r.seeders, r.leechers), (Some(1), Some(1)));
    let r = a
        .announce(
            &url,
            &AnnounceRequest {
                event: Event::None,
                ..seed.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        r.peers,
        vec!["127.0.0.3:7002".parse::<SocketAddr>().unwrap()]
    );
    let s = b
        .scrape(&url, &[Id20([hash; 20]), Id20([0xee; 20])])
        .await
        .unwrap();
    assert_eq!(
        s[0],
        (
            Id20([hash; 20]),
            ScrapeStats {
                seeders: 1,
                leechers: 1,
                completed: 0
            }
        )
    );
    // Completed, then stopped: the counts follow.
    b.announce(
        &url,
        &AnnounceRequest {
            event: Event::Completed,
            left: 0,
            ..leech.clone()
        },
    )
    .await
    .unwrap();
    a.announce(
        &url,
        &AnnounceRequest {
            event: Event::Stopped,
            ..seed
        },
    )
    .await
    .unwrap();
    let s = b.scrape(&url, &[Id20([hash; 20])]).await.unwrap();
    assert_eq!(
        s[0].1,
        ScrapeStats {
            seeders: 1,
            leechers: 0,
            completed: 1
        }
    );
}

#[tokio::test]
async fn http_and_udp_peers_see_each_other_and_scrape_counts() {
    let t = tracker(SwarmConfig::default()).await;
    two_peers_see_each_other(&t.http_announce_url().unwrap(), 1).await;
    two_peers_see_each_other(&t.udp_announce_url().unwrap(), 2).await;
    t.shutdown().await;
}

#[tokio::test]
async fn non_compact_replies_list_dictionaries() {
    let t = tracker(SwarmConfig::default()).await;
    let url = TrackerUrl::parse(&t.http_announce_url().unwrap()).unwrap();
    client([127, 0, 0, 4])
        .announce(&url, &request(3, 4, 7004, 0, Event::Started))
        .await
        .unwrap();
    let mut req = request(3, 5, 7005, 10, Event::Started);
    req.compact = false;
    let target = announce_query(url.path_and_query(), &req);
    let reply = http_get(
        &url,
        &target,
        "test",
        1 << 20,
        shoal_core::LocalBind::loose(Ipv4Addr::new(127, 0, 0, 5).into()),
    )
    .await
    .unwrap();
    assert!(
        reply.body.windows(4).any(|w| w == b"2:ip"),
        "dictionary peers expected"
    );
    let r = parse_http_announce(&reply.body).unwrap();
    assert_eq!(
        r.peers,
        vec!["127.0.0.4:7004".parse::<SocketAddr>().unwrap()]
    );
    t.shutdown().await;
}

#[tokio::test]
async fn silent_peers_expire() {
    // Peers live 2 x interval; the sweep runs every quarter of that.
    let t = tracker(SwarmConfig::with_interval(Duration::from_millis(150))).await;
    let url = TrackerUrl::parse(&t.udp_announce_url().unwrap()).unwrap();
    let c = client([127, 0, 0, 6]);
    c.announce(&url, &request(4, 6, 7006, 5, Event::Started))
        .await
        .unwrap();
    assert_eq!(t.torrent_count(), 1);
    // Poll rather than assert on wall time: it must go, and well within the bound.
    let mut gone = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if t.torrent_count() == 0 {
            gone = true;
            break;
        }
    }
    assert!(gone, "peer never expired");
    t.shutdown().await;
}

#[tokio::test]
async fn tracker_set_drives_started_completed_stopped() {
    let t = tracker(SwarmConfig::default()).await;
    let hash = Id20([5; 20]);
    let tiers = vec![
        vec![t.http_announce_url().unwrap()],
        vec![t.udp_announce_url().unwrap()],
    ];
    let mut set = TrackerSet::new(hash, Id20([7; 20]), 7007, &tiers, TierConfig::default(), 1);
    let c = client([127, 0, 0, 7]);
    let origin = tokio::time::Instant::now();
    let now = || Time::from_duration(origin.elapsed());
    let out = announce_round(
        &mut set,
        &c,
        Stats {
            left: 10,
            ..Stats::default()
        },
        now,
    )
    .await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert!(out.response.is_some());
    let url = TrackerUrl::parse(&t.http_announce_url().unwrap()).unwrap();
    let hashes = [hash];
    assert_eq!(c.scrape(&url, &hashes).await.unwrap()[0].1.leechers, 1);
    // Nothing due until the interval.
    assert!(set.next_deadline().unwrap() > now());
    set.completed(now());
    announce_round(&mut set, &c, Stats::default(), now).await;
    assert_eq!(
        c.scrape(&url, &hashes).await.unwrap()[0].1,
        ScrapeStats {
            seeders: 1,
            leechers: 0,
            completed: 1
        }
    );
    set.stop(now());
    announce_round(&mut set, &c, Stats::default(), now).await;
    assert!(set.is_done());
    let left = c.scrape(&url, &hashes).await.unwrap();
    assert_eq!(
        (left[0].1.seeders, left[0].1.leechers),
        (0, 0),
        "the stopped peer is gone"
    );
    t.shutdown().await;
}

#[tokio::test]
async fn udp_client_recovers_when_the_tracker_restarts() {
    let t = tracker(SwarmConfig::default()).await;
    let udp = t.udp_addr().unwrap();
    let url = TrackerUrl::parse(&t.udp_announce_url().unwrap()).unwrap();
    let c = client([127, 0, 0, 8]);
    c.announce(&url, &request(6, 8, 7008, 0, Event::Started))
        .await
        .unwrap();
    let old = c.udp().connection_id_for(udp).unwrap();
    t.shutdown().await;
    // A new process has a new connection-id key: the cached id is refused, the client reconnects.
    let t = RunningTracker::start(ServerConfig {
        udp: Some(udp),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let r = c
        .announce(&url, &request(6, 8, 7008, 0, Event::None))
        .await
        .unwrap();
    assert_eq!(r.seeders, Some(1));
    assert_ne!(c.udp().connection_id_for(udp), Some(old));
    t.shutdown().await;
}

#[tokio::test]
async fn ipv6_peers_over_http_and_udp() {
    let Ok(t) = RunningTracker::start(ServerConfig {
        http: Some("[::1]:0".parse().unwrap()),
        udp: Some("[::1]:0".parse().unwrap()),
        ..ServerConfig::default()
    })
    .await
    else {
        eprintln!("SKIPPED: no IPv6 loopback here");
        return;
    };
    let c = TrackerClient::new(ClientConfig::default());
    for (i, url) in [t.http_announce_url(), t.udp_announce_url()]
        .into_iter()
        .enumerate()
    {
        let url = TrackerUrl::parse(&url.unwrap()).unwrap();
        let hash = 7 + i as u8;
        c.announce(&url, &request(hash, 1, 7100, 0, Event::Started))
            .await
            .unwrap();
        let r = c
            .announce(&url, &request(hash, 2, 7101, 5, Event::Started))
            .await
            .unwrap();
        assert_eq!(
            r.peers,
            vec!["[::1]:7100".parse::<SocketAddr>().unwrap()],
            "{url}"
        );
    }
    t.shutdown().await;
}

/// BEP 7: a client that listens on an IPv6 address says so with `ipv6=` when it announces over
/// IPv4; the embedded tracker stores that address too and hands it to others in `peers6`,
/// counting the client once.
#[tokio::test]
async fn ipv6_param_over_ipv4_reaches_others_in_peers6() {
    let t = tracker(SwarmConfig::default()).await;
    let url = TrackerUrl::parse(&t.http_announce_url().unwrap()).unwrap();
    let dual = TrackerClient::new(ClientConfig {
        bind: shoal_core::LocalBind::loose(Ipv4Addr::new(127, 0, 0, 2).into()),
        announce_ipv6: Some("::1".parse().unwrap()),
        ..ClientConfig::default()
    });
    let r = dual
        .announce(&url, &request(0x76, 2, 7201, 0, Event::Started))
        .await
        .unwrap();
    assert!(r.peers.is_empty(), "{:?}", r.peers);
    let r = client([127, 0, 0, 3])
        .announce(&url, &request(0x76, 3, 7202, 10, Event::Started))
        .await
        .unwrap();
    let mut peers = r.peers.clone();
    peers.sort();
    assert_eq!(
        peers,
        vec![
            "127.0.0.2:7201".parse::<SocketAddr>().unwrap(),
            "[::1]:7201".parse().unwrap()
        ]
    );
    assert_eq!((r.seeders, r.leechers), (Some(1), Some(1)));
    // The raw reply: the IPv6 address is in `peers6`, 18 bytes.
    let mut req = request(0x76, 4, 7203, 10, Event::None);
    req.numwant = Some(50);
    let target = announce_query(url.path_and_query(), &req);
    let body = http_get(
        &url,
        &target,
        "t",
        1 << 16,
        shoal_core::LocalBind::default(),
    )
    .await
    .unwrap()
    .body;
    let six = b"6:peers618:";
    let at = body
        .windows(six.len())
        .position(|w| w == six)
        .expect("peers6 in the reply");
    let mut one = [0u8; 16];
    one[15] = 1;
    assert_eq!(&body[at + six.len()..at + six.len() + 16], &one);
    assert_eq!(
        &body[at + six.len() + 16..at + six.len() + 18],
        &7201u16.to_be_bytes()
    );
}
