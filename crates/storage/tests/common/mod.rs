//! Test fixtures: torrents built by hand (`Info` values with real piece hashes) over known data.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha1::{Digest, Sha1};
use shoal_core::Id20;
use shoal_metainfo::{FileAttr, FileEntry, Info};
use shoal_storage::BLOCK_SIZE;

/// A torrent and its full piece stream (pads are zeros).
pub struct Fixture {
    pub info: Info,
    pub info_hash: Id20,
    pub data: Vec<u8>,
}

impl Fixture {
    /// Files of `sizes` (true = pad file) named `name/f<i>`, random data from `seed`.
    pub fn new(name: &str, sizes: &[(u64, bool)], piece_length: u32, seed: u64) -> Fixture {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut files = Vec::new();
        let mut data = Vec::new();
        for (i, &(length, pad)) in sizes.iter().enumerate() {
            let path = if pad {
                vec![name.to_string(), ".pad".into(), format!("{i}")]
            } else {
                vec![name.to_string(), format!("f{i}")]
            };
            files.push(FileEntry {
                path,
                length,
                offset: data.len() as u64,
                attr: FileAttr {
                    pad,
                    ..FileAttr::default()
                },
                symlink_target: None,
            });
            let start = data.len();
            data.resize(start + length as usize, 0);
            if !pad {
                rng.fill(&mut data[start..]);
            }
        }
        let pieces = data
            .chunks(piece_length as usize)
            .map(|c| Id20(Sha1::digest(c).into()))
            .collect();
        let mut ih = [0u8; 20];
        rng.fill(&mut ih);
        Fixture {
            info: Info {
                name: name.into(),
                piece_length,
                pieces,
                total_length: data.len() as u64,
                files,
                private: false,
                multi_file: true,
                v2: None,
            },
            info_hash: Id20(ih),
            data,
        }
    }

    /// The bytes of piece `p`.
    pub fn piece(&self, p: u32) -> &[u8] {
        let pl = self.info.piece_length as usize;
        let start = p as usize * pl;
        &self.data[start..(start + pl).min(self.data.len())]
    }

    /// (offset, bytes) of every block of piece `p`.
    pub fn blocks(&self, p: u32) -> Vec<(u32, Vec<u8>)> {
        self.piece(p)
            .chunks(BLOCK_SIZE as usize)
            .enumerate()
            .map(|(i, b)| (i as u32 * BLOCK_SIZE, b.to_vec()))
            .collect()
    }

    pub fn num_pieces(&self) -> u32 {
        self.info.pieces.len() as u32
    }
}
