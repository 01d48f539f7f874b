//! `shoal search "words"`: looks words up in the keyword index that `shoal index crawl` fills,
//! and prints the best matches with their magnet links (which `shoal download` takes).

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use shoal_engine::events::{JsonEvent, SearchResult};
use shoal_index::{Index, IndexConfig};

use crate::output::{self, errln, outln};
use crate::units::human_bytes;

/// Arguments of `shoal search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// The words to look for (every one must match the name or a file path).
    #[arg(required = true)]
    words: Vec<String>,
    /// The index file.
    #[arg(long)]
    index: Option<PathBuf>,
    /// Most results.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// One JSON object per result on stdout.
    #[arg(long)]
    json: bool,
}

/// Where the index lives unless `--index` says: `$XDG_DATA_HOME/shoal/index.sqlite`, or
/// `~/.local/share/shoal/index.sqlite`, or `shoal-index.sqlite` here.
pub fn default_index_path() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        });
    match base {
        Some(b) => b.join("shoal").join("index.sqlite"),
        None => PathBuf::from("shoal-index.sqlite"),
    }
}

/// Runs `shoal search`.
pub fn run(args: &SearchArgs) -> anyhow::Result<()> {
    let path = args.index.clone().unwrap_or_else(default_index_path);
    if !path.is_file() {
        bail!(
            "there is no index at {} (run `shoal index crawl` first, or give --index)",
            path.display()
        );
    }
    let index = Index::open(&path, IndexConfig::default())?;
    let hits = index.search(&args.words.join(" "), args.limit.max(1))?;
    if hits.is_empty() {
        errln!("no torrent in the index matches {:?}", args.words.join(" "));
    }
    for h in &hits {
        if args.json {
            output::event(&JsonEvent::Result(SearchResult {
                info_hash: h.info_hash.to_hex(),
                name: h.name.clone(),
                size: h.size,
                files: h.files,
                peers: h.peers,
                first_seen: h.first_seen,
                last_seen: h.last_seen,
                magnet: h.magnet(),
            }));
        } else {
            outln!("{}", h.name);
            outln!(
                "    {}, {} file{}, {} peer{} seen",
                human_bytes(h.size),
                h.files,
                if h.files == 1 { "" } else { "s" },
                h.peers,
                if h.peers == 1 { "" } else { "s" }
            );
            outln!("    {}", h.magnet());
        }
    }
    Ok(())
}
