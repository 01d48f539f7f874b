//! `shoal daemon`: many torrents in one long-running process, driven over HTTP.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use shoal_daemon::api::{serve, AppState};
use shoal_daemon::config::DaemonConfig;
use shoal_daemon::{Manager, ManagerConfig, Store};
use shoal_engine::events::JsonEvent;
use shoal_engine::{EncryptionPolicy, Session};

use crate::cmd_torrent::{session_config, shutdown_signal, NetArgs};
use crate::output::{self, errln, outln};

/// Arguments of `shoal daemon`. Every option can also be set in the config file; a flag given
/// here wins over it.
#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// The config file (TOML; default `$XDG_CONFIG_HOME/shoal/config.toml`, used if present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the merged configuration (file, run-time changes saved in `<state>/session.json`,
    /// flags, defaults) as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Address of the HTTP API (JSON API, Transmission RPC) [default: 127.0.0.1:9091]. Every
    /// request needs the token (written to `<state>/token` on first start).
    #[arg(long)]
    api: Option<SocketAddr>,
    /// The state folder: torrents, resume data, the token [default: `$XDG_STATE_HOME/shoal/daemon`].
    #[arg(long)]
    state: Option<PathBuf>,
    /// Where torrents are saved unless added with a path of their own [default: the current
    /// folder].
    #[arg(long)]
    download_dir: Option<PathBuf>,
    /// A folder watched for .torrent files: each is added, then renamed `<name>.added`.
    #[arg(long)]
    watch: Option<PathBuf>,
    /// Address to listen on for peers [default: 0.0.0.0:6881].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Local address for every socket (repeatable, one per family), failing closed.
    #[arg(long = "bind", value_name = "IP")]
    bind: Vec<IpAddr>,
    /// Session upload cap, e.g. `5MiB` (per second).
    #[arg(long)]
    max_upload_rate: Option<String>,
    /// Session download cap, e.g. `10M` (per second).
    #[arg(long)]
    max_download_rate: Option<String>,
    /// Do not use the Mainline DHT.
    #[arg(long)]
    no_dht: bool,
    /// A DHT node to join through (HOST:PORT); repeatable.
    #[arg(long = "dht-bootstrap")]
    dht_bootstrap: Vec<String>,
    /// MSE/PE encryption: prefer, require or disable [default: prefer].
    #[arg(long, value_name = "prefer|require|disable")]
    encryption: Option<String>,
    /// uTP for peers: off, on, prefer or only, as `shoal download --utp` [default: on].
    #[arg(long, value_name = "off|on|prefer|only")]
    utp: Option<String>,
    /// Torrents downloading at once, the rest queued (0: no limit) [default: 5].
    #[arg(long)]
    max_active_downloads: Option<usize>,
    /// Torrents seeding at once, the rest queued (0: no limit) [default: 0].
    #[arg(long)]
    max_active_seeds: Option<usize>,
    /// Stop seeding a torrent at this upload/size ratio (0: never) [default: 0].
    #[arg(long)]
    seed_ratio_limit: Option<f64>,
    /// Stop seeding a torrent after this many minutes without uploading (0: never) [default: 0].
    #[arg(long)]
    seed_idle_minutes: Option<u64>,
    /// Super-seed (BEP 16) torrents that are complete when they start (as their initial
    /// seeder); also `super_seed = true` in the config file.
    #[arg(long)]
    super_seed: bool,
    /// Peers of all torrents together, split evenly among the active ones (0: no global cap)
    /// [default: 200].
    #[arg(long)]
    max_connections: Option<usize>,
    /// Seconds a complete torrent stays awake with no peer before it sleeps (no task, no
    /// open file; an incoming peer wakes it); 0: never [default: 60].
    #[arg(long, value_name = "SECS")]
    sleep_after: Option<u64>,
    /// Print JSON lines on stdout (the `listening` events).
    #[arg(long)]
    json: bool,
}

/// The default config file (`$XDG_CONFIG_HOME/shoal/config.toml`).
fn default_config_path() -> Option<PathBuf> {
    home_dir("XDG_CONFIG_HOME", ".config").map(|d| d.join("shoal/config.toml"))
}

/// Whether the config file turns super-seeding on for initial seeders (`shoal seed`, `shoal
/// share`); a config file that cannot be read is an error, a missing one is not.
pub fn config_super_seed() -> anyhow::Result<bool> {
    let Some(path) = default_config_path() else {
        return Ok(false);
    };
    Ok(DaemonConfig::load(&path, false)?
        .super_seed
        .unwrap_or(false))
}

fn home_dir(var: &str, fallback: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(fallback)))
}

impl DaemonArgs {
    /// The flags as a config (only what was given).
    fn as_config(&self) -> DaemonConfig {
        DaemonConfig {
            api: self.api,
            state: self.state.clone(),
            download_dir: self.download_dir.clone(),
            watch: self.watch.clone(),
            listen: self.listen,
            bind: (!self.bind.is_empty()).then(|| self.bind.clone()),
            max_upload_rate: self.max_upload_rate.clone(),
            max_download_rate: self.max_download_rate.clone(),
            dht: self.no_dht.then_some(false),
            dht_bootstrap: (!self.dht_bootstrap.is_empty()).then(|| self.dht_bootstrap.clone()),
            encryption: self.encryption.clone(),
            utp: self.utp.clone(),
            max_active_downloads: self.max_active_downloads,
            max_active_seeds: self.max_active_seeds,
            seed_ratio_limit: self.seed_ratio_limit,
            seed_idle_minutes: self.seed_idle_minutes,
            super_seed: self.super_seed.then_some(true),
            max_connections: self.max_connections,
            max_peers_per_torrent: None,
            sleep_after_secs: self.sleep_after,
        }
    }
}

/// Runs `shoal daemon` until Ctrl-C or SIGTERM; every torrent's resume data is written on the
/// way out (and kept current while running, so SIGKILL loses no verified data).
pub fn run(args: &DaemonArgs) -> anyhow::Result<()> {
    // Before any thread starts: a restart must not lose threads, and glibc reads the arena
    // limit when a thread first allocates.
    shoal_daemon::memory::reexec_without_thread_caches();
    shoal_daemon::memory::limit_arenas();
    let (config_path, must_exist) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (default_config_path().unwrap_or_default(), false),
    };
    let file = if config_path.as_os_str().is_empty() {
        DaemonConfig::default()
    } else {
        DaemonConfig::load(&config_path, must_exist)?
    };
    let state_default = home_dir("XDG_STATE_HOME", ".local/state")
        .map(|d| d.join("shoal/daemon"))
        .context("no state folder: set XDG_STATE_HOME or HOME, or give --state")?;
    let cwd = std::env::current_dir().context("no current folder")?;
    // Settings changed at run time (session-set, PATCH /api/v1/session) are saved in the state
    // folder and win over the config file; flags win over both.
    let state_dir = file
        .clone()
        .merged(args.as_config(), state_default.clone(), cwd.clone())
        .state
        .unwrap_or_default();
    let runtime = shoal_daemon::store::load_session(&state_dir);
    let has_runtime = runtime != DaemonConfig::default();
    let cfg = file
        .layered(runtime)
        .merged(args.as_config(), state_default, cwd);
    if args.print_config {
        if has_runtime {
            outln!(
                "# includes settings changed at run time, saved in {}",
                state_dir.join("session.json").display()
            );
        }
        outln!("{}", cfg.to_toml().trim_end());
        return Ok(());
    }
    let state_dir = cfg.state.clone().unwrap_or_default();
    let download_dir = cfg.download_dir.clone().unwrap_or_default();
    let download_dir = std::path::absolute(&download_dir).unwrap_or(download_dir);
    let encryption: EncryptionPolicy = cfg
        .encryption
        .as_deref()
        .unwrap_or("prefer")
        .parse()
        .map_err(|e| anyhow::anyhow!("encryption: {e}"))?;
    let listen = cfg
        .listen
        .unwrap_or_else(|| "0.0.0.0:6881".parse().expect("valid"));
    let net = NetArgs::for_daemon(
        listen,
        cfg.bind.clone().unwrap_or_default(),
        cfg.max_upload_rate.clone(),
        cfg.max_download_rate.clone(),
        cfg.dht.unwrap_or(true),
        cfg.dht_bootstrap.clone().unwrap_or_default(),
        (listen.port() != 0).then(|| state_dir.join(format!("dht-{}.state", listen.port()))),
        encryption,
    );
    let mut session_cfg = session_config(&net)?;
    session_cfg.utp = cfg
        .utp
        .as_deref()
        .unwrap_or("on")
        .parse()
        .map_err(|e| anyhow::anyhow!("utp: {e}"))?;
    session_cfg.max_connections = cfg.max_connections.unwrap_or(0);
    session_cfg.sleep_after = match cfg.sleep_after_secs {
        Some(0) => None,
        Some(s) => Some(std::time::Duration::from_secs(s)),
        None => Some(shoal_engine::SLEEP_AFTER),
    };
    if let Some(n) = cfg.max_peers_per_torrent {
        session_cfg.max_peers_per_torrent = n.max(1);
    }
    let store = Store::open(&state_dir)?;
    let token = store.token()?;
    let manager_cfg = ManagerConfig {
        download_dir,
        max_active_downloads: cfg.max_active_downloads.unwrap_or(0),
        max_active_seeds: cfg.max_active_seeds.unwrap_or(0),
        seed_ratio_limit: cfg.seed_ratio_limit.unwrap_or(0.0),
        seed_idle_minutes: cfg.seed_idle_minutes.unwrap_or(0),
        super_seed: cfg.super_seed.unwrap_or(false),
    };
    let api_addr = cfg
        .api
        .unwrap_or_else(|| "127.0.0.1:9091".parse().expect("valid"));
    let json = args.json;
    let watch = cfg.watch.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let session = Session::bind(session_cfg).await?;
        let peers_addr = session.local_addr();
        let manager = Manager::new(session, store, manager_cfg);
        let listener = tokio::net::TcpListener::bind(api_addr)
            .await
            .with_context(|| format!("cannot listen on {api_addr} for the API"))?;
        let api_addr = listener.local_addr()?;
        let state = Arc::new(AppState {
            manager: manager.clone(),
            token,
            rpc_session_id: (0..24)
                .map(|_| format!("{:x}", rand::random::<u8>() & 15))
                .collect(),
            transmission: Default::default(),
        });
        if json {
            output::event(&JsonEvent::Listening {
                addr: peers_addr,
                proto: None,
            });
            output::event(&JsonEvent::Listening {
                addr: api_addr,
                proto: Some("http".into()),
            });
        }
        errln!(
            "shoal daemon: peers on {peers_addr}, API on http://{api_addr} (token in {})",
            state_dir.join("token").display()
        );
        manager.restore();
        let _watcher = watch.map(|dir| shoal_daemon::watch::spawn(manager.clone(), dir));
        serve(listener, state, shutdown_signal())
            .await
            .context("the API server failed")?;
        manager.shutdown().await;
        anyhow::Ok(())
    })
}
