//! BEP 52 metainfo: v2 and hybrid torrents. The input is used whole as a .torrent, and split in
//! two as the `file tree` and the `piece layers` of an otherwise well-formed v2 torrent (and of a
//! hybrid one), so the fuzzer spends its time in the v2 code. Never a panic; what loads keeps the
//! v2 invariants and reloads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_metainfo::{info_hash_v2_of, merkle, Metainfo, Version};

fn check(bytes: &[u8]) {
    let Ok(m) = Metainfo::from_bytes(bytes) else {
        return;
    };
    let info = &m.info;
    assert_eq!(info.files.iter().map(|f| f.length).sum::<u64>(), info.total_length);
    if m.version().has_v2() {
        assert_eq!(m.info_hash_v2, Some(info_hash_v2_of(&m.info_bytes)));
        let pl = u64::from(info.piece_length);
        assert!(pl.is_power_of_two() && pl >= merkle::BLOCK_SIZE);
        for (i, f) in info.files.iter().enumerate() {
            if let Some(layer) = m.piece_layer(i) {
                let root = info.pieces_root(i).expect("a layer belongs to a root");
                assert!(merkle::piece_layer_matches(layer, f.length, pl, root));
            }
        }
    }
    match m.version() {
        Version::V2 => assert_eq!(Some(m.info_hash), m.info_hash_v2.map(|h| h.truncated())),
        _ => assert_eq!(m.info_hash_v1(), Some(m.info_hash)),
    }
    let again = Metainfo::from_info_bytes(&m.info_bytes, Vec::new()).expect("reloads");
    assert_eq!(again.info, m.info);
    assert_eq!(again.info_hash_v2, m.info_hash_v2);
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let split = data.first().map_or(0, |&b| b as usize).min(data.len());
    let (tree, layers) = data.split_at(split);
    let tree = tree.get(1..).unwrap_or_default();
    for hybrid in [false, true] {
        let mut t = b"d4:infod9:file tree".to_vec();
        t.extend_from_slice(tree);
        if hybrid {
            t.extend_from_slice(b"6:lengthi16384e");
        }
        t.extend_from_slice(b"12:meta versioni2e4:name4:test12:piece lengthi16384e");
        if hybrid {
            t.extend_from_slice(b"6:pieces20:aaaaaaaaaaaaaaaaaaaa");
        }
        t.extend_from_slice(b"e12:piece layers");
        t.extend_from_slice(layers);
        t.push(b'e');
        check(&t);
    }
});
