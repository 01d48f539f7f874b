//! Runs of blocks written together (`write_blocks`) answer exactly as block-by-block writes do,
//! and preallocation never touches bytes already in a file.

mod common;

use common::Fixture;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_storage::{Storage, StorageOptions, WriteOutcome};

fn sizes() -> Vec<(u64, bool)> {
    vec![
        (100_000, false),
        (0, false),
        (31_072, true),
        (5, false),
        (300_000, false),
        (12_345, false),
        (65_536, false),
        (77, false),
    ]
}

type Step = (u32, u32, Vec<Vec<u8>>);

/// Random runs over every piece: blocks in order within a run, some runs repeated (duplicates),
/// some with a corrupt byte (the piece then fails and is written again).
fn random_steps(f: &Fixture, rng: &mut StdRng) -> Vec<Step> {
    let mut steps = Vec::new();
    for p in 0..f.num_pieces() {
        let blocks = f.blocks(p);
        for round in 0..2 {
            let corrupt = round == 0 && rng.random_bool(0.3);
            let mut i = 0;
            while i < blocks.len() {
                let n = rng.random_range(1..=4).min(blocks.len() - i);
                let mut run: Vec<Vec<u8>> = blocks[i..i + n].iter().map(|b| b.1.clone()).collect();
                if corrupt && i == 0 {
                    run[0][0] ^= 0x55;
                }
                steps.push((p, blocks[i].0, run.clone()));
                if rng.random_bool(0.2) {
                    steps.push((p, blocks[i].0, run));
                }
                i += n;
            }
            if !corrupt {
                break;
            }
        }
    }
    steps
}

#[test]
fn runs_answer_as_blocks_do() {
    for seed in 0..6u64 {
        let f = Fixture::new("t", &sizes(), 65_536, seed);
        let mut rng = StdRng::seed_from_u64(seed);
        let steps = random_steps(&f, &mut rng);
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut o1 = StorageOptions::new(d1.path());
        o1.hash_in_memory = seed % 2 == 0;
        let mut o2 = StorageOptions::new(d2.path());
        o2.hash_in_memory = seed % 2 == 0;
        o2.preallocate = seed % 3 == 0;
        let (runs, _) = Storage::open(&f.info, f.info_hash, o1).unwrap();
        let (single, _) = Storage::open(&f.info, f.info_hash, o2).unwrap();
        for (p, o, run) in &steps {
            let slices: Vec<&[u8]> = run.iter().map(|b| &b[..]).collect();
            let got: Vec<WriteOutcome> = runs
                .write_blocks(*p, *o, &slices)
                .into_iter()
                .map(|r| r.unwrap())
                .collect();
            let mut at = *o;
            let want: Vec<WriteOutcome> = run
                .iter()
                .map(|b| {
                    let r = single.write_block(*p, at, b).unwrap();
                    at += b.len() as u32;
                    r
                })
                .collect();
            assert_eq!(got, want, "seed {seed} piece {p} offset {o}");
        }
        assert!(runs.verified().all());
        for file in f.info.files.iter().filter(|f| !f.attr.pad) {
            let start = file.offset as usize;
            let want = &f.data[start..start + file.length as usize];
            assert_eq!(
                std::fs::read(d1.path().join(file.relative_path())).unwrap(),
                want
            );
            assert_eq!(
                std::fs::read(d2.path().join(file.relative_path())).unwrap(),
                want
            );
        }
    }
}

#[test]
fn preallocation_keeps_existing_bytes_and_reaches_full_length() {
    let f = Fixture::new("t", &[(300_000, false)], 65_536, 7);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(f.info.files[0].relative_path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"bytes that were here first").unwrap();
    let (s, _) = Storage::open(&f.info, f.info_hash, StorageOptions::new(dir.path())).unwrap();
    // A block of the last piece: the file grows to its full length at once.
    let last = f.num_pieces() - 1;
    let (o, b) = f.blocks(last).remove(0);
    assert_eq!(s.write_block(last, o, &b).unwrap(), WriteOutcome::Stored);
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk.len(), 300_000);
    assert_eq!(&on_disk[..26], b"bytes that were here first");
    let at = (last * 65_536 + o) as usize;
    assert_eq!(&on_disk[at..at + b.len()], &b[..]);
    // Between the two, nothing was written: zeros.
    assert!(on_disk[26..at].iter().all(|&x| x == 0));
}
