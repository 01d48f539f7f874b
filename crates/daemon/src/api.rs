//! The daemon's HTTP server: shoal's JSON API under `/api/v1`, the event stream, Prometheus
//! metrics, and the Transmission RPC. Every route but the Transmission one wants
//! `Authorization: Bearer <token>`; the RPC takes the token as the Basic password (what
//! `transmission-remote --auth` and Sonarr send). The web page at `/` is served without the token
//! (it holds no data and asks for the token itself: see [`crate::web`]).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use shoal_core::Id20;

use crate::manager::{AddSource, Manager};
use crate::DaemonError;

/// What every handler shares.
pub struct AppState {
    /// The torrents.
    pub manager: Arc<Manager>,
    /// The API token.
    pub token: String,
    /// The Transmission RPC's CSRF session id.
    pub rpc_session_id: String,
    /// What the Transmission RPC remembers between calls.
    pub transmission: crate::transmission::Remembered,
}

impl IntoResponse for DaemonError {
    fn into_response(self) -> Response {
        let status = match &self {
            DaemonError::NotFound => StatusCode::NOT_FOUND,
            DaemonError::Duplicate(_) => StatusCode::CONFLICT,
            DaemonError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DaemonError::State(_) | DaemonError::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

/// The router of every route.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/torrents", get(list).post(add))
        .route("/torrents/{id}", get(show).delete(remove).patch(patch))
        .route("/torrents/{id}/start", post(start))
        .route("/torrents/{id}/stop", post(stop))
        .route("/torrents/{id}/verify", post(verify))
        .route("/torrents/{id}/files", get(files))
        .route("/session", get(session).patch(patch_session))
        .route("/events", get(events))
        .layer(axum::middleware::from_fn_with_state(state.clone(), bearer));
    Router::new()
        .route("/", get(crate::web::index))
        .nest("/api/v1", api)
        .route(
            "/metrics",
            get(metrics).layer(axum::middleware::from_fn_with_state(state.clone(), bearer)),
        )
        // transmission-remote posts to the path with a trailing slash, others without.
        .route(
            "/transmission/rpc",
            post(crate::transmission::rpc).get(crate::transmission::rpc),
        )
        .route(
            "/transmission/rpc/",
            post(crate::transmission::rpc).get(crate::transmission::rpc),
        )
        .with_state(state)
}

/// Tells endless responses (the event stream) that the server is stopping: a graceful shutdown
/// waits for every response to finish, and an open web page's stream never would.
#[derive(Clone)]
struct ShuttingDown(tokio::sync::watch::Receiver<bool>);

/// Serves the API on `listener` until `shutdown` completes; then the event streams end and the
/// requests under way finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let app = router(state).layer(axum::Extension(ShuttingDown(stop)));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stopping.send(true);
        })
        .await
}

/// Compares in constant time (the token is a secret).
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn bearer(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if same_secret(t.as_bytes(), state.token.as_bytes()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({"error": "a valid token is required (Authorization: Bearer …; the token is in the daemon's state folder)"})),
        )
            .into_response(),
    }
}

fn parse_id(manager: &Manager, id: &str) -> Result<Id20, DaemonError> {
    if let Ok(h) = Id20::from_hex(id) {
        return Ok(h);
    }
    id.parse::<u64>()
        .ok()
        .and_then(|n| manager.hash_of_id(n))
        .ok_or(DaemonError::NotFound)
}

async fn list(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    Json(s.manager.list())
}

/// The body of `POST /api/v1/torrents` in JSON.
#[derive(Debug, Default, Deserialize)]
struct AddRequest {
    /// A magnet link.
    magnet: Option<String>,
    /// A .torrent file, base64.
    torrent: Option<String>,
    /// Where to save (absolute); the daemon's download folder if missing.
    save_path: Option<PathBuf>,
    /// Add without starting.
    #[serde(default)]
    paused: bool,
}

async fn add(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, DaemonError> {
    let is_torrent = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-bittorrent"));
    let (source, save_path, paused) = if is_torrent {
        (AddSource::Torrent(body.to_vec()), None, false)
    } else {
        let req: AddRequest = serde_json::from_slice(&body)
            .map_err(|e| DaemonError::BadRequest(format!("bad JSON: {e}")))?;
        let source = match (req.magnet, req.torrent) {
            (Some(m), None) => AddSource::Magnet(m),
            (None, Some(t)) => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(t.trim())
                    .map_err(|_| DaemonError::BadRequest("'torrent' is not base64".into()))?;
                AddSource::Torrent(bytes)
            }
            _ => {
                return Err(DaemonError::BadRequest(
                    "give exactly one of 'magnet' and 'torrent'".into(),
                ))
            }
        };
        (source, req.save_path, req.paused)
    };
    let view = s.manager.add_blocking(source, save_path, paused).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn show(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, DaemonError> {
    let hash = parse_id(&s.manager, &id)?;
    let view = s.manager.get(&hash).ok_or(DaemonError::NotFound)?;
    Ok(Json(view).into_response())
}

/// The body of `PATCH /api/v1/torrents/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchRequest {
    /// Per file of the torrent, as `/files` lists them (BEP 47 pad files not counted; a list
    /// counting them too is accepted): download it or not.
    wanted_files: Option<Vec<bool>>,
    /// Start (`false`) or stop (`true`).
    paused: Option<bool>,
    /// Its own download cap, bytes per second (`null` or 0: only the session's).
    #[serde(default, deserialize_with = "crate::manager::present")]
    download_limit: Option<Option<u64>>,
    /// Its own upload cap, bytes per second (`null` or 0: only the session's).
    #[serde(default, deserialize_with = "crate::manager::present")]
    upload_limit: Option<Option<u64>>,
    /// Fetch pieces in order.
    sequential: Option<bool>,
    /// A new save folder (absolute).
    save_path: Option<PathBuf>,
    /// With `save_path`: move the files there (`true`) or only look for them there (`false`,
    /// the default).
    move_data: Option<bool>,
}

async fn patch(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, DaemonError> {
    let hash = parse_id(&s.manager, &id)?;
    let req: PatchRequest = serde_json::from_slice(&body)
        .map_err(|e| DaemonError::BadRequest(format!("bad JSON: {e}")))?;
    if req.move_data.is_some() && req.save_path.is_none() {
        return Err(DaemonError::BadRequest(
            "'move_data' goes with 'save_path'".into(),
        ));
    }
    if let Some(path) = req.save_path {
        s.manager
            .set_location(&hash, path, req.move_data.unwrap_or(false))
            .await?;
    }
    s.manager
        .set_options_blocking(
            &hash,
            crate::manager::TorrentPatch {
                download_limit: req.download_limit,
                upload_limit: req.upload_limit,
                sequential: req.sequential,
            },
        )
        .await?;
    if let Some(w) = req.wanted_files {
        s.manager.set_wanted(&hash, w).await?;
    }
    match req.paused {
        Some(true) => s.manager.stop(&hash).await?,
        Some(false) => s.manager.start(&hash)?,
        None => {}
    }
    let view = s.manager.get(&hash).ok_or(DaemonError::NotFound)?;
    Ok(Json(view).into_response())
}

/// Free and total bytes of the file system holding `path`.
pub fn disk_space(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("a path with a NUL byte"))?;
    // SAFETY: `statvfs` writes into the zeroed struct it is given; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unit = st.f_frsize as u64;
    Ok((st.f_bavail as u64 * unit, st.f_blocks as u64 * unit))
}

#[derive(Debug, Default, Deserialize)]
struct RemoveQuery {
    #[serde(default)]
    delete_data: bool,
}

async fn remove(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<StatusCode, DaemonError> {
    let hash = parse_id(&s.manager, &id)?;
    s.manager.remove(&hash, q.delete_data).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn start(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, DaemonError> {
    let hash = parse_id(&s.manager, &id)?;
    s.manager.start(&hash)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn stop(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, DaemonError> {
    let hash = parse_id(&s.manager, &id)?;
    s.manager.stop(&hash).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn verify(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, DaemonError> {
    let hash = parse_id(&s.manager, &id)?;
    s.manager.verify(&hash).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn files(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, DaemonError> {
    let hash = parse_id(&s.manager, &id)?;
    let meta = s.manager.metainfo(&hash).ok_or(DaemonError::NotFound)?;
    let wanted = s.manager.wanted(&hash).unwrap_or_default();
    // Real files only (pad files not counted), numbered as `wanted_files` takes them.
    let files: Vec<serde_json::Value> = meta
        .info
        .files
        .iter()
        .filter(|f| !f.is_pad())
        .enumerate()
        .map(|(i, f)| {
            serde_json::json!({
                "path": f.display_path(),
                "length": f.length,
                "wanted": wanted.get(i).copied().unwrap_or(true),
            })
        })
        .collect();
    Ok(Json(files).into_response())
}

async fn session(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    Json(session_json(&s.manager))
}

/// The session as `GET /api/v1/session` shows it: what it is, and its settings.
fn session_json(m: &Manager) -> serde_json::Value {
    let mut v = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "listen": m.session().local_addr().to_string(),
        "peer_id": String::from_utf8_lossy(&m.session().peer_id().0[..8]),
        "torrents": m.list().len(),
    });
    if let (Some(out), Ok(serde_json::Value::Object(settings))) = (
        v.as_object_mut(),
        serde_json::to_value(m.session_settings()),
    ) {
        out.extend(settings);
    }
    v
}

/// `PATCH /api/v1/session`: see [`crate::manager::SessionPatch`]; answers with the session.
async fn patch_session(
    State(s): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, DaemonError> {
    let patch: crate::manager::SessionPatch = serde_json::from_slice(&body)
        .map_err(|e| DaemonError::BadRequest(format!("bad JSON: {e}")))?;
    let m = s.manager.clone();
    tokio::task::spawn_blocking(move || m.update_session(patch))
        .await
        .map_err(|e| DaemonError::State(format!("the change stopped: {e}")))??;
    Ok(Json(session_json(&s.manager)).into_response())
}

/// Server-sent events: one `data:` line per state change (JSON, `event` names its kind), and a
/// comment every 15 s to keep proxies from closing an idle stream. The stream ends when the
/// server shuts down.
async fn events(
    State(s): State<Arc<AppState>>,
    stop: Option<axum::Extension<ShuttingDown>>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let rx = s.manager.subscribe();
    let stop = stop.map(|axum::Extension(ShuttingDown(stop))| stop);
    let stream = futures_util::stream::unfold((rx, stop), |(mut rx, mut stop)| async move {
        loop {
            let next = match stop.as_mut() {
                Some(stop) => tokio::select! {
                    next = rx.recv() => next,
                    // Stopping, or the server is gone: either way the stream is over.
                    _ = stop.wait_for(|stopping| *stopping) => return None,
                },
                None => rx.recv().await,
            };
            match next {
                Ok(ev) => {
                    let data = serde_json::to_string(&ev).unwrap_or_default();
                    return Some((Ok(Event::default().data(data)), (rx, stop)));
                }
                // A slow reader misses events rather than holding memory: it can re-list.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Prometheus text format.
async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let list = s.manager.list();
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, values: Vec<(String, f64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in values {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    let per = |f: &dyn Fn(&crate::TorrentView) -> f64| -> Vec<(String, f64)> {
        list.iter()
            .map(|t| (format!("{{info_hash=\"{}\"}}", t.info_hash), f(t)))
            .collect()
    };
    metric(
        "shoal_torrents",
        "Torrents in the daemon.",
        "gauge",
        vec![(String::new(), list.len() as f64)],
    );
    metric(
        "shoal_torrents_asleep",
        "Torrents asleep: complete and idle, with no task or open file.",
        "gauge",
        vec![(
            String::new(),
            list.iter().filter(|t| t.asleep).count() as f64,
        )],
    );
    metric(
        "shoal_torrent_downloaded_bytes",
        "Bytes of verified wanted pieces.",
        "gauge",
        per(&|t| t.downloaded as f64),
    );
    metric(
        "shoal_torrent_uploaded_bytes",
        "Payload bytes sent since the torrent started.",
        "counter",
        per(&|t| t.uploaded as f64),
    );
    metric(
        "shoal_torrent_peers",
        "Connected peers.",
        "gauge",
        per(&|t| t.peers as f64),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
