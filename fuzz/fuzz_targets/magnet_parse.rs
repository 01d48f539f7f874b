//! Magnet parsing never panics, and a parsed link (v1, v2 or hybrid) prints back to an equal link.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_metainfo::Magnet;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Ok(m) = Magnet::parse(&s) {
        let again = Magnet::parse(&m.to_string()).expect("reparses");
        assert_eq!(again.info_hash, m.info_hash);
        assert_eq!(again.info_hash_v2, m.info_hash_v2);
        assert_eq!(again.v1, m.v1);
    }
});
