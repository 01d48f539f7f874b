#!/usr/bin/env bash
# Runs every test of shoal: unit, property, conformance, end-to-end and interop tests.
# First installs the reference peers with apt when they are missing (python3-libtorrent,
# opentracker, transmission-cli, stunnel4 as the TLS terminator of the HTTPS tracker test, and
# chromium with chromium-driver for the daemon's web page test, iproute2 for the LEDBAT test's
# network namespaces),
# so a fresh machine (and .ci/run) can simply call this script. Extra arguments go to
# `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
/usr/bin/python3 -c 'import libtorrent' >/dev/null 2>&1 || missing+=(python3-libtorrent)
[ -x /usr/bin/opentracker ] || missing+=(opentracker)
[ -x /usr/bin/stunnel4 ] || missing+=(stunnel4)
[ -x /usr/bin/transmission-cli ] || missing+=(transmission-cli)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
# ip and tc (network namespaces and a rate limit for the LEDBAT test).
{ command -v ip && command -v tc; } >/dev/null 2>&1 || missing+=(iproute2)
command -v sysctl >/dev/null 2>&1 || missing+=(procps)

if ((${#missing[@]})); then
    echo "installing reference peers: ${missing[*]}" >&2
    sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
            echo "warning: cannot install ${missing[*]} (not root, no sudo); interop tests will be" \
                 "skipped (and fail when CI=true)" >&2
        fi
    fi
    if [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; then
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
            { $sudo apt-get update -qq && $sudo apt-get install -y -qq "${missing[@]}"; }
    fi
fi

cargo test --workspace "$@"
# The policies once more as they ship (optimised, no overflow checks): rustc 1.95 miscompiled the
# picker's piece-set count only in that profile, and the dev profile's tests could not see it.
cargo test --release -p shoal-picker -p shoal-choker -p shoal-torrent "$@"
