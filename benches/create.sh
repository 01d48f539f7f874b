#!/usr/bin/env bash
# Benchmark: `shoal create` against mktorrent on the same 1 GiB file, same piece size, same run.
# Usage: benches/create.sh [SIZE_MIB] [RUNS]
# Prints wall time and MB/s of each (median of RUNS, page cache warm) and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
runs=${2:-3}
command -v mktorrent >/dev/null || { echo "installing mktorrent" >&2; apt-get install -y -qq mktorrent >/dev/null; }
cargo build --release -q
dir=target/bench-create
mkdir -p "$dir"
data="$dir/payload-${size_mib}MiB.bin"
[ -f "$data" ] || head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$data"
cat "$data" > /dev/null # warm the page cache for both tools

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Wall seconds and CPU seconds (user + system) of a command, from wait4().
time_of() {
    python3 -c '
import os, subprocess, sys, time
t = time.time()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, ru = os.wait4(p.pid, 0)
print("%.4f %.4f" % (time.time() - t, ru.ru_utime + ru.ru_stime))
' "$@"
}

piece=524288 # 512 KiB, what both pick for 1 GiB
shoal_times=(); mk_times=()
for _ in $(seq "$runs"); do
    shoal_times+=("$(time_of target/release/shoal create "$data" -o "$dir/shoal.torrent" --force --piece-size $piece --no-date)")
    rm -f "$dir/mk.torrent"
    mk_times+=("$(time_of mktorrent -l 19 -o "$dir/mk.torrent" "$data")")
done
s=$(printf '%s\n' "${shoal_times[@]}" | cut -d' ' -f1 | median)
m=$(printf '%s\n' "${mk_times[@]}" | cut -d' ' -f1 | median)
sc=$(printf '%s\n' "${shoal_times[@]}" | cut -d' ' -f2 | median)
mc=$(printf '%s\n' "${mk_times[@]}" | cut -d' ' -f2 | median)
bytes=$((size_mib * 1024 * 1024))
printf 'shoal create: %.3f s  %.0f MB/s\n' "$s" "$(echo "$bytes / $s / 1000000" | bc -l)"
printf 'mktorrent:    %.3f s  %.0f MB/s\n' "$m" "$(echo "$bytes / $m / 1000000" | bc -l)"
printf 'speed ratio shoal/mktorrent: %.2fx (CPU seconds: shoal %.2f, mktorrent %.2f)\n' "$(echo "$m / $s" | bc -l)" "$sc" "$mc"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews wall times)"
# Same data, same piece size, same single-file layout: the pieces must be identical.
a=$(target/release/shoal info "$dir/shoal.torrent" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')
b=$(target/release/shoal info "$dir/mk.torrent" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["info_hash"])')
echo "info-hash shoal $a / mktorrent $b"
