//! The buffers peer connections receive into, reused once every block cut from them is gone.
//!
//! A read loop cuts each block it receives off its buffer as shared bytes, so a full buffer
//! lives on until the disk has taken the last of its blocks and is then freed. Freed, glibc gives
//! its pages back to the kernel (a trim, or an `munmap` above the mmap threshold), and the next
//! buffer's pages fault in afresh, zeroed, in the middle of `recv`: measured on a 1 GiB
//! download, those faults and trims were ~13 % of the leecher's CPU time (perf, page faults under
//! `tcp_recvmsg` and the copy of partial frames, `madvise` from `free`). A renewed buffer is
//! instead held here when the read loop lets go of it (renewed, or the connection closed),
//! still shared with its blocks, and the next read loop that needs a buffer takes one of these
//! that no block holds any more.

use std::sync::Mutex;

use bytes::BytesMut;

/// The most buffers held here at once, whether blocks still share them or not: every buffer
/// between the sockets and the disk at the largest receive budget (8 MiB in 256 KiB buffers).
/// Beyond it a renewed buffer is left to its blocks. All of them can be free at once only
/// after a burst, and are then let go down to [`KEEP_FREE`] at the next take or return.
const HELD: usize = 32;
/// The most free buffers kept (4 MiB of 256 KiB buffers); more are freed when found.
const KEEP_FREE: usize = 16;
/// The largest buffer held: a read loop's usual one. A larger one is freed when dropped.
pub(crate) const MAX_HELD_SIZE: usize = 256 * 1024;

/// A read loop's buffer; a pooled one goes back to its pool when dropped.
pub(crate) struct ReadBuf {
    /// What was read and not yet cut off, and the room after it.
    pub(crate) bytes: BytesMut,
    /// For a buffer from a pool: the pool and the capacity of the whole allocation.
    home: Option<(&'static Pool, usize)>,
}

impl ReadBuf {
    /// A buffer not from a pool (what a handshake read past its end), freed when dropped.
    pub(crate) fn unpooled(bytes: BytesMut) -> ReadBuf {
        ReadBuf { bytes, home: None }
    }

    /// Moves an empty buffer no block shares back to the front of its allocation. Reads that
    /// only ever bring small messages then land on the same few pages, where they would walk
    /// through all 256 KiB of it before wrapping round: a daemon's hundreds of quiet
    /// connections would each keep that much resident.
    pub(crate) fn rewind_if_free(&mut self) {
        if let (true, Some((_, full))) = (self.bytes.is_empty(), self.home) {
            reclaim_all(&mut self.bytes, full);
        }
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        if let Some((pool, full)) = self.home {
            pool.hold(std::mem::take(&mut self.bytes), full);
        }
    }
}

/// Buffers given back by read loops, each with the capacity of its allocation.
pub(crate) struct Pool {
    held: Mutex<Vec<(BytesMut, usize)>>,
}

/// The pool of the whole process (torrents of a daemon share it).
static POOL: Pool = Pool::new();

/// Whether no block shares `buf` any more, which then spans its whole allocation again. A handle
/// whose spare room already covers `full` says yes without looking (`try_reclaim`), which only
/// an emptied handle at the start of its allocation can: one nothing was cut from.
fn reclaim_all(buf: &mut BytesMut, full: usize) -> bool {
    buf.try_reclaim(full)
}

impl Pool {
    const fn new() -> Self {
        Pool {
            held: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(BytesMut, usize)>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty buffer with room for `size` bytes: a held one no block shares any more, or a new
    /// one.
    fn take(&'static self, size: usize) -> ReadBuf {
        if size > MAX_HELD_SIZE {
            // For one of a peer's rare large frames (a bitfield of a huge torrent, BEP 52
            // hashes): freed with its frame, so peers cannot fill the pool with large buffers.
            return ReadBuf::unpooled(BytesMut::with_capacity(size));
        }
        let mut held = self.lock();
        let found = held
            .iter_mut()
            .position(|(b, full)| *full >= size && reclaim_all(b, *full))
            .map(|i| held.swap_remove(i));
        sweep(&mut held);
        drop(held);
        let (bytes, full) = found.unwrap_or_else(|| {
            let b = BytesMut::with_capacity(size);
            let full = b.capacity();
            (b, full)
        });
        ReadBuf {
            bytes,
            home: Some((self, full)),
        }
    }

    /// Holds `buf`, emptied, until no block shares it.
    fn hold(&self, mut buf: BytesMut, full: usize) {
        buf.clear();
        let mut held = self.lock();
        sweep(&mut held);
        if held.len() < HELD {
            held.push((buf, full));
        }
    }
}

/// Lets go of free buffers beyond [`KEEP_FREE`].
fn sweep(held: &mut Vec<(BytesMut, usize)>) {
    let mut free = 0;
    held.retain_mut(|(b, full)| {
        if !reclaim_all(b, *full) {
            return true;
        }
        free += 1;
        free <= KEEP_FREE
    });
}

/// An empty buffer with room for `size` bytes from the process's pool, reused when possible; it
/// goes back there when dropped.
pub(crate) fn take(size: usize) -> ReadBuf {
    POOL.take(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer comes back when dropped and is reused once its last block is gone (not before,
    /// however little is asked for); emptied, it rewinds to its front once nothing shares it;
    /// at most KEEP_FREE free ones stay held.
    #[test]
    fn a_buffer_is_reused_once_no_block_shares_it() {
        // A pool of its own: other tests' read loops use the process's pool meanwhile.
        let pool: &'static Pool = Box::leak(Box::new(Pool::new()));
        let mut a = pool.take(1000);
        a.bytes.extend_from_slice(&[7; 600]);
        let ptr = a.bytes.as_ptr();
        let block = a.bytes.split_to(500).freeze();
        drop(a);
        // Its handle has room for 100 after the block, but the block still shares it.
        for size in [100, 1000] {
            assert_ne!(pool.take(size).bytes.as_ptr(), ptr, "taken while shared");
        }
        drop(block);
        let mut c = pool.take(1000);
        assert_eq!(c.bytes.as_ptr(), ptr, "not reused");
        assert!(c.bytes.is_empty() && c.bytes.capacity() >= 1000);
        c.bytes.extend_from_slice(&[1; 1000]);
        assert_eq!(&c.bytes[..], &[1; 1000][..]);

        // Emptied and not shared, it starts again at its front; shared, it stays.
        c.bytes.clear();
        c.bytes.extend_from_slice(&[2; 300]);
        let block = c.bytes.split_to(100).freeze();
        drop(c.bytes.split_to(200));
        c.rewind_if_free();
        assert_ne!(c.bytes.as_ptr(), ptr, "a block shares it");
        drop(block);
        c.rewind_if_free();
        assert_eq!(c.bytes.as_ptr(), ptr, "rewound");
        assert!(c.bytes.capacity() >= 1000);

        // Too small for what is asked: a new one.
        drop(c);
        assert_ne!(pool.take(5000).bytes.as_ptr(), ptr);
        // Larger than a read loop's usual buffer: not held.
        let held = pool.lock().len();
        drop(pool.take(MAX_HELD_SIZE + 1));
        assert_eq!(pool.lock().len(), held);
        // A buffer not from a pool is not held.
        drop(ReadBuf::unpooled(BytesMut::with_capacity(100)));
        assert_eq!(pool.lock().len(), held);

        // Free buffers beyond KEEP_FREE are let go at the next return.
        let many: Vec<ReadBuf> = (0..HELD + 5).map(|_| pool.take(100)).collect();
        drop(many);
        assert_eq!(pool.lock().len(), KEEP_FREE + 1);
    }
}
