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
        for (key, p) in self.peers.iter_mut() {
            let Some(their_id) = p.extended.as_ref().and_then(|e| e.id_of("ut_pex")) else {
                continue;
            };
            if now < p.next_pex_at {
                continue;
            }
            p.next_pex_at = now + PEX_INTERVAL;
            let current: std::collections::HashSet<SocketAddr> = connected
                .iter()
                .filter(|(k, _)| k != key)
                .map(|(_, a)| *a)
                .collect();
            let msg = shoal_wire::PexMessage {
                added: current
                    .difference(&p.pex_sent)
                    .copied()
                    .take(shoal_wire::MAX_PEX_PEERS)
                    .collect(),
                dropped: p
                    .pex_sent
                    .difference(&current)
                    .copied()
                    .take(shoal_wire::MAX_PEX_PEERS)
                    .collect(),
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
