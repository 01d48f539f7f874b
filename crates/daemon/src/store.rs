//! The daemon's torrents on disk, so a restart (even after SIGKILL) brings every one back.
//!
//! Under the state folder (`$XDG_STATE_HOME/shoal/daemon` by default):
//! * `torrents/<info-hash>.torrent` — the metainfo (for a magnet, written once fetched);
//! * `torrents/<info-hash>.json` — the entry: its id, save path, paused or not, magnet link;
//! * `resume/<info-hash>.shoal-resume` — each torrent's resume data (written by storage);
//! * `token` — the API token (mode 0600);
//! * `session.json` — session settings changed at run time (`session-set`, `PATCH
//!   /api/v1/session`), config keys that win over the config file at the next start.
//!
//! Every file is written atomically (temp file, fsync, rename): a crash leaves the old or the
//! new version, never half of one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shoal_core::Id20;

use crate::config::DaemonConfig;
use crate::DaemonError;

/// What the daemon keeps about one torrent besides its metainfo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecord {
    /// The short number Transmission clients use (stable across restarts).
    pub id: u64,
    /// The info-hash, hex.
    pub info_hash: String,
    /// The folder that holds the torrent's file or folder.
    pub save_path: PathBuf,
    /// Stopped by the user.
    pub paused: bool,
    /// When it was added (Unix seconds).
    pub added: u64,
    /// The magnet link it was added from, while its metadata is not yet in.
    #[serde(default)]
    pub magnet: Option<String>,
    /// Per file: false to skip it (`None`: all).
    #[serde(default)]
    pub wanted_files: Option<Vec<bool>>,
    /// The torrent's own download cap, bytes per second (`None`: only the session's).
    #[serde(default)]
    pub download_limit: Option<u64>,
    /// The torrent's own upload cap, bytes per second (`None`: only the session's).
    #[serde(default)]
    pub upload_limit: Option<u64>,
    /// Pieces fetched in order (streaming) instead of rarest first.
    #[serde(default)]
    pub sequential: bool,
}

/// The state folder's layout and its reads and writes.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store under `root` (created if missing).
    pub fn open(root: &Path) -> Result<Store, DaemonError> {
        for sub in ["torrents", "resume"] {
            std::fs::create_dir_all(root.join(sub)).map_err(|e| {
                DaemonError::State(format!("cannot create {}: {e}", root.join(sub).display()))
            })?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// The state folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where resume data lives.
    pub fn resume_dir(&self) -> PathBuf {
        self.root.join("resume")
    }

    fn torrent_path(&self, hash: &Id20) -> PathBuf {
        self.root
            .join("torrents")
            .join(format!("{}.torrent", hash.to_hex()))
    }

    fn record_path(&self, hash: &Id20) -> PathBuf {
        self.root
            .join("torrents")
            .join(format!("{}.json", hash.to_hex()))
    }

    /// Saves a torrent's metainfo.
    pub fn save_torrent(&self, hash: &Id20, bytes: &[u8]) -> Result<(), DaemonError> {
        shoal_storage::write_atomic(&self.torrent_path(hash), bytes)
            .map_err(|e| DaemonError::State(format!("cannot save the torrent: {e}")))
    }

    /// Saves an entry.
    pub fn save_record(&self, record: &EntryRecord) -> Result<(), DaemonError> {
        let hash = Id20::from_hex(&record.info_hash)
            .map_err(|_| DaemonError::State("bad info-hash in a record".into()))?;
        let bytes =
            serde_json::to_vec_pretty(record).map_err(|e| DaemonError::State(e.to_string()))?;
        shoal_storage::write_atomic(&self.record_path(&hash), &bytes)
            .map_err(|e| DaemonError::State(format!("cannot save the torrent list: {e}")))
    }

    fn session_path(&self) -> PathBuf {
        self.root.join("session.json")
    }

    /// The session settings changed at run time (only the keys that were changed); an empty
    /// config when there are none. An unreadable file is reported in the log and ignored (the
    /// config file's settings then apply).
    pub fn load_session(&self) -> DaemonConfig {
        load_session(&self.root)
    }

    /// Saves the session settings changed at run time.
    pub fn save_session(&self, settings: &DaemonConfig) -> Result<(), DaemonError> {
        // Only the keys that were changed.
        let mut value =
            serde_json::to_value(settings).map_err(|e| DaemonError::State(e.to_string()))?;
        if let Some(o) = value.as_object_mut() {
            o.retain(|_, v| !v.is_null());
        }
        let bytes =
            serde_json::to_vec_pretty(&value).map_err(|e| DaemonError::State(e.to_string()))?;
        shoal_storage::write_atomic(&self.session_path(), &bytes).map_err(|e| {
            DaemonError::State(format!(
                "cannot save {}: {e}",
                self.session_path().display()
            ))
        })
    }

    /// Forgets a torrent (its metainfo, entry and resume data).
    pub fn remove(&self, hash: &Id20) {
        let _ = std::fs::remove_file(self.record_path(hash));
        let _ = std::fs::remove_file(self.torrent_path(hash));
        let _ = std::fs::remove_file(
            self.resume_dir()
                .join(format!("{}.shoal-resume", hash.to_hex())),
        );
    }

    /// Every saved entry with its metainfo bytes (`None` while a magnet's are missing). An
    /// unreadable entry is skipped with a warning (it never stops the daemon).
    pub fn load(&self) -> Vec<(EntryRecord, Option<Vec<u8>>)> {
        let Ok(dir) = std::fs::read_dir(self.root.join("torrents")) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let record: EntryRecord = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("skipping {}: {e}", path.display());
                    continue;
                }
            };
            let Ok(hash) = Id20::from_hex(&record.info_hash) else {
                tracing::warn!("skipping {}: bad info-hash", path.display());
                continue;
            };
            let torrent = std::fs::read(self.torrent_path(&hash)).ok();
            out.push((record, torrent));
        }
        out.sort_by_key(|(r, _)| r.id);
        out
    }

    /// The API token: read from `token`, or made (32 random bytes, hex) and written with mode
    /// 0600 on first start.
    pub fn token(&self) -> Result<String, DaemonError> {
        let path = self.root.join("token");
        if let Ok(t) = std::fs::read_to_string(&path) {
            let t = t.trim().to_string();
            if t.len() >= 16 {
                return Ok(t);
            }
        }
        let token: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        write_private(&path, token.as_bytes())
            .map_err(|e| DaemonError::State(format!("cannot write {}: {e}", path.display())))?;
        Ok(token)
    }
}

/// The session settings changed at run time under the state folder `root` (see
/// [`Store::load_session`]); readable before the store is opened, for `--print-config`.
pub fn load_session(root: &Path) -> DaemonConfig {
    let path = root.join("session.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!("ignoring {}: {e}", path.display());
            DaemonConfig::default()
        }),
        Err(_) => DaemonConfig::default(),
    }
}

/// Writes a file only its owner can read (created with mode 0600, then renamed into place).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hash = Id20([7; 20]);
        let rec = EntryRecord {
            id: 3,
            info_hash: hash.to_hex(),
            save_path: "/data".into(),
            paused: true,
            added: 1,
            magnet: None,
            wanted_files: Some(vec![true, false]),
            download_limit: Some(262_144),
            upload_limit: None,
            sequential: true,
        };
        store.save_record(&rec).unwrap();
        store.save_torrent(&hash, b"d4:infod...").unwrap();
        std::fs::write(dir.path().join("torrents/garbage.json"), b"{not json").unwrap();
        let loaded = store.load();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].0, rec);
        assert_eq!(loaded[0].1.as_deref(), Some(&b"d4:infod..."[..]));
        store.remove(&hash);
        assert!(store.load().is_empty());
    }

    #[test]
    fn old_records_read_with_defaults_and_session_settings_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hash = Id20([9; 20]);
        // A record written before the limits and sequential mode existed.
        std::fs::write(
            dir.path().join(format!("torrents/{}.json", hash.to_hex())),
            format!(
                r#"{{"id":1,"info_hash":"{}","save_path":"/d","paused":false,"added":1}}"#,
                hash.to_hex()
            ),
        )
        .unwrap();
        let loaded = store.load();
        assert_eq!(loaded[0].0.download_limit, None);
        assert!(!loaded[0].0.sequential);
        assert_eq!(store.load_session(), DaemonConfig::default());
        let settings = DaemonConfig {
            max_download_rate: Some("1000".into()),
            seed_ratio_limit: Some(2.0),
            ..Default::default()
        };
        store.save_session(&settings).unwrap();
        assert_eq!(store.load_session(), settings);
        std::fs::write(dir.path().join("session.json"), b"{oops").unwrap();
        assert_eq!(store.load_session(), DaemonConfig::default());
    }

    #[test]
    fn token_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = store.token().unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(store.token().unwrap(), t);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("token"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
