#!/usr/bin/env bash
# Benchmark: 1 GiB over loopback, shoal->shoal against libtorrent->libtorrent, same run.
# Usage: benches/transfer.sh [SIZE_MIB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
/usr/bin/python3 -c 'import libtorrent' 2>/dev/null || apt-get install -y -qq python3-libtorrent >/dev/null
cargo build --release -q
exec /usr/bin/python3 benches/transfer.py "$@"
