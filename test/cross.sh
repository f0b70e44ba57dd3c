#!/bin/sh
# Cross-builds libluaasio for ARCH and runs the test suite on Debian's LuaJIT
# for ARCH under qemu-user, without changing the host's apt or dpkg state.
#
#   test/cross.sh ARCH [filter]      ARCH: armhf, arm64, mipsel or s390x
#
# Stages (each timed):
#  1. ./build_arm.sh builds build-ARCH/libluaasio.so (installs the cross
#     compiler when run as root on Debian).
#  2. test/cross/abi_check.c, built for ARCH, loads the library under qemu and
#     checks the ABI and the sockaddr decoder on this byte order.
#  3. test/debian-pkg.sh fetches Debian's LuaJIT for ARCH into
#     build/sysroot-ARCH (private apt config under build/apt/ARCH, dpkg -x).
#  4. The whole suite runs under qemu-ARCH via test/luajit with
#     LUAJIT="qemu-ARCH -L build/qemu-ARCH ... luajit" and LUAASIO_QEMU=1
#     (testlib's T.qemu: tests that need what qemu-user lacks skip).
# An architecture without a usable LuaJIT package gets stages 1-2 only, and
# says why. qemu is called explicitly; binfmt_misc is not used.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

arch=${1:-}
[ $# -gt 0 ] && shift
case $arch in
armhf) triplet=arm-linux-gnueabihf qemu=qemu-arm ;;
arm64) triplet=aarch64-linux-gnu qemu=qemu-aarch64 ;;
mipsel) triplet=mipsel-linux-gnu qemu=qemu-mipsel ;;
s390x) triplet=s390x-linux-gnu qemu=qemu-s390x ;;
*)
  echo "usage: test/cross.sh armhf|arm64|mipsel|s390x [filter]" >&2
  exit 2
  ;;
esac
CROSS=$triplet-
export CROSS

start=$(date +%s)
stage_start=$start
say() { echo "cross.sh[$arch]: $*"; }
stage_done() {
  now=$(date +%s)
  say "stage '$1' took $((now - stage_start))s"
  stage_start=$now
}

# 1. The library.
./build_arm.sh "$CROSS"
stage_done build

# qemu-user (no binfmt_misc needed: qemu is invoked by name).
if ! command -v "$qemu" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing qemu-user"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user >/dev/null
  else
    echo "cross.sh: $qemu missing: sudo apt-get install qemu-user" >&2
    exit 1
  fi
fi

# The guest's root for qemu -L: the cross toolchain's libc (/usr/TRIPLET/lib)
# plus an /etc/ld.so.preload naming test/cross/qemu_preload.c, built for
# ARCH, which works around two qemu-user defects that break LuaJIT itself
# (see that file). Paths the guest opens are looked up here first, so the
# host programs the tests start (sh, kill, ...) are unaffected.
qroot=$here/build/qemu-$arch
rm -rf "$qroot"
mkdir -p "$qroot/etc"
ln -s "/usr/$triplet/lib" "$qroot/lib"
"${CROSS}gcc" -shared -fPIC -O2 -o "$qroot/qemu_preload.so" test/cross/qemu_preload.c
echo /qemu_preload.so >"$qroot/etc/ld.so.preload"

# 2. The C-level check, on every architecture.
"${CROSS}gcc" -O1 -Wall -Iinclude -o "$qroot/abi_check" test/cross/abi_check.c \
  -L"build-$arch" -lluaasio
"$qemu" -L "$qroot" -E LD_LIBRARY_PATH="$here/build-$arch" "$qroot/abi_check"
stage_done abi_check

# 3. Debian's LuaJIT for ARCH. On s390x and ppc64el, 'luajit' is an empty
# package that depends on OpenResty's luajit2.
sysroot=$here/build/sysroot-$arch
pkgs="luajit libluajit-5.1-2 libluajit-5.1-common"
if ! test/debian-pkg.sh "$arch" has luajit; then
  say "Debian has no luajit package for $arch: library built and checked, test suite skipped"
  say "total $(( $(date +%s) - start ))s"
  exit 0
fi
if test/debian-pkg.sh "$arch" has luajit2; then
  case $arch in
  s390x|ppc64el) pkgs="luajit2 libluajit2-5.1-2 libluajit2-5.1-common" ;;
  esac
fi
rm -rf "$sysroot"
test/debian-pkg.sh "$arch" extract "$sysroot" $pkgs
LUAJIT="$qemu -L $qroot -E LD_LIBRARY_PATH=$sysroot/usr/lib/$triplet $sysroot/usr/bin/luajit"
stage_done "fetch luajit"

# LuaJIT must be able to run at all under this qemu.
probe='assert(7 % 3 == 1 and math.floor(2.5) == 2); io.write(jit.arch, " ", jit.version, ", JIT ", jit.status() and "on" or "off")'
if ! info=$(ulimit -c 0; $LUAJIT -e "$probe" 2>&1); then
  say "Debian's LuaJIT for $arch does not run under $($qemu --version | head -1):"
  say "  $(echo "$info" | tail -1)"
  case $arch in
  s390x) say "  (qemu lacks DIVIDE TO INTEGER, DIDBR, which LuaJIT's interpreter uses for % and math.floor)" ;;
  esac
  say "library built and checked (stage abi_check), test suite skipped"
  say "total $(( $(date +%s) - start ))s"
  exit 0
fi
say "running the test suite on $info under $qemu"

# 4. The suite. test/luajit runs $LUAJIT; tests that start child LuaJIT
# processes go through test/luajit again and inherit these variables.
LUAASIO_LIB=$here/build-$arch/libluaasio.so
LUAASIO_QEMU=1
export LUAJIT LUAASIO_LIB LUAASIO_QEMU
status=0
./test/luajit ./test/test.lua "$@" || status=$?
stage_done tests
say "total $(( $(date +%s) - start ))s"
exit $status
