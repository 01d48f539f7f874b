#!/usr/bin/python3
"""Benchmark: seconds lost to failing seeders, shoal's leecher against libtorrent's (and aria2's
when installed), same run, real processes on loopback. 64 MiB, libtorrent seeders capped at
8 MB/s each.
  frozen:   two seeders; at 30 % one is frozen with SIGSTOP (its sockets stay open and silent).
            lost = (finish - freeze) - (bytes left at the freeze) / 8 MB/s
  replaced: one seeder, SIGKILLed at 40 %; a new seeder starts at that moment and dials the
            leecher. lost = (finish - kill) - (bytes left at the kill) / 8 MB/s
Usage: benches/faults.py [RUNS] (run through benches/faults.sh, which builds shoal first)."""
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOAL = os.path.join(ROOT, "target/release/shoal")
LT_PEER = os.path.join(ROOT, "tests/interop/lt_peer.py")
RATE = 8_000_000
SIZE = 64 << 20
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
work = os.path.join(ROOT, "target/bench-faults")
os.makedirs(os.path.join(work, "seed"), exist_ok=True)
data = os.path.join(work, "seed", "f.bin")
if not os.path.exists(data) or os.path.getsize(data) != SIZE:
    with open(data, "wb") as f:
        f.write(os.urandom(SIZE))
torrent = os.path.join(work, "f.torrent")
subprocess.run([SHOAL, "create", data, "-o", torrent, "--piece-size", "256KiB", "--force",
                "--no-date"], check=True, capture_output=True)
ARIA2 = shutil.which("aria2c")


def lines(proc):
    for line in proc.stdout:
        try:
            yield json.loads(line)
        except ValueError:
            continue


def seeder(ip, extra=()):
    p = subprocess.Popen(["/usr/bin/python3", LT_PEER, "seed", torrent, os.path.dirname(data), ip,
                          "--upload-limit", str(RATE), "--timeout", "300", *extra],
                         stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL)
    addr = next(v for v in lines(p) if v.get("event") == "listening")["addr"]
    return p, addr


def leecher(kind, out, peers):
    """Starts a leecher; returns (process, its listen address or None, progress iterator)."""
    if kind == "shoal":
        cmd = [SHOAL, "download", torrent, "-o", out, "--listen", "127.0.0.60:0", "--json",
               "--no-dht"]
        for p in peers:
            cmd += ["--peer", p]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL)
    else:
        cmd = ["/usr/bin/python3", LT_PEER, "download", torrent, out, "127.0.0.61",
               "--timeout", "300"]
        for peer in peers:
            cmd += ["--peer", peer]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL)
    it = lines(p)
    addr = next(v for v in it if v.get("event") == "listening")["addr"]
    return p, addr, it


def wait_fraction(it, fraction):
    for v in it:
        if v.get("event") == "progress" and v.get("total") and v["downloaded"] >= fraction * v["total"]:
            return v["downloaded"]
        if v.get("event") == "complete":
            return SIZE
    raise RuntimeError("leecher ended early")


def wait_complete(it):
    for v in it:
        if v.get("event") == "complete":
            return time.time()
    raise RuntimeError("leecher ended without completing")


def run(kind, scenario):
    out = os.path.join(work, f"out-{kind}")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    procs = []
    try:
        a, a_addr = seeder("127.0.0.50")
        procs.append(a)
        peers = [a_addr]
        if scenario == "frozen":
            b, b_addr = seeder("127.0.0.51")
            procs.append(b)
            peers.append(b_addr)
        time.sleep(0.3)
        dl, dl_addr, it = leecher(kind, out, peers)
        procs.append(dl)
        if scenario == "frozen":
            done_bytes = wait_fraction(it, 0.3)
            t0 = time.time()
            a.send_signal(signal.SIGSTOP)
        else:
            done_bytes = wait_fraction(it, 0.4)
            t0 = time.time()
            a.kill()
            c, _ = seeder("127.0.0.52", ["--peer", dl_addr])
            procs.append(c)
        t1 = wait_complete(it)
        return (t1 - t0) - (SIZE - done_bytes) / RATE
    finally:
        for p in procs:
            try:
                p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait()
            except OSError:
                pass


kinds = ["libtorrent", "shoal"]
results = {(k, s): [] for k in kinds for s in ("frozen", "replaced")}
for i in range(runs):
    for scenario in ("frozen", "replaced"):
        for kind in kinds:
            lost = run(kind, scenario)
            results[(kind, scenario)].append(lost)
            print(f"run {i + 1} {scenario:8s} {kind:10s}: {lost:6.2f} s lost", flush=True)

print(f"\nmedian of {runs}, 64 MiB, seeders at {RATE / 1e6:.0f} MB/s (seconds lost against the ideal):")
for scenario in ("frozen", "replaced"):
    row = "  ".join(f"{k} {statistics.median(results[(k, scenario)]):5.2f} s" for k in kinds)
    print(f"  {scenario:8s}  {row}")
if not ARIA2:
    print("  (aria2c is not installed: apt-get install aria2 to compare it too)")
