"""What the one-to-one benchmarks share: the payload and its torrent, and reading a peer's JSON
lines (shoal's `--json` and tests/interop/lt_peer.py print the same events)."""
import json
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOAL = os.environ.get("SHOAL", os.path.join(ROOT, "target/release/shoal"))
LT_PEER = os.path.join(ROOT, "tests/interop/lt_peer.py")


def payload(work_name, size_mib, warm=True):
    """A random file of SIZE_MIB under target/WORK_NAME/seed (kept between runs) and its torrent
    with 256 KiB pieces; with `warm`, the file is read once into the page cache. Returns
    (work folder, data file, torrent)."""
    work = os.path.join(ROOT, "target", work_name)
    os.makedirs(os.path.join(work, "seed"), exist_ok=True)
    data = os.path.join(work, "seed", f"payload-{size_mib}MiB.bin")
    if not os.path.exists(data) or os.path.getsize(data) != size_mib << 20:
        with open(data, "wb") as f:
            for _ in range(size_mib):
                f.write(os.urandom(1 << 20))
    torrent = os.path.join(work, f"payload-{size_mib}.torrent")
    subprocess.run([SHOAL, "create", data, "-o", torrent, "--piece-size", "256KiB", "--force",
                    "--no-date"], check=True, capture_output=True)
    if warm:
        warm_up(data)
    return work, data, torrent


def warm_up(path):
    """Reads PATH once, so its pages are in the page cache. This VM drops cold page-cache pages
    even with most of its memory free (183 of a warm file's 65,536 pages in 20 s idle), so a
    benchmark warms its seed data before every run, not once: a seeder's read of a dropped
    page waits for a disk busy with the leechers' writeback, up to ~1 s."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def prefault(work, size_mib):
    """Writes SIZE_MIB of zeros to a scratch file in WORK and deletes it, and returns the system
    CPU seconds that took. This VM's balloon driver hands freed guest pages back to the host
    within seconds, and the first write to such a page costs ~1 s of system time per GiB. A
    leecher writing its download into new page-cache pages would pay that to the hypervisor, by
    timing luck. Writing and deleting first leaves that many freshly touched free pages for the
    leecher, so its CPU figure is its own. The same is done before every client's run."""
    scratch = os.path.join(work, "prefault.tmp")
    before = os.times()
    with open(scratch, "wb") as f:
        block = bytes(1 << 20)
        for _ in range(size_mib):
            f.write(block)
    os.remove(scratch)  # dirty pages of a deleted file are dropped, not written back
    return os.times().system - before.system


def first_json(proc, event, timeout=30, pred=lambda v: True, seen=None):
    """The first line of `proc` with {"event": event} for which `pred` holds; every line read is
    appended to `seen` if given."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        try:
            v = json.loads(line)
        except ValueError:
            continue
        if seen is not None:
            seen.append(v)
        if v.get("event") == event and pred(v):
            return v
    raise RuntimeError(f"no {event} event")
