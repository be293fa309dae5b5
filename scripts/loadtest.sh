#!/usr/bin/env bash
# Starts a release engine on a free loopback port, runs the listener swarm against
# it, and stops it. Usage: scripts/loadtest.sh LISTENERS SECONDS [TRANSPORT] [extra swarm args...]
set -euo pipefail
listeners=${1:-1000}
seconds=${2:-60}
transport=${3:-ws}
shift $(( $# < 3 ? $# : 3 ))
target=${CARGO_TARGET_DIR:-target}
engine=$target/release/sonicforge
swarm=$target/release/sonicforge-loadtests
report=${REPORT:-$target/loadtest-$transport-$listeners.json}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log=$(mktemp)
# Play events of the run go to a scratch directory, not the clone.
export SONICFORGE_DATA_DIR=${SONICFORGE_DATA_DIR:-$(mktemp -d)}
"$engine" run --listen 127.0.0.1:0 >"$log.out" 2>"$log" &
engine_pid=$!
trap 'kill $engine_pid 2>/dev/null || true; wait $engine_pid 2>/dev/null || true' EXIT
url=""
for _ in $(seq 1 600); do
    url=$(sed -n 's/^listening on \(http:[^ ]*\)\/$/\1/p' "$log.out" | head -n 1)
    [ -n "$url" ] && break
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "engine did not start; log:" >&2
    cat "$log" >&2
    exit 1
fi
for _ in $(seq 1 600); do
    curl -fs "$url/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
echo "engine pid $engine_pid at $url; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$swarm" swarm --url "$url" --station main --transport "$transport" \
    --listeners "$listeners" --ramp-per-sec 500 --duration-secs "$seconds" \
    --server-pid "$engine_pid" --report "$report" "$@"
echo "report: $report"
