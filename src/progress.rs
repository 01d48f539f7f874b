//! The live progress display of `seed` and `download`: a bar on a terminal, or JSON lines.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use shoal_engine::TorrentStatus;

use crate::units::human_bytes;

/// Reports a torrent's progress on stderr (terminal) or stdout (`--json`).
pub struct Reporter {
    json: bool,
    bar: Option<ProgressBar>,
    last_json: Option<Instant>,
    label: &'static str,
}

impl Reporter {
    /// A reporter; `label` is "downloading" or "seeding".
    pub fn new(json: bool, label: &'static str) -> Self {
        let bar = (!json && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(label);
            bar
        });
        Reporter {
            json,
            bar,
            last_json: None,
            label,
        }
    }

    /// Prints one JSON line on stdout (and flushes it, so scripts see it at once).
    pub fn json_line(&self, value: serde_json::Value) {
        if self.json {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{value}");
            let _ = out.flush();
        }
    }

    /// A line for people: on stderr, above the bar.
    pub fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None if !self.json => eprintln!("{text}"),
            None => {}
        }
    }

    fn fields(s: &TorrentStatus) -> serde_json::Value {
        json!({
            "downloaded": s.verified_bytes,
            "uploaded": s.uploaded,
            "received": s.downloaded,
            "total": s.total_bytes,
            "peers": s.peers,
            "down_rate": s.down_rate.round() as u64,
            "up_rate": s.up_rate.round() as u64,
            "pieces": s.pieces_have,
            "pieces_total": s.pieces_total,
            "hash_failures": s.hash_failures,
            "banned": s.banned.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
            "trackers": s.trackers.iter().map(|t| json!({
                "url": t.url, "ok": t.ok, "message": t.message, "peers": t.peers,
            })).collect::<Vec<_>>(),
        })
    }

    /// Shows a status snapshot; JSON lines at most once a second.
    pub fn update(&mut self, s: &TorrentStatus) {
        if let Some(bar) = &self.bar {
            bar.set_length(s.total_bytes);
            bar.set_position(s.verified_bytes);
            let eta = if s.down_rate > 1.0 && s.verified_bytes < s.total_bytes {
                format!(
                    " eta {}s",
                    ((s.total_bytes - s.verified_bytes) as f64 / s.down_rate) as u64
                )
            } else {
                String::new()
            };
            let trackers = if s.trackers.is_empty() {
                String::new()
            } else {
                let ok = s.trackers.iter().filter(|t| t.ok).count();
                format!(" trackers {ok}/{} ok", s.trackers.len())
            };
            bar.set_message(format!(
                "down {}/s up {}/s peers {} uploaded {}{trackers}{eta}",
                human_bytes(s.down_rate as u64),
                human_bytes(s.up_rate as u64),
                s.peers,
                human_bytes(s.uploaded),
            ));
        }
        if self.json
            && self
                .last_json
                .is_none_or(|t| t.elapsed().as_millis() >= 1000)
        {
            self.last_json = Some(Instant::now());
            let mut v = Self::fields(s);
            v["event"] = json!("progress");
            self.json_line(v);
        }
    }

    /// Final line: `complete` (or the given event) with the last status.
    pub fn finish(&mut self, event: &str, s: &TorrentStatus) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let mut v = Self::fields(s);
        v["event"] = json!(event);
        self.json_line(v);
        if !self.json {
            eprintln!(
                "{}: {event}: {} of {} verified, {} uploaded",
                self.label,
                human_bytes(s.verified_bytes),
                human_bytes(s.total_bytes),
                human_bytes(s.uploaded)
            );
        }
    }
}
