//! A bound on the block payload a torrent holds between its sockets and the disk (libtorrent's
//! `max_queued_disk_bytes`, whose default is 1 MiB).
//!
//! Without it, a disk (or hash) slower than the network lets the next write batch grow without
//! limit: every block read meanwhile waits in memory, and with it the whole read buffer it was
//! cut from. A reader claims credit for the payload of what it read before handing it on and
//! waits while the torrent holds a full budget; the credit comes back once the write batch that
//! took those blocks is done (or at once if none of them was written).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A torrent's budget to start with: two write batches' worth (libtorrent holds 1 MiB, but its
/// disk queue is asynchronous). For 1 GiB from one seeder the leecher's anonymous peak is
/// 5.4 MiB with 2 MiB, 8.4 with 4 MiB, 12.2 unbounded, at the same speed (README, Benchmarks).
pub const RECEIVE_BUDGET_BYTES: usize = 2 << 20;

/// The budget grows by this much per connected peer, up to [`RECEIVE_BUDGET_MAX`]: a waiting
/// reader delays every message of its peer, not only blocks, so a budget tight for the number
/// of peers costs swarms: 1 seed + 16 leechers x 256 MiB took 1.38x libtorrent's time with a
/// fixed 2 MiB (6 % duplicate blocks from expired requests), 0.97x with 4 MiB (what 16 peers get
/// here), 1.01x unbounded.
pub const RECEIVE_BUDGET_PER_PEER: usize = 256 << 10;

/// The most a torrent's budget grows to.
pub const RECEIVE_BUDGET_MAX: usize = 8 << 20;

/// The budget for a torrent with `peers` connected.
pub fn budget_for_peers(peers: usize) -> usize {
    peers
        .saturating_mul(RECEIVE_BUDGET_PER_PEER)
        .clamp(RECEIVE_BUDGET_BYTES, RECEIVE_BUDGET_MAX)
}

/// Shared by a torrent's readers.
#[derive(Clone, Debug)]
pub struct ReceiveBudget {
    bytes: Arc<Semaphore>,
    /// The whole budget; it only grows (credit out cannot be taken back, and a torrent that had
    /// many peers is likely to again).
    cap: Arc<AtomicUsize>,
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
            cap: Arc::new(AtomicUsize::new(cap)),
        }
    }

    /// Raises the whole budget to `cap` bytes (never lowers it).
    pub fn grow_to(&self, cap: usize) {
        let cap = cap.min(u32::MAX as usize);
        let old = self.cap.fetch_max(cap, Ordering::AcqRel);
        if cap > old {
            self.bytes.add_permits(cap - old);
        }
    }

    /// The whole budget now.
    pub fn cap(&self) -> usize {
        self.cap.load(Ordering::Acquire)
    }

    /// Waits until `bytes` (at most the whole budget, so one large read never waits forever)
    /// are free and claims them.
    pub async fn claim(&self, bytes: usize) -> ReceiveCredit {
        if bytes == 0 {
            return ReceiveCredit::default();
        }
        let n = bytes.min(self.cap()) as u32;
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
    async fn a_grown_budget_frees_a_waiting_reader() {
        let budget = ReceiveBudget::new(100);
        let _all = budget.claim(100).await;
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.claim(30).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        budget.grow_to(130);
        budget.grow_to(50); // never shrinks
        let _more = waiting.await.unwrap();
        assert_eq!(budget.cap(), 130);
        assert_eq!(budget.available(), 0);
    }

    #[test]
    fn the_budget_follows_the_peers_within_its_bounds() {
        assert_eq!(budget_for_peers(0), RECEIVE_BUDGET_BYTES);
        assert_eq!(budget_for_peers(1), RECEIVE_BUDGET_BYTES);
        assert_eq!(budget_for_peers(16), 4 << 20);
        assert_eq!(budget_for_peers(10_000), RECEIVE_BUDGET_MAX);
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
