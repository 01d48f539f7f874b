//! Any bytes from a peer: the framer, handshake, extended handshake and ut_metadata parsers give
//! a message or an error, never a panic, and never buffer past the limit. The first byte picks
//! v1 or v2 limits (v2 lets the BEP 52 `hashes` message be larger); the merkle hash messages'
//! derived counts are computed for every one decoded.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use shoal_wire::frame::{decode_frame, Limits};
use shoal_wire::{ExtendedHandshake, Handshake, Message, MetadataMessage};

fuzz_target!(|data: &[u8]| {
    let _ = Handshake::decode(data);
    let v2 = data.first().is_some_and(|b| b & 1 == 1);
    let limits = Limits::for_pieces(850).with_v2(v2);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(msg)) = decode_frame(&mut buf, &limits) {
        match msg {
            Message::Extended { id: 0, payload } => {
                let _ = ExtendedHandshake::decode(&payload);
            }
            Message::Extended { payload, .. } => {
                let _ = MetadataMessage::decode(&payload);
            }
            Message::HashRequest(r) | Message::HashReject(r) => {
                let _ = (r.is_well_formed(), r.proof_hashes());
            }
            Message::Hashes { req, hashes } => {
                assert!(hashes.len() <= (req.length as usize).saturating_add(1 << 20));
                let _ = (req.is_well_formed(), req.proof_hashes());
            }
            _ => {}
        }
    }
    let _ = MetadataMessage::decode(&Bytes::copy_from_slice(data));
});
