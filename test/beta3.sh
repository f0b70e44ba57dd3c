#!/bin/sh
# LuaAsio must run on OpenWrt's LuaJIT, 2.1.0-beta3 of 2017, older than any
# LuaJIT Debian ships. Without that version at hand, two runs of the suite
# on the host (x86_64) approximate it:
#
#   test/beta3.sh [filter]
#
#  1. Debian's LuaJIT with what came after beta3 hidden (test/cross/beta3.lua,
#     loaded with -l before the suite: string.buffer, jit.prngstate, the
#     OpenResty table.* and thread.* extensions raise errors naming them).
#  2. OpenResty's fork, Debian's luajit2 package (the other LuaJIT OpenWrt
#     packages), unpacked into build/luajit2-HOSTARCH (test/debian-pkg.sh;
#     nothing is installed).
# Run ./build.sh first.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
start=$(date +%s)
status=0

echo "beta3.sh: the suite with post-beta3 features hidden"
LUA_PATH="$here/test/cross/?.lua;;" LUAJIT="${LUAJIT:-luajit} -lbeta3" \
  ./test/luajit ./test/test.lua "$@" || status=1
# The mask must bite: a use of string.buffer fails under it.
if LUA_PATH="$here/test/cross/?.lua;;" ${LUAJIT:-luajit} -lbeta3 -e "require 'string.buffer'" 2>/dev/null; then
  echo "beta3.sh: string.buffer is still reachable with beta3.lua loaded" >&2
  status=1
fi
echo "beta3.sh: masked run done in $(( $(date +%s) - start ))s"

arch=$(dpkg --print-architecture)
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
