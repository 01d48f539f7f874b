#!/usr/bin/python3
"""Benchmark: one daemon seeding N torrents (small files, all checked), added through
transmission-remote, shoal daemon against transmission-daemon in the same run. Reports the time
to add them all and see them all seeding, resident memory, idle CPU (% of a core over 20 s), and
the time a restart takes until every torrent is seeding again (shoal: from resume data, no
re-hash). Usage: benches/daemon_scale.py [N] (default 1000; needs transmission-cli and
transmission-daemon from Debian, and a release build: `cargo build --release`). ONLY=shoal runs
the shoal daemon alone (transmission-daemon checks torrents one by one: ~80 s per 1,000 here).
SHOAL_WRAP prefixes the shoal daemon's command line (a profiler: `SHOAL_WRAP="heaptrack -o
/tmp/daemon"`; its figures then include the profiler's own memory)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOAL = os.environ.get("SHOAL", os.path.join(ROOT, "target/release/shoal"))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
WORK = os.path.join(ROOT, f"target/bench-daemon-scale-{N}")
BATCH = 50


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def prepare():
    data = os.path.join(WORK, "data")
    torrents = os.path.join(WORK, "torrents")
    if os.path.isdir(torrents) and len(os.listdir(torrents)) == N:
        return data, torrents
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(data)
    os.makedirs(torrents)
    for i in range(N):
        path = os.path.join(data, f"file{i:05}.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(16384 + i))
        sh(SHOAL, "create", path, "-o", os.path.join(torrents, f"t{i:05}.torrent"),
           "--no-date", "--force")
    return data, torrents


def rss_kib(pid, field="VmRSS"):
    """A memory figure of /proc/PID/status in KiB: VmRSS (compared), RssAnon (the heap and
    stacks), RssFile (the binary's and libraries' pages)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


def remote(api, auth, *args):
    return sh("transmission-remote", api, "--auth", auth, *args).stdout


def add_all(api, auth, torrents, data):
    files = sorted(os.listdir(torrents))
    for i in range(0, len(files), BATCH):
        args = []
        for f in files[i:i + BATCH]:
            args += ["-a", os.path.join(torrents, f)]
        remote(api, auth, "--download-dir", data, *args)


def seeding(api, auth):
    try:
        out = remote(api, auth, "-l")
    except subprocess.CalledProcessError:
        return 0  # the API is not up yet (a restart)
    return sum(1 for line in out.splitlines() if "Seeding" in line or "Idle" in line and "100%" in line)


def wait_all_seeding(api, auth, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        n = seeding(api, auth)
        if n >= N:
            return True
        time.sleep(0.5)
    return False


def measure(name, start, api, auth, torrents, data):
    proc = start()
    time.sleep(1)
    t0 = time.time()
    add_all(api, auth, torrents, data)
    added = time.time() - t0
    ok = wait_all_seeding(api, auth)
    all_seeding = time.time() - t0
    time.sleep(5)
    c0 = cpu_ticks(proc.pid)
    time.sleep(20)
    idle = (cpu_ticks(proc.pid) - c0) / os.sysconf("SC_CLK_TCK") / 20 * 100
    rss = rss_kib(proc.pid) / 1024
    anon, file = rss_kib(proc.pid, "RssAnon") / 1024, rss_kib(proc.pid, "RssFile") / 1024
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    proc = start()
    t0 = time.time()
    ok2 = wait_all_seeding(api, auth)
    restart = time.time() - t0
    rss_after = rss_kib(proc.pid) / 1024
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    print(f"{name}: added {N} in {added:.1f} s, all seeding after {all_seeding:.1f} s ({ok}), "
          f"RSS {rss:.1f} MiB (anon {anon:.1f}, file {file:.1f}), idle CPU {idle:.2f} % of a core, restart until all seeding "
          f"{restart:.1f} s ({ok2}), RSS after restart {rss_after:.1f} MiB", flush=True)
    return dict(added=added, seeding=all_seeding, rss=rss, idle=idle, restart=restart)


def main():
    data, torrents = prepare()
    # shoal daemon
    state = os.path.join(WORK, "shoal-state")
    shutil.rmtree(state, ignore_errors=True)
    api_port = 19091

    def start_shoal():
        return subprocess.Popen(
            os.environ.get("SHOAL_WRAP", "").split() + [SHOAL, "daemon", "--api", f"127.0.0.1:{api_port}", "--state", state,
             "--download-dir", data, "--listen", "127.0.0.4:0", "--no-dht",
             "--max-active-downloads", "0"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(WORK, "shoal.log"), "a"),
            env=dict(os.environ, XDG_CONFIG_HOME=os.path.join(WORK, "no-config")))

    p = start_shoal()
    time.sleep(1)
    token = open(os.path.join(state, "token")).read().strip()
    p.send_signal(signal.SIGTERM)
    p.wait()
    s = measure("shoal daemon", start_shoal, f"127.0.0.1:{api_port}", f"x:{token}", torrents, data)
    if os.environ.get("ONLY") == "shoal":
        return
    # transmission-daemon
    conf = os.path.join(WORK, "tr-conf")
    shutil.rmtree(conf, ignore_errors=True)
    os.makedirs(conf)
    tr_port = 19092
    with open(os.path.join(conf, "settings.json"), "w") as f:
        json.dump({"rpc-port": tr_port, "rpc-bind-address": "127.0.0.1",
                   "rpc-authentication-required": True, "rpc-username": "x",
                   "rpc-password": "bench", "rpc-whitelist-enabled": False,
                   "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False,
                   "utp-enabled": False, "port-forwarding-enabled": False,
                   "bind-address-ipv4": "127.0.0.6", "peer-port": 51999,
                   "download-dir": data, "download-queue-enabled": False,
                   "seed-queue-enabled": False, "message-level": 1}, f)

    def start_tr():
        return subprocess.Popen(["transmission-daemon", "-f", "-g", conf],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    t = measure("transmission-daemon", start_tr, f"127.0.0.1:{tr_port}", "x:bench", torrents,
                data)
    print(f"ratios shoal/transmission: RSS {s['rss'] / t['rss']:.2f}x, idle CPU "
          f"{s['idle']:.2f} vs {t['idle']:.2f} %, add+check {s['seeding'] / t['seeding']:.2f}x, "
          f"restart {s['restart'] / max(t['restart'], 0.01):.2f}x")


main()
