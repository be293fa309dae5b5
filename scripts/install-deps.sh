#!/usr/bin/env bash
# Installs the system packages a target needs, only those that are missing.
# Usage: scripts/install-deps.sh build|test|loadtest|mastering|cassandra
set -euo pipefail

need=()
wants_promtool=""
want() { # want COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 || need+=("$2")
}
want_pkg() { # want_pkg PACKAGE (for libraries and drivers, which have no command)
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || need+=("$1")
}

case "${1:-build}" in
build)
    want cmake cmake
    want pkg-config pkg-config
    want cc build-essential
    ;;
test)
    want cmake cmake
    want pkg-config pkg-config
    want cc build-essential
    want ffmpeg ffmpeg
    want chromium chromium
    want node nodejs
    want npm npm
    want python3 python3
    # promtool checks and unit-tests the Prometheus alert rules (fetch_promtool below).
    wants_promtool=1
    # The GPU kernel tests run on Mesa's lavapipe software Vulkan driver.
    want_pkg libvulkan1
    want_pkg mesa-vulkan-drivers
    ;;
loadtest)
    want curl curl
    want cmake cmake
    want pkg-config pkg-config
    want cc build-essential
    ;;
mastering)
    # make bench-mastering: ffmpeg measures, Matchering runs in a virtualenv and reads
    # audio through libsndfile, the GPU path needs a Vulkan driver (lavapipe at least).
    want ffmpeg ffmpeg
    want python3 python3
    want_pkg python3-venv
    want_pkg libsndfile1
    want_pkg libvulkan1
    want_pkg mesa-vulkan-drivers
    ;;
cassandra)
    # scripts/cassandra.sh: Cassandra 5.0 runs on Java 17, Maven fetches its jars, python3
    # checks that the node answers CQL, flock serialises parallel fetches.
    want java openjdk-17-jre-headless
    want mvn maven
    want python3 python3
    want flock util-linux
    ;;
*)
    echo "usage: $0 build|test|loadtest|mastering|cassandra" >&2
    exit 2
    ;;
esac

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is missing: install a Rust toolchain (1.90 or newer) with rustup first." >&2
    exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
apt_updated=""

if [ ${#need[@]} -gt 0 ]; then
    echo "installing missing packages: ${need[*]}"
    $sudo apt-get update -qq
    apt_updated=1
    $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# promtool is taken out of Debian's prometheus package into the cache, without
# installing the package: that would also install (and, under systemd, start) a
# Prometheus server. scripts/check-alert-rules.sh looks for it there.
fetch_promtool() {
    local dir=${SONICFORGE_CACHE:-$HOME/.cache/sonicforge}/promtool
    if command -v promtool >/dev/null 2>&1 || [ -x "$dir/promtool" ]; then
        return 0
    fi
    echo "fetching promtool from Debian's prometheus package into $dir"
    local work
    work=$(mktemp -d)
    if ! (cd "$work" && apt-get download -qq prometheus 2>/dev/null); then
        if [ -z "$apt_updated" ]; then
            $sudo apt-get update -qq
        fi
        (cd "$work" && apt-get download -qq prometheus)
    fi
    dpkg-deb -x "$work"/prometheus_*.deb "$work/package"
    mkdir -p "$dir"
    install -m 0755 "$work/package/usr/bin/promtool" "$dir/promtool"
    rm -rf "$work"
}

if [ -n "$wants_promtool" ]; then
    fetch_promtool
fi
