//! v2 and hybrid torrents (BEP 52): pieces are verified against their merkle piece-layer entry
//! (or the file root), hybrids against the SHA-1 too; recheck, verify and resume data work; a
//! bad block shows in the piece's leaf hashes alone.

use std::fs;
use std::path::Path;

use rand::{Rng, SeedableRng};
use shoal_metainfo::{merkle, Metainfo, TorrentBuilder, Version};
use shoal_storage::{
    verify, RecheckOptions, RecheckProgress, Startup, Storage, StorageError, StorageOptions,
    WriteOutcome, BLOCK_SIZE,
};

const PIECE: u32 = 64 * 1024;

/// Three files under `root/data`: one of several pieces with a short last one, one smaller than
/// a block, one of exactly two pieces; made into a torrent of `version`.
fn make(root: &Path, version: Version) -> Metainfo {
    let mut rng = rand::rngs::StdRng::seed_from_u64(52);
    let dir = root.join("data");
    fs::create_dir_all(&dir).unwrap();
    for (name, len) in [
        ("a.bin", 200_000usize),
        ("b.bin", 5_000),
        ("c.bin", 131_072),
    ] {
        let mut v = vec![0u8; len];
        rng.fill(&mut v[..]);
        fs::write(dir.join(name), v).unwrap();
    }
    TorrentBuilder::new(&dir)
        .piece_length(Some(PIECE))
        .version(version)
        .no_date()
        .build(&mut |_, _| {})
        .unwrap()
        .metainfo
}

/// The torrent's piece stream (pads as zeros) from the source folder.
fn stream(meta: &Metainfo, root: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for f in &meta.info.files {
        if f.is_pad() {
            out.resize(out.len() + f.length as usize, 0);
        } else {
            out.extend(fs::read(root.join(f.relative_path())).unwrap());
        }
    }
    out
}

fn opts(dir: &Path, meta: &Metainfo) -> StorageOptions {
    let mut o = StorageOptions::new(dir);
    o.piece_layers = meta.piece_layers.clone();
    o
}

/// Writes every block of `piece` from `data`; returns the last outcome.
fn write_piece(s: &Storage, meta: &Metainfo, data: &[u8], piece: u32) -> WriteOutcome {
    let start = piece as usize * PIECE as usize;
    let size = meta.info.piece_size(piece) as usize;
    let mut last = WriteOutcome::Stored;
    for (i, b) in data[start..start + size]
        .chunks(BLOCK_SIZE as usize)
        .enumerate()
    {
        last = s.write_block(piece, i as u32 * BLOCK_SIZE, b).unwrap();
    }
    last
}

#[test]
fn v2_pieces_verify_against_their_merkle_hashes() {
    for in_memory in [true, false] {
        let src = tempfile::tempdir().unwrap();
        let meta = make(src.path(), Version::V2);
        assert_eq!(meta.version(), Version::V2);
        let data = stream(&meta, src.path());
        let dl = tempfile::tempdir().unwrap();
        let mut o = opts(dl.path(), &meta);
        o.hash_in_memory = in_memory;
        let (s, startup) = Storage::open(&meta.info, meta.info_hash, o).unwrap();
        assert_eq!(startup, Startup::Fresh);
        for p in 0..meta.info.num_pieces() {
            assert_eq!(
                write_piece(&s, &meta, &data, p),
                WriteOutcome::Verified,
                "piece {p}"
            );
        }
        assert!(s.verified().all());
        for name in ["a.bin", "b.bin", "c.bin"] {
            assert_eq!(
                fs::read(dl.path().join("data").join(name)).unwrap(),
                fs::read(src.path().join("data").join(name)).unwrap()
            );
        }
        // Resume data (keyed by the truncated v2 hash) is trusted on the next start.
        s.close().unwrap();
        let (s, startup) =
            Storage::open(&meta.info, meta.info_hash, opts(dl.path(), &meta)).unwrap();
        assert_eq!(
            startup,
            Startup::Resumed {
                verified: meta.info.num_pieces()
            }
        );
        assert!(s.verified().all());
    }
}

#[test]
fn a_bad_block_fails_its_piece_and_shows_in_its_leaf_alone() {
    let src = tempfile::tempdir().unwrap();
    let meta = make(src.path(), Version::V2);
    let good = stream(&meta, src.path());
    let mut bad = good.clone();
    // Piece 1, block 2: one flipped byte.
    bad[PIECE as usize + 2 * BLOCK_SIZE as usize + 100] ^= 1;
    let dl = tempfile::tempdir().unwrap();
    let (s, _) = Storage::open(&meta.info, meta.info_hash, opts(dl.path(), &meta)).unwrap();
    assert_eq!(write_piece(&s, &meta, &bad, 1), WriteOutcome::HashFailed);
    assert!(!s.have(1));
    let on_disk = s.leaf_hashes(1).unwrap();
    let start = PIECE as usize;
    let truth: Vec<_> = good[start..start + PIECE as usize]
        .chunks(BLOCK_SIZE as usize)
        .map(merkle::hash_block)
        .collect();
    let differ: Vec<usize> = (0..4).filter(|&i| on_disk[i] != truth[i]).collect();
    assert_eq!(differ, vec![2]);
    // The good leaves hash to the piece-layer entry; the ones on disk do not.
    let layer = meta.piece_layer(0).unwrap();
    assert_eq!(merkle::piece_hash(&truth, PIECE as u64), layer[1]);
    assert_ne!(merkle::piece_hash(&on_disk, PIECE as u64), layer[1]);
    // Sent again correctly, it passes.
    assert_eq!(write_piece(&s, &meta, &good, 1), WriteOutcome::Verified);
}

#[test]
fn after_a_failure_the_good_blocks_are_kept_and_only_the_bad_one_comes_again() {
    for version in [Version::V2, Version::Hybrid] {
        for in_memory in [true, false] {
            let src = tempfile::tempdir().unwrap();
            let meta = make(src.path(), version);
            let good = stream(&meta, src.path());
            let mut bad = good.clone();
            let at = PIECE as usize + 2 * BLOCK_SIZE as usize;
            bad[at + 100] ^= 1;
            let dl = tempfile::tempdir().unwrap();
            let mut o = opts(dl.path(), &meta);
            o.hash_in_memory = in_memory;
            let (s, _) = Storage::open(&meta.info, meta.info_hash, o).unwrap();
            assert_eq!(write_piece(&s, &meta, &bad, 1), WriteOutcome::HashFailed);
            // Blocks 0, 1 and 3 are kept as they are on disk; block 2 alone comes again.
            s.keep_blocks(1, &[true, true, false, true]).unwrap();
            let block = &good[at..at + BLOCK_SIZE as usize];
            assert_eq!(
                s.write_block(1, 2 * BLOCK_SIZE, block).unwrap(),
                WriteOutcome::Verified,
                "{version:?}, in memory {in_memory}"
            );
            assert!(s.have(1));
            // Flags of the wrong count are refused; a verified piece needs nothing.
            assert!(s.keep_blocks(0, &[true]).is_err());
            s.keep_blocks(1, &[true, true, false, true]).unwrap();
        }
    }
}

#[test]
fn hybrid_pieces_must_pass_both_hashes() {
    let src = tempfile::tempdir().unwrap();
    let meta = make(src.path(), Version::Hybrid);
    assert_eq!(meta.version(), Version::Hybrid);
    let data = stream(&meta, src.path());
    // Both right: every piece passes.
    let dl = tempfile::tempdir().unwrap();
    let (s, _) = Storage::open(&meta.info, meta.info_hash, opts(dl.path(), &meta)).unwrap();
    for p in 0..meta.info.num_pieces() {
        let want = if s.have(p) {
            continue;
        } else {
            WriteOutcome::Verified
        };
        assert_eq!(write_piece(&s, &meta, &data, p), want, "piece {p}");
    }
    assert!(s.verified().all());
    // A wrong SHA-1 fails piece 0 though its merkle hash is right...
    let mut v1_wrong = meta.clone();
    v1_wrong.info.pieces[0].0[0] ^= 1;
    let dl = tempfile::tempdir().unwrap();
    let (s, _) = Storage::open(&v1_wrong.info, meta.info_hash, opts(dl.path(), &meta)).unwrap();
    assert_eq!(write_piece(&s, &meta, &data, 0), WriteOutcome::HashFailed);
    assert_eq!(write_piece(&s, &meta, &data, 1), WriteOutcome::Verified);
    // ...and a wrong piece-layer entry fails it though its SHA-1 is right.
    let mut v2_wrong = meta.clone();
    let root = *meta.info.pieces_root(0).unwrap();
    v2_wrong.piece_layers.get_mut(&root).unwrap()[0].0[0] ^= 1;
    let dl = tempfile::tempdir().unwrap();
    let (s, _) = Storage::open(&meta.info, meta.info_hash, opts(dl.path(), &v2_wrong)).unwrap();
    assert_eq!(write_piece(&s, &meta, &data, 0), WriteOutcome::HashFailed);
    assert_eq!(write_piece(&s, &meta, &data, 1), WriteOutcome::Verified);
}

#[test]
fn recheck_and_verify_use_the_merkle_hashes() {
    let src = tempfile::tempdir().unwrap();
    let meta = make(src.path(), Version::V2);
    let rc = RecheckOptions::default();
    let report = verify(
        &meta.info,
        meta.info_hash,
        src.path(),
        &meta.piece_layers,
        &rc,
        &RecheckProgress::default(),
    )
    .unwrap();
    assert!(report.valid.all(), "{report:?}");
    // One byte changed in c.bin's second piece.
    let c = src.path().join("data/c.bin");
    let mut bytes = fs::read(&c).unwrap();
    bytes[70_000] ^= 0xff;
    fs::write(&c, bytes).unwrap();
    let report = verify(
        &meta.info,
        meta.info_hash,
        src.path(),
        &meta.piece_layers,
        &rc,
        &RecheckProgress::default(),
    )
    .unwrap();
    let c_first = (meta
        .info
        .files
        .iter()
        .find(|f| f.path.ends_with(&["c.bin".to_string()])))
    .unwrap()
    .offset
        / PIECE as u64;
    assert_eq!(report.bad, vec![c_first as u32 + 1]);
    assert_eq!(report.valid.count(), meta.info.num_pieces() - 1);
}

#[test]
fn a_missing_piece_layer_is_a_clear_error() {
    let src = tempfile::tempdir().unwrap();
    let meta = make(src.path(), Version::V2);
    let dl = tempfile::tempdir().unwrap();
    let err = Storage::open(&meta.info, meta.info_hash, StorageOptions::new(dl.path()))
        .err()
        .unwrap();
    assert!(matches!(err, StorageError::MissingPieceLayer(ref f) if f.ends_with("a.bin")));
}
