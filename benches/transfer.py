#!/usr/bin/python3
"""Benchmark: one seeder, one leecher over loopback, shoal->shoal against libtorrent->libtorrent
in the same run. Reports the leecher's throughput, CPU seconds per GiB and peak anonymous memory,
median of RUNS, and the ratios. A third pair, shoal->shoal with shoal's embedded tracker in the
torrent as the only peer source, shows what a tracker costs (announce at start, `stopped` at
exit): its time should be within 10 % of the run without one. `shoal+rc4` and `libtorrent+rc4`
are the same pairs with MSE/PE RC4 forced on both ends (`--encryption require`; libtorrent
pe_forced with allowed_enc_level rc4); `shoal` and `libtorrent` are plaintext.
Usage: benches/transfer.py [SIZE_MIB] [RUNS]
(run through benches/transfer.sh, which builds shoal in release mode first)."""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from bench_common import LT_PEER, SHOAL, first_json, payload, prefault, warm_up

size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
work, data, torrent = payload("bench-transfer", size_mib, warm=False)
# The same data with shoal's embedded tracker in the torrent (the info-hash is the same).
tracker = subprocess.Popen([SHOAL, "tracker", "--listen", "127.0.0.1:0", "--json"],
                           stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL)
tracker_addr = json.loads(tracker.stdout.readline())["addr"]
torrent_tr = os.path.join(work, f"payload-{size_mib}-tracker.torrent")
subprocess.run([SHOAL, "create", data, "-o", torrent_tr, "--piece-size", "256KiB", "--force",
                "--no-date", "-t", f"http://{tracker_addr}/announce"], check=True,
               capture_output=True)


def monitor(cmd):
    """Runs cmd to completion; returns wall seconds, CPU seconds, peak RssAnon and VmHWM (KiB)."""
    start = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak_anon = peak_hwm = 0
    while True:
        try:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        peak_anon = max(peak_anon, int(line.split()[1]))
                    elif line.startswith("VmHWM:"):
                        peak_hwm = max(peak_hwm, int(line.split()[1]))
        except OSError:
            pass
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.02)
    wall = time.time() - start
    if status != 0:
        raise RuntimeError(f"{cmd[0]} exited with {status}")
    return wall, ru.ru_utime + ru.ru_stime, peak_anon, peak_hwm


def run_pair(kind):
    out = os.path.join(work, f"out-{kind}")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    if kind in ("shoal", "shoal+tracker", "shoal+rc4"):
        t = torrent_tr if kind == "shoal+tracker" else torrent
        enc = ["--encryption", "require" if kind == "shoal+rc4" else "disable"]
        seed = subprocess.Popen([SHOAL, "seed", t, os.path.dirname(data), "--listen",
                                 "127.0.0.2:0", "--json", "--no-dht"] + enc, stdout=subprocess.PIPE,
                                text=True, stderr=subprocess.DEVNULL,
                                env=dict(os.environ, XDG_STATE_HOME=os.path.join(work, "state")))
        addr = first_json(seed, "listening")["addr"]
        leech = [SHOAL, "download", t, "-o", out, "--listen", "127.0.0.3:0", "--json",
                 "--no-dht"] + enc
        if kind == "shoal+tracker":
            # The seeder's announce is in before the leecher asks for peers.
            first_json(seed, "progress", pred=lambda v: any(r["ok"] for r in v["trackers"]))
        else:
            leech += ["--peer", addr]
    elif kind == "shoal->lt":
        # shoal seeding, libtorrent downloading: the initial seeder's side.
        seed = subprocess.Popen([SHOAL, "seed", torrent, os.path.dirname(data), "--listen",
                                 "127.0.0.2:0", "--json", "--no-dht"], stdout=subprocess.PIPE,
                                text=True, stderr=subprocess.DEVNULL,
                                env=dict(os.environ, XDG_STATE_HOME=os.path.join(work, "state")))
        addr = first_json(seed, "listening")["addr"]
        leech = ["/usr/bin/python3", LT_PEER, "download", torrent, out, "127.0.0.5", "--peer",
                 addr, "--timeout", "600"]
    else:
        enc = ["--encryption", "forced" if kind == "libtorrent+rc4" else "disabled"]
        seed = subprocess.Popen(["/usr/bin/python3", LT_PEER, "seed", torrent,
                                 os.path.dirname(data), "127.0.0.4", "--timeout", "600"] + enc,
                                stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL)
        addr = first_json(seed, "listening")["addr"]
        leech = ["/usr/bin/python3", LT_PEER, "download", torrent, out, "127.0.0.5", "--peer",
                 addr, "--timeout", "600"] + enc
    try:
        time.sleep(0.5)
        prefault(work, size_mib)
        warm_up(data)
        result = monitor(leech)
    finally:
        seed.terminate()
        seed.wait()
    shutil.rmtree(out, ignore_errors=True)
    return result


KINDS = tuple(os.environ.get(
    "KINDS", "libtorrent,shoal,shoal+tracker,shoal->lt,libtorrent+rc4,shoal+rc4").split(","))
results = {k: [] for k in KINDS}
for i in range(runs):
    for kind in KINDS:
        results[kind].append(run_pair(kind))
        w, c, a, h = results[kind][-1]
        print(f"run {i + 1} {kind:13s}: {size_mib / w * 1.048576:7.0f} MB/s  {c:6.2f} CPU s  "
              f"RssAnon {a / 1024:6.1f} MiB  VmHWM {h / 1024:6.1f} MiB", flush=True)

gib = size_mib / 1024


def med(kind, i):
    return statistics.median(r[i] for r in results[kind])


print(f"\nmedian of {runs}, {size_mib} MiB, 256 KiB pieces, loopback TCP, page cache warm (leecher):")
for kind in KINDS:
    print(f"  {kind:13s} {size_mib * 1.048576 / med(kind, 0):7.0f} MB/s  "
          f"{med(kind, 1) / gib:5.2f} CPU s/GiB  {med(kind, 2) / 1024:6.1f} MiB anon peak")
if {"shoal", "shoal+rc4"} <= set(KINDS):
    print(f"  RC4 / plaintext, shoal: throughput {med('shoal', 0) / med('shoal+rc4', 0):.2f}x, "
          f"CPU per GiB +{(med('shoal+rc4', 1) - med('shoal', 1)) / gib:.2f} s (leecher)")
if {"libtorrent", "libtorrent+rc4"} <= set(KINDS):
    print(f"  RC4 / plaintext, libtorrent: throughput "
          f"{med('libtorrent', 0) / med('libtorrent+rc4', 0):.2f}x, CPU per GiB "
          f"+{(med('libtorrent+rc4', 1) - med('libtorrent', 1)) / gib:.2f} s (leecher)")
if {"shoal+rc4", "libtorrent+rc4"} <= set(KINDS):
    print(f"  ratios shoal+rc4/libtorrent+rc4: throughput "
          f"{med('libtorrent+rc4', 0) / med('shoal+rc4', 0):.2f}x, "
          f"CPU per GiB {med('shoal+rc4', 1) / med('libtorrent+rc4', 1):.2f}x")
if not {"libtorrent", "shoal", "shoal+tracker", "shoal->lt"} <= set(KINDS):
    tracker.terminate()
    sys.exit(0)
print(f"  ratios shoal/libtorrent: throughput {med('libtorrent', 0) / med('shoal', 0):.2f}x, "
      f"CPU per GiB {med('shoal', 1) / med('libtorrent', 1):.2f}x, "
      f"anon memory {med('shoal', 2) / max(med('libtorrent', 2), 1):.2f}x")
print(f"  seeding: shoal -> libtorrent / libtorrent -> libtorrent: throughput "
      f"{med('libtorrent', 0) / med('shoal->lt', 0):.2f}x")
print(f"  shoal with a tracker / without: wall time {med('shoal+tracker', 0) / med('shoal', 0):.2f}x "
      f"({med('shoal+tracker', 0):.2f} s vs {med('shoal', 0):.2f} s, to exit)")
tracker.terminate()
