//! Turning the torrent machine's block requests into HTTP range requests, and the answers back
//! into blocks.
//!
//! The machine asks a web seed for 16 KiB blocks as it asks any peer. One HTTP request per block
//! would be slow and, as BEP 19 warns, look like an attack in the server's log; so requests
//! queued here are joined into *runs* of consecutive bytes of the torrent (up to [`MAX_RUN`]),
//! and each run is fetched with one range request per file it touches. The answer's bytes are cut
//! back into the blocks that were asked for as they arrive, so the machine sees steady progress
//! (its stall detector counts the gaps between blocks).

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use shoal_storage::Layout;

/// The most bytes one run covers: 4 MiB, a few pieces at common sizes, so a run is one or a few
/// HTTP requests and what a failed request costs stays small.
pub const MAX_RUN: u64 = 4 * 1024 * 1024;
/// Requests held at once; more are refused (the machine never queues this many: its per-peer
/// queue is at most 250).
pub const MAX_QUEUED: usize = 1024;

/// One block request: piece, offset in the piece, length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BlockRequest {
    /// Piece index.
    pub piece: u32,
    /// Offset in the piece.
    pub begin: u32,
    /// Length in bytes.
    pub length: u32,
}

/// A stretch of one file to fetch, or zeros for a BEP 47 pad file (never on the server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Index into the torrent's files.
    pub file: usize,
    /// First byte in that file.
    pub offset: u64,
    /// Number of bytes.
    pub len: u64,
    /// A pad file: zeros, no request.
    pub pad: bool,
}

/// A run of consecutive requested blocks, and the file segments that hold its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// The blocks, in stream order.
    pub blocks: Vec<BlockRequest>,
    /// The file segments covering them, in stream order.
    pub segments: Vec<Segment>,
}

/// Requests waiting for a run, ordered by their place in the torrent's byte stream.
#[derive(Debug)]
pub struct RequestQueue {
    layout: Layout,
    waiting: BTreeMap<u64, BlockRequest>,
}

impl RequestQueue {
    /// An empty queue for the torrent laid out as `layout`.
    pub fn new(layout: Layout) -> RequestQueue {
        RequestQueue {
            layout,
            waiting: BTreeMap::new(),
        }
    }

    /// Queues a request. `false` if it is not a valid block of this torrent or the queue is full
    /// (the caller rejects it).
    pub fn push(&mut self, req: BlockRequest) -> bool {
        let valid = req.piece < self.layout.num_pieces()
            && req.length > 0
            && u64::from(req.begin) + u64::from(req.length)
                <= u64::from(self.layout.piece_size(req.piece));
        if !valid || self.waiting.len() >= MAX_QUEUED {
            return false;
        }
        self.waiting.insert(self.stream_offset(&req), req);
        true
    }

    /// Drops a request not yet taken into a run (BitTorrent's `cancel`).
    pub fn cancel(&mut self, req: BlockRequest) {
        let at = self.stream_offset(&req);
        if self.waiting.get(&at) == Some(&req) {
            self.waiting.remove(&at);
        }
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Takes every waiting request (when the web seed goes away: they are rejected).
    pub fn drain(&mut self) -> Vec<BlockRequest> {
        std::mem::take(&mut self.waiting).into_values().collect()
    }

    /// Takes the next run: the first waiting block and those that follow it without a gap, up
    /// to [`MAX_RUN`] bytes.
    pub fn next_run(&mut self) -> Option<Run> {
        let (&start, _) = self.waiting.first_key_value()?;
        let mut end = start;
        let mut blocks = Vec::new();
        while let Some(req) = self.waiting.get(&end).copied() {
            if end - start + u64::from(req.length) > MAX_RUN && !blocks.is_empty() {
                break;
            }
            self.waiting.remove(&end);
            end += u64::from(req.length);
            blocks.push(req);
        }
        let segments = self
            .layout
            .stream_spans(start, end - start)
            .map(|s| Segment {
                file: s.file,
                offset: s.file_offset,
                len: s.len as u64,
                pad: s.pad,
            })
            .collect();
        Some(Run { blocks, segments })
    }

    fn stream_offset(&self, req: &BlockRequest) -> u64 {
        self.layout.piece_offset(req.piece) + u64::from(req.begin)
    }
}

/// Cuts the bytes of a run, as they arrive, into its blocks.
#[derive(Debug)]
pub struct RunAssembler {
    blocks: std::collections::VecDeque<BlockRequest>,
    buf: BytesMut,
}

impl RunAssembler {
    /// Expects the bytes of `blocks`, in order.
    pub fn new(blocks: Vec<BlockRequest>) -> RunAssembler {
        RunAssembler {
            blocks: blocks.into(),
            buf: BytesMut::new(),
        }
    }

    /// Bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.blocks.iter().map(|b| u64::from(b.length)).sum::<u64>() - self.buf.len() as u64
    }

    /// Adds received bytes (at most [`RunAssembler::remaining`] are used; the caller never gives
    /// more) and returns the blocks they completed.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<(BlockRequest, Bytes)> {
        let mut done = Vec::new();
        while let Some(&next) = self.blocks.front() {
            let want = next.length as usize - self.buf.len();
            if data.len() < want {
                self.buf.extend_from_slice(data);
                break;
            }
            self.buf.extend_from_slice(&data[..want]);
            data = &data[want..];
            self.blocks.pop_front();
            done.push((next, self.buf.split().freeze()));
        }
        done
    }

    /// The blocks not completed (when the fetch fails: they are rejected).
    pub fn unfinished(self) -> Vec<BlockRequest> {
        self.blocks.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use shoal_core::Id20;
    use shoal_metainfo::{FileAttr, FileEntry, Info};

    fn layout(files: &[(u64, bool)], piece: u32) -> Layout {
        let mut offset = 0;
        let files: Vec<FileEntry> = files
            .iter()
            .enumerate()
            .map(|(i, &(len, pad))| {
                let e = FileEntry {
                    path: vec![format!("f{i}")],
                    length: len,
                    offset,
                    attr: FileAttr {
                        pad,
                        ..Default::default()
                    },
                    symlink_target: None,
                };
                offset += len;
                e
            })
            .collect();
        let info = Info {
            name: "t".into(),
            piece_length: piece,
            pieces: vec![Id20::default(); offset.div_ceil(u64::from(piece)) as usize],
            files,
            total_length: offset,
            private: false,
            multi_file: true,
            v2: None,
        };
        Layout::from_info(&info).unwrap()
    }

    fn req(piece: u32, begin: u32, length: u32) -> BlockRequest {
        BlockRequest {
            piece,
            begin,
            length,
        }
    }

    #[test]
    fn consecutive_blocks_form_one_run_across_pieces_and_files() {
        // Two files of 40 KiB and 30 KiB, 32 KiB pieces: pieces 0..3 (the last is 6 KiB).
        let mut q = RequestQueue::new(layout(&[(40 << 10, false), (30 << 10, false)], 32 << 10));
        assert!(q.push(req(1, 0, 16 << 10)));
        assert!(q.push(req(0, 16 << 10, 16 << 10)));
        assert!(q.push(req(1, 16 << 10, 16 << 10)));
        assert!(q.push(req(2, 0, 6 << 10)));
        let run = q.next_run().unwrap();
        assert_eq!(run.blocks.len(), 4);
        assert_eq!(run.blocks[0], req(0, 16 << 10, 16 << 10));
        assert_eq!(
            run.segments,
            vec![
                Segment {
                    file: 0,
                    offset: 16 << 10,
                    len: 24 << 10,
                    pad: false
                },
                Segment {
                    file: 1,
                    offset: 0,
                    len: 30 << 10,
                    pad: false
                },
            ]
        );
        assert!(q.next_run().is_none());
    }

    #[test]
    fn a_gap_ends_a_run_and_cancel_removes() {
        let mut q = RequestQueue::new(layout(&[(256 << 10, false)], 64 << 10));
        q.push(req(0, 0, 16 << 10));
        q.push(req(0, 32 << 10, 16 << 10));
        q.push(req(3, 0, 16 << 10));
        q.cancel(req(3, 0, 16 << 10));
        assert_eq!(q.next_run().unwrap().blocks, vec![req(0, 0, 16 << 10)]);
        assert_eq!(
            q.next_run().unwrap().blocks,
            vec![req(0, 32 << 10, 16 << 10)]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn invalid_requests_are_refused() {
        let mut q = RequestQueue::new(layout(&[(100 << 10, false)], 64 << 10));
        assert!(!q.push(req(2, 0, 16 << 10)), "no such piece");
        assert!(
            !q.push(req(1, 32 << 10, 16 << 10)),
            "past the last piece's end"
        );
        assert!(!q.push(req(0, 0, 0)), "empty");
        assert!(q.push(req(1, 16 << 10, 16 << 10)));
    }

    #[test]
    fn runs_stop_at_the_size_bound() {
        let mut q = RequestQueue::new(layout(&[(8 << 20, false)], 1 << 20));
        for p in 0..8 {
            for b in 0..64 {
                assert!(q.push(req(p, b * (16 << 10), 16 << 10)));
            }
        }
        let run = q.next_run().unwrap();
        assert_eq!(run.segments.iter().map(|s| s.len).sum::<u64>(), MAX_RUN);
        assert_eq!(q.len(), 256);
    }

    #[test]
    fn pad_files_are_marked() {
        let mut q = RequestQueue::new(layout(&[(10 << 10, false), (6 << 10, true)], 16 << 10));
        q.push(req(0, 0, 16 << 10));
        let run = q.next_run().unwrap();
        assert!(!run.segments[0].pad);
        assert!(run.segments[1].pad);
    }

    proptest! {
        /// However the bytes are split on arrival, every block comes out whole, in order, with
        /// its own bytes.
        #[test]
        fn assembler_cuts_any_arrival_pattern(
            lens in proptest::collection::vec(1u32..40_000, 1..8),
            cuts in proptest::collection::vec(1usize..50_000, 0..20),
        ) {
            let blocks: Vec<BlockRequest> =
                lens.iter().enumerate().map(|(i, &l)| req(i as u32, 0, l)).collect();
            let total: usize = lens.iter().map(|&l| l as usize).sum();
            let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
            let mut asm = RunAssembler::new(blocks.clone());
            let mut out = Vec::new();
            let mut at = 0;
            for c in cuts {
                let end = (at + c).min(total);
                out.extend(asm.push(&data[at..end]));
                at = end;
            }
            out.extend(asm.push(&data[at..]));
            prop_assert_eq!(asm.remaining(), 0);
            let mut pos = 0;
            prop_assert_eq!(out.len(), blocks.len());
            for ((b, bytes), want) in out.iter().zip(&blocks) {
                prop_assert_eq!(b, want);
                prop_assert_eq!(&bytes[..], &data[pos..pos + want.length as usize]);
                pos += want.length as usize;
            }
        }
    }
}
