//! Per-block evidence for bans, as libtorrent's smart ban: when a piece fails its hash check,
//! remember who sent each block and a hash of what they sent; when the piece later passes, the
//! senders whose blocks differ from the good data are the culprits. Nobody is banned on shared
//! blame alone, so a hostile peer cannot get an honest one banned by mixing bad blocks into the
//! pieces the honest one completes.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// SHA-1 of one block's data.
pub type BlockHash = [u8; 20];

/// Pieces with evidence kept at once (a hostile swarm cannot grow it without bound).
const MAX_PIECES: usize = 256;
/// (sender, hash) records kept in all, whatever the piece size (about 2.5 MiB): with 16 MiB
/// pieces, 256 pieces of evidence would otherwise be a million records.
const MAX_RECORDS: usize = 65_536;
/// Distinct (sender, data) records kept per block across failures.
const MAX_RECORDS_PER_BLOCK: usize = 4;

/// Evidence of failed pieces, waiting for the piece to pass.
#[derive(Debug, Default)]
pub struct SmartBan {
    /// Per piece, per block: who sent which data in the failed attempts.
    pieces: HashMap<u32, Vec<Vec<(IpAddr, BlockHash)>>>,
    order: VecDeque<u32>,
    records: usize,
}

impl SmartBan {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether evidence is kept for `piece` (its passing data must then be hashed per block).
    pub fn has_evidence(&self, piece: u32) -> bool {
        self.pieces.contains_key(&piece)
    }

    fn forget_oldest(&mut self) {
        if let Some(old) = self.order.pop_front() {
            if let Some(blocks) = self.pieces.remove(&old) {
                self.records -= blocks.iter().map(Vec::len).sum::<usize>();
            }
        }
    }

    /// Records a failed attempt: `senders[i]` sent block `i`, whose data hashed to `hashes[i]`.
    pub fn record_failure(&mut self, piece: u32, senders: &[Option<IpAddr>], hashes: &[BlockHash]) {
        if !self.pieces.contains_key(&piece) {
            while self.order.len() >= MAX_PIECES
                || (self.records + hashes.len() > MAX_RECORDS && !self.order.is_empty())
            {
                self.forget_oldest();
            }
            self.order.push_back(piece);
        }
        let blocks = self
            .pieces
            .entry(piece)
            .or_insert_with(|| vec![Vec::new(); hashes.len()]);
        if blocks.len() != hashes.len() {
            return;
        }
        for (i, (sender, hash)) in senders.iter().zip(hashes).enumerate() {
            let Some(ip) = sender else { continue };
            let records = &mut blocks[i];
            if !records.contains(&(*ip, *hash)) && records.len() < MAX_RECORDS_PER_BLOCK {
                records.push((*ip, *hash));
                self.records += 1;
            }
        }
    }

    /// The piece passed with these block hashes: returns the IPs that sent a block whose data
    /// differs from the good data (each once), and forgets the piece.
    pub fn on_pass(&mut self, piece: u32, good: &[BlockHash]) -> Vec<IpAddr> {
        let Some(blocks) = self.pieces.remove(&piece) else {
            return Vec::new();
        };
        self.records -= blocks.iter().map(Vec::len).sum::<usize>();
        self.order.retain(|p| *p != piece);
        let mut culprits = Vec::new();
        for (records, good) in blocks.iter().zip(good) {
            for (ip, hash) in records {
                if hash != good && !culprits.contains(ip) {
                    culprits.push(*ip);
                }
            }
        }
        culprits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_senders_of_differing_blocks_are_culprits() {
        let honest: IpAddr = "127.0.0.2".parse().unwrap();
        let liar: IpAddr = "127.0.0.3".parse().unwrap();
        let mut sb = SmartBan::new();
        // Block 0 and 2 from the honest peer, block 1 from the liar; the piece fails.
        sb.record_failure(
            7,
            &[Some(honest), Some(liar), Some(honest)],
            &[[1; 20], [9; 20], [3; 20]],
        );
        assert!(sb.has_evidence(7));
        // Later it passes: block 1's good data is [2; 20].
        assert_eq!(sb.on_pass(7, &[[1; 20], [2; 20], [3; 20]]), vec![liar]);
        assert!(!sb.has_evidence(7));
        assert!(sb.on_pass(7, &[[1; 20], [2; 20], [3; 20]]).is_empty());
    }

    #[test]
    fn evidence_is_bounded() {
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let mut sb = SmartBan::new();
        for p in 0..(MAX_PIECES as u32 + 10) {
            sb.record_failure(p, &[Some(ip)], &[[0; 20]]);
        }
        assert_eq!(sb.pieces.len(), MAX_PIECES);
        assert!(!sb.has_evidence(0));
        // Big pieces: the record budget binds first.
        let mut sb = SmartBan::new();
        let senders = vec![Some(ip); 4096];
        let hashes = vec![[1; 20]; 4096];
        for p in 0..40 {
            sb.record_failure(p, &senders, &hashes);
        }
        assert!(sb.records <= MAX_RECORDS);
        assert_eq!(sb.pieces.len(), MAX_RECORDS / 4096);
    }
}
