//! Run a verify with chosen threads and read-ahead, to tune [`shoal_storage::RecheckOptions`]:
//! `cargo run --release -p shoal-storage --example verify_opts -- TORRENT SAVE_PATH THREADS READ_AHEAD_BYTES`
use std::time::Instant;

use shoal_metainfo::Metainfo;
use shoal_storage::{verify, RecheckOptions, RecheckProgress};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        eprintln!("usage: verify_opts TORRENT SAVE_PATH THREADS READ_AHEAD_BYTES");
        std::process::exit(2);
    }
    let m = Metainfo::from_file(std::path::Path::new(&a[1])).expect("torrent");
    let opts = RecheckOptions {
        threads: a[3].parse().expect("threads"),
        read_ahead: a[4].parse().expect("read-ahead"),
    };
    let t = Instant::now();
    let r = verify(
        &m.info,
        m.info_hash,
        std::path::Path::new(&a[2]),
        &m.piece_layers,
        &opts,
        &RecheckProgress::default(),
    )
    .expect("verify");
    let s = t.elapsed().as_secs_f64();
    println!(
        "threads {} read_ahead {}: {}/{} valid in {s:.3} s = {:.0} MB/s",
        opts.threads,
        opts.read_ahead,
        r.valid.count(),
        m.info.pieces.len(),
        r.bytes_read as f64 / s / 1e6
    );
}
