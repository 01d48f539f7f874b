//! `shoal daemon`: many torrents in one long-running process, driven over HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use shoal_daemon::api::{serve, AppState};
use shoal_daemon::{Manager, ManagerConfig, Store};
use shoal_engine::events::JsonEvent;
use shoal_engine::Session;

use crate::cmd_torrent::{session_config, shutdown_signal, NetArgs};
use crate::output::{self, errln};

/// Arguments of `shoal daemon`.
#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// Address of the HTTP API (JSON API, Transmission RPC). Every request needs the token
    /// (written to `<state>/token` on first start).
    #[arg(long, default_value = "127.0.0.1:9091")]
    api: SocketAddr,
    /// The state folder: torrents, resume data, the token (default `$XDG_STATE_HOME/shoal/daemon`).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Where torrents are saved unless added with a path of their own (default: the current
    /// folder).
    #[arg(long)]
    download_dir: Option<PathBuf>,
    #[command(flatten)]
    net: NetArgs,
}

fn default_state() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .context("no state folder: set XDG_STATE_HOME or HOME, or give --state")?;
    Ok(base.join("shoal").join("daemon"))
}

/// Runs `shoal daemon` until Ctrl-C or SIGTERM; every torrent's resume data is written on the
/// way out (and kept current while running, so SIGKILL loses at most the last few pieces'
/// bookkeeping, never verified data).
pub fn run(args: &DaemonArgs) -> anyhow::Result<()> {
    let state_dir = match &args.state {
        Some(s) => s.clone(),
        None => default_state()?,
    };
    let download_dir = match &args.download_dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("no current folder")?,
    };
    let download_dir = std::path::absolute(&download_dir).unwrap_or(download_dir);
    let store = Store::open(&state_dir)?;
    let token = store.token()?;
    let config = session_config(&args.net)?;
    let json = args.net.json;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let session = Session::bind(config).await?;
        let peers_addr = session.local_addr();
        let manager = Manager::new(session, store, ManagerConfig { download_dir });
        let listener = tokio::net::TcpListener::bind(args.api)
            .await
            .with_context(|| format!("cannot listen on {} for the API", args.api))?;
        let api_addr = listener.local_addr()?;
        let state = Arc::new(AppState {
            manager: manager.clone(),
            token,
            rpc_session_id: (0..24)
                .map(|_| format!("{:x}", rand::random::<u8>() & 15))
                .collect(),
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
        serve(listener, state, shutdown_signal())
            .await
            .context("the API server failed")?;
        manager.shutdown().await;
        anyhow::Ok(())
    })
}
