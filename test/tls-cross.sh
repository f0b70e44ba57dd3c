#!/bin/sh
# The TLS suite on armhf under qemu-user with the mbedTLS backend, the way a
# router runs it: core and TLS library cross-built with build_arm.sh against
# Debian's armhf mbedTLS (fetched and unpacked, never installed), run by
# Debian's armhf LuaJIT.
#
#   test/tls-cross.sh [armhf|arm64|mipsel] [filter]   (default armhf, filter tls)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
arch=${1:-armhf}
[ $# -gt 0 ] && shift
case $arch in
armhf) triplet=arm-linux-gnueabihf qemu=qemu-arm ;;
arm64) triplet=aarch64-linux-gnu qemu=qemu-aarch64 ;;
mipsel) triplet=mipsel-linux-gnu qemu=qemu-mipsel ;;
*) echo "usage: test/tls-cross.sh armhf|arm64|mipsel [filter]" >&2; exit 2 ;;
esac
start=$(date +%s)
say() { echo "tls-cross.sh[$arch]: $*"; }

sysroot=$here/build/sysroot-tls-$arch
rm -rf "$sysroot"
test/debian-pkg.sh "$arch" extract "$sysroot" \
  libmbedtls-dev libmbedtls14 libmbedcrypto7 libmbedx509-1 luajit libluajit-5.1-2 libluajit-5.1-common
libdir=$sysroot/usr/lib/$triplet
say "mbedTLS $(test/debian-pkg.sh "$arch" version libmbedtls-dev) fetched"

BUILD_DIR=build-$arch-tls ./build_arm.sh "$triplet-" -DLUAASIO_TLS=mbedtls \
  -DMBEDTLS_INCLUDE_DIR="$sysroot/usr/include" \
  -DMBEDTLS_LIBRARY="$libdir/libmbedtls.so" \
  -DMBEDX509_LIBRARY="$libdir/libmbedx509.so" \
  -DMBEDCRYPTO_LIBRARY="$libdir/libmbedcrypto.so"
tls=build-$arch-tls/libluaasio_tls.so
"$triplet-strip" --strip-all "$tls"
say "$tls: $(wc -c <"$tls" | tr -d ' ') bytes stripped (links $("$triplet-readelf" -d "$tls" | sed -n 's/.*Shared library: \[\(libmbed[^]]*\)\].*/\1/p' | tr '\n' ' '))"
if "$triplet-readelf" -d "build-$arch-tls/libluaasio.so" | grep -q -E 'libmbed|libssl'; then
  echo "tls-cross.sh: the core library links a TLS library" >&2
  exit 1
fi

qroot=$here/build/qemu-tls-$arch
rm -rf "$qroot"
mkdir -p "$qroot/etc"
ln -s "/usr/$triplet/lib" "$qroot/lib"
"$triplet-gcc" -shared -fPIC -O2 -o "$qroot/qemu_preload.so" test/cross/qemu_preload.c
echo /qemu_preload.so >"$qroot/etc/ld.so.preload"

LUAJIT="$qemu -L $qroot -E LD_LIBRARY_PATH=$libdir $sysroot/usr/bin/luajit"
LUAASIO_LIB=$here/build-$arch-tls/libluaasio.so
LUAASIO_QEMU=1
LUAASIO_REQUIRE_TLS=1
export LUAJIT LUAASIO_LIB LUAASIO_QEMU LUAASIO_REQUIRE_TLS
say "backend: $(./test/luajit -e 'print(select(2, require("asio").tls_available()))')"
status=0
./test/luajit ./test/test.lua "${1:-tls}" || status=$?
say "total $(( $(date +%s) - start ))s"
exit $status
