#!/usr/bin/python3
"""The CPU floor of a download on this machine: what receiving 1 GiB over loopback TCP, hashing
it with SHA-1 and writing it into the page cache cost when each is done alone, with nothing
else in the way (large buffers, no protocol). A client's leecher CPU per GiB can approach the
sum, not go below it. Usage: benches/floor.py [SIZE_MIB]"""
import hashlib
import os
import resource
import socket
import subprocess
import sys

from bench_common import ROOT, prefault

size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
if len(sys.argv) > 3:  # the sending side of the receive test
    s = socket.create_connection((sys.argv[2], int(sys.argv[3])))
    block = bytes(1 << 20)
    for _ in range(size_mib):
        s.sendall(block)
    sys.exit()
gib = size_mib / 1024


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sha1_cost():
    """SHA-1 over 16 KiB blocks (hashlib is OpenSSL's, with the CPU's SHA extensions if any)."""
    block = os.urandom(16384)
    h = hashlib.sha1()
    start = cpu()
    for _ in range(size_mib * 64):
        h.update(block)
    return (cpu() - start) / gib


def receive_cost():
    """Loopback receive into one 256 KiB buffer, the sender in another process."""
    srv = socket.socket()
    srv.bind(("127.0.0.3", 0))
    srv.listen(1)
    host, port = srv.getsockname()
    sender = subprocess.Popen([sys.executable, __file__, str(size_mib), host, str(port)])
    conn, _ = srv.accept()
    buf = bytearray(256 * 1024)
    start = cpu()
    while conn.recv_into(buf):
        pass
    spent = cpu() - start
    sender.wait()
    conn.close()
    srv.close()
    return spent / gib


def write_cost():
    """Page-cache writes of 256 KiB, into freshly touched pages (see prefault)."""
    work = os.path.join(ROOT, "target", "bench-floor")
    os.makedirs(work, exist_ok=True)
    prefault(work, size_mib)
    path = os.path.join(work, "write.tmp")
    chunk = bytes(256 * 1024)
    start = cpu()
    with open(path, "wb", buffering=0) as f:
        for _ in range(size_mib * 4):
            f.write(chunk)
    spent = cpu() - start
    os.remove(path)
    return spent / gib


# The least of three runs each: a floor, and this VM's noise only ever adds.
sha, recv, write = (min(f() for _ in range(3)) for f in (sha1_cost, receive_cost, write_cost))
print(f"floor per GiB: SHA-1 {sha:.2f} s + loopback receive {recv:.2f} s + page-cache write "
      f"{write:.2f} s = {sha + recv + write:.2f} CPU s")
