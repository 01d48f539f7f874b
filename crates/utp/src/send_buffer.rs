//! The send side: bytes the application wrote that are not packetised yet, and the packets
//! sent and not yet acknowledged, in sequence order. One byte budget bounds both.

use std::collections::VecDeque;

use shoal_core::Time;

use crate::packet::PacketType;
use crate::seq;

/// The most packets kept unacknowledged. Far below half the 16-bit sequence space, so that
/// wrapping comparisons stay unambiguous; at 1432-byte packets it is a 2.8 MiB window.
pub const MAX_OUTSTANDING: usize = 2048;

/// A packet that was sent (or is about to be) and is not yet acknowledged cumulatively.
#[derive(Debug)]
pub struct SentPacket {
    /// DATA, FIN or SYN.
    pub ty: PacketType,
    /// The payload; resent unchanged, as uTP sequence numbers name packets.
    pub payload: Vec<u8>,
    /// When it was last (re)sent.
    pub sent_at: Time,
    /// How many times it was sent; Karn's rule takes RTT samples only when this is 1.
    pub transmissions: u32,
    /// A counter value of the last transmission, increasing across the connection: tells which
    /// packets were sent after which (for loss detection by selective ACK).
    pub tx_order: u64,
    /// Acknowledged by a selective ACK (not yet cumulatively).
    pub sacked: bool,
    /// Counted in the bytes in flight.
    pub in_flight: bool,
    /// Declared lost and waiting to be resent.
    pub need_resend: bool,
    /// Declared lost by duplicate or selective ACKs: resent at once, whatever the congestion
    /// window (TCP's fast retransmit; the window was halved instead).
    pub fast_resend: bool,
}

impl SentPacket {
    /// A packet not sent yet: waiting for its first transmission.
    pub fn new(ty: PacketType, payload: Vec<u8>, now: Time) -> Self {
        SentPacket {
            ty,
            payload,
            sent_at: now,
            transmissions: 0,
            tx_order: 0,
            sacked: false,
            in_flight: false,
            need_resend: true,
            fast_resend: false,
        }
    }
}

/// Unsent bytes and unacknowledged packets.
#[derive(Debug)]
pub struct SendBuffer {
    unsent: VecDeque<u8>,
    packets: VecDeque<SentPacket>,
    /// Sequence number of `packets[0]`.
    first_seq: u16,
    capacity: usize,
    packet_bytes: usize,
}

impl SendBuffer {
    /// An empty buffer of `capacity` bytes whose first packet will be `first_seq`.
    pub fn new(capacity: usize, first_seq: u16) -> Self {
        SendBuffer {
            unsent: VecDeque::new(),
            packets: VecDeque::new(),
            first_seq,
            capacity,
            packet_bytes: 0,
        }
    }

    /// Free bytes for the application to write.
    pub fn free(&self) -> usize {
        self.capacity
            .saturating_sub(self.unsent.len() + self.packet_bytes)
    }

    /// Queues as much of `data` as fits; returns how much.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        self.unsent.extend(&data[..n]);
        n
    }

    /// Bytes written and not yet packetised.
    pub fn unsent(&self) -> usize {
        self.unsent.len()
    }

    /// Whether another packet may be added (the outstanding-packet bound).
    pub fn has_room_for_packet(&self) -> bool {
        self.packets.len() < MAX_OUTSTANDING
    }

    /// Takes up to `max` unsent bytes as the payload of a new packet.
    pub fn take_unsent(&mut self, max: usize) -> Vec<u8> {
        let n = max.min(self.unsent.len());
        self.unsent.drain(..n).collect()
    }

    /// Appends a packet, which gets the next sequence number (returned).
    pub fn push(&mut self, packet: SentPacket) -> u16 {
        let s = self.first_seq.wrapping_add(self.packets.len() as u16);
        self.packet_bytes += packet.payload.len();
        self.packets.push_back(packet);
        s
    }

    /// The sequence number of the oldest unacknowledged packet (or the next one to be sent,
    /// when none is outstanding).
    pub fn first_seq(&self) -> u16 {
        self.first_seq
    }

    /// Sequence number the next pushed packet gets.
    pub fn next_seq(&self) -> u16 {
        self.first_seq.wrapping_add(self.packets.len() as u16)
    }

    /// How many packets are unacknowledged.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// Whether no packet is unacknowledged.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// The packet with sequence number `s`, if outstanding.
    pub fn get_mut(&mut self, s: u16) -> Option<&mut SentPacket> {
        let i = usize::from(seq::distance(self.first_seq, s));
        self.packets.get_mut(i)
    }

    /// Removes the oldest packet if its sequence number is at or before `ack_nr`.
    pub fn pop_acked(&mut self, ack_nr: u16) -> Option<SentPacket> {
        if self.packets.is_empty() || !seq::le(self.first_seq, ack_nr) {
            return None;
        }
        let p = self.packets.pop_front()?;
        self.packet_bytes -= p.payload.len();
        self.first_seq = self.first_seq.wrapping_add(1);
        Some(p)
    }

    /// Iterates the outstanding packets with their sequence numbers, oldest first.
    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = (u16, &mut SentPacket)> {
        let first = self.first_seq;
        self.packets
            .iter_mut()
            .enumerate()
            .map(move |(i, p)| (first.wrapping_add(i as u16), p))
    }

    /// The oldest packet waiting to be resent, if any.
    pub fn first_to_resend(&mut self) -> Option<(u16, &mut SentPacket)> {
        self.iter_mut().find(|(_, p)| p.need_resend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(payload: &[u8]) -> SentPacket {
        SentPacket {
            need_resend: false,
            ..SentPacket::new(PacketType::Data, payload.to_vec(), Time::ZERO)
        }
    }

    #[test]
    fn bounded_and_wrapping() {
        let mut b = SendBuffer::new(10, 65535);
        assert_eq!(b.write(b"0123456789abc"), 10);
        assert_eq!(b.free(), 0);
        let p = b.take_unsent(4);
        assert_eq!(p, b"0123");
        assert_eq!(b.free(), 4, "taken bytes are freed until pushed");
        assert_eq!(b.push(pkt(&p)), 65535);
        let q = b.take_unsent(4);
        assert_eq!(b.push(pkt(&q)), 0);
        assert_eq!(b.free(), 0);
        assert!(b.pop_acked(65534).is_none());
        assert_eq!(b.pop_acked(0).unwrap().payload, b"0123");
        assert_eq!(b.pop_acked(0).unwrap().payload, b"4567");
        assert!(b.pop_acked(0).is_none());
        assert_eq!(b.first_seq(), 1);
        assert_eq!(b.free(), 8);
    }
}
