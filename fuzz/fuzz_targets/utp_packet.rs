//! Any datagram: the uTP parser returns a packet or an error, never panics, and what it accepts
//! encodes back to bytes that parse to the same packet. `looks_like_utp` never panics either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_utp::{looks_like_utp, Packet};

fuzz_target!(|data: &[u8]| {
    let _ = looks_like_utp(data);
    if let Ok(p) = Packet::parse(data) {
        let bytes = p.to_vec();
        assert_eq!(bytes.len(), p.encoded_len());
        assert_eq!(Packet::parse(&bytes), Ok(p));
    }
});
