//! Raw hashing speed on one core, as a download hashes: SHA-1 over whole 256 KiB pieces (v1)
//! against SHA-256 over each 16 KiB block plus the merkle tree above the blocks (v2), and
//! whether the CPU offers the SHA extensions the `sha1`/`sha2` crates detect at run time.
//!
//! `cargo run --release -p shoal-metainfo --example hash_speed [MiB]`

use std::time::Instant;

use sha1::{Digest, Sha1};
use shoal_metainfo::merkle;

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let data: Vec<u8> = (0..mib << 20).map(|i| (i * 31 + i / 4093) as u8).collect();
    #[cfg(target_arch = "x86_64")]
    println!(
        "cpu: sha extensions (SHA-NI) {}, sse4.1 {}",
        std::arch::is_x86_feature_detected!("sha"),
        std::arch::is_x86_feature_detected!("sse4.1")
    );
    let piece = 256 * 1024;
    let start = Instant::now();
    let mut sink = 0u8;
    for p in data.chunks(piece) {
        sink ^= Sha1::digest(p)[0];
    }
    let v1 = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for p in data.chunks(piece) {
        let leaves: Vec<_> = p
            .chunks(merkle::BLOCK_SIZE as usize)
            .map(merkle::hash_block)
            .collect();
        sink ^= merkle::piece_hash(&leaves, piece as u64).0[0];
    }
    let v2 = start.elapsed().as_secs_f64();
    let mb = (mib << 20) as f64 / 1e6;
    println!(
        "{mib} MiB, one core: SHA-1 (v1) {:.0} MB/s, SHA-256 leaves + tree (v2) {:.0} MB/s, \
         v2/v1 time {:.2}x ({sink})",
        mb / v1,
        mb / v2,
        v2 / v1
    );
}
