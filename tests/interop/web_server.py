#!/usr/bin/env python3
"""A small HTTP/1.1 file server for web seed tests (BEP 19): serves the files under ROOT with
byte ranges (206 and Content-Range, keep-alive), as nginx or any static server does; Python's
own http.server ignores Range. Test knobs:
  --corrupt FILE:OFFSET  flip the byte at OFFSET of FILE (relative to ROOT) in every answer
                         that covers it (a web seed serving bad data);
  --no-ranges            ignore Range and always send the whole file (200).
Prints {"event":"listening","addr":"IP:PORT"} once bound, then one JSON line per request
({"event":"request","path":…,"range":…,"status":…}) on stdout."""
import argparse
import json
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

ap = argparse.ArgumentParser()
ap.add_argument("root")
ap.add_argument("--bind", default="127.0.0.1")
ap.add_argument("--port", type=int, default=0)
ap.add_argument("--corrupt", action="append", default=[])
ap.add_argument("--no-ranges", action="store_true")
args = ap.parse_args()
root = os.path.realpath(args.root)
corrupt = {}
for c in args.corrupt:
    path, off = c.rsplit(":", 1)
    corrupt.setdefault(path, []).append(int(off))


def log(**kv):
    print(json.dumps(kv), flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # As nginx does on keep-alive connections: without it the body's last segment waits
        # for the ACK of the separately written head (Nagle), 40 ms per request.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *a):
        pass

    def do_GET(self):
        rel = unquote(urlsplit(self.path).path).lstrip("/")
        full = os.path.realpath(os.path.join(root, rel))
        if not full.startswith(root + os.sep) or not os.path.isfile(full):
            self.send_error(404)
            log(event="request", path=rel, range=None, status=404)
            return
        size = os.path.getsize(full)
        first, last, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng and not args.no_ranges:
            a, b = rng.strip().removeprefix("bytes=").split("-", 1)
            first, last = int(a), min(int(b) if b else size - 1, size - 1)
            if first > last:
                self.send_error(416)
                return
            status = 206
        with open(full, "rb") as f:
            f.seek(first)
            data = bytearray(f.read(last - first + 1))
        for off in corrupt.get(rel, []):
            if first <= off <= last:
                data[off - first] ^= 0xFF
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        log(event="request", path=rel, range=rng, status=status)


server = ThreadingHTTPServer((args.bind, args.port), Handler)
server.daemon_threads = True
host, port = server.server_address[:2]
log(event="listening", addr=f"{host}:{port}")
try:
    server.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
