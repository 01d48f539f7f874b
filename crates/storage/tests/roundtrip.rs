//! Blocks in, verified pieces out, the same bytes back; hash failures name their contributors;
//! skipped files never appear; resume data is trusted when the files are unchanged.

mod common;

use std::sync::mpsc::channel;
use std::sync::Arc;

use common::Fixture;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use shoal_storage::{
    DiskPool, Mode, RecheckOptions, RecheckProgress, ResumeLocation, Startup, Storage,
    StorageOptions, WriteOutcome,
};

fn sizes() -> Vec<(u64, bool)> {
    // Small and large files, zero-length files, pads, a short last piece.
    vec![
        (100_000, false),
        (0, false),
        (31_072, true),
        (5, false),
        (1, false),
        (0, false),
        (300_000, false),
        (12_345, false),
        (70_000, true),
        (65_536, false),
        (77, false),
    ]
}

fn download_all(f: &Fixture, s: &Storage, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    // Pieces made only of pad bytes are verified from the start (zeros need no download).
    let initial = s.verified();
    for p in initial.ones() {
        let spans = s.layout().piece_spans(p, 0, f.piece(p).len()).unwrap();
        assert!(
            spans.iter().all(|sp| sp.pad),
            "piece {p} done before any download"
        );
    }
    let mut jobs: Vec<(u32, u32, Vec<u8>)> = (0..f.num_pieces())
        .filter(|&p| !initial.get(p))
        .flat_map(|p| f.blocks(p).into_iter().map(move |(o, b)| (p, o, b)))
        .collect();
    jobs.shuffle(&mut rng);
    let mut verified = 0;
    for (p, o, b) in jobs {
        match s.write_block(p, o, &b).unwrap() {
            WriteOutcome::Verified => verified += 1,
            WriteOutcome::Stored => {}
            other => panic!("piece {p}: {other:?}"),
        }
    }
    assert_eq!(verified + initial.count(), f.num_pieces());
}

#[test]
fn round_trip_many_files_both_hash_paths() {
    for (seed, in_memory, piece_length) in [
        (1, true, 32_768),
        (2, false, 32_768),
        (3, true, 65_536),
        (4, true, 16_384),
    ] {
        let f = Fixture::new("t", &sizes(), piece_length, seed);
        let dir = tempfile::tempdir().unwrap();
        let mut opts = StorageOptions::new(dir.path());
        opts.hash_in_memory = in_memory;
        opts.max_open_files = 2;
        let (s, startup) = Storage::open(&f.info, f.info_hash, opts).unwrap();
        assert_eq!(startup, Startup::Fresh);
        download_all(&f, &s, seed);
        assert!(s.verified().all());
        for p in 0..f.num_pieces() {
            let size = f.piece(p).len() as u32;
            assert_eq!(s.read_block(p, 0, size).unwrap(), f.piece(p));
        }
        // Files on disk hold exactly the torrent's bytes; pads were never created; zero-length
        // files exist.
        for file in &f.info.files {
            let path = dir.path().join(file.relative_path());
            if file.attr.pad {
                assert!(!path.exists());
            } else {
                let start = file.offset as usize;
                assert_eq!(
                    std::fs::read(&path).unwrap(),
                    &f.data[start..start + file.length as usize]
                );
            }
        }
        assert!(s.close().is_ok());
        // Reopen: resume data matches the files, so it is trusted.
        let (s2, startup) =
            Storage::open(&f.info, f.info_hash, StorageOptions::new(dir.path())).unwrap();
        assert_eq!(
            startup,
            Startup::Resumed {
                verified: f.num_pieces()
            }
        );
        assert!(s2.verified().all());
    }
}

#[test]
fn hash_failure_resets_keeps_block_evidence_and_pads_are_zeros() {
    let f = Fixture::new("t", &sizes(), 32_768, 9);
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Storage::open(&f.info, f.info_hash, StorageOptions::new(dir.path())).unwrap();
    // Piece 0: block 0 is corrupt, block 1 is fine.
    let blocks = f.blocks(0);
    let mut bad = blocks[0].1.clone();
    bad[3] ^= 0xff;
    assert_eq!(s.write_block(0, 0, &bad).unwrap(), WriteOutcome::Stored);
    assert_eq!(
        s.write_block(0, 0, &blocks[0].1).unwrap(),
        WriteOutcome::Duplicate
    );
    assert_eq!(
        s.write_block(0, blocks[1].0, &blocks[1].1).unwrap(),
        WriteOutcome::HashFailed
    );
    assert!(!s.have(0));
    // The evidence for a smart ban: each block's hash as stored, the bad one included.
    let sha = |b: &[u8]| -> [u8; 20] {
        use sha1::Digest;
        sha1::Sha1::digest(b).into()
    };
    assert_eq!(
        s.block_hashes(0).unwrap(),
        vec![sha(&bad), sha(&blocks[1].1)]
    );
    // After the reset every block is needed again, and good data verifies.
    assert_eq!(
        s.write_block(0, 0, &blocks[0].1).unwrap(),
        WriteOutcome::Stored
    );
    assert_eq!(
        s.write_block(0, blocks[1].0, &blocks[1].1).unwrap(),
        WriteOutcome::Verified
    );
    assert_eq!(
        s.write_block(0, 0, &blocks[0].1).unwrap(),
        WriteOutcome::Duplicate
    );
    // Piece 3 covers the pad at 100_000..131_072: a peer sending garbage there still passes,
    // because pad bytes are zeros by definition and are never stored.
    let p = 3;
    for (o, mut b) in f.blocks(p) {
        b.iter_mut().for_each(|x| *x = x.wrapping_add(0));
        let start = p as u64 * 32_768 + o as u64;
        for (k, x) in b.iter_mut().enumerate() {
            let at = start + k as u64;
            if (100_000..131_072).contains(&at) {
                *x = 0xAA;
            }
        }
        let out = s.write_block(p, o, &b).unwrap();
        assert!(matches!(out, WriteOutcome::Stored | WriteOutcome::Verified));
    }
    assert!(s.have(p));
    // Read into a reused buffer full of old bytes, the pad comes back as zeros all the same.
    let mut reused = vec![0xAA; f.piece(p).len()];
    s.read_block_into(p, 0, &mut reused).unwrap();
    assert_eq!(reused, f.piece(p));
    assert_eq!(s.read_block(p, 0, reused.len() as u32).unwrap(), f.piece(p));
    // Bad arguments are errors, not panics.
    assert!(s.write_block(999, 0, &[0; 16384]).is_err());
    assert!(s.write_block(0, 1, &[0; 16384]).is_err());
    assert!(s.write_block(1, 0, &[0; 100]).is_err());
    assert!(s.read_block(1, 0, 40_000).is_err());
    assert!(s.read_block_into(1, 0, &mut [0; 40_000]).is_err());
}

#[test]
fn skipped_files_are_never_created_and_straddling_pieces_verify() {
    let f = Fixture::new("t", &sizes(), 32_768, 11);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StorageOptions::new(dir.path());
    let mut wanted = vec![true; f.info.files.len()];
    wanted[0] = false; // 100_000 bytes: pieces 0..3 entirely, piece 3 shared with a pad
    wanted[6] = false; // 300_000 bytes: shared with f3/f4 at the start and f7 at the end
    opts.wanted_files = Some(wanted.clone());
    let (s, _) = Storage::open(&f.info, f.info_hash, opts.clone()).unwrap();
    let layout = s.layout().clone();
    let mut needed: Vec<u32> = Vec::new();
    for (i, _) in f.info.files.iter().enumerate() {
        if wanted[i] && !f.info.files[i].attr.pad {
            needed.extend(layout.file_pieces(i));
        }
    }
    needed.sort_unstable();
    needed.dedup();
    for &p in &needed {
        for (o, b) in f.blocks(p) {
            s.write_block(p, o, &b).unwrap();
        }
        assert!(s.have(p), "piece {p}");
        let size = f.piece(p).len() as u32;
        assert_eq!(s.read_block(p, 0, size).unwrap(), f.piece(p));
    }
    assert!(!dir.path().join("t/f0").exists());
    assert!(!dir.path().join("t/f6").exists());
    assert!(dir.path().join(".t.shoal-parts").exists());
    s.close().unwrap();
    drop(s);
    // A recheck with the same selection finds the same pieces through the part file.
    std::fs::remove_file(dir.path().join(".t.shoal-resume")).unwrap();
    let (s, startup) = Storage::open(&f.info, f.info_hash, opts).unwrap();
    assert!(matches!(startup, Startup::NeedsRecheck { warning: None }));
    let report = s
        .recheck(&RecheckOptions::default(), &RecheckProgress::default())
        .unwrap();
    // Pieces made only of pad bytes are valid without any download.
    let mut expected = needed.clone();
    expected.extend((0..f.num_pieces()).filter(|&p| {
        layout
            .piece_spans(p, 0, f.piece(p).len())
            .unwrap()
            .iter()
            .all(|s| s.pad)
    }));
    expected.sort_unstable();
    assert_eq!(report.valid.ones().collect::<Vec<_>>(), expected);
    assert!(report.bad.is_empty());
}

#[test]
fn pool_writes_and_recheck_with_progress() {
    let f = Arc::new(Fixture::new("t", &sizes(), 16_384, 21));
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Storage::open(&f.info, f.info_hash, StorageOptions::new(dir.path())).unwrap();
    let s = Arc::new(s);
    let pool = DiskPool::new(2, 4);
    let (tx, rx) = channel();
    let mut expected = 0;
    for p in 0..f.num_pieces() {
        for (o, b) in f.blocks(p) {
            let s = s.clone();
            let tx = tx.clone();
            expected += 1;
            pool.run(
                move || s.write_block(p, o, &b),
                move |r| tx.send(r).unwrap(),
            )
            .unwrap();
        }
    }
    let verified = (0..expected)
        .filter(|_| rx.recv().unwrap().unwrap() == WriteOutcome::Verified)
        .count();
    pool.shutdown();
    // Pad-only pieces were done from the start; every other piece was verified by a write.
    let pad_only = (0..f.num_pieces())
        .filter(|&p| {
            s.layout()
                .piece_spans(p, 0, f.piece(p).len())
                .unwrap()
                .iter()
                .all(|sp| sp.pad)
        })
        .count();
    assert!(pad_only > 0);
    assert_eq!(verified + pad_only, f.num_pieces() as usize);
    assert!(s.verified().all());
    // Corrupt one piece on disk and remove a file: recheck sorts them out.
    let f7 = dir.path().join("t/f7");
    let mut bytes = std::fs::read(&f7).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&f7, bytes).unwrap();
    std::fs::remove_file(dir.path().join("t/f10")).unwrap();
    let mut opts = StorageOptions::new(dir.path());
    opts.mode = Mode::ReadOnly;
    opts.resume = ResumeLocation::Disabled;
    let (ro, startup) = Storage::open(&f.info, f.info_hash, opts).unwrap();
    assert!(matches!(startup, Startup::NeedsRecheck { .. }));
    let progress = RecheckProgress::default();
    let report = ro
        .recheck(
            &RecheckOptions {
                threads: 2,
                read_ahead: 40_000,
            },
            &progress,
        )
        .unwrap();
    let f7_piece = ((f.info.files[7].offset + 100) / 16_384) as u32;
    assert_eq!(report.bad, vec![f7_piece]);
    assert_eq!(report.missing, vec![f.num_pieces() - 1]);
    assert_eq!(report.valid.count(), f.num_pieces() - 2);
    assert_eq!(
        progress.pieces.load(std::sync::atomic::Ordering::Relaxed),
        f.num_pieces()
    );
    assert!(ro.write_block(0, 0, &[0; 16384]).is_err());
}

#[test]
fn verify_sorts_valid_bad_and_missing_without_writing() {
    // Three files of 64 KiB, pieces of 16 KiB: file k holds pieces 4k..4k+4.
    let f = Fixture::new("v", &[(65_536, false); 3], 16_384, 31);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("v");
    std::fs::create_dir(&root).unwrap();
    // f0: intact but piece 1 corrupted; f1: its last 2 pieces a hole (never written, zeros);
    // f2: absent.
    let mut f0 = f.data[..65_536].to_vec();
    f0[20_000] ^= 0x80;
    std::fs::write(root.join("f0"), &f0).unwrap();
    let file = std::fs::File::create(root.join("f1")).unwrap();
    use std::os::unix::fs::FileExt;
    file.write_all_at(&f.data[65_536..65_536 + 32_768], 0)
        .unwrap();
    file.set_len(65_536).unwrap();
    drop(file);
    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    let report = shoal_storage::verify(
        &f.info,
        f.info_hash,
        dir.path(),
        &Default::default(),
        &RecheckOptions::default(),
        &RecheckProgress::default(),
    )
    .unwrap();
    assert_eq!(report.bad, vec![1]);
    assert_eq!(report.missing, vec![6, 7, 8, 9, 10, 11]);
    assert_eq!(report.valid.ones().collect::<Vec<_>>(), vec![0, 2, 3, 4, 5]);
    // Read only: nothing created (no resume data, no part file, no f2).
    let after: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(before.len(), after.len());
    assert!(!root.join("f2").exists());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Random file lists (zero-length files and pads included) and piece sizes: every block
    /// written in random order verifies its piece, and the files hold exactly the torrent's bytes.
    #[test]
    fn random_layouts_round_trip(
        sizes in proptest::collection::vec((0u64..70_000, proptest::bool::weighted(0.2)), 1..10),
        piece_blocks in 1u32..5,
        seed in 0u64..1000,
    ) {
        let total: u64 = sizes.iter().map(|s| s.0).sum();
        proptest::prop_assume!(total > 0);
        let f = Fixture::new("p", &sizes, piece_blocks * 16_384, seed);
        let dir = tempfile::tempdir().unwrap();
        let mut opts = StorageOptions::new(dir.path());
        opts.hash_in_memory = seed % 2 == 0;
        opts.pending_limit_per_piece = 16_384;
        let (s, startup) = Storage::open(&f.info, f.info_hash, opts).unwrap();
        proptest::prop_assert_eq!(startup, Startup::Fresh);
        download_all(&f, &s, seed);
        for p in 0..f.num_pieces() {
            let size = f.piece(p).len() as u32;
            proptest::prop_assert_eq!(s.read_block(p, 0, size).unwrap(), f.piece(p));
        }
        for file in &f.info.files {
            let path = dir.path().join(file.relative_path());
            if file.attr.pad {
                proptest::prop_assert!(!path.exists());
            } else {
                let start = file.offset as usize;
                proptest::prop_assert_eq!(
                    std::fs::read(&path).unwrap(),
                    &f.data[start..start + file.length as usize]
                );
            }
        }
    }
}
