#!/bin/sh
# Builds libluaasio and LuaJIT against musl (build_musl.sh, zig) and runs the
# test suite under qemu-user, the C library and CPUs of OpenWrt routers.
#
#   test/musl.sh TARGET [filter]     TARGET: armhf, arm64, mipsel or mips
#
# Stages (each timed):
#  1. ./build_musl.sh TARGET: the library a router gets (mipsel and mips:
#     mips32r2 soft float, like OpenWrt's mipsel_24kc and mips_24kc).
#  2. test/cross/abi_check.c linked statically with the library's objects
#     and musl, run under qemu: the ABI and the sockaddr decoder on this
#     byte order. Needs no C library on the host, so it runs for mips
#     (big-endian) too.
#  3. LuaJIT from Debian's source package (test/debian-pkg.sh source fetch;
#     LUAJIT_PACKAGE=luajit2 for OpenResty's fork), cross-built with the zig
#     musl compiler and a host compiler of the same pointer width for its
#     build tools (gcc -m32 for 32-bit targets, package gcc-12-multilib). It is
#     linked dynamically: ffi.load needs musl's dynamic loader (a static musl
#     program cannot dlopen). test/cross/qemu_preload.c is linked into it,
#     since musl has no /etc/ld.so.preload. Errors unwind LuaJIT's own way
#     (LUAJIT_NO_UNWIND): zig links no libgcc unwinder into C programs.
#  4. musl's loader and libc.so from Debian's musl package for TARGET
#     (test/debian-pkg.sh extract) as qemu's -L root, then the whole suite
#     with LUAASIO_QEMU=1 (tests needing what qemu-user lacks skip and say why).
# Debian's musl for mipsel is hard float, so the suite runs there on a hard
# float build of LuaJIT and of the library (build_musl.sh mipsel-hf); the
# soft float library of stage 1 gets stage 2. Debian has no big-endian mips
# port, hence no musl loader for mips: stages 1-2 only, and it says so.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

target=${1:-}
[ $# -gt 0 ] && shift
case $target in
armhf) qemu=qemu-arm debarch=armhf hostcc="gcc -m32" ;;
arm64) qemu=qemu-aarch64 debarch=arm64 hostcc=gcc ;;
mipsel) qemu=qemu-mipsel debarch=mipsel hostcc="gcc -m32" ;;
mips) qemu=qemu-mips debarch="" hostcc="gcc -m32" ;;
*)
  echo "usage: test/musl.sh armhf|arm64|mipsel|mips [filter]" >&2
  exit 2
  ;;
esac
flavor=${LUAJIT_PACKAGE:-luajit}
# gcc -m32, without the gcc-multilib metapackage (it would remove Debian's
# cross compilers).
case $hostcc in
*-m32)
  tools/ensure-packages musl.sh gcc-12-multilib libc6-dev-i386
  # <linux/errno.h> wants <asm/errno.h>, which the metapackage links into
  # /usr/include; the kernel's x86_64 headers serve for the build tools.
  if ! echo '#include <linux/errno.h>' | gcc -m32 -E - >/dev/null 2>&1; then
    mkdir -p "$here/build/m32-include"
    ln -sfn /usr/include/x86_64-linux-gnu/asm "$here/build/m32-include/asm"
    hostcc="$hostcc -isystem $here/build/m32-include"
  fi
  ;;
esac

start=$(date +%s)
stage_start=$start
say() { echo "musl.sh[$target]: $*"; }
stage_done() {
  now=$(date +%s)
  say "stage '$1' took $((now - stage_start))s"
  stage_start=$now
}

# 1. The library as shipped.
./build_musl.sh "$target"
stage_done build

# musl's loader from Debian, the root qemu looks in first.
qroot=$here/build/musl-root-$target
mroot=$qroot/root
mkdir -p "$qroot"
if [ -n "$debarch" ] && [ ! -d "$mroot/lib" ]; then
  test/debian-pkg.sh "$debarch" extract "$mroot" musl
fi

# 2. The C-level check. ARM: against libluaasio.so, as a program would use
# it. MIPS: linked statically with the library's objects, since there is no
# soft float musl loader to run it with (and lld cannot link Thumb-2 objects
# into a static ARM program correctly, so ARM does not use this way).
case $target in
arm*)
  "build-tools/bin/musl-$target-gcc" -O1 -Iinclude -o "$qroot/abi_check" test/cross/abi_check.c \
    -L"build-musl-$target" -lluaasio 2>"$qroot/abi_check.log" || { cat "$qroot/abi_check.log" >&2; exit 1; }
  "$qemu" -L "$mroot" -E LD_LIBRARY_PATH="$here/build-musl-$target" "$qroot/abi_check"
  ;;
*)
  "build-tools/bin/musl-$target-g++" -static -O1 -Iinclude -o "$qroot/abi_check" \
    -x c test/cross/abi_check.c -x none "build-musl-$target"/CMakeFiles/luaasio.dir/src/*.o \
    2>"$qroot/abi_check.log" || { cat "$qroot/abi_check.log" >&2; exit 1; }
  "$qemu" "$qroot/abi_check"
  ;;
esac
stage_done abi_check

if [ -z "$debarch" ]; then
  say "Debian has no $target port, so no musl loader to run LuaJIT with:"
  say "library built and checked (stage abi_check), test suite skipped"
  say "total $(( $(date +%s) - start ))s"
  exit 0
fi

# The suite's build: hard float on mipsel (see above).
suite=$target
if [ "$target" = mipsel ]; then
  suite=mipsel-hf
  ./build_musl.sh mipsel-hf
fi
MUSL_TOOLS_ONLY=1 ./build_musl.sh "$suite"
stage_done "build for the suite"

# 3. LuaJIT for musl, kept between runs (build/musl-luajit-SUITE-FLAVOR).
lj=$here/build/musl-$flavor-$suite
if [ ! -x "$lj/luajit" ]; then
  srcroot=$here/build/musl-src/$flavor
  if [ ! -d "$srcroot" ]; then
    test/debian-pkg.sh source fetch "$srcroot" "$flavor"
  fi
  srcdir=$(find "$srcroot" -mindepth 1 -maxdepth 1 -type d -name "$flavor-*" | head -1)
  work=$here/build/musl-build-$flavor-$suite
  rm -rf "$work"
  cp -a "$srcdir" "$work"
  preload=$work/qemu_preload.o
  "build-tools/bin/musl-$suite-gcc" -c -O2 -fPIC -o "$preload" test/cross/qemu_preload.c
  tcflags="" unwind=-DLUAJIT_NO_UNWIND tld="$here/build-tools/bin/musl-$suite-gcc"
  case $target in
  arm64)
    # lj_vm's unwind tables name LuaJIT's DWARF personality, which
    # LUAJIT_NO_UNWIND removes: keep external unwinding and link with the
    # C++ driver, which brings libunwind.
    unwind="" tld="$here/build-tools/bin/musl-$suite-g++"
    ;;
  armhf)
    "build-tools/bin/musl-$suite-gcc" -c -O2 -o "$work/libgcc_compat.o" test/cross/libgcc_compat.c
    preload="$preload $work/libgcc_compat.o"
    ;;
  mips*)
    # lj_arch.h wants GCC >= 4.3 on MIPS and reads clang's __GNUC__ (4.2).
    # lj_mcode.c calls __clear_cache (compiler-rt has it) undeclared.
    tcflags="-fgnuc-version=5.0 -Wno-error=implicit-function-declaration"
    ;;
  esac
  # BUILDMODE=static: the executable holds the VM and exports lua_* (-Wl,-E).
  make -C "$work/src" -j 2 BUILDMODE=static HOST_CC="$hostcc" \
    CROSS="$here/build-tools/bin/musl-$suite-" CC=gcc TARGET_SYS=Linux \
    TARGET_LIBS="$preload" TARGET_CFLAGS="$tcflags" TARGET_LD="$tld" XCFLAGS="$unwind" luajit >"$work.log" 2>&1 || {
    tail -30 "$work.log" >&2
    say "building $flavor for musl failed (log: $work.log)"
    exit 1
  }
  mkdir -p "$lj/jit"
  cp "$work/src/luajit" "$lj/luajit"
  cp "$work/src/jit/"*.lua "$lj/jit/"
fi
stage_done "luajit ($flavor)"

# 4. The suite on it.
LUAJIT="$qemu -L $mroot $lj/luajit"
# jit/*.lua (jit.v, jit.dump, ...) next to the executable; test/luajit
# prepends the project's folders.
LUA_PATH="$lj/?.lua;;"
export LUA_PATH
probe='assert(7 % 3 == 1 and math.floor(2.5) == 2); io.write(jit.arch, " ", jit.version, ", JIT ", jit.status() and "on" or "off")'
if ! info=$(ulimit -c 0; $LUAJIT -e "$probe" 2>&1); then
  say "LuaJIT for musl does not run under $($qemu --version | head -1):"
  say "  $(echo "$info" | tail -1)"
  exit 1
fi
stage_done "musl loader"
say "running the test suite on $info ($flavor, musl) under $qemu"

LUAASIO_LIB=$here/build-musl-$suite/libluaasio.so
LUAASIO_QEMU=1
export LUAJIT LUAASIO_LIB LUAASIO_QEMU
status=0
./test/luajit ./test/test.lua "$@" || status=$?
stage_done tests
say "total $(( $(date +%s) - start ))s"
exit $status
