//! Where each byte of the piece stream lives: pieces and blocks mapped to file spans.
//!
//! The torrent's files, pad files included, are concatenated into one stream cut into pieces.
//! A piece (or a 16 KiB block of it) may cover the end of one file, several whole small files,
//! zero-length files (which cover nothing) and pad files (BEP 47: zeros, never on disk).

use std::path::PathBuf;

use shoal_metainfo::Info;

use crate::error::{Result, StorageError};

/// The size of a request block (BEP 3: 16 KiB; the last block of a piece may be shorter).
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// One file of the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutFile {
    /// Path relative to the save folder (first component is the torrent name).
    pub path: PathBuf,
    /// Offset of the file's first byte in the piece stream.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// A BEP 47 pad file: reads give zeros, nothing is created or written.
    pub pad: bool,
    /// BEP 47 `x`: created executable (as far as the umask allows).
    pub executable: bool,
}

/// A contiguous run of bytes inside one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Index into [`Layout::files`].
    pub file: usize,
    /// Offset inside that file.
    pub file_offset: u64,
    /// Number of bytes (never zero).
    pub len: usize,
    /// True when the file is a pad file (zeros, not on disk).
    pub pad: bool,
}

/// The validated mapping between pieces and files of one torrent.
#[derive(Clone, Debug)]
pub struct Layout {
    files: Vec<LayoutFile>,
    piece_length: u32,
    total_length: u64,
    num_pieces: u32,
    name: String,
}

impl Layout {
    /// Build the layout of `info`, checking that files tile the stream exactly and that every
    /// path component is a plain name (never `..`, `/` or empty), so no write can leave the save
    /// folder.
    pub fn from_info(info: &Info) -> Result<Layout> {
        if info.piece_length == 0 {
            return Err(StorageError::InvalidLayout("piece length is zero".into()));
        }
        let mut files = Vec::with_capacity(info.files.len());
        let mut next = 0u64;
        for f in &info.files {
            if f.offset != next {
                return Err(StorageError::InvalidLayout(format!(
                    "file {} starts at {} instead of {}",
                    f.display_path(),
                    f.offset,
                    next
                )));
            }
            check_components(&f.path)?;
            next = next
                .checked_add(f.length)
                .ok_or_else(|| StorageError::InvalidLayout("total length overflows".into()))?;
            files.push(LayoutFile {
                path: f.relative_path(),
                offset: f.offset,
                length: f.length,
                pad: f.attr.pad,
                executable: f.attr.executable,
            });
        }
        if next != info.total_length {
            return Err(StorageError::InvalidLayout(format!(
                "files add up to {} bytes, torrent says {}",
                next, info.total_length
            )));
        }
        let expected = info.total_length.div_ceil(info.piece_length as u64);
        // A v2-only torrent has no SHA-1 list: its pieces follow from the length alone.
        let v2_only = info.v2.is_some() && info.pieces.is_empty();
        if expected != info.pieces.len() as u64 && !v2_only {
            return Err(StorageError::InvalidLayout(format!(
                "{} bytes need {} pieces, torrent has {}",
                info.total_length,
                expected,
                info.pieces.len()
            )));
        }
        Ok(Layout {
            files,
            piece_length: info.piece_length,
            total_length: info.total_length,
            num_pieces: expected as u32,
            name: info.name.clone(),
        })
    }

    /// The torrent's name (the top-level file or folder).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every file, pad files included, in stream order.
    pub fn files(&self) -> &[LayoutFile] {
        &self.files
    }

    /// Nominal piece length.
    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }

    /// Total bytes in the stream, pads included.
    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// Number of pieces.
    pub fn num_pieces(&self) -> u32 {
        self.num_pieces
    }

    /// Size of piece `piece` (the last one may be short); zero when out of range.
    pub fn piece_size(&self, piece: u32) -> u32 {
        if piece >= self.num_pieces {
            return 0;
        }
        let start = piece as u64 * self.piece_length as u64;
        (self.total_length - start).min(self.piece_length as u64) as u32
    }

    /// Number of 16 KiB blocks in piece `piece`.
    pub fn blocks_in_piece(&self, piece: u32) -> u32 {
        self.piece_size(piece).div_ceil(BLOCK_SIZE)
    }

    /// Offset of piece `piece`'s first byte in the stream.
    pub fn piece_offset(&self, piece: u32) -> u64 {
        piece as u64 * self.piece_length as u64
    }

    /// The spans covering `len` bytes at `offset` inside piece `piece`, in order.
    pub fn piece_spans(&self, piece: u32, offset: u32, len: usize) -> Result<Vec<Span>> {
        let size = self.piece_size(piece);
        if piece >= self.num_pieces {
            return Err(StorageError::PieceOutOfRange(piece));
        }
        if offset as u64 + len as u64 > size as u64 {
            return Err(StorageError::InvalidBlock { piece, offset, len });
        }
        Ok(self
            .stream_spans(self.piece_offset(piece) + offset as u64, len as u64)
            .collect())
    }

    /// The spans covering `len` bytes of the stream from `start` (clipped to the stream's end).
    pub fn stream_spans(&self, start: u64, len: u64) -> SpanIter<'_> {
        let end = start.saturating_add(len).min(self.total_length);
        // First file whose end lies past `start`; zero-length files are skipped by the iterator.
        let file = self.files.partition_point(|f| f.offset + f.length <= start);
        SpanIter {
            layout: self,
            file,
            pos: start,
            end,
        }
    }

    /// The range of pieces that file `file` touches (empty for zero-length files).
    pub fn file_pieces(&self, file: usize) -> std::ops::Range<u32> {
        let Some(f) = self.files.get(file) else {
            return 0..0;
        };
        if f.length == 0 {
            return 0..0;
        }
        let pl = self.piece_length as u64;
        (f.offset / pl) as u32..(f.offset + f.length).div_ceil(pl) as u32
    }

    /// Map a stream offset to (file, offset in file); `None` past the end. Skips zero-length
    /// files: a byte always belongs to a file of non-zero length.
    pub fn locate(&self, stream_offset: u64) -> Option<(usize, u64)> {
        self.stream_spans(stream_offset, 1)
            .next()
            .map(|s| (s.file, s.file_offset))
    }
}

/// Iterator over the spans of a stream range; see [`Layout::stream_spans`].
pub struct SpanIter<'a> {
    layout: &'a Layout,
    file: usize,
    pos: u64,
    end: u64,
}

impl Iterator for SpanIter<'_> {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        while self.pos < self.end {
            let f = self.layout.files.get(self.file)?;
            let f_end = f.offset + f.length;
            if f_end <= self.pos {
                self.file += 1;
                continue;
            }
            let take = (f_end.min(self.end) - self.pos) as usize;
            let span = Span {
                file: self.file,
                file_offset: self.pos - f.offset,
                len: take,
                pad: f.pad,
            };
            self.pos += take as u64;
            return Some(span);
        }
        None
    }
}

/// Refuse any component that is not a plain file name. metainfo sanitises paths already; this
/// is the last line of defence before a path is joined to the save folder.
fn check_components(path: &[String]) -> Result<()> {
    if path.is_empty() {
        return Err(StorageError::InvalidLayout("empty file path".into()));
    }
    for c in path {
        let plain = !c.is_empty()
            && c != "."
            && c != ".."
            && !c.contains('/')
            && !c.contains('\\')
            && !c.contains('\0');
        if !plain {
            return Err(StorageError::InvalidLayout(format!(
                "unsafe path component {c:?} in {}",
                path.join("/")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use shoal_core::Id20;
    use shoal_metainfo::{FileAttr, FileEntry};

    /// An `Info` with files of `sizes` (true = pad file) and fake piece hashes.
    fn info(sizes: &[(u64, bool)], piece_length: u32) -> Info {
        let mut files = Vec::new();
        let mut offset = 0;
        for (i, &(length, pad)) in sizes.iter().enumerate() {
            files.push(FileEntry {
                path: vec!["t".into(), format!("f{i}")],
                length,
                offset,
                attr: FileAttr {
                    pad,
                    ..FileAttr::default()
                },
                symlink_target: None,
            });
            offset += length;
        }
        let n = offset.div_ceil(piece_length as u64);
        Info {
            name: "t".into(),
            piece_length,
            pieces: vec![Id20([0; 20]); n as usize],
            files,
            total_length: offset,
            private: false,
            multi_file: true,
            v2: None,
        }
    }

    #[test]
    fn piece_across_files_zero_length_and_pad() {
        let l = Layout::from_info(&info(
            &[(10, false), (0, false), (6, true), (20, false)],
            16,
        ))
        .unwrap();
        assert_eq!(l.num_pieces(), 3);
        assert_eq!(l.piece_size(2), 4);
        assert_eq!(l.piece_size(3), 0);
        let s = l.piece_spans(0, 0, 16).unwrap();
        assert_eq!(
            s,
            vec![
                Span {
                    file: 0,
                    file_offset: 0,
                    len: 10,
                    pad: false
                },
                Span {
                    file: 2,
                    file_offset: 0,
                    len: 6,
                    pad: true
                },
            ]
        );
        let s = l.piece_spans(2, 0, 4).unwrap();
        assert_eq!(
            s,
            vec![Span {
                file: 3,
                file_offset: 16,
                len: 4,
                pad: false
            }]
        );
        assert!(l.piece_spans(2, 0, 5).is_err());
        assert!(l.piece_spans(3, 0, 1).is_err());
        assert_eq!(l.file_pieces(1), 0..0);
        assert_eq!(l.file_pieces(3), 1..3);
        assert_eq!(l.locate(10), Some((2, 0)));
        assert_eq!(l.locate(36), None);
    }

    #[test]
    fn refuses_unsafe_names_and_gaps() {
        let mut i = info(&[(10, false)], 16);
        i.files[0].path = vec!["t".into(), "..".into()];
        assert!(Layout::from_info(&i).is_err());
        let mut i = info(&[(10, false), (5, false)], 16);
        i.files[1].offset = 11;
        assert!(Layout::from_info(&i).is_err());
        let mut i = info(&[(10, false)], 16);
        i.pieces.push(Id20([0; 20]));
        assert!(Layout::from_info(&i).is_err());
    }

    proptest! {
        /// Every byte of every piece maps to exactly one (file, offset), in order, and back.
        #[test]
        fn every_byte_maps_once_and_back(
            sizes in prop::collection::vec((0u64..300, prop::bool::weighted(0.2)), 1..12),
            piece_length in 1u32..200,
        ) {
            let total: u64 = sizes.iter().map(|s| s.0).sum();
            prop_assume!(total > 0);
            let i = info(&sizes, piece_length);
            let l = Layout::from_info(&i).unwrap();
            let mut stream = 0u64;
            for p in 0..l.num_pieces() {
                let size = l.piece_size(p) as usize;
                let mut covered = 0usize;
                for s in l.piece_spans(p, 0, size).unwrap() {
                    prop_assert!(s.len > 0);
                    let f = &l.files()[s.file];
                    prop_assert_eq!(f.pad, s.pad);
                    prop_assert!(f.length > 0 && s.file_offset + s.len as u64 <= f.length);
                    for k in 0..s.len as u64 {
                        // Forward: consecutive stream bytes land on consecutive file bytes.
                        prop_assert_eq!(f.offset + s.file_offset + k, stream);
                        // Back: the stream offset locates the same file byte.
                        prop_assert_eq!(l.locate(stream), Some((s.file, s.file_offset + k)));
                        stream += 1;
                    }
                    covered += s.len;
                }
                prop_assert_eq!(covered, size);
                // A block-sized window at any offset gives the same bytes as the whole piece.
                if size > 1 {
                    let off = (size / 2) as u32;
                    let part: usize = l.piece_spans(p, off, size - off as usize).unwrap()
                        .iter().map(|s| s.len).sum();
                    prop_assert_eq!(part, size - off as usize);
                }
            }
            prop_assert_eq!(stream, total);
            for (fi, f) in l.files().iter().enumerate() {
                let r = l.file_pieces(fi);
                if f.length == 0 { prop_assert!(r.is_empty()); continue; }
                prop_assert!(l.piece_offset(r.start) <= f.offset);
                prop_assert!(l.piece_offset(r.end) >= f.offset + f.length);
            }
        }
    }
}
