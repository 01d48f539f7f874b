//! Resume data that cannot be trusted (random bytes, truncated, another torrent's, unknown
//! version, files changed since) is ignored with a warning and a recheck happens; good resume data
//! is trusted.

mod common;

use std::fs;
use std::path::Path;

use common::Fixture;
use rand::{Rng, SeedableRng};
use shoal_core::Id20;
use shoal_storage::{
    RecheckOptions, RecheckProgress, ResumeData, ResumeLocation, ResumeWarning, Startup, Storage,
    StorageOptions,
};

fn fixture() -> Fixture {
    Fixture::new(
        "rs",
        &[(50_000, false), (0, false), (80_000, false)],
        16_384,
        3,
    )
}

/// A complete download with resume data written, in a fresh folder.
fn complete(f: &Fixture) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Storage::open(&f.info, f.info_hash, StorageOptions::new(dir.path())).unwrap();
    for p in 0..f.num_pieces() {
        for (o, b) in f.blocks(p) {
            s.write_block(p, o, &b).unwrap();
        }
    }
    s.close().unwrap();
    dir
}

fn resume_file(dir: &Path) -> std::path::PathBuf {
    dir.join(".rs.shoal-resume")
}

/// Open, expect a warning matching `want`, recheck, and return the number of valid pieces.
fn open_expect_warning(f: &Fixture, dir: &Path, want: impl Fn(&ResumeWarning) -> bool) -> u32 {
    let (s, startup) = Storage::open(&f.info, f.info_hash, StorageOptions::new(dir)).unwrap();
    match &startup {
        Startup::NeedsRecheck { warning: Some(w) } => assert!(want(w), "unexpected warning {w}"),
        other => panic!("expected a warning, got {other:?}"),
    }
    // Nothing from the ignored file is trusted before the recheck.
    assert_eq!(s.verified().count(), 0);
    let report = s
        .recheck(&RecheckOptions::default(), &RecheckProgress::default())
        .unwrap();
    report.valid.count()
}

#[test]
fn good_resume_data_is_trusted() {
    let f = fixture();
    let dir = complete(&f);
    let (_, startup) =
        Storage::open(&f.info, f.info_hash, StorageOptions::new(dir.path())).unwrap();
    assert_eq!(
        startup,
        Startup::Resumed {
            verified: f.num_pieces()
        }
    );
}

#[test]
fn random_bytes_are_ignored() {
    let f = fixture();
    let dir = complete(&f);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let len = fs::metadata(resume_file(dir.path())).unwrap().len() as usize;
    for round in 0..20 {
        let mut junk = vec![0u8; rng.random_range(0..len * 2)];
        rng.fill(&mut junk[..]);
        if round % 2 == 0 && junk.len() > 8 {
            // Keep the magic so the checksum is what catches it.
            junk[..8].copy_from_slice(b"SHOALRSM");
        }
        fs::write(resume_file(dir.path()), &junk).unwrap();
        let valid = open_expect_warning(&f, dir.path(), |w| {
            matches!(w, ResumeWarning::Corrupt { .. })
        });
        assert_eq!(valid, f.num_pieces());
    }
}

#[test]
fn truncated_is_ignored() {
    let f = fixture();
    let dir = complete(&f);
    let bytes = fs::read(resume_file(dir.path())).unwrap();
    for cut in [0, 1, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        fs::write(resume_file(dir.path()), &bytes[..cut]).unwrap();
        let valid = open_expect_warning(&f, dir.path(), |w| {
            matches!(w, ResumeWarning::Corrupt { .. })
        });
        assert_eq!(valid, f.num_pieces());
    }
}

#[test]
fn other_info_hash_and_unknown_version_are_ignored() {
    let f = fixture();
    let dir = complete(&f);
    let bytes = fs::read(resume_file(dir.path())).unwrap();
    let mut data = ResumeData::decode(&bytes, &f.info_hash, Path::new("x")).unwrap();
    data.info_hash = Id20([0xEE; 20]);
    fs::write(resume_file(dir.path()), data.encode()).unwrap();
    let valid = open_expect_warning(&f, dir.path(), |w| {
        matches!(w, ResumeWarning::ForeignInfoHash { .. })
    });
    assert_eq!(valid, f.num_pieces());

    // A well-formed file of a future version: refused, not misread.
    data.info_hash = f.info_hash;
    let mut future = data.encode();
    future.truncate(future.len() - 20);
    future[8..12].copy_from_slice(&3u32.to_le_bytes());
    let sum: [u8; 20] = sha1::Digest::finalize(sha1::Digest::chain_update(
        <sha1::Sha1 as sha1::Digest>::new(),
        &future,
    ))
    .into();
    future.extend_from_slice(&sum);
    fs::write(resume_file(dir.path()), &future).unwrap();
    open_expect_warning(&f, dir.path(), |w| {
        matches!(w, ResumeWarning::UnknownVersion { version: 3, .. })
    });
}

#[test]
fn changed_files_force_a_recheck() {
    let f = fixture();
    // Size changed: a file truncated behind our back; its pieces are missing after the recheck.
    let dir = complete(&f);
    let f2 = dir.path().join("rs/f2");
    let file = fs::OpenOptions::new().write(true).open(&f2).unwrap();
    file.set_len(40_000).unwrap();
    drop(file);
    let valid = open_expect_warning(
        &f,
        dir.path(),
        |w| matches!(w, ResumeWarning::FilesChanged { file } if file.ends_with("rs/f2")),
    );
    assert!(valid < f.num_pieces());

    // Only the mtime changed (same size, data rewritten): recheck too.
    let dir = complete(&f);
    let f0 = dir.path().join("rs/f0");
    let mut bytes = fs::read(&f0).unwrap();
    bytes[0] ^= 1;
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&f0, &bytes).unwrap();
    let valid = open_expect_warning(&f, dir.path(), |w| {
        matches!(w, ResumeWarning::FilesChanged { .. })
    });
    assert_eq!(valid, f.num_pieces() - 1);

    // A zero-length file deleted: recorded as present, now absent.
    let dir = complete(&f);
    fs::remove_file(dir.path().join("rs/f1")).unwrap();
    open_expect_warning(
        &f,
        dir.path(),
        |w| matches!(w, ResumeWarning::FilesChanged { file } if file.ends_with("rs/f1")),
    );
}

#[test]
fn state_folder_location() {
    let f = fixture();
    let data = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut opts = StorageOptions::new(data.path());
    opts.resume = ResumeLocation::StateDir(state.path().to_path_buf());
    let (s, _) = Storage::open(&f.info, f.info_hash, opts.clone()).unwrap();
    for (o, b) in f.blocks(0) {
        s.write_block(0, o, &b).unwrap();
    }
    s.close().unwrap();
    let expected = state
        .path()
        .join(format!("{}.shoal-resume", f.info_hash.to_hex()));
    assert!(expected.exists());
    assert!(!resume_file(data.path()).exists());
    let (_, startup) = Storage::open(&f.info, f.info_hash, opts).unwrap();
    assert_eq!(startup, Startup::Resumed { verified: 1 });
}

/// Rewrite the resume file as if it had been written in another boot.
fn from_another_boot(f: &Fixture, path: &Path) -> ResumeData {
    let mut data = ResumeData::decode(&fs::read(path).unwrap(), &f.info_hash, path).unwrap();
    data.boot_id = b"00000000-0000-4000-8000-000000000000".to_vec();
    shoal_storage::write_atomic(path, &data.encode()).unwrap();
    data
}

/// Overwrite `bytes` at `offset` of `file`, keeping its modification time (so the resume data's
/// stamps still match: what a lost page-cache write after a power cut looks like).
fn overwrite_keeping_mtime(file: &Path, offset: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mtime = fs::metadata(file).unwrap().modified().unwrap();
    let mut h = fs::OpenOptions::new().write(true).open(file).unwrap();
    h.seek(SeekFrom::Start(offset)).unwrap();
    h.write_all(bytes).unwrap();
    h.set_modified(mtime).unwrap();
}

/// Closing does not wait for the disk: the pieces since the last synced flush are recorded as
/// unsynced, and trusted when read back in the same boot.
#[test]
fn close_records_unsynced_pieces_trusted_in_the_same_boot() {
    let f = fixture();
    let dir = complete(&f);
    let path = resume_file(dir.path());
    let data = ResumeData::decode(&fs::read(&path).unwrap(), &f.info_hash, &path).unwrap();
    assert_eq!(data.unsynced.count(), f.num_pieces());
    assert_eq!(data.boot_id, shoal_storage::current_boot_id());
    let (s, startup) =
        Storage::open(&f.info, f.info_hash, StorageOptions::new(dir.path())).unwrap();
    assert_eq!(
        startup,
        Startup::Resumed {
            verified: f.num_pieces()
        }
    );
    // The next synced flush makes them durable: none unsynced after it.
    assert!(s.flush_resume().unwrap());
    let data = ResumeData::decode(&fs::read(&path).unwrap(), &f.info_hash, &path).unwrap();
    assert_eq!(data.unsynced.count(), 0);
    assert_eq!(data.verified.count(), f.num_pieces());
}

/// After a reboot the unsynced pieces are hashed again: one whose data never reached the disk
/// is dropped, the others (and every synced piece) are kept without reading them.
#[test]
fn after_a_reboot_unsynced_pieces_are_rechecked() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Storage::open(&f.info, f.info_hash, StorageOptions::new(dir.path())).unwrap();
    // Pieces 0 and 1 synced, the rest verified after the last synced flush.
    for p in 0..2 {
        for (o, b) in f.blocks(p) {
            s.write_block(p, o, &b).unwrap();
        }
    }
    s.flush_resume().unwrap();
    for p in 2..f.num_pieces() {
        for (o, b) in f.blocks(p) {
            s.write_block(p, o, &b).unwrap();
        }
    }
    s.close().unwrap();
    let path = resume_file(dir.path());
    let data = from_another_boot(&f, &path);
    assert!(!data.unsynced.get(0) && !data.unsynced.get(1) && data.unsynced.get(2));
    // Piece 4 (inside rs/f2, which starts at byte 50,000) "was lost"; so was piece 0, but it
    // was synced, so it is trusted (resume data never re-reads synced pieces).
    let f2 = dir.path().join("rs").join("f2");
    overwrite_keeping_mtime(&f2, 4 * 16_384 - 50_000, &[0xAA; 100]);
    let (s, startup) =
        Storage::open(&f.info, f.info_hash, StorageOptions::new(dir.path())).unwrap();
    assert_eq!(
        startup,
        Startup::Resumed {
            verified: f.num_pieces() - 1
        }
    );
    assert!(!s.have(4) && s.have(3) && s.have(5) && s.have(0));
}

/// An unsynced write (completion) is followed by a synced one at the next periodic flush, even
/// when no piece changed in between; an unsynced flush with nothing new writes nothing.
#[test]
fn a_periodic_flush_syncs_what_an_unsynced_one_left() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = Storage::open(&f.info, f.info_hash, StorageOptions::new(dir.path())).unwrap();
    for p in 0..f.num_pieces() {
        for (o, b) in f.blocks(p) {
            s.write_block(p, o, &b).unwrap();
        }
    }
    assert!(s.flush_resume_unsynced().unwrap());
    assert!(!s.flush_resume_unsynced().unwrap());
    let path = resume_file(dir.path());
    let data = ResumeData::decode(&fs::read(&path).unwrap(), &f.info_hash, &path).unwrap();
    assert_eq!(data.unsynced.count(), f.num_pieces());
    assert!(s.flush_resume_if_due(std::time::Duration::ZERO).unwrap());
    let data = ResumeData::decode(&fs::read(&path).unwrap(), &f.info_hash, &path).unwrap();
    assert_eq!(data.unsynced.count(), 0);
    assert_eq!(data.verified.count(), f.num_pieces());
    assert!(!s.flush_resume_if_due(std::time::Duration::ZERO).unwrap());
}
