use std::time::Duration;

use shoal_core::RttConfig;

use crate::ledbat::LedbatConfig;
use crate::packet::HEADER_LEN;

/// The tunables and bounds of one uTP connection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// The largest path MTU the connection may discover, in bytes of IP packet: the ceiling of
    /// its MTU search ([`crate::mtu`]). 1500, Ethernet's; the engine gives loopback peers more.
    pub mtu: u16,
    /// The path MTU every path is assumed to carry, where packets start: the floor of the MTU
    /// search. 576, the datagram size every IPv4 host must reassemble (RFC 791) and libtorrent's
    /// floor; IPv6 paths carry at least 1280. Equal to `mtu` or above: no search, packets of
    /// `mtu` from the start.
    pub mtu_floor: u16,
    /// The MTU search's ceiling until the application says the peer reads larger datagrams
    /// ([`Connection::allow_large_packets`](crate::Connection::allow_large_packets)): 1500.
    /// A receiver's read buffer bounds what it can take, and the sender cannot tell: libtorrent
    /// 2.0 acknowledged a 64 KiB probe on loopback it had read truncated, then failed the
    /// pieces built from such packets (measured). Every uTP implementation reads 1500.
    pub peer_mtu: u16,
    /// IP and UDP header bytes subtracted from the MTU: 48 (IPv6's 40 + UDP's 8), so the same
    /// payload size fits both families.
    pub ip_udp_overhead: u16,
    /// Bytes the application may have written and not yet had acknowledged (unsent plus in
    /// flight). `write` accepts no more than this.
    pub send_buffer: usize,
    /// Bytes of received data held for the application (in order and reordered); this is the
    /// window we advertise, and data beyond it is dropped unacknowledged.
    pub recv_buffer: usize,
    /// How far past the next expected packet an out-of-order packet may be and still be kept
    /// (in packets). Packets further ahead are dropped and retransmitted later.
    pub max_reorder_packets: u16,
    /// The congestion controller's tunables.
    pub ledbat: LedbatConfig,
    /// The retransmission timeout's bounds: 1 s before any sample and a 500 ms floor (BEP 29
    /// "timeouts"), 60 s ceiling (RFC 6298).
    pub rtt: RttConfig,
    /// Consecutive retransmission timeouts of data or FIN tolerated: the connection times out
    /// on the next one. 3, libtorrent's `utp_num_resends` default (its `m_num_timeouts >
    /// num_resends` check); with back-off from the 500 ms floor that is ~7.5 s of silence at
    /// least, longer when the RTO is larger.
    pub max_resends: u32,
    /// Consecutive timeouts of the SYN tolerated: 2, libtorrent's `utp_syn_resends`, so a dead
    /// address fails after 1 + 2 + 4 = 7 s.
    pub syn_resends: u32,
    /// An accepted connection that hears nothing more from the initiator than its SYN for this
    /// long is dropped (it holds a half-open slot). 10 s.
    pub half_open_timeout: Duration,
    /// A STATE packet is sent after this long without sending anything, to keep NAT mappings
    /// alive. 29 s, under the common 30 s UDP mapping timeout.
    pub keepalive: Duration,
    /// After our FIN is acknowledged, how long the peer may stay silent without sending its own
    /// FIN before the connection is closed anyway. 120 s: twice the RTO ceiling, so a peer still
    /// retransmitting with a fully backed-off timer is not cut off.
    pub fin_linger: Duration,
    /// After the connection ends gracefully, how long it stays to acknowledge a retransmitted
    /// FIN (its STATE may have been lost) before it is forgotten. 10 s.
    pub time_wait: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mtu: 1500,
            mtu_floor: 576,
            peer_mtu: 1500,
            ip_udp_overhead: 48,
            send_buffer: 1 << 20,
            recv_buffer: 1 << 20,
            max_reorder_packets: 1024,
            ledbat: LedbatConfig::default(),
            rtt: RttConfig {
                initial: Duration::from_secs(1),
                floor: Duration::from_millis(500),
                ceiling: Duration::from_secs(60),
            },
            max_resends: 3,
            syn_resends: 2,
            half_open_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(29),
            fin_linger: Duration::from_secs(120),
            time_wait: Duration::from_secs(10),
        }
    }
}

/// The smallest payload a packet may be configured to carry (BEP 29 "packet sizes": 150 bytes).
pub const MIN_PAYLOAD: usize = 150;

impl Config {
    /// The largest datagram sent: the MTU minus the IP and UDP headers.
    pub fn max_datagram(&self) -> usize {
        usize::from(self.mtu.saturating_sub(self.ip_udp_overhead)).max(HEADER_LEN + MIN_PAYLOAD)
    }

    /// The largest datagram sent until the peer is known to read more: [`Config::peer_mtu`]
    /// (or [`Config::mtu`] if lower) less the IP and UDP headers.
    pub fn peer_datagram(&self) -> usize {
        usize::from(
            self.peer_mtu
                .min(self.mtu)
                .saturating_sub(self.ip_udp_overhead),
        )
        .max(HEADER_LEN + MIN_PAYLOAD)
        .min(self.max_datagram())
    }

    /// The datagram size packets start at: the MTU search's floor less the IP and UDP headers
    /// (576 - 48 = 528 bytes by default), at most [`max_datagram`](Self::max_datagram).
    pub fn min_datagram(&self) -> usize {
        usize::from(self.mtu_floor.saturating_sub(self.ip_udp_overhead))
            .max(HEADER_LEN + MIN_PAYLOAD)
            .min(self.max_datagram())
    }

    /// The payload of the largest DATA packet: the largest datagram minus the uTP header, at
    /// least [`MIN_PAYLOAD`]. 1500 - 48 - 20 = 1432 bytes by default. Full packets start
    /// smaller and grow as the MTU search finds the path carries them.
    pub fn max_payload(&self) -> usize {
        self.max_datagram() - HEADER_LEN
    }
}
