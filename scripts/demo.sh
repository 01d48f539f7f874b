#!/usr/bin/env bash
# The whole mission on one machine, no internet: `shoal swarm` makes a 64 MiB file and its
# torrent (no tracker), starts a small local DHT, an initial seeder and 4 leechers as separate
# processes on 127.0.0.x, shows their progress side by side and prints a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
exec target/release/shoal swarm --leechers "${LEECHERS:-4}" --size "${SIZE:-64MiB}" --dir target/swarm-demo "$@"
