#!/usr/bin/env bash
# Installs the system packages a target needs, only those that are missing.
# Usage: scripts/install-deps.sh build|test|loadtest|mastering|cassandra
set -euo pipefail

need=()
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
    # promtool checks and unit-tests the Prometheus alert rules.
    want promtool prometheus
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

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "installing missing packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
