#!/usr/bin/python3
"""Benchmark: uTP throughput over loopback, one seeder and one leecher, in the same run:
shoal->shoal over uTP only (`--utp only`), libtorrent->libtorrent over uTP only (TCP off both
ways), and shoal->shoal over TCP (`--utp off`) for reference. Reports the leecher's throughput
(start to exit, so connect and handshakes included), CPU seconds per GiB and the seeder's CPU
seconds, median of RUNS, and the ratios the issue asks for (shoal uTP / libtorrent uTP >= 3,
shoal uTP / shoal TCP >= 0.5). Plaintext on every pair.
Usage: benches/utp.py [SIZE_MIB] [RUNS] (run through benches/utp.sh, which builds shoal in
release mode first). KINDS=shoal-utp,lt-utp,shoal-tcp picks the pairs."""
import os
import shutil
import statistics
import subprocess
import sys
import time

from bench_common import LT_PEER, SHOAL, first_json, payload

size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
work, data, torrent = payload("bench-utp", size_mib)


def cpu_of(pid):
    """utime + stime of a running process, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_pair(kind):
    out = os.path.join(work, f"out-{kind}")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    if kind.startswith("shoal"):
        utp = ["--utp", "only" if kind == "shoal-utp" else "off"]
        common = ["--json", "--no-dht", "--encryption", "disable"] + utp
        seed = subprocess.Popen([SHOAL, "seed", torrent, os.path.dirname(data), "--listen",
                                 "127.0.0.2:0"] + common, stdout=subprocess.PIPE, text=True,
                                stderr=subprocess.DEVNULL,
                                env=dict(os.environ, XDG_STATE_HOME=os.path.join(work, "state")))
        addr = first_json(seed, "listening")["addr"]
        leech = [SHOAL, "download", torrent, "-o", out, "--listen", "127.0.0.3:0", "--peer",
                 addr] + common
    else:
        lt = ["--transport", "utp", "--timeout", "900"]
        seed = subprocess.Popen(["/usr/bin/python3", LT_PEER, "seed", torrent,
                                 os.path.dirname(data), "127.0.0.4"] + lt,
                                stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL)
        addr = first_json(seed, "listening")["addr"]
        first_json(seed, "progress", pred=lambda v: v.get("state") == "seeding")
        leech = ["/usr/bin/python3", LT_PEER, "download", torrent, out, "127.0.0.5", "--peer",
                 addr] + lt
    try:
        time.sleep(0.5)
        seed_cpu0 = cpu_of(seed.pid)
        start = time.time()
        p = subprocess.Popen(leech, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.time() - start
        seed_cpu = cpu_of(seed.pid) - seed_cpu0
        if status != 0:
            raise RuntimeError(f"{kind}: the leecher exited with {status}")
    finally:
        seed.terminate()
        seed.wait()
    shutil.rmtree(out, ignore_errors=True)
    return wall, ru.ru_utime + ru.ru_stime, seed_cpu


KINDS = tuple(os.environ.get("KINDS", "shoal-utp,lt-utp,shoal-tcp").split(","))
results = {k: [] for k in KINDS}
for i in range(runs):
    for kind in KINDS:
        results[kind].append(run_pair(kind))
        w, c, s = results[kind][-1]
        print(f"run {i + 1} {kind:10s}: {size_mib * 1.048576 / w:7.1f} MB/s  {w:6.2f} s  "
              f"leecher {c:6.2f} CPU s  seeder {s:6.2f} CPU s", flush=True)


def med(kind, i):
    return statistics.median(r[i] for r in results[kind])


gib = size_mib / 1024
print(f"\nmedian of {runs}, {size_mib} MiB one to one over loopback, 256 KiB pieces, plaintext:")
for kind in KINDS:
    print(f"  {kind:10s} {size_mib * 1.048576 / med(kind, 0):7.1f} MB/s  "
          f"leecher {med(kind, 1) / gib:5.2f} CPU s/GiB  seeder {med(kind, 2) / gib:5.2f} CPU s/GiB")
if {"shoal-utp", "lt-utp"} <= set(KINDS):
    print(f"  shoal uTP / libtorrent uTP: {med('lt-utp', 0) / med('shoal-utp', 0):.2f}x (goal >= 3)")
if {"shoal-utp", "shoal-tcp"} <= set(KINDS):
    print(f"  shoal uTP / shoal TCP: {med('shoal-tcp', 0) / med('shoal-utp', 0):.2f} (goal >= 0.5)")
