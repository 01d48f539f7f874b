//! `shoal swarm`: the whole mission on one machine with no internet — a file, its torrent, an
//! initial seeder and N leechers as separate processes on 127.0.0.x, finding each other through a
//! small local DHT (no tracker), with their progress side by side and a summary at the end.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rand::RngCore;
use shoal_engine::events::{JsonEvent, LeecherSummary, SwarmSummary, Transfer};
use shoal_metainfo::TorrentBuilder;

use crate::output::{self, errln, outln};
use crate::units::{human_bytes, parse_size};

/// Arguments of `shoal swarm`.
#[derive(Args, Debug)]
pub struct SwarmArgs {
    /// Leechers to start.
    #[arg(long, default_value_t = 4)]
    leechers: usize,
    /// Size of the shared file, e.g. `64MiB`.
    #[arg(long, default_value = "64MiB")]
    size: String,
    /// Working folder (data, torrent, logs); default `./shoal-swarm`. It must be new, empty, or
    /// one an earlier `shoal swarm` made (only what that run made is replaced).
    #[arg(long, default_value = "shoal-swarm")]
    dir: PathBuf,
    /// Upload cap of the initial seeder, so leechers have a reason to trade (e.g. `16MiB`).
    #[arg(long, default_value = "16MiB")]
    seed_rate: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// The seeder super-seeds (BEP 16: `shoal seed --super-seed`).
    #[arg(long)]
    super_seed: bool,
}

/// The file that marks a folder as made by `shoal swarm`.
const MARKER: &str = ".shoal-swarm";

/// Prepares the working folder without ever touching a user's files: a missing or empty folder
/// is made ours; a folder with our marker has the previous run's entries (and only those)
/// removed; anything else is refused.
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("--dir {} is a file, not a folder", dir.display());
    }
    if dir.is_dir() {
        let mut entries = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .filter_map(Result::ok);
        let empty = entries.next().is_none();
        if !empty {
            if !dir.join(MARKER).is_file() {
                bail!(
                    "--dir {} is not empty and was not made by shoal swarm; give a new or empty folder",
                    dir.display()
                );
            }
            remove_previous_run(dir)?;
        }
    }
    std::fs::create_dir_all(dir.join("seed"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by `shoal swarm`; a later run may replace what it made here\n",
    )
    .with_context(|| format!("cannot write to {}", dir.display()))?;
    Ok(())
}

/// Whether a name in the working folder is one `shoal swarm` makes.
fn made_by_swarm(name: &str) -> bool {
    let numbered = |prefix: &str, rest: &str| {
        name.strip_prefix(prefix)
            .and_then(|n| n.strip_suffix(rest))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    matches!(
        name,
        "seed" | "state" | "swarm.torrent" | "dht-node.log" | "seeder.log"
    ) || numbered("leecher", "")
        || numbered("leecher", ".log")
}

fn remove_previous_run(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !made_by_swarm(name) {
            continue;
        }
        let path = entry.path();
        let result = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        result.with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

/// A child process whose JSON lines arrive on a channel; killed when dropped.
struct Member {
    name: String,
    child: Child,
    /// Its last event line (`None` before the first).
    last: Option<JsonEvent>,
    done_at: Option<Duration>,
}

impl Member {
    /// The transfer figures of its last progress-like line.
    fn transfer(&self) -> Transfer {
        self.last
            .as_ref()
            .and_then(JsonEvent::transfer)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(
    name: &str,
    args: &[String],
    dir: &Path,
    tx: &mpsc::Sender<(usize, JsonEvent)>,
    index: usize,
) -> anyhow::Result<Member> {
    let exe = std::env::current_exe().context("cannot find the shoal executable")?;
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let mut child = Command::new(exe)
        .args(args)
        .env("XDG_STATE_HOME", dir.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let tx = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            match serde_json::from_str::<JsonEvent>(&line) {
                Ok(ev) => {
                    if tx.send((index, ev)).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!("unexpected line from a swarm member ({e}): {line}"),
            }
        }
    });
    Ok(Member {
        name: name.to_string(),
        child,
        last: None,
        done_at: None,
    })
}

/// Waits for member `index` to print `listening` (or `dht`) and returns the address.
fn wait_addr(
    rx: &mpsc::Receiver<(usize, JsonEvent)>,
    members: &mut [Member],
    index: usize,
    event: &str,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok((i, ev)) = rx.recv_timeout(Duration::from_millis(100)) {
            if i == index && ev.name() == event {
                match ev {
                    JsonEvent::Listening { addr, .. } | JsonEvent::Dht { addr } => {
                        return Ok(addr.to_string())
                    }
                    _ => {}
                }
            }
            members[i].last = Some(ev);
        }
    }
    bail!("{} did not start (see its log)", members[index].name)
}

fn terminate(m: &Member) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(m.child.id().to_string())
        .status();
}

/// Runs `shoal swarm`.
pub fn run(args: &SwarmArgs) -> anyhow::Result<()> {
    let size = parse_size(&args.size).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(size > 0, "--size must be positive");
    anyhow::ensure!(
        (1..=200).contains(&args.leechers),
        "--leechers must be 1 to 200"
    );
    parse_size(&args.seed_rate).map_err(anyhow::Error::msg)?;
    let dir = &args.dir;
    prepare_dir(dir)?;
    let data = dir.join("seed").join("swarm.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&data)?);
        let mut rng = rand::rng();
        let mut buf = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            rng.fill_bytes(&mut buf);
            let n = left.min(buf.len() as u64) as usize;
            f.write_all(&buf[..n])?;
            left -= n as u64;
        }
    }
    let created = TorrentBuilder::new(&data).no_date().build(&mut |_, _| {})?;
    let torrent = dir.join("swarm.torrent");
    std::fs::write(&torrent, &created.bytes)?;
    let t = torrent.to_string_lossy().to_string();
    errln!(
        "swarm: {} ({}), info-hash {}, 1 seeder + {} leechers, DHT only",
        data.display(),
        human_bytes(size),
        created.metainfo.info_hash,
        args.leechers
    );

    let (tx, rx) = mpsc::channel();
    let mut members = Vec::new();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    members.push(spawn(
        "dht-node",
        &s(&["dht", "node", "--listen", "127.0.0.1:0", "--json"]),
        dir,
        &tx,
        0,
    )?);
    let node = wait_addr(&rx, &mut members, 0, "listening")?;
    let seed_dir = dir.join("seed").to_string_lossy().to_string();
    let mut seed_args = s(&[
        "seed",
        &t,
        &seed_dir,
        "--listen",
        "127.0.0.2:0",
        "--dht-bootstrap",
        &node,
        "--max-upload-rate",
        &args.seed_rate,
        "--no-trackers",
        "--json",
    ]);
    if args.super_seed {
        seed_args.push("--super-seed".into());
    }
    members.push(spawn("seeder", &seed_args, dir, &tx, 1)?);
    wait_addr(&rx, &mut members, 1, "dht")?;
    for i in 0..args.leechers {
        let out = dir
            .join(format!("leecher{}", i + 1))
            .to_string_lossy()
            .to_string();
        // At most 200 leechers: 127.0.0.10 to 127.0.0.209.
        let ip = format!("127.0.0.{}", 10 + i);
        members.push(spawn(
            &format!("leecher{}", i + 1),
            &s(&[
                "download",
                &t,
                "-o",
                &out,
                "--listen",
                &format!("{ip}:0"),
                "--dht-bootstrap",
                &node,
                "--no-trackers",
                "--seed",
                "--json",
            ]),
            dir,
            &tx,
            2 + i,
        )?);
    }

    let start = Instant::now();
    let multi = (!args.json && std::io::stderr().is_terminal()).then(MultiProgress::new);
    let bars: Vec<Option<ProgressBar>> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mp = multi.as_ref()?;
            if i == 0 {
                return None;
            }
            let bar = mp.add(ProgressBar::new(size));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>9} [{bar:30}] {bytes:>10}/{total_bytes} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(m.name.clone());
            Some(bar)
        })
        .collect();
    let deadline = start + Duration::from_secs(args.timeout);
    let mut last_print = Instant::now();
    // The seeder's upload when it reported the swarm self-sufficient.
    let mut self_sufficient_at: Option<u64> = None;
    loop {
        if Instant::now() > deadline {
            bail!(
                "the swarm did not finish within {} s (logs in {})",
                args.timeout,
                dir.display()
            );
        }
        if let Ok((i, ev)) = rx.recv_timeout(Duration::from_millis(100)) {
            if let JsonEvent::Error { message } = &ev {
                bail!("{}: {message}", members[i].name);
            }
            if let (1, JsonEvent::SelfSufficient(t)) = (i, &ev) {
                self_sufficient_at.get_or_insert(t.uploaded);
            }
            if let Some(t) = ev.transfer() {
                // A leecher is done at its `complete` line (or a progress line at 100 %).
                if i >= 2
                    && members[i].done_at.is_none()
                    && (matches!(ev, JsonEvent::Complete(_)) || t.is_complete())
                {
                    members[i].done_at = Some(start.elapsed());
                }
                if let Some(bar) = &bars[i] {
                    bar.set_position(t.downloaded);
                    bar.set_message(format!(
                        "down {}/s up {}/s peers {} sent {}",
                        human_bytes(t.down_rate),
                        human_bytes(t.up_rate),
                        t.peers,
                        human_bytes(t.uploaded),
                    ));
                }
            }
            members[i].last = Some(ev);
        }
        if multi.is_none() && !args.json && last_print.elapsed() >= Duration::from_secs(2) {
            last_print = Instant::now();
            let line: Vec<String> = members[2..]
                .iter()
                .map(|m| format!("{} {:>3}%", m.name, m.transfer().downloaded * 100 / size))
                .collect();
            errln!(
                "{:>6.1}s  {}",
                start.elapsed().as_secs_f64(),
                line.join("  ")
            );
        }
        if members[2..].iter().all(|m| m.done_at.is_some()) {
            break;
        }
    }
    let total_time = start.elapsed();
    for m in &members[1..] {
        terminate(m);
    }
    // Collect the final lines (their `stopped` events carry the totals).
    let stop_deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < stop_deadline
        && members[1..]
            .iter()
            .any(|m| !matches!(m.last, Some(JsonEvent::Stopped(_))))
    {
        if let Ok((i, ev)) = rx.recv_timeout(Duration::from_millis(100)) {
            if let (1, JsonEvent::SelfSufficient(t)) = (i, &ev) {
                self_sufficient_at.get_or_insert(t.uploaded);
            }
            members[i].last = Some(ev);
        }
    }
    for b in bars.iter().flatten() {
        b.finish();
    }
    let seeder_up = members[1].transfer().uploaded;
    let per_leecher: Vec<LeecherSummary> = members[2..]
        .iter()
        .map(|m| {
            let t = m.transfer();
            LeecherSummary {
                name: m.name.clone(),
                seconds: m.done_at.map(|d| d.as_secs_f64()),
                received: t.received,
                uploaded: t.uploaded,
            }
        })
        .collect();
    let leecher_up: u64 = per_leecher.iter().map(|l| l.uploaded).sum();
    let summary = SwarmSummary {
        size,
        leechers: args.leechers,
        seconds: total_time.as_secs_f64(),
        seeder_uploaded: seeder_up,
        seeder_copies: seeder_up as f64 / size as f64,
        leechers_uploaded: leecher_up,
        leecher_share: leecher_up as f64 / (leecher_up + seeder_up).max(1) as f64,
        per_leecher,
        super_seed: args.super_seed,
        seeder_copies_at_self_sufficiency: self_sufficient_at.map(|u| u as f64 / size as f64),
    };
    if args.json {
        output::event(&JsonEvent::Summary(summary));
    } else {
        outln!(
            "all {} leechers complete in {:.1} s ({} each)",
            args.leechers,
            total_time.as_secs_f64(),
            human_bytes(size)
        );
        outln!(
            "the seeder uploaded {} ({:.2} copies); leechers uploaded {} to each other ({:.0} % of all data moved)",
            human_bytes(seeder_up),
            summary.seeder_copies,
            human_bytes(leecher_up),
            summary.leecher_share * 100.0
        );
        if let Some(c) = summary.seeder_copies_at_self_sufficiency {
            outln!(
                "the swarm was self-sufficient after the seeder uploaded {c:.3} copies{}",
                if args.super_seed {
                    " (super-seeding)"
                } else {
                    ""
                }
            );
        }
        for l in &summary.per_leecher {
            outln!(
                "  {:<10} done at {:>6.1} s, received {}, uploaded {}",
                l.name,
                l.seconds.unwrap_or(0.0),
                human_bytes(l.received),
                human_bytes(l.uploaded),
            );
        }
        outln!("data, torrent and logs: {}", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_a_swarm_makes_are_its_own() {
        for ours in [
            "seed",
            "state",
            "swarm.torrent",
            "leecher1",
            "leecher12.log",
            "seeder.log",
        ] {
            assert!(made_by_swarm(ours), "{ours}");
        }
        for theirs in [
            "leecher",
            "leecherx",
            "leecher1.txt",
            "notes.txt",
            ".ssh",
            "Documents",
        ] {
            assert!(!made_by_swarm(theirs), "{theirs}");
        }
    }
}
