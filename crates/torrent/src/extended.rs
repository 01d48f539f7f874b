//! BEP 10 extension messages: the extended handshake, `ut_pex` from peers (BEP 11) and serving
//! our info dictionary over `ut_metadata` (BEP 9).

use std::net::SocketAddr;

use bytes::Bytes;
use shoal_core::Time;
use shoal_wire::{ExtendedHandshake, Message, MetadataMessage};

use crate::torrent::{ConnId, Torrent, UT_METADATA_ID, UT_PEX_ID};
use crate::violation::PeerViolation;

/// The shortest gap between two `ut_pex` messages taken from one peer (BEP 11 says a minute; a
/// little slack for clocks and queues).
const PEX_MIN_GAP: std::time::Duration = std::time::Duration::from_secs(45);

impl Torrent {
    pub(crate) fn on_extended(
        &mut self,
        now: Time,
        conn: ConnId,
        id: u8,
        payload: Bytes,
    ) -> Result<(), PeerViolation> {
        if id == 0 {
            let hs = ExtendedHandshake::decode(&payload)
                .map_err(|e| PeerViolation::BadExtension(e.to_string()))?;
            let Some(peer) = self.peers.get_mut(&conn) else {
                return Ok(());
            };
            if let Some(reqq) = hs.reqq {
                peer.reqq = (reqq as usize).max(1);
            }
            let listen = match (peer.outgoing, peer.book_addr, hs.listen_port) {
                (false, None, Some(port)) => Some(SocketAddr::new(peer.addr.ip(), port)),
                _ => None,
            };
            peer.pex_id = hs.id_of("ut_pex");
            peer.extended = Some(hs);
            if let Some(addr) = listen {
                // An incoming peer tells us where it listens: not dialled while it is connected,
                // and dialled again after it leaves.
                if !self.book.in_use(addr) {
                    self.book.connecting(addr, now);
                    if let Some(p) = self.peers.get_mut(&conn) {
                        p.book_addr = Some(addr);
                    }
                }
            }
            return Ok(());
        }
        if self.config.private {
            return Ok(());
        }
        if id == UT_PEX_ID {
            let pex = shoal_wire::PexMessage::decode(&payload)
                .map_err(|e| PeerViolation::BadExtension(e.to_string()))?;
            // BEP 11 allows one message a minute; a flood must not fill the peer book.
            let Some(peer) = self.peers.get_mut(&conn) else {
                return Ok(());
            };
            if peer.last_pex_in.is_some_and(|t| now - t < PEX_MIN_GAP) {
                return Ok(());
            }
            peer.last_pex_in = Some(now);
            self.add_peers(now, pex.added);
            return Ok(());
        }
        if id != UT_METADATA_ID {
            return Ok(());
        }
        let msg = MetadataMessage::decode(&payload)
            .map_err(|e| PeerViolation::BadExtension(e.to_string()))?;
        let their_id = self
            .peers
            .get(&conn)
            .and_then(|p| p.extended.as_ref())
            .and_then(|e| e.id_of("ut_metadata"));
        let (MetadataMessage::Request { piece }, Some(their_id)) = (msg, their_id) else {
            return Ok(());
        };
        // Serve our info dictionary in 16 KiB pieces (BEP 9).
        let info = &self.config.info_bytes;
        let start = piece as usize * shoal_wire::METADATA_PIECE_SIZE;
        let reply = if start < info.len() {
            let end = (start + shoal_wire::METADATA_PIECE_SIZE).min(info.len());
            MetadataMessage::Data {
                piece,
                total_size: info.len() as u64,
                data: info.slice(start..end),
            }
        } else {
            MetadataMessage::Reject { piece }
        };
        self.send(
            conn,
            Message::Extended {
                id: their_id,
                payload: reply.encode(),
            },
        );
        Ok(())
    }
}
