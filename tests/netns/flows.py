#!/usr/bin/python3
"""Helpers for tests/ledbat_netns.rs, run inside network namespaces. Prints JSON lines.

  flows.py sink IP PORT         accept one TCP connection, print {"event":"bytes","bytes":N,
                                "t":seconds} every 0.25 s (cumulative bytes received)
  flows.py source IP PORT       connect and send as fast as TCP (CUBIC) allows, until killed
  flows.py echo IP PORT         answer every UDP datagram with itself
  flows.py rtt IP PORT          send a probe every 100 ms, print {"event":"rtt","ms":RTT} for each
                                answer (the round trip through the link's queue)
"""
import json
import socket
import struct
import sys
import time


def emit(obj):
    print(json.dumps(obj), flush=True)


mode, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if mode == "sink":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(1)
    emit({"event": "listening"})
    c, _ = s.accept()
    c.settimeout(0.25)
    total, start, last = 0, time.time(), 0.0
    while True:
        try:
            n = len(c.recv(1 << 16))
            if n == 0:
                break
            total += n
        except socket.timeout:
            pass
        now = time.time()
        if now - last >= 0.25:
            last = now
            emit({"event": "bytes", "bytes": total, "t": now - start})
elif mode == "source":
    s = socket.socket()
    # A loss-based congestion control, which fills the bottleneck's queue (BBR would not).
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")
    s.connect((ip, port))
    block = b"x" * (1 << 16)
    while True:
        s.sendall(block)
elif mode == "echo":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, port))
    emit({"event": "listening"})
    while True:
        d, a = s.recvfrom(2048)
        s.sendto(d, a)
elif mode == "rtt":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((ip, port))
    s.settimeout(0.05)
    next_at = time.time()
    while True:
        now = time.time()
        if now >= next_at:
            s.send(struct.pack("!d", now))
            next_at = now + 0.1
        try:
            d = s.recv(64)
            (sent,) = struct.unpack("!d", d[:8])
            emit({"event": "rtt", "ms": (time.time() - sent) * 1000.0})
        except (socket.timeout, ConnectionRefusedError, struct.error):
            pass
