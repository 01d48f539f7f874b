#!/usr/bin/env bash
# Benchmark: `shoal verify` against libtorrent's recheck of the same data, in the same run.
#
# Data: a 1 GiB single file and a 1 GiB folder of 1,000 files (sizes vary), random bytes.
# Torrents: `shoal create` (256 KiB pieces). Both tools read the same files, page cache warm
# (one untimed pass first), alternating, RUNS times each; the median is reported.
#
# Usage: benches/verify.sh            (env: WORK=/tmp/shoal-verify-bench RUNS=3 SIZE_MIB=1024)
# Prints MB/s from the median wall time of the check itself (shoal's JSON `seconds`, libtorrent's
# force_recheck to torrent_checked_alert), the ratio, and CPU seconds per GiB, a figure other
# load on the machine disturbs less than wall time.
# Needs: python3-libtorrent for Debian's /usr/bin/python3 (apt-get install -y python3-libtorrent).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/shoal-verify-bench}
RUNS=${RUNS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
PY=/usr/bin/python3
mkdir -p "$WORK"

"$PY" -c 'import libtorrent' 2>/dev/null || {
    echo "python3-libtorrent missing: apt-get install -y python3-libtorrent" >&2
    exit 1
}

# --- build shoal (release). If `verify` is not wired into main.rs yet, build a copy that is. ---
if grep -q 'cmd_verify' "$ROOT/src/main.rs"; then
    (cd "$ROOT" && cargo build --release --bin shoal)
    SHOAL="$ROOT/target/release/shoal"
else
    BUILD="$WORK/build"
    rm -rf "$BUILD" && mkdir -p "$BUILD"
    (cd "$ROOT" && git ls-files -z Cargo.toml Cargo.lock src crates | xargs -0 cp --parents -t "$BUILD")
    "$PY" - "$BUILD/src/main.rs" <<'PYEOF'
import sys
p = sys.argv[1]
s = open(p).read()
s = s.replace("mod cmd_info;", "mod cmd_info;\nmod cmd_verify;", 1)
s = s.replace("    Info(cmd_info::InfoArgs),", "    Info(cmd_info::InfoArgs),\n    /// Check data against a .torrent.\n    Verify(cmd_verify::VerifyArgs),", 1)
s = s.replace("        Command::Info(args) => cmd_info::run(args),", "        Command::Info(args) => cmd_info::run(args),\n        Command::Verify(args) => cmd_verify::run(args),", 1)
open(p, "w").write(s)
PYEOF
    (cd "$BUILD" && CARGO_TARGET_DIR="$ROOT/target/verify-bench" cargo build --release --bin shoal)
    SHOAL="$ROOT/target/verify-bench/release/shoal"
fi

# --- data ---
DATA="$WORK/data"
mkdir -p "$DATA"
if [ ! -f "$DATA/single.bin" ] || [ "$(stat -c %s "$DATA/single.bin")" != $((SIZE_MIB << 20)) ]; then
    head -c $((SIZE_MIB << 20)) /dev/urandom > "$DATA/single.bin"
fi
MARK="$WORK/.multi-complete-$SIZE_MIB"
if [ ! -f "$MARK" ]; then
    rm -rf "$DATA/multi" && mkdir -p "$DATA/multi"
    "$PY" - "$DATA/multi" "$SIZE_MIB" "$MARK" <<'PYEOF'
import os, random, sys
root, mib = sys.argv[1], int(sys.argv[2])
total, n = mib << 20, 1000
rng = random.Random(7)
weights = [rng.uniform(0.2, 1.8) for _ in range(n)]
sizes = [int(total * w / sum(weights)) for w in weights]
sizes[-1] += total - sum(sizes)
for i, size in enumerate(sizes):
    sub = os.path.join(root, f"d{i // 100:02d}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"file{i:04d}.bin"), "wb") as f:
        f.write(os.urandom(size))
open(sys.argv[3], "w").close()
PYEOF
fi

for set in single.bin multi; do
    "$SHOAL" create "$DATA/$set" -o "$WORK/$set.torrent" --piece-size 256KiB --no-date --force >/dev/null
done

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
json_field() { "$PY" -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }

echo "shoal: $SHOAL ($(nproc) cores); libtorrent $("$PY" -c 'import libtorrent; print(libtorrent.__version__)')"
printf '%-12s %12s %12s %18s %12s %12s\n' data "shoal MB/s" "lt MB/s" "lt(2 thr) MB/s" "ratio" "ratio(2thr)"
for set in single.bin multi; do
    t="$WORK/$set.torrent"
    bytes=$((SIZE_MIB << 20))
    # Warm-up, untimed: page cache and the first check libtorrent runs on add.
    "$SHOAL" verify "$t" "$DATA" --json >/dev/null
    s_times=(); w_times=(); l_times=(); l2_times=(); s_cpu=(); l_cpu=()
    for _ in $(seq "$RUNS"); do
        out=$(/usr/bin/time -f "%e %U %S" -o "$WORK/time.txt" "$SHOAL" verify "$t" "$DATA" --json)
        read -r wall user sys < "$WORK/time.txt"
        w_times+=("$wall")
        s_cpu+=("$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')")
        [ "$(echo "$out" | json_field pieces_valid)" = "$(echo "$out" | json_field pieces_total)" ] || { echo "shoal: not all pieces valid: $out" >&2; exit 1; }
        s_times+=("$(echo "$out" | json_field seconds)")
        out=$("$PY" "$ROOT/benches/lt_recheck.py" "$t" "$DATA")
        [ "$(echo "$out" | json_field pieces_valid)" = "$(echo "$out" | json_field pieces_total)" ] || { echo "libtorrent: not all pieces valid: $out" >&2; exit 1; }
        l_times+=("$(echo "$out" | json_field seconds)")
        l_cpu+=("$(echo "$out" | json_field cpu_seconds)")
        out=$("$PY" "$ROOT/benches/lt_recheck.py" "$t" "$DATA" 2)
        l2_times+=("$(echo "$out" | json_field seconds)")
    done
    s=$(printf '%s\n' "${s_times[@]}" | median)
    l=$(printf '%s\n' "${l_times[@]}" | median)
    l2=$(printf '%s\n' "${l2_times[@]}" | median)
    awk -v set="$set" -v b="$bytes" -v s="$s" -v l="$l" -v l2="$l2" 'BEGIN {
        printf "%-12s %12.0f %12.0f %18.0f %11.2fx %11.2fx\n", set, b/s/1e6, b/l/1e6, b/l2/1e6, l/s, l2/s }'
    sc=$(printf '%s\n' "${s_cpu[@]}" | median)
    lc=$(printf '%s\n' "${l_cpu[@]}" | median)
    awk -v b="$bytes" -v sc="$sc" -v lc="$lc" 'BEGIN {
        g = b / 1073741824; printf "  CPU s per GiB (median): shoal %.2f (whole process), libtorrent %.2f\n", sc/g, lc/g }'
    echo "  seconds: shoal ${s_times[*]} (whole process: ${w_times[*]}) | libtorrent ${l_times[*]} | libtorrent hashing_threads=2 ${l2_times[*]}"
done
