//! Fetching a torrent's info dictionary from peers (BEP 9), for magnet links.
//!
//! Every peer that speaks `ut_metadata` is asked, in parallel, for the dictionary in 16 KiB
//! pieces. Each peer's copy is checked on its own against the info-hash, so a peer that sends
//! wrong metadata is found and dropped without spoiling what honest peers send; the first copy
//! that matches wins. (The dictionary is small — tens of KB for most torrents — so fetching it
//! whole from each of a few peers costs little and needs no blame bookkeeping.)
//!
//! A v2 link (`btmh`, BEP 52) names the SHA-256 of the dictionary: a v2-only one is fetched in
//! its swarm (the truncated hash in the handshake) and checked against the full hash. The
//! dictionary holds each file's merkle root but not its piece layer, so on the same connection
//! the layers are then asked for with `hash request`s and proven against those roots
//! (`shoal_torrent::PieceLayerFetch`); a peer that rejects them, answers wrongly or is too slow
//! is dropped like one without metadata and the next peer asked. For a hybrid link the layers
//! are fetched from a peer that answers in the v2 swarm; one that does not still gives the
//! metadata (the pieces are then checked by their SHA-1 only, as before).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use std::collections::BTreeMap;

use shoal_core::{Id20, Id32};
use shoal_metainfo::{info_hash_of, info_hash_v2_of};
use shoal_wire::frame::{decode_frame, frame_missing, Limits};
use shoal_wire::{ExtendedHandshake, Handshake, Message, MetadataMessage, METADATA_PIECE_SIZE};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::connection::{dial_as, PeerStream};
use crate::EncryptionPolicy;
use shoal_torrent::UT_METADATA_ID;

/// How metadata peers are dialled.
#[derive(Clone, Debug)]
pub struct DialSettings {
    /// Local addresses to dial from.
    pub bind: shoal_core::LocalBind,
    /// Connect and handshake timeout.
    pub timeout: Duration,
    /// MSE/PE policy.
    pub encryption: EncryptionPolicy,
    /// Which transports to dial (as the session's peers).
    pub utp: crate::UtpMode,
    /// The session's uTP endpoint (`None`: TCP).
    pub utp_endpoint: Option<std::sync::Arc<crate::UtpEndpoint>>,
}

/// Largest info dictionary accepted (libtorrent's `max_metadata_size` is 30 MiB; real ones are
/// rarely above a few MB).
pub const MAX_METADATA_SIZE: u64 = 16 << 20;
/// How long one peer may take to answer one metadata request.
const PIECE_TIMEOUT: Duration = Duration::from_secs(10);
/// Peers asked at once.
const MAX_PARALLEL: usize = 8;
/// Connection attempts per peer.
const MAX_ATTEMPTS: u32 = 6;

/// Why one peer's metadata attempt ended.
#[derive(Debug)]
enum PeerFailure {
    Io(String),
    NoMetadata,
    WrongHash,
    NoPieceLayers(String),
}

impl std::fmt::Display for PeerFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerFailure::Io(e) => f.write_str(e),
            PeerFailure::NoMetadata => f.write_str("does not serve metadata"),
            PeerFailure::WrongHash => {
                f.write_str("sent metadata that does not match the info-hash")
            }
            PeerFailure::NoPieceLayers(why) => write!(f, "gave no piece layers: {why}"),
        }
    }
}

/// What a metadata fetch got: the info dictionary and, for a v2 link, the proven piece layers.
pub type Fetched = (Vec<u8>, Option<BTreeMap<Id32, Vec<Id32>>>);

/// Fetches the info dictionary of `info_hash` from `peers` (more may arrive on `more_peers`),
/// giving up after `deadline`. `v2` is the link's SHA-256 info-hash (BEP 52), which the
/// dictionary must then match, and whose piece layers are fetched too. Returns the verified
/// bytes, the layers, and the peers that sent wrong metadata.
pub async fn fetch_metadata(
    info_hash: Id20,
    v2: Option<Id32>,
    peer_id: Id20,
    peers: Vec<SocketAddr>,
    mut more_peers: mpsc::Receiver<SocketAddr>,
    dial_settings: DialSettings,
    deadline: Duration,
) -> Result<(Fetched, Vec<SocketAddr>), String> {
    let mut queue: Vec<SocketAddr> = peers;
    queue.dedup();
    // Peers that failed for a network reason (not listening yet, still checking its data) are
    // retried with a growing delay; liars and peers without metadata are not.
    let mut attempts: std::collections::HashMap<SocketAddr, u32> = Default::default();
    let mut retries: Vec<(tokio::time::Instant, SocketAddr)> = Vec::new();
    let mut tasks = JoinSet::new();
    let mut liars = Vec::new();
    let mut last_error = String::from("no peers to ask");
    let give_up = tokio::time::sleep(deadline);
    tokio::pin!(give_up);
    loop {
        while tasks.len() < MAX_PARALLEL {
            let Some(addr) = queue.pop() else { break };
            let n = attempts.entry(addr).or_default();
            if *n >= MAX_ATTEMPTS {
                continue;
            }
            *n += 1;
            let dial_settings = dial_settings.clone();
            tasks.spawn(async move {
                let result = fetch_from(addr, info_hash, v2, peer_id, dial_settings).await;
                (addr, result)
            });
        }
        tokio::select! {
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                let Ok((addr, result)) = joined else { continue };
                match result {
                    Ok(fetched) => return Ok((fetched, liars)),
                    Err(PeerFailure::WrongHash) => {
                        warn!(%addr, "peer sent metadata that does not match the info-hash; dropped");
                        liars.push(addr);
                        last_error = format!("{addr} sent wrong metadata");
                    }
                    Err(e) => {
                        debug!(%addr, "no metadata from peer: {e}");
                        last_error = format!("{addr}: {e}");
                        // A peer may lack the piece layers only for now (it is fetching them
                        // itself): asked again later, like one that failed for a network reason.
                        if let PeerFailure::Io(_) | PeerFailure::NoPieceLayers(_) = e {
                            let n = attempts.get(&addr).copied().unwrap_or(1);
                            let delay = Duration::from_millis(500) * (1 << n.min(6));
                            retries.push((tokio::time::Instant::now() + delay, addr));
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(next_retry(&retries)), if !retries.is_empty() => {
                let now = tokio::time::Instant::now();
                retries.retain(|(at, addr)| {
                    if *at <= now {
                        queue.push(*addr);
                        false
                    } else {
                        true
                    }
                });
            }
            Some(addr) = more_peers.recv() => queue.push(addr),
            _ = &mut give_up => {
                return Err(format!("no peer sent the metadata within {deadline:?} (last: {last_error})"));
            }
        }
    }
}

fn next_retry(retries: &[(tokio::time::Instant, SocketAddr)]) -> tokio::time::Instant {
    retries
        .iter()
        .map(|(at, _)| *at)
        .min()
        .unwrap_or_else(tokio::time::Instant::now)
}

async fn read_message(
    stream: &mut PeerStream,
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Message, PeerFailure> {
    loop {
        match decode_frame(buf, limits) {
            Ok(Some(m)) => return Ok(m),
            // Room for the whole frame at once, so the buffer grows at most to the limit.
            Ok(None) => buf.reserve(frame_missing(buf)),
            Err(e) => return Err(PeerFailure::Io(e.to_string())),
        }
        let n = tokio::time::timeout(PIECE_TIMEOUT, stream.read_buf(buf))
            .await
            .map_err(|_| PeerFailure::Io("timed out".into()))?
            .map_err(|e| PeerFailure::Io(e.to_string()))?;
        if n == 0 {
            return Err(PeerFailure::Io("closed".into()));
        }
    }
}

async fn send(stream: &mut PeerStream, msg: Message) -> Result<(), PeerFailure> {
    let mut out = BytesMut::new();
    msg.encode(&mut out);
    stream
        .write_all(&mut out)
        .await
        .map_err(|e| PeerFailure::Io(e.to_string()))
}

/// One peer: handshake, extended handshake, then every metadata piece in turn, then for a v2
/// link the piece layers.
async fn fetch_from(
    addr: SocketAddr,
    info_hash: Id20,
    v2: Option<Id32>,
    peer_id: Id20,
    settings: DialSettings,
) -> Result<Fetched, PeerFailure> {
    let ours = Handshake::new(info_hash, peer_id);
    // BEP 52: say we speak v2; a hybrid's peer may answer in the v2 swarm (libtorrent does).
    let ours = if v2.is_some() { ours.with_v2() } else { ours };
    let upgrade = v2.map(|h| h.truncated()).filter(|h| *h != info_hash);
    let (mut stream, theirs, mut buf) = dial_as(
        addr,
        settings.bind,
        (settings.utp, settings.utp_endpoint.as_ref()),
        ours,
        upgrade,
        settings.timeout,
        settings.encryption,
    )
    .await
    .map_err(|e| PeerFailure::Io(e.to_string()))?;
    if !theirs.supports_extended() {
        return Err(PeerFailure::NoMetadata);
    }
    let mut hs = ExtendedHandshake {
        client: Some(concat!("shoal ", env!("CARGO_PKG_VERSION")).to_string()),
        ..Default::default()
    };
    hs.extensions.insert("ut_metadata".into(), UT_METADATA_ID);
    send(
        &mut stream,
        Message::Extended {
            id: 0,
            payload: hs.encode(),
        },
    )
    .await?;
    // Without the metadata we do not know the piece count: bitfields are bounded generically.
    let limits = Limits::default().with_v2(v2.is_some());
    let (their_id, size) = loop {
        if let Message::Extended { id: 0, payload } =
            read_message(&mut stream, &mut buf, &limits).await?
        {
            let theirs =
                ExtendedHandshake::decode(&payload).map_err(|e| PeerFailure::Io(e.to_string()))?;
            match (theirs.id_of("ut_metadata"), theirs.metadata_size) {
                (Some(id), Some(size)) if size > 0 && size <= MAX_METADATA_SIZE => {
                    break (id, size)
                }
                _ => return Err(PeerFailure::NoMetadata),
            }
        }
    };
    let pieces = size.div_ceil(METADATA_PIECE_SIZE as u64) as u32;
    // Grows as pieces really arrive: the announced size is the peer's word, not a reason to
    // allocate up to 16 MiB per connection.
    let mut info = Vec::new();
    for piece in 0..pieces {
        send(
            &mut stream,
            Message::Extended {
                id: their_id,
                payload: MetadataMessage::Request { piece }.encode(),
            },
        )
        .await?;
        let data: Bytes = loop {
            let msg = read_message(&mut stream, &mut buf, &limits).await?;
            let Message::Extended {
                id: UT_METADATA_ID,
                payload,
            } = msg
            else {
                continue;
            };
            match MetadataMessage::decode(&payload).map_err(|e| PeerFailure::Io(e.to_string()))? {
                MetadataMessage::Data {
                    piece: p,
                    total_size,
                    data,
                } if p == piece => {
                    if total_size != size {
                        return Err(PeerFailure::WrongHash);
                    }
                    break data;
                }
                MetadataMessage::Reject { piece: p } if p == piece => {
                    return Err(PeerFailure::NoMetadata)
                }
                _ => continue,
            }
        };
        let expected = (size as usize - info.len()).min(METADATA_PIECE_SIZE);
        if data.len() != expected {
            return Err(PeerFailure::WrongHash);
        }
        info.extend_from_slice(&data);
    }
    let matches = match v2 {
        // A v2-only link's 20-byte hash is the SHA-256 cut short: check the whole of it.
        Some(h) if h.truncated() == info_hash => info_hash_v2_of(&info) == h,
        Some(h) => info_hash_v2_of(&info) == h && info_hash_of(&info) == info_hash,
        None => info_hash_of(&info) == info_hash,
    };
    if !matches {
        return Err(PeerFailure::WrongHash);
    }
    let Some(v2) = v2 else {
        return Ok((info, None));
    };
    // Only a connection in the v2 swarm may carry hash requests (libtorrent drops others).
    let in_v2_swarm = theirs.info_hash == v2.truncated();
    let hybrid = v2.truncated() != info_hash;
    let layers = if in_v2_swarm {
        fetch_layers(&mut stream, &mut buf, &limits, &info).await
    } else {
        Err(PeerFailure::NoPieceLayers(
            "the peer is not in the v2 swarm".into(),
        ))
    };
    match layers {
        Ok(layers) => Ok((info, Some(layers))),
        Err(e) if hybrid => {
            debug!(%addr, "hybrid metadata without piece layers: {e}");
            Ok((info, None))
        }
        Err(e) => Err(e),
    }
}

/// Asks for every piece layer the dictionary `info` needs and proves each answer.
async fn fetch_layers(
    stream: &mut PeerStream,
    buf: &mut BytesMut,
    limits: &Limits,
    info: &[u8],
) -> Result<BTreeMap<Id32, Vec<Id32>>, PeerFailure> {
    let meta = shoal_metainfo::Metainfo::from_info_bytes(info, Vec::new())
        .map_err(|e| PeerFailure::NoPieceLayers(format!("invalid metadata: {e}")))?;
    let mut fetch = shoal_torrent::PieceLayerFetch::new(&meta.info);
    for req in fetch.requests() {
        send(stream, Message::HashRequest(req)).await?;
    }
    // Each answer must come within the per-message timeout (`read_message`).
    while !fetch.is_done() {
        match read_message(stream, buf, limits).await? {
            Message::Hashes { req, hashes } if !fetch.on_hashes(&req, &hashes) => {
                return Err(PeerFailure::NoPieceLayers(
                    "hashes that do not prove out".into(),
                ));
            }
            Message::HashReject(_) => {
                return Err(PeerFailure::NoPieceLayers("hash request rejected".into()))
            }
            _ => {}
        }
    }
    Ok(fetch.into_layers())
}
