#!/usr/bin/env bash
# Benchmark: 256 MiB one to one over loopback uTP, shoal->shoal and libtorrent->libtorrent, with
# shoal over TCP for reference, same run. Usage: benches/utp.sh [SIZE_MIB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
/usr/bin/python3 -c 'import libtorrent' 2>/dev/null || apt-get install -y -qq python3-libtorrent >/dev/null
cargo build --release -q
exec /usr/bin/python3 benches/utp.py "$@"
