#!/usr/bin/python3
"""Benchmark: what BitTorrent v2 costs. One shoal seeder, one shoal leecher over loopback, the
same data as a v1 torrent (SHA-1 per piece), a v2-only torrent (SHA-256 per 16 KiB block and a
merkle tree, BEP 52) and a hybrid (both), in the same run, interleaved. Reports the leecher's
throughput and CPU seconds per GiB, the seeder's CPU seconds per GiB while it served, median of
RUNS, and v2/v1 ratios. Both ends run plaintext TCP without the DHT; 256 KiB pieces.
Usage: benches/v2.py [SIZE_MIB] [RUNS]   (SHOAL=path to use another binary; KINDS=v1,v2,hybrid)
Build first: cargo build --release --bin shoal (and, for the raw hash speeds printed first,
cargo build --release -p shoal-metainfo --example hash_speed)."""
import os
import shutil
import statistics
import subprocess
import sys
import time

from bench_common import ROOT, SHOAL, first_json, payload

size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
KINDS = tuple(os.environ.get("KINDS", "v1,v2,hybrid").split(","))
work, data, torrent_v1 = payload("bench-v2", size_mib)
torrents = {"v1": torrent_v1}
for kind in ("v2", "hybrid"):
    t = os.path.join(work, f"payload-{size_mib}-{kind}.torrent")
    subprocess.run([SHOAL, "create", data, "-o", t, "--piece-size", "256KiB", "--force",
                    "--no-date", f"--{kind}"], check=True, capture_output=True)
    torrents[kind] = t

hash_speed = os.path.join(os.path.dirname(SHOAL), "examples", "hash_speed")
if os.path.exists(hash_speed):
    print(subprocess.run([hash_speed, "512"], capture_output=True, text=True).stdout, end="")


def cpu_seconds(pid):
    """User + system CPU seconds of a running process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_pair(kind):
    """Seeds the torrent of `kind`, downloads it; returns (leecher wall s, leecher CPU s,
    seeder CPU s during the download)."""
    out = os.path.join(work, f"out-{kind}")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    state = os.path.join(work, f"state-{kind}")
    seed = subprocess.Popen([SHOAL, "seed", torrents[kind], os.path.dirname(data), "--listen",
                             "127.0.0.2:0", "--json", "--no-dht", "--encryption", "disable"],
                            stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, XDG_STATE_HOME=state))
    try:
        addr = first_json(seed, "listening", timeout=300)["addr"]
        # Checking its data on start (the first run; later runs trust resume data) is not the
        # transfer's cost: measure from `ready`.
        first_json(seed, "ready", timeout=600)
        seed_cpu0 = cpu_seconds(seed.pid)
        start = time.time()
        leech = subprocess.Popen([SHOAL, "download", torrents[kind], "-o", out, "--listen",
                                  "127.0.0.3:0", "--json", "--no-dht", "--encryption", "disable",
                                  "--peer", addr],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(leech.pid, 0)
        wall = time.time() - start
        seed_cpu = cpu_seconds(seed.pid) - seed_cpu0
        if status != 0:
            raise RuntimeError(f"{kind}: the leecher exited with {status}")
    finally:
        seed.terminate()
        seed.wait()
    shutil.rmtree(out, ignore_errors=True)
    return wall, ru.ru_utime + ru.ru_stime, seed_cpu


results = {k: [] for k in KINDS}
for i in range(runs):
    for kind in KINDS:
        results[kind].append(run_pair(kind))
        w, c, s = results[kind][-1]
        print(f"run {i + 1} {kind:7s}: {size_mib * 1.048576 / w:7.0f} MB/s  leecher {c:6.2f} CPU s"
              f"  seeder {s:6.2f} CPU s", flush=True)

gib = size_mib / 1024


def med(kind, i):
    return statistics.median(r[i] for r in results[kind])


print(f"\nmedian of {runs}, {size_mib} MiB, 256 KiB pieces, loopback TCP, plaintext, "
      f"shoal -> shoal ({os.path.relpath(SHOAL, ROOT)}):")
for kind in KINDS:
    print(f"  {kind:7s} {size_mib * 1.048576 / med(kind, 0):7.0f} MB/s  leecher "
          f"{med(kind, 1) / gib:5.2f} CPU s/GiB  seeder {med(kind, 2) / gib:5.2f} CPU s/GiB")
for kind in KINDS:
    if kind != "v1" and "v1" in KINDS:
        print(f"  {kind}/v1: download time {med(kind, 0) / med('v1', 0):.2f}x, leecher CPU "
              f"per GiB {med(kind, 1) / med('v1', 1):.2f}x, seeder CPU per GiB "
              f"{med(kind, 2) / max(med('v1', 2), 1e-9):.2f}x")
