//! The command line's output streams: a closed stdout or stderr ends any command quietly (no
//! panic, no backtrace), and the `--json` lines of a seeder are in the documented order, with
//! `ready` once it serves — peers that arrive while it still checks its data are kept.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const LONG: Duration = Duration::from_secs(120);

/// Runs `cmd` with stdout a pipe whose reader is already gone, RUST_BACKTRACE=1 and stderr
/// captured; returns (exit code, stderr). Fails the test if it runs longer than `limit`.
fn run_with_closed_stdout(mut cmd: Command, limit: Duration) -> (Option<i32>, String) {
    cmd.env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start shoal");
    // Closing our end of the pipe: the first line shoal writes gets EPIPE.
    drop(child.stdout.take());
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not end within {limit:?} after its stdout closed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.code(), reader.join().unwrap_or_default())
}

fn assert_quiet(what: &str, code: Option<i32>, stderr: &str) {
    assert_ne!(code, Some(101), "{what}: panicked:\n{stderr}");
    assert!(code.is_some(), "{what}: killed by a signal:\n{stderr}");
    for bad in [
        "panicked",
        "stack backtrace",
        "Broken pipe",
        "RUST_BACKTRACE",
    ] {
        assert!(
            !stderr.contains(bad),
            "{what}: stderr has {bad:?}:\n{stderr}"
        );
    }
}

fn cmd(args: &[&str]) -> Command {
    let mut c = shoal();
    c.args(args);
    c
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let dir = scratch("closed_stdout");
    let (torrent, data) = make_torrent(&dir, "p.bin", 300_000, "32KiB");
    let t = torrent.to_str().unwrap();
    let seed_dir = data.parent().unwrap().to_str().unwrap();
    let quick = Duration::from_secs(60);

    // One-shot commands: they did their work, so they exit 0 (as ripgrep does).
    let magnet = {
        let out = run_shoal(&["info", t, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["magnet"].as_str().unwrap().to_string()
    };
    let one_shot: Vec<(&str, Vec<String>)> = vec![
        ("info", vec!["info".into(), t.into()]),
        (
            "info --json",
            vec!["info".into(), t.into(), "--json".into()],
        ),
        ("info magnet", vec!["info".into(), magnet.clone()]),
        ("verify", vec!["verify".into(), t.into(), seed_dir.into()]),
        (
            "verify --json",
            vec!["verify".into(), t.into(), seed_dir.into(), "--json".into()],
        ),
        (
            "create",
            vec![
                "create".into(),
                data.to_str().unwrap().into(),
                "-o".into(),
                dir.join("c1.torrent").to_str().unwrap().into(),
            ],
        ),
        (
            "create --json",
            vec![
                "create".into(),
                data.to_str().unwrap().into(),
                "-o".into(),
                dir.join("c2.torrent").to_str().unwrap().into(),
                "--json".into(),
            ],
        ),
    ];
    for (what, args) in &one_shot {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stderr) = run_with_closed_stdout(cmd(&args), quick);
        assert_quiet(what, code, &stderr);
        assert_eq!(code, Some(0), "{what}: {stderr}");
    }

    // Long-running commands stop cleanly as soon as their `listening` line cannot be written.
    let state = dir.join("state");
    let mut seed = cmd(&[
        "seed",
        t,
        seed_dir,
        "--listen",
        "127.0.0.2:0",
        "--json",
        "--no-dht",
    ]);
    seed.env("XDG_STATE_HOME", &state);
    let mut download = cmd(&[
        "download",
        t,
        "-o",
        dir.join("dl").to_str().unwrap(),
        "--listen",
        "127.0.0.3:0",
        "--json",
        "--no-dht",
        "--peer",
        "127.0.0.9:9",
    ]);
    download.env("XDG_STATE_HOME", &state);
    let long_running = vec![
        ("seed --json", seed),
        ("download --json", download),
        (
            "tracker --json",
            cmd(&["tracker", "--listen", "127.0.0.1:0", "--udp", "--json"]),
        ),
        (
            "dht node --json",
            cmd(&["dht", "node", "--listen", "127.0.0.1:0", "--json"]),
        ),
    ];
    for (what, c) in long_running {
        let (code, stderr) = run_with_closed_stdout(c, quick);
        assert_quiet(what, code, &stderr);
    }

    // `shoal swarm` writes its summary at the end: the whole (tiny) swarm runs first.
    let (code, stderr) = run_with_closed_stdout(
        cmd(&[
            "swarm",
            "--leechers",
            "1",
            "--size",
            "256KiB",
            "--dir",
            dir.join("swarm").to_str().unwrap(),
            "--json",
        ]),
        LONG,
    );
    assert_quiet("swarm --json", code, &stderr);
    assert_eq!(code, Some(0), "swarm: {stderr}");
}

#[test]
fn a_closed_stderr_is_not_a_panic() {
    let dir = scratch("closed_stderr");
    let mut c = cmd(&["info", dir.join("missing.torrent").to_str().unwrap()]);
    c.env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    // An error (the file is missing), reported as one: exit 1, not a panic's 101.
    assert_eq!(status.code(), Some(1));
}

/// Reads one peer-wire message (length prefix and body) with a deadline.
fn read_message(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("a message from the seeder");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("the message body");
    body
}

#[test]
fn a_peer_that_arrives_while_the_seeder_checks_is_answered_once_it_is_ready() {
    let dir = scratch("ready_event");
    // Large enough that the data check (no resume data yet) takes a while.
    let (torrent, data) = make_torrent(&dir, "big.bin", 48 << 20, "256KiB");
    let info_hash = shoal_core::Id20::from_hex(&info_hash(&torrent)).unwrap().0;
    let mut seed = shoal_seed(
        &torrent,
        data.parent().unwrap(),
        "127.0.0.2",
        &[],
        "seed",
        &dir,
    );
    let addr = seed.listening_addr();
    // Connect at once: the seeder is most likely still checking.
    let connected_at = Instant::now();
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(LONG)).unwrap();
    let mut hs = Vec::with_capacity(68);
    hs.push(19u8);
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0u8; 8]);
    hs.extend_from_slice(&info_hash);
    hs.extend_from_slice(b"-XX0001-testtesttest");
    s.write_all(&hs).unwrap();
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs)
        .expect("the seeder answers the handshake");
    assert_eq!(&theirs[28..48], &info_hash[..]);
    // Its first message says what it has: all of it (bitfield or have_all), sent once ready.
    let first = loop {
        let m = read_message(&mut s);
        if !m.is_empty() && m[0] != 20 {
            break m; // skip keep-alives and the extended handshake
        }
    };
    eprintln!(
        "the seeder's first message came {:?} after connecting (its data check)",
        connected_at.elapsed()
    );
    match first[0] {
        5 => assert!(first[1..].iter().rev().skip(1).all(|b| *b == 0xff)),
        14 => {}
        id => panic!("expected bitfield or have_all, got message {id}"),
    }
    let ready = seed.wait_event("ready", LONG);
    assert_eq!(ready["pieces"], ready["pieces_total"]);
    // `ready` follows `listening` and comes before any progress line.
    let names: Vec<String> = seed
        .seen
        .iter()
        .map(|v| v["event"].as_str().unwrap_or("").to_string())
        .collect();
    let pos = |e: &str| names.iter().position(|n| n == e);
    assert!(pos("listening") < pos("ready"), "{names:?}");
    if let Some(p) = pos("progress") {
        assert!(pos("ready").unwrap() < p, "{names:?}");
    }
}

#[test]
fn swarm_never_touches_a_folder_it_did_not_make() {
    let dir = scratch("swarm_dir");
    // A user's folder: refused, and nothing in it changes.
    let home = dir.join("home");
    std::fs::create_dir_all(home.join("Documents")).unwrap();
    std::fs::write(home.join("Documents/thesis.txt"), b"years of work").unwrap();
    std::fs::write(
        home.join("seed"),
        b"a user's file that has a name swarm uses",
    )
    .unwrap();
    let out = run_shoal(&["swarm", "--dir", home.to_str().unwrap(), "--size", "64KiB"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not made by shoal swarm") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(
        std::fs::read(home.join("Documents/thesis.txt")).unwrap(),
        b"years of work"
    );
    assert_eq!(
        std::fs::read(home.join("seed")).unwrap(),
        b"a user's file that has a name swarm uses"
    );
    assert_eq!(std::fs::read_dir(&home).unwrap().count(), 2);

    // A file given as --dir: refused, unchanged.
    let file = dir.join("file");
    std::fs::write(&file, b"x").unwrap();
    let out = run_shoal(&["swarm", "--dir", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read(&file).unwrap(), b"x");

    // Its own folder is reused: the previous run's files are replaced, a file the user added
    // there is kept.
    let work = dir.join("work");
    let run = |work: &std::path::Path| {
        run_shoal(&[
            "swarm",
            "--dir",
            work.to_str().unwrap(),
            "--leechers",
            "1",
            "--size",
            "256KiB",
            "--json",
        ])
    };
    let first = run(&work);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    std::fs::write(work.join("notes.txt"), b"mine").unwrap();
    let second = run(&work);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(std::fs::read(work.join("notes.txt")).unwrap(), b"mine");
    let summary: shoal_engine::events::JsonEvent =
        serde_json::from_slice(&second.stdout).expect("one summary line");
    let shoal_engine::events::JsonEvent::Summary(s) = summary else {
        panic!("expected a summary, got {summary:?}");
    };
    assert_eq!(s.leechers, 1);
    assert!(s.per_leecher[0].seconds.is_some());
}

#[test]
fn completions_and_man_page_come_from_the_clap_definitions() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run_shoal(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("daemon") && text.contains("download"),
            "{shell}"
        );
    }
    let out = run_shoal(&["completions", "tcsh"]);
    assert!(!out.status.success());
    let out = run_shoal(&["man"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for page in [
        ".TH shoal 1",
        ".TH shoal-daemon 1",
        ".TH shoal-download 1",
        ".TH shoal-add 1",
    ] {
        assert!(text.contains(page), "{page} missing");
    }
    assert!(text.contains("max\\-active\\-downloads"));
}
