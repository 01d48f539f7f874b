#!/usr/bin/env bash
# Benchmark: 1 seeder + N leechers, all shoal against all libtorrent, same run.
# Usage: benches/swarm.sh [LEECHERS] [SIZE_MIB] [RUNS] [SEED_RATE_BPS]
set -euo pipefail
cd "$(dirname "$0")/.."
/usr/bin/python3 -c 'import libtorrent' 2>/dev/null || apt-get install -y -qq python3-libtorrent >/dev/null
cargo build --release -q
exec /usr/bin/python3 benches/swarm.py "$@"
