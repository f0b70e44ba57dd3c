#!/bin/sh
# Configures and builds libluaasio into build/. On Debian/Ubuntu, run as root,
# it first installs what is missing; otherwise it names the command to run.
# Extra arguments go to cmake's configure step (e.g. -DLUAASIO_SANITIZE=address).
set -eu
cd "$(dirname "$0")"

# Packages for building and for the test suite (iptables/iproute2 are used by
# the transparent-proxy test, which skips without them).
PACKAGES="g++ cmake make libboost-dev luajit iproute2 iptables"

missing=""
if command -v dpkg-query >/dev/null 2>&1; then
  for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing="$missing $p"
  done
fi
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "build.sh: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing
  else
    echo "build.sh: missing packages:$missing" >&2
    echo "build.sh: install them with: sudo apt-get install$missing" >&2
    exit 1
  fi
fi

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" "$@"
cmake --build "$BUILD_DIR" -j "$(nproc 2>/dev/null || echo 2)"
echo "build.sh: built $BUILD_DIR/libluaasio.so; run the tests with ./test/luajit ./test/test.lua"
