//! Trackers that are down, silent, or answer nonsense: clear errors, no panics, and tier
//! failover within the configured time-out.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use shoal_core::{Id20, Time};
use shoal_tracker::udp_client::UdpConfig;
use shoal_tracker::udp_packet::{encode_udp_response, Family, UdpResponse};
use shoal_tracker::{
    announce_round, AnnounceRequest, ClientConfig, Event, RunningTracker, ServerConfig, Stats,
    TierConfig, TrackerClient, TrackerError, TrackerSet, TrackerUrl,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

fn fast_client() -> TrackerClient {
    TrackerClient::new(ClientConfig {
        bind: shoal_core::LocalBind::loose(Ipv4Addr::LOCALHOST.into()),
        udp: UdpConfig {
            base_timeout: Duration::from_millis(100),
            max_retries: 2,
            ..UdpConfig::default()
        },
        scrape_timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    })
}

fn req() -> AnnounceRequest {
    AnnounceRequest {
        info_hash: Id20([1; 20]),
        peer_id: Id20([2; 20]),
        port: 6881,
        uploaded: 0,
        downloaded: 0,
        left: 0,
        event: Event::Started,
        numwant: Some(50),
        key: 1,
        tracker_id: None,
        compact: true,
        ipv6: None,
    }
}

/// A TCP port with nothing listening.
async fn dead_tcp_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn failover_to_the_next_tier_when_the_first_is_down() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap(); // bound, never read
    let good = RunningTracker::start(ServerConfig {
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let tiers = vec![
        vec![
            format!("http://127.0.0.1:{}/announce", dead_tcp_port().await),
            format!("udp://{}/announce", silent.local_addr().unwrap()),
        ],
        vec![good.http_announce_url().unwrap()],
    ];
    let config = TierConfig {
        request_timeout: Duration::from_secs(5),
        ..TierConfig::default()
    };
    let mut set = TrackerSet::new(Id20([1; 20]), Id20([2; 20]), 6881, &tiers, config, 3);
    let client = fast_client();
    let origin = tokio::time::Instant::now();
    let now = || Time::from_duration(origin.elapsed());
    let out = announce_round(&mut set, &client, Stats::default(), now).await;
    let (url, _) = out.response.expect("the second tier answers");
    assert_eq!(url.to_string(), good.http_announce_url().unwrap());
    assert_eq!(out.errors.len(), 2, "{:?}", out.errors);
    for (u, e) in &out.errors {
        match u.scheme() {
            shoal_tracker::url::Scheme::Http => assert!(matches!(e, TrackerError::Io(_)), "{e}"),
            _ => assert!(matches!(e, TrackerError::Timeout(_)), "{e}"),
        }
    }
    // The dead trackers back off: the next round goes straight to the working one... once the
    // interval has passed; and `started` was delivered to it.
    let scrape = client
        .scrape(
            &TrackerUrl::parse(&good.http_announce_url().unwrap()).unwrap(),
            &[Id20([1; 20])],
        )
        .await
        .unwrap();
    assert_eq!(scrape[0].1.seeders, 1);
    good.shutdown().await;
}

#[tokio::test]
async fn request_timeout_bounds_a_silent_udp_tracker() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let client = TrackerClient::new(ClientConfig::default()); // BEP 15's 15 s first time-out
    let tiers = vec![vec![format!("udp://{}", silent.local_addr().unwrap())]];
    let config = TierConfig {
        request_timeout: Duration::from_millis(300),
        ..TierConfig::default()
    };
    let mut set = TrackerSet::new(Id20([1; 20]), Id20([2; 20]), 6881, &tiers, config, 3);
    let job = set.poll_announce(Time::ZERO).unwrap();
    let err = client.run_job(&job, Stats::default()).await.unwrap_err();
    assert_eq!(err, TrackerError::Timeout(Duration::from_millis(300)));
    set.on_failure(&job, &err, Time::ZERO);
    assert_eq!(set.next_deadline(), Some(Time::ZERO));
    assert!(set.poll_announce(Time::ZERO).is_none(), "backing off");
}

/// A one-shot HTTP server that answers every connection with `reply`.
async fn canned_http(reply: Vec<u8>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(&reply).await;
                let _ = s.shutdown().await;
            });
        }
    });
    format!("http://{addr}/announce")
}

fn http(status: &str, body: &[u8], length: bool) -> Vec<u8> {
    let mut r = format!("HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n").into_bytes();
    if length {
        r.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    } else {
        r.extend_from_slice(b"Connection: close\r\n");
    }
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(body);
    r
}

#[tokio::test]
async fn http_garbage_huge_bodies_and_refusals_are_clear_errors() {
    let client = fast_client();
    let huge = vec![b'x'; (1 << 20) + 10];
    type Check = fn(&TrackerError) -> bool;
    let cases: Vec<(Vec<u8>, Check)> = vec![
        (http("200 OK", b"<html>hello</html>", true), |e| {
            matches!(e, TrackerError::Malformed(_))
        }),
        (http("200 OK", &huge, true), |e| {
            matches!(e, TrackerError::TooLarge { .. })
        }),
        (http("200 OK", &huge, false), |e| {
            matches!(e, TrackerError::TooLarge { .. })
        }),
        (http("200 OK", b"d14:failure reason7:go awaye", true), |e| {
            *e == TrackerError::Failure("go away".into())
        }),
        (
            http("403 Forbidden", b"d14:failure reason6:bannede", true),
            |e| {
                *e == TrackerError::HttpStatus {
                    status: 403,
                    failure: Some("banned".into()),
                }
            },
        ),
        (b"SSH-2.0-OpenSSH\r\n".to_vec(), |e| {
            matches!(e, TrackerError::Io(_))
        }),
        (
            http("200 OK", b"d8:intervali60e5:peers5:abcdee", true),
            |e| matches!(e, TrackerError::Malformed(_)),
        ),
    ];
    for (reply, ok) in cases {
        let url = TrackerUrl::parse(&canned_http(reply.clone()).await).unwrap();
        let err = client.announce(&url, &req()).await.unwrap_err();
        assert!(
            ok(&err),
            "{err:?} for {:?}",
            String::from_utf8_lossy(&reply[..reply.len().min(80)])
        );
        // Messages are for humans: never empty.
        assert!(!err.to_string().is_empty());
    }
}

/// A fake UDP tracker: `answer(packet)` gives the reply datagrams for each request.
async fn fake_udp(answer: fn(&[u8]) -> Vec<Vec<u8>>) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            for r in answer(&buf[..n]) {
                let _ = sock.send_to(&r, from).await;
            }
        }
    });
    addr
}

fn tid(p: &[u8]) -> u32 {
    u32::from_be_bytes(p[12..16].try_into().unwrap())
}

fn connect_or(p: &[u8], other: UdpResponse) -> Vec<Vec<u8>> {
    let action = u32::from_be_bytes(p[8..12].try_into().unwrap());
    let resp = if action == 0 {
        UdpResponse::Connect {
            transaction_id: tid(p),
            connection_id: 42,
        }
    } else {
        other
    };
    vec![encode_udp_response(&resp, Family::V4)]
}

#[tokio::test]
async fn udp_errors_empty_replies_and_garbage() {
    let client = fast_client();
    let announce = |addr: SocketAddr| {
        let url = TrackerUrl::parse(&format!("udp://{addr}/announce")).unwrap();
        let client = &client;
        async move { client.announce(&url, &req()).await }
    };

    // opentracker's 8-byte reply for a torrent off its whitelist.
    let addr = fake_udp(|p| {
        connect_or(
            p,
            UdpResponse::EmptyAnnounce {
                transaction_id: tid(p),
            },
        )
    })
    .await;
    assert_eq!(announce(addr).await, Err(TrackerError::EmptyAnnounceReply));

    // An error reply on a fresh connection id is the tracker's refusal, surfaced as it is.
    let addr = fake_udp(|p| {
        connect_or(
            p,
            UdpResponse::Error {
                transaction_id: tid(p),
                message: "no thanks".into(),
            },
        )
    })
    .await;
    assert_eq!(
        announce(addr).await,
        Err(TrackerError::Failure("no thanks".into()))
    );

    // Garbage, wrong transaction ids and wrong actions are ignored until the time-out.
    let addr = fake_udp(|p| {
        let t = tid(p).wrapping_add(1);
        vec![
            b"\x00\x00garbage".to_vec(),
            vec![0xff; 300],
            encode_udp_response(
                &UdpResponse::Connect {
                    transaction_id: t,
                    connection_id: 1,
                },
                Family::V4,
            ),
        ]
    })
    .await;
    assert!(matches!(
        announce(addr).await,
        Err(TrackerError::Timeout(_))
    ));

    // A good announce after a reply for another transaction.
    let addr = fake_udp(|p| {
        let mut out = vec![encode_udp_response(
            &UdpResponse::Scrape {
                transaction_id: tid(p),
                entries: vec![],
            },
            Family::V4,
        )];
        out.extend(connect_or(
            p,
            UdpResponse::Announce {
                transaction_id: tid(p),
                interval: 60,
                leechers: 1,
                seeders: 2,
                peers: vec!["10.0.0.1:1".parse().unwrap()],
            },
        ));
        out
    })
    .await;
    let r = announce(addr).await.unwrap();
    assert_eq!(
        (r.interval, r.seeders, r.leechers),
        (Some(Duration::from_secs(60)), Some(2), Some(1))
    );
    assert_eq!(r.peers, vec!["10.0.0.1:1".parse::<SocketAddr>().unwrap()]);
}

static CONNECTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[tokio::test]
async fn a_connection_id_that_expires_during_retransmission_is_renewed() {
    // Answers every connect, never an announce.
    let addr = fake_udp(|p| {
        let action = u32::from_be_bytes(p[8..12].try_into().unwrap());
        if action != 0 {
            return vec![];
        }
        CONNECTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        vec![encode_udp_response(
            &UdpResponse::Connect {
                transaction_id: tid(p),
                connection_id: 7,
            },
            Family::V4,
        )]
    })
    .await;
    let client = TrackerClient::new(ClientConfig {
        udp: UdpConfig {
            base_timeout: Duration::from_millis(100),
            max_retries: 3,
            connection_id_lifetime: Duration::from_millis(250),
            ..UdpConfig::default()
        },
        ..ClientConfig::default()
    });
    let url = TrackerUrl::parse(&format!("udp://{addr}")).unwrap();
    let err = client.announce(&url, &req()).await.unwrap_err();
    assert!(matches!(err, TrackerError::Timeout(_)), "{err}");
    // 100 ms, 200 ms (id now stale: connect again), 400 ms (stale again), 800 ms: give up.
    assert!(
        CONNECTS.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the stale id was reused instead of reconnecting"
    );
    assert_eq!(client.udp().connection_id_for(addr), None);
}

/// Under a strict `--bind` for IPv4 only, a tracker reachable only over IPv6 is refused before
/// any socket exists, with the reason; and a bound address the machine lacks fails the bind
/// (nothing falls back to another source address).
#[tokio::test]
async fn strict_bind_refuses_the_unbound_family_and_missing_addresses() {
    let v4_only = TrackerClient::new(ClientConfig {
        bind: shoal_core::LocalBind::strict(&[Ipv4Addr::LOCALHOST.into()]).unwrap(),
        ..ClientConfig::default()
    });
    for url in ["http://[::1]:1/announce", "udp://[::1]:1/announce"] {
        let url = TrackerUrl::parse(url).unwrap();
        let err = v4_only.announce(&url, &req()).await.unwrap_err();
        assert!(
            err.to_string().contains("no --bind address for IPv6"),
            "{url}: {err}"
        );
    }
    let missing = TrackerClient::new(ClientConfig {
        bind: shoal_core::LocalBind::strict(&[Ipv4Addr::new(192, 0, 2, 1).into()]).unwrap(),
        ..ClientConfig::default()
    });
    for url in ["http://127.0.0.1:1/announce", "udp://127.0.0.1:1/announce"] {
        let url = TrackerUrl::parse(url).unwrap();
        let err = missing.announce(&url, &req()).await.unwrap_err();
        assert!(
            err.to_string().contains("cannot bind 192.0.2.1"),
            "{url}: {err}"
        );
    }
}
