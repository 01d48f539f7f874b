//! The remote CLI: `shoal add`, `ls`, `show`, `pause`, `resume`, `rm`, `watch` — requests to a
//! running `shoal daemon`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use shoal_daemon::client::{ApiClient, ApiResponse};

use crate::output::outln;
use crate::units::human_bytes;

/// Where the daemon is and how to prove we may talk to it.
#[derive(Args, Debug, Clone)]
pub struct RemoteArgs {
    /// The daemon's API address (default: `$SHOAL_API`, else 127.0.0.1:9091).
    #[arg(long)]
    api: Option<String>,
    /// A file holding the token (default: `$SHOAL_TOKEN` if set, else the daemon's default
    /// state folder's `token`).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// The remote commands.
#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// Add a .torrent file or a magnet link to the daemon.
    Add {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The .torrent file or magnet link.
        source: String,
        /// Where to save it (absolute; default: the daemon's download folder).
        #[arg(long)]
        save_path: Option<PathBuf>,
        /// Add it stopped.
        #[arg(long)]
        paused: bool,
    },
    /// List the daemon's torrents.
    Ls {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Show one torrent (by id or info-hash).
    Show {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Id or info-hash.
        id: String,
    },
    /// Stop a torrent (resume data kept).
    Pause {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Id or info-hash.
        id: String,
    },
    /// Start a stopped torrent.
    Resume {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Id or info-hash.
        id: String,
    },
    /// Remove a torrent.
    Rm {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Id or info-hash.
        id: String,
        /// Also delete its files (only the torrent's own).
        #[arg(long)]
        delete_data: bool,
    },
    /// Follow every torrent's state changes live.
    Watch {
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

fn client(args: &RemoteArgs) -> anyhow::Result<ApiClient> {
    let addr = args
        .api
        .clone()
        .or_else(|| std::env::var("SHOAL_API").ok())
        .unwrap_or_else(|| "127.0.0.1:9091".into());
    let addr = addr
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let token = match (&args.token_file, std::env::var("SHOAL_TOKEN")) {
        (Some(f), _) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the token from {}", f.display()))?,
        (None, Ok(t)) => t,
        (None, Err(_)) => {
            let base = std::env::var_os("XDG_STATE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
                .context("no token: give --token-file or set SHOAL_TOKEN")?;
            let f = base.join("shoal/daemon/token");
            std::fs::read_to_string(&f).with_context(|| {
                format!(
                    "cannot read the token from {} (give --token-file or set SHOAL_TOKEN)",
                    f.display()
                )
            })?
        }
    };
    Ok(ApiClient {
        addr,
        token: token.trim().to_string(),
    })
}

fn check(resp: ApiResponse, ok: u16) -> anyhow::Result<serde_json::Value> {
    if resp.status != ok {
        bail!("{}", resp.error());
    }
    Ok(resp.json())
}

fn line(t: &serde_json::Value) -> String {
    let pct = t["progress"].as_f64().unwrap_or(0.0) * 100.0;
    format!(
        "{:>4}  {:8}  {:<11} {:>6.1}%  {:>10}/s  {:>10}/s  {:>5}  {}",
        t["id"].as_u64().unwrap_or(0),
        &t["info_hash"].as_str().unwrap_or("")
            [..8.min(t["info_hash"].as_str().unwrap_or("").len())],
        t["state"].as_str().unwrap_or(""),
        pct,
        human_bytes(t["down_rate"].as_u64().unwrap_or(0)),
        human_bytes(t["up_rate"].as_u64().unwrap_or(0)),
        t["peers"].as_u64().unwrap_or(0),
        t["name"].as_str().unwrap_or("")
    )
}

impl RemoteCommand {
    fn remote(&self) -> &RemoteArgs {
        match self {
            RemoteCommand::Add { remote, .. }
            | RemoteCommand::Ls { remote }
            | RemoteCommand::Show { remote, .. }
            | RemoteCommand::Pause { remote, .. }
            | RemoteCommand::Resume { remote, .. }
            | RemoteCommand::Rm { remote, .. }
            | RemoteCommand::Watch { remote } => remote,
        }
    }
}

/// Runs a remote command.
pub fn run(cmd: &RemoteCommand) -> anyhow::Result<()> {
    let args = cmd.remote();
    let api = client(args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let cannot =
        |e: std::io::Error| anyhow::anyhow!("cannot reach the daemon at {}: {e}", api.addr);
    rt.block_on(async {
        match cmd {
            RemoteCommand::Add {
                source,
                save_path,
                paused,
                ..
            } => {
                let mut req = serde_json::json!({ "paused": paused });
                if source.starts_with("magnet:") {
                    req["magnet"] = source.clone().into();
                } else {
                    use base64::Engine;
                    let bytes =
                        std::fs::read(source).with_context(|| format!("cannot read {source}"))?;
                    req["torrent"] = base64::engine::general_purpose::STANDARD
                        .encode(bytes)
                        .into();
                }
                if let Some(p) = save_path {
                    let p = std::path::absolute(p).unwrap_or(p.clone());
                    req["save_path"] = p.to_string_lossy().to_string().into();
                }
                let resp = api
                    .call(
                        "POST",
                        "/api/v1/torrents",
                        "application/json",
                        req.to_string().into_bytes(),
                    )
                    .await
                    .map_err(cannot)?;
                let t = check(resp, 201)?;
                if args.json {
                    outln!("{t}");
                } else {
                    outln!(
                        "added {} ({}): {}",
                        t["id"],
                        t["info_hash"].as_str().unwrap_or(""),
                        t["name"].as_str().unwrap_or("")
                    );
                }
            }
            RemoteCommand::Ls { .. } => {
                let list = check(
                    api.call("GET", "/api/v1/torrents", "", Vec::new())
                        .await
                        .map_err(cannot)?,
                    200,
                )?;
                let items = list.as_array().cloned().unwrap_or_default();
                if args.json {
                    for t in items {
                        outln!("{t}");
                    }
                } else {
                    outln!(
                        "{:>4}  {:8}  {:<11} {:>7}  {:>12}  {:>12}  {:>5}  name",
                        "id",
                        "hash",
                        "state",
                        "done",
                        "down",
                        "up",
                        "peers"
                    );
                    for t in &items {
                        outln!("{}", line(t));
                    }
                }
            }
            RemoteCommand::Show { id, .. } => {
                let t = check(
                    api.call("GET", &format!("/api/v1/torrents/{id}"), "", Vec::new())
                        .await
                        .map_err(cannot)?,
                    200,
                )?;
                if args.json {
                    outln!("{t}");
                } else if let Some(obj) = t.as_object() {
                    for (k, v) in obj {
                        outln!(
                            "{k:>14}: {}",
                            v.as_str()
                                .map(String::from)
                                .unwrap_or_else(|| v.to_string())
                        );
                    }
                }
            }
            RemoteCommand::Pause { id, .. } | RemoteCommand::Resume { id, .. } => {
                let verb = if matches!(cmd, RemoteCommand::Pause { .. }) {
                    "stop"
                } else {
                    "start"
                };
                check(
                    api.call(
                        "POST",
                        &format!("/api/v1/torrents/{id}/{verb}"),
                        "",
                        Vec::new(),
                    )
                    .await
                    .map_err(cannot)?,
                    204,
                )?;
            }
            RemoteCommand::Rm {
                id, delete_data, ..
            } => {
                check(
                    api.call(
                        "DELETE",
                        &format!("/api/v1/torrents/{id}?delete_data={delete_data}"),
                        "",
                        Vec::new(),
                    )
                    .await
                    .map_err(cannot)?,
                    204,
                )?;
            }
            RemoteCommand::Watch { .. } => {
                let json = args.json;
                let status = api
                    .events(|ev| {
                        if json {
                            outln!("{ev}");
                        } else if let Some(t) = ev.get("torrent") {
                            outln!("{:<9} {}", ev["event"].as_str().unwrap_or(""), line(t));
                        } else {
                            outln!(
                                "{:<9} {}",
                                ev["event"].as_str().unwrap_or(""),
                                ev["info_hash"].as_str().unwrap_or("")
                            );
                        }
                        !crate::output::stdout_closed()
                    })
                    .await
                    .map_err(cannot)?;
                if status != 200 {
                    bail!("the daemon refused: HTTP status {status}");
                }
            }
        }
        anyhow::Ok(())
    })
}
