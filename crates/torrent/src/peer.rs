//! What the machine knows about one connection. Outstanding requests are not here: the picker is
//! their one record (`Picker::requests_of`).

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use shoal_core::{Id20, RttConfig, RttEstimator, Time};
use shoal_picker::Block;
use shoal_wire::{BlockRef, ExtendedHandshake};

/// Requests kept in flight to a peer that has not told us its `reqq`: libtorrent's default
/// `max_allowed_in_request_queue` is 500, Transmission advertises 512, aria2 sends none.
pub const DEFAULT_REQQ: usize = 250;
/// The most requests shoal keeps in flight to one peer (4 MiB): enough for ~1 GB/s at 4 ms.
pub const MAX_QUEUE: usize = 250;
/// Slow start: requests in flight before the peer's rate is known.
pub const INITIAL_QUEUE: usize = 16;
/// The fewest requests kept in flight to a peer whose rate is known (libtorrent's minimum).
pub const MIN_QUEUE: usize = 2;
/// Seconds of the peer's rate kept in flight (libtorrent: rate x 3 s / 16 KiB).
pub const QUEUE_SECONDS: f64 = 3.0;
/// Blocks remembered as released (timed out, cancelled, reassigned) so a late copy from the
/// same peer is still welcome.
const RELEASED_MEMORY: usize = 1024;
/// Disk reads in flight for one peer's requests; the rest wait in its upload queue.
pub const MAX_PENDING_UPLOADS: usize = 32;
/// The most block bytes handed to a connection's writer and not yet written; past it no more disk
/// reads start for that peer. Requests must wait where a `cancel` can still reach them (here),
/// not in the socket: the budget is half a second of the peer's upload rate (libtorrent's
/// `send_buffer_watermark_factor` of 50 %), between [`WRITER_MIN_BYTES`] and this.
pub const WRITER_PIECE_BYTES: usize = 256 * 1024;
/// The smallest writer budget, and the budget before the peer's upload rate is known: 4 blocks.
pub const WRITER_MIN_BYTES: usize = 64 * 1024;
/// Seconds of a peer's upload rate its writer may hold.
pub const WRITER_SECONDS: f64 = 0.5;
/// Requests a peer may queue with us: the `reqq` shoal advertises (libtorrent advertises 2000,
/// Transmission 512). More are rejected.
pub const OUR_REQQ: usize = 500;

/// RTT settings for block requests. The floor is 2 s, not RFC 6298's 1 s: the measured time
/// includes the peer's disk and its queue of our earlier requests, which varies; the ceiling of
/// 30 s matches the stall a frozen libtorrent peer caused (21–35 s) as the worst we accept.
pub fn request_rtt_config() -> RttConfig {
    RttConfig {
        initial: Duration::from_secs(4),
        floor: Duration::from_secs(2),
        ceiling: Duration::from_secs(30),
    }
}

/// One connected peer.
#[derive(Debug)]
pub struct Peer {
    /// The peer's address (its socket's remote address).
    pub addr: SocketAddr,
    /// Whether we dialled it.
    pub outgoing: bool,
    /// Its peer id.
    pub peer_id: Id20,
    /// It speaks BEP 6.
    pub fast: bool,
    /// It speaks BEP 10.
    pub extended_bit: bool,
    /// The connection is in the v2 swarm (BEP 52): hash requests may be sent on it.
    pub v2: bool,
    /// Leaf-layer hash requests of its being answered (a disk read each).
    pub leaf_reads: usize,
    /// Its BEP 10 handshake, once received.
    pub extended: Option<ExtendedHandshake>,
    /// The id under which it takes `ut_pex` (BEP 11), from its handshake: looked up once, not
    /// by name in every [`crate::Torrent::poll_timeout`] (a map of strings, per peer per turn).
    pub pex_id: Option<u8>,
    /// The address the peer book knows it by (dialled address, or an incoming peer's listen
    /// address once its extended handshake tells it).
    pub book_addr: Option<SocketAddr>,
    /// It exchanged data with us (a block either way): the peer book counts it a success.
    pub useful: bool,
    /// We choke it.
    pub am_choking: bool,
    /// We are interested in it.
    pub am_interested: bool,
    /// It chokes us.
    pub peer_choking: bool,
    /// It is interested in us.
    pub peer_interested: bool,
    released: HashSet<Block>,
    released_order: VecDeque<Block>,
    /// Blocks received that were never requested from it.
    pub unsolicited: u32,
    /// Round-trip estimate of its block requests.
    pub rtt: RttEstimator,
    /// Its `reqq`, or the default.
    pub reqq: usize,
    /// Payload bytes received from it.
    pub downloaded: u64,
    /// Payload bytes sent to it.
    pub uploaded: u64,
    /// When the connection was set up.
    pub connected_at: Time,
    /// When its last block arrived.
    pub last_block_at: Option<Time>,
    /// When our queue to it last went from empty to non-empty (silence counts from then).
    pub waiting_since: Option<Time>,
    /// When its last message of any kind arrived.
    pub last_message_at: Time,
    /// Snubbed (the choker's verdict): one request at a time, no reciprocation.
    pub snubbed_since: Option<Time>,
    /// Stalled (delivered nothing for many of its usual gaps): one request at a time until it
    /// delivers a block.
    pub stalled: bool,
    /// Blocks we sent `cancel` for to this BEP 6 peer, whose `reject` is still to come: that
    /// `reject` answers the cancel, not a later request for the same block.
    pub cancels_out: HashSet<Block>,
    /// Requests timed out or reassigned.
    pub timeouts: u32,
    /// Disk reads in flight for its requests.
    pub pending_uploads: usize,
    /// Block bytes handed to its writer and not yet written.
    pub writer_bytes: usize,
    /// Its upload rate (block bytes our writer put on the wire), bytes per second (smoothed).
    pub up_rate: f64,
    up_rate_bytes: u64,
    /// Its requests waiting for a disk read, in arrival order.
    pub upload_queue: VecDeque<BlockRef>,
    /// Pieces we suggested to it (seeding) that it has not asked for yet.
    pub suggested_out: Vec<u32>,
    /// Super-seeding (BEP 16): the pieces offered to it now.
    pub offers: Vec<crate::superseed::Offer>,
    /// Super-seeding: every piece we sent it a `have` for (the only ones it may request).
    pub announced: HashSet<u32>,
    /// Requests it cancelled while their reads were in flight.
    pub cancelled: HashSet<BlockRef>,
    /// Its download rate, bytes per second (smoothed).
    pub down_rate: f64,
    /// Smoothed time between its blocks (for stall detection), if known.
    pub block_gap: Option<Duration>,
    /// When its last `ut_pex` message was taken (BEP 11: at most one a minute; more are ignored).
    pub last_pex_in: Option<Time>,
    /// It has sent its bitfield (or `have_all` / `have_none`): a second one is a violation.
    pub sent_bitfield: bool,
    /// Listen addresses we told it about in `ut_pex` (BEP 11).
    pub pex_sent: HashSet<SocketAddr>,
    /// When to send it the next `ut_pex` message.
    pub next_pex_at: Time,
    rate_bytes: u64,
}

impl Peer {
    /// A freshly connected peer.
    pub fn new(addr: SocketAddr, outgoing: bool, peer_id: Id20, fast: bool, now: Time) -> Self {
        Peer {
            addr,
            outgoing,
            peer_id,
            fast,
            extended_bit: false,
            v2: false,
            leaf_reads: 0,
            extended: None,
            pex_id: None,
            book_addr: outgoing.then_some(addr),
            useful: false,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            released: HashSet::new(),
            released_order: VecDeque::new(),
            unsolicited: 0,
            rtt: RttEstimator::new(request_rtt_config()),
            reqq: DEFAULT_REQQ,
            downloaded: 0,
            uploaded: 0,
            connected_at: now,
            last_block_at: None,
            waiting_since: None,
            last_message_at: now,
            snubbed_since: None,
            stalled: false,
            cancels_out: HashSet::new(),
            timeouts: 0,
            pending_uploads: 0,
            writer_bytes: 0,
            up_rate: 0.0,
            up_rate_bytes: 0,
            upload_queue: VecDeque::new(),
            suggested_out: Vec::new(),
            offers: Vec::new(),
            announced: HashSet::new(),
            cancelled: HashSet::new(),
            down_rate: 0.0,
            block_gap: None,
            last_pex_in: None,
            sent_bitfield: false,
            pex_sent: HashSet::new(),
            // The first message soon after connecting, then once a minute (BEP 11's limit).
            next_pex_at: now + Duration::from_secs(2),
            rate_bytes: 0,
        }
    }

    /// How many requests to keep in flight: the peer's rate x 3 s in blocks (slow start before
    /// the rate is known, at least 2 after), capped by its `reqq`; one while snubbed.
    ///
    /// The slow-start depth is only a floor while the rate is unknown: a slow peer kept at 16
    /// requests queues them for longer than their deadline (16 blocks at 20 KiB/s is 13 s), so
    /// they time out, are fetched again elsewhere and the late copies waste both uplinks
    /// (measured in `crates/swarmsim`).
    pub fn queue_target(&self) -> usize {
        if self.snubbed_since.is_some() || self.stalled {
            return 1;
        }
        let by_rate = (self.down_rate * QUEUE_SECONDS / 16384.0) as usize;
        let floor = if self.down_rate > 0.0 {
            MIN_QUEUE
        } else {
            INITIAL_QUEUE
        };
        by_rate.max(floor).min(self.reqq.min(MAX_QUEUE)).max(1)
    }

    /// Remembers a request we gave up on (timed out, rejected, reassigned): a late copy from
    /// this same peer is still accepted.
    pub fn release(&mut self, block: Block) {
        if self.released.insert(block) {
            self.released_order.push_back(block);
            if self.released_order.len() > RELEASED_MEMORY {
                if let Some(old) = self.released_order.pop_front() {
                    self.released.remove(&old);
                }
            }
        }
    }

    /// Records a `cancel` sent to it (BEP 6 peers answer one with `reject` or the block).
    pub fn cancel_sent(&mut self, block: Block) {
        if self.fast && self.cancels_out.len() < RELEASED_MEMORY {
            self.cancels_out.insert(block);
        }
    }

    /// Whether a block not outstanding to it is a late copy of one we released.
    pub fn take_released(&mut self, block: Block) -> bool {
        self.released.remove(&block)
    }

    /// Counts a block's payload for the rate estimate and the stall detector.
    pub fn count_block(&mut self, bytes: usize, now: Time) {
        self.downloaded += bytes as u64;
        self.rate_bytes += bytes as u64;
        if let Some(last) = self.last_block_at {
            let gap = now - last;
            // A smoothed gap (1/8 weight, as RFC 6298's SRTT).
            self.block_gap = Some(match self.block_gap {
                Some(g) => (g * 7 + gap) / 8,
                None => gap,
            });
        }
        self.last_block_at = Some(now);
    }

    /// Where it accepts connections: its address if we dialled it, else its IP with the port
    /// from its extended handshake.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        if self.outgoing {
            return Some(self.addr);
        }
        let port = self.extended.as_ref()?.listen_port?;
        Some(SocketAddr::new(self.addr.ip(), port))
    }

    /// Closes a rate sample of `elapsed` (exponential moving average, ~2 s memory).
    pub fn update_rate(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(1e-3);
        let sample = self.rate_bytes as f64 / secs;
        let alpha = (secs / 2.0).min(1.0);
        self.down_rate += alpha * (sample - self.down_rate);
        self.rate_bytes = 0;
        let up = self.up_rate_bytes as f64 / secs;
        self.up_rate += alpha * (up - self.up_rate);
        self.up_rate_bytes = 0;
    }

    /// The writer put `bytes` of block data on the wire.
    pub fn count_sent(&mut self, bytes: usize) {
        self.writer_bytes = self.writer_bytes.saturating_sub(bytes);
        self.up_rate_bytes += bytes as u64;
    }

    /// How many block bytes its writer may hold: half a second of its upload rate, within
    /// [`WRITER_MIN_BYTES`] and [`WRITER_PIECE_BYTES`]. A slow uplink keeps few blocks past the
    /// reach of `cancel`; a fast one keeps the socket full.
    pub fn writer_budget(&self) -> usize {
        ((self.up_rate * WRITER_SECONDS) as usize).clamp(WRITER_MIN_BYTES, WRITER_PIECE_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        let addr = "127.0.0.2:6881".parse().unwrap();
        Peer::new(addr, true, Id20([1; 20]), true, Time::ZERO)
    }

    #[test]
    fn slow_start_depth_only_until_the_rate_is_known() {
        let mut p = peer();
        assert_eq!(p.queue_target(), INITIAL_QUEUE);
        // 20 KiB/s: three seconds of it is under 4 blocks, not 16.
        p.down_rate = 20.0 * 1024.0;
        assert_eq!(p.queue_target(), 3);
        p.down_rate = 1.0;
        assert_eq!(p.queue_target(), MIN_QUEUE);
        p.down_rate = 10.0 * 1024.0 * 1024.0;
        assert_eq!(p.queue_target(), MAX_QUEUE.min(DEFAULT_REQQ));
        p.snubbed_since = Some(Time::ZERO);
        assert_eq!(p.queue_target(), 1);
    }

    #[test]
    fn the_writer_holds_half_a_second_of_the_peers_upload_rate() {
        let mut p = peer();
        assert_eq!(p.writer_budget(), WRITER_MIN_BYTES);
        // 32 KiB/s uploaded over a second: 16 KiB of budget is below the floor.
        p.writer_bytes = 64 * 1024;
        p.count_sent(32 * 1024);
        p.update_rate(Duration::from_secs(2));
        assert_eq!(p.writer_bytes, 32 * 1024);
        assert_eq!(p.writer_budget(), WRITER_MIN_BYTES);
        // 300 KiB/s: 150 KiB.
        p.up_rate = 300.0 * 1024.0;
        assert_eq!(p.writer_budget(), 150 * 1024);
        // Loopback speeds: capped.
        p.up_rate = 1e9;
        assert_eq!(p.writer_budget(), WRITER_PIECE_BYTES);
    }
}
