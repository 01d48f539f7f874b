#!/usr/bin/env bash
# Every speed figure of the performance issue in one go, each side by side with libtorrent in the
# same run: one-to-one transfer (leecher throughput, CPU, memory; shoal seeding to libtorrent;
# with a tracker), swarms of 1 + 8 and 1 + 16 unthrottled, and 1 + 16 with the seeder capped at
# 16 MiB/s against the F/u_s bound. Takes about 10 minutes on 2 cores. Usage: benches/perf.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
/usr/bin/python3 -c 'import libtorrent' 2>/dev/null || apt-get install -y -qq python3-libtorrent >/dev/null
cargo build --release -q
echo "== one-to-one, 1 GiB"
/usr/bin/python3 benches/transfer.py 1024 "$runs" | sed -n '/^median/,$p'
/usr/bin/python3 benches/floor.py 1024
echo "== swarm 1 + 8 x 256 MiB, unthrottled"
/usr/bin/python3 benches/swarm.py 8 256 "$runs" | sed -n '/^median/,$p'
echo "== swarm 1 + 16 x 256 MiB, unthrottled"
/usr/bin/python3 benches/swarm.py 16 256 1 | sed -n '/^median/,$p'
echo "== swarm 1 + 16 x 256 MiB, seeder capped at 16 MiB/s"
/usr/bin/python3 benches/swarm.py 16 256 1 16777216 | sed -n '/^ *shoal: duplicate/p;/^median/,$p'
