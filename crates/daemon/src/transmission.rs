//! The Transmission RPC (its `docs/rpc-spec.md`) at `/transmission/rpc`, for the methods the
//! common clients use (transmission-remote, Sonarr/Radarr, Flood, tremc).
//!
//! Authentication is HTTP Basic with any user name and the daemon's token as the password. The
//! CSRF exchange is the spec's: a request without the current `X-Transmission-Session-Id` gets
//! `409` and the id in that header, and the client repeats the request with it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use shoal_core::Id20;

use crate::api::{same_secret, AppState};
use crate::manager::{AddSource, State as TorrentState, TorrentView};
use crate::DaemonError;

/// The header of the CSRF exchange.
pub const SESSION_HEADER: &str = "X-Transmission-Session-Id";
/// The RPC version we answer as: Transmission 4.0's (17), whose fields we follow (and a few
/// of 4.1's, such as `sequential_download`).
const RPC_VERSION: u64 = 17;
/// Transmission's speeds are in kB/s of 1000 bytes (its `units.speed-bytes`), never KiB/s.
const SPEED_K: u64 = 1000;

/// What the RPC remembers for the clients between calls: Transmission keeps a speed limit (or a
/// queue size, a ratio…) and whether it is on as two settings, so a value set while off is
/// shown and used once it is turned on. shoal has one setting (a cap or none), so the values
/// set while off live here (in memory; after a restart they start from Transmission's
/// defaults again).
#[derive(Debug)]
pub struct Remembered {
    inner: std::sync::Mutex<RememberedValues>,
}

#[derive(Debug, Clone)]
struct RememberedValues {
    /// kB/s.
    speed_down: u64,
    /// kB/s.
    speed_up: u64,
    download_queue: usize,
    seed_queue: usize,
    ratio: f64,
    idle_minutes: u64,
    /// Per torrent: (down, up) in kB/s.
    torrents: std::collections::HashMap<Id20, (u64, u64)>,
}

impl Default for Remembered {
    /// Transmission's defaults.
    fn default() -> Self {
        Remembered {
            inner: std::sync::Mutex::new(RememberedValues {
                speed_down: 100,
                speed_up: 100,
                download_queue: 5,
                seed_queue: 10,
                ratio: 2.0,
                idle_minutes: 30,
                torrents: Default::default(),
            }),
        }
    }
}

impl Remembered {
    fn lock(&self) -> std::sync::MutexGuard<'_, RememberedValues> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// kB/s from bytes per second, rounded.
fn kbps(bytes: u64) -> u64 {
    (bytes + SPEED_K / 2) / SPEED_K
}

/// Handles one RPC request.
pub async fn rpc(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !basic_auth_ok(&headers, &s.token) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"shoal\"")],
            "401: the daemon's token is the password (any user name)",
        )
            .into_response();
    }
    let session_ok = headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == s.rpc_session_id);
    if !session_ok {
        return (
            StatusCode::CONFLICT,
            [(SESSION_HEADER, s.rpc_session_id.clone())],
            format!("409: Conflict\n\n{SESSION_HEADER}: {}", s.rpc_session_id),
        )
            .into_response();
    }
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return reply(Err(format!("invalid JSON: {e}")), Vec::new(), None),
    };
    let tag = req.get("tag").cloned();
    let method = req.get("method").and_then(Value::as_str).unwrap_or("");
    let args = req
        .get("arguments")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut arguments = Vec::new();
    let result = match method {
        // Written straight out, a torrent at a time: as a tree, the list of 1,000 torrents that
        // clients poll for every second or two was 2 MB of short-lived allocations, and what
        // the daemon allocated meanwhile was scattered among them (a fragmented heap).
        "torrent-get" => {
            torrent_get(&s, &args, &mut arguments);
            Ok(())
        }
        _ => call(&s, method, &args)
            .await
            .map(|v| write_json(&mut arguments, &v)),
    };
    reply(result, arguments, tag)
}

/// The response: `arguments` is the rendered arguments object when `result` is `Ok`.
fn reply(result: Result<(), String>, arguments: Vec<u8>, tag: Option<Value>) -> Response {
    let (result, arguments) = match result {
        Ok(()) => ("success".to_string(), arguments),
        Err(e) => (e, b"{}".to_vec()),
    };
    let mut body = Vec::with_capacity(arguments.len() + 64);
    body.extend_from_slice(b"{\"arguments\":");
    body.extend_from_slice(&arguments);
    drop(arguments);
    body.extend_from_slice(b",\"result\":");
    write_json(&mut body, &result);
    if let Some(t) = tag {
        body.extend_from_slice(b",\"tag\":");
        write_json(&mut body, &t);
    }
    body.push(b'}');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Appends `v` as JSON. Only values whose map keys are strings come here (`Value`, strings),
/// and writing those into a `Vec` cannot fail.
fn write_json(out: &mut Vec<u8>, v: &impl serde::Serialize) {
    let _ = serde_json::to_writer(out, v);
}

/// `torrent-get`: `{"torrents":[…]}` with the asked `fields` of the selected torrents, oldest
/// first, each rendered and dropped before the next is built.
fn torrent_get(s: &AppState, args: &Map<String, Value>, out: &mut Vec<u8>) {
    let fields: Vec<String> = args
        .get("fields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let wanted: Option<std::collections::HashSet<Id20>> =
        select(s, args.get("ids")).map(|w| w.into_iter().collect());
    out.extend_from_slice(b"{\"torrents\":[");
    let mut first = true;
    for hash in s.manager.hashes() {
        if wanted.as_ref().is_some_and(|w| !w.contains(&hash)) {
            continue;
        }
        // Removed since the hashes were listed: left out.
        let Some(view) = s.manager.get(&hash) else {
            continue;
        };
        if !first {
            out.push(b',');
        }
        first = false;
        write_json(out, &torrent_fields(s, &view, &fields));
    }
    out.extend_from_slice(b"]}");
}

fn basic_auth_ok(headers: &HeaderMap, token: &str) -> bool {
    use base64::Engine;
    let Some(encoded) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return false;
    };
    same_secret(&decoded[colon + 1..], token.as_bytes())
}

async fn call(s: &AppState, method: &str, args: &Map<String, Value>) -> Result<Value, String> {
    let m = &s.manager;
    match method {
        "session-get" => Ok(session_get(s)),
        "session-set" => session_set(s, args).await,
        "torrent-set-location" => {
            let location = args
                .get("location")
                .and_then(Value::as_str)
                .ok_or("torrent-set-location needs 'location'")?;
            let move_data = args.get("move").and_then(Value::as_bool).unwrap_or(false);
            for h in select(s, args.get("ids")).unwrap_or_default() {
                m.set_location(&h, location.into(), move_data)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(json!({}))
        }
        "session-stats" => {
            let list = m.list();
            let active = list
                .iter()
                .filter(|t| !matches!(t.state, TorrentState::Paused | TorrentState::Error))
                .count();
            let stats = json!({
                "uploadedBytes": list.iter().map(|t| t.uploaded).sum::<u64>(),
                "downloadedBytes": list.iter().map(|t| t.downloaded).sum::<u64>(),
                "filesAdded": list.len(),
                "sessionCount": 1,
                "secondsActive": 0,
            });
            Ok(json!({
                "activeTorrentCount": active,
                "pausedTorrentCount": list.len() - active,
                "torrentCount": list.len(),
                "downloadSpeed": list.iter().map(|t| t.down_rate).sum::<u64>(),
                "uploadSpeed": list.iter().map(|t| t.up_rate).sum::<u64>(),
                "cumulative-stats": stats,
                "current-stats": stats,
            }))
        }
        "torrent-add" => torrent_add(s, args).await,
        "torrent-start" | "torrent-start-now" => {
            for h in select(s, args.get("ids")).unwrap_or_else(|| all(s)) {
                m.start(&h).map_err(|e| e.to_string())?;
            }
            Ok(json!({}))
        }
        "torrent-stop" => {
            for h in select(s, args.get("ids")).unwrap_or_else(|| all(s)) {
                m.stop(&h).await.map_err(|e| e.to_string())?;
            }
            Ok(json!({}))
        }
        "torrent-verify" => {
            for h in select(s, args.get("ids")).unwrap_or_else(|| all(s)) {
                m.verify(&h).await.map_err(|e| e.to_string())?;
            }
            Ok(json!({}))
        }
        "torrent-remove" => {
            let delete = args
                .get("delete-local-data")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            for h in select(s, args.get("ids")).unwrap_or_default() {
                match m.remove(&h, delete).await {
                    Ok(()) | Err(DaemonError::NotFound) => {
                        s.transmission.lock().torrents.remove(&h);
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(json!({}))
        }
        "torrent-set" => torrent_set(s, args).await,
        "free-space" => {
            let path = args
                .get("path")
                .and_then(Value::as_str)
                .ok_or("free-space needs 'path'")?;
            let (free, total) = crate::api::disk_space(std::path::Path::new(path))
                .map_err(|e| format!("{path}: {e}"))?;
            Ok(json!({"path": path, "size-bytes": free, "total_size": total}))
        }
        "port-test" => Err(
            "port-test needs an outside service to connect back; shoal does not contact one".into(),
        ),
        other => Err(format!("method {other:?} is not supported")),
    }
}

/// `session-get`: the session as Transmission clients read it.
fn session_get(s: &AppState) -> Value {
    let m = &s.manager;
    let set = m.session_settings();
    let mem = s.transmission.lock().clone();
    let speed = |cap: Option<u64>, off: u64| cap.map_or(off, kbps);
    let mut out = json!({
        "version": format!("4.0.0 (shoal {})", env!("CARGO_PKG_VERSION")),
        "rpc-version": RPC_VERSION,
        "rpc-version-minimum": 1,
        "rpc-version-semver": "5.3.0",
        "download-dir": set.download_dir,
        "peer-port": m.session().local_addr().port(),
        "session-id": s.rpc_session_id,
        "encryption": "preferred",
        "speed-limit-down": speed(set.max_download_rate, mem.speed_down),
        "speed-limit-down-enabled": set.max_download_rate.is_some(),
        "speed-limit-up": speed(set.max_upload_rate, mem.speed_up),
        "speed-limit-up-enabled": set.max_upload_rate.is_some(),
        "peer-limit-global": set.max_connections,
        "trash-original-torrent-files": false,
        "download-queue-size": if set.max_active_downloads > 0 { set.max_active_downloads } else { mem.download_queue },
        "download-queue-enabled": set.max_active_downloads > 0,
        "seed-queue-size": if set.max_active_seeds > 0 { set.max_active_seeds } else { mem.seed_queue },
        "seed-queue-enabled": set.max_active_seeds > 0,
        "seedRatioLimit": if set.seed_ratio_limit > 0.0 { set.seed_ratio_limit } else { mem.ratio },
        "seedRatioLimited": set.seed_ratio_limit > 0.0,
        "idle-seeding-limit": if set.seed_idle_minutes > 0 { set.seed_idle_minutes } else { mem.idle_minutes },
        "idle-seeding-limit-enabled": set.seed_idle_minutes > 0,
        "peer-limit-per-torrent": set.max_peers_per_torrent,
        "start-added-torrents": true,
        "rename-partial-files": false,
        "incomplete-dir-enabled": false,
        "pex-enabled": true,
        "dht-enabled": m.session().dht_addr().is_some(),
        "utp-enabled": m.session().utp_addr().is_some(),
        "lpd-enabled": false,
        "port-forwarding-enabled": false,
        "units": {
            "speed-units": ["kB/s", "MB/s", "GB/s", "TB/s"],
            "speed-bytes": SPEED_K,
            "size-units": ["kB", "MB", "GB", "TB"],
            "size-bytes": 1000,
            "memory-units": ["KiB", "MiB", "GiB", "TiB"],
            "memory-bytes": 1024,
        },
    });
    // No alternative speeds (the "turtle"): off, at Transmission's default values.
    if let Some(o) = out.as_object_mut() {
        o.extend([
            ("alt-speed-enabled".into(), json!(false)),
            ("alt-speed-down".into(), json!(50)),
            ("alt-speed-up".into(), json!(50)),
            ("alt-speed-time-enabled".into(), json!(false)),
            ("alt-speed-time-begin".into(), json!(540)),
            ("alt-speed-time-end".into(), json!(1020)),
            ("alt-speed-time-day".into(), json!(127)),
        ]);
    }
    out
}

/// `session-set`: the speed limits, the download folder, the queues, the seeding limits and
/// the peer limits (`peer-limit-global`, 0: no global cap; `peer-limit-per-torrent`) change
/// the running daemon (and are saved, see [`crate::Manager::update_session`]). Keys
/// clients send with their preferences that ask for nothing shoal does not already do are
/// accepted and ignored (see [`harmless_session_key`]); any other key is refused by name, and
/// then nothing changes.
async fn session_set(s: &AppState, args: &Map<String, Value>) -> Result<Value, String> {
    const APPLIED: &[&str] = &[
        "speed-limit-down",
        "speed-limit-down-enabled",
        "speed-limit-up",
        "speed-limit-up-enabled",
        "download-dir",
        "download-queue-size",
        "download-queue-enabled",
        "seed-queue-size",
        "seed-queue-enabled",
        "seedRatioLimit",
        "seedRatioLimited",
        "idle-seeding-limit",
        "idle-seeding-limit-enabled",
        "peer-limit-global",
        "peer-limit-per-torrent",
    ];
    let m = &s.manager;
    let refused: Vec<&str> = args
        .iter()
        .filter(|(k, v)| !APPLIED.contains(&k.as_str()) && !harmless_session_key(s, k, v))
        .map(|(k, _)| k.as_str())
        .collect();
    if !refused.is_empty() {
        return Err(format!(
            "session-set: not supported: {} (nothing was changed)",
            refused.join(", ")
        ));
    }
    let num = |k: &str| -> Result<Option<f64>, String> {
        match args.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .map(Some)
                .ok_or_else(|| format!("session-set: '{k}' must be a number, 0 or more")),
        }
    };
    let flag = |k: &str| -> Result<Option<bool>, String> {
        match args.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| format!("session-set: '{k}' must be true or false")),
        }
    };
    let set = m.session_settings();
    let mut patch = crate::SessionPatch::default();
    let mut mem = s.transmission.lock().clone();
    // A value and its switch: the value is remembered; the switch (given, or as it is now)
    // says whether it applies.
    let speed = |value: Option<f64>, on: Option<bool>, now: Option<u64>, kept: &mut u64| {
        if let Some(v) = value {
            *kept = v as u64;
        }
        let on = on.unwrap_or(now.is_some());
        if value.is_none() && on == now.is_some() {
            return None;
        }
        // Transmission's "0 kB/s" stops the transfer; shoal's smallest cap is 1 kB/s.
        Some(on.then(|| (*kept).max(1) * SPEED_K))
    };
    patch.max_download_rate = speed(
        num("speed-limit-down")?,
        flag("speed-limit-down-enabled")?,
        set.max_download_rate,
        &mut mem.speed_down,
    );
    patch.max_upload_rate = speed(
        num("speed-limit-up")?,
        flag("speed-limit-up-enabled")?,
        set.max_upload_rate,
        &mut mem.speed_up,
    );
    let queue = |value: Option<f64>, on: Option<bool>, now: usize, kept: &mut usize| {
        if let Some(v) = value {
            *kept = (v as usize).max(1);
        }
        let on = on.unwrap_or(now > 0);
        if value.is_none() && on == (now > 0) {
            return None;
        }
        Some(if on { *kept } else { 0 })
    };
    patch.max_active_downloads = queue(
        num("download-queue-size")?,
        flag("download-queue-enabled")?,
        set.max_active_downloads,
        &mut mem.download_queue,
    );
    patch.max_active_seeds = queue(
        num("seed-queue-size")?,
        flag("seed-queue-enabled")?,
        set.max_active_seeds,
        &mut mem.seed_queue,
    );
    let (ratio, ratio_on) = (num("seedRatioLimit")?, flag("seedRatioLimited")?);
    if let Some(r) = ratio {
        mem.ratio = r;
    }
    let on = ratio_on.unwrap_or(set.seed_ratio_limit > 0.0);
    if ratio.is_some() || on != (set.seed_ratio_limit > 0.0) {
        patch.seed_ratio_limit = Some(if on { mem.ratio } else { 0.0 });
    }
    let (idle, idle_on) = (
        num("idle-seeding-limit")?,
        flag("idle-seeding-limit-enabled")?,
    );
    if let Some(i) = idle {
        mem.idle_minutes = (i as u64).max(1);
    }
    let on = idle_on.unwrap_or(set.seed_idle_minutes > 0);
    if idle.is_some() || on != (set.seed_idle_minutes > 0) {
        patch.seed_idle_minutes = Some(if on { mem.idle_minutes } else { 0 });
    }
    let peers = |k: &str| -> Result<Option<usize>, String> {
        match args.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| format!("session-set: '{k}' must be a whole number, 0 or more")),
        }
    };
    patch.max_connections = peers("peer-limit-global")?;
    patch.max_peers_per_torrent = peers("peer-limit-per-torrent")?;
    if patch.max_peers_per_torrent == Some(0) {
        return Err("session-set: 'peer-limit-per-torrent' must be 1 or more".into());
    }
    if let Some(d) = args.get("download-dir") {
        let d = d
            .as_str()
            .ok_or("session-set: 'download-dir' must be a string")?;
        patch.download_dir = Some(d.into());
    }
    let m = s.manager.clone();
    tokio::task::spawn_blocking(move || m.update_session(patch))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    *s.transmission.lock() = mem;
    Ok(json!({}))
}

/// Keys of `session-set` that clients send with all their preferences and that ask for
/// nothing shoal does not do anyway, so accepting them changes nothing and hides nothing:
/// * always: `rename-partial-files` (shoal writes no `.part` files), `cache-size-mb` (shoal's
///   cache is the kernel's), `queue-stalled-enabled` and `queue-stalled-minutes` (stalled
///   torrents keep their places), `peer-port-random-on-start`, `blocklist-url` (no blocklist
///   is fetched either way), `port-forwarding-enabled` and `lpd-enabled` (shoal does neither,
///   which the reply to `session-get` says);
/// * when they match what shoal does: `start-added-torrents: true`, `pex-enabled: true`,
///   `incomplete-dir-enabled: false`, `alt-speed-enabled: false`,
///   `alt-speed-time-enabled: false`, `blocklist-enabled: false`,
///   `trash-original-torrent-files: false`, the `script-torrent-*-enabled: false` switches,
///   `dht-enabled`, `utp-enabled` and `peer-port` as they are.
fn harmless_session_key(s: &AppState, key: &str, value: &Value) -> bool {
    const ALWAYS: &[&str] = &[
        "rename-partial-files",
        "cache-size-mb",
        "queue-stalled-enabled",
        "queue-stalled-minutes",
        "peer-port-random-on-start",
        "blocklist-url",
        "port-forwarding-enabled",
        "lpd-enabled",
    ];
    const WHEN_TRUE: &[&str] = &["start-added-torrents", "pex-enabled"];
    const WHEN_FALSE: &[&str] = &[
        "incomplete-dir-enabled",
        "alt-speed-enabled",
        "alt-speed-time-enabled",
        "blocklist-enabled",
        "trash-original-torrent-files",
        "script-torrent-added-enabled",
        "script-torrent-done-enabled",
        "script-torrent-done-seeding-enabled",
    ];
    let session = s.manager.session();
    ALWAYS.contains(&key)
        || (WHEN_TRUE.contains(&key) && value.as_bool() == Some(true))
        || (WHEN_FALSE.contains(&key) && value.as_bool() == Some(false))
        || (key == "dht-enabled" && value.as_bool() == Some(session.dht_addr().is_some()))
        || (key == "utp-enabled" && value.as_bool() == Some(session.utp_addr().is_some()))
        || (key == "peer-port" && value.as_u64() == Some(u64::from(session.local_addr().port())))
}

/// `torrent-set`: `files-wanted` / `files-unwanted`, the torrent's own speed limits
/// (`downloadLimit`/`downloadLimited`, `uploadLimit`/`uploadLimited`, kB/s) and
/// `sequential_download` (Transmission 4.1; `sequentialDownload` too) are applied; a few keys
/// that ask for what shoal does anyway are accepted (`honorsSessionLimits: true`,
/// `bandwidthPriority: 0`, `seedRatioMode: 0` and `seedIdleMode: 0`, which follow the
/// session's); any other key is refused by name, and then nothing changes.
async fn torrent_set(s: &AppState, args: &Map<String, Value>) -> Result<Value, String> {
    const IGNORED_SILENTLY: &[&str] = &["ids"];
    const APPLIED: &[&str] = &[
        "files-wanted",
        "files-unwanted",
        "downloadLimit",
        "downloadLimited",
        "uploadLimit",
        "uploadLimited",
        "sequential_download",
        "sequentialDownload",
    ];
    let harmless = |k: &str, v: &Value| match k {
        "honorsSessionLimits" => v.as_bool() == Some(true),
        "bandwidthPriority" | "seedRatioMode" | "seedIdleMode" => v.as_i64() == Some(0),
        _ => false,
    };
    let (want, unwant) = (
        file_indices(args, "files-wanted")?,
        file_indices(args, "files-unwanted")?,
    );
    let unsupported: Vec<&str> = args
        .iter()
        .filter(|(k, v)| {
            !IGNORED_SILENTLY.contains(&k.as_str())
                && !APPLIED.contains(&k.as_str())
                && !harmless(k, v)
        })
        .map(|(k, _)| k.as_str())
        .collect();
    if !unsupported.is_empty() {
        return Err(format!(
            "torrent-set: not supported: {} (nothing was changed)",
            unsupported.join(", ")
        ));
    }
    let kb = |k: &str| -> Result<Option<u64>, String> {
        match args.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("torrent-set: '{k}' must be a whole number of kB/s")),
        }
    };
    let on = |k: &str| -> Result<Option<bool>, String> {
        match args.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| format!("torrent-set: '{k}' must be true or false")),
        }
    };
    let (down, down_on) = (kb("downloadLimit")?, on("downloadLimited")?);
    let (up, up_on) = (kb("uploadLimit")?, on("uploadLimited")?);
    let sequential = match (on("sequential_download")?, on("sequentialDownload")?) {
        (Some(a), _) => Some(a),
        (None, b) => b,
    };
    let torrents = select(s, args.get("ids")).unwrap_or_default();
    // The files' choice is checked for every torrent before anything changes.
    let mut choices = Vec::new();
    if want.is_some() || unwant.is_some() {
        for h in &torrents {
            let Some(wanted) = s.manager.wanted(h) else {
                return Err("torrent-set: the torrent's metadata is not in yet".into());
            };
            choices.push((
                *h,
                choose_files(wanted, want.as_deref(), unwant.as_deref())?,
            ));
        }
    }
    for h in &torrents {
        let Some(view) = s.manager.get(h) else {
            continue;
        };
        let patch = {
            let mut mem = s.transmission.lock();
            let kept = mem.torrents.entry(*h).or_insert((
                view.download_limit.map_or(100, kbps),
                view.upload_limit.map_or(100, kbps),
            ));
            // As for the session: the value is remembered, its switch says if it applies.
            let limit = |value: Option<u64>, on: Option<bool>, now: Option<u64>, kept: &mut u64| {
                if let Some(v) = value {
                    *kept = v;
                }
                let on = on.unwrap_or(now.is_some());
                if value.is_none() && on == now.is_some() {
                    return None;
                }
                Some(on.then(|| (*kept).max(1) * SPEED_K))
            };
            crate::TorrentPatch {
                download_limit: limit(down, down_on, view.download_limit, &mut kept.0),
                upload_limit: limit(up, up_on, view.upload_limit, &mut kept.1),
                sequential,
            }
        };
        s.manager
            .set_options_blocking(h, patch)
            .await
            .map_err(|e| e.to_string())?;
    }
    for (h, wanted) in choices {
        s.manager
            .set_wanted(&h, wanted)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(json!({}))
}

/// `files-wanted` / `files-unwanted`: a list of file indices, `None` when absent. An empty list
/// names every file, as in Transmission.
fn file_indices(args: &Map<String, Value>, key: &str) -> Result<Option<Vec<usize>>, String> {
    let Some(v) = args.get(key) else {
        return Ok(None);
    };
    let list = v
        .as_array()
        .ok_or_else(|| format!("torrent-set: '{key}' must be a list of file indices"))?;
    list.iter()
        .map(|v| {
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| format!("torrent-set: '{key}': {v} is not a file index"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Applies `files-wanted` and `files-unwanted` to a choice of files. Indices number the real
/// files (BEP 47 pad files not counted), as `files` lists them; one out of range is refused by
/// name. An empty list means every file.
fn choose_files(
    mut wanted: Vec<bool>,
    want: Option<&[usize]>,
    unwant: Option<&[usize]>,
) -> Result<Vec<bool>, String> {
    for (key, list, value) in [
        ("files-wanted", want, true),
        ("files-unwanted", unwant, false),
    ] {
        let Some(list) = list else {
            continue;
        };
        if list.is_empty() {
            wanted.iter_mut().for_each(|w| *w = value);
        }
        for &i in list {
            let n = wanted.len();
            let w = wanted.get_mut(i).ok_or_else(|| {
                format!("torrent-set: '{key}': no file {i} (the torrent has {n} files, numbered from 0)")
            })?;
            *w = value;
        }
    }
    Ok(wanted)
}

fn hash_of(t: &TorrentView) -> Id20 {
    Id20::from_hex(&t.info_hash).unwrap_or(Id20([0; 20]))
}

fn all(s: &AppState) -> Vec<Id20> {
    s.manager.hashes()
}

/// The torrents an `ids` argument names: a number, a hash string, a list of either, or
/// `"recently-active"`; `None` (all) when absent.
fn select(s: &AppState, ids: Option<&Value>) -> Option<Vec<Id20>> {
    let one = |v: &Value| -> Option<Id20> {
        match v {
            Value::Number(n) => n.as_u64().and_then(|n| s.manager.hash_of_id(n)),
            Value::String(h) => Id20::from_hex(h).ok(),
            _ => None,
        }
    };
    match ids? {
        Value::Array(a) => Some(a.iter().filter_map(one).collect()),
        Value::String(r) if r == "recently-active" => Some(all(s)),
        v => Some(one(v).into_iter().collect()),
    }
}

async fn torrent_add(s: &AppState, args: &Map<String, Value>) -> Result<Value, String> {
    let source = if let Some(b64) = args.get("metainfo").and_then(Value::as_str) {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| "metainfo is not base64".to_string())?;
        AddSource::Torrent(bytes)
    } else if let Some(f) = args.get("filename").and_then(Value::as_str) {
        if f.starts_with("magnet:") {
            AddSource::Magnet(f.to_string())
        } else if f.starts_with("http://") || f.starts_with("https://") {
            return Err("adding by URL is not supported; send the file as 'metainfo'".into());
        } else {
            let path = f.to_string();
            let bytes = tokio::task::spawn_blocking(move || std::fs::read(&path))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cannot read {f}: {e}"))?;
            AddSource::Torrent(bytes)
        }
    } else {
        return Err("torrent-add needs 'filename' or 'metainfo'".into());
    };
    let dir = args
        .get("download-dir")
        .and_then(Value::as_str)
        .map(std::path::PathBuf::from);
    let paused = args.get("paused").and_then(Value::as_bool).unwrap_or(false);
    match s.manager.add_blocking(source, dir, paused).await {
        Ok(v) => {
            Ok(json!({"torrent-added": {"id": v.id, "name": v.name, "hashString": v.info_hash}}))
        }
        Err(DaemonError::Duplicate(h)) => {
            let v = Id20::from_hex(&h).ok().and_then(|h| s.manager.get(&h));
            Ok(
                json!({"torrent-duplicate": v.map(|v| json!({"id": v.id, "name": v.name, "hashString": v.info_hash}))}),
            )
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Transmission's status numbers: 0 stopped, 2 checking, 3 queued to download, 4 downloading,
/// 6 seeding.
fn status_code(state: TorrentState) -> u64 {
    match state {
        TorrentState::Paused | TorrentState::Error => 0,
        TorrentState::Queued => 3,
        TorrentState::Checking => 2,
        TorrentState::Metadata | TorrentState::Downloading => 4,
        TorrentState::Seeding => 6,
    }
}

fn torrent_fields(s: &AppState, t: &TorrentView, fields: &[String]) -> Value {
    let left = t.total.saturating_sub(t.downloaded);
    let meta = s.manager.metainfo(&hash_of(t));
    let mut out = Map::new();
    for f in fields {
        let v = match f.as_str() {
            "id" => json!(t.id),
            "name" => json!(t.name),
            "hashString" => json!(t.info_hash),
            "status" => json!(status_code(t.state)),
            "percentDone" => json!(t.progress),
            "metadataPercentComplete" => json!(if meta.is_some() { 1.0 } else { 0.0 }),
            "totalSize" | "sizeWhenDone" => json!(t.total),
            "leftUntilDone" => json!(left),
            "haveValid" | "downloadedEver" => json!(t.downloaded),
            "uploadedEver" => json!(t.uploaded),
            "rateDownload" => json!(t.down_rate),
            "rateUpload" => json!(t.up_rate),
            "uploadRatio" => json!(if t.downloaded > 0 {
                t.uploaded as f64 / t.downloaded as f64
            } else {
                -1.0
            }),
            // -1: done (or nothing to do), -2: unknown (no download rate).
            "eta" => json!(if left == 0 {
                -1
            } else {
                left.checked_div(t.down_rate).map_or(-2, |s| s as i64)
            }),
            "error" => json!(if t.error.is_some() { 3 } else { 0 }),
            "errorString" => json!(t.error.clone().unwrap_or_default()),
            "isFinished" => json!(false),
            "isStalled" => json!(false),
            "peersConnected" | "peersSendingToUs" | "peersGettingFromUs" => json!(t.peers),
            // The parts of Transmission's peer objects shoal knows.
            "peers" => json!(t
                .peer_list
                .iter()
                .map(|p| json!({
                    "address": p.addr.ip().to_string(),
                    "port": p.addr.port(),
                    "isUTP": p.transport == "utp",
                    "isEncrypted": p.encryption == "rc4",
                }))
                .collect::<Vec<_>>()),
            "downloadDir" => json!(t.save_path),
            "addedDate" => json!(t.added),
            "queuePosition" => json!(t.id),
            "recheckProgress" => json!(0.0),
            "pieceCount" => json!(t.pieces_total),
            "downloadLimited" => json!(t.download_limit.is_some()),
            "uploadLimited" => json!(t.upload_limit.is_some()),
            "downloadLimit" | "uploadLimit" => {
                let (cap, kept) = {
                    let mem = s.transmission.lock();
                    let kept = mem.torrents.get(&hash_of(t)).copied();
                    if f == "downloadLimit" {
                        (t.download_limit, kept.map(|k| k.0))
                    } else {
                        (t.upload_limit, kept.map(|k| k.1))
                    }
                };
                json!(cap.map_or(kept.unwrap_or(100), kbps))
            }
            "honorsSessionLimits" => json!(true),
            "sequential_download" | "sequentialDownload" => json!(t.sequential),
            // Real files only (BEP 47 pad files not counted), numbered as `torrent-set` takes
            // them.
            "files" | "fileStats" | "wanted" | "priorities" => {
                let wanted = s.manager.wanted(&hash_of(t)).unwrap_or_default();
                let real = meta
                    .as_ref()
                    .map(|m| {
                        m.info
                            .files
                            .iter()
                            .filter(|f| !f.is_pad())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                let done = |i: usize, length: u64| {
                    if left == 0 && wanted.get(i).copied().unwrap_or(true) {
                        length
                    } else {
                        0
                    }
                };
                let list: Vec<Value> = real
                    .iter()
                    .enumerate()
                    .map(|(i, file)| {
                        let w = wanted.get(i).copied().unwrap_or(true);
                        match f.as_str() {
                            "files" => json!({"name": file.display_path(), "length": file.length, "bytesCompleted": done(i, file.length)}),
                            "fileStats" => json!({"bytesCompleted": done(i, file.length), "wanted": w, "priority": 0}),
                            "wanted" => json!(w),
                            _ => json!(0),
                        }
                    })
                    .collect();
                json!(list)
            }
            _ => continue,
        };
        out.insert(f.clone(), v);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::{expand_wanted, real_files};
    use shoal_metainfo::{FileAttr, FileEntry};

    fn file(name: &str, length: u64, pad: bool) -> FileEntry {
        FileEntry {
            path: vec!["t".into(), name.into()],
            length,
            offset: 0,
            attr: FileAttr {
                pad,
                ..FileAttr::default()
            },
            symlink_target: None,
        }
    }

    /// a, pad, b, pad, c: the real files are 0, 2 and 4 of the full list.
    fn padded() -> Vec<FileEntry> {
        vec![
            file("a", 10, false),
            file(".pad/6", 6, true),
            file("b", 16, false),
            file(".pad/0", 0, true),
            file("c", 3, false),
        ]
    }

    #[test]
    fn file_indices_skip_pad_files() {
        let files = padded();
        assert_eq!(real_files(&files), vec![0, 2, 4]);
        // Transmission's file 1 is b, full index 2.
        let wanted = choose_files(vec![true; 3], None, Some(&[1])).unwrap();
        assert_eq!(wanted, vec![true, false, true]);
        assert_eq!(
            expand_wanted(&files, &wanted).unwrap(),
            vec![true, true, false, true, true]
        );
        // A list counting the pad files is taken as it is (pads stay set).
        assert_eq!(
            expand_wanted(&files, &[false, false, true, false, false]).unwrap(),
            vec![false, true, true, true, false]
        );
        let e = expand_wanted(&files, &[true, false]).unwrap_err();
        assert!(e.contains("3 files (5 with its pad files)"), "{e}");
    }

    #[test]
    fn out_of_range_file_indices_are_refused_by_number() {
        let e = choose_files(vec![true; 3], Some(&[3]), None).unwrap_err();
        assert!(e.contains("files-wanted") && e.contains("no file 3"), "{e}");
        let e = choose_files(vec![true; 3], None, Some(&[0, 7])).unwrap_err();
        assert!(
            e.contains("files-unwanted") && e.contains("no file 7"),
            "{e}"
        );
        // An empty list names every file.
        assert_eq!(
            choose_files(vec![true; 3], None, Some(&[])).unwrap(),
            vec![false; 3]
        );
        assert_eq!(
            choose_files(vec![false; 3], Some(&[]), Some(&[2])).unwrap(),
            vec![true, true, false]
        );
        let args = json!({"files-wanted": [1, "x"]});
        let e = file_indices(args.as_object().unwrap(), "files-wanted").unwrap_err();
        assert!(e.contains("\"x\" is not a file index"), "{e}");
    }
}
