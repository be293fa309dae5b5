#!/usr/bin/env bash
# Side-by-side mastering benchmark (`make bench-mastering`): installs what is missing
# (ffmpeg, python3-venv, libsndfile1, the Vulkan loader and Mesa's drivers for the GPU
# path), makes the virtualenv .venv-mastering/ with Matchering, then runs
# scripts/bench_mastering.py on a freshly written corpus with a release engine, prints
# the table and writes it into docs/PERFORMANCE.md. Exits non-zero when a target fails
# or a tool fails, after writing the table.
# Usage: scripts/bench-mastering.sh [SECONDS per corpus track, default 180] [extra args
# for scripts/bench_mastering.py run, e.g. --keep-outputs]
# Environment: SONICFORGE_BIN (default: the release binary in CARGO_TARGET_DIR),
# BENCH_MASTERING_DIR (scratch, default CARGO_TARGET_DIR/bench-mastering),
# BENCH_MASTERING_DOC (default docs/PERFORMANCE.md; empty: print only),
# BENCH_MASTERING_VENV (default .venv-mastering), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-180}
shift $(( $# < 1 ? $# : 1 ))
target=${CARGO_TARGET_DIR:-$HOME/.cache/sonicforge/target}
engine=${SONICFORGE_BIN:-$target/release/sonicforge}
workdir=${BENCH_MASTERING_DIR:-$target/bench-mastering}
doc=${BENCH_MASTERING_DOC-docs/PERFORMANCE.md}
venv=${BENCH_MASTERING_VENV:-.venv-mastering}
python=${PYTHON:-python3}
matchering_version=2.0.6

case "$seconds" in
'' | *[!0-9]*)
    echo "SECONDS must be a whole number of seconds per track, not '$seconds'" >&2
    exit 2
    ;;
esac

# System packages, only those that are missing.
scripts/install-deps.sh mastering

# The virtualenv with Matchering, made or remade only when it lacks the pinned version.
venv_python=$venv/bin/python
has_matchering() {
    [ -x "$venv_python" ] && "$venv_python" -c \
        "import sys, matchering; sys.exit(matchering.__version__ != '$matchering_version')" \
        >/dev/null 2>&1
}
if ! has_matchering; then
    echo "making the virtualenv $venv with matchering==$matchering_version"
    if ! "$python" -m venv --clear "$venv"; then
        echo "$python -m venv failed: is python3-venv installed for $($python --version 2>&1)?" >&2
        exit 1
    fi
    if ! "$venv_python" -m pip install --quiet "matchering==$matchering_version"; then
        echo "pip could not install matchering==$matchering_version into $venv (see above)" >&2
        exit 1
    fi
    if ! has_matchering; then
        echo "matchering==$matchering_version is installed in $venv but does not import:" >&2
        "$venv_python" -c "import matchering" >&2 || true
        exit 1
    fi
fi

if [ ! -x "$engine" ]; then
    echo "missing $engine; build it with: cargo build --release --locked -p sonicforge-actors --bin sonicforge" >&2
    exit 2
fi

echo "$(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg); engine $engine"
exec "$python" scripts/bench_mastering.py run \
    --sonicforge "$engine" --python "$venv_python" --workdir "$workdir" \
    --seconds "$seconds" ${doc:+--doc "$doc"} "$@"
