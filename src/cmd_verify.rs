//! `shoal verify`: check data on disk against a .torrent.
//!
//! Exit status 0 whenever the check ran, whatever it found; non-zero only when it could not
//! check (torrent unreadable, data path missing). `--json` prints one object on stdout:
//! `pieces_total`, `pieces_valid`, `bad_pieces` (indices of pieces whose data is all present but
//! hashes wrong), `missing_pieces` (how many pieces lack data: a file absent or short, or never
//! written — reads as zeros), `bytes_checked` (bytes read from files), `seconds`. Missing pieces
//! are counted, not listed: a partial download would list most of the torrent.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use shoal_metainfo::Metainfo;
use shoal_storage::{resolve_save_path, RecheckOptions, RecheckProgress};

use crate::output::outln;
use crate::units::human_bytes;

/// Arguments of `shoal verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The .torrent file.
    torrent: PathBuf,
    /// The downloaded data: the folder that holds it (the save path), or the file or folder
    /// itself.
    path: PathBuf,
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `shoal verify`.
pub fn run(args: &VerifyArgs) -> anyhow::Result<()> {
    let meta = Metainfo::from_file(&args.torrent)
        .with_context(|| format!("cannot read torrent {}", args.torrent.display()))?;
    let info = &meta.info;
    if !args.path.exists() {
        bail!("{} does not exist", args.path.display());
    }
    let save = resolve_save_path(&args.path, &info.name);
    let data = save.join(&info.name);
    if !data.exists() {
        bail!(
            "{} does not exist (give the folder that holds {:?}, or the data itself)",
            data.display(),
            info.name
        );
    }

    let progress = RecheckProgress::default();
    let bar = if std::io::stderr().is_terminal() && !args.json {
        let bar = ProgressBar::new(info.total_length);
        bar.set_style(
            ProgressStyle::with_template(
                "verifying [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Some(bar)
    } else {
        None
    };
    let start = Instant::now();
    let report = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        let progress = &progress;
        let save = &save;
        s.spawn(move || {
            let r = shoal_storage::verify(
                info,
                meta.info_hash,
                save,
                &meta.piece_layers,
                &RecheckOptions::default(),
                progress,
            );
            let _ = tx.send(r);
        });
        // Wake on completion at once, and every 100 ms for the bar.
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => return Some(r),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(bar) = &bar {
                        bar.set_position(progress.bytes.load(Ordering::Relaxed));
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = match report {
        Some(r) => r.with_context(|| format!("cannot check {}", data.display()))?,
        None => bail!("the check stopped unexpectedly"),
    };
    let seconds = start.elapsed().as_secs_f64();
    let total = info.num_pieces();
    let valid = report.valid.count();

    if args.json {
        let out = serde_json::json!({
            "pieces_total": total,
            "pieces_valid": valid,
            "bad_pieces": report.bad,
            "missing_pieces": report.missing.len(),
            "bytes_checked": report.bytes_read,
            "seconds": seconds,
        });
        outln!("{out}");
        return Ok(());
    }
    let rate = report.bytes_read as f64 / seconds.max(1e-9);
    outln!(
        "{}: {valid}/{total} pieces valid, {} bad, {} missing ({} checked in {seconds:.2} s, {}/s)",
        data.display(),
        report.bad.len(),
        report.missing.len(),
        human_bytes(report.bytes_read),
        human_bytes(rate as u64),
    );
    if !report.bad.is_empty() {
        let shown: Vec<String> = report.bad.iter().take(50).map(|p| p.to_string()).collect();
        let more = report.bad.len().saturating_sub(shown.len());
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        outln!("bad pieces: {}{tail}", shown.join(", "));
    }
    Ok(())
}
