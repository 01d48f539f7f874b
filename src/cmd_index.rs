//! `shoal index crawl`: fills the keyword-search index from the DHT. The tokio driver of the
//! sans-IO crawler (`shoal_dht::crawler`): it sends the `sample_infohashes` queries the crawler
//! asks for through a DHT node, looks up peers of each new info-hash (`get_peers`), fetches its
//! metadata with the engine's BEP 9 code (every copy checked against the info-hash), and stores
//! name, size, files and peers seen in the index (`shoal_index`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use shoal_core::{Id20, Time};
use shoal_dht::crawler::{CrawlEvent, Crawler, CrawlerConfig};
use shoal_dht::driver::Dht;
use shoal_dht::{DhtConfig, SampleReply};
use shoal_engine::events::{CrawlReport, JsonEvent};
use shoal_index::{Index, IndexConfig, Torrent};
use shoal_metainfo::Metainfo;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::output::{self, errln, outln};

/// Arguments of `shoal index`.
#[derive(Args, Debug)]
pub struct IndexArgs {
    #[command(subcommand)]
    command: IndexCommand,
}

#[derive(Subcommand, Debug)]
enum IndexCommand {
    /// Crawl the DHT (BEP 51 samples, BEP 9 metadata) and add what is found to the index.
    Crawl(CrawlArgs),
}

/// Arguments of `shoal index crawl`.
#[derive(Args, Debug)]
pub struct CrawlArgs {
    /// The index file (created if missing).
    #[arg(long)]
    index: Option<PathBuf>,
    /// UDP address of the crawler's DHT node.
    #[arg(long, default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// Nodes to start from (HOST:PORT); repeatable. Default: the public routers.
    #[arg(long)]
    bootstrap: Vec<String>,
    /// Stop after this many seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    duration: u64,
    /// `sample_infohashes` queries per second, in total.
    #[arg(long, default_value_t = 20.0)]
    queries_per_second: f64,
    /// Least seconds between two queries to one node (nodes' own `interval` also holds).
    #[arg(long, default_value_t = 60)]
    per_node_gap: u64,
    /// Metadata fetches at once.
    #[arg(long, default_value_t = 8)]
    metadata_parallel: usize,
    /// Seconds one info-hash's peer lookup and metadata fetch may take.
    #[arg(long, default_value_t = 30)]
    metadata_timeout: u64,
    /// Most torrents the index keeps (the least seen are evicted).
    #[arg(long, default_value_t = 1_000_000)]
    max_torrents: u64,
    /// JSON lines on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs `shoal index …`.
pub fn run(args: &IndexArgs) -> anyhow::Result<()> {
    match &args.command {
        IndexCommand::Crawl(a) => crawl(a),
    }
}

/// Info-hashes waiting for a metadata fetch; beyond it, new ones wait to be seen again.
const MAX_PENDING: usize = 10_000;
/// Fetch attempts per info-hash (a torrent without reachable peers is tried when seen again).
const MAX_ATTEMPTS: u8 = 3;
/// Info-hashes whose attempts are remembered.
const MAX_ATTEMPT_RECORDS: usize = 100_000;
/// How often a status line is printed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What one metadata task found.
enum Fetched {
    Ok(Box<Torrent>),
    Failed(Id20, String),
}

/// Looks up peers of `h`, then fetches and checks its metadata from them.
async fn fetch_one(
    dht: Dht,
    h: Id20,
    peer_id: Id20,
    bind: shoal_core::LocalBind,
    timeout: Duration,
) -> Fetched {
    let start = Instant::now();
    let mut rx = match dht.get_peers(h).await {
        Ok(rx) => rx,
        Err(e) => return Fetched::Failed(h, e.to_string()),
    };
    let mut peers: Vec<SocketAddr> = Vec::new();
    let mut seen = HashSet::new();
    let lookup_deadline = start + timeout / 3;
    while let Ok(Some(p)) = tokio::time::timeout_at(lookup_deadline, rx.recv()).await {
        if seen.insert(p) {
            peers.push(p);
        }
    }
    if peers.is_empty() {
        return Fetched::Failed(h, "no peers found".into());
    }
    let (_more_tx, more_rx) = mpsc::channel(1);
    let left = timeout
        .saturating_sub(start.elapsed())
        .max(Duration::from_secs(1));
    let n = peers.len() as u64;
    match shoal_engine::metadata::fetch_metadata(
        h,
        None,
        peer_id,
        peers,
        more_rx,
        shoal_engine::metadata::DialSettings {
            bind,
            timeout: Duration::from_secs(5),
            // Crawled peers are strangers: whatever they speak (prefer: try MSE, fall back).
            encryption: shoal_engine::EncryptionPolicy::Prefer,
            utp: shoal_engine::UtpMode::Off,
            utp_endpoint: None,
        },
        left,
    )
    .await
    {
        Ok(((info, _), _liars)) => match Metainfo::from_info_bytes(&info, Vec::new()) {
            Ok(m) => Fetched::Ok(Box::new(Torrent {
                info_hash: h,
                name: m.info.name.clone(),
                size: m.info.payload_length(),
                files: m
                    .info
                    .files
                    .iter()
                    .filter(|f| !f.is_pad())
                    .map(|f| (f.display_path(), f.length))
                    .collect(),
                peers: n,
            })),
            Err(e) => Fetched::Failed(h, format!("metadata is not a valid torrent: {e}")),
        },
        Err(e) => Fetched::Failed(h, e),
    }
}

fn report(c: &Crawler, indexed: u64, failed: u64, fetching: usize, index_size: u64) -> CrawlReport {
    let s = c.stats();
    CrawlReport {
        queries: s.queries,
        replies: s.replies,
        failures: s.failures,
        unsupported: s.unsupported,
        samples: s.samples,
        nodes: s.nodes,
        unique_hashes: s.unique_hashes,
        indexed,
        metadata_failed: failed,
        fetching: fetching as u64,
        index_size,
    }
}

fn crawl(args: &CrawlArgs) -> anyhow::Result<()> {
    if !(args.queries_per_second > 0.0 && args.queries_per_second.is_finite()) {
        bail!("--queries-per-second must be above 0");
    }
    let path = args
        .index
        .clone()
        .unwrap_or_else(crate::cmd_search::default_index_path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut index = Index::open(
        &path,
        IndexConfig {
            max_torrents: args.max_torrents,
            ..IndexConfig::default()
        },
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let dht = Dht::bind(args.listen, DhtConfig::for_addr(&args.listen))
            .await
            .with_context(|| format!("cannot bind {}", args.listen))?;
        let addr = dht.local_addr();
        if args.json {
            output::event(&JsonEvent::Listening { addr, proto: None });
        } else {
            errln!("crawler's DHT node listening on {addr} (UDP)");
        }
        let boot = crate::cmd_dht::resolve(&args.bootstrap).await;
        if boot.is_empty() {
            bail!("no bootstrap node could be resolved");
        }
        let joined = dht.bootstrap(boot.clone()).await?;
        if joined == 0 {
            bail!("no DHT node answered the bootstrap");
        }
        let bind = shoal_core::LocalBind::loose(addr.ip());
        let peer_id = shoal_engine::peer_id::new_peer_id();
        let origin = Instant::now();
        let now = || Time::from_duration(origin.elapsed());
        let config = CrawlerConfig {
            queries_per_second: args.queries_per_second,
            burst: args.queries_per_second.max(1.0),
            per_node_gap: Duration::from_secs(args.per_node_gap),
            ..CrawlerConfig::default()
        };
        let mut crawler = Crawler::new(config, now(), rand::random());
        crawler.ignore(addr);
        for a in &boot {
            crawler.add_node(now(), *a);
        }
        let (sample_tx, mut sample_rx) = mpsc::unbounded_channel::<(SocketAddr, Option<SampleReply>)>();
        let (meta_tx, mut meta_rx) = mpsc::unbounded_channel::<Fetched>();
        let mut pending: VecDeque<Id20> = VecDeque::new();
        let mut queued: HashSet<Id20> = HashSet::new();
        let mut attempts: HashMap<Id20, u8> = HashMap::new();
        let mut fetching = 0usize;
        let (mut indexed, mut failed) = (0u64, 0u64);
        let stop_at = (args.duration > 0).then(|| origin + Duration::from_secs(args.duration));
        let stop = crate::cmd_torrent::shutdown_signal();
        tokio::pin!(stop);
        let mut next_status = origin + STATUS_EVERY;
        loop {
            // Send what the budget allows.
            while let Some((to, target)) = crawler.poll_query(now()) {
                let (dht, tx) = (dht.clone(), sample_tx.clone());
                tokio::spawn(async move {
                    let reply = dht.sample_infohashes(to, target).await.ok().flatten();
                    let _ = tx.send((to, reply));
                });
            }
            while let Some(ev) = crawler.poll_event() {
                let (CrawlEvent::NewHash(h) | CrawlEvent::SeenAgain(h)) = ev;
                // One query: `seen` updates an indexed hash and says whether it was one.
                if index.seen(&h, unix_now())? {
                    continue;
                }
                let tries = attempts.get(&h).copied().unwrap_or(0);
                if tries < MAX_ATTEMPTS && pending.len() < MAX_PENDING && queued.insert(h) {
                    pending.push_back(h);
                }
            }
            while fetching < args.metadata_parallel.max(1) {
                let Some(h) = pending.pop_front() else { break };
                if attempts.len() < MAX_ATTEMPT_RECORDS || attempts.contains_key(&h) {
                    *attempts.entry(h).or_default() += 1;
                }
                fetching += 1;
                let (dht, tx) = (dht.clone(), meta_tx.clone());
                let timeout = Duration::from_secs(args.metadata_timeout.max(2));
                tokio::spawn(async move {
                    let _ = tx.send(fetch_one(dht, h, peer_id, bind, timeout).await);
                });
            }
            let wake = crawler
                .next_timeout(now())
                .map(|t| origin + t.since_origin())
                .unwrap_or(next_status)
                .min(next_status);
            let wake = stop_at.map_or(wake, |s| wake.min(s));
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep_until(wake) => {}
                Some((from, reply)) = sample_rx.recv() => match reply {
                    Some(r) => crawler.handle_reply(now(), from, &r),
                    None => crawler.handle_failure(now(), from),
                },
                Some(f) = meta_rx.recv() => {
                    fetching -= 1;
                    match f {
                        Fetched::Ok(t) => {
                            queued.remove(&t.info_hash);
                            index.insert(&t, unix_now())?;
                            indexed += 1;
                            if args.json {
                                output::event(&JsonEvent::Indexed {
                                    info_hash: t.info_hash.to_hex(),
                                    name: shoal_index::text::clean(&t.name, shoal_index::text::MAX_NAME),
                                    size: t.size,
                                    files: t.files.len(),
                                    peers: t.peers,
                                });
                            }
                        }
                        Fetched::Failed(h, why) => {
                            queued.remove(&h);
                            failed += 1;
                            tracing::debug!(info_hash = %h, %why, "no metadata");
                        }
                    }
                }
            }
            if stop_at.is_some_and(|s| Instant::now() >= s) {
                break;
            }
            if Instant::now() >= next_status {
                next_status = Instant::now() + STATUS_EVERY;
                let s = crawler.stats();
                if args.json {
                    output::event(&JsonEvent::Crawl(report(&crawler, indexed, failed, fetching, index.len()?)));
                } else {
                    errln!("queries {} replies {} nodes {} info-hashes {} indexed {} fetching {}", s.queries, s.replies, s.nodes, s.unique_hashes, indexed, fetching);
                }
            }
        }
        let s = crawler.stats();
        let total = index.len()?;
        if args.json {
            output::event(&JsonEvent::CrawlDone(report(&crawler, indexed, failed, fetching, total)));
        } else {
            outln!(
                "crawl done: {} queries, {} nodes, {} info-hashes seen, {indexed} indexed ({failed} without metadata); the index holds {total} torrents",
                s.queries, s.nodes, s.unique_hashes
            );
        }
        Ok(())
    })
}
