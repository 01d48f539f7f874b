//! `shoal create`: make a .torrent and magnet link from a file or folder.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use shoal_engine::events::{Created, JsonEvent};
use shoal_metainfo::{TorrentBuilder, Version};

use crate::output::{errln, outln};
use crate::units::{human_bytes, parse_size};

/// Arguments of `shoal create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    #[command(flatten)]
    pub torrent: TorrentArgs,
    /// Tracker URL; repeat for more (each becomes its own tier, tried in order).
    #[arg(short = 't', long = "tracker")]
    pub trackers: Vec<String>,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What makes a torrent, shared by `shoal create` and `shoal share`.
#[derive(Args, Debug, Clone)]
pub struct TorrentArgs {
    /// The file or folder to share.
    pub path: PathBuf,
    /// Where to write the .torrent (default: `<name>.torrent` in the current folder).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Piece size: `auto`, or a power of two from 16KiB to 256MiB (e.g. `256KiB`, `1M`).
    #[arg(long, default_value = "auto")]
    pub piece_size: String,
    /// Mark the torrent private (BEP 27): peers only from its trackers, no DHT or PEX.
    #[arg(long)]
    pub private: bool,
    /// A comment stored in the torrent.
    #[arg(long)]
    pub comment: Option<String>,
    /// DHT bootstrap node `HOST:PORT` stored in the torrent; repeatable.
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// Web seed (BEP 19): an http(s) URL of the file, or of a folder ending in `/` that holds
    /// it; repeatable.
    #[arg(long = "web-seed", value_name = "URL")]
    pub web_seeds: Vec<String>,
    /// Leave out the creation date, so the same data always gives the same .torrent file.
    #[arg(long)]
    pub no_date: bool,
    /// Make a v2-only torrent (BEP 52: a SHA-256 merkle tree per file). Clients without v2
    /// support (most but libtorrent's and shoal's) cannot use it.
    #[arg(long, conflicts_with = "hybrid")]
    pub v2: bool,
    /// Make a hybrid torrent: v1 and v2 hashes of the same files, each aligned to a piece by
    /// BEP 47 pad files, as libtorrent makes them. v1-only clients use its v1 part.
    #[arg(long)]
    pub hybrid: bool,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// A torrent made and written.
pub struct Made {
    /// The torrent.
    pub metainfo: shoal_metainfo::Metainfo,
    /// Where its .torrent file is.
    pub output: PathBuf,
    /// Seconds hashing took.
    pub seconds: f64,
}

impl Made {
    /// The `created` line of `--json`.
    pub fn event(&self) -> JsonEvent {
        let m = &self.metainfo;
        JsonEvent::Created(Created {
            torrent: self.output.display().to_string(),
            info_hash: m.info_hash.to_hex(),
            info_hash_v2: m.info_hash_v2.map(|h| h.to_hex()),
            version: m.version().as_str().to_string(),
            magnet: m.magnet().to_string(),
            name: m.info.name.clone(),
            total_size: m.info.total_length,
            piece_length: m.info.piece_length as u64,
            num_pieces: m.info.num_pieces(),
            files: m.info.files.len(),
            seconds: self.seconds,
        })
    }

    /// The lines for people: a summary on stderr, the info-hash and magnet link on stdout.
    pub fn print(&self) {
        let m = &self.metainfo;
        errln!(
            "created {} ({}, {} files, {} pieces of {}) in {:.2}s, {:.0} MB/s",
            self.output.display(),
            human_bytes(m.info.total_length),
            m.info.files.len(),
            m.info.num_pieces(),
            human_bytes(m.info.piece_length as u64),
            self.seconds,
            m.info.total_length as f64 / self.seconds.max(1e-9) / 1e6,
        );
        outln!("info hash: {}", m.info_hash);
        if let Some(h) = m.info_hash_v2 {
            outln!("v2 hash:   {h}");
        }
        outln!("magnet:    {}", m.magnet());
    }
}

fn parse_node(s: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("invalid --node {s:?}: expected HOST:PORT"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .with_context(|| format!("invalid --node {s:?}: bad port"))?;
    if host.is_empty() {
        bail!("invalid --node {s:?}: empty host");
    }
    Ok((host.to_string(), port))
}

/// Runs `shoal create`.
pub fn run(args: &CreateArgs) -> anyhow::Result<()> {
    let made = make_torrent(&args.torrent, &args.trackers, !args.json)?;
    if args.json {
        crate::output::event(&made.event());
    } else {
        made.print();
    }
    Ok(())
}

/// Hashes `args.path` and writes its .torrent (with a progress bar on a terminal if `bar`).
pub fn make_torrent(args: &TorrentArgs, trackers: &[String], bar: bool) -> anyhow::Result<Made> {
    let piece_length = match args.piece_size.as_str() {
        "auto" => None,
        s => {
            let n = parse_size(s).map_err(anyhow::Error::msg)?;
            Some(u32::try_from(n).context("piece size too large")?)
        }
    };
    let mut builder = TorrentBuilder::new(&args.path)
        .piece_length(piece_length)
        .private(args.private)
        .comment(args.comment.clone());
    for t in trackers {
        builder = builder.tracker(t.trim());
    }
    for n in &args.nodes {
        let (host, port) = parse_node(n)?;
        builder = builder.node(host, port);
    }
    for w in &args.web_seeds {
        let w = w.trim();
        if !(w.starts_with("http://") || w.starts_with("https://")) {
            bail!("invalid --web-seed {w:?}: expected an http:// or https:// URL");
        }
        builder = builder.web_seed(w);
    }
    if args.no_date {
        builder = builder.no_date();
    }
    builder = builder.version(match (args.v2, args.hybrid) {
        (true, _) => Version::V2,
        (_, true) => Version::Hybrid,
        _ => Version::V1,
    });

    let bar = if std::io::stderr().is_terminal() && bar {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "hashing [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Some(bar)
    } else {
        None
    };
    let start = Instant::now();
    let created = builder.build(&mut |done, total| {
        if let Some(bar) = &bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    })?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let seconds = start.elapsed().as_secs_f64();

    let m = &created.metainfo;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.torrent", m.info.name)));
    if output.exists() && !args.force {
        bail!(
            "{} already exists (use --force to replace it)",
            output.display()
        );
    }
    // Write beside the target and rename, so a crash never leaves a half-written .torrent. The
    // temporary name is new (`create_new`), so no file of the user's is ever overwritten by it.
    let tmp = {
        let mut name = output.as_os_str().to_owned();
        name.push(format!(".{}.shoal-tmp", std::process::id()));
        PathBuf::from(name)
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &created.bytes))
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    if let Err(e) = std::fs::rename(&tmp, &output) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", output.display()));
    }
    Ok(Made {
        metainfo: created.metainfo,
        output,
        seconds,
    })
}
