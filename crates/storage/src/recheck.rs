//! Recheck: hash the data that is on disk, on every core, and sort pieces into valid, bad and
//! missing.
//!
//! Each thread claims a run of consecutive pieces (about `read_ahead` bytes) from a shared
//! counter, reads them one piece at a time with positioned reads and hashes them. Runs keep each
//! thread's reads sequential for the kernel's read-ahead; the memory used is one piece buffer per
//! thread, whatever the torrent's size.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::bitfield::Bitfield;
use crate::error::{Result, StorageError};
use crate::storage::Storage;

/// How to recheck.
#[derive(Clone, Debug)]
pub struct RecheckOptions {
    /// Hashing threads; 0 means one per core.
    pub threads: usize,
    /// Bytes of consecutive pieces a thread claims at a time.
    pub read_ahead: usize,
}

impl Default for RecheckOptions {
    fn default() -> Self {
        RecheckOptions {
            threads: 0,
            read_ahead: 4 << 20,
        }
    }
}

/// Progress of a running recheck, to poll from another thread (a progress bar).
#[derive(Debug, Default)]
pub struct RecheckProgress {
    /// Pieces done so far.
    pub pieces: AtomicU32,
    /// Bytes of piece data processed so far (pads and missing bytes included).
    pub bytes: AtomicU64,
    /// Set it to stop the recheck early (it then returns what it has, with the rest missing).
    pub cancel: AtomicBool,
}

/// What a recheck found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecheckReport {
    /// Pieces whose data hashes correctly.
    pub valid: Bitfield,
    /// Pieces whose data is all there but hashes wrong, ascending.
    pub bad: Vec<u32>,
    /// Pieces with data missing: a file absent or too short, or a piece that reads as all zeros
    /// (a sparse hole never written) and does not hash as zeros. Ascending.
    pub missing: Vec<u32>,
    /// Bytes read from files (pad bytes and missing bytes excluded).
    pub bytes_read: u64,
}

/// The verdict on one piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceCheck {
    /// Hashes correctly.
    Valid,
    /// Present but wrong.
    Bad,
    /// Not (all) there.
    Missing,
}

pub(crate) fn run(
    storage: &Storage,
    opts: &RecheckOptions,
    progress: &RecheckProgress,
) -> Result<RecheckReport> {
    let layout = storage.layout();
    let n = layout.num_pieces();
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.threads
    }
    .min(n.max(1) as usize);
    let run_len = (opts.read_ahead as u64 / layout.piece_length() as u64).max(1) as u32;
    let next = AtomicU32::new(0);
    let verdicts: Mutex<Vec<(u32, PieceCheck, u64)>> = Mutex::new(Vec::with_capacity(n as usize));
    let first_error: Mutex<Option<StorageError>> = Mutex::new(None);
    let failed = AtomicBool::new(false);

    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                // Page-aligned: the kernel's copy from the page cache into an unaligned buffer
                // measured several times slower here.
                let pl = layout.piece_length() as usize;
                let mut raw = vec![0u8; pl + 4096];
                let off = raw.as_ptr().align_offset(4096).min(4096);
                let buf = &mut raw[off..off + pl];
                let mut local = Vec::new();
                'claim: loop {
                    if progress.cancel.load(Ordering::Relaxed) || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let start = next.fetch_add(run_len, Ordering::Relaxed);
                    if start >= n {
                        break;
                    }
                    for piece in start..(start + run_len).min(n) {
                        match check_piece(storage, piece, buf) {
                            Ok((verdict, read)) => {
                                local.push((piece, verdict, read));
                                progress.pieces.fetch_add(1, Ordering::Relaxed);
                                progress
                                    .bytes
                                    .fetch_add(layout.piece_size(piece) as u64, Ordering::Relaxed);
                            }
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                first_error
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .get_or_insert(e);
                                break 'claim;
                            }
                        }
                    }
                }
                verdicts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(local);
            });
        }
    });

    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let mut verdicts = verdicts.into_inner().unwrap_or_else(|e| e.into_inner());
    verdicts.sort_unstable_by_key(|v| v.0);
    let mut report = RecheckReport {
        valid: Bitfield::new(n),
        bad: Vec::new(),
        missing: Vec::new(),
        bytes_read: 0,
    };
    let mut seen = Bitfield::new(n);
    for (piece, verdict, read) in verdicts {
        seen.set(piece);
        report.bytes_read += read;
        match verdict {
            PieceCheck::Valid => report.valid.set(piece),
            PieceCheck::Bad => report.bad.push(piece),
            PieceCheck::Missing => report.missing.push(piece),
        }
    }
    // Pieces left unchecked by a cancel count as missing.
    report.missing.extend((0..n).filter(|&p| !seen.get(p)));
    report.missing.sort_unstable();
    Ok(report)
}

/// Read and hash one piece; returns the verdict and the bytes read from files.
pub(crate) fn check_piece(
    storage: &Storage,
    piece: u32,
    buf: &mut [u8],
) -> Result<(PieceCheck, u64)> {
    let size = storage.layout().piece_size(piece) as usize;
    let buf = &mut buf[..size];
    let missing = storage.read_range_lenient(piece, 0, buf)?;
    let read = storage
        .layout()
        .stream_spans(storage.layout().piece_offset(piece), size as u64)
        .filter(|s| !s.pad)
        .map(|s| s.len as u64)
        .sum();
    if missing.is_some() {
        return Ok((PieceCheck::Missing, 0));
    }
    if storage.piece_hashes().matches(piece, buf) {
        return Ok((PieceCheck::Valid, read));
    }
    // A hole never written reads as zeros; call that missing, not corrupt.
    if buf.iter().all(|&b| b == 0) {
        return Ok((PieceCheck::Missing, read));
    }
    Ok((PieceCheck::Bad, read))
}

/// Check the data of torrent `info` under `save_path` without changing anything (read-only, no
/// resume data): what `shoal verify` does. A v2 or hybrid torrent needs its `piece_layers`.
pub fn verify(
    info: &shoal_metainfo::Info,
    info_hash: shoal_core::Id20,
    save_path: &std::path::Path,
    piece_layers: &std::collections::BTreeMap<shoal_core::Id32, Vec<shoal_core::Id32>>,
    opts: &RecheckOptions,
    progress: &RecheckProgress,
) -> Result<RecheckReport> {
    let mut so = crate::storage::StorageOptions::new(save_path);
    so.piece_layers = piece_layers.clone();
    so.mode = crate::storage::Mode::ReadOnly;
    so.resume = crate::storage::ResumeLocation::Disabled;
    let (storage, _) = Storage::open(info, info_hash, so)?;
    storage.recheck(opts, progress)
}
