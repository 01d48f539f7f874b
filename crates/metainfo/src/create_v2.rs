//! Creating v2 and hybrid torrents (BEP 52), laid out and encoded as libtorrent's
//! `create_torrent` does, so the same files and piece size give the same info-hashes.
//!
//! - Files are in path order (the order of the `file tree`'s sorted keys). In a torrent of more
//!   than one file, every non-empty file that does not end on a piece boundary is followed by a pad
//!   file up to it, the last file included (libtorrent's "tail padding"); a single file gets none.
//! - Each piece then holds the data of one file: its v2 hash is the root of the merkle subtree of
//!   its 16 KiB blocks (missing blocks are zero leaves), and a hybrid's SHA-1 covers the piece with
//!   its pad zeros. A file of one piece has the root of its blocks padded to a power of two only,
//!   and no piece layer.
//! - The info dictionary is written in canonical bencoding (a `meta version` torrent must be):
//!   `file tree`, a hybrid's `files` (pad files as `attr` `p`, path `.pad/N`) or `length`,
//!   `meta version` 2, `name`, `piece length`, a hybrid's `pieces`, `private`. `piece layers` (one
//!   entry per file of more than one piece, by root) goes beside it, always present as libtorrent
//!   writes it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha1::{Digest, Sha1};
use shoal_core::Id32;

use crate::bencode::write;
use crate::create::{hash_pieces, CreatedTorrent, SourceFile, TorrentBuilder};
use crate::merkle::{self, BLOCK_SIZE};
use crate::{Metainfo, MetainfoError};

/// The hashes of one piece: SHA-1 (hybrid) and the v2 piece hash (or a one-piece file's root).
type PieceDigests = (Option<[u8; 20]>, Option<Id32>);

/// Builds a v2 or hybrid torrent of `files` (in torrent order, none of them pad files yet).
pub(crate) fn build(
    builder: &TorrentBuilder,
    files: Vec<SourceFile>,
    name: String,
    is_dir: bool,
    piece_length: u32,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CreatedTorrent, MetainfoError> {
    let pl = u64::from(piece_length);
    let hybrid = builder.version.has_v1();
    let layout = pad_layout(files, pl);
    let total: u64 = layout.iter().map(|f| f.length).sum();
    let num_pieces = total.div_ceil(pl) as usize;

    // Which file each piece belongs to, and the piece's index within it.
    let mut owner: Vec<Option<(usize, u64)>> = vec![None; num_pieces];
    let mut offset = 0u64;
    for (i, f) in layout.iter().enumerate() {
        if !f.pad && f.length > 0 {
            let first = (offset / pl) as usize;
            for k in 0..merkle::file_num_pieces(f.length, pl) {
                if let Some(slot) = owner.get_mut(first + k as usize) {
                    *slot = Some((i, k));
                }
            }
        }
        offset += f.length;
    }

    let hash = |piece: usize, data: &[u8]| -> PieceDigests {
        let sha1 = hybrid.then(|| Sha1::digest(data).into());
        let v2 = owner[piece].map(|(file, k)| {
            let length = layout[file].length;
            let in_piece = (length - k * pl).min(pl) as usize;
            let blocks: Vec<Id32> = data[..in_piece.min(data.len())]
                .chunks(BLOCK_SIZE as usize)
                .map(merkle::hash_block)
                .collect();
            if merkle::has_piece_layer(length, pl) {
                merkle::piece_hash(&blocks, pl)
            } else {
                merkle::single_piece_root(&blocks)
            }
        });
        (sha1, v2)
    };
    let digests = hash_pieces(
        &layout,
        total,
        piece_length,
        builder.threads,
        progress,
        &hash,
    )?;

    // Each file's piece hashes in order give its root and, past one piece, its layer.
    let mut per_file: Vec<Vec<Id32>> = vec![Vec::new(); layout.len()];
    for (piece, (_, v2)) in digests.iter().enumerate() {
        if let (Some((file, _)), Some(h)) = (owner[piece], v2) {
            per_file[file].push(*h);
        }
    }
    let mut roots: Vec<Option<Id32>> = vec![None; layout.len()];
    let mut layers: BTreeMap<Id32, Vec<Id32>> = BTreeMap::new();
    for (i, hashes) in per_file.into_iter().enumerate() {
        match hashes.len() {
            0 => {}
            1 if !merkle::has_piece_layer(layout[i].length, pl) => roots[i] = Some(hashes[0]),
            _ => {
                let root = merkle::root_from_piece_layer(&hashes, pl);
                roots[i] = Some(root);
                layers.insert(root, hashes);
            }
        }
    }

    let mut info = vec![b'd'];
    // A hybrid single file's attributes are in the v1 part too, as libtorrent writes them.
    if let Some(attr) = layout
        .first()
        .filter(|_| hybrid && !is_dir)
        .and_then(|f| f.attr())
    {
        write::bytes(&mut info, b"attr");
        write::bytes(&mut info, attr.as_bytes());
    }
    write::bytes(&mut info, b"file tree");
    encode_file_tree(&mut info, &layout, &roots, &name, is_dir);
    if hybrid {
        if is_dir {
            write::bytes(&mut info, b"files");
            info.push(b'l');
            for f in &layout {
                info.push(b'd');
                if let Some(attr) = f.attr() {
                    write::bytes(&mut info, b"attr");
                    write::bytes(&mut info, attr.as_bytes());
                }
                write::bytes(&mut info, b"length");
                write::int(&mut info, f.length as i64);
                write::bytes(&mut info, b"path");
                info.push(b'l');
                for element in &f.path {
                    write::bytes(&mut info, element.as_bytes());
                }
                info.extend_from_slice(b"ee");
            }
            info.push(b'e');
        } else {
            write::bytes(&mut info, b"length");
            write::int(&mut info, total as i64);
        }
    }
    write::bytes(&mut info, b"meta version");
    write::int(&mut info, 2);
    write::bytes(&mut info, b"name");
    write::bytes(&mut info, name.as_bytes());
    write::bytes(&mut info, b"piece length");
    write::int(&mut info, i64::from(piece_length));
    if hybrid {
        let pieces: Vec<u8> = digests
            .iter()
            .flat_map(|(sha1, _)| sha1.unwrap_or_default())
            .collect();
        write::bytes(&mut info, b"pieces");
        write::bytes(&mut info, &pieces);
    }
    if builder.private {
        write::bytes(&mut info, b"private");
        write::int(&mut info, 1);
    }
    info.push(b'e');

    let mut layers_out = vec![b'd'];
    for (root, hashes) in &layers {
        write::bytes(&mut layers_out, &root.0);
        let concat: Vec<u8> = hashes.iter().flat_map(|h| h.0).collect();
        write::bytes(&mut layers_out, &concat);
    }
    layers_out.push(b'e');

    let bytes = builder.encode_torrent_with_layers(&info, Some(&layers_out));
    // Parsing it back checks the layout, the hybrid's two file lists and every piece layer.
    let metainfo = Metainfo::from_bytes(&bytes)?;
    Ok(CreatedTorrent { bytes, metainfo })
}

/// The files with the pad files libtorrent's `canonicalize` inserts: after every non-empty file
/// that does not end on a piece boundary, when there is more than one file.
fn pad_layout(files: Vec<SourceFile>, piece_length: u64) -> Vec<SourceFile> {
    let multi = files.len() > 1;
    let mut out = Vec::with_capacity(files.len() * 2);
    let mut offset = 0u64;
    for f in files {
        offset += f.length;
        let non_empty = f.length > 0;
        out.push(f);
        if multi && non_empty && !offset.is_multiple_of(piece_length) {
            let pad = piece_length - offset % piece_length;
            out.push(SourceFile {
                disk_path: PathBuf::new(),
                path: vec![".pad".to_string(), pad.to_string()],
                length: pad,
                pad: true,
                executable: false,
            });
            offset += pad;
        }
    }
    out
}

/// Writes the `file tree`: nested dictionaries by path element, each file a `""` entry with its
/// `attr` (if any), `length` and (if not empty) `pieces root`. The files are in path order, which is the sorted
/// key order at every level, so the tree is written in one pass without recursion.
fn encode_file_tree(
    out: &mut Vec<u8>,
    layout: &[SourceFile],
    roots: &[Option<Id32>],
    name: &str,
    is_dir: bool,
) {
    out.push(b'd');
    let mut open: Vec<&str> = Vec::new();
    let single = [name.to_string()];
    for (f, root) in layout.iter().zip(roots).filter(|(f, _)| !f.pad) {
        let path: &[String] = if is_dir { &f.path } else { &single };
        let Some((file_name, dirs)) = path.split_last() else {
            continue;
        };
        let common = open
            .iter()
            .zip(dirs)
            .take_while(|(a, b)| **a == b.as_str())
            .count();
        for _ in common..open.len() {
            out.push(b'e');
            open.pop();
        }
        for d in &dirs[common..] {
            write::bytes(out, d.as_bytes());
            out.push(b'd');
            open.push(d);
        }
        write::bytes(out, file_name.as_bytes());
        out.push(b'd');
        write::bytes(out, b"");
        out.push(b'd');
        if let Some(attr) = f.attr() {
            write::bytes(out, b"attr");
            write::bytes(out, attr.as_bytes());
        }
        write::bytes(out, b"length");
        write::int(out, f.length as i64);
        if let Some(root) = root {
            write::bytes(out, b"pieces root");
            write::bytes(out, &root.0);
        }
        out.extend_from_slice(b"ee");
    }
    for _ in &open {
        out.push(b'e');
    }
    out.push(b'e');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Version;
    use rand::{Rng, SeedableRng};

    #[test]
    fn roots_layers_and_pads_follow_the_data() {
        let dir = std::env::temp_dir().join(format!("shoal-create-v2-{}", std::process::id()));
        let root = dir.join("t");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut contents = Vec::new();
        for (name, len) in [("a.bin", 100_000usize), ("sub/b.bin", 16_384), ("z.bin", 5)] {
            let mut data = vec![0u8; len];
            rng.fill(&mut data[..]);
            std::fs::write(root.join(name), &data).unwrap();
            contents.push(data);
        }
        for version in [Version::V2, Version::Hybrid] {
            let made = TorrentBuilder::new(&root)
                .piece_length(Some(32_768))
                .version(version)
                .no_date()
                .build(&mut |_, _| {})
                .unwrap();
            let m = made.metainfo;
            assert_eq!(m.version(), version);
            let real: Vec<usize> = (0..m.info.files.len())
                .filter(|&i| !m.info.files[i].is_pad())
                .collect();
            assert_eq!(real.len(), 3);
            for (i, data) in real.iter().zip(&contents) {
                let blocks: Vec<Id32> = data.chunks(16_384).map(merkle::hash_block).collect();
                assert_eq!(
                    m.info.pieces_root(*i),
                    merkle::file_root(&blocks, 32_768).as_ref()
                );
                assert_eq!(m.info.files[*i].offset % 32_768, 0, "aligned");
            }
            // Only a.bin (4 pieces) has a layer; the pads fill to each boundary, the last one too.
            assert_eq!(m.piece_layers.len(), 1);
            assert_eq!(m.piece_layer(real[0]).map(<[_]>::len), Some(4));
            assert_eq!(m.info.total_length, 4 * 32_768 + 32_768 + 32_768);
            assert_eq!(
                m.info.pieces.len(),
                if version == Version::V2 { 0 } else { 6 }
            );
            // Kept as a bare .torrent (a magnet's metadata and layers), it reads back the same.
            let back = crate::Metainfo::from_bytes(&m.bare_torrent_bytes()).unwrap();
            assert_eq!(back.info_hash, m.info_hash);
            assert_eq!(back.info_hash_v2, m.info_hash_v2);
            assert_eq!(back.piece_layers, m.piece_layers);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
