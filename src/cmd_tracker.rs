//! `shoal tracker`: run the embedded BitTorrent tracker (HTTP, and UDP with `--udp`) until
//! Ctrl-C or SIGTERM.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use shoal_core::Id20;
use shoal_engine::events::{JsonEvent, Transfer};
use shoal_tracker::{RunningTracker, ServerConfig, SwarmConfig};

use crate::output::{self, errln};

/// Arguments of `shoal tracker`.
#[derive(Args, Debug)]
pub struct TrackerArgs {
    /// Address for HTTP announces and scrapes (`/announce`, `/scrape`), e.g. 127.0.0.1:6969.
    /// Port 0 picks a free port.
    #[arg(long)]
    listen: SocketAddr,
    /// Also serve UDP (BEP 15) on the same address and port (a free one if the port is 0).
    #[arg(long)]
    udp: bool,
    /// Print events as JSON lines on stdout.
    #[arg(long)]
    json: bool,
    /// Re-announce interval told to clients, in seconds; peers silent for twice this are dropped.
    #[arg(long, default_value_t = 1800)]
    interval: u64,
    /// Most torrents tracked.
    #[arg(long, default_value_t = 10_000)]
    max_torrents: usize,
    /// Most peers kept per torrent.
    #[arg(long, default_value_t = 5_000)]
    max_peers: usize,
    /// Track only the info-hashes listed in this file (40 hex digits a line).
    #[arg(long)]
    whitelist: Option<PathBuf>,
}

fn read_whitelist(path: &PathBuf) -> anyhow::Result<HashSet<Id20>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading whitelist {}", path.display()))?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| Id20::from_hex(l).with_context(|| format!("whitelist {}", path.display())))
        .collect()
}

/// Runs `shoal tracker`; builds its own tokio runtime.
pub fn run(args: &TrackerArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.interval > 0, "--interval must be at least 1 second");
    let mut swarm = SwarmConfig::with_interval(Duration::from_secs(args.interval));
    swarm.max_torrents = args.max_torrents;
    swarm.max_peers_per_torrent = args.max_peers;
    if let Some(w) = &args.whitelist {
        swarm.whitelist = Some(read_whitelist(w)?);
    }
    let listen = if args.udp && args.listen.port() == 0 {
        port_free_for_both(args.listen)?
    } else {
        args.listen
    };
    let config = ServerConfig {
        http: Some(listen),
        udp: args.udp.then_some(listen),
        swarm,
        ..ServerConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let tracker = RunningTracker::start(config)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let http = tracker.http_addr().context("no HTTP address")?;
        if args.json {
            output::event(&JsonEvent::Listening {
                addr: http,
                proto: None,
            });
            if let Some(u) = tracker.udp_addr() {
                output::event(&JsonEvent::Listening {
                    addr: u,
                    proto: Some("udp".into()),
                });
            }
        } else {
            errln!("tracker listening on http://{http}/announce");
            if let Some(u) = tracker.udp_addr() {
                errln!("tracker listening on udp://{u}/announce");
            }
            errln!("press Ctrl-C to stop");
        }
        crate::cmd_torrent::shutdown_signal().await;
        tracker.shutdown().await;
        if args.json {
            output::event(&JsonEvent::Stopped(Transfer::default()));
        } else {
            errln!("tracker stopped");
        }
        anyhow::Ok(())
    })
}

/// With port 0 and `--udp`, one port free for both TCP and UDP, so one address names both.
fn port_free_for_both(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    for _ in 0..50 {
        let tcp =
            std::net::TcpListener::bind(addr).with_context(|| format!("listening on {addr}"))?;
        let got = tcp.local_addr()?;
        if std::net::UdpSocket::bind(got).is_ok() {
            return Ok(got);
        }
    }
    anyhow::bail!("found no port free for both TCP and UDP on {}", addr.ip())
}
