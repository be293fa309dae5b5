#!/usr/bin/env bash
# Runs schemathesis against a debug engine: every operation of GET /api/openapi.json
# but the endless streams, with every check, as an operator. Fails on any server error
# or answer that does not conform to the document.
#
# The engine gets a throwaway data directory and config, a free loopback port and a
# signing secret of its own; `sonicforge token --role operator` signs the token with
# the same secret. Schemathesis comes from PyPI at the pinned version into a virtual
# environment under ~/.cache/sonicforge, made once and reused.
#
# With CI set, a missing engine or a venv that cannot be made fails the run; without
# it, they skip it with a message.
# Usage: scripts/schemathesis.sh [extra schemathesis args]
# Environment: BIN_DIR (where sonicforge is; default $CARGO_TARGET_DIR/debug),
# SCHEMATHESIS_EXAMPLES (examples per operation, default 100). Generation is
# deterministic: the same engine and document give the same requests.
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
examples=${SCHEMATHESIS_EXAMPLES:-100}
admin_examples=${SCHEMATHESIS_ADMIN_EXAMPLES:-20}
bin_dir=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/debug}
engine=$bin_dir/sonicforge
venv=${SCHEMATHESIS_VENV:-$HOME/.cache/sonicforge/schemathesis-$SCHEMATHESIS_VERSION}
settings=$(cd "$(dirname "$0")" && pwd)/schemathesis.toml

cannot() {
    if [ -n "${CI:-}" ]; then
        echo "schemathesis: FAILED: $1 (CI is set, so the API test cannot be skipped)" >&2
        exit 1
    fi
    echo "schemathesis: SKIPPED: $1" >&2
    exit 0
}

if [ ! -x "$engine" ]; then
    cannot "no engine at $engine; build it with: cargo build -p sonicforge-actors --bin sonicforge"
fi

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    echo "making $venv with schemathesis $SCHEMATHESIS_VERSION"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" || cannot "python3 -m venv failed (install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" ||
        cannot "pip could not install schemathesis==$SCHEMATHESIS_VERSION"
fi

work=$(mktemp -d)
export SONICFORGE_DATA_DIR=$work/data
# The engine and the token command read the signing secret from here.
SONICFORGE_JWT_SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
export SONICFORGE_JWT_SECRET
config=$work/sonicforge.toml
cat >"$config" <<'TOML'
# Written by scripts/schemathesis.sh for one run.
[server]
listen = "127.0.0.1:0"
data_dir = "data"

[auth]
enabled = true
secret_env = "SONICFORGE_JWT_SECRET"

[chaos]
enabled = true

[[stations]]
id = "main"
name = "API test"
renditions_kbps = [64]
crossfade_ms = 1000
track_seconds = 8
upcoming_tracks = 2
seed = 11
playlist = ["lofi chill 80 bpm A minor", "deep house 122 bpm F minor"]
TOML

log=$work/engine.log
RUST_BACKTRACE=1 "$engine" run --config "$config" --listen 127.0.0.1:0 >"$work/engine.out" 2>"$log" &
engine_pid=$!
show_log() {
    echo "--- engine log (last 80 lines of $log) ---" >&2
    tail -n 80 "$log" >&2
    echo "--- engine stdout ---" >&2
    tail -n 20 "$work/engine.out" >&2
}
finish() {
    kill "$engine_pid" 2>/dev/null || true
    wait "$engine_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap finish EXIT

url=""
for _ in $(seq 1 600); do
    url=$(sed -n 's/^listening on \(http:[^ ]*\)\/$/\1/p' "$work/engine.out" | head -n 1)
    [ -n "$url" ] && break
    kill -0 "$engine_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$url" ]; then
    show_log
    cannot "the engine did not start"
fi
for _ in $(seq 1 600); do
    curl -fs "$url/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done

token=$("$engine" token --role operator --subject schemathesis --ttl 1h --config "$config")
echo "engine pid $engine_pid at $url; schemathesis $SCHEMATHESIS_VERSION, at most $examples examples per operation"

status=0
started=$(date +%s)
# The Ogg stream, the WebSocket and the event stream never end: they stay in the
# document but are not fetched here (the Rust tests play them). Schemathesis runs in
# the throwaway directory, where it keeps its cache.
(cd "$work" && "$venv/bin/schemathesis" --no-color --config-file "$settings" run "$url/api/openapi.json" \
    --checks all \
    --header "Authorization: Bearer $token" \
    --exclude-path-regex '^/stations/[^/]+/(ws|stream\.opus)$|^/api/stations/[^/]+/events$' \
    --max-examples "$examples" \
    --generation-deterministic \
    --workers 2 \
    --request-timeout 10 \
    "$@") || status=$?
# The admin-only operations (adding and removing stations, the chaos hook) as an
# admin, with fewer examples: each added station renders music.
if [ "$status" -eq 0 ]; then
    admin=$("$engine" token --role admin --subject schemathesis --ttl 1h --config "$config")
    (cd "$work" && "$venv/bin/schemathesis" --no-color --config-file "$settings" run "$url/api/openapi.json" \
        --checks all \
        --header "Authorization: Bearer $admin" \
        --include-name-regex '^(POST /api/stations|DELETE /api/stations/\{id\}|POST /api/admin/chaos)$' \
        --max-examples "$admin_examples" \
        --generation-deterministic \
        --workers 1 \
        --request-timeout 20 \
        "$@") || status=$?
fi
echo "schemathesis took $(($(date +%s) - started)) s"

if ! kill -0 "$engine_pid" 2>/dev/null; then
    echo "the engine died during the run" >&2
    status=1
fi
if [ "$status" -ne 0 ]; then
    show_log
fi
exit "$status"
