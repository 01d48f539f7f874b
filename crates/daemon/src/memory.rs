//! Giving freed heap memory back to the system (glibc only; elsewhere these do nothing).
//!
//! A daemon's memory comes in bursts — checking or restoring a thousand torrents, waking and
//! putting them to sleep — and glibc's allocator keeps what a burst freed for the next one:
//! measured after adding 1,000 torrents, about 6 MB of the heap was free but still resident.
//! The daemon returns it once a burst is over ([`trim`]), and keeps the number of heaps small
//! ([`limit_arenas`]): each thread that allocates may otherwise get its own heap (up to 8 per
//! core), each keeping its own free memory. It also runs without glibc's per-thread caches of
//! freed blocks ([`reexec_without_thread_caches`]).

/// Heaps glibc may create: one. Small allocations go through each thread's cache without the
/// heap's lock, and a daemon's threads are two runtime workers and a disk thread. Measured with
/// 1,000 seeding torrents (`benches/daemon_scale.py 1000`, RssAnon): 6.4–7.5 MiB with two heaps
/// (the second held 2.6 MiB, much of it free between live blocks), 5.6 MiB with one.
const MAX_ARENAS: i32 = 1;

/// Allocations at least this large get their own mapping, returned to the system when freed.
/// glibc starts at 128 KiB but raises the bar to the size of every mapped block freed, so after
/// a few large answers (a `torrent-get` of every torrent) they land in the heap, where the
/// small blocks allocated meanwhile pin their pages. A fixed value stops that; 256 KiB keeps
/// the transfer path's 16 KiB blocks in the heap (connections' 256 KiB read buffers are mapped,
/// and reused rather than freed: the engine's `socket_buffers.rs`).
const MMAP_THRESHOLD: i32 = 256 * 1024;

/// Limits glibc's heaps and fixes its mapping threshold; call before any other thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator setting; called before other threads run.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MAX_ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
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

/// The glibc tunable that turns the per-thread caches of freed small blocks off. Each thread
/// keeps up to 7 freed blocks of each of 64 sizes for itself; held blocks neither coalesce with
/// their neighbours nor let their pages go back, and a daemon's runtime, disk and blocking
/// threads each hold their own. Measured with 1,000 seeding torrents (`benches/daemon_scale.py
/// 1000`, malloc_stats at the moment of measuring): the heap held 3.7 MB in use over 5.6 MB
/// resident with the caches, 3.4 over 3.7 without, and RssAnon fell from 6.3 to 4.4-4.5 MiB.
/// Small allocations then take the heap's lock, which a daemon's few threads rarely contend
/// for. glibc reads tunables only when a process starts, hence the restart.
const NO_THREAD_CACHES: &str = "glibc.malloc.tcache_count=0";

/// Set on the restarted process so it never restarts again (glibc ignores tunables in a
/// setuid process, for one; the restart must not loop).
const RESTARTED: &str = "SHOAL_ALLOCATOR_TUNED";

/// Restarts the process (same pid, arguments and environment) with [`NO_THREAD_CACHES`] added
/// to `GLIBC_TUNABLES`, unless the caller already chose a cache size there or this is the
/// restarted process. Call first, before any thread starts. Returns only when no restart is
/// needed or it failed (the daemon then runs with the caches: more memory, nothing else).
pub fn reexec_without_thread_caches() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if std::env::var_os(RESTARTED).is_some() || tunables.contains("glibc.malloc.tcache_count") {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let tunables = if tunables.is_empty() {
            NO_THREAD_CACHES.to_string()
        } else {
            format!("{tunables}:{NO_THREAD_CACHES}")
        };
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        let error = command
            .args(args)
            .env("GLIBC_TUNABLES", tunables)
            .env(RESTARTED, "1")
            .exec();
        tracing::debug!("running with glibc's thread caches: restarting failed: {error}");
    }
}
