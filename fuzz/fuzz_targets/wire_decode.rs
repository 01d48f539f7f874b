//! Any bytes from a peer: the framer, handshake, extended handshake and ut_metadata parsers give
//! a message or an error, never a panic, and never buffer past the limit.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use shoal_wire::frame::{decode_frame, Limits};
use shoal_wire::{ExtendedHandshake, Handshake, Message, MetadataMessage};

fuzz_target!(|data: &[u8]| {
    let _ = Handshake::decode(data);
    let limits = Limits::for_pieces(850);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(msg)) = decode_frame(&mut buf, &limits) {
        if let Message::Extended { id, payload } = msg {
            if id == 0 {
                let _ = ExtendedHandshake::decode(&payload);
            } else {
                let _ = MetadataMessage::decode(&payload);
            }
        }
    }
    let _ = MetadataMessage::decode(&Bytes::copy_from_slice(data));
});
