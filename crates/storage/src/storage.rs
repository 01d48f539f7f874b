//! One torrent's storage: blocks in, verified pieces out, resume data kept in step.
//!
//! The engine drives it from the disk pool (never from an async worker):
//! 1. [`Storage::open`] tells whether resume data was trusted or a recheck is needed;
//! 2. [`Storage::recheck`] if so;
//! 3. [`Storage::write_block`] for every block received; the call that completes a piece hashes
//!    it and answers [`WriteOutcome::Verified`] or [`WriteOutcome::HashFailed`] (then
//!    [`Storage::block_hashes`] gives per-block evidence for a smart ban);
//! 4. [`Storage::flush_resume_if_due`] now and then, [`Storage::close`] on shutdown;
//! 5. [`Storage::read_block`] to serve peers.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};
use shoal_core::{Id20, Id32};
use shoal_metainfo::Info;

use crate::bitfield::Bitfield;
use crate::error::{Result, StorageError};
use crate::files::FileStore;
use crate::layout::{Layout, BLOCK_SIZE};
use crate::lock;
use crate::parts::{part_file_path, part_offset};
use crate::piece_hashes::PieceHashes;
use crate::recheck::{self, RecheckOptions, RecheckProgress, RecheckReport};
use crate::resume::{self, FileStamp, ResumeData, ResumeWarning};

/// Whether the storage may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Download: files are created lazily and written.
    ReadWrite,
    /// Seed existing data or verify it: files are only opened read-only, nothing is created.
    ReadOnly,
}

/// Where the resume data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResumeLocation {
    /// `<save>/.<name>.shoal-resume`, hidden beside the download.
    BesideData,
    /// `<dir>/<info-hash hex>.shoal-resume` in a state folder of the caller's.
    StateDir(PathBuf),
    /// No resume data (verify).
    Disabled,
}

/// How to open a torrent's storage.
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// The folder that holds the torrent's top-level file or folder (see
    /// [`crate::resolve_save_path`]).
    pub save_path: PathBuf,
    /// Read-write (download) or read-only (seed existing data, verify).
    pub mode: Mode,
    /// Most file descriptors kept open at once.
    pub max_open_files: usize,
    /// Per file (pad files included, torrent order): false to skip it. `None` wants all.
    pub wanted_files: Option<Vec<bool>>,
    /// Where resume data is kept.
    pub resume: ResumeLocation,
    /// Hash blocks as they arrive in order while they are still in memory, instead of reading
    /// the whole piece back from disk once complete. Measured here (2 cores, 256 KiB pieces,
    /// blocks in order, example `hash_path`, best of 7): 852-865 MB/s and 1.20-1.24 CPU s/GiB in
    /// memory against 774 MB/s and 1.32-1.36 CPU s/GiB re-reading, even with the piece still in
    /// the page cache; a re-read that misses the cache would cost a disk read too.
    pub hash_in_memory: bool,
    /// Bytes of out-of-order blocks a piece may hold in memory for hashing; blocks past this are
    /// read back from disk when the piece completes.
    pub pending_limit_per_piece: usize,
    /// Allocate each wanted file's full length (`fallocate`) when it is first written, instead
    /// of growing it sparse block by block: less CPU per byte written (see `FileStore`), few
    /// extents. Falls back to sparse where the file system cannot. libtorrent and Transmission
    /// make the same choice available; shoal turns it on by default for the measured saving.
    pub preallocate: bool,
    /// The piece layers of a v2 or hybrid torrent (`Metainfo::piece_layers`), by file root:
    /// every file longer than one piece needs its layer to be verified. Empty for v1.
    pub piece_layers: BTreeMap<Id32, Vec<Id32>>,
}

impl StorageOptions {
    /// Defaults for a read-write download into `save_path`.
    pub fn new(save_path: impl Into<PathBuf>) -> StorageOptions {
        StorageOptions {
            save_path: save_path.into(),
            mode: Mode::ReadWrite,
            max_open_files: 64,
            wanted_files: None,
            resume: ResumeLocation::BesideData,
            hash_in_memory: true,
            pending_limit_per_piece: 256 * 1024,
            preallocate: true,
            piece_layers: BTreeMap::new(),
        }
    }
}

/// What [`Storage::open`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Startup {
    /// No data and no resume data: nothing to check.
    Fresh,
    /// Resume data matched the files and was trusted.
    Resumed {
        /// Pieces verified.
        verified: u32,
    },
    /// Data is present but unvouched for: call [`Storage::recheck`]. `warning` says why resume
    /// data was not used, when there was some.
    NeedsRecheck {
        /// Why resume data was ignored (none when there was no resume file).
        warning: Option<ResumeWarning>,
    },
}

/// The result of [`Storage::write_block`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written; the piece still misses blocks.
    Stored,
    /// Already had it (the block, or the whole piece verified): nothing written.
    Duplicate,
    /// This block completed the piece and it hashed correctly: it is done.
    Verified,
    /// This block completed the piece and the hash was wrong: the piece is reset (every block
    /// must come again). Who sent which block is the caller's record (the picker's), not
    /// storage's; [`Storage::block_hashes`] gives the evidence a smart ban needs.
    HashFailed,
}

struct PieceState {
    received: Vec<bool>,
    count: u32,
    hasher: Sha1,
    hashed_upto: u32,
    /// v2: the merkle leaf of each block received so far (hashed as it was written).
    leaves: Vec<Option<Id32>>,
    pending: BTreeMap<u32, Vec<u8>>,
    pending_bytes: usize,
    /// Set when the state left the map (verified or reset); a thread that waited for the lock
    /// must then fetch the current state.
    retired: bool,
}

struct FlushState {
    dirty: bool,
    last: Option<Instant>,
    /// Verified pieces whose data is known to be on stable storage (a synced flush covered
    /// them, or resume data said so); the others are recorded as unsynced.
    synced: Bitfield,
    /// The last write recorded unsynced pieces: the next periodic flush syncs them even if
    /// nothing else changed.
    needs_sync: bool,
}

/// The storage of one torrent. `Send + Sync`: share it with `Arc` across the disk pool.
pub struct Storage {
    layout: Layout,
    hashes: PieceHashes,
    info_hash: Id20,
    save_path: PathBuf,
    files: FileStore,
    /// Index of the part file in `files`.
    part_idx: usize,
    wanted: Vec<bool>,
    hash_in_memory: bool,
    pending_limit: usize,
    resume_path: Option<PathBuf>,
    pieces: Mutex<HashMap<u32, Arc<Mutex<PieceState>>>>,
    have: Mutex<Bitfield>,
    flush: Mutex<FlushState>,
    /// Serialises whole flushes (snapshot, sync, write).
    flush_lock: Mutex<()>,
}

impl Storage {
    /// Open the storage of the torrent `info` (whose info-hash is `info_hash`), read and judge
    /// its resume data. Creates nothing on disk except the torrent's zero-length files (in
    /// read-write mode).
    pub fn open(info: &Info, info_hash: Id20, opts: StorageOptions) -> Result<(Storage, Startup)> {
        let layout = Layout::from_info(info)?;
        let n = layout.files().len();
        let wanted = match opts.wanted_files {
            Some(w) if w.len() == n => w,
            Some(w) => {
                return Err(StorageError::InvalidLayout(format!(
                    "{} wanted flags for {} files",
                    w.len(),
                    n
                )))
            }
            None => vec![true; n],
        };
        let mut paths: Vec<PathBuf> = layout
            .files()
            .iter()
            .map(|f| opts.save_path.join(&f.path))
            .collect();
        paths.push(part_file_path(&opts.save_path, layout.name()));
        let writable = opts.mode == Mode::ReadWrite;
        let prealloc = layout
            .files()
            .iter()
            .zip(&wanted)
            .map(|(f, &w)| (writable && opts.preallocate && w && !f.pad).then_some(f.length))
            .collect();
        let resume_path = match &opts.resume {
            ResumeLocation::BesideData => {
                Some(resume::default_resume_path(&opts.save_path, layout.name()))
            }
            ResumeLocation::StateDir(d) => Some(resume::state_dir_resume_path(d, &info_hash)),
            ResumeLocation::Disabled => None,
        };
        let hashes = PieceHashes::new(info, &opts.piece_layers)?;
        let storage = Storage {
            hashes,
            info_hash,
            save_path: opts.save_path.clone(),
            files: FileStore::new(paths, writable, opts.max_open_files, prealloc)
                .executable(layout.files().iter().map(|f| f.executable).collect()),
            part_idx: n,
            wanted,
            hash_in_memory: opts.hash_in_memory,
            pending_limit: opts.pending_limit_per_piece,
            resume_path,
            pieces: Mutex::new(HashMap::new()),
            have: Mutex::new(Bitfield::new(layout.num_pieces())),
            flush: Mutex::new(FlushState {
                dirty: false,
                last: None,
                synced: Bitfield::new(layout.num_pieces()),
                needs_sync: false,
            }),
            flush_lock: Mutex::new(()),
            layout,
        };
        let startup = storage.judge_resume();
        if !matches!(startup, Startup::Resumed { .. }) {
            // Whatever we find next gets written at the first flush.
            lock(&storage.flush).dirty = true;
        }
        if startup == Startup::Fresh {
            storage.mark_pad_only_pieces();
        }
        if writable {
            for (i, f) in storage.layout.files().iter().enumerate() {
                if f.length == 0 && !f.pad && storage.wanted[i] {
                    storage.files.create(i)?;
                }
            }
        }
        Ok((storage, startup))
    }

    /// Pieces made only of pad bytes need no download: they are zeros by definition. Checked
    /// against their hash all the same, so a malformed torrent cannot make us claim them.
    fn mark_pad_only_pieces(&self) {
        let pad_only = |p: u32| {
            self.layout
                .stream_spans(
                    self.layout.piece_offset(p),
                    self.layout.piece_size(p) as u64,
                )
                .all(|s| s.pad)
        };
        let mut have = lock(&self.have);
        for p in 0..self.layout.num_pieces() {
            if pad_only(p) {
                let zeros = vec![0u8; self.layout.piece_size(p) as usize];
                if self.hashes.matches(p, &zeros) {
                    have.set(p);
                }
            }
        }
    }

    fn judge_resume(&self) -> Startup {
        let any_data = || self.stamp_indices().any(|i| self.files.stat(i).is_some());
        let Some(path) = &self.resume_path else {
            return if any_data() {
                Startup::NeedsRecheck { warning: None }
            } else {
                Startup::Fresh
            };
        };
        let data = match resume::load(path, &self.info_hash) {
            Ok(Some(d)) => d,
            Ok(None) if any_data() => return Startup::NeedsRecheck { warning: None },
            Ok(None) => return Startup::Fresh,
            Err(w) => return Startup::NeedsRecheck { warning: Some(w) },
        };
        let corrupt = |reason: &str| Startup::NeedsRecheck {
            warning: Some(ResumeWarning::Corrupt {
                path: path.clone(),
                reason: reason.into(),
            }),
        };
        if data.verified.len() != self.layout.num_pieces() {
            return corrupt("piece count differs from the torrent");
        }
        let current = self.stamps();
        if data.files.len() != current.len() {
            return corrupt("file count differs from the torrent");
        }
        for ((i, then), now) in self.stamp_indices().zip(&data.files).zip(&current) {
            if then != now {
                return Startup::NeedsRecheck {
                    warning: Some(ResumeWarning::FilesChanged {
                        file: self.files.path(i).to_path_buf(),
                    }),
                };
            }
        }
        let mut have = data.verified;
        let unsynced: Vec<u32> = (0..have.len()).filter(|&p| data.unsynced.get(p)).collect();
        let mut synced = have.clone();
        for &p in &unsynced {
            synced.clear(p);
        }
        if !unsynced.is_empty() {
            if !data.boot_id.is_empty() && data.boot_id == resume::current_boot_id() {
                // Same boot: the page cache still holds what was written. The next synced
                // flush makes it durable (every file is synced then; clean ones cost nothing).
                self.files.mark_all_dirty();
                lock(&self.flush).needs_sync = true;
            } else {
                // The machine restarted since: the data may never have reached the disk.
                let mut buf = vec![0u8; self.layout.piece_length() as usize];
                for &p in &unsynced {
                    match crate::recheck::check_piece(self, p, &mut buf) {
                        Ok((crate::recheck::PieceCheck::Valid, _)) => synced.set(p),
                        _ => have.clear(p),
                    }
                }
                lock(&self.flush).dirty = true;
            }
        }
        let verified = have.count();
        *lock(&self.have) = have;
        lock(&self.flush).synced = synced;
        Startup::Resumed { verified }
    }

    /// Files whose state the resume data records: every non-pad file, then the part file.
    fn stamp_indices(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.layout.files().len())
            .filter(|&i| !self.layout.files()[i].pad)
            .chain(std::iter::once(self.part_idx))
    }

    fn stamps(&self) -> Vec<FileStamp> {
        self.stamp_indices()
            .map(|i| match self.files.stat(i) {
                Some(s) => FileStamp {
                    present: true,
                    size: s.size,
                    mtime_secs: s.mtime_secs,
                    mtime_nanos: s.mtime_nanos,
                },
                None => FileStamp::ABSENT,
            })
            .collect()
    }

    /// The layout (pieces, files, spans).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The save folder.
    pub fn save_path(&self) -> &Path {
        &self.save_path
    }

    /// The torrent's info-hash.
    pub fn info_hash(&self) -> &Id20 {
        &self.info_hash
    }

    /// Where resume data is written, if anywhere.
    pub fn resume_path(&self) -> Option<&Path> {
        self.resume_path.as_deref()
    }

    /// Whether piece `piece` is verified.
    pub fn have(&self, piece: u32) -> bool {
        lock(&self.have).get(piece)
    }

    /// A copy of the verified set.
    pub fn verified(&self) -> Bitfield {
        lock(&self.have).clone()
    }

    /// Whether file `file` is wanted (not skipped).
    pub fn is_wanted(&self, file: usize) -> bool {
        self.wanted.get(file).copied().unwrap_or(false)
    }

    /// Store one block (16 KiB, aligned; the last block of a piece may be shorter). Blocking:
    /// call it on the disk pool.
    pub fn write_block(&self, piece: u32, offset: u32, data: &[u8]) -> Result<WriteOutcome> {
        let size = self.layout.piece_size(piece);
        if piece >= self.layout.num_pieces() {
            return Err(StorageError::PieceOutOfRange(piece));
        }
        let bad_block = || StorageError::InvalidBlock {
            piece,
            offset,
            len: data.len(),
        };
        if !offset.is_multiple_of(BLOCK_SIZE) || offset >= size {
            return Err(bad_block());
        }
        if data.len() as u32 != BLOCK_SIZE.min(size - offset) {
            return Err(bad_block());
        }
        if !self.files.is_writable() {
            return Err(StorageError::ReadOnlyStorage);
        }
        // A state can be retired while we wait for its lock; two tries always suffice unless
        // the piece keeps failing under us, so bound it anyway.
        for _ in 0..8 {
            if self.have(piece) {
                return Ok(WriteOutcome::Duplicate);
            }
            let state = self.piece_state(piece);
            let mut st = lock(&state);
            if st.retired {
                continue;
            }
            return self.write_locked(piece, offset, data, &mut st);
        }
        Ok(WriteOutcome::Duplicate)
    }

    fn write_locked(
        &self,
        piece: u32,
        offset: u32,
        data: &[u8],
        st: &mut PieceState,
    ) -> Result<WriteOutcome> {
        let block = (offset / BLOCK_SIZE) as usize;
        if st.received[block] {
            return Ok(WriteOutcome::Duplicate);
        }
        let spans = self.layout.piece_spans(piece, offset, data.len())?;
        let mut pos = 0usize;
        let mut touches_pad = false;
        for s in &spans {
            let chunk = &data[pos..pos + s.len];
            pos += s.len;
            if s.pad {
                touches_pad = true;
                continue;
            }
            if self.wanted[s.file] {
                self.files.write_at(s.file, s.file_offset, chunk)?;
            } else {
                let stream = self.layout.files()[s.file].offset + s.file_offset;
                self.files
                    .write_at(self.part_idx, part_offset(stream), chunk)?;
            }
        }
        st.received[block] = true;
        st.count += 1;
        if self.hash_in_memory && self.hashes.has_v2() {
            if let Some(slot) = st.leaves.get_mut(block) {
                *slot = self.hashes.leaf(piece, offset, data);
            }
        }
        if self.hash_in_memory && self.hashes.has_v1() {
            if touches_pad {
                // Hash what is stored: pad bytes are zeros whatever the peer sent.
                let mut copy = data.to_vec();
                let mut pos = 0usize;
                for s in &spans {
                    if s.pad {
                        copy[pos..pos + s.len].fill(0);
                    }
                    pos += s.len;
                }
                self.absorb(st, offset, &copy);
            } else {
                self.absorb(st, offset, data);
            }
        }
        if st.count as usize != st.received.len() {
            return Ok(WriteOutcome::Stored);
        }
        self.complete(piece, st)
    }

    /// The piece's state, made on its first block.
    fn piece_state(&self, piece: u32) -> Arc<Mutex<PieceState>> {
        let mut map = lock(&self.pieces);
        map.entry(piece)
            .or_insert_with(|| {
                Arc::new(Mutex::new(PieceState {
                    received: vec![false; self.layout.blocks_in_piece(piece) as usize],
                    count: 0,
                    hasher: Sha1::new(),
                    hashed_upto: 0,
                    leaves: vec![None; self.hashes.num_leaves(piece)],
                    pending: BTreeMap::new(),
                    pending_bytes: 0,
                    retired: false,
                }))
            })
            .clone()
    }

    /// After a hash failure whose bad blocks are known (BEP 52: each block's leaf proven against
    /// the piece layer), the blocks flagged in `keep` count as received again, their data as it
    /// is on disk: only the others must come again. The piece is hashed as usual when its last
    /// block arrives (the kept blocks are read back for it). Nothing to do for a verified piece.
    pub fn keep_blocks(&self, piece: u32, keep: &[bool]) -> Result<()> {
        if piece >= self.layout.num_pieces() {
            return Err(StorageError::PieceOutOfRange(piece));
        }
        if keep.len() != self.layout.blocks_in_piece(piece) as usize {
            return Err(StorageError::InvalidLayout(format!(
                "{} kept-block flags for the {} blocks of piece {piece}",
                keep.len(),
                self.layout.blocks_in_piece(piece)
            )));
        }
        for _ in 0..8 {
            if self.have(piece) {
                return Ok(());
            }
            let state = self.piece_state(piece);
            let mut st = lock(&state);
            if st.retired {
                continue;
            }
            for (i, k) in keep.iter().enumerate() {
                if *k && !st.received[i] {
                    st.received[i] = true;
                    st.count += 1;
                }
            }
            return Ok(());
        }
        Err(StorageError::InvalidLayout(format!(
            "piece {piece} kept failing while its blocks were kept"
        )))
    }

    /// Store a run of consecutive blocks of one piece, from `offset`, with one vectored write per
    /// file the run touches instead of one write per block (fewer system calls; measured in the
    /// README's "where the time goes"). Answers as [`Storage::write_block`] would for each block,
    /// in order. Anything unusual — a block already held, a pad file, an I/O error — goes block
    /// by block through `write_block`, which then gives the exact per-block answer.
    pub fn write_blocks(
        &self,
        piece: u32,
        offset: u32,
        blocks: &[&[u8]],
    ) -> Vec<Result<WriteOutcome>> {
        let one_by_one = || {
            let mut at = offset;
            blocks
                .iter()
                .map(|b| {
                    let r = self.write_block(piece, at, b);
                    at = at.saturating_add(b.len() as u32);
                    r
                })
                .collect()
        };
        if blocks.len() < 2
            || piece >= self.layout.num_pieces()
            || !self.files.is_writable()
            || self.have(piece)
        {
            return one_by_one();
        }
        let size = self.layout.piece_size(piece);
        let mut at = offset;
        for b in blocks {
            if !at.is_multiple_of(BLOCK_SIZE)
                || at >= size
                || b.len() as u32 != BLOCK_SIZE.min(size - at)
            {
                return one_by_one();
            }
            at += b.len() as u32;
        }
        let total = (at - offset) as usize;
        let Ok(spans) = self.layout.piece_spans(piece, offset, total) else {
            return one_by_one();
        };
        if spans.iter().any(|s| s.pad) {
            return one_by_one();
        }
        let state = self.piece_state(piece);
        let mut st = lock(&state);
        let first = (offset / BLOCK_SIZE) as usize;
        if st.retired || st.received[first..first + blocks.len()].iter().any(|&r| r) {
            drop(st);
            return one_by_one();
        }
        // Slice the run along the file spans.
        let (mut block, mut pos) = (0usize, 0usize);
        for s in &spans {
            let mut slices: Vec<&[u8]> = Vec::new();
            let mut need = s.len;
            while need > 0 {
                let take = need.min(blocks[block].len() - pos);
                slices.push(&blocks[block][pos..pos + take]);
                need -= take;
                pos += take;
                if pos == blocks[block].len() {
                    block += 1;
                    pos = 0;
                }
            }
            let written = if self.wanted[s.file] {
                self.files.write_vectored_at(s.file, s.file_offset, &slices)
            } else {
                let stream = self.layout.files()[s.file].offset + s.file_offset;
                self.files
                    .write_vectored_at(self.part_idx, part_offset(stream), &slices)
            };
            if written.is_err() {
                drop(st);
                return one_by_one();
            }
        }
        let mut out = Vec::with_capacity(blocks.len());
        let mut at = offset;
        for b in blocks {
            let idx = (at / BLOCK_SIZE) as usize;
            st.received[idx] = true;
            st.count += 1;
            if self.hash_in_memory && self.hashes.has_v2() {
                if let Some(slot) = st.leaves.get_mut(idx) {
                    *slot = self.hashes.leaf(piece, at, b);
                }
            }
            if self.hash_in_memory && self.hashes.has_v1() {
                self.absorb(&mut st, at, b);
            }
            at += b.len() as u32;
            out.push(Ok(WriteOutcome::Stored));
        }
        if st.count as usize == st.received.len() {
            if let Some(last) = out.last_mut() {
                *last = self.complete(piece, &mut st);
            }
        }
        out
    }

    /// Hash the complete piece (what was not hashed in memory comes from the pending blocks or
    /// the disk) and retire its state: verified, or reset for every block to come again.
    fn complete(&self, piece: u32, st: &mut PieceState) -> Result<WriteOutcome> {
        let size = self.layout.piece_size(piece);
        // Page-aligned, as in recheck: copies from the page cache into it are much faster.
        // Allocated only when something must be read back: usually every block was hashed in
        // memory, and zeroing 32 KiB per piece was an eighth of a download's bytes memset.
        let mut raw = Vec::new();
        let mut ok = true;
        if let Some(want) = self.hashes.v1(piece) {
            while st.hashed_upto < size {
                let at = st.hashed_upto;
                let len = BLOCK_SIZE.min(size - at) as usize;
                if let Some(b) = st.pending.remove(&at) {
                    st.hasher.update(&b);
                } else {
                    let buf = aligned_block(&mut raw);
                    self.read_range(piece, at, &mut buf[..len])?;
                    st.hasher.update(&buf[..len]);
                }
                st.hashed_upto += len as u32;
            }
            let digest = std::mem::take(&mut st.hasher).finalize();
            ok = want.as_bytes()[..] == digest[..];
        }
        if ok && self.hashes.v2(piece).is_some() {
            // Leaves not hashed on arrival (hashing in memory off) come from the disk.
            for i in 0..st.leaves.len() {
                if st.leaves[i].is_none() {
                    let at = i as u32 * BLOCK_SIZE;
                    let len = BLOCK_SIZE.min(size - at) as usize;
                    let buf = aligned_block(&mut raw);
                    self.read_range(piece, at, &mut buf[..len])?;
                    st.leaves[i] = self.hashes.leaf(piece, at, &buf[..len]);
                }
            }
            let leaves: Vec<Id32> = st.leaves.iter().flatten().copied().collect();
            ok = self.hashes.v2_matches(piece, &leaves);
        }
        st.retired = true;
        lock(&self.pieces).remove(&piece);
        if ok {
            lock(&self.have).set(piece);
            lock(&self.flush).dirty = true;
            Ok(WriteOutcome::Verified)
        } else {
            Ok(WriteOutcome::HashFailed)
        }
    }

    /// Feed a block to the piece's running hash if it is next in order, else hold it in memory
    /// (up to the limit) until the gap before it is filled.
    fn absorb(&self, st: &mut PieceState, offset: u32, data: &[u8]) {
        if offset == st.hashed_upto {
            st.hasher.update(data);
            st.hashed_upto += data.len() as u32;
            while let Some(next) = st.pending.remove(&st.hashed_upto) {
                st.pending_bytes -= next.len();
                st.hasher.update(&next);
                st.hashed_upto += next.len() as u32;
            }
        } else if st.pending_bytes + data.len() <= self.pending_limit {
            st.pending_bytes += data.len();
            st.pending.insert(offset, data.to_vec());
        }
    }

    /// SHA-1 of each block of `piece` as it is on disk now (missing bytes read as zeros): the
    /// evidence a smart ban compares after a hash failure. Pad bytes read as zeros, as they are
    /// hashed.
    pub fn block_hashes(&self, piece: u32) -> Result<Vec<[u8; 20]>> {
        if piece >= self.layout.num_pieces() {
            return Err(StorageError::PieceOutOfRange(piece));
        }
        let size = self.layout.piece_size(piece);
        let mut buf = vec![0u8; BLOCK_SIZE as usize];
        let mut out = Vec::new();
        let mut at = 0;
        while at < size {
            let len = BLOCK_SIZE.min(size - at) as usize;
            buf[..len].fill(0);
            self.read_range_lenient(piece, at, &mut buf[..len])?;
            out.push(Sha1::digest(&buf[..len]).into());
            at += len as u32;
        }
        Ok(out)
    }

    /// The merkle leaves (SHA-256 of each 16 KiB block of file data) of `piece` as it is on disk
    /// now, missing bytes read as zeros: with a peer's proven leaf hashes they name the bad
    /// blocks of a failed v2 piece. Empty for a v1 torrent or a piece of pad only.
    pub fn leaf_hashes(&self, piece: u32) -> Result<Vec<Id32>> {
        if piece >= self.layout.num_pieces() {
            return Err(StorageError::PieceOutOfRange(piece));
        }
        let size = self.layout.piece_size(piece);
        let mut buf = vec![0u8; BLOCK_SIZE as usize];
        let mut out = Vec::new();
        for i in 0..self.hashes.num_leaves(piece) {
            let at = i as u32 * BLOCK_SIZE;
            let len = BLOCK_SIZE.min(size - at) as usize;
            buf[..len].fill(0);
            self.read_range_lenient(piece, at, &mut buf[..len])?;
            out.extend(self.hashes.leaf(piece, at, &buf[..len]));
        }
        Ok(out)
    }

    /// Read `len` bytes at `offset` in piece `piece` (a peer's request). The data must be
    /// on disk: missing bytes are an error naming the file.
    pub fn read_block(&self, piece: u32, offset: u32, len: u32) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        self.read_block_into(piece, offset, &mut buf)?;
        Ok(buf)
    }

    /// [`Self::read_block`] into a buffer the caller owns (and may reuse: a fresh one costs
    /// zeroing it, or page faults, on every read).
    pub fn read_block_into(&self, piece: u32, offset: u32, buf: &mut [u8]) -> Result<()> {
        if piece >= self.layout.num_pieces() {
            return Err(StorageError::PieceOutOfRange(piece));
        }
        if offset as u64 + buf.len() as u64 > self.layout.piece_size(piece) as u64 {
            return Err(StorageError::InvalidBlock {
                piece,
                offset,
                len: buf.len(),
            });
        }
        self.read_range(piece, offset, buf)
    }

    /// Fill `buf` from piece `piece` at `offset`: pads give zeros, skipped files come from the
    /// part file. Errors with [`StorageError::DataMissing`] when a file is missing or short.
    pub(crate) fn read_range(&self, piece: u32, offset: u32, buf: &mut [u8]) -> Result<()> {
        match self.read_range_lenient(piece, offset, buf)? {
            None => Ok(()),
            Some(idx) => Err(StorageError::DataMissing {
                path: self.files.path(idx).to_path_buf(),
            }),
        }
    }

    /// Like [`Self::read_range`] but a missing or short file zero-fills and is reported as the
    /// index of the first such file instead of an error (recheck counts those pieces missing).
    pub(crate) fn read_range_lenient(
        &self,
        piece: u32,
        offset: u32,
        buf: &mut [u8],
    ) -> Result<Option<usize>> {
        let spans = self.layout.piece_spans(piece, offset, buf.len())?;
        let mut pos = 0usize;
        let mut missing = None;
        for s in spans {
            let out = &mut buf[pos..pos + s.len];
            pos += s.len;
            if s.pad {
                out.fill(0);
                continue;
            }
            let (idx, at) = if self.wanted[s.file] {
                (s.file, s.file_offset)
            } else {
                let stream = self.layout.files()[s.file].offset + s.file_offset;
                (self.part_idx, part_offset(stream))
            };
            let got = match self.files.read_at(idx, at, out) {
                Ok(n) => n,
                // A folder where the file belongs holds none of its data.
                Err(StorageError::NotAFile { .. }) => 0,
                Err(e) => return Err(e),
            };
            if got < out.len() {
                out[got..].fill(0);
                missing.get_or_insert(idx);
            }
        }
        Ok(missing)
    }

    /// Hash all existing data (on all cores, see [`RecheckOptions`]) and make the verified set
    /// exactly the pieces that pass. Progress is published in `progress` as it goes.
    pub fn recheck(
        &self,
        opts: &RecheckOptions,
        progress: &RecheckProgress,
    ) -> Result<RecheckReport> {
        // Pieces half-received before the recheck are dropped: their blocks will come again.
        for (_, st) in lock(&self.pieces).drain() {
            lock(&st).retired = true;
        }
        let report = recheck::run(self, opts, progress)?;
        *lock(&self.have) = report.valid.clone();
        lock(&self.flush).dirty = true;
        Ok(report)
    }

    /// What each piece must hash to.
    pub(crate) fn piece_hashes(&self) -> &PieceHashes {
        &self.hashes
    }

    /// Whether verified pieces changed since the last resume flush.
    pub fn resume_dirty(&self) -> bool {
        lock(&self.flush).dirty
    }

    /// Write resume data if something changed and the last write is at least `interval` old.
    /// Returns whether it wrote. Call it every second or so while downloading.
    pub fn flush_resume_if_due(&self, interval: Duration) -> Result<bool> {
        {
            let f = lock(&self.flush);
            if !(f.dirty || f.needs_sync) || f.last.is_some_and(|t| t.elapsed() < interval) {
                return Ok(false);
            }
        }
        self.flush_resume()
    }

    /// Write resume data now if anything changed; returns whether it wrote. Data files are
    /// synced first, so what the resume data claims is on stable storage before the claim is.
    pub fn flush_resume(&self) -> Result<bool> {
        Ok(self.flush_resume_snapshot()?.is_some())
    }

    /// Write resume data now if anything changed, without waiting for the disk: pieces verified
    /// since the last synced flush are recorded as unsynced (trusted again only within this
    /// boot; see [`crate::resume`]). For completion and shutdown, where a user waits.
    pub fn flush_resume_unsynced(&self) -> Result<bool> {
        Ok(self.flush_resume_as(false)?.is_some())
    }

    /// Like [`Self::flush_resume`], returning the verified set that was written (for callers and
    /// tests that must know exactly what became durable).
    pub fn flush_resume_snapshot(&self) -> Result<Option<Bitfield>> {
        self.flush_resume_as(true)
    }

    fn flush_resume_as(&self, sync: bool) -> Result<Option<Bitfield>> {
        let Some(path) = self.resume_path.clone() else {
            return Ok(None);
        };
        let _one_at_a_time = lock(&self.flush_lock);
        {
            let mut f = lock(&self.flush);
            if !(f.dirty || (sync && f.needs_sync)) {
                return Ok(None);
            }
            // Cleared before the snapshot: a piece verified meanwhile re-dirties it.
            f.dirty = false;
        }
        let snapshot = lock(&self.have).clone();
        let synced_before = lock(&self.flush).synced.clone();
        let synced_now = if sync {
            self.files.sync_dirty()
        } else {
            Ok(())
        };
        let result = synced_now.and_then(|()| {
            let mut unsynced = Bitfield::new(snapshot.len());
            if !sync {
                for p in 0..snapshot.len() {
                    if snapshot.get(p) && !synced_before.get(p) {
                        unsynced.set(p);
                    }
                }
            }
            let data = ResumeData {
                info_hash: self.info_hash,
                verified: snapshot.clone(),
                unsynced,
                boot_id: resume::current_boot_id().to_vec(),
                files: self.stamps(),
            };
            resume::write_atomic(&path, &data.encode())
        });
        let mut f = lock(&self.flush);
        match result {
            Ok(()) => {
                f.last = Some(Instant::now());
                if sync {
                    f.synced = snapshot.clone();
                    f.needs_sync = false;
                } else if (0..snapshot.len()).any(|p| snapshot.get(p) && !f.synced.get(p)) {
                    f.needs_sync = true;
                }
                Ok(Some(snapshot))
            }
            Err(e) => {
                f.dirty = true;
                Err(e)
            }
        }
    }

    /// Clean shutdown: flush resume data (unsynced: the page cache outlives the process) and
    /// close the files.
    pub fn close(&self) -> Result<()> {
        self.flush_resume_unsynced()?;
        self.files.close_all();
        Ok(())
    }
}

/// A page-aligned block-sized slice of `raw`, which is allocated on first use.
fn aligned_block(raw: &mut Vec<u8>) -> &mut [u8] {
    if raw.is_empty() {
        *raw = vec![0u8; 2 * BLOCK_SIZE as usize];
    }
    let off = raw.as_ptr().align_offset(4096).min(BLOCK_SIZE as usize);
    &mut raw[off..off + BLOCK_SIZE as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_and_pool_can_be_shared_across_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Storage>();
        shared::<crate::DiskPool>();
    }
}
