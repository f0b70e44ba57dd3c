#!/bin/sh
# Cross-compiles libluaasio.so for a router or another Linux machine.
#
#   ./build_arm.sh [PREFIX] [cmake options...]
#
# PREFIX is the cross toolchain prefix (also CROSS=...; default
# arm-linux-gnueabihf-). Debian's cross compilers: arm-linux-gnueabihf-,
# aarch64-linux-gnu-, mipsel-linux-gnu- (glibc targets). For OpenWrt pass the
# SDK's prefix, e.g.
#   ./build_arm.sh ~/sdk/staging_dir/toolchain-mipsel_24kc_gcc-12.3.0_musl/bin/mipsel-openwrt-linux-musl-
#
# Environment:
#   CROSS          the prefix, if not given as the first argument
#   CXX, STRIP     the compiler and strip (default: PREFIXg++, PREFIXstrip)
#   BOOST_INCLUDE  the folder holding boost/ (default /usr/include). Boost is
#                  header-only and the same for every target; an OpenWrt SDK
#                  has none, so use the host's (apt-get install libboost-dev).
#   BUILD_DIR      default build-<arch>, e.g. build-armhf
#   BUILD_TYPE     default MinSizeRel (-Os); Release is faster and larger
#   MAX_SIZE       fail if the stripped library is larger (bytes)
#
# The result, build-<arch>/libluaasio.so, links libstdc++ and libgcc
# statically, exports only the luaasio_* functions and is stripped: copy it
# and lua/asio.lua to the device (see docs/PORTABILITY.md).
set -eu
cd "$(dirname "$0")"
start=$(date +%s)

case ${1:-} in
-h|--help) sed -n '2,27p' "$0"; exit 0 ;;
-*|'') ;;
*) CROSS=$1; shift ;;
esac
CROSS=${CROSS:-arm-linux-gnueabihf-}
triplet=$(basename "$CROSS")
triplet=${triplet%-}

# The Debian architecture name, for the build folder.
case $triplet in
arm-linux-gnueabihf) arch=armhf ;;
arm-linux-gnueabi) arch=armel ;;
aarch64-linux-gnu) arch=arm64 ;;
mipsel-linux-gnu) arch=mipsel ;;
mips64el-linux-gnuabi64) arch=mips64el ;;
s390x-linux-gnu) arch=s390x ;;
powerpc64le-linux-gnu) arch=ppc64el ;;
*) arch=$triplet ;;
esac

# An OpenWrt SDK's compiler wants STAGING_DIR.
case $CROSS in
*/staging_dir/*) : "${STAGING_DIR:=${CROSS%%/staging_dir/*}/staging_dir}"; export STAGING_DIR ;;
esac

CXX=${CXX:-${CROSS}g++}
STRIP=${STRIP:-${CROSS}strip}
BOOST_INCLUDE=${BOOST_INCLUDE:-/usr/include}
export CXX STRIP

# Missing tools: install them as root on Debian, else say what to install.
missing=""
have() { command -v "$1" >/dev/null 2>&1; }
have cmake || missing="$missing cmake"
have make || missing="$missing make"
[ -f "$BOOST_INCLUDE/boost/asio.hpp" ] || missing="$missing libboost-dev"
if ! have "$CXX"; then
  case $CXX in
  */*) echo "build_arm.sh: compiler $CXX not found" >&2; exit 1 ;;
  esac
  missing="$missing g++-$triplet"
fi
# shellcheck disable=SC2086 # one word per package
[ -z "$missing" ] || tools/ensure-packages build_arm.sh $missing
[ -f "$BOOST_INCLUDE/boost/asio.hpp" ] || {
  echo "build_arm.sh: no boost/asio.hpp in BOOST_INCLUDE=$BOOST_INCLUDE" >&2
  exit 1
}

BUILD_DIR=${BUILD_DIR:-build-$arch}
echo "build_arm.sh: $CXX -> $BUILD_DIR (${BUILD_TYPE:-MinSizeRel})"
# std::terminate without the runtime's demangler (src/static_terminate.cpp).
mkdir -p "$BUILD_DIR"
case $BUILD_DIR in /*) term=$BUILD_DIR/static_terminate.o ;; *) term=$PWD/$BUILD_DIR/static_terminate.o ;; esac
$CXX -Os -fPIC -c -o "$term" src/static_terminate.cpp
cmake -S . -B "$BUILD_DIR" \
  -DCMAKE_SHARED_LINKER_FLAGS="$term" \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/cross-linux.cmake" \
  -DLUAASIO_CROSS="$CROSS" \
  -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-MinSizeRel}" \
  -DLUAASIO_STATIC_RUNTIME=ON \
  -DBOOST_INCLUDE="$BOOST_INCLUDE" \
  "$@" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc 2>/dev/null || echo 2)"

lib=$BUILD_DIR/libluaasio.so
"$STRIP" --strip-all "$lib"
size=$(wc -c <"$lib" | tr -d ' ')
echo "build_arm.sh: $lib: $size bytes ($(( (size + 1023) / 1024 )) KB) stripped, $arch, built in $(( $(date +%s) - start ))s"
if [ -n "${MAX_SIZE:-}" ] && [ "$size" -gt "$MAX_SIZE" ]; then
  echo "build_arm.sh: larger than MAX_SIZE=$MAX_SIZE bytes" >&2
  exit 1
fi
