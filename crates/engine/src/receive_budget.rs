//! A bound on the block payload a torrent holds between its sockets and the disk (libtorrent's
//! `max_queued_disk_bytes`, whose default is 1 MiB).
//!
//! Without it, a disk (or hash) slower than the network lets the next write batch grow without
//! limit: every block read meanwhile waits in memory, and with it the whole read buffer it was
//! cut from. A reader claims credit for the payload of what it read before handing it on and
//! waits while the torrent holds a full budget; the credit comes back once the write batch that
//! took those blocks is done (or at once if none of them was written).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A torrent's budget: four write batches' worth (libtorrent holds 1 MiB, but its disk queue
/// is asynchronous). A waiting reader delays every message of its peer, not only blocks, so a
/// tight budget costs swarms: 1 seed + 16 leechers x 256 MiB took 1.38x libtorrent's time with
/// 2 MiB (6 % duplicate blocks from expired requests), 0.97x with 4 MiB, 1.01x unbounded. For
/// 1 GiB from one seeder the leecher's anonymous peak is 8.4 MiB with 4 MiB, 12.2 unbounded
/// (README, Benchmarks).
pub const RECEIVE_BUDGET_BYTES: usize = 4 << 20;

/// Shared by a torrent's readers.
#[derive(Clone, Debug)]
pub struct ReceiveBudget {
    bytes: Arc<Semaphore>,
    cap: usize,
}

/// Credit claimed from a [`ReceiveBudget`], given back when dropped. The default holds none.
#[derive(Debug, Default)]
pub struct ReceiveCredit {
    _held: Option<OwnedSemaphorePermit>,
}

impl ReceiveBudget {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> ReceiveBudget {
        let cap = cap.clamp(1, u32::MAX as usize);
        ReceiveBudget {
            bytes: Arc::new(Semaphore::new(cap)),
            cap,
        }
    }

    /// Waits until `bytes` (at most the whole budget, so one large read never waits forever)
    /// are free and claims them.
    pub async fn claim(&self, bytes: usize) -> ReceiveCredit {
        if bytes == 0 {
            return ReceiveCredit::default();
        }
        let n = bytes.min(self.cap) as u32;
        // The semaphore is never closed; a closed one would mean no bound, not a stuck reader.
        ReceiveCredit {
            _held: self.bytes.clone().acquire_many_owned(n).await.ok(),
        }
    }

    /// Bytes free now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_claim_waits_until_credit_comes_back() {
        let budget = ReceiveBudget::new(100);
        let first = budget.claim(80).await;
        assert_eq!(budget.available(), 20);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.claim(50).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(budget.available(), 50);
        drop(second);
        assert_eq!(budget.available(), 100);
    }

    #[tokio::test]
    async fn a_claim_larger_than_the_budget_takes_all_of_it() {
        let budget = ReceiveBudget::new(100);
        let all = budget.claim(1_000).await;
        assert_eq!(budget.available(), 0);
        drop(all);
        let none = budget.claim(0).await;
        assert_eq!(budget.available(), 100);
        drop(none);
    }
}
