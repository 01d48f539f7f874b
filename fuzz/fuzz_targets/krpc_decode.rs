//! Every DHT packet is untrusted: decoding gives a message or an error, and what decodes
//! re-encodes to something that decodes again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = shoal_dht::decode(data) {
        let again = msg.encode();
        assert!(shoal_dht::decode(&again).is_ok());
    }
});
