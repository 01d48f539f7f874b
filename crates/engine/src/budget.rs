//! The session's peer budget: a global cap on connections split evenly among the torrents that
//! use peers, so one torrent cannot take them all. Sans-IO: a plain function of the counts.

/// Every torrent may keep at least this many peers, however many share the budget (a torrent
/// with fewer peers than this is barely a torrent); so the sum may exceed the budget when more
/// than `global / MIN_PEERS_PER_TORRENT` torrents are active at once.
pub const MIN_PEERS_PER_TORRENT: usize = 4;

/// Each torrent's peer cap: `global` (0: no global cap) split evenly among the `active`
/// torrents (those downloading or with peers: an idle seed takes no share), never more than
/// `per_torrent` and never fewer than [`MIN_PEERS_PER_TORRENT`] (or `per_torrent` if smaller).
/// A torrent that becomes active counts from the next split, which the session makes every
/// couple of seconds and whenever a torrent starts or stops.
pub fn peer_cap(global: usize, per_torrent: usize, active: usize) -> usize {
    let per_torrent = per_torrent.max(1);
    if global == 0 {
        return per_torrent;
    }
    (global / active.max(1)).clamp(MIN_PEERS_PER_TORRENT.min(per_torrent), per_torrent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_split_evenly_within_the_bounds() {
        // No global cap: the per-torrent cap.
        assert_eq!(peer_cap(0, 50, 1000), 50);
        // One torrent alone: the per-torrent cap, not the whole budget.
        assert_eq!(peer_cap(200, 50, 1), 50);
        assert_eq!(peer_cap(200, 50, 0), 50);
        // Shared: no torrent over its share, so the budget holds.
        assert_eq!(peer_cap(200, 50, 8), 25);
        assert!(peer_cap(200, 50, 8) * 8 <= 200);
        assert_eq!(peer_cap(200, 50, 7), 28);
        // Many torrents: the floor.
        assert_eq!(peer_cap(200, 50, 1000), MIN_PEERS_PER_TORRENT);
        // A per-torrent cap under the floor wins.
        assert_eq!(peer_cap(200, 2, 1000), 2);
        assert_eq!(peer_cap(200, 0, 1), 1);
    }
}
