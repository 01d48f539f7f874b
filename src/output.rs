//! Writing to stdout and stderr without ever panicking.
//!
//! `println!` panics when stdout is a closed pipe (`shoal info T | head -1`). Every line shoal
//! prints goes through here instead: a write that fails marks the stream closed, later writes to
//! it are dropped, and long-running commands stop cleanly (as on Ctrl-C) once stdout is gone —
//! the way ripgrep and coreutils end quietly when their reader leaves.

use std::fmt::Arguments;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use shoal_engine::events::JsonEvent;

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);
static CLOSED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Writes one line to stdout and flushes it (scripts read lines as they come).
pub fn out_line(args: Arguments) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out
        .write_fmt(args)
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush())
        .is_err()
    {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        CLOSED.notify_waiters();
    }
}

/// Writes raw bytes to stdout (a completion script, a man page); a closed stdout ends it quietly.
pub fn out_bytes(bytes: &[u8]) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_all(bytes).and_then(|_| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        CLOSED.notify_waiters();
    }
}

/// Writes one line to stderr; a closed stderr is ignored.
pub fn err_line(args: Arguments) {
    if STDERR_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut err = std::io::stderr().lock();
    if err
        .write_fmt(args)
        .and_then(|_| err.write_all(b"\n"))
        .is_err()
    {
        STDERR_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Prints a `--json` event line.
pub fn event(ev: &JsonEvent) {
    match serde_json::to_string(ev) {
        Ok(s) => out_line(format_args!("{s}")),
        Err(e) => err_line(format_args!("error: cannot encode a JSON line: {e}")),
    }
}

/// Whether a write to stdout has failed (its reader is gone).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Resolves once stdout is closed; long-running commands treat that like Ctrl-C.
pub async fn stdout_gone() {
    loop {
        let notified = CLOSED.notified();
        if stdout_closed() {
            return;
        }
        notified.await;
    }
}

/// `println!` that never panics: see [`out_line`].
macro_rules! outln {
    ($($arg:tt)*) => { $crate::output::out_line(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics: see [`err_line`].
macro_rules! errln {
    ($($arg:tt)*) => { $crate::output::err_line(format_args!($($arg)*)) };
}

pub(crate) use errln;
pub(crate) use outln;

/// A panic hook that keeps a write to a closed pipe somewhere in a library from ending in a
/// backtrace: such a panic exits quietly. Other panics (bugs) keep Rust's report.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") || msg.contains("failed printing to std") {
            std::process::exit(if stdout_closed() { 0 } else { 1 });
        }
        default(info);
    }));
}
