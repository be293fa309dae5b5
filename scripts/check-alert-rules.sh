#!/usr/bin/env bash
# Checks the Prometheus alert rules with promtool: the syntax and templates
# (`promtool check rules`) and the unit tests that fire every alert on synthetic
# series (`promtool test rules`). promtool comes out of Debian's prometheus package
# (scripts/install-deps.sh test puts it in the cache). Without promtool this fails
# when CI is set and says it skipped otherwise.
# Usage: scripts/check-alert-rules.sh
set -euo pipefail

cd "$(dirname "$0")/.."
rules=config/prometheus/sonicforge-rules.yml
tests=config/prometheus/sonicforge-rules.test.yml

PATH="$PATH:${SONICFORGE_CACHE:-$HOME/.cache/sonicforge}/promtool"
if ! command -v promtool >/dev/null 2>&1; then
    message="promtool not found: run scripts/install-deps.sh test, which takes it out of Debian's prometheus package"
    if [ -n "${CI:-}" ]; then
        echo "error: $message; the alert rules cannot be checked" >&2
        exit 1
    fi
    echo "SKIPPED the alert-rule checks: $message" >&2
    exit 0
fi

promtool check rules "$rules"
promtool test rules "$tests"
