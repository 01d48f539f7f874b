//! Web seeds (BEP 19) as links of the torrent machine.
//!
//! Each `url-list` entry gets a task that connects to the server, asks the torrent actor to admit
//! it as a peer (the machine then sees a peer with every piece that never chokes, so the usual
//! picker, request deadlines, stall detection and hash checks apply to it), and turns the block
//! requests it receives into HTTP range requests and the answers back into `piece` messages.
//! When the server fails, the link closes (its requests go to other peers at once) and the task
//! waits — the server's `Retry-After`, else 30 s doubling — before trying again. A web seed whose
//! data fails the hash is banned by its IP like a peer: the machine refuses it from then on and
//! the task ends.

use std::net::SocketAddr;

use shoal_core::Id20;
use shoal_storage::Layout;
use shoal_webseed::{Backoff, BlockRequest, HttpSource, RequestQueue, RunAssembler, WebSeedUrl};
use shoal_wire::{BlockRef, Message};
use tokio::sync::{mpsc, oneshot};

use shoal_torrent::CloseReason;

use crate::connection::{LinkEvent, LinkId, PEER_QUEUE};
use crate::receive_budget::ReceiveCredit;
use crate::torrent::Event;

/// The actor's answer to a web seed that is ready to serve.
#[derive(Debug)]
pub enum Admission {
    /// Admitted as link `LinkId`: its messages arrive on the receiver.
    Go(LinkId, mpsc::Receiver<Message>),
    /// Not now (too many peers): ask again later.
    Later,
    /// Never again (banned, or nothing left to download).
    Never,
}

/// One web seed's state for the status display.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebSeedReport {
    /// The `url-list` entry.
    pub url: String,
    /// Serving us now.
    pub connected: bool,
    /// Payload bytes received from it (counted by the actor as its blocks arrive).
    pub downloaded: u64,
    /// "ok", or the last error and when it is tried again.
    pub message: String,
}

/// What a web seed task tells the actor.
#[derive(Debug)]
pub enum WebSeedEvent {
    /// Connected to the server at `addr`: admit it?
    Ready {
        /// Index in the torrent's web seeds.
        index: usize,
        /// The server's address (bans apply to it).
        addr: SocketAddr,
        /// The synthetic peer id it is known by.
        peer_id: Id20,
        /// The answer.
        reply: oneshot::Sender<Admission>,
    },
    /// Its state changed.
    Report(usize, WebSeedReport),
}

/// What a web seed needs to know of its torrent.
#[derive(Clone)]
pub struct WebSeedTorrent {
    /// Pieces to files.
    pub layout: Layout,
    /// The torrent's files' lengths (for checking the server's sizes).
    pub file_lengths: Vec<u64>,
    /// Local addresses to connect from.
    pub bind: shoal_core::LocalBind,
}

/// A peer id for a web seed: fixed per URL, so the machine's duplicate check sees one peer.
pub fn web_seed_peer_id(url: &str) -> Id20 {
    use sha1::{Digest, Sha1};
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(b"-WS0000-");
    id[8..].copy_from_slice(&Sha1::digest(url.as_bytes())[..12]);
    Id20(id)
}

/// Runs web seed `index` until the actor says never (or goes away).
pub async fn run(
    index: usize,
    url: WebSeedUrl,
    torrent: WebSeedTorrent,
    events: mpsc::Sender<Event>,
) {
    let peer_id = web_seed_peer_id(&url.original);
    let mut report = WebSeedReport {
        url: url.original.clone(),
        ..Default::default()
    };
    let mut source = HttpSource::new(url, torrent.bind);
    let mut backoff = Backoff::default();
    loop {
        let failure = match source.connect().await {
            Err(e) => e,
            Ok(addr) => {
                let (reply, answer) = oneshot::channel();
                let ready = WebSeedEvent::Ready {
                    index,
                    addr,
                    peer_id,
                    reply,
                };
                if events.send(Event::WebSeed(ready)).await.is_err() {
                    return;
                }
                match answer.await {
                    Ok(Admission::Go(key, rx)) => {
                        report.connected = true;
                        report.message = "ok".into();
                        send_report(&events, index, &report).await;
                        let mut session = Admitted {
                            key,
                            events: &events,
                        };
                        let outcome =
                            serve(&mut session, &mut source, rx, &torrent, &mut backoff).await;
                        report.connected = false;
                        match outcome {
                            // The machine let it go (complete, or it found better peers):
                            // ask again after a while; the actor says never if nothing is left.
                            Ok(()) => {
                                send_report(&events, index, &report).await;
                                tokio::time::sleep(shoal_webseed::retry::FIRST_RETRY).await;
                                continue;
                            }
                            Err(e) => {
                                let _ = events
                                    .send(
                                        LinkEvent::Closed(key, CloseReason::Io(e.to_string()))
                                            .into(),
                                    )
                                    .await;
                                e
                            }
                        }
                    }
                    Ok(Admission::Later) => {
                        tokio::time::sleep(shoal_webseed::retry::FIRST_RETRY).await;
                        continue;
                    }
                    Ok(Admission::Never) | Err(_) => {
                        report.message = "not used any more".into();
                        send_report(&events, index, &report).await;
                        return;
                    }
                }
            }
        };
        if failure.is_permanent() {
            report.message = format!("{failure}: given up");
            send_report(&events, index, &report).await;
            return;
        }
        let wait = backoff.failed(failure.retry_after());
        report.message = format!("{failure}; retrying in {} s", wait.as_secs());
        tracing::debug!(url = %report.url, "web seed failed: {}", report.message);
        send_report(&events, index, &report).await;
        tokio::time::sleep(wait).await;
    }
}

async fn send_report(events: &mpsc::Sender<Event>, index: usize, report: &WebSeedReport) {
    let _ = events
        .send(Event::WebSeed(WebSeedEvent::Report(index, report.clone())))
        .await;
}

/// One admitted stay of a web seed among the torrent's peers.
struct Admitted<'a> {
    key: LinkId,
    events: &'a mpsc::Sender<Event>,
}

impl Admitted<'_> {
    /// Sends messages to the machine as from this link; `false` if the actor is gone.
    async fn send(&self, msgs: Vec<Message>) -> bool {
        msgs.is_empty()
            || self
                .events
                // Web-seed blocks claim no receive budget (as they bypass the rate caps).
                .send(LinkEvent::Messages(self.key, msgs, ReceiveCredit::default()).into())
                .await
                .is_ok()
    }

    /// Hands completed blocks to the machine as `piece` messages.
    async fn deliver(&self, blocks: Vec<(BlockRequest, bytes::Bytes)>) -> bool {
        let mut msgs = Vec::with_capacity(blocks.len());
        for (b, data) in blocks {
            msgs.push(Message::Piece {
                piece: b.piece,
                begin: b.begin,
                data,
            });
        }
        self.send(msgs).await
    }

    /// Answers requests it will not serve with `reject` (fast extension).
    async fn reject(&self, rejects: &mut Vec<BlockRequest>) -> bool {
        let msgs = rejects
            .drain(..)
            .map(|r| {
                Message::Reject(BlockRef {
                    piece: r.piece,
                    begin: r.begin,
                    length: r.length,
                })
            })
            .collect();
        self.send(msgs).await
    }
}

/// Serves one admitted session: requests in, range requests out, blocks back. `Ok` when the
/// actor dropped the link, `Err` when the server failed.
async fn serve(
    s: &mut Admitted<'_>,
    source: &mut HttpSource,
    mut rx: mpsc::Receiver<Message>,
    torrent: &WebSeedTorrent,
    backoff: &mut Backoff,
) -> Result<(), shoal_webseed::WebSeedError> {
    // A seed that never chokes.
    if !s.send(vec![Message::HaveAll, Message::Unchoke]).await {
        return Ok(());
    }
    let mut queue = RequestQueue::new(torrent.layout.clone());
    let mut rejects = Vec::new();
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                None => return Ok(()),
                Some(m) => take(&mut queue, m, &mut rejects),
            }
        }
        if !drain(&mut rx, &mut queue, &mut rejects) || !s.reject(&mut rejects).await {
            return Ok(());
        }
        let Some(run) = queue.next_run() else {
            continue;
        };
        let mut assembler = RunAssembler::new(run.blocks);
        let mut failed = None;
        'segments: for seg in run.segments {
            if seg.pad {
                let zeros = vec![0u8; seg.len as usize];
                if !s.deliver(assembler.push(&zeros)).await {
                    return Ok(());
                }
                continue;
            }
            let file_len = torrent
                .file_lengths
                .get(seg.file)
                .copied()
                .unwrap_or_default();
            let mut body = match source.get(seg.file, seg.offset, seg.len, file_len).await {
                Ok(b) => b,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            loop {
                match body.next().await {
                    Ok(Some(chunk)) => {
                        backoff.succeeded();
                        if !s.deliver(assembler.push(&chunk)).await {
                            return Ok(());
                        }
                        // Cancels and new requests meanwhile (never blocking the download).
                        if !drain(&mut rx, &mut queue, &mut rejects) {
                            return Ok(());
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        failed = Some(e);
                        break 'segments;
                    }
                }
            }
        }
        if let Some(e) = failed {
            // Everything still asked of it goes back to the machine for other peers.
            rejects.extend(assembler.unfinished());
            rejects.extend(queue.drain());
            s.reject(&mut rejects).await;
            return Err(e);
        }
    }
}

/// Applies one message from the machine.
fn take(queue: &mut RequestQueue, msg: Message, rejects: &mut Vec<BlockRequest>) {
    match msg {
        Message::Request(r) => {
            let req = block(r);
            if !queue.push(req) {
                rejects.push(req);
            }
        }
        Message::Cancel(r) => {
            // Fast extension: a cancelled request is answered (with the block or a reject).
            let req = block(r);
            let before = queue.len();
            queue.cancel(req);
            if queue.len() < before {
                rejects.push(req);
            }
        }
        // Interest, haves, keep-alives: a web seed has everything and needs nothing.
        _ => {}
    }
}

/// Applies every message waiting; `false` if the actor dropped the link.
fn drain(
    rx: &mut mpsc::Receiver<Message>,
    queue: &mut RequestQueue,
    rejects: &mut Vec<BlockRequest>,
) -> bool {
    loop {
        match rx.try_recv() {
            Ok(m) => take(queue, m, rejects),
            Err(mpsc::error::TryRecvError::Empty) => return true,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
}

fn block(r: BlockRef) -> BlockRequest {
    BlockRequest {
        piece: r.piece,
        begin: r.begin,
        length: r.length,
    }
}

/// The queue between the actor and a web seed task (as for a peer's writer).
pub fn link_channel() -> (mpsc::Sender<Message>, mpsc::Receiver<Message>) {
    mpsc::channel(PEER_QUEUE)
}
