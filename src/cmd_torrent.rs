//! `shoal seed` and `shoal download`: run a torrent in a session until done or interrupted.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use shoal_core::LocalBind;
use shoal_engine::events::JsonEvent;
use shoal_engine::{
    DhtSettings, EncryptionPolicy, ResumeLocation, Session, SessionConfig, TierConfig,
    TorrentOptions, TorrentState, UtpMode,
};
use shoal_metainfo::{Magnet, Metainfo};
use shoal_storage::resolve_save_path;

use crate::progress::Reporter;
use crate::units::parse_size;

/// Options shared by `seed` and `download`.
#[derive(Args, Debug, Clone)]
pub struct NetArgs {
    /// Address to listen on for peers (IP:PORT; port 0 picks a free one). With an unspecified
    /// IP and `--bind`, listens on the bound address. Without `--bind`, a specific IP here is
    /// also the source of outgoing connections of its family.
    #[arg(long, default_value = "0.0.0.0:6881")]
    listen: SocketAddr,
    /// Local address for every socket: peer listen and dials, trackers, DHT; repeatable, at
    /// most one per family. A family without one is not used, and nothing falls back to
    /// another address: if it disappears, dials and announces fail.
    #[arg(long = "bind", value_name = "IP")]
    bind: Vec<IpAddr>,
    /// A peer to connect to (IP:PORT); repeatable.
    #[arg(long = "peer")]
    peers: Vec<SocketAddr>,
    /// Upload cap, e.g. `5MiB` (per second).
    #[arg(long)]
    max_upload_rate: Option<String>,
    /// Download cap, e.g. `10M` (per second).
    #[arg(long)]
    max_download_rate: Option<String>,
    /// Print JSON lines on stdout instead of a progress display.
    #[arg(long)]
    pub(crate) json: bool,
    /// An extra tracker URL (its own tier, after the torrent's); repeatable.
    #[arg(short = 't', long = "tracker")]
    trackers: Vec<String>,
    /// Do not announce to any tracker.
    #[arg(long)]
    no_trackers: bool,
    /// Seconds one announce may take before the next tracker is tried.
    #[arg(long, default_value_t = 30)]
    tracker_timeout: u64,
    /// Do not use the Mainline DHT.
    #[arg(long)]
    no_dht: bool,
    /// A DHT node to join through (HOST:PORT); repeatable. Default: the public routers.
    #[arg(long = "dht-bootstrap")]
    dht_bootstrap: Vec<String>,
    /// File keeping the DHT node id and good nodes between runs (default: in the state folder
    /// when --listen has a fixed port).
    #[arg(long)]
    dht_state: Option<PathBuf>,
    /// MSE/PE encryption: `prefer` (dial encrypted, fall back to plaintext; accept both),
    /// `require` (RC4 only, both ways) or `disable` (plaintext only).
    #[arg(long, default_value = "prefer", value_name = "prefer|require|disable")]
    encryption: EncryptionPolicy,
    /// uTP (BEP 29, over UDP on the listen port's number) for peer connections: `off` (TCP
    /// only), `on` (accept both, dial TCP then uTP if TCP fails), `prefer` (accept both, dial
    /// uTP then TCP) or `only` (no TCP at all).
    #[arg(long, default_value = "on", value_name = "off|on|prefer|only")]
    utp: UtpMode,
}

impl NetArgs {
    /// The network options of a `shoal daemon` (whose settings come from its config file and
    /// flags): the session parts only, no peers or extra trackers.
    #[allow(clippy::too_many_arguments)] // one per daemon setting
    pub(crate) fn for_daemon(
        listen: SocketAddr,
        bind: Vec<IpAddr>,
        max_upload_rate: Option<String>,
        max_download_rate: Option<String>,
        dht: bool,
        dht_bootstrap: Vec<String>,
        dht_state: Option<PathBuf>,
        encryption: EncryptionPolicy,
    ) -> NetArgs {
        NetArgs {
            listen,
            bind,
            peers: Vec::new(),
            max_upload_rate,
            max_download_rate,
            json: false,
            trackers: Vec::new(),
            no_trackers: false,
            tracker_timeout: 30,
            no_dht: !dht,
            dht_bootstrap,
            dht_state,
            encryption,
            utp: UtpMode::On,
        }
    }
}

/// Arguments of `shoal seed`.
#[derive(Args, Debug)]
pub struct SeedArgs {
    /// The .torrent file.
    torrent: PathBuf,
    /// The data: the folder that holds it, or the file or folder itself.
    path: PathBuf,
    /// Super-seed (BEP 16) until the peers hold every piece between them: claim no pieces and
    /// hand each peer one piece nobody else has, the next only once another peer has it, so
    /// each piece is uploaded about once. For an initial seeder; it then seeds normally.
    /// Also on when the config file says `super_seed = true`.
    #[arg(long)]
    super_seed: bool,
    #[command(flatten)]
    net: NetArgs,
}

/// Arguments of `shoal share`.
#[derive(Args, Debug)]
pub struct ShareArgs {
    #[command(flatten)]
    torrent: crate::cmd_create::TorrentArgs,
    /// Super-seed (BEP 16) until the peers hold every piece between them (see `shoal seed`).
    #[arg(long)]
    super_seed: bool,
    /// Tracker URLs (`-t`) go into the torrent (each its own tier) and are announced to.
    #[command(flatten)]
    net: NetArgs,
}

/// Arguments of `shoal download`.
#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// A .torrent file or a `magnet:?xt=urn:btih:…` link (its metadata is fetched from peers).
    torrent: String,
    /// Folder to download into (the torrent's file or folder is created inside it).
    #[arg(short, long, default_value = ".")]
    output: PathBuf,
    /// Keep seeding after the download completes, until Ctrl-C.
    #[arg(long)]
    seed: bool,
    /// Download only these files: indices as `shoal info` lists them, e.g. `0,2,4-6` (BEP 53
    /// syntax; a magnet link's `so=` does the same). Skipped files are never created.
    #[arg(long)]
    files: Option<String>,
    #[command(flatten)]
    net: NetArgs,
}

fn rate(s: &Option<String>) -> anyhow::Result<Option<u64>> {
    s.as_deref()
        .map(|s| parse_size(s).map_err(anyhow::Error::msg))
        .transpose()
}

pub(crate) fn session_config(net: &NetArgs) -> anyhow::Result<SessionConfig> {
    let dht = (!net.no_dht).then(|| DhtSettings {
        bootstrap: net.dht_bootstrap.clone(),
        state_file: net.dht_state.clone().or_else(|| {
            // One file per fixed port, so two clients on one machine never share a node id.
            let ResumeLocation::StateDir(dir) = state_dir() else {
                return None;
            };
            (net.listen.port() != 0).then(|| dir.join(format!("dht-{}.state", net.listen.port())))
        }),
    });
    let bind = if net.bind.is_empty() {
        LocalBind::default()
    } else {
        LocalBind::strict(&net.bind).context(
            "--bind takes at most one address per family (IPv4, IPv6), and not 0.0.0.0 or ::",
        )?
    };
    if bind.strict
        && !net.listen.ip().is_unspecified()
        && bind.source_for(net.listen) != Ok(Some(net.listen.ip()))
    {
        bail!(
            "--listen {} is not on a --bind address (give the port only, e.g. --listen 0.0.0.0:{})",
            net.listen,
            net.listen.port()
        );
    }
    Ok(SessionConfig {
        listen: net.listen,
        bind,
        max_upload_rate: rate(&net.max_upload_rate)?,
        max_download_rate: rate(&net.max_download_rate)?,
        dht,
        encryption: net.encryption,
        utp: net.utp,
        ..SessionConfig::default()
    })
}

/// Loads a torrent to download or seed (v1, v2 or hybrid).
fn load(torrent: &Path) -> anyhow::Result<Metainfo> {
    Metainfo::from_file(torrent).with_context(|| format!("cannot load {}", torrent.display()))
}

/// Where resume data of a seeded torrent goes: the user's state folder, so the seeder never
/// writes beside data that may be read-only.
fn state_dir() -> ResumeLocation {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")));
    match base {
        Some(b) => ResumeLocation::StateDir(b.join("shoal")),
        None => ResumeLocation::Disabled,
    }
}

/// Ctrl-C, SIGTERM, or stdout closed by its reader: each stops the torrent cleanly.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
            _ = crate::output::stdout_gone() => {},
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = crate::output::stdout_gone() => {},
        }
    }
}

/// Whether the run ended by itself (complete) or was interrupted.
enum Ending {
    Complete,
    Interrupted,
    Failed(String),
}

/// What to run: a loaded torrent, or a magnet link whose metadata comes from peers first.
enum Source {
    Torrent(Box<Metainfo>),
    Magnet(Magnet),
}

/// Where a magnet download keeps the metadata it fetched: in the output folder, hidden, named by
/// the link's info-hash (the torrent's name is not known before the metadata), as a .torrent
/// holding the info dictionary and a v2 torrent's piece layers. A rerun of the same command
/// then resumes without asking peers for them again.
fn metadata_file(output: &Path, magnet: &Magnet) -> PathBuf {
    output.join(format!(".{}.shoal-torrent", magnet.info_hash.to_hex()))
}

/// The metadata an earlier run kept for `magnet`, with the link's trackers, if it is there and
/// is this link's: anything else there is ignored (and replaced once fetched again). Read on a
/// blocking thread, with `Metainfo::from_file`'s size limit.
async fn kept_metadata(output: &Path, magnet: &Magnet) -> Option<Metainfo> {
    let path = metadata_file(output, magnet);
    let read = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || Metainfo::from_file(&path))
            .await
            .ok()?
    };
    match read {
        Ok(mut meta)
            if meta.info_hash == magnet.info_hash
                && magnet
                    .info_hash_v2
                    .is_none_or(|v2| meta.info_hash_v2 == Some(v2)) =>
        {
            meta.trackers = magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
            Some(meta)
        }
        Err(shoal_metainfo::MetainfoError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            None
        }
        Ok(_) => {
            tracing::warn!("{}: another torrent's metadata; ignored", path.display());
            None
        }
        Err(e) => {
            tracing::warn!("{}: {e}; ignored", path.display());
            None
        }
    }
}

/// Keeps fetched metadata for the next run ([`metadata_file`]), written (and synced) on a
/// blocking thread. Failing to is only a note: the download goes on, and a rerun fetches the
/// metadata again.
async fn keep_metadata(output: &Path, magnet: &Magnet, meta: &Metainfo, reporter: &Reporter) {
    let path = metadata_file(output, magnet);
    let bytes = meta.bare_torrent_bytes();
    let written = tokio::task::spawn_blocking(move || shoal_storage::write_atomic(&path, &bytes))
        .await
        .map_err(|e| e.to_string())
        .and_then(|w| w.map_err(|e| e.to_string()));
    if let Err(e) = written {
        reporter.note(&format!("cannot keep the metadata for a rerun: {e}"));
    }
}

/// How long to look for a magnet link's metadata before giving up.
const METADATA_DEADLINE: Duration = Duration::from_secs(120);

/// How a torrent runs.
struct RunOptions {
    /// Serve complete data read-only (the initial seeder).
    seed_only: bool,
    /// Keep seeding after completing, until Ctrl-C.
    keep_seeding: bool,
    /// Only these files.
    files: Option<Vec<u32>>,
    /// Super-seed (BEP 16).
    super_seed: bool,
}

/// Binds the session and says where it listens (`listening`, then `dht`).
async fn start_session(net: &NetArgs, reporter: &Reporter) -> anyhow::Result<Session> {
    let session = Session::bind(session_config(net)?).await?;
    reporter.event(&JsonEvent::Listening {
        addr: session.local_addr(),
        proto: None,
    });
    if let Some(utp) = session.utp_addr() {
        reporter.note(&format!("uTP on {utp} (UDP)"));
    }
    if let Some(dht) = session.dht_addr() {
        reporter.event(&JsonEvent::Dht { addr: dht });
        reporter.note(&format!("DHT node on {dht} (UDP)"));
    }
    // BEP 32: the IPv6 DHT beside the IPv4 one, on its own socket.
    if let Some(dht6) = session.dht_addr_v6() {
        reporter.event(&JsonEvent::Dht { addr: dht6 });
        reporter.note(&format!("IPv6 DHT node on {dht6} (UDP)"));
    }
    Ok(session)
}

async fn run_torrent(
    source: Source,
    output: PathBuf,
    run: RunOptions,
    net: &NetArgs,
) -> anyhow::Result<Ending> {
    let label = if run.seed_only {
        "seeding"
    } else {
        "downloading"
    };
    let mut reporter = Reporter::new(net.json, label);
    let session = start_session(net, &reporter).await?;
    run_in_session(&session, &mut reporter, source, output, run, net).await
}

async fn run_in_session(
    session: &Session,
    reporter: &mut Reporter,
    source: Source,
    output: PathBuf,
    run: RunOptions,
    net: &NetArgs,
) -> anyhow::Result<Ending> {
    let RunOptions {
        seed_only,
        keep_seeding,
        files,
        super_seed,
    } = run;
    let mut peers = net.peers.clone();
    let mut files = files;
    let meta = match source {
        Source::Torrent(m) => *m,
        Source::Magnet(magnet) => {
            files = files.or_else(|| magnet.select_only.clone());
            // x.pe peers of the link join the --peer ones (host names are not resolved here).
            peers.extend(
                magnet
                    .peers
                    .iter()
                    .filter_map(|p| p.parse::<SocketAddr>().ok()),
            );
            let mut meta = match kept_metadata(&output, &magnet).await {
                Some(kept) => {
                    reporter.note(&format!(
                        "metadata of {} kept by an earlier run (in {})",
                        magnet.info_hash,
                        metadata_file(&output, &magnet).display()
                    ));
                    kept
                }
                None => {
                    reporter.note(&format!(
                        "fetching metadata of {} from {} peers",
                        magnet.info_hash,
                        peers.len()
                    ));
                    let fetched = session
                        .fetch_metadata(&magnet, peers.clone(), METADATA_DEADLINE)
                        .await?;
                    keep_metadata(&output, &magnet, &fetched, reporter).await;
                    fetched
                }
            };
            // `ws=` web seeds of the link serve the data (not the metadata: BEP 19 servers
            // hold files only).
            meta.url_list.extend(magnet.web_seeds.iter().cloned());
            reporter.event(&JsonEvent::Metadata {
                info_hash: meta.info_hash.to_hex(),
                name: meta.info.name.clone(),
            });
            meta
        }
    };
    let save_path = if seed_only {
        output
    } else {
        resolve_save_path(&output, &meta.info.name)
    };
    let wanted_files = match files {
        None => None,
        Some(indices) => {
            let n = meta.info.files.len();
            if let Some(bad) = indices.iter().find(|i| **i as usize >= n) {
                bail!(
                    "there is no file {bad}: the torrent has {n} files (0 to {})",
                    n - 1
                );
            }
            let mut wanted = vec![false; n];
            for i in indices {
                wanted[i as usize] = true;
            }
            Some(wanted)
        }
    };
    reporter.note(&format!(
        "listening on {}, {} ({})",
        session.local_addr(),
        meta.info.name,
        meta.info_hash
    ));
    let opts = TorrentOptions {
        save_path,
        seed_only,
        peers,
        resume: if seed_only {
            state_dir()
        } else {
            ResumeLocation::BesideData
        },
        trackers: if net.no_trackers {
            Vec::new()
        } else {
            let mut tiers = meta.trackers.clone();
            tiers.extend(net.trackers.iter().map(|t| vec![t.clone()]));
            tiers
        },
        tracker_config: TierConfig {
            request_timeout: Duration::from_secs(net.tracker_timeout.max(1)),
            ..TierConfig::default()
        },
        wanted_files,
        super_seed,
        upload_limit: None,
        download_limit: None,
        sequential: false,
    };
    let info_hash = meta.info_hash;
    let handle = session.add_torrent(meta, opts, |_, _| {}).await?;
    let mut status_rx = handle.status.clone();
    {
        let s = status_rx.borrow();
        reporter.event(&JsonEvent::Ready {
            info_hash: info_hash.to_hex(),
            pieces: s.pieces_have,
            pieces_total: s.pieces_total,
        });
    }
    let signal = shutdown_signal();
    tokio::pin!(signal);
    // Progress lines come from this timer, not from the torrent's status updates, so they keep
    // their once-a-second pace however busy the torrent is.
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A seeder never "completes"; a download whose data is already complete does, at once.
    let mut completed = seed_only;
    // Said once: the peers hold every piece without us.
    let mut self_sufficient = false;
    let ending = loop {
        tokio::select! {
            changed = status_rx.changed() => if changed.is_err() { break Ending::Failed("the torrent stopped".into()) },
            _ = ticker.tick() => reporter.progress_line(&status_rx.borrow()),
            _ = &mut signal => break Ending::Interrupted,
        }
        let s = status_rx.borrow_and_update().clone();
        reporter.update(&s);
        if let TorrentState::Error(e) = &s.state {
            break Ending::Failed(e.clone());
        }
        if !completed && s.is_complete() {
            // Reported the moment the last wanted piece verifies, before any shutdown work.
            completed = true;
            reporter.complete(&s);
            if !keep_seeding {
                break Ending::Complete;
            }
        }
        // A seeder (or a download that keeps seeding, after its `complete`) says once when the
        // peers no longer need it.
        if completed && !self_sufficient && s.is_complete() && s.swarm_self_sufficient() {
            self_sufficient = true;
            reporter.self_sufficient(&s);
        }
    };
    let last = handle.shutdown().await;
    session.save_dht_state().await;
    match &ending {
        Ending::Complete => reporter.finish(None, &last),
        Ending::Interrupted if seed_only || last.is_complete() => {
            reporter.finish(Some(JsonEvent::Stopped), &last)
        }
        Ending::Interrupted => reporter.finish(Some(JsonEvent::Interrupted), &last),
        Ending::Failed(e) => {
            reporter.finish(None, &last);
            reporter.event(&JsonEvent::Error { message: e.clone() });
        }
    }
    Ok(ending)
}

/// How often `--json` prints a `progress` line.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// The async runtime of `seed` and `download`: one worker thread. The network side only moves
/// bytes between sockets and the torrent machine, and every extra thread costs wake-ups and
/// context switches: measured on 2 cores, 1 GiB over loopback, one worker (with one disk thread)
/// moved 678 MB/s at 1.53 CPU s/GiB, two workers 502 MB/s at 1.86 (libtorrent also runs its
/// network on one thread).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs `shoal seed`.
pub fn run_seed(args: &SeedArgs) -> anyhow::Result<()> {
    let meta = load(&args.torrent)?;
    if !args.path.exists() {
        bail!("{} does not exist", args.path.display());
    }
    let save = resolve_save_path(&args.path, &meta.info.name);
    if !save.join(&meta.info.name).exists() {
        bail!(
            "{} not found in {} (give the folder that holds it, or the data itself)",
            meta.info.name,
            save.display()
        );
    }
    let run = RunOptions {
        seed_only: true,
        keep_seeding: true,
        files: None,
        super_seed: args.super_seed || crate::cmd_daemon::config_super_seed()?,
    };
    match runtime()?.block_on(run_torrent(
        Source::Torrent(Box::new(meta)),
        save,
        run,
        &args.net,
    ))? {
        Ending::Failed(e) => bail!("{e}"),
        _ => Ok(()),
    }
}

/// Runs `shoal download`; exits 0 once every piece is verified.
pub fn run_download(args: &DownloadArgs) -> anyhow::Result<()> {
    let source = if args.torrent.starts_with("magnet:") {
        Source::Magnet(Magnet::parse(&args.torrent)?)
    } else {
        Source::Torrent(Box::new(load(Path::new(&args.torrent))?))
    };
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let files = args
        .files
        .as_deref()
        .map(shoal_metainfo::parse_select_only)
        .transpose()?;
    let run = RunOptions {
        seed_only: false,
        keep_seeding: args.seed,
        files,
        super_seed: false,
    };
    match runtime()?.block_on(run_torrent(source, args.output.clone(), run, &args.net))? {
        Ending::Complete => Ok(()),
        Ending::Interrupted if args.seed => Ok(()),
        Ending::Interrupted => {
            bail!("interrupted; run the same command again to resume")
        }
        Ending::Failed(e) => bail!("{e}"),
    }
}

/// Runs `shoal share`: the listener comes up first (`listening`), then the data is hashed and
/// the .torrent written (`created`, with the magnet link), then it is seeded until Ctrl-C.
pub fn run_share(args: &ShareArgs) -> anyhow::Result<()> {
    if !args.torrent.path.exists() {
        bail!("{} does not exist", args.torrent.path.display());
    }
    let ending = runtime()?.block_on(async {
        let mut reporter = Reporter::new(args.net.json, "seeding");
        let session = start_session(&args.net, &reporter).await?;
        let (torrent, trackers, json) = (
            args.torrent.clone(),
            args.net.trackers.clone(),
            args.net.json,
        );
        let made = tokio::task::spawn_blocking(move || {
            crate::cmd_create::make_torrent(&torrent, &trackers, !json)
        })
        .await
        .context("hashing stopped")??;
        if args.net.json {
            reporter.event(&made.event());
        } else {
            made.print();
        }
        let meta = made.metainfo;
        let save = resolve_save_path(&args.torrent.path, &meta.info.name);
        // The trackers are the torrent's own now, not extra tiers.
        let mut net = args.net.clone();
        net.trackers.clear();
        let run = RunOptions {
            seed_only: true,
            keep_seeding: true,
            files: None,
            super_seed: args.super_seed || crate::cmd_daemon::config_super_seed()?,
        };
        run_in_session(
            &session,
            &mut reporter,
            Source::Torrent(Box::new(meta)),
            save,
            run,
            &net,
        )
        .await
    })?;
    match ending {
        Ending::Failed(e) => bail!("{e}"),
        _ => Ok(()),
    }
}
