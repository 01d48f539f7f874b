//! The live progress display of `seed` and `download`: a bar on a terminal, or JSON lines.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use shoal_engine::events::{JsonEvent, Transfer};
use shoal_engine::TorrentStatus;

use crate::output::{self, errln};
use crate::units::human_bytes;

/// Reports a torrent's progress on stderr (terminal) or stdout (`--json`).
pub struct Reporter {
    json: bool,
    bar: Option<ProgressBar>,
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
        Reporter { json, bar, label }
    }

    /// Prints one event line on stdout (with `--json` only).
    pub fn event(&self, ev: &JsonEvent) {
        if self.json {
            output::event(ev);
        }
    }

    /// A line for people: on stderr, above the bar.
    pub fn note(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None if !self.json => errln!("{text}"),
            None => {}
        }
    }

    /// Shows a status snapshot on the bar (as often as it changes).
    pub fn update(&mut self, s: &TorrentStatus) {
        let Some(bar) = &self.bar else { return };
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
        let super_seeding = if s.super_seeding {
            " super-seeding"
        } else {
            ""
        };
        bar.set_message(format!(
            "down {}/s up {}/s peers {}{} uploaded {} copies {:.2}{super_seeding}{trackers}{eta}",
            human_bytes(s.down_rate as u64),
            human_bytes(s.up_rate as u64),
            s.peers,
            transports(s),
            human_bytes(s.uploaded),
            s.distributed_copies,
        ));
    }

    /// The periodic `progress` line (the caller's one-second timer decides when).
    pub fn progress_line(&self, s: &TorrentStatus) {
        self.event(&JsonEvent::Progress(Transfer::from(s)));
    }

    /// The moment the connected peers first hold every piece without us: said once, as the
    /// `self_sufficient` event and a line for people.
    pub fn self_sufficient(&mut self, s: &TorrentStatus) {
        self.event(&JsonEvent::SelfSufficient(Transfer::from(s)));
        let total = s.total_bytes.max(1) as f64;
        let line = format!(
            "the swarm is self-sufficient: you can stop seeding ({:.2} distributed copies \
             among {} peers; {} uploaded, {:.2} copies)",
            s.distributed_copies,
            s.peers,
            human_bytes(s.uploaded),
            s.uploaded as f64 / total
        );
        self.note(&line);
    }

    /// The moment every wanted piece is verified: the bar shows 100 % and `complete` is printed.
    pub fn complete(&mut self, s: &TorrentStatus) {
        if let Some(bar) = &self.bar {
            bar.set_length(s.total_bytes);
            bar.set_position(s.total_bytes);
        }
        self.event(&JsonEvent::Complete(Transfer::from(s)));
        if let Some(bar) = &self.bar {
            bar.println(format!(
                "{}: complete: {} verified",
                self.label,
                human_bytes(s.verified_bytes)
            ));
        } else if !self.json {
            errln!(
                "{}: complete: {} verified",
                self.label,
                human_bytes(s.verified_bytes)
            );
        }
    }

    /// The final line: `stopped` or `interrupted` with the last status (`complete` was printed
    /// when it happened, so a finished download only clears the bar).
    pub fn finish(&mut self, ending: Option<fn(Transfer) -> JsonEvent>, s: &TorrentStatus) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let Some(make) = ending else { return };
        let ev = make(Transfer::from(s));
        self.event(&ev);
        if !self.json {
            errln!(
                "{}: {}: {} of {} verified, {} uploaded",
                self.label,
                ev.name(),
                human_bytes(s.verified_bytes),
                human_bytes(s.total_bytes),
                human_bytes(s.uploaded)
            );
        }
    }
}

/// ` (tcp N, utp M)` after the peer count once any peer is over uTP; nothing while all are on
/// TCP (the line stays as it was without uTP).
fn transports(s: &TorrentStatus) -> String {
    match s.transport_counts() {
        (_, 0) => String::new(),
        (tcp, utp) => format!(" (tcp {tcp}, utp {utp})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_engine::Encryption;

    #[test]
    fn the_peer_count_is_split_by_transport_once_utp_is_used() {
        let addr = |p: u16| std::net::SocketAddr::from(([127, 0, 0, 1], p));
        let mut s = TorrentStatus {
            peer_encryption: vec![(addr(1), Encryption::Plaintext, "tcp")],
            ..TorrentStatus::default()
        };
        assert_eq!(transports(&s), "");
        s.peer_encryption.push((addr(2), Encryption::Rc4, "utp"));
        s.peer_encryption.push((addr(3), Encryption::Rc4, "utp"));
        assert_eq!(transports(&s), " (tcp 1, utp 2)");
        assert_eq!(s.transport_counts(), (1, 2));
    }
}
