//! A torrent's latest status, published by whichever run of it is awake and read by anyone.
//!
//! What `tokio::sync::watch` does, for this one use and smaller: a daemon keeps one per
//! torrent, asleep too, and a watch channel costs ~390 bytes besides its value (heaptrack; nine
//! wake-up lists), this one under 100 (one list). Readers see the latest value, and
//! [`StatusReceiver::changed`] waits for a newer one than they last marked seen.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use tokio::sync::Notify;

use crate::status::TorrentStatus;

/// Every sender is gone: no newer status will come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

struct Shared {
    value: RwLock<TorrentStatus>,
    /// Bumped after each change of `value`.
    version: AtomicU64,
    senders: AtomicUsize,
    changed: Notify,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, TorrentStatus> {
        // A panic while writing a plain snapshot leaves it whole enough to read.
        self.value.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// The publishing side (clonable: the session keeps one while the torrent sleeps, its actor
/// one while it runs).
pub struct StatusSender {
    shared: Arc<Shared>,
}

/// A reader: the latest status, and waiting for a newer one.
pub struct StatusReceiver {
    shared: Arc<Shared>,
    seen: u64,
}

/// A new status cell holding `initial`.
pub fn status_channel(initial: TorrentStatus) -> (StatusSender, StatusReceiver) {
    let shared = Arc::new(Shared {
        value: RwLock::new(initial),
        version: AtomicU64::new(0),
        senders: AtomicUsize::new(1),
        changed: Notify::new(),
    });
    let rx = StatusReceiver {
        shared: shared.clone(),
        seen: 0,
    };
    (StatusSender { shared }, rx)
}

impl StatusSender {
    /// Publishes `status`, returning the one it replaces.
    pub fn send_replace(&self, status: TorrentStatus) -> TorrentStatus {
        let old = {
            let mut v = self.shared.value.write().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *v, status)
        };
        self.bump();
        old
    }

    /// Changes the published status in place.
    pub fn send_modify(&self, change: impl FnOnce(&mut TorrentStatus)) {
        {
            let mut v = self.shared.value.write().unwrap_or_else(|e| e.into_inner());
            change(&mut v);
        }
        self.bump();
    }

    fn bump(&self) {
        self.shared.version.fetch_add(1, Ordering::Release);
        self.shared.changed.notify_waiters();
    }

    /// The published status (hold it briefly: the publisher waits for it).
    pub fn borrow(&self) -> RwLockReadGuard<'_, TorrentStatus> {
        self.shared.read()
    }

    /// A new reader, which has seen the current status.
    pub fn subscribe(&self) -> StatusReceiver {
        StatusReceiver {
            shared: self.shared.clone(),
            seen: self.shared.version.load(Ordering::Acquire),
        }
    }
}

impl Clone for StatusSender {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        StatusSender {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for StatusSender {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.changed.notify_waiters();
        }
    }
}

impl StatusReceiver {
    /// The latest status (hold it briefly, and never across an `.await`).
    pub fn borrow(&self) -> RwLockReadGuard<'_, TorrentStatus> {
        self.shared.read()
    }

    /// The latest status, marked seen.
    pub fn borrow_and_update(&mut self) -> RwLockReadGuard<'_, TorrentStatus> {
        self.seen = self.shared.version.load(Ordering::Acquire);
        self.shared.read()
    }

    /// Waits for a status newer than the last one marked seen, and marks it seen. `Err` once
    /// every sender is gone with nothing newer. Cancel-safe (for `select!`).
    pub async fn changed(&mut self) -> Result<(), Closed> {
        loop {
            // Registered before looking, so a change between the look and the wait wakes it.
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let version = self.shared.version.load(Ordering::Acquire);
            if version != self.seen {
                self.seen = version;
                return Ok(());
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                return Err(Closed);
            }
            notified.await;
        }
    }

    /// Waits until the latest status satisfies `done`, and returns it.
    pub async fn wait_for(
        &mut self,
        mut done: impl FnMut(&TorrentStatus) -> bool,
    ) -> Result<RwLockReadGuard<'_, TorrentStatus>, Closed> {
        loop {
            if done(&self.borrow_and_update()) {
                return Ok(self.shared.read());
            }
            self.changed().await?;
        }
    }
}

impl Clone for StatusReceiver {
    fn clone(&self) -> Self {
        StatusReceiver {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

impl std::fmt::Debug for StatusReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusReceiver")
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::TorrentState;
    use std::time::Duration;

    #[tokio::test]
    async fn a_reader_wakes_for_each_change_and_sees_the_latest() {
        let (tx, mut rx) = status_channel(TorrentStatus::default());
        let waiter = tokio::spawn(async move {
            rx.changed().await.unwrap();
            let peers = rx.borrow().peers;
            (rx, peers)
        });
        tokio::task::yield_now().await;
        tx.send_modify(|s| s.peers = 3);
        let (mut rx, peers) = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(peers, 3);
        // Seen: no change is pending until the next one.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), rx.changed())
                .await
                .is_err()
        );
        let old = tx.send_replace(TorrentStatus {
            peers: 5,
            ..TorrentStatus::default()
        });
        assert_eq!(old.peers, 3);
        rx.changed().await.unwrap();
        assert_eq!(rx.borrow().peers, 5);
    }

    #[tokio::test]
    async fn a_change_made_before_waiting_is_not_lost() {
        let (tx, rx) = status_channel(TorrentStatus::default());
        let mut late = rx.clone();
        tx.send_modify(|s| s.peers = 1);
        tokio::time::timeout(Duration::from_secs(5), late.changed())
            .await
            .unwrap()
            .unwrap();
        // A new subscriber has seen what was there when it came.
        let mut fresh = tx.subscribe();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), fresh.changed())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn readers_learn_when_every_sender_is_gone() {
        let (tx, mut rx) = status_channel(TorrentStatus::default());
        let tx2 = tx.clone();
        drop(tx);
        tx2.send_modify(|s| s.state = TorrentState::Seeding);
        let waiter = tokio::spawn(async move {
            let done = rx.wait_for(|s| s.peers == 9).await.map(|_| ());
            (rx, done)
        });
        tokio::task::yield_now().await;
        drop(tx2);
        let (rx, done) = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(done, Err(Closed));
        // The last status stays readable.
        assert!(rx.borrow().is_complete());
    }
}
