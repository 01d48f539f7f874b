//! The `shoal` command line.

mod cmd_create;
mod cmd_daemon;
mod cmd_dht;
mod cmd_index;
mod cmd_info;
mod cmd_remote;
mod cmd_search;
mod cmd_swarm;
mod cmd_torrent;
mod cmd_tracker;
mod cmd_verify;
mod output;
mod progress;
mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::errln;

/// shoal: a BitTorrent client.
#[derive(Parser, Debug)]
#[command(name = "shoal", version, about, long_about = None)]
struct Cli {
    /// More log output on stderr (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Make a .torrent (and magnet link) from a file or folder.
    Create(cmd_create::CreateArgs),
    /// Show what a .torrent file or magnet link contains.
    Info(cmd_info::InfoArgs),
    /// Check downloaded data against a .torrent.
    Verify(cmd_verify::VerifyArgs),
    /// Serve a torrent's complete data to peers (the initial seeder), until Ctrl-C.
    Seed(cmd_torrent::SeedArgs),
    /// Make a torrent of a file or folder and seed it at once (create + seed), until Ctrl-C.
    Share(cmd_torrent::ShareArgs),
    /// Download a torrent; exits 0 once every piece is verified. Resumable.
    Download(cmd_torrent::DownloadArgs),
    /// Run a BitTorrent tracker (HTTP, and UDP with --udp) from memory.
    Tracker(cmd_tracker::TrackerArgs),
    /// Mainline DHT tools: run a node, look up peers, ping a node.
    Dht(cmd_dht::DhtArgs),
    /// A local swarm: a seeder and N leechers on 127.0.0.x, found through a local DHT.
    Swarm(cmd_swarm::SwarmArgs),
    /// Search the keyword index for torrents by name or file path.
    Search(cmd_search::SearchArgs),
    /// Build the keyword index: crawl the DHT for torrents (BEP 51, BEP 9).
    Index(cmd_index::IndexArgs),
    /// Run many torrents in one process, driven by a JSON API and the Transmission RPC.
    Daemon(cmd_daemon::DaemonArgs),
    #[command(flatten)]
    Remote(cmd_remote::RemoteCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of shoal and its commands.
    Man,
}

/// The man page: shoal's own section, then one per command (as `git help` pages read).
fn man_page(cmd: &clap::Command, out: &mut Vec<u8>) -> anyhow::Result<()> {
    clap_mangen::Man::new(cmd.clone()).render(out)?;
    for sub in cmd.get_subcommands() {
        let name = format!("shoal-{}", sub.get_name());
        clap_mangen::Man::new(sub.clone()).title(name).render(out)?;
    }
    Ok(())
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    output::install_panic_hook();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match &cli.command {
        Command::Create(args) => cmd_create::run(args),
        Command::Info(args) => cmd_info::run(args),
        Command::Verify(args) => cmd_verify::run(args),
        Command::Seed(args) => cmd_torrent::run_seed(args),
        Command::Share(args) => cmd_torrent::run_share(args),
        Command::Download(args) => cmd_torrent::run_download(args),
        Command::Tracker(args) => cmd_tracker::run(args),
        Command::Dht(args) => cmd_dht::run(args),
        Command::Swarm(args) => cmd_swarm::run(args),
        Command::Search(args) => cmd_search::run(args),
        Command::Index(args) => cmd_index::run(args),
        Command::Daemon(args) => cmd_daemon::run(args),
        Command::Remote(cmd) => cmd_remote::run(cmd),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "shoal", &mut buf);
            output::out_bytes(&buf);
            Ok(())
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut buf = Vec::new();
            man_page(&Cli::command(), &mut buf).map(|_| output::out_bytes(&buf))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout left (`shoal … | head`): end quietly, as coreutils do.
        Err(_) if output::stdout_closed() => ExitCode::FAILURE,
        Err(e) => {
            // One clear line: the error and those of its causes it does not already quote.
            let mut line = e.to_string();
            for cause in e.chain().skip(1) {
                let text = cause.to_string();
                if !line.contains(&text) {
                    line = format!("{line}: {text}");
                }
            }
            errln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}
