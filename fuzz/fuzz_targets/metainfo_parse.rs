//! Any bytes given to the .torrent parser give Ok or Err, never a panic; what loads reloads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_metainfo::Metainfo;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Metainfo::from_bytes(data) {
        let again = Metainfo::from_info_bytes(&m.info_bytes, Vec::new()).expect("reloads");
        assert_eq!(again.info_hash, m.info_hash);
        assert_eq!(again.info, m.info);
    }
});
