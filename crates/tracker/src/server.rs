//! The embedded tracker: HTTP (`/announce`, `/scrape`) and, when enabled, UDP (BEP 15), serving
//! from a [`Swarms`] in memory. The protocol logic is in [`crate::swarm`] and the codecs; this
//! file only owns the sockets.

use std::collections::hash_map::RandomState;
use std::convert::Infallible;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use shoal_core::Time;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::http_query::{parse_announce_query, parse_scrape_query};
use crate::http_response::{encode_announce_response, encode_failure, encode_scrape_response};
use crate::swarm::{SwarmConfig, Swarms};
use crate::udp_packet::{
    encode_udp_response, parse_udp_request, Family, UdpRequest, UdpResponse, MAX_PACKET_LEN,
};
use crate::TrackerError;

/// Where and how the embedded tracker serves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// TCP address for HTTP; `None` for no HTTP. Port 0 picks a free port.
    pub http: Option<SocketAddr>,
    /// UDP address for BEP 15; `None` for no UDP.
    pub udp: Option<SocketAddr>,
    /// Swarm limits and timing.
    pub swarm: SwarmConfig,
    /// Most HTTP connections served at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http: None,
            udp: None,
            swarm: SwarmConfig::default(),
            max_connections: 256,
        }
    }
}

/// Time allowed for one HTTP connection, headers to last byte.
const HTTP_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection id the UDP side hands out stays valid: this bucket and the previous one
/// (BEP 15: accept an id for two minutes).
const CONNECTION_ID_BUCKET: Duration = Duration::from_secs(60);

struct Shared {
    swarms: Mutex<Swarms>,
    origin: Instant,
    /// Keyed hashing for stateless UDP connection ids (a SYN-cookie, as BEP 15 suggests).
    secret: RandomState,
}

impl Shared {
    fn now(&self) -> Time {
        Time::from_duration(self.origin.elapsed())
    }

    fn connection_id(&self, ip: IpAddr, bucket: u64) -> u64 {
        self.secret.hash_one((ip, bucket))
    }

    fn bucket(&self) -> u64 {
        self.origin.elapsed().as_secs() / CONNECTION_ID_BUCKET.as_secs()
    }

    fn connection_id_ok(&self, ip: IpAddr, id: u64) -> bool {
        let b = self.bucket();
        id == self.connection_id(ip, b) || (b > 0 && id == self.connection_id(ip, b - 1))
    }
}

/// A running embedded tracker. Dropping it stops serving; [`RunningTracker::shutdown`] also
/// waits for the tasks to end.
pub struct RunningTracker {
    http_addr: Option<SocketAddr>,
    udp_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningTracker")
            .field("http_addr", &self.http_addr)
            .field("udp_addr", &self.udp_addr)
            .finish()
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl RunningTracker {
    /// Binds the sockets and starts serving on the current tokio runtime.
    pub async fn start(config: ServerConfig) -> Result<RunningTracker, TrackerError> {
        let sweep_every = (config.swarm.peer_ttl / 4).max(Duration::from_millis(200));
        let shared = Arc::new(Shared {
            swarms: Mutex::new(Swarms::new(config.swarm.clone())),
            origin: Instant::now(),
            secret: RandomState::new(),
        });
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut http_addr = None;
        if let Some(addr) = config.http {
            let listener = TcpListener::bind(addr).await?;
            http_addr = Some(listener.local_addr()?);
            let limit = Arc::new(Semaphore::new(config.max_connections.max(1)));
            tasks.push(tokio::spawn(serve_http(
                listener,
                shared.clone(),
                limit,
                stopped.clone(),
            )));
        }
        let mut udp_addr = None;
        if let Some(addr) = config.udp {
            let sock = UdpSocket::bind(addr).await?;
            udp_addr = Some(sock.local_addr()?);
            tasks.push(tokio::spawn(serve_udp(
                sock,
                shared.clone(),
                stopped.clone(),
            )));
        }
        let sweeper = shared.clone();
        let mut sweep_stop = stopped;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(sweep_every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let now = sweeper.now();
                        if let Ok(mut s) = sweeper.swarms.lock() {
                            s.expire(now);
                        }
                    }
                    _ = sweep_stop.changed() => break,
                }
            }
        }));
        Ok(RunningTracker {
            http_addr,
            udp_addr,
            shared,
            stop,
            tasks,
        })
    }

    /// The HTTP address actually bound.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The UDP address actually bound.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp_addr
    }

    /// `http://ADDR/announce`, if HTTP is served.
    pub fn http_announce_url(&self) -> Option<String> {
        self.http_addr.map(|a| format!("http://{a}/announce"))
    }

    /// `udp://ADDR/announce`, if UDP is served.
    pub fn udp_announce_url(&self) -> Option<String> {
        self.udp_addr.map(|a| format!("udp://{a}/announce"))
    }

    /// Number of torrents tracked now.
    pub fn torrent_count(&self) -> usize {
        self.shared
            .swarms
            .lock()
            .map(|s| s.torrent_count())
            .unwrap_or(0)
    }

    /// Stops serving and waits for the tasks to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for RunningTracker {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn serve_http(
    listener: TcpListener,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                // Out of file descriptors and the like: back off briefly rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue; // over the connection cap: drop it
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle_http(&req, peer, &shared)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(HTTP_CONNECTION_TIMEOUT, conn).await;
            drop(permit);
        });
    }
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    r
}

fn handle_http(
    req: &Request<Incoming>,
    peer: SocketAddr,
    shared: &Shared,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, encode_failure("use GET"));
    }
    let query = req.uri().query().unwrap_or("").as_bytes();
    let now = shared.now();
    match req.uri().path() {
        "/announce" => {
            let body = match parse_announce_query(query) {
                Err(e) => encode_failure(&e.to_string()),
                Ok(a) => {
                    let from = SocketAddr::new(canonical(peer.ip()), a.port);
                    let answer = match shared.swarms.lock() {
                        Ok(mut s) => s.announce(&a, from, now),
                        Err(_) => Err("tracker error".into()),
                    };
                    match answer {
                        Ok(resp) => encode_announce_response(&resp, a.compact),
                        Err(reason) => encode_failure(&reason),
                    }
                }
            };
            reply(StatusCode::OK, body)
        }
        "/scrape" => {
            let body = match parse_scrape_query(query) {
                Err(e) => encode_failure(&e.to_string()),
                Ok(h) if h.is_empty() => encode_failure("full scrapes are not served"),
                Ok(h) => match shared.swarms.lock() {
                    Ok(s) => encode_scrape_response(&s.scrape(&h, now)),
                    Err(_) => encode_failure("tracker error"),
                },
            };
            reply(StatusCode::OK, body)
        }
        _ => reply(StatusCode::NOT_FOUND, encode_failure("not found")),
    }
}

async fn serve_udp(sock: UdpSocket, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut buf = vec![0u8; MAX_PACKET_LEN];
    loop {
        let (n, from) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(_) => continue, // e.g. ICMP errors from an earlier send
            },
            _ = stopped.changed() => return,
        };
        if let Some(out) = handle_udp(&buf[..n], from, &shared) {
            let _ = sock.send_to(&out, from).await;
        }
    }
}

/// Answers one UDP datagram; `None` for packets that deserve no answer.
fn handle_udp(packet: &[u8], from: SocketAddr, shared: &Shared) -> Option<Vec<u8>> {
    let family = Family::of(&from);
    let ip = canonical(from.ip());
    let req = parse_udp_request(packet).ok()?;
    let now = shared.now();
    let resp = match req {
        UdpRequest::Connect { transaction_id } => UdpResponse::Connect {
            transaction_id,
            connection_id: shared.connection_id(ip, shared.bucket()),
        },
        UdpRequest::Announce {
            connection_id,
            transaction_id,
            ..
        }
        | UdpRequest::Scrape {
            connection_id,
            transaction_id,
            ..
        } if !shared.connection_id_ok(ip, connection_id) => UdpResponse::Error {
            transaction_id,
            message: "connection id mismatch".into(),
        },
        UdpRequest::Announce {
            transaction_id,
            request,
            ..
        } => {
            let answer = shared.swarms.lock().ok()?.announce(
                &request,
                SocketAddr::new(ip, request.port),
                now,
            );
            match answer {
                Ok(a) => UdpResponse::Announce {
                    transaction_id,
                    interval: a
                        .interval
                        .map_or(0, |d| d.as_secs().min(u32::MAX as u64) as u32),
                    leechers: a.leechers.unwrap_or(0),
                    seeders: a.seeders.unwrap_or(0),
                    peers: a.peers,
                },
                Err(message) => UdpResponse::Error {
                    transaction_id,
                    message,
                },
            }
        }
        UdpRequest::Scrape {
            transaction_id,
            info_hashes,
            ..
        } => {
            let swarms = shared.swarms.lock().ok()?;
            // BEP 15 answers in request order, one entry per hash; unknown ones count zero.
            let entries = info_hashes
                .iter()
                .map(|h| {
                    swarms
                        .scrape(std::slice::from_ref(h), now)
                        .first()
                        .map(|(_, s)| *s)
                        .unwrap_or_default()
                })
                .collect();
            UdpResponse::Scrape {
                transaction_id,
                entries,
            }
        }
    };
    Some(encode_udp_response(&resp, family))
}
