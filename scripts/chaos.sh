#!/usr/bin/env bash
# Starts a release engine with the chaos hooks on (config/chaos.toml) on a free loopback
# port, runs the seeded chaos driver against it, and stops it; on failure prints the
# tail of the engine's log. Exits with the driver's status.
# Usage: scripts/chaos.sh KILLS SECONDS LISTENERS [extra driver args, e.g. --seed N --report PATH]
set -euo pipefail
kills=${1:-100}
seconds=${2:-300}
listeners=${3:-200}
shift $(( $# < 3 ? $# : 3 ))
bin_dir=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
engine=$bin_dir/sonicforge
driver=$bin_dir/sonicforge-loadtests
config=${CHAOS_CONFIG:-config/chaos.toml}

for binary in "$engine" "$driver"; do
    if [ ! -x "$binary" ]; then
        echo "missing $binary; build with: cargo build --release -p sonicforge-actors -p sonicforge-loadtests" >&2
        exit 2
    fi
done

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log=$(mktemp)
# Play events of the run go to a scratch directory, not the clone.
export SONICFORGE_DATA_DIR=${SONICFORGE_DATA_DIR:-$(mktemp -d)}
# Backtraces of the injected panics are noise, and symbolizing the first one maps the
# binary's debug info, a one-time jump in RSS that the memory check would report as
# growth. ENGINE_RUST_BACKTRACE=1 turns them back on.
RUST_BACKTRACE=${ENGINE_RUST_BACKTRACE:-0} \
    "$engine" run --config "$config" --listen 127.0.0.1:0 >"$log.out" 2>"$log" &
engine_pid=$!
stop_engine() {
    kill "$engine_pid" 2>/dev/null || true
    wait "$engine_pid" 2>/dev/null || true
}
show_log() {
    echo "--- engine log (last 60 lines of $log) ---" >&2
    tail -n 60 "$log" >&2
    echo "--- engine stdout (last 20 lines of $log.out) ---" >&2
    tail -n 20 "$log.out" >&2
}
trap stop_engine EXIT

url=""
for _ in $(seq 1 600); do
    url=$(sed -n 's/^listening on \(http:[^ ]*\)\/$/\1/p' "$log.out" | head -n 1)
    [ -n "$url" ] && break
    if ! kill -0 "$engine_pid" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "engine did not start" >&2
    show_log
    exit 1
fi
ready=""
for _ in $(seq 1 600); do
    if curl -fs "$url/readyz" >/dev/null 2>&1; then
        ready=yes
        break
    fi
    sleep 0.1
done
if [ -z "$ready" ]; then
    echo "engine at $url never answered /readyz with 200" >&2
    show_log
    exit 1
fi
echo "engine pid $engine_pid at $url ($config); $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# The chaos hook needs role admin; the token is signed with the engine's secret (same
# config and data directory).
SONICFORGE_TOKEN=$("$engine" token --role admin --subject chaos-driver --config "$config")
export SONICFORGE_TOKEN

status=0
"$driver" chaos --url "$url" --station main --kills "$kills" --duration-secs "$seconds" \
    --listeners "$listeners" --server-pid "$engine_pid" "$@" || status=$?

if ! kill -0 "$engine_pid" 2>/dev/null; then
    echo "the engine exited during the run" >&2
    if [ "$status" -eq 0 ]; then
        status=1
    fi
fi
stop_engine
trap - EXIT
if [ "$status" -ne 0 ]; then
    show_log
    echo "engine logs kept in $log and $log.out" >&2
else
    rm -f "$log" "$log.out"
fi
exit "$status"
