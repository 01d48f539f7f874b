//! Interop with opentracker (Debian package, whitelist build): HTTP and UDP announces and
//! scrapes, a torrent off the whitelist, and a restart that makes a cached UDP connection id
//! stale. Skipped (with a message) when opentracker is not installed, except under `CI=true`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shoal_core::Id20;
use shoal_tracker::udp_client::UdpConfig;
use shoal_tracker::udp_packet::encode_udp_request;
use shoal_tracker::{
    parse_udp_response, AnnounceRequest, ClientConfig, Event, TrackerClient, TrackerError,
    TrackerUrl, UdpRequest, UdpResponse,
};

const OPENTRACKER: &str = "/usr/bin/opentracker";
const LISTED: &str = "d460b8af98f716752723c9fa5b0b57995ee43085";
const NOT_LISTED: &str = "9e36d0820d95dc35e66bb6b5945d7709e6d1a4f7";

/// A running opentracker on 127.0.0.1, HTTP and UDP on one port, killed on drop.
struct OpenTracker {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

fn available() -> bool {
    if std::path::Path::new(OPENTRACKER).exists() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{OPENTRACKER} is missing; CI must install the opentracker package");
    }
    eprintln!("SKIPPED: {OPENTRACKER} is not installed");
    false
}

/// A port free for both TCP and UDP on 127.0.0.1.
fn free_port() -> u16 {
    for _ in 0..100 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

impl OpenTracker {
    fn start() -> OpenTracker {
        let dir = std::env::temp_dir().join(format!(
            "shoal-opentracker-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("whitelist.txt"), format!("{LISTED}\n")).unwrap();
        // Started as root it chroots into `dir` and drops to `nobody`, who must be able to read.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::set_permissions(
                dir.join("whitelist.txt"),
                std::fs::Permissions::from_mode(0o644),
            )
            .unwrap();
        }
        let mut t = OpenTracker {
            child: None,
            dir,
            port: free_port(),
        };
        t.spawn();
        t
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let child = Command::new(OPENTRACKER)
            .args(["-i", "127.0.0.1", "-p", &port, "-P", &port, "-d"])
            .arg(&self.dir)
            .args(["-w", "whitelist.txt"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start opentracker");
        self.child = Some(child);
        // Ready when it accepts TCP and has loaded its whitelist (it reads it in a thread of its
        // own after start): a UDP `stopped` announce of the listed torrent, which adds no peer,
        // gets a full reply instead of the 8-byte one.
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.whitelist_loaded()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("opentracker did not start on port {}", self.port);
    }

    fn whitelist_loaded(&self) -> bool {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        sock.connect(("127.0.0.1", self.port)).unwrap();
        let mut buf = [0u8; 512];
        let mut ask = |req: UdpRequest| -> Option<UdpResponse> {
            sock.send(&encode_udp_request(&req)).ok()?;
            let n = sock.recv(&mut buf).ok()?;
            parse_udp_response(&buf[..n]).ok()
        };
        let Some(UdpResponse::Connect { connection_id, .. }) =
            ask(UdpRequest::Connect { transaction_id: 1 })
        else {
            return false;
        };
        let probe = AnnounceRequest {
            event: Event::Stopped,
            ..request(LISTED, 99, 9, 0)
        };
        matches!(
            ask(UdpRequest::Announce {
                connection_id,
                transaction_id: 2,
                request: probe,
                ip: 0,
                url_data: Vec::new(),
            }),
            Some(UdpResponse::Announce { .. })
        )
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts on the same port. Seen here: a process restarted within the same second still
    /// accepted the old connection ids (its key looks seeded from the clock in seconds), so the
    /// new one starts more than a second later.
    fn restart(&mut self) {
        self.stop();
        std::thread::sleep(Duration::from_millis(1100));
        self.spawn();
    }

    fn http(&self) -> TrackerUrl {
        TrackerUrl::parse(&format!("http://127.0.0.1:{}/announce", self.port)).unwrap()
    }

    fn udp(&self) -> TrackerUrl {
        TrackerUrl::parse(&format!("udp://127.0.0.1:{}/announce", self.port)).unwrap()
    }
}

impl Drop for OpenTracker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn client(last: u8) -> TrackerClient {
    TrackerClient::new(ClientConfig {
        bind: shoal_core::LocalBind::loose(Ipv4Addr::new(127, 0, 0, last).into()),
        udp: UdpConfig {
            base_timeout: Duration::from_millis(500),
            max_retries: 3,
            ..UdpConfig::default()
        },
        ..ClientConfig::default()
    })
}

fn request(hash: &str, peer: u8, port: u16, left: u64) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: Id20::from_hex(hash).unwrap(),
        peer_id: Id20([peer; 20]),
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event: Event::Started,
        numwant: Some(50),
        key: peer.into(),
        tracker_id: None,
        compact: true,
        ipv6: None,
    }
}

async fn announce_and_scrape(url: TrackerUrl, port_base: u16) {
    let (a, b) = (client(2), client(3));
    let ra = a
        .announce(&url, &request(LISTED, 2, port_base, 0))
        .await
        .unwrap();
    assert!(ra.interval.is_some());
    let rb = b
        .announce(&url, &request(LISTED, 3, port_base + 1, 1000))
        .await
        .unwrap();
    let seeder: SocketAddr = format!("127.0.0.2:{port_base}").parse().unwrap();
    assert!(rb.peers.contains(&seeder), "{:?}", rb.peers);
    assert_eq!((rb.seeders, rb.leechers), (Some(1), Some(1)));
    let s = b
        .scrape(&url, &[Id20::from_hex(LISTED).unwrap()])
        .await
        .unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].1.seeders, s[0].1.leechers), (1, 1));
}

#[tokio::test]
async fn http_announce_and_scrape() {
    if !available() {
        return;
    }
    let ot = OpenTracker::start();
    announce_and_scrape(ot.http(), 7201).await;
}

#[tokio::test]
async fn udp_announce_and_scrape() {
    if !available() {
        return;
    }
    let ot = OpenTracker::start();
    announce_and_scrape(ot.udp(), 7301).await;
}

#[tokio::test]
async fn a_torrent_off_the_whitelist_is_a_clear_error() {
    if !available() {
        return;
    }
    let ot = OpenTracker::start();
    let c = client(4);
    let err = c
        .announce(&ot.http(), &request(NOT_LISTED, 4, 7401, 0))
        .await
        .unwrap_err();
    match &err {
        TrackerError::Failure(m) => assert!(m.contains("not authorized"), "{m}"),
        e => panic!("expected a failure reason, got {e:?}"),
    }
    let err = c
        .announce(&ot.udp(), &request(NOT_LISTED, 4, 7401, 0))
        .await
        .unwrap_err();
    assert_eq!(err, TrackerError::EmptyAnnounceReply);
    assert!(err.to_string().contains("whitelist"));
    let hash = Id20::from_hex(NOT_LISTED).unwrap();
    assert!(c.scrape(&ot.http(), &[hash]).await.unwrap().is_empty());
    let s = c.scrape(&ot.udp(), &[hash]).await.unwrap();
    // No entry (as captured) or an all-zero one (seen here): either way, nobody.
    assert!(s.iter().all(|(_, st)| *st == Default::default()), "{s:?}");
}

#[tokio::test]
async fn a_stale_connection_id_after_a_restart_is_recovered() {
    if !available() {
        return;
    }
    let mut ot = OpenTracker::start();
    let c = client(5);
    let req = request(LISTED, 5, 7501, 0);
    c.announce(&ot.udp(), &req).await.unwrap();
    let addr: SocketAddr = ("127.0.0.1".parse::<Ipv4Addr>().unwrap(), ot.port).into();
    let old = c
        .udp()
        .connection_id_for(addr)
        .expect("a cached connection id");
    // The client now holds a connection id that only the old process knew.
    ot.restart();
    let again = AnnounceRequest {
        event: Event::None,
        ..req.clone()
    };
    // The new process refuses the old id ("Connection ID missmatch.")...
    let raw = std::net::UdpSocket::bind("127.0.0.5:0").unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let packet = encode_udp_request(&UdpRequest::Announce {
        connection_id: old,
        transaction_id: 77,
        request: again.clone(),
        ip: 0,
        url_data: Vec::new(),
    });
    raw.send_to(&packet, addr).unwrap();
    let mut buf = [0u8; 512];
    let n = raw.recv(&mut buf).unwrap();
    assert!(
        matches!(
            parse_udp_response(&buf[..n]),
            Ok(UdpResponse::Error {
                transaction_id: 77,
                ..
            })
        ),
        "{:?}",
        parse_udp_response(&buf[..n])
    );
    // ...and the client recovers with a fresh one.
    let r = c.announce(&ot.udp(), &again).await.unwrap();
    assert_eq!(r.seeders, Some(1));
    let new = c.udp().connection_id_for(addr).unwrap();
    assert_ne!(old, new);
}
