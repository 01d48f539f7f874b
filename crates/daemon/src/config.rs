//! The daemon's configuration: a TOML file (`$XDG_CONFIG_HOME/shoal/config.toml` by default),
//! every key optional, command-line flags over it, defaults under both.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::DaemonError;

/// Every daemon option. In the file each key is optional; [`DaemonConfig::merged`] fills what
/// neither the flags nor the file set with [`DaemonConfig::default`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Address of the HTTP API.
    pub api: Option<SocketAddr>,
    /// The state folder (torrents, resume data, token).
    pub state: Option<PathBuf>,
    /// Where torrents go unless added with a path of their own.
    pub download_dir: Option<PathBuf>,
    /// A folder watched for new .torrent files (added, then renamed `.added`).
    pub watch: Option<PathBuf>,
    /// Address peers connect to.
    pub listen: Option<SocketAddr>,
    /// Local addresses of every socket (at most one per family), failing closed.
    pub bind: Option<Vec<IpAddr>>,
    /// Session upload cap, e.g. `"5MiB"` (per second).
    pub max_upload_rate: Option<String>,
    /// Session download cap.
    pub max_download_rate: Option<String>,
    /// Run the Mainline DHT.
    pub dht: Option<bool>,
    /// DHT bootstrap nodes (`host:port`).
    pub dht_bootstrap: Option<Vec<String>>,
    /// MSE/PE: `prefer`, `require` or `disable`.
    pub encryption: Option<String>,
    /// uTP for peers: `off`, `on`, `prefer` or `only` (as `shoal download --utp`).
    pub utp: Option<String>,
    /// Torrents downloading at once; more wait queued (0: no limit).
    pub max_active_downloads: Option<usize>,
    /// Torrents seeding at once; more wait queued (0: no limit).
    pub max_active_seeds: Option<usize>,
    /// Stop seeding a torrent once it uploaded this many times its size (0: never).
    pub seed_ratio_limit: Option<f64>,
    /// Stop seeding a torrent after this many minutes without uploading (0: never).
    pub seed_idle_minutes: Option<u64>,
    /// Super-seed (BEP 16) as an initial seeder: `shoal seed`, `shoal share`, and torrents the
    /// daemon starts complete.
    pub super_seed: Option<bool>,
    /// Peers of all torrents together, split evenly among the active ones (0: no global cap;
    /// each torrent still has at most 50).
    pub max_connections: Option<usize>,
    /// Most peers of one torrent (default 50, Transmission's `peer-limit-per-torrent`); its
    /// share of `max_connections` may be smaller.
    pub max_peers_per_torrent: Option<usize>,
    /// Seconds a complete torrent stays awake with no peer before it sleeps (no task, no open
    /// file; an incoming peer wakes it); 0: never sleep. Default 60.
    pub sleep_after_secs: Option<u64>,
}

/// Defaults, as `--print-config` shows them.
pub const DEFAULT_API: &str = "127.0.0.1:9091";
/// Peers' port by default (Transmission's and libtorrent's usual one).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:6881";
/// Downloads at once by default (Transmission's `download-queue-size`).
pub const DEFAULT_ACTIVE_DOWNLOADS: usize = 5;
/// Peers of all torrents together by default (Transmission's `peer-limit-global`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 200;
/// Peers of one torrent by default (Transmission's `peer-limit-per-torrent`).
pub const DEFAULT_MAX_PEERS_PER_TORRENT: usize = 50;
/// Seconds an idle complete torrent stays awake by default (see `shoal_engine::SLEEP_AFTER`).
pub const DEFAULT_SLEEP_AFTER_SECS: u64 = shoal_engine::SLEEP_AFTER.as_secs();

impl DaemonConfig {
    /// Reads a config file; a missing default file is an empty config, a missing named one an
    /// error.
    pub fn load(path: &Path, must_exist: bool) -> Result<DaemonConfig, DaemonError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                DaemonError::BadRequest(format!("{}: {}", path.display(), e.message()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                Ok(DaemonConfig::default())
            }
            Err(e) => Err(DaemonError::BadRequest(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// `over`'s keys where set, else `self`'s; then every unset key gets its default.
    pub fn merged(self, over: DaemonConfig, state_default: PathBuf, cwd: PathBuf) -> DaemonConfig {
        macro_rules! pick {
            ($f:ident) => {
                over.$f.or(self.$f)
            };
        }
        DaemonConfig {
            api: Some(pick!(api).unwrap_or_else(|| DEFAULT_API.parse().expect("valid"))),
            state: Some(pick!(state).unwrap_or(state_default)),
            download_dir: Some(pick!(download_dir).unwrap_or(cwd)),
            watch: pick!(watch),
            listen: Some(pick!(listen).unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid"))),
            bind: Some(pick!(bind).unwrap_or_default()),
            max_upload_rate: pick!(max_upload_rate),
            max_download_rate: pick!(max_download_rate),
            dht: Some(pick!(dht).unwrap_or(true)),
            dht_bootstrap: Some(pick!(dht_bootstrap).unwrap_or_default()),
            encryption: Some(pick!(encryption).unwrap_or_else(|| "prefer".into())),
            utp: Some(pick!(utp).unwrap_or_else(|| "on".into())),
            max_active_downloads: Some(
                pick!(max_active_downloads).unwrap_or(DEFAULT_ACTIVE_DOWNLOADS),
            ),
            max_active_seeds: Some(pick!(max_active_seeds).unwrap_or(0)),
            seed_ratio_limit: Some(pick!(seed_ratio_limit).unwrap_or(0.0)),
            seed_idle_minutes: Some(pick!(seed_idle_minutes).unwrap_or(0)),
            super_seed: Some(pick!(super_seed).unwrap_or(false)),
            max_connections: Some(pick!(max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS)),
            max_peers_per_torrent: Some(
                pick!(max_peers_per_torrent).unwrap_or(DEFAULT_MAX_PEERS_PER_TORRENT),
            ),
            sleep_after_secs: Some(pick!(sleep_after_secs).unwrap_or(DEFAULT_SLEEP_AFTER_SECS)),
        }
    }

    /// `over`'s keys where set, else `self`'s, without defaults (for layering the run-time
    /// settings of `session.json` over the config file).
    pub fn layered(self, over: DaemonConfig) -> DaemonConfig {
        macro_rules! pick {
            ($($f:ident),*) => {
                DaemonConfig { $($f: over.$f.or(self.$f)),* }
            };
        }
        pick!(
            api,
            state,
            download_dir,
            watch,
            listen,
            bind,
            max_upload_rate,
            max_download_rate,
            dht,
            dht_bootstrap,
            encryption,
            utp,
            max_active_downloads,
            max_active_seeds,
            seed_ratio_limit,
            seed_idle_minutes,
            super_seed,
            max_connections,
            max_peers_per_torrent,
            sleep_after_secs
        )
    }

    /// As TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let file: DaemonConfig = toml::from_str(
            "api = \"127.0.0.1:7000\"\nmax_active_downloads = 2\nwatch = \"/w\"\ndht = false\n",
        )
        .unwrap();
        let flags = DaemonConfig {
            api: Some("127.0.0.1:8000".parse().unwrap()),
            ..Default::default()
        };
        let m = file.merged(flags, "/state".into(), "/cwd".into());
        assert_eq!(m.api, Some("127.0.0.1:8000".parse().unwrap()));
        assert_eq!(m.max_active_downloads, Some(2));
        assert_eq!(m.watch.as_deref(), Some(Path::new("/w")));
        assert_eq!(m.dht, Some(false));
        assert_eq!(m.state.as_deref(), Some(Path::new("/state")));
        assert_eq!(m.download_dir.as_deref(), Some(Path::new("/cwd")));
        assert_eq!(m.max_active_seeds, Some(0));
        // What --print-config shows reads back the same.
        let again: DaemonConfig = toml::from_str(&m.to_toml()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "apii = 1\n").unwrap();
        let e = DaemonConfig::load(&p, true).unwrap_err().to_string();
        assert!(e.contains("apii"), "{e}");
        std::fs::write(&p, "api = \"not an address\"\n").unwrap();
        assert!(DaemonConfig::load(&p, true).is_err());
        assert_eq!(
            DaemonConfig::load(&dir.path().join("none.toml"), false).unwrap(),
            DaemonConfig::default()
        );
        assert!(DaemonConfig::load(&dir.path().join("none.toml"), true).is_err());
    }
}
