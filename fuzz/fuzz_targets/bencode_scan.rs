//! The bencode scanner never panics, and what it accepts serde_bencode decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_metainfo::bencode;

fuzz_target!(|data: &[u8]| {
    if bencode::scan(data).is_ok() {
        let _ = serde_bencode::from_bytes::<serde_bencode::value::Value>(data);
    }
    let _ = bencode::scan_prefix(data, 0, 8);
});
