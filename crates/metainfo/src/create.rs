//! Creating torrents from a file or folder.
//!
//! Files of a folder are sorted by path so the same input always gives the same info-hash.
//! Hashing runs on all cores: one thread reads the concatenated file stream piece by piece into a
//! small pool of reusable buffers (the bounded read-ahead), and one hashing thread per core takes
//! pieces from a bounded queue. Memory is bounded by `2 x threads` piece buffers.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sha1::{Digest, Sha1};
use shoal_core::AlignedBuf;

use crate::bencode::write;
use crate::{Metainfo, MetainfoError};

/// Smallest piece length accepted when creating (one block).
pub const MIN_PIECE_LENGTH: u32 = 16 * 1024;
/// Largest piece length accepted when creating.
pub const MAX_CREATE_PIECE_LENGTH: u32 = 256 << 20;

/// The piece length shoal picks for `total` bytes.
///
/// mktorrent's rule (1.1, `init.c`), which gives between ~1,600 and ~4,000 pieces for most sizes
/// and keeps small torrents fine-grained: up to 50 MiB 32 KiB, up to 150 MiB 64 KiB, up to 350 MiB
/// 128 KiB, up to 512 MiB 256 KiB, up to 1 GiB 512 KiB, up to 2 GiB 1 MiB, above that 2 MiB; shoal
/// continues doubling per further doubling of size up to 16 MiB so huge torrents keep their
/// `pieces` list (and bitfield) small.
pub fn auto_piece_length(total: u64) -> u32 {
    const MIB: u64 = 1 << 20;
    let table: [(u64, u32); 6] = [
        (50 * MIB, 15),
        (150 * MIB, 16),
        (350 * MIB, 17),
        (512 * MIB, 18),
        (1024 * MIB, 19),
        (2048 * MIB, 20),
    ];
    for (limit, log2) in table {
        if total <= limit {
            return 1 << log2;
        }
    }
    let mut log2 = 21;
    let mut limit = 4096 * MIB;
    while total > limit && log2 < 24 {
        log2 += 1;
        limit *= 2;
    }
    1 << log2
}

/// Options for a new torrent; [`TorrentBuilder::build`] reads the data and hashes it.
#[derive(Clone, Debug)]
pub struct TorrentBuilder {
    root: PathBuf,
    trackers: Vec<Vec<String>>,
    piece_length: Option<u32>,
    private: bool,
    comment: Option<String>,
    nodes: Vec<(String, u16)>,
    creation_date: Option<i64>,
    threads: usize,
}

/// A created torrent: the .torrent bytes and their parsed form.
#[derive(Clone, Debug)]
pub struct CreatedTorrent {
    /// The bencoded .torrent file.
    pub bytes: Vec<u8>,
    /// The same torrent, parsed back.
    pub metainfo: Metainfo,
}

/// A file found under the root, in torrent order.
struct SourceFile {
    disk_path: PathBuf,
    path: Vec<String>,
    length: u64,
}

#[derive(Serialize)]
struct FileOut {
    length: u64,
    path: Vec<String>,
}

/// The info dictionary; fields are declared in bencode key order.
#[derive(Serialize)]
struct InfoOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<Vec<FileOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    name: String,
    #[serde(rename = "piece length")]
    piece_length: u32,
    #[serde(with = "serde_bytes")]
    pieces: Vec<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    private: Option<u8>,
}

impl TorrentBuilder {
    /// A builder for the file or folder at `root`, with today's date and no trackers.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .ok();
        TorrentBuilder {
            root: root.into(),
            trackers: Vec::new(),
            piece_length: None,
            private: false,
            comment: None,
            nodes: Vec::new(),
            creation_date: now,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }

    /// Adds a tracker in a tier of its own (tiers are tried in order, BEP 12).
    pub fn tracker(mut self, url: impl Into<String>) -> Self {
        self.trackers.push(vec![url.into()]);
        self
    }

    /// Sets the piece length (a power of two of at least 16 KiB); `None` picks it from the size.
    pub fn piece_length(mut self, len: Option<u32>) -> Self {
        self.piece_length = len;
        self
    }

    /// Marks the torrent private (BEP 27).
    pub fn private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }

    /// Sets the comment.
    pub fn comment(mut self, comment: Option<String>) -> Self {
        self.comment = comment;
        self
    }

    /// Adds a DHT bootstrap node (BEP 5 `nodes`).
    pub fn node(mut self, host: impl Into<String>, port: u16) -> Self {
        self.nodes.push((host.into(), port));
        self
    }

    /// Leaves out `creation date`, so the .torrent bytes depend only on the data and options.
    pub fn no_date(mut self) -> Self {
        self.creation_date = None;
        self
    }

    /// Hashing threads (default: one per core).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Reads and hashes the data, calling `progress(hashed_bytes, total_bytes)` as it goes.
    pub fn build(
        &self,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<CreatedTorrent, MetainfoError> {
        let err = |m: String| MetainfoError::Create(m);
        let meta = std::fs::metadata(&self.root)
            .map_err(|e| err(format!("{}: {e}", self.root.display())))?;
        let name = self
            .root
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_owned()))
            .ok_or_else(|| err(format!("{} has no file name", self.root.display())))?;
        let name = name
            .to_str()
            .ok_or_else(|| err(format!("{:?} is not valid UTF-8", name)))?
            .to_string();
        let files = if meta.is_dir() {
            collect_files(&self.root)?
        } else {
            vec![SourceFile {
                disk_path: self.root.clone(),
                path: Vec::new(),
                length: meta.len(),
            }]
        };
        let total: u64 = files.iter().map(|f| f.length).sum();
        if total == 0 {
            return Err(err(format!(
                "{} contains no data (torrents cannot be empty)",
                self.root.display()
            )));
        }
        let piece_length = match self.piece_length {
            Some(p)
                if !p.is_power_of_two()
                    || !(MIN_PIECE_LENGTH..=MAX_CREATE_PIECE_LENGTH).contains(&p) =>
            {
                return Err(err(format!(
                    "piece size {p} must be a power of two between 16 KiB and 256 MiB"
                )))
            }
            Some(p) => p,
            None => auto_piece_length(total),
        };
        let pieces = hash_pieces(&files, total, piece_length, self.threads, progress)?;

        let info = InfoOut {
            files: meta.is_dir().then(|| {
                files
                    .iter()
                    .map(|f| FileOut {
                        length: f.length,
                        path: f.path.clone(),
                    })
                    .collect()
            }),
            length: (!meta.is_dir()).then_some(total),
            name,
            piece_length,
            pieces,
            private: self.private.then_some(1),
        };
        let info_bytes =
            serde_bencode::to_bytes(&info).map_err(|e| err(format!("encoding info: {e}")))?;
        let bytes = self.encode_torrent(&info_bytes);
        let metainfo = Metainfo::from_bytes(&bytes)?;
        Ok(CreatedTorrent { bytes, metainfo })
    }

    /// The outer dictionary, keys in sorted order, with the info bytes embedded as they are.
    fn encode_torrent(&self, info_bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(info_bytes.len() + 512);
        out.push(b'd');
        if let Some(first) = self.trackers.first().and_then(|t| t.first()) {
            write::bytes(&mut out, b"announce");
            write::bytes(&mut out, first.as_bytes());
        }
        if self.trackers.len() > 1 || self.trackers.first().is_some_and(|t| t.len() > 1) {
            write::bytes(&mut out, b"announce-list");
            out.push(b'l');
            for tier in &self.trackers {
                out.push(b'l');
                for url in tier {
                    write::bytes(&mut out, url.as_bytes());
                }
                out.push(b'e');
            }
            out.push(b'e');
        }
        if let Some(c) = &self.comment {
            write::bytes(&mut out, b"comment");
            write::bytes(&mut out, c.as_bytes());
        }
        write::bytes(&mut out, b"created by");
        write::bytes(
            &mut out,
            concat!("shoal/", env!("CARGO_PKG_VERSION")).as_bytes(),
        );
        if let Some(date) = self.creation_date {
            write::bytes(&mut out, b"creation date");
            write::int(&mut out, date);
        }
        write::bytes(&mut out, b"info");
        out.extend_from_slice(info_bytes);
        if !self.nodes.is_empty() {
            write::bytes(&mut out, b"nodes");
            out.push(b'l');
            for (host, port) in &self.nodes {
                out.push(b'l');
                write::bytes(&mut out, host.as_bytes());
                write::int(&mut out, *port as i64);
                out.push(b'e');
            }
            out.push(b'e');
        }
        out.push(b'e');
        out
    }
}

/// Every regular file under `root`, sorted by path. Symbolic links are not followed (they could
/// point outside the folder or loop).
fn collect_files(root: &Path) -> Result<Vec<SourceFile>, MetainfoError> {
    let err = |m: String| MetainfoError::Create(m);
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), Vec::<String>::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| err(format!("{}: {e}", dir.display())))?;
            let file_name = entry.file_name();
            let name = file_name
                .to_str()
                .ok_or_else(|| err(format!("{:?} is not a valid UTF-8 file name", entry.path())))?
                .to_string();
            let kind = entry
                .file_type()
                .map_err(|e| err(format!("{}: {e}", entry.path().display())))?;
            let mut path = rel.clone();
            path.push(name);
            if kind.is_dir() {
                stack.push((entry.path(), path));
            } else if kind.is_file() {
                let length = entry
                    .metadata()
                    .map_err(|e| err(format!("{}: {e}", entry.path().display())))?
                    .len();
                out.push(SourceFile {
                    disk_path: entry.path(),
                    path,
                    length,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Hashes the concatenation of `files` in pieces, on `threads` hashing threads.
fn hash_pieces(
    files: &[SourceFile],
    total: u64,
    piece_length: u32,
    threads: usize,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<u8>, MetainfoError> {
    let num_pieces = total.div_ceil(piece_length as u64) as usize;
    let hashes = Arc::new(Mutex::new(vec![0u8; num_pieces * 20]));
    let hashed = Arc::new(AtomicU64::new(0));
    // Read-ahead: at most 2 buffers per hashing thread exist at once.
    let depth = threads * 2;
    let (work_tx, work_rx) = sync_channel::<(usize, AlignedBuf)>(depth);
    let (free_tx, free_rx) = sync_channel::<AlignedBuf>(depth);
    for _ in 0..depth {
        let _ = free_tx.send(AlignedBuf::zeroed(piece_length as usize));
    }
    let work_rx = Arc::new(Mutex::new(work_rx));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let work_rx = Arc::clone(&work_rx);
            let free_tx = free_tx.clone();
            let hashes = Arc::clone(&hashes);
            let hashed = Arc::clone(&hashed);
            std::thread::spawn(move || loop {
                let job = work_rx.lock().map(|rx| rx.recv());
                let Ok(Ok((index, buf))) = job else { return };
                let digest: [u8; 20] = Sha1::digest(&*buf).into();
                if let Ok(mut h) = hashes.lock() {
                    h[index * 20..index * 20 + 20].copy_from_slice(&digest);
                }
                hashed.fetch_add(buf.len() as u64, Ordering::Relaxed);
                let _ = free_tx.send(buf);
            })
        })
        .collect();
    drop(free_tx);

    let read_result = read_pieces(files, piece_length, num_pieces, |index, fill| {
        let mut buf = free_rx
            .recv()
            .map_err(|_| MetainfoError::Create("a hashing thread stopped".into()))?;
        fill(&mut buf)?;
        work_tx
            .send((index, buf))
            .map_err(|_| MetainfoError::Create("a hashing thread stopped".into()))?;
        progress(hashed.load(Ordering::Relaxed), total);
        Ok(())
    });
    drop(work_tx);
    for w in workers {
        let _ = w.join();
    }
    read_result?;
    progress(hashed.load(Ordering::Relaxed), total);
    let hashes = Arc::try_unwrap(hashes)
        .ok()
        .and_then(|m| m.into_inner().ok())
        .ok_or_else(|| MetainfoError::Create("hash table still shared".into()))?;
    Ok(hashes)
}

type Fill<'a> = &'a mut dyn FnMut(&mut AlignedBuf) -> Result<(), MetainfoError>;

/// Walks the files in order and, for each piece, calls `sink(index, fill)` where `fill` appends
/// the piece's bytes to a buffer.
fn read_pieces(
    files: &[SourceFile],
    piece_length: u32,
    num_pieces: usize,
    mut sink: impl FnMut(usize, Fill<'_>) -> Result<(), MetainfoError>,
) -> Result<(), MetainfoError> {
    let mut file_index = 0;
    let mut current: Option<(File, u64)> = None; // open file and bytes left in it
    for piece in 0..num_pieces {
        let mut fill = |buf: &mut AlignedBuf| -> Result<(), MetainfoError> {
            let mut filled = 0;
            buf.set_len(piece_length as usize);
            while filled < piece_length as usize {
                if current.as_ref().is_none_or(|(_, left)| *left == 0) {
                    let Some(f) = files.get(file_index) else {
                        buf.set_len(filled);
                        return Ok(());
                    };
                    file_index += 1;
                    let handle = File::open(&f.disk_path).map_err(|e| {
                        MetainfoError::Create(format!("{}: {e}", f.disk_path.display()))
                    })?;
                    current = Some((handle, f.length));
                    continue;
                }
                let (handle, left) = current.as_mut().expect("checked above");
                let want = (piece_length as usize - filled).min(*left as usize);
                let path = &files[file_index - 1].disk_path;
                handle
                    .read_exact(&mut buf[filled..filled + want])
                    .map_err(|e| {
                        MetainfoError::Create(format!(
                            "{}: {e} (did the file change while hashing?)",
                            path.display()
                        ))
                    })?;
                *left -= want as u64;
                filled += want;
            }
            Ok(())
        };
        sink(piece, &mut fill)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_piece_length_follows_the_table() {
        assert_eq!(auto_piece_length(1), 32 * 1024);
        assert_eq!(auto_piece_length(50 << 20), 32 * 1024);
        assert_eq!(auto_piece_length((50 << 20) + 1), 64 * 1024);
        assert_eq!(auto_piece_length(1 << 30), 512 * 1024);
        assert_eq!(auto_piece_length(3 << 30), 2 << 20);
        assert_eq!(auto_piece_length(1 << 50), 16 << 20);
    }
}
