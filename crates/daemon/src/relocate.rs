//! Moving a torrent's files to a new save folder (Transmission's `torrent-set-location` with
//! `move`, `PATCH /api/v1/torrents/{id}` with `save_path` and `move_data`).
//!
//! Only the torrent's own files move; other files in its folders stay, and so do the folders
//! holding them. The move is all or nothing: every file is first linked (same file system) or
//! copied, fsynced, with its modification time kept (the resume data checks it) to the new
//! place; only when all are there are the old names removed, then the folders that left empty.
//! A failure on the way removes what was made at the destination, and the torrent stays where
//! it was. A file already at the destination is never overwritten: the move is refused before
//! anything is touched (and a hard link or a `create_new` open refuses it again should one
//! appear meanwhile).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use shoal_metainfo::Metainfo;

/// Moves the files of `meta` that exist under `from` to the same relative places under `to`.
pub fn move_files(meta: &Metainfo, from: &Path, to: &Path) -> Result<(), String> {
    let files: Vec<PathBuf> = meta
        .info
        .files
        .iter()
        .filter(|f| !f.is_pad())
        .map(|f| f.relative_path())
        .collect();
    move_paths(from, to, &files)
}

/// Moves the files at the relative paths `files` that exist under `from` to `to` (see the
/// module's documentation for the guarantees).
pub fn move_paths(from: &Path, to: &Path, files: &[PathBuf]) -> Result<(), String> {
    if same_folder(from, to) {
        return Ok(());
    }
    let present: Vec<&PathBuf> = files
        .iter()
        .filter(|rel| {
            std::fs::symlink_metadata(from.join(rel)).is_ok_and(|m| m.file_type().is_file())
        })
        .collect();
    for rel in &present {
        let dest = to.join(rel);
        if std::fs::symlink_metadata(&dest).is_ok() {
            return Err(format!(
                "{} already exists; nothing was moved (shoal never overwrites a file)",
                dest.display()
            ));
        }
    }
    let mut made = Made::default();
    let result = place_all(from, to, &present, &mut made);
    if let Err(e) = result {
        made.undo();
        return Err(e);
    }
    // Every file is at its new place: the old names go, then the folders they leave empty.
    let mut dirs = BTreeSet::new();
    for rel in &present {
        let src = from.join(rel);
        let _ = std::fs::remove_file(&src);
        let mut dir = src.parent();
        while let Some(d) = dir {
            if d == from || !d.starts_with(from) {
                break;
            }
            dirs.insert(d.to_path_buf());
            dir = d.parent();
        }
    }
    // Deepest first; `remove_dir` fails on a folder that is not empty, which is the point.
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
    Ok(())
}

fn same_folder(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// What a move made at the destination, to undo it on failure.
#[derive(Default)]
struct Made {
    files: Vec<PathBuf>,
    /// Folders created, outermost first.
    dirs: Vec<PathBuf>,
}

impl Made {
    fn undo(&self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }

    /// Creates `dir` and its missing parents, remembering which were new.
    fn create_dir_all(&mut self, dir: &Path) -> Result<(), String> {
        let missing: Vec<&Path> = dir
            .ancestors()
            .take_while(|d| std::fs::symlink_metadata(d).is_err())
            .collect();
        for d in missing.into_iter().rev() {
            match std::fs::create_dir(d) {
                Ok(()) => self.dirs.push(d.to_path_buf()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot create {}: {e}", d.display())),
            }
        }
        Ok(())
    }
}

fn place_all(from: &Path, to: &Path, present: &[&PathBuf], made: &mut Made) -> Result<(), String> {
    let mut dest_dirs = BTreeSet::new();
    for rel in present {
        let (src, dest) = (from.join(rel), to.join(rel));
        if let Some(parent) = dest.parent() {
            made.create_dir_all(parent)?;
            dest_dirs.insert(parent.to_path_buf());
        }
        place(&src, &dest)?;
        made.files.push(dest);
    }
    // The new names are durable before the old ones go.
    for d in dest_dirs {
        if let Ok(f) = std::fs::File::open(&d) {
            let _ = f.sync_all();
        }
    }
    Ok(())
}

/// Gives `src`'s data the name `dest` as well: a hard link on the same file system, else a
/// copy (fsynced, with `src`'s modification time). Never replaces an existing `dest`.
fn place(src: &Path, dest: &Path) -> Result<(), String> {
    match std::fs::hard_link(src, dest) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(format!(
                "{} already exists; nothing was moved (shoal never overwrites a file)",
                dest.display()
            ))
        }
        // Another file system (EXDEV), or one without hard links: copy.
        Err(_) => {}
    }
    copy(src, dest).map_err(|e| {
        let _ = std::fs::remove_file(dest);
        format!("cannot copy {} to {}: {e}", src.display(), dest.display())
    })
}

fn copy(src: &Path, dest: &Path) -> std::io::Result<()> {
    let mut input = std::fs::File::open(src)?;
    let modified = input.metadata()?.modified()?;
    let mut output = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)?;
    std::io::copy(&mut input, &mut output)?;
    output.set_modified(modified)?;
    output.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn files() -> Vec<PathBuf> {
        vec![
            "album/a.bin".into(),
            "album/sub/b.bin".into(),
            "album/never-downloaded.bin".into(),
        ]
    }

    #[test]
    fn moves_own_files_keeps_times_and_leaves_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("old"), dir.path().join("new/deeper"));
        write(&from.join("album/a.bin"), b"aaa");
        write(&from.join("album/sub/b.bin"), b"bbbb");
        // Not the torrent's: stays, and so does its folder.
        write(&from.join("album/notes.txt"), b"mine");
        let mtime = std::fs::metadata(from.join("album/a.bin"))
            .unwrap()
            .modified()
            .unwrap();
        move_paths(&from, &to, &files()).unwrap();
        assert_eq!(std::fs::read(to.join("album/a.bin")).unwrap(), b"aaa");
        assert_eq!(std::fs::read(to.join("album/sub/b.bin")).unwrap(), b"bbbb");
        let moved_mtime = std::fs::metadata(to.join("album/a.bin"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(moved_mtime, mtime);
        assert!(!from.join("album/a.bin").exists());
        assert!(!from.join("album/sub").exists(), "its emptied folder goes");
        assert_eq!(
            std::fs::read(from.join("album/notes.txt")).unwrap(),
            b"mine"
        );
        assert!(from.exists(), "the old save folder itself stays");
    }

    #[test]
    fn refuses_to_overwrite_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("old"), dir.path().join("new"));
        write(&from.join("album/a.bin"), b"aaa");
        write(&from.join("album/sub/b.bin"), b"bbbb");
        write(&to.join("album/sub/b.bin"), b"someone else's");
        let e = move_paths(&from, &to, &files()).unwrap_err();
        assert!(e.contains("already exists") && e.contains("b.bin"), "{e}");
        assert_eq!(std::fs::read(from.join("album/a.bin")).unwrap(), b"aaa");
        assert_eq!(
            std::fs::read(from.join("album/sub/b.bin")).unwrap(),
            b"bbbb"
        );
        assert_eq!(
            std::fs::read(to.join("album/sub/b.bin")).unwrap(),
            b"someone else's"
        );
        assert!(!to.join("album/a.bin").exists());
    }

    #[test]
    fn a_failure_half_way_undoes_what_was_made() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("old"), dir.path().join("new"));
        write(&from.join("album/a.bin"), b"aaa");
        write(&from.join("album/sub/b.bin"), b"bbbb");
        // A file where the second file's folder must go: its creation fails.
        write(&to.join("album/sub"), b"in the way");
        let e = move_paths(&from, &to, &files()).unwrap_err();
        assert!(e.contains("sub"), "{e}");
        assert!(!to.join("album/a.bin").exists(), "undone");
        assert_eq!(std::fs::read(from.join("album/a.bin")).unwrap(), b"aaa");
        assert_eq!(
            std::fs::read(from.join("album/sub/b.bin")).unwrap(),
            b"bbbb"
        );
    }

    #[test]
    fn the_same_folder_is_no_move() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("album/a.bin"), b"aaa");
        move_paths(dir.path(), dir.path(), &files()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("album/a.bin")).unwrap(),
            b"aaa"
        );
    }

    #[test]
    fn copies_keep_the_time_and_refuse_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dest) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&src, b"data").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(&src)
            .unwrap()
            .set_modified(old)
            .unwrap();
        copy(&src, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"data");
        assert_eq!(std::fs::metadata(&dest).unwrap().modified().unwrap(), old);
        assert!(copy(&src, &dest).is_err());
    }
}
