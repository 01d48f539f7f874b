//! Piece storage for shoal: where each piece's bytes live on disk, how they get there, and how we
//! know they are right.
//!
//! Only hash-verified pieces count as done, and a crash never loses verified work nor reports
//! unverified data as done: data files are synced before the resume data that vouches for them is
//! written, atomically.
//!
//! - [`Layout`]: pieces and blocks mapped to file spans (pad files, zero-length files, short last
//!   piece);
//! - [`Storage`]: one torrent's files, block writes with hashing of completed pieces, reads,
//!   resume data, recheck;
//! - [`DiskPool`]: the threads that run all of that off the async runtime, behind a bounded queue;
//! - [`resolve_save_path`]: what a user-given path means;
//! - [`verify`]: a read-only check of data against a torrent (`shoal verify`).
//!
//! # Driving it from the engine
//! ```text
//! open:     Storage::open(info, info_hash, opts) -> Startup::{Fresh, Resumed, NeedsRecheck{warning}}
//!           NeedsRecheck -> storage.recheck(&RecheckOptions::default(), &progress) on a thread
//! download: pool.try_submit(move || storage.write_block(piece, offset, &bytes)) ->
//!           Stored | Duplicate | Verified (send `have`) | HashFailed (re-request the piece;
//!           storage.block_hashes(piece) is the evidence for a smart ban)
//! upload:   pool job: storage.read_block(piece, offset, len)
//! resume:   storage.flush_resume_if_due(Duration::from_secs(5)) every second or so (on the pool);
//!           storage.close() on clean shutdown
//! ```
//! All `Storage` calls block on disk and hashing: run them on a [`DiskPool`], never on an async
//! worker. `Storage` is `Send + Sync`; share it with an `Arc`.

#![warn(missing_docs)]

mod bitfield;
mod error;
mod files;
mod layout;
mod parts;
mod piece_hashes;
mod pool;
mod recheck;
mod resume;
mod save_path;
mod storage;

pub use bitfield::Bitfield;
pub use error::{Result, StorageError};
pub use layout::{Layout, LayoutFile, Span, SpanIter, BLOCK_SIZE};
pub use parts::part_file_path;
pub use pool::{DiskPool, TrySubmitError};
pub use recheck::{verify, PieceCheck, RecheckOptions, RecheckProgress, RecheckReport};
pub use resume::{
    current_boot_id, default_resume_path, state_dir_resume_path, write_atomic, FileStamp,
    ResumeData, ResumeWarning, RESUME_VERSION,
};
pub use save_path::resolve_save_path;
pub use storage::{Mode, ResumeLocation, Startup, Storage, StorageOptions, WriteOutcome};

/// Locks `m`. A panic in another thread while holding the lock leaves plain data that is still
/// usable (jobs and I/O run outside the locks), so a poisoned lock is taken as it is.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
