//! Measure the two ways of hashing a completed piece: in memory as blocks arrive (in order) versus
//! reading the whole piece back from disk when its last block is written.
//!
//! `cargo run --release -p shoal-storage --example hash_path [MiB]`
//!
//! Blocks are written in order, one piece after another, by two threads (the disk pool's shape),
//! into a temporary folder; the re-read finds the data in the page cache, as it would right after
//! the write in a real download.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use sha1::{Digest, Sha1};
use shoal_core::Id20;
use shoal_metainfo::{FileAttr, FileEntry, Info};
use shoal_storage::{Storage, StorageOptions, WriteOutcome, BLOCK_SIZE};

/// CPU seconds (user + system) used by this process so far, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name; 100 Hz.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let piece_length: u32 = 256 * 1024;
    let total = mib << 20;
    let mut data = vec![0u8; total as usize];
    rand::rngs::StdRng::seed_from_u64(1).fill(&mut data[..]);
    let files = 16u64;
    let per = total / files;
    let info = Info {
        name: "bench".into(),
        piece_length,
        pieces: data
            .chunks(piece_length as usize)
            .map(|c| Id20(Sha1::digest(c).into()))
            .collect(),
        files: (0..files)
            .map(|i| FileEntry {
                path: vec!["bench".into(), format!("f{i}")],
                length: per,
                offset: i * per,
                attr: FileAttr::default(),
                symlink_target: None,
            })
            .collect(),
        total_length: total,
        private: false,
        multi_file: true,
        v2: None,
    };
    let n = info.pieces.len() as u32;
    // Best (minimum) of the rounds: the figure least disturbed by other work on the machine.
    let mut best = [(f64::MAX, f64::MAX); 2];
    for round in 0..8 {
        for in_memory in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut opts = StorageOptions::new(dir.path());
            opts.hash_in_memory = in_memory;
            let (s, _) = Storage::open(&info, Id20([0; 20]), opts).unwrap();
            let next = AtomicU32::new(0);
            let start = Instant::now();
            let cpu0 = cpu_seconds();
            std::thread::scope(|sc| {
                for _ in 0..2 {
                    sc.spawn(|| loop {
                        let p = next.fetch_add(1, Ordering::Relaxed);
                        if p >= n {
                            break;
                        }
                        let base = p as usize * piece_length as usize;
                        let size = info.piece_size(p) as usize;
                        for off in (0..size).step_by(BLOCK_SIZE as usize) {
                            let len = (BLOCK_SIZE as usize).min(size - off);
                            let out = s
                                .write_block(p, off as u32, &data[base + off..base + off + len])
                                .unwrap();
                            if off + len == size {
                                assert_eq!(out, WriteOutcome::Verified);
                            }
                        }
                    });
                }
            });
            let secs = start.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu0;
            if round > 0 {
                let k = in_memory as usize;
                best[k].0 = best[k].0.min(secs);
                best[k].1 = best[k].1.min(cpu);
            }
            println!(
                "round {round}: {:>8}: {mib} MiB written and verified in {secs:.3} s = {:.0} MB/s, {cpu:.2} CPU s",
                if in_memory { "memory" } else { "re-read" },
                total as f64 / secs / 1e6
            );
        }
    }
    for (k, name) in [(1, "memory"), (0, "re-read")] {
        let (secs, cpu) = best[k];
        println!(
            "{name:>8}: best of rounds 1-7: {:.0} MB/s, {:.2} CPU s per GiB",
            total as f64 / secs / 1e6,
            cpu / (total as f64 / (1u64 << 30) as f64)
        );
    }
}
