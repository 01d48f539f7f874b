//! `shoal dht`: tools for people who debug swarms — run a node, look peers up, ping a node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use shoal_engine::events::JsonEvent;

use crate::output::{self, outln};
use shoal_core::Id20;
use shoal_dht::driver::{Dht, DhtBind};
use shoal_dht::{DhtConfig, DhtState};

/// Arguments of `shoal dht`.
#[derive(Args, Debug)]
pub struct DhtArgs {
    #[command(subcommand)]
    command: DhtCommand,
}

#[derive(Subcommand, Debug)]
enum DhtCommand {
    /// Run a DHT node until Ctrl-C (a bootstrap node for a local swarm, or a probe).
    Node {
        /// UDP address to bind. An unspecified address (0.0.0.0) also runs the IPv6 DHT on
        /// [::] at the same port where the host has IPv6 (BEP 32).
        #[arg(long, default_value = "0.0.0.0:6881")]
        listen: SocketAddr,
        /// Nodes to join through (HOST:PORT); repeatable. None: start a network of its own.
        #[arg(long)]
        bootstrap: Vec<String>,
        /// Keep the node id and good nodes in this file between runs.
        #[arg(long)]
        state: Option<PathBuf>,
        /// JSON lines on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Look up the peers of an info-hash and print them.
    GetPeers {
        /// The info-hash (40 hex digits or 32 base32 characters).
        info_hash: String,
        /// Nodes to join through (HOST:PORT); repeatable. Default: the public routers.
        #[arg(long)]
        bootstrap: Vec<String>,
        /// UDP address to bind.
        #[arg(long, default_value = "0.0.0.0:0")]
        listen: SocketAddr,
        /// JSON lines on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Ping a node and print its id.
    Ping {
        /// The node's UDP address.
        addr: SocketAddr,
        /// UDP address to bind.
        #[arg(long, default_value = "0.0.0.0:0")]
        listen: SocketAddr,
        /// JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// The given nodes, or the public routers when none are given.
pub(crate) async fn resolve(hosts: &[String]) -> Vec<SocketAddr> {
    if hosts.is_empty() {
        let routers: Vec<String> = shoal_dht::DEFAULT_BOOTSTRAP
            .iter()
            .map(|s| s.to_string())
            .collect();
        return shoal_engine::session::resolve(&routers).await;
    }
    shoal_engine::session::resolve(hosts).await
}

fn print(json: bool, value: JsonEvent, text: String) {
    if json {
        output::event(&value);
    } else {
        outln!("{text}");
    }
}

/// Runs `shoal dht …`.
pub fn run(args: &DhtArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        match &args.command {
            DhtCommand::Node {
                listen,
                bootstrap,
                state,
                json,
            } => {
                // A --state file that holds something else is refused, never overwritten.
                let saved = match state.as_ref().map(std::fs::read) {
                    Some(Ok(b)) if !b.is_empty() => Some(DhtState::decode(&b).map_err(|e| {
                        anyhow::anyhow!(
                            "{} is not a DHT state file ({e}); give a new file",
                            state.as_ref().map_or_else(String::new, |p| p.display().to_string())
                        )
                    })?),
                    _ => None,
                };
                let dht = Dht::bind_dual(DhtBind::dual_for(*listen), DhtConfig::for_addr(listen), saved)
                    .await
                    .with_context(|| format!("cannot bind {listen}"))?;
                // The IPv4 node first (tests read the first line), then the IPv6 one (BEP 32).
                for addr in [dht.local_addr_v4(), dht.local_addr_v6()].into_iter().flatten() {
                    print(*json, JsonEvent::Listening { addr, proto: None }, format!("DHT node listening on {addr} (UDP)"));
                }
                if !bootstrap.is_empty() {
                    let n = dht.bootstrap(resolve(bootstrap).await).await?;
                    print(*json, JsonEvent::Bootstrapped { nodes: n }, format!("joined: {n} nodes in the table"));
                }
                let stop = crate::cmd_torrent::shutdown_signal();
                tokio::pin!(stop);
                loop {
                    tokio::select! {
                        _ = &mut stop => break,
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {
                            let s = dht.status().await?;
                            print(*json, JsonEvent::Status { id: s.id.to_hex(), nodes: s.table_len, lookups: s.lookups },
                                format!("id {} nodes {} (IPv6 {}) lookups {}", s.id, s.table_len, s.table_len_v6, s.lookups));
                        }
                    }
                }
                if let Some(p) = state {
                    shoal_storage::write_atomic(p, &dht.save_state().await?.encode())
                        .with_context(|| format!("cannot write {}", p.display()))?;
                }
                Ok(())
            }
            DhtCommand::GetPeers {
                info_hash,
                bootstrap,
                listen,
                json,
            } => {
                let hash: Id20 = info_hash
                    .parse()
                    .map_err(|e| anyhow::anyhow!("invalid info-hash: {e}"))?;
                let dht = Dht::bind_dual(DhtBind::dual_for(*listen), DhtConfig::for_addr(listen), None).await?;
                let n = dht.bootstrap(resolve(bootstrap).await).await?;
                if n == 0 {
                    bail!("no DHT node answered the bootstrap");
                }
                let mut rx = dht.get_peers(hash).await?;
                let mut count = 0;
                while let Some(peer) = rx.recv().await {
                    count += 1;
                    print(*json, JsonEvent::Peer { addr: peer }, peer.to_string());
                }
                print(*json, JsonEvent::Done { peers: count }, format!("{count} peers found"));
                Ok(())
            }
            DhtCommand::Ping { addr, listen, json } => {
                let dht = Dht::bind_dual(DhtBind::dual_for(*listen), DhtConfig::for_addr(listen), None).await?;
                match dht.ping(*addr).await? {
                    Some(id) => {
                        print(*json, JsonEvent::Pong { addr: *addr, id: id.to_hex() }, format!("{addr} answered: id {id}"));
                        Ok(())
                    }
                    None => bail!("{addr} did not answer"),
                }
            }
        }
    })
}
