#!/usr/bin/python3
"""Benchmark: one seeder and N leechers over loopback, all shoal against all libtorrent, in the
same run, peers found through shoal's embedded tracker (both clients announce to it), nothing
throttled unless --seed-rate is given. Reports the time until the last leecher completes and
the seeder's upload in copies of the file. Usage: benches/swarm.py [LEECHERS] [SIZE_MIB] [RUNS]
[SEED_RATE_BPS] (run through benches/swarm.sh, which builds shoal in release mode first)."""
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

from bench_common import prefault, warm_up

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOAL = os.environ.get("SHOAL", os.path.join(ROOT, "target/release/shoal"))
LT_PEER = os.path.join(ROOT, "tests/interop/lt_peer.py")
leechers = int(sys.argv[1]) if len(sys.argv) > 1 else 8
size_mib = int(sys.argv[2]) if len(sys.argv) > 2 else 256
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
seed_rate = int(sys.argv[4]) if len(sys.argv) > 4 else 0
work = os.path.join(ROOT, "target/bench-swarm")
os.makedirs(os.path.join(work, "seed"), exist_ok=True)
data = os.path.join(work, "seed", f"swarm-{size_mib}MiB.bin")
if not os.path.exists(data) or os.path.getsize(data) != size_mib << 20:
    with open(data, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))


def start_tracker(addr):
    """shoal's tracker on ADDR (port 0: any), and the address it bound."""
    proc = subprocess.Popen([SHOAL, "tracker", "--listen", addr, "--interval", "5", "--json"],
                            stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL)
    return proc, json.loads(proc.stdout.readline())["addr"]


tracker, tracker_addr = start_tracker("127.0.0.1:0")
torrent = os.path.join(work, f"swarm-{size_mib}.torrent")
subprocess.run([SHOAL, "create", data, "-o", torrent, "--piece-size", "256KiB", "--force",
                "--no-date", "-t", f"http://{tracker_addr}/announce"], check=True,
               capture_output=True)


def json_lines(proc, sink):
    for line in proc.stdout:
        try:
            sink(json.loads(line))
        except ValueError:
            continue


def run(kind):
    procs = []
    done = {}
    received = {}
    last_upload = {"seed": 0}
    lock = threading.Lock()
    try:
        if kind == "shoal":
            cmd = [SHOAL, "seed", torrent, os.path.dirname(data), "--listen", "127.0.0.2:0",
                   "--json", "--no-dht"]
            if seed_rate:
                cmd += ["--max-upload-rate", str(seed_rate)]
            seed = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                    stderr=subprocess.DEVNULL,
                                    env=dict(os.environ, XDG_STATE_HOME=os.path.join(work, "state")))
        else:
            cmd = ["/usr/bin/python3", LT_PEER, "seed", torrent, os.path.dirname(data),
                   "127.0.0.2", "--timeout", "600"]
            if seed_rate:
                cmd += ["--upload-limit", str(seed_rate)]
            seed = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                    stderr=subprocess.DEVNULL)
        procs.append(seed)

        def seed_sink(v):
            if "uploaded" in v:
                with lock:
                    last_upload["seed"] = v["uploaded"]
        threading.Thread(target=json_lines, args=(seed, seed_sink), daemon=True).start()
        time.sleep(1.5)  # its first announce is in
        start = time.time()
        for i in range(leechers):
            out = os.path.join(work, f"out-{kind}-{i}")
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)
            ip = f"127.0.0.{10 + i}"
            if kind == "shoal":
                p = subprocess.Popen([SHOAL, "download", torrent, "-o", out, "--listen",
                                      f"{ip}:0", "--json", "--no-dht", "--seed"],
                                     stdout=subprocess.PIPE, text=True,
                                     stderr=subprocess.DEVNULL)
            else:
                p = subprocess.Popen(["/usr/bin/python3", LT_PEER, "download", torrent, out, ip,
                                      "--timeout", "600", "--stay"],
                                     stdout=subprocess.PIPE, text=True,
                                     stderr=subprocess.DEVNULL)
            procs.append(p)

            def sink(v, i=i):
                if v.get("event") == "complete" and i not in done:
                    with lock:
                        done[i] = time.time() - start
                        # shoal's lines say how much payload arrived, waste included.
                        if "received" in v:
                            received[i] = v["received"]
            threading.Thread(target=json_lines, args=(p, sink), daemon=True).start()
        deadline = time.time() + 600
        while len(done) < leechers and time.time() < deadline:
            time.sleep(0.05)
        if len(done) < leechers:
            raise RuntimeError(f"{kind}: only {len(done)} of {leechers} completed")
        time.sleep(1.1)  # one more progress line from the seeder
        with lock:
            if received:
                waste = sum(received.values()) / (len(received) * (size_mib << 20)) - 1
                print(f"    {kind}: duplicate payload received {waste * 100:.2f} % of the file",
                      flush=True)
            return max(done.values()), last_upload["seed"] / (size_mib << 20)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for i in range(leechers):
            shutil.rmtree(os.path.join(work, f"out-{kind}-{i}"), ignore_errors=True)


KINDS = os.environ.get("KINDS", "libtorrent,shoal").split(",")
results = {k: [] for k in KINDS}
for r in range(runs):
    for kind in KINDS:
        # Every leecher writes the file into new page-cache pages: touch that much memory first,
        # as transfer.py does, so neither kind pays the VM's first-touch cost by timing luck.
        prefault(work, leechers * size_mib)
        warm_up(data)
        # A fresh tracker (same address) for every run: the last run's peers, killed, would
        # otherwise still be handed out, on the same IPs, to this run's leechers.
        tracker.kill()
        tracker.wait()
        tracker, _ = start_tracker(tracker_addr)
        t, copies = run(kind)
        results[kind].append((t, copies))
        print(f"run {r + 1} {kind:10s}: last leecher done at {t:6.2f} s, seeder uploaded "
              f"{copies:4.2f} copies", flush=True)
tracker.kill()
med = {k: statistics.median(t for t, _ in v) for k, v in results.items()}
cop = {k: statistics.median(c for _, c in v) for k, v in results.items()}
rate = f", seeder capped at {seed_rate / 1e6:.1f} MB/s" if seed_rate else ", unthrottled"
print(f"\nmedian of {runs}: 1 seeder + {leechers} leechers x {size_mib} MiB{rate}, loopback, "
      f"through shoal's embedded tracker:")
for k in KINDS:
    print(f"  all {k:10s} {med[k]:6.2f} s   seeder uploaded {cop[k]:4.2f} copies")
if len(KINDS) == 2:
    print(f"  ratio all-shoal / all-libtorrent: {med['shoal'] / med['libtorrent']:.2f}x time")
if seed_rate:
    bound = (size_mib << 20) / seed_rate
    for k in KINDS:
        print(f"  {k}: {med[k] / bound:.2f}x the bound F/u_s = {bound:.1f} s (leechers unthrottled)")
