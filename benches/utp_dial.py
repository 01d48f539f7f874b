#!/usr/bin/python3
"""Measurement: which transport should `--utp on` dial first? A shoal leecher downloads SIZE_MIB
from one libtorrent 2.0 seeder on loopback, dialling TCP first (`--utp on`) or uTP first
(`--utp prefer`), against three kinds of seeder: libtorrent's default (TCP and uTP both ways), TCP
only (as aria2, rqbit, or any client with uTP off) and uTP only. Reports the median seconds from
the leecher's start to `complete` (connect, handshakes and transfer) and the transport that
carried the peer.
Usage: benches/utp_dial.py [SIZE_MIB] [RUNS] (after `cargo build --release`)."""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOAL = os.environ.get("SHOAL", os.path.join(ROOT, "target/release/shoal"))
LT_PEER = os.path.join(ROOT, "tests/interop/lt_peer.py")
size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 64
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
work = os.path.join(ROOT, "target/bench-utp-dial")
os.makedirs(os.path.join(work, "seed"), exist_ok=True)
data = os.path.join(work, "seed", f"payload-{size_mib}MiB.bin")
if not os.path.exists(data) or os.path.getsize(data) != size_mib << 20:
    with open(data, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))
torrent = os.path.join(work, f"payload-{size_mib}.torrent")
subprocess.run([SHOAL, "create", data, "-o", torrent, "--piece-size", "256KiB", "--force",
                "--no-date"], check=True, capture_output=True)


def first_json(proc, event, timeout=120):
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        try:
            v = json.loads(line)
        except ValueError:
            continue
        seen.append(v)
        if v.get("event") == event:
            return v, seen
    raise RuntimeError(f"no {event} event")


def one(seeder_transport, mode, ip_n):
    lt = subprocess.Popen([
        "/usr/bin/python3", LT_PEER, "seed", torrent, os.path.dirname(data), f"127.0.0.{ip_n}",
        "--timeout", "300", "--transport", seeder_transport], stdout=subprocess.PIPE, text=True,
        stderr=subprocess.DEVNULL)
    try:
        addr = first_json(lt, "listening")[0]["addr"]
        # Until the torrent is added and seeding, libtorrent drops handshakes for it.
        while first_json(lt, "progress")[0].get("state") != "seeding":
            pass
        out = os.path.join(work, "dl")
        shutil.rmtree(out, ignore_errors=True)
        start = time.time()
        dl = subprocess.Popen([
            SHOAL, "download", torrent, "-o", out, "--listen", f"127.0.0.{ip_n + 1}:0", "--json",
            "--no-dht", "--no-trackers", "--peer", addr, "--utp", mode],
            stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL)
        try:
            _, seen = first_json(dl, "complete", timeout=300)
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
