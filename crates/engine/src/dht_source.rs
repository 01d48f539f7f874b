//! The Mainline DHT as a peer source: the session runs one DHT node; each public torrent looks
//! its info-hash up (feeding the peers found to its actor) and announces itself, again and again.

use std::net::SocketAddr;
use std::time::Duration;

use shoal_core::Id20;
use shoal_dht::driver::Dht;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info};

use crate::torrent::Event;

/// Re-announce interval once the swarm is going (BEP 5 leaves it open; libtorrent announces every
/// 15 minutes, peers' entries expire after 30).
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// Lookup interval while a download has no peers: the swarm may just be forming (libtorrent's
/// default is also short at start; 10 s keeps a local swarm quick without flooding).
pub const EAGER_INTERVAL: Duration = Duration::from_secs(10);

/// Starts the DHT task of one torrent. It waits for `bootstrapped` to become true, then looks up
/// and announces until the handle is aborted.
pub fn spawn(
    dht: Dht,
    info_hash: Id20,
    port: u16,
    bootstrapped: watch::Receiver<bool>,
    status: crate::status_watch::StatusReceiver,
    events: mpsc::Sender<Event>,
) -> JoinHandle<()> {
    tokio::spawn(run(dht, info_hash, port, bootstrapped, status, events))
}

async fn run(
    dht: Dht,
    info_hash: Id20,
    port: u16,
    mut bootstrapped: watch::Receiver<bool>,
    status: crate::status_watch::StatusReceiver,
    events: mpsc::Sender<Event>,
) {
    if bootstrapped.wait_for(|b| *b).await.is_err() {
        return;
    }
    loop {
        let mut found = 0usize;
        match dht.get_peers(info_hash).await {
            Ok(mut rx) => {
                let mut batch: Vec<SocketAddr> = Vec::new();
                loop {
                    // Hand peers over in small batches as they arrive.
                    let got = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
                    match got {
                        Ok(Some(addr)) => {
                            found += 1;
                            batch.push(addr);
                            if batch.len() < 16 {
                                continue;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {}
                    }
                    if !batch.is_empty()
                        && events
                            .send(Event::AddPeers(std::mem::take(&mut batch)))
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
                if !batch.is_empty() && events.send(Event::AddPeers(batch)).await.is_err() {
                    return;
                }
            }
            Err(e) => debug!("DHT lookup failed: {e}"),
        }
        let acked = match dht.announce(info_hash, Some(port)).await {
            Ok(r) => {
                info!(%info_hash, acked = r.acked, found, "DHT announce");
                r.acked
            }
            Err(e) => {
                debug!("DHT announce failed: {e}");
                0
            }
        };
        let s = status.borrow().clone();
        let wait = if acked == 0 || (s.peers == 0 && !s.is_complete()) {
            EAGER_INTERVAL
        } else {
            ANNOUNCE_INTERVAL
        };
        tokio::time::sleep(wait).await;
    }
}
