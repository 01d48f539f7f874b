//! BEP 11 peer exchange: what the machine tells its peers about its other peers.

use std::net::SocketAddr;

use shoal_core::Time;
use shoal_wire::Message;

use crate::torrent::{ConnId, Torrent, PEX_INTERVAL};

impl Torrent {
    /// BEP 11: tells each peer that speaks `ut_pex` which peers we are connected to (what changed
    /// since the last message), at most once a minute.
    pub(super) fn send_pex(&mut self, now: Time) {
        if self.config.private {
            return;
        }
        let connected: Vec<(ConnId, SocketAddr)> = self
            .peers
            .iter()
            .filter_map(|(k, p)| p.listen_addr().map(|a| (*k, a)))
            .collect();
        let mut out = Vec::new();
        // In key and address order: hash-map order must not reach the wire.
        for key in self.conns_sorted() {
            let Some(p) = self.peers.get_mut(&key) else {
                continue;
            };
            let key = &key;
            let Some(their_id) = p.pex_id else {
                continue;
            };
            if now < p.next_pex_at {
                continue;
            }
            p.next_pex_at = now + PEX_INTERVAL;
            let current: std::collections::BTreeSet<SocketAddr> = connected
                .iter()
                .filter(|(k, _)| k != key)
                .map(|(_, a)| *a)
                .collect();
            let msg = shoal_wire::PexMessage {
                added: current
                    .iter()
                    .filter(|a| !p.pex_sent.contains(a))
                    .copied()
                    .take(shoal_wire::MAX_PEX_PEERS)
                    .collect(),
                dropped: {
                    let mut d: Vec<SocketAddr> = p
                        .pex_sent
                        .iter()
                        .filter(|a| !current.contains(a))
                        .copied()
                        .collect();
                    d.sort_unstable();
                    d.truncate(shoal_wire::MAX_PEX_PEERS);
                    d
                },
            };
            if msg.added.is_empty() && msg.dropped.is_empty() {
                continue;
            }
            for a in &msg.added {
                p.pex_sent.insert(*a);
            }
            for d in &msg.dropped {
                p.pex_sent.remove(d);
            }
            out.push((
                *key,
                Message::Extended {
                    id: their_id,
                    payload: msg.encode(),
                },
            ));
        }
        for (k, m) in out {
            self.send(k, m);
        }
    }
}
