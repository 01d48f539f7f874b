//! The choker: regular tit-for-tat slots, seed round robin, optimistic unchoke, anti-snubbing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use shoal_core::Time;

use crate::stats::History;
use crate::{PeerKey, PeerStats};

/// Tunables of a [`Choker`]. The defaults are the classic numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChokerConfig {
    /// Regular (reciprocation) slots: 4, as BEP 3 and the original client ("four peers").
    pub regular_slots: usize,
    /// Optimistic slots when nobody is snubbed: 1.
    pub optimistic_slots: usize,
    /// How often slots are recomputed: 10 s (BEP 3, libtorrent's `unchoke_interval`).
    pub round: Duration,
    /// How often the optimistic unchoke rotates: 30 s (BEP 3, libtorrent's
    /// `optimistic_unchoke_interval`).
    pub optimistic_rotation: Duration,
    /// Peers connected for less than this are newcomers: 60 s.
    pub newcomer_age: Duration,
    /// How much likelier a newcomer is to get the optimistic slot: 3 (Cohen 2003: "three times
    /// as likely", so that new peers quickly get a piece to trade).
    pub newcomer_weight: u32,
    /// Silence after which a peer we want from is snubbed: 60 s (Cohen 2003, libtorrent).
    pub snub_after: Duration,
    /// Rounds averaged for the tit-for-tat rate: 2 rounds = 20 s (Cohen 2003: "a rolling
    /// 20-second average").
    pub rate_rounds: usize,
    /// Round robin when seeding: how long a peer keeps a slot before waiting peers take it.
    /// 30 s = three rounds, so a turn moves a few pieces, not a fraction of one.
    pub seed_turn: Duration,
}

impl Default for ChokerConfig {
    fn default() -> Self {
        ChokerConfig {
            regular_slots: 4,
            optimistic_slots: 1,
            round: Duration::from_secs(10),
            optimistic_rotation: Duration::from_secs(30),
            newcomer_age: Duration::from_secs(60),
            newcomer_weight: 3,
            snub_after: Duration::from_secs(60),
            rate_rounds: 2,
            seed_turn: Duration::from_secs(30),
        }
    }
}

/// What one [`Choker::tick`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChokeDecision<P> {
    /// Peers to send `unchoke` to (they were choked).
    pub unchoke: Vec<P>,
    /// Peers to send `choke` to (they were unchoked).
    pub choke: Vec<P>,
    /// Peers that just became snubbed: the engine should re-request their outstanding blocks
    /// elsewhere (`Picker::abort_peer_requests`) and keep at most a request or so on them.
    pub snubbed: Vec<P>,
    /// When to call [`Choker::tick`] again at the latest: the next round, or earlier if a peer
    /// would become snubbed before it.
    pub next_call: Time,
}

/// Decides whom to upload to. One per torrent.
///
/// Drive it with [`tick`](Self::tick) at [`ChokeDecision::next_call`] (calling earlier is
/// harmless: between rounds only snubbing is re-evaluated). Peers missing from the input are
/// forgotten (disconnected), without a `choke` in the output.
///
/// Seeding uses round robin rather than libtorrent's default `fastest_upload`: ranking by our
/// upload rate favours peers with fat download pipes (free riders included) and sends the same
/// pieces down the same few connections, whereas a seed's job is to spread pieces over as many
/// peers as possible so they can trade among themselves. Round robin gives every interested peer
/// a turn of [`seed_turn`](ChokerConfig::seed_turn).
#[derive(Clone, Debug)]
pub struct Choker<P: PeerKey> {
    config: ChokerConfig,
    rng: SmallRng,
    next_round: Option<Time>,
    next_rotation: Time,
    peers: BTreeMap<P, History>,
    unchoked: BTreeSet<P>,
    optimistic: BTreeSet<P>,
}

impl<P: PeerKey> Choker<P> {
    /// A choker with the given settings and seeded randomness. Its first [`tick`](Self::tick)
    /// runs a full round.
    pub fn new(config: ChokerConfig, seed: u64) -> Self {
        Choker {
            config,
            rng: SmallRng::seed_from_u64(seed),
            next_round: None,
            next_rotation: Time::ZERO,
            peers: BTreeMap::new(),
            unchoked: BTreeSet::new(),
            optimistic: BTreeSet::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ChokerConfig {
        &self.config
    }

    /// Whether the choker has `peer` unchoked (regular or optimistic).
    pub fn is_unchoked(&self, peer: P) -> bool {
        self.unchoked.contains(&peer)
    }

    /// Whether `peer` holds an optimistic slot.
    pub fn is_optimistic(&self, peer: P) -> bool {
        self.optimistic.contains(&peer)
    }

    /// Whether `peer` is snubbed.
    pub fn is_snubbed(&self, peer: P) -> bool {
        self.peers.get(&peer).is_some_and(|h| h.snubbed)
    }

    /// The peers currently unchoked, in key order.
    pub fn unchoked(&self) -> impl Iterator<Item = P> + '_ {
        self.unchoked.iter().copied()
    }

    /// Bytes received from `peer` over the rate window (the tit-for-tat score).
    pub fn download_score(&self, peer: P) -> u64 {
        self.peers.get(&peer).map_or(0, History::down_sum)
    }

    /// Bytes sent to `peer` over the rate window.
    pub fn upload_score(&self, peer: P) -> u64 {
        self.peers.get(&peer).map_or(0, History::up_sum)
    }

    /// Re-evaluates snubbing and, if a round is due, the slots. `seeding` selects round robin
    /// over tit-for-tat. Cost: O(peers log peers).
    pub fn tick(&mut self, now: Time, seeding: bool, peers: &[PeerStats<P>]) -> ChokeDecision<P> {
        // Forget peers that left.
        let present: BTreeSet<P> = peers.iter().map(|s| s.peer).collect();
        self.peers.retain(|p, _| present.contains(p));
        self.unchoked.retain(|p| present.contains(p));
        self.optimistic.retain(|p| present.contains(p));

        let snubbed = self.update_snubs(now, peers);

        let mut unchoke = Vec::new();
        let mut choke = Vec::new();
        if self.next_round.is_none_or(|t| now >= t) {
            let target = self.round_slots(now, seeding, peers);
            for &p in target.difference(&self.unchoked) {
                unchoke.push(p);
            }
            for &p in self.unchoked.difference(&target) {
                choke.push(p);
            }
            for &p in &unchoke {
                let h = self.peers.entry(p).or_default();
                h.unchoked_at = Some(now);
            }
            for &p in &choke {
                let h = self.peers.entry(p).or_default();
                h.unchoked_at = None;
                h.choked_at = Some(now);
            }
            self.unchoked = target;
            self.next_round = Some(now + self.config.round);
        }

        let mut next_call = self.next_round.unwrap_or(now + self.config.round);
        for s in peers {
            let Some(h) = self.peers.get(&s.peer) else {
                continue;
            };
            if let (Some(w), false) = (h.wanting_since, h.snubbed) {
                let quiet_from = w.max(s.silent_since());
                next_call = next_call.min(quiet_from + self.config.snub_after);
            }
        }
        ChokeDecision {
            unchoke,
            choke,
            snubbed,
            next_call: next_call.max(now),
        }
    }

    /// The peer left: its slot (regular or optimistic) is free at once, for
    /// [`fill_free_slots`](Self::fill_free_slots) to give to a waiting peer.
    pub fn remove_peer(&mut self, peer: P) {
        self.peers.remove(&peer);
        self.unchoked.remove(&peer);
        self.optimistic.remove(&peer);
    }

    /// Between rounds, unchokes interested peers at once while regular slots are free (as
    /// libtorrent does), so a new peer does not wait up to a whole round for its first data.
    /// The next round ranks them like everyone else. Returns the peers to send `unchoke` to.
    pub fn fill_free_slots(&mut self, now: Time, peers: &[PeerStats<P>]) -> Vec<P> {
        let mut out = Vec::new();
        let regular = self.unchoked.len() - self.optimistic.len();
        let free = self.config.regular_slots.saturating_sub(regular);
        for s in peers.iter().filter(|s| s.peer_interested) {
            if out.len() >= free {
                break;
            }
            let snubbed = self.peers.get(&s.peer).is_some_and(|h| h.snubbed);
            if self.unchoked.contains(&s.peer) || snubbed {
                continue;
            }
            self.unchoked.insert(s.peer);
            let h = self.peers.entry(s.peer).or_default();
            h.unchoked_at = Some(now);
            out.push(s.peer);
        }
        out
    }

    /// Marks peers that have been silent too long while we want from them; clears the mark when
    /// they deliver again or we stop wanting. Returns the newly snubbed.
    fn update_snubs(&mut self, now: Time, peers: &[PeerStats<P>]) -> Vec<P> {
        let mut newly = Vec::new();
        for s in peers {
            let h = self.peers.entry(s.peer).or_default();
            // Silence only counts from the moment we started wanting, even if the engine's
            // `last_block_at` is older (we may have been choked, or not interested, since).
            h.wanting_since = match (s.wants_from(), h.wanting_since) {
                (false, _) => None,
                (true, None) => Some(now),
                (true, since) => since,
            };
            let quiet_from = h
                .wanting_since
                .map_or(s.silent_since(), |w| w.max(s.silent_since()));
            let silent = now.saturating_since(quiet_from) >= self.config.snub_after;
            let snub = s.wants_from() && silent;
            if snub && !h.snubbed {
                newly.push(s.peer);
            }
            h.snubbed = snub;
        }
        newly
    }

    /// A full round: closes the rate window and computes the set that should be unchoked.
    fn round_slots(&mut self, now: Time, seeding: bool, peers: &[PeerStats<P>]) -> BTreeSet<P> {
        for s in peers {
            let window = self.config.rate_rounds;
            self.peers.entry(s.peer).or_default().close_round(s, window);
        }
        let rotate = now >= self.next_rotation;
        if rotate {
            self.optimistic.clear();
            self.next_rotation = now + self.config.optimistic_rotation;
        }
        // Optimistic peers keep their slot for the whole rotation, if still interested.
        let interested: BTreeSet<P> = peers
            .iter()
            .filter(|s| s.peer_interested)
            .map(|s| s.peer)
            .collect();
        self.optimistic.retain(|p| interested.contains(p));

        let regular = if seeding {
            self.seed_slots(now, peers)
        } else {
            self.reciprocation_slots(peers)
        };

        let any_snubbed = !seeding && self.peers.values().any(|h| h.snubbed);
        let slots = self.config.optimistic_slots + usize::from(any_snubbed);
        // Trim if a slot went away (the snubbed peer recovered); keep the earliest keys.
        while self.optimistic.len() > slots {
            self.optimistic.pop_last();
        }
        while self.optimistic.len() < slots {
            let pool: Vec<&PeerStats<P>> = peers
                .iter()
                .filter(|s| {
                    s.peer_interested
                        && !regular.contains(&s.peer)
                        && !self.optimistic.contains(&s.peer)
                })
                .collect();
            let Some(p) = self.draw_optimistic(now, &pool) else {
                break;
            };
            self.optimistic.insert(p);
        }
        regular.union(&self.optimistic).copied().collect()
    }

    /// Tit-for-tat: the interested, non-snubbed peers that sent us the most over the window.
    /// Ties go to peers already unchoked (no flapping), then at random.
    fn reciprocation_slots(&mut self, peers: &[PeerStats<P>]) -> BTreeSet<P> {
        let mut ranked: Vec<(u64, bool, u32, P)> = Vec::new();
        for s in peers {
            if !s.peer_interested || self.optimistic.contains(&s.peer) {
                continue;
            }
            let h = &self.peers[&s.peer];
            if h.snubbed {
                continue;
            }
            let tie = self.rng.random::<u32>();
            ranked.push((h.down_sum(), self.unchoked.contains(&s.peer), tie, s.peer));
        }
        ranked.sort_by_key(|r| std::cmp::Reverse((r.0, r.1, r.2)));
        ranked
            .into_iter()
            .take(self.config.regular_slots)
            .map(|r| r.3)
            .collect()
    }

    /// Round robin for a seed: peers within their turn keep it; then those waiting longest
    /// (never unchoked first); then peers whose turn is over, if slots remain.
    fn seed_slots(&mut self, now: Time, peers: &[PeerStats<P>]) -> BTreeSet<P> {
        // (group, since, tie, peer): lower sorts first.
        let mut ranked: Vec<(u8, Time, u32, P)> = Vec::new();
        for s in peers {
            if !s.peer_interested || self.optimistic.contains(&s.peer) {
                continue;
            }
            let h = &self.peers[&s.peer];
            let tie = self.rng.random::<u32>();
            let key = match (h.unchoked_at, h.choked_at) {
                (Some(at), _) if now.saturating_since(at) < self.config.seed_turn => (0, at),
                (Some(at), _) => (2, at),
                (None, None) => (1, Time::ZERO),
                (None, Some(at)) => (1, at),
            };
            ranked.push((key.0, key.1, tie, s.peer));
        }
        ranked.sort();
        ranked
            .into_iter()
            .take(self.config.regular_slots)
            .map(|r| r.3)
            .collect()
    }

    /// A weighted draw: newcomers count `newcomer_weight` times.
    fn draw_optimistic(&mut self, now: Time, pool: &[&PeerStats<P>]) -> Option<P> {
        let weight = |s: &PeerStats<P>| {
            if now.saturating_since(s.connected_at) < self.config.newcomer_age {
                u64::from(self.config.newcomer_weight.max(1))
            } else {
                1
            }
        };
        let total: u64 = pool.iter().map(|s| weight(s)).sum();
        if total == 0 {
            return None;
        }
        let mut x = self.rng.random_range(0..total);
        for s in pool {
            let w = weight(s);
            if x < w {
                return Some(s.peer);
            }
            x -= w;
        }
        None
    }
}
