#!/usr/bin/env bash
# A first run of shoal with no network: generate a 64 MiB file, make a torrent and a magnet link
# of it, and show what the torrent holds.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
dir=target/demo
mkdir -p "$dir"
[ -f "$dir/demo.bin" ] || head -c $((64 * 1024 * 1024)) /dev/urandom > "$dir/demo.bin"
target/release/shoal create "$dir/demo.bin" -o "$dir/demo.torrent" --force \
    -t http://127.0.0.1:6969/announce
target/release/shoal info "$dir/demo.torrent"
