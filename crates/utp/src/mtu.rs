//! Path MTU discovery for one connection, in the packet layer (RFC 4821's PLPMTUD, as libutp and
//! libtorrent do it for uTP): packets start small enough for any path, and now and then one DATA
//! packet is sent larger, a *probe*. The first probe is of the ceiling itself (most paths carry
//! a full Ethernet frame, and one probe then ends the search); after a loss, each probe is
//! halfway between the largest datagram known to pass (the floor) and the largest that may (the
//! ceiling). An acknowledged probe raises the floor, a lost one lowers the ceiling: a binary
//! search, done once the two are within [`SEARCH_DONE_WITHIN`] bytes. Full packets are then sent at the floor. The search starts over
//! after [`RESEARCH_AFTER`] (a route may have changed).
//!
//! A lost probe is not congestion: its loss moves the ceiling and leaves the congestion window
//! alone. Since uTP cannot repacketise, the probe itself is resent at its size; the driver lets
//! the IP layer fragment that resend ([`Fragmentation::Allow`]), while a probe goes out with
//! fragmentation forbidden ([`Fragmentation::Forbid`]) so that it tests the path. Sizes here are
//! of the whole UDP payload (uTP header included).

use std::time::Duration;

use shoal_core::Time;

/// The search ends when the ceiling is within this many bytes of the floor: a few more bytes
/// per packet are not worth more probes. 16, as libtorrent's search stops.
pub const SEARCH_DONE_WITHIN: usize = 16;

/// How long a finished search holds before it starts over from the configured ceiling. 10
/// minutes (RFC 4821 section 7.7 suggests 10 minutes between searches).
pub const RESEARCH_AFTER: Duration = Duration::from_secs(600);

/// How the IP layer may treat a datagram larger than the path MTU it knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fragmentation {
    /// The socket's default (Linux: DF set; fragmented locally only above an MTU that ICMP
    /// taught the kernel).
    #[default]
    Default,
    /// An MTU probe: never fragment; a probe too large for the path must be lost.
    Forbid,
    /// A lost probe sent again at its size (uTP cannot repacketise): fragment it if needed.
    Allow,
}

/// The search state of one connection. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct MtuSearch {
    /// The largest datagram known to pass.
    floor: usize,
    /// The largest datagram that may pass.
    ceiling: usize,
    /// The configured floor and ceiling, to start over from.
    min: usize,
    max: usize,
    /// The probe in flight: its sequence number and datagram size.
    probe: Option<(u16, usize)>,
    /// A probe was lost since the search (re)started: the ceiling is a bound, not a guess.
    lost_one: bool,
    /// When a finished search starts over.
    research_at: Option<Time>,
}

impl MtuSearch {
    /// A search between `floor` (datagram bytes every path carries) and `ceiling` (the most the
    /// local interface allows); `floor >= ceiling` means no search, packets of `ceiling`.
    pub fn new(floor: usize, ceiling: usize, now: Time) -> Self {
        let floor = floor.min(ceiling);
        let mut s = MtuSearch {
            floor,
            ceiling,
            min: floor,
            max: ceiling,
            probe: None,
            lost_one: false,
            research_at: None,
        };
        s.check_done(now);
        s
    }

    /// The datagram size of full packets now: the floor.
    pub fn datagram(&self) -> usize {
        self.floor
    }

    /// The configured ceiling.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Whether the search is over (until it starts over).
    pub fn is_done(&self) -> bool {
        self.ceiling.saturating_sub(self.floor) < SEARCH_DONE_WITHIN
    }

    /// The datagram size of the next probe, if one is due: the search runs and no probe is in
    /// flight. Starts a finished search over once [`RESEARCH_AFTER`] has passed.
    pub fn probe_size(&mut self, now: Time) -> Option<usize> {
        if self.research_at.is_some_and(|t| now >= t) {
            self.research_at = None;
            self.ceiling = self.max;
            self.lost_one = false;
        }
        if self.probe.is_some() || self.is_done() {
            return None;
        }
        if !self.lost_one {
            return Some(self.ceiling);
        }
        Some(self.floor + (self.ceiling - self.floor).div_ceil(2))
    }

    /// A probe of `size` bytes went out as packet `seq`.
    pub fn probe_sent(&mut self, seq: u16, size: usize) {
        self.probe = Some((seq, size));
    }

    /// Whether packet `seq` is the probe in flight.
    pub fn is_probe(&self, seq: u16) -> bool {
        self.probe.is_some_and(|(s, _)| s == seq)
    }

    /// Packet `seq` was acknowledged (cumulatively or selectively). Returns whether the floor
    /// rose (full packets grow).
    pub fn on_acked(&mut self, seq: u16, now: Time) -> bool {
        match self.probe {
            Some((s, size)) if s == seq => {
                self.probe = None;
                let raised = size > self.floor;
                self.floor = self.floor.max(size);
                self.ceiling = self.ceiling.max(self.floor);
                self.check_done(now);
                raised
            }
            _ => false,
        }
    }

    /// Packet `seq` was declared lost (duplicate or selective ACKs, or a timeout). Returns
    /// whether it was the probe, whose loss lowered the ceiling (and is not congestion).
    pub fn on_lost(&mut self, seq: u16, now: Time) -> bool {
        match self.probe {
            Some((s, size)) if s == seq => {
                self.probe = None;
                self.lost_one = true;
                self.ceiling = size.saturating_sub(1).max(self.floor);
                self.check_done(now);
                true
            }
            _ => false,
        }
    }

    /// Lets the search go up to `max` (datagram bytes) when that is above its ceiling: the peer
    /// is known to read such datagrams. Starts the search over from there.
    pub fn raise_max(&mut self, max: usize, now: Time) {
        if max <= self.max {
            return;
        }
        self.max = max;
        self.ceiling = max;
        self.lost_one = false;
        self.research_at = None;
        self.check_done(now);
    }

    /// Packets of the floor's size keep timing out: the path shrank under us. Back to the
    /// configured floor, and search again.
    pub fn on_black_hole(&mut self, now: Time) {
        self.probe = None;
        self.floor = self.min;
        self.ceiling = self.max;
        self.lost_one = false;
        self.research_at = None;
        self.check_done(now);
    }

    fn check_done(&mut self, now: Time) {
        if self.is_done() && self.min < self.max {
            self.research_at = Some(now + RESEARCH_AFTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> Time {
        Time::ZERO + Duration::from_secs(s)
    }

    /// Runs a search against a path that carries `path` bytes; returns the floor it settles on
    /// and the probes it took.
    fn search(floor: usize, ceiling: usize, path: usize) -> (usize, u32) {
        let mut m = MtuSearch::new(floor, ceiling, at(0));
        let mut probes = 0;
        let mut seq = 0u16;
        while let Some(size) = m.probe_size(at(1)) {
            assert!(
                size > m.datagram() && size <= ceiling,
                "probe {size} out of range"
            );
            seq = seq.wrapping_add(3);
            m.probe_sent(seq, size);
            probes += 1;
            if size <= path {
                assert!(m.on_acked(seq, at(1)));
            } else {
                assert!(m.on_lost(seq, at(1)));
            }
            assert!(probes < 20, "the search does not end");
        }
        (m.datagram(), probes)
    }

    #[test]
    fn the_search_settles_just_under_the_path_mtu() {
        for path in [528, 600, 1000, 1232, 1400, 1452, 1480] {
            let (got, probes) = search(528, 1452, path);
            assert!(got <= path, "path {path}: floor {got} does not pass");
            assert!(
                got + SEARCH_DONE_WITHIN > path.min(1452),
                "path {path}: floor {got} too far below"
            );
            assert!(probes <= 8, "path {path}: {probes} probes");
            if path >= 1452 {
                assert_eq!((got, probes), (1452, 1), "a full path takes one probe");
            }
        }
    }

    #[test]
    fn a_large_ceiling_is_found_in_few_probes() {
        // Loopback: up to 64 KiB datagrams.
        let (got, probes) = search(528, 65_000, 65_000);
        assert!(got + SEARCH_DONE_WITHIN > 65_000);
        assert_eq!(probes, 1, "the ceiling itself first");
        // A path of 9000 (jumbo frames) under a 65000 ceiling: a binary search.
        let (got, probes) = search(528, 65_000, 9000);
        assert!(got <= 9000 && got + SEARCH_DONE_WITHIN > 9000, "{got}");
        assert!(probes <= 14, "{probes}");
    }

    #[test]
    fn floor_equal_to_ceiling_means_no_search() {
        let mut m = MtuSearch::new(1452, 1452, at(0));
        assert!(m.is_done());
        assert_eq!(m.probe_size(at(1000)), None);
        assert_eq!(m.datagram(), 1452);
    }

    #[test]
    fn one_probe_at_a_time_and_other_packets_do_not_count() {
        let mut m = MtuSearch::new(528, 1452, at(0));
        let size = m.probe_size(at(0)).unwrap();
        m.probe_sent(7, size);
        assert_eq!(m.probe_size(at(0)), None, "a second probe while one flies");
        assert!(!m.on_acked(6, at(0)));
        assert!(!m.on_lost(8, at(0)));
        assert_eq!(m.datagram(), 528);
        assert!(m.is_probe(7));
        assert!(m.on_lost(7, at(0)));
        assert!(!m.is_probe(7));
        assert_eq!(m.datagram(), 528, "a lost probe keeps the floor");
        assert_eq!(size, 1452, "the first probe is the ceiling");
        let next = m.probe_size(at(0)).unwrap();
        assert!(next < size, "the next probe is smaller: {next} vs {size}");
    }

    #[test]
    fn a_finished_search_starts_over_later() {
        let mut m = MtuSearch::new(528, 1452, at(0));
        // Every probe lost: the ceiling comes down to the floor.
        let mut seq = 0;
        while let Some(size) = m.probe_size(at(1)) {
            seq += 1;
            m.probe_sent(seq, size);
            m.on_lost(seq, at(1));
        }
        assert_eq!(m.datagram(), 528);
        assert_eq!(m.probe_size(at(100)), None);
        let again = m.probe_size(at(1) + RESEARCH_AFTER).expect("search again");
        assert!(again > 528);
    }

    #[test]
    fn raising_the_maximum_searches_again_from_it() {
        let mut m = MtuSearch::new(528, 1452, at(0));
        let size = m.probe_size(at(0)).unwrap();
        m.probe_sent(1, size);
        assert!(m.on_acked(1, at(0)));
        assert!(m.is_done());
        m.raise_max(65_000, at(1));
        assert_eq!(m.probe_size(at(1)), Some(65_000));
        m.raise_max(2000, at(1));
        assert_eq!(m.max(), 65_000, "never lowered");
    }

    #[test]
    fn a_black_hole_falls_back_to_the_floor() {
        let (floor, _) = search(528, 1452, 1452);
        let mut m = MtuSearch::new(528, 1452, at(0));
        m.floor = floor;
        m.on_black_hole(at(5));
        assert_eq!(m.datagram(), 528);
        assert!(m.probe_size(at(5)).is_some());
    }
}
