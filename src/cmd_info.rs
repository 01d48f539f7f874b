//! `shoal info`: a readable summary of a .torrent file or magnet link.

use std::path::Path;

use clap::Args;
use serde_json::json;
use shoal_metainfo::{Magnet, Metainfo, Version};

use crate::output::outln;
use crate::units::human_bytes;

/// Arguments of `shoal info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A .torrent file or a `magnet:?` link.
    source: String,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs `shoal info`.
pub fn run(args: &InfoArgs) -> anyhow::Result<()> {
    if args.source.starts_with("magnet:") {
        let m = Magnet::parse(&args.source)?;
        if args.json {
            let version = match (m.v1, m.info_hash_v2.is_some()) {
                (true, false) => Version::V1,
                (false, _) => Version::V2,
                (true, true) => Version::Hybrid,
            };
            let obj = json!({
                "info_hash": m.info_hash.to_hex(),
                "info_hash_v2": m.info_hash_v2.map(|h| h.to_hex()),
                "version": version.as_str(),
                "name": m.display_name,
                "total_size": null,
                "piece_length": null,
                "num_pieces": null,
                "private": false,
                "trackers": m.trackers.iter().map(|t| vec![t]).collect::<Vec<_>>(),
                "files": null,
                "peers": m.peers,
                "select_only": m.select_only,
                "magnet": m.to_string(),
            });
            outln!("{obj}");
        } else {
            outln!("magnet link (metadata is fetched from peers when downloading)");
            outln!("info hash: {}", m.info_hash);
            if let Some(h) = m.info_hash_v2 {
                outln!("v2 hash:   {h}");
            }
            outln!(
                "name:      {}",
                m.display_name.as_deref().unwrap_or("(none)")
            );
            for t in &m.trackers {
                outln!("tracker:   {t}");
            }
            for p in &m.peers {
                outln!("peer:      {p}");
            }
        }
        return Ok(());
    }
    let m = Metainfo::from_file(Path::new(&args.source))?;
    let i = &m.info;
    if args.json {
        let files: Vec<_> = i
            .files
            .iter()
            .enumerate()
            .map(|(index, f)| {
                json!({
                    "path": f.display_path(),
                    "length": f.length,
                    "pad": f.is_pad(),
                    "offset": f.offset,
                    "executable": f.attr.executable,
                    "hidden": f.attr.hidden,
                    "symlink": f.symlink_target.as_ref().map(|t| t.join("/")),
                    "pieces_root": i.pieces_root(index).map(|r| r.to_hex()),
                })
            })
            .collect();
        let obj = json!({
            "info_hash": m.info_hash.to_hex(),
            "info_hash_v2": m.info_hash_v2.map(|h| h.to_hex()),
            "version": m.version().as_str(),
            "name": i.name,
            "total_size": i.total_length,
            "piece_length": i.piece_length,
            "num_pieces": i.num_pieces(),
            "private": i.private,
            "trackers": m.trackers,
            "files": files,
            "nodes": m.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>(),
            "url_list": m.url_list,
            "creation_date": m.creation_date,
            "comment": m.comment,
            "created_by": m.created_by,
            "magnet": m.magnet().to_string(),
        });
        outln!("{obj}");
        return Ok(());
    }
    outln!("name:         {}", i.name);
    outln!("info hash:    {}", m.info_hash);
    if let Some(h) = m.info_hash_v2 {
        outln!("info hash v2: {h}");
    }
    let version = match m.version() {
        Version::V1 => "v1",
        Version::V2 => "v2 (BEP 52)",
        Version::Hybrid => "hybrid: v1 and v2 (BEP 52)",
    };
    outln!("version:      {version}");
    outln!(
        "size:         {} ({} bytes) in {} files",
        human_bytes(i.payload_length()),
        i.payload_length(),
        i.files.iter().filter(|f| !f.is_pad()).count()
    );
    outln!(
        "pieces:       {} x {}",
        i.num_pieces(),
        human_bytes(i.piece_length as u64)
    );
    outln!("private:      {}", if i.private { "yes" } else { "no" });
    if let Some(c) = &m.comment {
        outln!("comment:      {c}");
    }
    if let Some(c) = &m.created_by {
        outln!("created by:   {c}");
    }
    if let Some(d) = m.creation_date {
        outln!("created:      {d} (unix time)");
    }
    for (n, tier) in m.trackers.iter().enumerate() {
        outln!("tracker tier {n}: {}", tier.join(" "));
    }
    for (h, p) in &m.nodes {
        outln!("dht node:     {h}:{p}");
    }
    for u in &m.url_list {
        outln!("web seed:     {u}");
    }
    outln!("magnet:       {}", m.magnet());
    outln!("files:");
    for f in i.files.iter().filter(|f| !f.is_pad()) {
        outln!("  {:>12}  {}", f.length, f.display_path());
    }
    Ok(())
}
