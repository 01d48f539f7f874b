#!/usr/bin/env bash
# A local swarm with no internet: make a 64 MiB file and a torrent of it, seed it from 127.0.0.2,
# download it with two leechers on 127.0.0.3 and 127.0.0.4 that also trade with each other, then
# verify both copies. Everything stays on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
shoal=target/release/shoal
dir=target/demo
rm -rf "$dir" && mkdir -p "$dir/seed"
head -c $((64 * 1024 * 1024)) /dev/urandom > "$dir/seed/demo.bin"
$shoal create "$dir/seed/demo.bin" -o "$dir/demo.torrent" --force
$shoal info "$dir/demo.torrent" | head -5

# The seeder, capped at 20 MiB/s so the leechers have a reason to trade.
XDG_STATE_HOME="$dir/state" $shoal seed "$dir/demo.torrent" "$dir/seed" \
    --listen 127.0.0.2:0 --max-upload-rate 20MiB --no-dht --json > "$dir/seed.jsonl" 2> "$dir/seed.log" &
seed_pid=$!
trap 'kill $seed_pid 2>/dev/null || true' EXIT
addr=""
for _ in $(seq 50); do
    addr=$(grep -o '"addr":"[^"]*"' "$dir/seed.jsonl" 2>/dev/null | head -1 | cut -d'"' -f4) || true
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { echo "the seeder did not start; see $dir/seed.log" >&2; exit 1; }
echo "seeder listening on $addr"

$shoal download "$dir/demo.torrent" -o "$dir/leecher1" --listen 127.0.0.3:6891 --peer "$addr" --seed --no-dht \
    --json > "$dir/leecher1.jsonl" 2> "$dir/leecher1.log" &
l1=$!
trap 'kill $seed_pid $l1 2>/dev/null || true' EXIT
sleep 0.5
echo "leecher 2 (live progress; leecher 1 runs in the background):"
$shoal download "$dir/demo.torrent" -o "$dir/leecher2" --listen 127.0.0.4:0 --no-dht \
    --peer "$addr" --peer 127.0.0.3:6891
for _ in $(seq 600); do
    grep -q '"downloaded":67108864,' "$dir/leecher1.jsonl" 2>/dev/null && break
    sleep 0.1
done
kill -TERM $l1 $seed_pid
wait $l1 $seed_pid 2>/dev/null || true
for l in leecher1 leecher2; do
    echo "$l: $($shoal verify "$dir/demo.torrent" "$dir/$l" --json)"
done
echo "seeder: $(tail -1 "$dir/seed.jsonl")"
echo "leecher 1: $(tail -1 "$dir/leecher1.jsonl")"
