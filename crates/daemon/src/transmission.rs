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
use axum::Json;
use serde_json::{json, Map, Value};
use shoal_core::Id20;

use crate::api::{same_secret, AppState};
use crate::manager::{AddSource, State as TorrentState, TorrentView};
use crate::DaemonError;

/// The header of the CSRF exchange.
pub const SESSION_HEADER: &str = "X-Transmission-Session-Id";
/// The RPC version we answer as: Transmission 4.0's (17), whose fields we follow.
const RPC_VERSION: u64 = 17;

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
        Err(e) => return reply(Err(format!("invalid JSON: {e}")), None),
    };
    let tag = req.get("tag").cloned();
    let method = req.get("method").and_then(Value::as_str).unwrap_or("");
    let args = req
        .get("arguments")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let result = call(&s, method, &args).await;
    reply(result, tag)
}

fn reply(result: Result<Value, String>, tag: Option<Value>) -> Response {
    let mut out = Map::new();
    match result {
        Ok(args) => {
            out.insert("result".into(), "success".into());
            out.insert("arguments".into(), args);
        }
        Err(e) => {
            out.insert("result".into(), e.into());
            out.insert("arguments".into(), json!({}));
        }
    }
    if let Some(t) = tag {
        out.insert("tag".into(), t);
    }
    Json(Value::Object(out)).into_response()
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
        "session-get" => Ok(json!({
            "version": format!("4.0.0 (shoal {})", env!("CARGO_PKG_VERSION")),
            "rpc-version": RPC_VERSION,
            "rpc-version-minimum": 1,
            "rpc-version-semver": "5.3.0",
            "download-dir": m.download_dir(),
            "peer-port": m.session().local_addr().port(),
            "session-id": s.rpc_session_id,
            "encryption": "preferred",
            "speed-limit-down-enabled": false,
            "speed-limit-up-enabled": false,
            "pex-enabled": true,
            "dht-enabled": m.session().dht_addr().is_some(),
            "utp-enabled": false,
        })),
        // Accepted for the clients that send their preferences; none of them changes how this
        // daemon runs yet, which the reply does not pretend otherwise: it echoes nothing.
        "session-set" => Ok(json!({})),
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
        "torrent-get" => {
            let fields: Vec<String> = args
                .get("fields")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let wanted = select(s, args.get("ids"));
            let torrents: Vec<Value> = m
                .list()
                .iter()
                .filter(|t| wanted.as_ref().is_none_or(|w| w.contains(&hash_of(t))))
                .map(|t| torrent_fields(s, t, &fields))
                .collect();
            Ok(json!({ "torrents": torrents }))
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
                    Ok(()) | Err(DaemonError::NotFound) => {}
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

/// `torrent-set`: `files-wanted` / `files-unwanted` are applied; the per-torrent limits and
/// other settings are not supported yet, and the answer says which instead of pretending.
async fn torrent_set(s: &AppState, args: &Map<String, Value>) -> Result<Value, String> {
    const IGNORED_SILENTLY: &[&str] = &["ids"];
    let indices = |key: &str| -> Vec<usize> {
        args.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_u64().map(|n| n as usize))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (want, unwant) = (indices("files-wanted"), indices("files-unwanted"));
    let unsupported: Vec<&str> = args
        .keys()
        .map(String::as_str)
        .filter(|k| !IGNORED_SILENTLY.contains(k) && *k != "files-wanted" && *k != "files-unwanted")
        .collect();
    if !unsupported.is_empty() {
        return Err(format!(
            "torrent-set: not supported yet: {}",
            unsupported.join(", ")
        ));
    }
    for h in select(s, args.get("ids")).unwrap_or_default() {
        let Some(mut wanted) = s.manager.wanted(&h) else {
            return Err("the torrent's metadata is not in yet".into());
        };
        for &i in &want {
            if let Some(w) = wanted.get_mut(i) {
                *w = true;
            }
        }
        for &i in &unwant {
            if let Some(w) = wanted.get_mut(i) {
                *w = false;
            }
        }
        s.manager
            .set_wanted(&h, wanted)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(json!({}))
}

fn hash_of(t: &TorrentView) -> Id20 {
    Id20::from_hex(&t.info_hash).unwrap_or(Id20([0; 20]))
}

fn all(s: &AppState) -> Vec<Id20> {
    s.manager.list().iter().map(hash_of).collect()
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
            "downloadDir" => json!(t.save_path),
            "addedDate" => json!(t.added),
            "queuePosition" => json!(t.id),
            "recheckProgress" => json!(0.0),
            "pieceCount" => json!(t.pieces_total),
            "files" => json!(meta
                .as_ref()
                .map(|m| m
                    .info
                    .files
                    .iter()
                    .filter(|f| !f.is_pad())
                    .map(|f| json!({"name": f.display_path(), "length": f.length, "bytesCompleted": if left == 0 { f.length } else { 0 }}))
                    .collect::<Vec<_>>())
                .unwrap_or_default()),
            _ => continue,
        };
        out.insert(f.clone(), v);
    }
    Value::Object(out)
}
