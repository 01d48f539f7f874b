//! Magnet parsing never panics, and a parsed link prints back to an equal link.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_metainfo::Magnet;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Ok(m) = Magnet::parse(&s) {
        assert_eq!(Magnet::parse(&m.to_string()).expect("reparses").info_hash, m.info_hash);
    }
});
