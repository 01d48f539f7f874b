//! The buffers peer connections receive into, reused once every block cut from them is gone.
//!
//! A read loop cuts each block it receives off its buffer as shared bytes, so a full buffer
//! lives on until the disk has taken the last of its blocks and is then freed. Freed, glibc gives
//! its pages back to the kernel (a trim, or an `munmap` above the mmap threshold), and the next
//! buffer's pages fault in afresh, zeroed, in the middle of `recv`: measured on a 1 GiB
//! download, those faults and trims were ~13 % of the leecher's CPU time (perf, page faults under
//! `tcp_recvmsg` and the copy of partial frames, `madvise` from `free`). A renewed buffer is
//! instead put here, still shared with its blocks, and the next read loop that needs a buffer
//! takes one of these that no block holds any more.

use std::sync::Mutex;

use bytes::BytesMut;

/// The most buffers held here at once, whether blocks still share them or not: enough for
/// every buffer between the sockets and the disk at the largest receive budget (8 MiB in
/// 256 KiB buffers) with room to spare. Beyond it a renewed buffer is left to its blocks.
const HELD: usize = 48;
/// The most free buffers kept (4 MiB of 256 KiB buffers); more are freed when found.
const KEEP_FREE: usize = 16;

/// Buffers renewed by read loops.
pub(crate) struct Pool {
    held: Mutex<Vec<BytesMut>>,
}

/// The pool of the whole process (torrents of a daemon share it).
static POOL: Pool = Pool::new();

impl Pool {
    const fn new() -> Self {
        Pool {
            held: Mutex::new(Vec::new()),
        }
    }

    /// An empty buffer with room for `size` bytes: a held one no block shares any more, or a new
    /// one.
    fn take(&self, size: usize) -> BytesMut {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut free = 0;
        let mut found = None;
        let mut i = 0;
        while i < held.len() {
            // Succeeds only for a buffer no block shares, so it is ours alone.
            if held[i].try_reclaim(size) {
                if found.is_none() {
                    found = Some(held.swap_remove(i));
                    continue;
                }
                free += 1;
                if free > KEEP_FREE {
                    held.swap_remove(i);
                    continue;
                }
            }
            i += 1;
        }
        found.unwrap_or_else(|| BytesMut::with_capacity(size))
    }

    /// Holds `buf`, emptied, until no block shares it.
    fn put(&self, mut buf: BytesMut) {
        buf.clear();
        if buf.capacity() == 0 {
            return;
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.len() < HELD {
            held.push(buf);
        }
    }
}

/// An empty buffer with room for `size` bytes, reused when possible.
pub(crate) fn take(size: usize) -> BytesMut {
    POOL.take(size)
}

/// Gives back a read loop's buffer it is done with (blocks cut from it may still be in use).
pub(crate) fn put(buf: BytesMut) {
    POOL.put(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer comes back once its last block is dropped (not before), and at most KEEP_FREE
    /// free ones stay held.
    #[test]
    fn a_buffer_is_reused_once_no_block_shares_it() {
        // A pool of its own: other tests' read loops use the process's pool meanwhile.
        let pool = Pool::new();
        let mut a = pool.take(1000);
        a.extend_from_slice(&[7; 600]);
        let ptr = a.as_ptr();
        let block = a.split_to(500).freeze();
        pool.put(a);
        let b = pool.take(1000);
        assert_ne!(b.as_ptr(), ptr, "taken while a block shares it");
        drop(block);
        let mut c = pool.take(1000);
        assert_eq!(c.as_ptr(), ptr, "not reused");
        assert!(c.is_empty() && c.capacity() >= 1000);
        c.extend_from_slice(&[1; 1000]);
        assert_eq!(&c[..], &[1; 1000][..]);
        // Too small for what is asked: a new one.
        pool.put(c);
        assert_ne!(pool.take(5000).as_ptr(), ptr);

        // Free buffers beyond KEEP_FREE are let go when found.
        let many: Vec<BytesMut> = (0..KEEP_FREE + 5).map(|_| pool.take(100)).collect();
        for m in many {
            pool.put(m);
        }
        let _one = pool.take(100);
        assert_eq!(pool.held.lock().unwrap().len(), KEEP_FREE);
    }
}
