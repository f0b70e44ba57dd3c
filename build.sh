#!/bin/sh
# Configures and builds libluaasio into build/. On Debian/Ubuntu, run as root,
# it first installs what is missing; otherwise it names the command to run.
# Extra arguments go to cmake's configure step (e.g. -DLUAASIO_SANITIZE=address).
set -eu
cd "$(dirname "$0")"

# Packages for building and for the test suite (iptables/iproute2 are used by
# the transparent-proxy tests, dnsmasq-base and bind9-dnsutils by the DNS
# forwarder test; each skips without them). libssl-dev builds the optional
# TLS library (build/libluaasio_tls.so; -DLUAASIO_TLS=mbedtls or OFF to
# choose otherwise), and openssl makes the TLS tests' certificates.
PACKAGES="g++ cmake make libboost-dev luajit libssl-dev openssl iproute2 iptables dnsmasq-base bind9-dnsutils"

# shellcheck disable=SC2086 # one word per package
tools/ensure-packages build.sh $PACKAGES

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" "$@"
cmake --build "$BUILD_DIR" -j "$(nproc 2>/dev/null || echo 2)"
tls=""
[ -f "$BUILD_DIR/libluaasio_tls.so" ] && tls=" and $BUILD_DIR/libluaasio_tls.so"
echo "build.sh: built $BUILD_DIR/libluaasio.so$tls; run the tests with ./test/luajit ./test/test.lua"
