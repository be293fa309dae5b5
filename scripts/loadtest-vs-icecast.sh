#!/usr/bin/env bash
# SonicForge beside Icecast 2.4, in one invocation on this machine, all on 127.0.0.1.
#
# Installs Debian's icecast2 when missing and starts, on free loopback ports in a
# throwaway folder, Icecast with loadtests/icecast.xml and a feeder engine with
# loadtests/vs-icecast.toml (stations page20 and page100). For each write granularity
# (20 ms and 100 ms) it feeds an Icecast mount with the feeder's page20 128 kb/s
# Ogg/Opus stream re-paged to that duration (sonicforge-loadtests icecast-source), then
# runs the same swarm against Icecast's mount, SonicForge's HTTP stream and SonicForge's
# WebSocket stream of the station with that batching, one after the other, each with
# --server-pid of the server it measures, and prints one table per granularity. Each
# SonicForge run gets a fresh engine (same config), so its memory per listener is not
# flattered by memory an earlier run left to the allocator.
#
# Usage: scripts/loadtest-vs-icecast.sh LISTENERS SECONDS [extra swarm args...]
# Environment: RAMP (listeners per second, default 500), GRANULARITIES (default
# "20 100"), SERVERS (default "icecast sonicforge-http sonicforge-ws"), OUT (folder of
# the reports, default $CARGO_TARGET_DIR/vs-icecast-LISTENERS).
set -euo pipefail
listeners=${1:-1000}
seconds=${2:-60}
shift $(( $# < 2 ? $# : 2 ))
ramp=${RAMP:-500}
granularities=${GRANULARITIES:-20 100}
servers=${SERVERS:-icecast sonicforge-http sonicforge-ws}
here=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$here/target}
engine=$target/release/sonicforge
swarm=$target/release/sonicforge-loadtests
out=${OUT:-$target/vs-icecast-$listeners}
mkdir -p "$out"

if ! command -v icecast2 >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "installing icecast2"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends icecast2 >/dev/null
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
work=$(mktemp -d)
chmod 755 "$work"
engine_pid=""
feeder_pid=""
icecast_pid=""
source_pid=""
stop() {
    for pid in $source_pid $icecast_pid $engine_pid $feeder_pid; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap stop EXIT

# A free loopback port: nothing answers a connect to it.
free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$(( 20000 + RANDOM % 40000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "no free port found" >&2
    exit 1
}

echo "== $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg); $listeners listeners at $ramp/s for $seconds s per run"

# start_engine NAME: a release engine with loadtests/vs-icecast.toml on a free port;
# sets engine_pid and url.
start_engine() {
    local name=$1
    export SONICFORGE_DATA_DIR=$work/$name
    rm -rf "$SONICFORGE_DATA_DIR"
    mkdir -p "$SONICFORGE_DATA_DIR"
    "$engine" run --config "$here/loadtests/vs-icecast.toml" --listen 127.0.0.1:0 \
        >"$work/$name.out" 2>"$work/$name.log" &
    engine_pid=$!
    url=""
    for _ in $(seq 1 600); do
        url=$(sed -n 's/^listening on \(http:[^ ]*\)\/$/\1/p' "$work/$name.out" | head -n 1)
        [ -n "$url" ] && break
        kill -0 "$engine_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$url" ]; then
        echo "engine $name did not start; log:" >&2
        tail -n 50 "$work/$name.log" >&2
        exit 1
    fi
    for _ in $(seq 1 600); do
        curl -fs "$url/readyz" >/dev/null 2>&1 && break
        sleep 0.1
    done
}

# settle PID: waits (at most 90 s) until the process has used under 15% of a core in
# each of 3 seconds in a row, so that the tracks a fresh engine renders ahead (CPU and
# memory) are not measured as listener cost.
settle() {
    local pid=$1 before after ticks quiet=0
    ticks=$(getconf CLK_TCK)
    for _ in $(seq 1 90); do
        before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        sleep 1
        after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        if [ $(( (after - before) * 100 / ticks )) -lt 15 ]; then
            quiet=$((quiet + 1))
            [ "$quiet" -ge 3 ] && return
        else
            quiet=0
        fi
    done
}

stop_engine() {
    kill "$engine_pid" 2>/dev/null || true
    wait "$engine_pid" 2>/dev/null || true
    engine_pid=""
}

start_engine feeder
feeder_pid=$engine_pid
feeder_url=$url
engine_pid=""
echo "feeder engine pid $feeder_pid at $feeder_url"
settle "$feeder_pid"

# Icecast, as this user, or as the package's icecast2 user when this is root.
icecast_port=$(free_port)
password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
changeowner=""
if [ "$(id -u)" -eq 0 ]; then
    user=icecast2
    group=$(id -gn icecast2 2>/dev/null || echo nogroup)
    id icecast2 >/dev/null 2>&1 || user=nobody
    changeowner="<changeowner><user>$user</user><group>$group</group></changeowner>"
    mkdir -p "$work/icecast"
    chown "$user:$group" "$work/icecast"
else
    mkdir -p "$work/icecast"
fi
sed -e "s|@CLIENTS@|$((listeners + 100))|" -e "s|@PASSWORD@|$password|g" \
    -e "s|@PORT@|$icecast_port|" -e "s|@DIR@|$work/icecast|g" \
    -e "s|@CHANGEOWNER@|$changeowner|" \
    "$here/loadtests/icecast.xml" >"$work/icecast.xml"
chmod 644 "$work/icecast.xml"
icecast2 -c "$work/icecast.xml" >"$work/icecast.out" 2>&1 &
icecast_pid=$!
icecast_url=http://127.0.0.1:$icecast_port
for _ in $(seq 1 100); do
    curl -fs "$icecast_url/status-json.xsl" >/dev/null 2>&1 && break
    kill -0 "$icecast_pid" 2>/dev/null || break
    sleep 0.1
done
if ! curl -fs "$icecast_url/status-json.xsl" >/dev/null 2>&1; then
    echo "icecast did not start:" >&2
    cat "$work/icecast.out" "$work/icecast/error.log" >&2 2>/dev/null || true
    exit 1
fi
echo "icecast $(icecast2 -v 2>/dev/null | head -n 1) pid $icecast_pid at $icecast_url"

run_swarm() { # run_swarm NAME REPORT SWARM-ARGS...
    local name=$1 report=$2
    shift 2
    echo "-- $name: load average $(cut -d' ' -f1-3 /proc/loadavg)"
    "$swarm" swarm --listeners "$listeners" --ramp-per-sec "$ramp" --duration-secs "$seconds" \
        --report "$report" "$@" "${extra[@]}" >"$report.txt" 2>&1 || {
        cat "$report.txt" >&2
        return 1
    }
    grep -E "^(warning|  warning)" "$report.txt" || true
}

extra=("$@")
source_secs=$(( 3 * (listeners / ${ramp%.*} + seconds + 30) + 60 ))
for page_ms in $granularities; do
    station=page$page_ms
    mount=/page$page_ms.opus
    "$swarm" icecast-source --from "$feeder_url" --station page20 --bitrate 128 \
        --to "$icecast_url" --mount "$mount" --password "$password" --page-ms "$page_ms" \
        --duration-secs "$source_secs" >"$work/source-$page_ms.log" 2>&1 &
    source_pid=$!
    for _ in $(seq 1 100); do
        curl -fs "$icecast_url/status-json.xsl" 2>/dev/null | grep -q "$mount" && break
        sleep 0.1
    done
    if ! curl -fs "$icecast_url/status-json.xsl" 2>/dev/null | grep -q "$mount"; then
        echo "the source did not reach icecast:" >&2
        cat "$work/source-$page_ms.log" "$work/icecast/error.log" >&2 2>/dev/null || true
        exit 1
    fi
    rows=()
    for server in $servers; do
        report=$out/$server-$page_ms.json
        case $server in
        icecast)
            run_swarm "icecast, $page_ms ms pages" "$report" --url "$icecast_url" --peer \
                --bitrate 128 --transport http --http-path "$mount" --station "$station" \
                --server-pid "$icecast_pid"
            ;;
        sonicforge-http)
            start_engine "engine-http-$page_ms"
            settle "$engine_pid"
            run_swarm "sonicforge http, $page_ms ms pages" "$report" --url "$url" \
                --station "$station" --transport http --server-pid "$engine_pid"
            stop_engine
            ;;
        sonicforge-ws)
            start_engine "engine-ws-$page_ms"
            settle "$engine_pid"
            run_swarm "sonicforge ws, $((page_ms / 20)) packets per write" "$report" --url "$url" \
                --station "$station" --transport ws --server-pid "$engine_pid"
            stop_engine
            ;;
        *)
            echo "unknown server $server (icecast, sonicforge-http, sonicforge-ws)" >&2
            exit 2
            ;;
        esac
        rows+=("$server=$report")
    done
    kill "$source_pid" 2>/dev/null || true
    wait "$source_pid" 2>/dev/null || true
    source_pid=""
    title="$page_ms ms writes: $listeners listeners at $ramp/s, $seconds s steady"
    "$swarm" compare --title "$title" "${rows[@]}" | tee "$out/table-$page_ms.txt"
    "$swarm" compare --markdown --title "$title" "${rows[@]}" >"$out/table-$page_ms.md"
done
echo "reports and tables: $out"
