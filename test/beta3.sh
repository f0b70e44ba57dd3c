#!/bin/sh
# The suite on the two LuaJITs OpenWrt packages, both older or other than
# Debian's, on the host (x86_64):
#
#   test/beta3.sh [filter]
#
#  1. LuaJIT 2.1.0-beta3 of 2017, OpenWrt's `luajit` package: built from
#     source (test/beta3-src.sh fetches it) into build/luajit-beta3-HOSTARCH.
#     It lacks string.buffer, jit.prngstate and everything OpenResty adds.
#  2. OpenResty's fork, Debian's luajit2 package (OpenWrt's `luajit2`),
#     unpacked into build/luajit2-HOSTARCH (test/debian-pkg.sh; nothing is
#     installed).
# test/musl.sh runs the suite on beta3 built for musl as well
# (LUAJIT_PACKAGE=beta3). Run ./build.sh first.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
start=$(date +%s)
status=0
arch=$(dpkg --print-architecture)

# 1. beta3, built once and kept.
b3=$here/build/luajit-beta3-$arch
if [ ! -x "$b3/luajit" ]; then
  src=$here/build/beta3-src
  [ -d "$src/beta3-2.1.0" ] || test/beta3-src.sh "$src"
  work=$here/build/beta3-build-$arch
  rm -rf "$work"
  cp -a "$src/beta3-2.1.0" "$work"
  # BUILDMODE=static: one executable exporting lua_* (LuaJIT's Makefile
  # links it with -Wl,-E), as the threads tests need.
  make -C "$work/src" -j 2 BUILDMODE=static CC=gcc luajit >"$work.log" 2>&1 || {
    tail -30 "$work.log" >&2
    echo "beta3.sh: building LuaJIT 2.1.0-beta3 failed (log: $work.log)" >&2
    exit 1
  }
  mkdir -p "$b3/jit"
  cp "$work/src/luajit" "$b3/luajit"
  cp "$work/src/jit/"*.lua "$b3/jit/"
fi
info=$(LUA_PATH="$b3/?.lua;;" "$b3/luajit" -e '
  local ok = pcall(require, "string.buffer")
  io.write(jit.version, ", string.buffer ", ok and "present" or "absent")')
case $info in
"LuaJIT 2.1.0-beta3, string.buffer absent") ;;
*) echo "beta3.sh: $b3/luajit is not plain 2.1.0-beta3: $info" >&2; exit 1 ;;
esac
echo "beta3.sh: the suite on $info"
LUA_PATH="$b3/?.lua;;" LUAJIT=$b3/luajit ./test/luajit ./test/test.lua "$@" || status=1
echo "beta3.sh: beta3 done in $(( $(date +%s) - start ))s"

# 2. luajit2.
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
root=$here/build/luajit2-$arch
if [ ! -x "$root/usr/bin/luajit" ]; then
  rm -rf "$root"
  test/debian-pkg.sh "$arch" extract "$root" luajit2 libluajit2-5.1-2 libluajit2-5.1-common >/dev/null
fi
LUAJIT="env LD_LIBRARY_PATH=$root/usr/lib/$triplet $root/usr/bin/luajit"
echo "beta3.sh: the suite on $($LUAJIT -v 2>&1 | head -1) (Debian luajit2 $(test/debian-pkg.sh "$arch" version luajit2))"
LUAJIT=$LUAJIT ./test/luajit ./test/test.lua "$@" || status=1
echo "beta3.sh: total $(( $(date +%s) - start ))s"
exit $status
