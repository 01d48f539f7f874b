//! The parser meets hostile input: a few hundred thousand random and mutated .torrent files, each of
//! which must give `Ok` or `Err`, never a panic, and an `Ok` must be internally consistent.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_metainfo::bencode::write;
use shoal_metainfo::{Magnet, Metainfo};

fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/conformance/metainfo");
    let mut out = Vec::new();
    for sub in ["libtorrent", "webtorrent-fixtures", "crafted"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "torrent") {
                continue;
            }
            let bytes = std::fs::read(path).unwrap();
            // Big files make each iteration slow without adding shapes.
            if bytes.len() < 64 * 1024 {
                out.push(bytes);
            }
        }
    }
    assert!(out.len() > 40);
    out
}

fn check(bytes: &[u8]) {
    if let Ok(m) = Metainfo::from_bytes(bytes) {
        let i = &m.info;
        assert!(i.total_length > 0);
        assert_eq!(
            i.num_pieces() as u64,
            i.total_length.div_ceil(i.piece_length as u64)
        );
        let mut offset = 0;
        for f in &i.files {
            assert_eq!(f.offset, offset);
            offset += f.length;
            for c in &f.path {
                assert!(!c.is_empty() && c != "." && c != "..");
                assert!(!c.contains('/') && !c.contains('\\') && !c.contains('\0'));
            }
        }
        assert_eq!(offset, i.total_length);
        // What was loaded reloads identically from its own info bytes.
        let again = Metainfo::from_info_bytes(&m.info_bytes, m.trackers.clone()).unwrap();
        assert_eq!(again.info, m.info);
        assert_eq!(again.info_hash, m.info_hash);
    }
}

fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.random_range(1..4) {
        if v.is_empty() {
            v.push(rng.random());
            continue;
        }
        let at = rng.random_range(0..v.len());
        match rng.random_range(0..7) {
            0 => v[at] = rng.random(),
            1 => v[at] = *b"ilde0123456789:-".get(rng.random_range(0..16)).unwrap(),
            2 => {
                v.remove(at);
            }
            3 => v.insert(
                at,
                *b"ilde0123456789:".get(rng.random_range(0..15)).unwrap(),
            ),
            4 => v.truncate(at),
            5 => {
                // Duplicate a slice somewhere else (nests structures).
                let end = (at + rng.random_range(1..64)).min(v.len());
                let chunk = v[at..end].to_vec();
                let to = rng.random_range(0..v.len());
                v.splice(to..to, chunk);
            }
            _ => {
                // Replace a number with an extreme one.
                let n = [
                    "-1",
                    "0",
                    "9223372036854775807",
                    "99999999999999999999",
                    "4294967296",
                ][rng.random_range(0..5)];
                v.splice(at..at, n.bytes());
            }
        }
    }
    v
}

#[test]
fn mutated_torrents_never_panic() {
    let corpus = corpus();
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut loaded = 0;
    for _ in 0..200_000 {
        let base = &corpus[rng.random_range(0..corpus.len())];
        let input = mutate(&mut rng, base);
        check(&input);
        loaded += Metainfo::from_bytes(&input).is_ok() as u32;
    }
    // The mutations must leave many inputs loadable, or the test only exercises the scanner.
    assert!(loaded > 1_000, "only {loaded} mutated inputs loaded");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..100_000 {
        let len = rng.random_range(0..128);
        let mut v: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if rng.random_bool(0.5) {
            v.insert(0, b'd');
        }
        check(&v);
        let _ = Magnet::parse(&String::from_utf8_lossy(&v));
    }
}

/// Random info dictionaries with fields of random types: reaches the validation paths that
/// byte mutation rarely does.
#[test]
fn structured_random_info_dicts_never_panic() {
    let mut rng = StdRng::seed_from_u64(42);
    let value = |rng: &mut StdRng, out: &mut Vec<u8>| match rng.random_range(0..5) {
        0 => write::int(out, rng.random_range(-5..70_000)),
        1 => write::int(out, rng.random()),
        2 => write::bytes(out, &vec![b'x'; rng.random_range(0..61)]),
        3 => out.extend_from_slice(b"le"),
        _ => out.extend_from_slice(b"l1:a2:..1:/e"),
    };
    for _ in 0..50_000 {
        let mut info = vec![b'd'];
        let mut keys: Vec<&[u8]> = vec![
            b"files",
            b"length",
            b"name",
            b"piece length",
            b"pieces",
            b"private",
        ];
        keys.retain(|_| rng.random_bool(0.8));
        for key in keys {
            write::bytes(&mut info, key);
            if key == b"files" && rng.random_bool(0.7) {
                info.push(b'l');
                for _ in 0..rng.random_range(0..4) {
                    info.extend_from_slice(b"d6:length");
                    value(&mut rng, &mut info);
                    info.extend_from_slice(b"4:path");
                    value(&mut rng, &mut info);
                    info.push(b'e');
                }
                info.push(b'e');
            } else if key == b"pieces" && rng.random_bool(0.7) {
                write::bytes(&mut info, &vec![7u8; 20 * rng.random_range(0..5)]);
            } else {
                value(&mut rng, &mut info);
            }
        }
        info.push(b'e');
        let mut torrent = b"d4:info".to_vec();
        torrent.extend_from_slice(&info);
        torrent.push(b'e');
        check(&torrent);
    }
}
