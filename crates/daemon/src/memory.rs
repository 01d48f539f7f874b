//! Giving freed heap memory back to the system (glibc only; elsewhere these do nothing).
//!
//! A daemon's memory comes in bursts — checking or restoring a thousand torrents, waking and
//! putting them to sleep — and glibc's allocator keeps what a burst freed for the next one:
//! measured after adding 1,000 torrents, about 6 MB of the heap was free but still resident.
//! The daemon returns it once a burst is over ([`trim`]), and keeps the number of heaps small
//! ([`limit_arenas`]): each thread that allocates may otherwise get its own heap (up to 8 per
//! core), each keeping its own free memory.

/// Heaps glibc may create: one. Small allocations go through each thread's cache without the
/// heap's lock, and a daemon's threads are two runtime workers and a disk thread. Measured with
/// 1,000 seeding torrents (`benches/daemon_scale.py 1000`, RssAnon): 6.4–7.5 MiB with two heaps
/// (the second held 2.6 MiB, much of it free between live blocks), 5.6 MiB with one.
const MAX_ARENAS: i32 = 1;

/// Limits glibc's heaps; call before any other thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator setting; called before other threads run.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MAX_ARENAS);
    }
}

/// Returns free heap pages to the system.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only releases memory no allocation uses.
    unsafe {
        libc::malloc_trim(0);
    }
}
