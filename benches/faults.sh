#!/usr/bin/env bash
# Benchmark: seconds a leecher loses to a frozen seeder and to a seeder killed and replaced,
# shoal against libtorrent in the same run. Usage: benches/faults.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
/usr/bin/python3 -c 'import libtorrent' 2>/dev/null || apt-get install -y -qq python3-libtorrent >/dev/null
cargo build --release -q
exec /usr/bin/python3 benches/faults.py "$@"
