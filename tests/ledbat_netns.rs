//! LEDBAT yields, on a real rate-limited link: three network namespaces, a sender A, a router R
//! and a receiver B, joined by veth pairs; R's way to B is limited by a `tbf` qdisc (8 Mbit/s, a
//! queue of up to a second, as an uplink modem's). A shoal seeder in A uploads over uTP only to
//! a shoal leecher in B; a UDP prober measures the round trip through the same queue. Then a TCP
//! flow from A to B starts beside the uTP upload, and last runs alone.
//!
//! The bottleneck is on a router, not on the senders' own interface: there Linux's TCP Small
//! Queues would cap what a TCP socket may have queued in its own host's qdisc, and TCP could
//! never build the queue a real modem sees (measured: 9 ms of queue for TCP alone on A's own
//! interface, and 3 % of the link beside uTP). The TCP flow is a loss-based one (CUBIC, Linux's
//! usual default, set on its socket by tests/netns/flows.py), which fills the modem's queue: the
//! case LEDBAT exists for. (BBR, this host's default, keeps queues short by itself; beside it
//! uTP shared rather than yielded: TCP had 63 % of its rate alone.)
//!
//! Asserted: while uTP uploads alone it uses the link, and the queuing delay it adds stays near
//! LEDBAT's 100 ms target (under half what TCP builds in the same queue); beside it, the TCP
//! flow gets most of what it gets alone (over 60 %) and most of the link. The figures are printed (`--nocapture`).
//!
//! Needs root (namespaces, veth, tc). Without root the test says so and passes, except in CI
//! (`CI=true`), which runs as root: there it must run.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// The link's rate: 8 Mbit/s, 1 MB/s.
const RATE_BYTES: f64 = 1_000_000.0;
const A_IP: &str = "10.201.0.1";
const B_IP: &str = "10.201.1.2";

/// Three namespaces and the veths between them; removed when dropped.
struct Link {
    a: String,
    r: String,
    b: String,
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Link {
    fn new() -> Link {
        let id = std::process::id() % 100_000;
        let link = Link {
            a: format!("shoal-lb-a-{id}"),
            r: format!("shoal-lb-r-{id}"),
            b: format!("shoal-lb-b-{id}"),
        };
        let (a, r, b) = (&link.a, &link.r, &link.b);
        for ns in [a, r, b] {
            run(&["ip", "netns", "add", ns]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let (va, vra, vrb, vb) = (
            format!("sha{id}"),
            format!("shra{id}"),
            format!("shrb{id}"),
            format!("shb{id}"),
        );
        for (ns1, d1, ns2, d2) in [(a, &va, r, &vra), (r, &vrb, b, &vb)] {
            run(&[
                "ip", "link", "add", d1, "netns", ns1, "type", "veth", "peer", "name", d2, "netns",
                ns2,
            ]);
        }
        for (ns, dev, addr) in [
            (a, &va, format!("{A_IP}/24")),
            (r, &vra, "10.201.0.254/24".to_string()),
            (r, &vrb, "10.201.1.254/24".to_string()),
            (b, &vb, format!("{B_IP}/24")),
        ] {
            run(&["ip", "-n", ns, "addr", "add", &addr, "dev", dev]);
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        run(&[
            "ip",
            "-n",
            a,
            "route",
            "add",
            "default",
            "via",
            "10.201.0.254",
        ]);
        run(&[
            "ip",
            "-n",
            b,
            "route",
            "add",
            "default",
            "via",
            "10.201.1.254",
        ]);
        run(&[
            "ip",
            "netns",
            "exec",
            r,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
        ]);
        // R towards B: 8 Mbit/s, and a queue that may hold a second of it (as a modem's
        // would), so a flow that fills queues shows.
        run(&[
            "ip", "netns", "exec", r, "tc", "qdisc", "add", "dev", &vrb, "root", "tbf", "rate",
            "8mbit", "burst", "16kb", "latency", "1000ms",
        ]);
        link
    }

    /// `program args` inside namespace `ns`.
    fn exec(ns: &str, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, program]).args(args);
        cmd
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and so the pair.
        for ns in [&self.a, &self.r, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn flows(ns: &str, mode: &str, ip: &str, port: &str, dir: &Path) -> Proc {
    let script = repo_root().join("tests/netns/flows.py");
    let cmd = Link::exec(
        ns,
        SYSTEM_PYTHON,
        &[script.to_str().unwrap(), mode, ip, port],
    );
    Proc::spawn(cmd, &format!("{mode}-{ns}"), dir)
}

/// Lets `p`'s lines arrive for `d` (every line kept in `p.seen`); returns the index of the first
/// line of that window (lines queued before it are taken first, outside the window).
fn collect(p: &mut Proc, d: Duration) -> usize {
    p.drain(Duration::ZERO);
    let first = p.seen.len();
    let end = Instant::now() + d;
    p.wait_for(d + Duration::from_secs(5), |_| Instant::now() >= end);
    first
}

fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "no samples");
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The round trips the prober saw from line `from` on, in ms.
fn rtts(p: &Proc, from: usize) -> Vec<f64> {
    p.seen[from..]
        .iter()
        .filter_map(|v| v["ms"].as_f64())
        .collect()
}

/// Bytes per second between two (time, cumulative bytes) points.
fn rate(a: (Instant, u64), b: (Instant, u64)) -> f64 {
    b.1.saturating_sub(a.1) as f64 / b.0.duration_since(a.0).as_secs_f64()
}

/// The leecher's payload received so far, at its next progress line (lines queued before are
/// stale).
fn utp_received(dl: &mut Proc) -> (Instant, u64) {
    dl.drain(Duration::ZERO);
    let v = dl.wait_for(Duration::from_secs(10), |v| v["event"] == "progress");
    (Instant::now(), v["received"].as_u64().unwrap_or(0))
}

/// The TCP sink's cumulative bytes, at its next line (lines queued before are stale).
fn tcp_received(sink: &mut Proc) -> (Instant, u64) {
    sink.drain(Duration::ZERO);
    let v = sink.wait_for(Duration::from_secs(10), |v| v["event"] == "bytes");
    (Instant::now(), v["bytes"].as_u64().unwrap_or(0))
}

#[test]
fn a_utp_upload_yields_to_tcp_on_a_rate_limited_link() {
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs as root: this test must run there"
        );
        eprintln!("skipped: needs root for network namespaces, veth and tc");
        return;
    }
    let dir = scratch("ledbat_netns");
    let link = Link::new();
    let (a, b) = (link.a.clone(), link.b.clone());

    // The prober: its echo server across the link.
    let mut echo = flows(&b, "echo", B_IP, "7000", &dir);
    echo.wait_event("listening", Duration::from_secs(10));
    let mut prober = flows(&a, "rtt", B_IP, "7000", &dir);
    let i = collect(&mut prober, Duration::from_secs(2));
    let base = median(rtts(&prober, i));

    // uTP alone: a seeder in A, a leecher in B.
    let (torrent, data) = make_torrent(&dir, "big.bin", 64 << 20, "256KiB");
    let shoal = env!("CARGO_BIN_EXE_shoal");
    let common = [
        "--utp",
        "only",
        "--no-dht",
        "--encryption",
        "disable",
        "--json",
    ];
    let mut seed_cmd = Link::exec(
        &a,
        shoal,
        &[
            "seed",
            torrent.to_str().unwrap(),
            data.parent().unwrap().to_str().unwrap(),
            "--listen",
            &format!("{A_IP}:0"),
        ],
    );
    seed_cmd
        .args(common)
        .env("XDG_STATE_HOME", dir.join("seed-state"));
    let mut seed = Proc::spawn_shoal(seed_cmd, "seed", &dir);
    let seed_addr = seed.listening_addr();
    let out = dir.join("dl");
    let mut dl_cmd = Link::exec(
        &b,
        shoal,
        &[
            "download",
            torrent.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--listen",
            &format!("{B_IP}:0"),
            "--peer",
            &seed_addr,
        ],
    );
    dl_cmd
        .args(common)
        .env("XDG_STATE_HOME", dir.join("dl-state"));
    let mut dl = Proc::spawn_shoal(dl_cmd, "dl", &dir);
    dl.wait_for(Duration::from_secs(30), |v| {
        v["received"].as_u64() > Some(0)
    });
    // LEDBAT's slow start and its first base-delay samples.
    collect(&mut prober, Duration::from_secs(6));
    let u0 = utp_received(&mut dl);
    let i = collect(&mut prober, Duration::from_secs(6));
    let u1 = utp_received(&mut dl);
    let utp_alone = rate(u0, u1);
    let utp_delay = median(rtts(&prober, i)) - base;

    // TCP beside it.
    let mut sink = flows(&b, "sink", B_IP, "5001", &dir);
    sink.wait_event("listening", Duration::from_secs(10));
    let _source = flows(&a, "source", B_IP, "5001", &dir);
    // LEDBAT gives way by at most a packet or so per round trip above its target: let it.
    collect(&mut prober, Duration::from_secs(8));
    let (t0, u2) = (tcp_received(&mut sink), utp_received(&mut dl));
    let i = collect(&mut prober, Duration::from_secs(8));
    let (t1, u3) = (tcp_received(&mut sink), utp_received(&mut dl));
    let tcp_shared = rate(t0, t1);
    let utp_shared = rate(u2, u3);
    let shared_delay = median(rtts(&prober, i)) - base;

    // TCP alone: the uTP seeder gone.
    seed.kill9();
    collect(&mut prober, Duration::from_secs(3));
    let t2 = tcp_received(&mut sink);
    let i = collect(&mut prober, Duration::from_secs(5));
    let t3 = tcp_received(&mut sink);
    let tcp_alone = rate(t2, t3);
    let tcp_delay = median(rtts(&prober, i)) - base;

    let share = tcp_shared / tcp_alone;
    eprintln!(
        "link 8 Mbit/s ({RATE_BYTES} B/s), base RTT {base:.1} ms\n\
         uTP alone: {:.0} kB/s ({:.0} % of the link), queuing delay added {utp_delay:.0} ms\n\
         uTP + TCP: TCP {:.0} kB/s, uTP {:.0} kB/s, queuing delay {shared_delay:.0} ms\n\
         TCP alone: {:.0} kB/s, queuing delay {tcp_delay:.0} ms\n\
         TCP beside uTP gets {:.0} % of its rate alone, {:.0} % of the link",
        utp_alone / 1e3,
        100.0 * utp_alone / RATE_BYTES,
        tcp_shared / 1e3,
        utp_shared / 1e3,
        tcp_alone / 1e3,
        100.0 * share,
        100.0 * tcp_shared / RATE_BYTES,
    );
    // Alone, uTP uses the link.
    assert!(
        utp_alone > 0.5 * RATE_BYTES,
        "uTP alone moved {utp_alone:.0} B/s"
    );
    // It keeps the queue near its 100 ms target: far from the second TCP fills it to.
    assert!(
        (20.0..250.0).contains(&utp_delay),
        "uTP added {utp_delay:.0} ms of queuing delay"
    );
    // TCP alone fills the queue far beyond that: the delay uTP spares other traffic.
    assert!(
        utp_delay < tcp_delay / 2.0,
        "uTP added {utp_delay:.0} ms, TCP {tcp_delay:.0} ms"
    );
    // Beside uTP, TCP gets most of what it gets alone, and most of the link.
    assert!(
        share > 0.6,
        "TCP beside uTP: {:.0} % of alone",
        100.0 * share
    );
    assert!(
        tcp_shared > 0.6 * RATE_BYTES,
        "TCP beside uTP: {tcp_shared:.0} B/s"
    );
    drop((echo, dl));
}
