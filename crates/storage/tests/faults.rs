//! Faults: disk full, file too large (RLIMIT_FSIZE), read-only file system, permission denied, a
//! file replaced by a folder. Each must be a clear error naming the file, never a panic, and the
//! pieces verified before stay verified.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Fixture;
use shoal_storage::{
    RecheckOptions, RecheckProgress, Startup, Storage, StorageError, StorageOptions, WriteOutcome,
};

fn fixture() -> Fixture {
    // Four files of 96 KiB: pieces of 32 KiB never straddle, so file k holds pieces 3k..3k+3.
    Fixture::new("ft", &[(98_304, false); 4], 32_768, 5)
}

/// Write every block of `piece`; the first error, if any.
fn write_piece(f: &Fixture, s: &Storage, piece: u32) -> Result<WriteOutcome, StorageError> {
    let mut last = WriteOutcome::Stored;
    for (o, b) in f.blocks(piece) {
        last = s.write_block(piece, o, &b)?;
    }
    Ok(last)
}

/// Download pieces `0..pre`, then go on until an error, which must pass `check`; the first
/// pieces must stay verified.
fn expect_error_keeps_verified(
    save: &Path,
    pre: u32,
    check: impl Fn(&StorageError) -> bool,
) -> Option<StorageError> {
    let f = fixture();
    let (s, _) = Storage::open(&f.info, f.info_hash, StorageOptions::new(save)).unwrap();
    for p in 0..pre {
        assert_eq!(write_piece(&f, &s, p).unwrap(), WriteOutcome::Verified);
    }
    let mut err = None;
    for p in pre..12 {
        if let Err(e) = write_piece(&f, &s, p) {
            err = Some(e);
            break;
        }
    }
    let e = err?;
    assert!(check(&e), "unexpected error: {e}");
    for p in 0..pre {
        assert!(s.have(p), "piece {p} lost after an error");
    }
    // Resume data can still be written, and vouches for those pieces.
    if s.flush_resume().is_ok() {
        drop(s);
        let (again, _) = Storage::open(&f.info, f.info_hash, StorageOptions::new(save)).unwrap();
        for p in 0..pre {
            assert!(again.have(p), "piece {p} not in resume data");
        }
    }
    Some(e)
}

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_fs) = Tmpfs::mount(dir.path(), "200k") else {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root); see file_too_large");
        return;
    };
    let e = expect_error_keeps_verified(
        dir.path(),
        3,
        |e| matches!(e, StorageError::DiskFull { path } if path.starts_with(dir.path().join("ft"))),
    )
    .expect("a 200 KiB file system must fill up");
    assert!(e.to_string().contains("disk full"), "{e}");
}

#[test]
fn read_only_file_system_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_fs) = Tmpfs::mount(dir.path(), "4m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let f = fixture();
    {
        let (s, _) = Storage::open(&f.info, f.info_hash, StorageOptions::new(dir.path())).unwrap();
        for p in 0..3 {
            write_piece(&f, &s, p).unwrap();
        }
        s.close().unwrap();
    }
    let remount = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(remount.success());
    let (s, startup) =
        Storage::open(&f.info, f.info_hash, StorageOptions::new(dir.path())).unwrap();
    assert_eq!(startup, Startup::Resumed { verified: 3 });
    match write_piece(&f, &s, 4) {
        Err(StorageError::ReadOnlyFileSystem { path }) => {
            assert_eq!(path, dir.path().join("ft/f1"))
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(s.have(0) && s.have(2));
}

/// RLIMIT_FSIZE gives EFBIG: runs in a child process (`ulimit -f`, SIGXFSZ ignored so the write
/// fails instead of killing the process). Works without root.
#[test]
fn file_too_large_is_a_clear_error() {
    if let Ok(dir) = std::env::var("SHOAL_FSIZE_WORKER") {
        let e = expect_error_keeps_verified(
            Path::new(&dir),
            2,
            |e| matches!(e, StorageError::FileTooLarge { path } if path.ends_with("ft/f0")),
        )
        .expect("the file size limit must be hit");
        println!("ERROR {e}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // 128 blocks of 512 bytes = 64 KiB: file 0's first two pieces fit, its third does not.
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"trap "" XFSZ; ulimit -f 128; exec "$0" --exact file_too_large_is_a_clear_error --nocapture --test-threads=1"#)
        .arg(&exe)
        .env("SHOAL_FSIZE_WORKER", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "worker failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ERROR file too large"), "{stdout}");
    assert!(stdout.contains("ft/f0"), "{stdout}");
}

#[test]
fn permission_denied_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
    // Root (CAP_DAC_OVERRIDE) ignores permission bits: nothing to test then.
    if std::fs::write(locked.join("probe"), b"x").is_ok() {
        eprintln!("skipped: running with privileges that ignore permission bits (root)");
        return;
    }
    let f = fixture();
    let (s, _) = Storage::open(&f.info, f.info_hash, StorageOptions::new(&locked)).unwrap();
    match write_piece(&f, &s, 0) {
        Err(StorageError::PermissionDenied { path }) => assert!(path.starts_with(&locked)),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn file_replaced_by_a_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture();
    {
        let (s, _) = Storage::open(&f.info, f.info_hash, StorageOptions::new(dir.path())).unwrap();
        for p in 0..12 {
            write_piece(&f, &s, p).unwrap();
        }
        s.close().unwrap();
    }
    let victim = dir.path().join("ft/f2");
    std::fs::remove_file(&victim).unwrap();
    std::fs::create_dir(&victim).unwrap();
    let (s, startup) =
        Storage::open(&f.info, f.info_hash, StorageOptions::new(dir.path())).unwrap();
    assert!(matches!(
        startup,
        Startup::NeedsRecheck { warning: Some(_) }
    ));
    let report = s
        .recheck(&RecheckOptions::default(), &RecheckProgress::default())
        .unwrap();
    // The folder holds none of the file's data: its pieces are missing, not an error.
    assert_eq!(report.missing, vec![6, 7, 8]);
    assert_eq!(report.valid.count(), 9);
    match write_piece(&f, &s, 6) {
        Err(e @ StorageError::NotAFile { .. }) => {
            assert!(e.to_string().contains("ft/f2"), "{e}");
        }
        other => panic!("unexpected {other:?}"),
    }
    match s.read_block(6, 0, 100) {
        Err(StorageError::DataMissing { path }) => assert_eq!(path, victim),
        other => panic!("unexpected {other:?}"),
    }
    // Verified pieces are untouched and resume data still flushes.
    assert_eq!(s.verified().count(), 9);
    s.close().unwrap();
    let (_, startup) =
        Storage::open(&f.info, f.info_hash, StorageOptions::new(dir.path())).unwrap();
    assert_eq!(startup, Startup::Resumed { verified: 9 });
}
