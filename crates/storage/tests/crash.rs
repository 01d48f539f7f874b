//! Crash safety: a worker process downloads (writes, verifies, flushes resume data) and is killed
//! with SIGKILL at random moments, again and again. After every kill, what the storage reports as
//! verified on the next start must hash correctly, and every piece the worker had reported as
//! flushed must still be verified.
//!
//! The test re-runs its own executable (`current_exe`) with `SHOAL_CRASH_WORKER` set, filtered to
//! the `crash_worker` test, which then acts as the worker.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Fixture;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use shoal_storage::{
    Bitfield, Mode, RecheckOptions, RecheckProgress, Startup, Storage, StorageOptions, WriteOutcome,
};

const WORKER_ENV: &str = "SHOAL_CRASH_WORKER";
const SEED_ENV: &str = "SHOAL_CRASH_SEED";
const ROUNDS: u64 = 24;

fn fixture() -> Fixture {
    let sizes: Vec<(u64, bool)> = vec![
        (700_000, false),
        (0, false),
        (20_000, true),
        (1_000_000, false),
        (3, false),
        (900_001, false),
        (45_000, true),
        (1_300_000, false),
        (123_456, false),
    ];
    Fixture::new("crashy", &sizes, 32_768, 77)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Worker mode: download into the folder from the environment until killed.
#[test]
fn crash_worker() {
    let Ok(dir) = std::env::var(WORKER_ENV) else {
        return;
    };
    let seed: u64 = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let f = fixture();
    let (s, startup) = Storage::open(&f.info, f.info_hash, StorageOptions::new(&dir)).unwrap();
    if let Startup::NeedsRecheck { .. } = startup {
        s.recheck(&RecheckOptions::default(), &RecheckProgress::default())
            .unwrap();
    }
    println!("START {}", s.verified().count());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut todo: Vec<u32> = (0..f.num_pieces()).filter(|&p| !s.have(p)).collect();
    todo.shuffle(&mut rng);
    let mut since_flush = 0;
    while let Some(p) = todo.pop() {
        let mut blocks = f.blocks(p);
        blocks.shuffle(&mut rng);
        // Now and then a peer sends garbage: the piece must fail and come again.
        let corrupt = rng.random_bool(0.1);
        for (i, (o, mut b)) in blocks.into_iter().enumerate() {
            if corrupt && i == 0 {
                b[0] ^= 0x55;
            }
            match s.write_block(p, o, &b).unwrap() {
                WriteOutcome::HashFailed => {
                    assert!(corrupt);
                    todo.insert(0, p);
                }
                WriteOutcome::Verified => since_flush += 1,
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if since_flush >= 3 {
            since_flush = 0;
            if let Some(bits) = s.flush_resume_snapshot().unwrap() {
                println!("FLUSH {}", hex(bits.as_bytes()));
            }
            // Sometimes idle after a flush, so some kills find files that match resume data.
            if rng.random_bool(0.3) {
                std::thread::sleep(Duration::from_millis(40));
            }
        }
    }
    if let Some(bits) = s.flush_resume_snapshot().unwrap() {
        println!("FLUSH {}", hex(bits.as_bytes()));
    }
    println!("DONE");
    // Wait to be killed (bounded: the parent kills within a second).
    std::thread::sleep(Duration::from_secs(30));
}

/// What a fresh start believes is verified, checked against the real data.
fn check_restart(f: &Fixture, dir: &Path, flushed: &Option<Bitfield>) -> (bool, u32) {
    let mut opts = StorageOptions::new(dir);
    // Read-only: inspecting must not change the files the next worker will see.
    opts.mode = Mode::ReadOnly;
    let (s, startup) = Storage::open(&f.info, f.info_hash, opts).unwrap();
    let resumed = matches!(startup, Startup::Resumed { .. });
    if let Startup::NeedsRecheck { .. } = startup {
        s.recheck(&RecheckOptions::default(), &RecheckProgress::default())
            .unwrap();
    }
    let done = s.verified();
    for p in done.ones() {
        let size = f.piece(p).len() as u32;
        let data = s.read_block(p, 0, size).unwrap();
        assert!(
            data == f.piece(p),
            "piece {p} marked done but its data is wrong"
        );
    }
    if let Some(flushed) = flushed {
        for p in flushed.ones() {
            assert!(done.get(p), "piece {p} was flushed as verified but is lost");
        }
    }
    (resumed, done.count())
}

#[test]
fn sigkill_at_random_moments_never_loses_or_invents_verified_pieces() {
    if std::env::var(WORKER_ENV).is_ok() {
        return;
    }
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = StdRng::seed_from_u64(2024);
    let (mut resumed_rounds, mut completed) = (0, 0);
    // The newest verified set any worker reported durable; it must survive every later kill,
    // including kills before the next worker flushes anything.
    let mut durable: Option<Bitfield> = None;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_worker", "--nocapture", "--test-threads=1"])
            .env(WORKER_ENV, dir.path())
            .env(SEED_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(10..400)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let lines = lines.lock().unwrap().clone();
        let flushed = lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("FLUSH "))
            .and_then(unhex)
            .map(|b| Bitfield::from_bytes(&b, f.num_pieces()).expect("worker's own bitfield"));
        if flushed.is_some() {
            durable = flushed.clone();
        }
        let (resumed, count) = check_restart(&f, dir.path(), &durable);
        resumed_rounds += resumed as u32;
        eprintln!(
            "round {round}: {} lines, flushed {}, verified after restart {count}, resumed {resumed}",
            lines.len(),
            flushed.as_ref().map_or(0, |b| b.count()),
        );
        if count == f.num_pieces() {
            // Complete: start over so later rounds keep crashing mid-download.
            completed += 1;
            durable = None;
            for e in std::fs::read_dir(dir.path()).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    std::fs::remove_dir_all(p).unwrap();
                } else {
                    std::fs::remove_file(p).unwrap();
                }
            }
        }
    }
    eprintln!("{ROUNDS} kills, {resumed_rounds} restarts trusted resume data, {completed} downloads completed");
}
