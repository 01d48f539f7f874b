//! BEP 44 items stored for other nodes (`put`, `get`), with expiry and a cap on their number.
//! The checks that need no state are in [`crate::bep44`]; this file applies the ones that do:
//! `seq` never goes down and `cas` must match.

use std::collections::HashMap;
use std::time::Duration;

use shoal_core::{Id20, Time};

use crate::bep44::PutError;
use crate::krpc::MutableItem;

/// Limits of an [`ItemStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ItemStoreConfig {
    /// How long an item stays without a new `put` (BEP 44: items "MAY expire in 2 hours").
    pub ttl: Duration,
    /// Most items kept (libtorrent's `max_dht_items` default is 700). At 1000 bytes a value,
    /// the default bounds the store near 1 MB.
    pub max_items: usize,
}

impl Default for ItemStoreConfig {
    fn default() -> Self {
        ItemStoreConfig {
            ttl: Duration::from_secs(2 * 3600),
            max_items: 1000,
        }
    }
}

/// The signed part of a stored mutable item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMutable {
    /// Public key.
    pub key: [u8; 32],
    /// Signature of salt, seq and value.
    pub sig: [u8; 64],
    /// Sequence number.
    pub seq: i64,
}

/// One stored item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredItem {
    /// The bencoded value.
    pub value: Vec<u8>,
    /// Key, signature and seq of a mutable item.
    pub mutable: Option<StoredMutable>,
    /// When it is dropped unless put again.
    pub expires: Time,
}

/// Items by target.
#[derive(Clone, Debug)]
pub struct ItemStore {
    config: ItemStoreConfig,
    items: HashMap<Id20, StoredItem>,
}

impl ItemStore {
    /// An empty store.
    pub fn new(config: ItemStoreConfig) -> Self {
        ItemStore {
            config,
            items: HashMap::new(),
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True if nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The live item stored under `target`.
    pub fn get(&self, now: Time, target: &Id20) -> Option<&StoredItem> {
        self.items.get(target).filter(|i| i.expires > now)
    }

    /// Stores an item whose stateless checks ([`crate::bep44::check_put`]) passed and gave
    /// `target`. Mutable items follow BEP 44: `cas`, when given and something is stored, must
    /// equal the stored `seq`; a lower `seq` is refused, and an equal one only refreshes the
    /// same value.
    pub fn put(
        &mut self,
        now: Time,
        target: Id20,
        value: &[u8],
        mutable: Option<&MutableItem>,
    ) -> Result<(), PutError> {
        let expires = now + self.config.ttl;
        if let Some(old) = self.items.get_mut(&target).filter(|i| i.expires > now) {
            match (&old.mutable, mutable) {
                (Some(o), Some(m)) => {
                    if m.cas.is_some_and(|c| c != o.seq) {
                        return Err(PutError::CasMismatch);
                    }
                    if m.seq < o.seq || (m.seq == o.seq && old.value != value) {
                        return Err(PutError::SeqTooLow);
                    }
                }
                // An immutable target is a hash of its value: same target, same value.
                (None, None) => {
                    old.expires = expires;
                    return Ok(());
                }
                // A mutable and an immutable item cannot share a target without a SHA-1
                // collision; keep what is there.
                _ => return Err(PutError::BadValue),
            }
        } else if self.items.len() >= self.config.max_items {
            self.expire(now);
            if self.items.len() >= self.config.max_items {
                // Full of live items: the one closest to expiry (least recently put) goes.
                if let Some(oldest) = self
                    .items
                    .iter()
                    .min_by_key(|(t, i)| (i.expires, **t))
                    .map(|(t, _)| *t)
                {
                    self.items.remove(&oldest);
                }
            }
        }
        self.items.insert(
            target,
            StoredItem {
                value: value.to_vec(),
                mutable: mutable.map(|m| StoredMutable {
                    key: m.key,
                    sig: m.sig,
                    seq: m.seq,
                }),
                expires,
            },
        );
        Ok(())
    }

    /// Drops expired items.
    pub fn expire(&mut self, now: Time) {
        self.items.retain(|_, i| i.expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(seq: i64, cas: Option<i64>) -> MutableItem {
        MutableItem {
            key: [1; 32],
            sig: [2; 64],
            seq,
            salt: Vec::new(),
            cas,
        }
    }

    #[test]
    fn seq_and_cas_rules() {
        let mut s = ItemStore::new(ItemStoreConfig::default());
        let t = Id20([5; 20]);
        let now = Time::ZERO;
        assert_eq!(s.put(now, t, b"i1e", Some(&m(3, Some(99)))), Ok(()));
        assert_eq!(
            s.put(now, t, b"i2e", Some(&m(2, None))),
            Err(PutError::SeqTooLow)
        );
        assert_eq!(
            s.put(now, t, b"i2e", Some(&m(3, None))),
            Err(PutError::SeqTooLow)
        );
        assert_eq!(s.put(now, t, b"i1e", Some(&m(3, None))), Ok(()));
        assert_eq!(
            s.put(now, t, b"i2e", Some(&m(4, Some(2)))),
            Err(PutError::CasMismatch)
        );
        assert_eq!(s.put(now, t, b"i2e", Some(&m(4, Some(3)))), Ok(()));
        assert_eq!(s.get(now, &t).unwrap().value, b"i2e");
        assert_eq!(s.get(now, &t).unwrap().mutable.as_ref().unwrap().seq, 4);
    }

    #[test]
    fn expiry_and_cap() {
        let cfg = ItemStoreConfig {
            ttl: Duration::from_secs(60),
            max_items: 2,
        };
        let mut s = ItemStore::new(cfg);
        for i in 0..3u8 {
            s.put(Time::from_secs(i as u64), Id20([i; 20]), b"i0e", None)
                .unwrap();
        }
        assert_eq!(s.len(), 2);
        assert!(s.get(Time::from_secs(3), &Id20([0; 20])).is_none());
        assert!(s.get(Time::from_secs(3), &Id20([2; 20])).is_some());
        assert!(s.get(Time::from_secs(100), &Id20([2; 20])).is_none());
        s.expire(Time::from_secs(100));
        assert!(s.is_empty());
    }
}
