//! The watch folder: .torrent files dropped into it are added, then renamed `<name>.added`
//! (as Transmission does), so each is added once and the user sees which were taken.
//!
//! inotify (`IN_CLOSE_WRITE`, `IN_MOVED_TO`) wakes the scan at once; the folder is also scanned
//! every 2 s, which is all there is where inotify does not work (network file systems, some
//! containers). A file that is not a valid torrent is reported in the log once and left as it is
//! (it may still be being written: it is tried again when its modification time changes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::manager::{AddSource, Manager};
use crate::DaemonError;

/// The longest wait between two scans.
const SCAN_INTERVAL: Duration = Duration::from_secs(2);
/// Larger files are not torrents we would accept anyway.
const MAX_TORRENT: u64 = 64 << 20;

/// Starts watching `dir`, until the process ends or the returned task is aborted.
pub fn spawn(manager: Arc<Manager>, dir: PathBuf) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    watch_inotify(&dir, tx);
    tokio::spawn(async move {
        let mut failed: HashMap<PathBuf, Option<SystemTime>> = HashMap::new();
        loop {
            // Reading the folder and the files, and adding (fsynced writes), off the workers.
            let (m, d) = (manager.clone(), dir.clone());
            failed = tokio::task::spawn_blocking(move || {
                scan(&m, &d, &mut failed);
                failed
            })
            .await
            .unwrap_or_default();
            tokio::select! {
                _ = rx.recv() => {}
                _ = tokio::time::sleep(SCAN_INTERVAL) => {}
            }
        }
    })
}

/// Adds every new .torrent file in `dir`.
fn scan(manager: &Arc<Manager>, dir: &Path, failed: &mut HashMap<PathBuf, Option<SystemTime>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_torrent = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("torrent"));
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !is_torrent || hidden || !meta.is_file() {
            continue;
        }
        let mtime = meta.modified().ok();
        if failed.get(&path) == Some(&mtime) {
            continue;
        }
        let result = if meta.len() > MAX_TORRENT {
            Err(DaemonError::BadRequest("larger than 64 MiB".into()))
        } else {
            std::fs::read(&path)
                .map_err(|e| DaemonError::BadRequest(e.to_string()))
                .and_then(|bytes| manager.add(AddSource::Torrent(bytes), None, false))
        };
        match result {
            Ok(_) | Err(DaemonError::Duplicate(_)) => {
                failed.remove(&path);
                let mut done = path.clone().into_os_string();
                done.push(".added");
                if let Err(e) = std::fs::rename(&path, &done) {
                    tracing::warn!("watch folder: cannot rename {}: {e}", path.display());
                    failed.insert(path, mtime);
                }
            }
            Err(e) => {
                tracing::warn!("watch folder: {} not added: {e}", path.display());
                failed.insert(path, mtime);
            }
        }
    }
}

/// Wakes the scan through inotify when it is available (Linux); nothing otherwise.
#[cfg(target_os = "linux")]
fn watch_inotify(dir: &Path, tx: tokio::sync::mpsc::Sender<()>) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Ok(cdir) = CString::new(dir.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: plain system calls on a descriptor this function owns; the buffer outlives the
    // reads into it.
    unsafe {
        let fd = libc::inotify_init1(libc::IN_CLOEXEC);
        if fd < 0 {
            return;
        }
        if libc::inotify_add_watch(fd, cdir.as_ptr(), libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO) < 0
        {
            libc::close(fd);
            return;
        }
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 || tx.is_closed() {
                    libc::close(fd);
                    return;
                }
                let _ = tx.try_send(());
            }
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn watch_inotify(_dir: &Path, _tx: tokio::sync::mpsc::Sender<()>) {}
