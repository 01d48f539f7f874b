//! Resume files are read back from disk, so they are untrusted: decoding never panics, and what
//! decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_core::Id20;
use shoal_storage::ResumeData;

fuzz_target!(|data: &[u8]| {
    let hash = Id20([7; 20]);
    if let Ok(d) = ResumeData::decode(data, &hash, std::path::Path::new("fuzz")) {
        // Version 1 files re-encode as version 2; only compare what this code writes.
        if data.get(8..12) == Some(&2u32.to_le_bytes()[..]) {
            assert_eq!(d.encode(), data);
        }
    }
});
