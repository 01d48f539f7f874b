#!/usr/bin/python3
"""Measurement: which transport should `--utp on` dial first? A shoal leecher downloads SIZE_MIB
from one libtorrent 2.0 seeder on loopback, dialling TCP first (`--utp on`) or uTP first
(`--utp prefer`), against three kinds of seeder: libtorrent's default (TCP and uTP both ways), TCP
only (as aria2, rqbit, or any client with uTP off) and uTP only. Reports the median seconds from
the leecher's start to `complete` (connect, handshakes and transfer) and the transport that
carried the peer.
Usage: benches/utp_dial.py [SIZE_MIB] [RUNS] (after `cargo build --release`)."""
import os
import shutil
import statistics
import subprocess
import sys
import time

from bench_common import LT_PEER, SHOAL, first_json, payload

size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 64
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
work, data, torrent = payload("bench-utp-dial", size_mib, warm=False)


def one(seeder_transport, mode, ip_n):
    lt = subprocess.Popen([
        "/usr/bin/python3", LT_PEER, "seed", torrent, os.path.dirname(data), f"127.0.0.{ip_n}",
        "--timeout", "300", "--transport", seeder_transport], stdout=subprocess.PIPE, text=True,
        stderr=subprocess.DEVNULL)
    try:
        addr = first_json(lt, "listening", 120)["addr"]
        # Until the torrent is added and seeding, libtorrent drops handshakes for it.
        while first_json(lt, "progress", 120).get("state") != "seeding":
            pass
        out = os.path.join(work, "dl")
        shutil.rmtree(out, ignore_errors=True)
        start = time.time()
        dl = subprocess.Popen([
            SHOAL, "download", torrent, "-o", out, "--listen", f"127.0.0.{ip_n + 1}:0", "--json",
            "--no-dht", "--no-trackers", "--peer", addr, "--utp", mode],
            stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL)
        try:
            seen = []
            first_json(dl, "complete", timeout=300, seen=seen)
            secs = time.time() - start
            transport = "?"
            for v in reversed(seen):
                peers = v.get("peer_encryption") or []
                if peers:
                    transport = peers[0].get("transport", "?")
                    break
            return secs, transport
        finally:
            dl.kill()
            dl.wait()
    finally:
        lt.kill()
        lt.wait()


print(f"{size_mib} MiB from one libtorrent seeder, shoal leecher, median of {runs}")
print(f"{'seeder':<22}{'shoal --utp':<14}{'seconds':>9}  transport")
n = 70
for seeder in ["both", "tcp", "utp"]:
    for mode, label in [("on", "on (TCP 1st)"), ("prefer", "prefer (uTP 1st)")]:
        times, carried = [], set()
        for _ in range(runs):
            n += 2
            secs, transport = one(seeder, mode, n)
            times.append(secs)
            carried.add(transport)
        name = {"both": "libtorrent default", "tcp": "TCP only", "utp": "uTP only"}[seeder]
        print(f"{name:<22}{label:<18}{statistics.median(times):>6.2f}  {'/'.join(sorted(carried))}"
              f"   (runs: {', '.join(f'{t:.2f}' for t in times)})", flush=True)
