#!/bin/sh
# Cross-compiles luaasio.dll with MinGW-w64 and runs the test suite on a
# Windows LuaJIT under wine, all on Linux:
#
#   test/wine.sh [filter]
#
# Stages (each timed):
#  1. build-win64/luaasio.dll via cmake/mingw-w64.cmake (x86_64-w64-mingw32
#     g++ -posix; libstdc++, libgcc and winpthread linked statically). Every
#     DLL it imports must be one of Windows' own.
#  2. A Windows LuaJIT (luajit.exe + lua51.dll + lua/jit/*.lua) built from
#     Debian's luajit source package (test/debian-pkg.sh source fetch) with
#     the same cross compiler, into build/win64-luajit (kept between runs).
#  3. A wine prefix in build/wine (WINEDEBUG=-all), then the suite through
#     test/luajit with LUAJIT="wine64 build/win64-luajit/luajit.exe".
# Tests needing a POSIX shell, /proc, Unix sockets or netns skip on Windows
# (T.windows); where wine differs from Windows, T.wine.
# Run as root on Debian, it installs the packages it needs.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

start=$(date +%s)
stage_start=$start
stage_done() {
  now=$(date +%s)
  echo "wine.sh: stage '$1' took $((now - stage_start))s"
  stage_start=$now
}

CROSS=x86_64-w64-mingw32-
packages="g++-mingw-w64-x86-64-posix wine64 cmake make gcc libboost-dev dpkg-dev"
# shellcheck disable=SC2086 # one word per package
tools/ensure-packages wine.sh $packages
stage_done packages

# 1. The DLL.
bdir=build-win64
cmake -S . -B "$bdir" -DCMAKE_TOOLCHAIN_FILE="$here/cmake/mingw-w64.cmake" \
  -DLUAASIO_CROSS="$CROSS" -DCMAKE_BUILD_TYPE=MinSizeRel -DLUAASIO_STATIC_RUNTIME=ON >/dev/null
cmake --build "$bdir" -j "$(nproc 2>/dev/null || echo 2)"
dll=$bdir/luaasio.dll
"${CROSS}strip" --strip-unneeded "$dll"
imports=$("${CROSS}objdump" -p "$dll" | sed -n 's/^[[:space:]]*DLL Name: //p' | tr '\n' ' ')
echo "wine.sh: $dll: $(wc -c <"$dll" | tr -d ' ') bytes stripped; imports: $imports"
for d in $imports; do
  case $(echo "$d" | tr 'A-Z' 'a-z') in
  kernel32.dll|msvcrt.dll|ws2_32.dll|mswsock.dll|advapi32.dll|ntdll.dll|user32.dll|bcrypt.dll|api-ms-win-*) ;;
  *) echo "wine.sh: $dll needs $d, which is not a Windows system DLL" >&2; exit 1 ;;
  esac
done
stage_done "dll"

# 2. A Windows LuaJIT from Debian's source package.
lj=$here/build/win64-luajit
if [ ! -f "$lj/luajit.exe" ]; then
  src=$here/build/luajit-src
  rm -rf "$src"
  test/debian-pkg.sh source fetch "$src" luajit
  srcdir=$(find "$src" -mindepth 1 -maxdepth 1 -type d -name 'luajit-*' | head -1)
  make -C "$srcdir" -j "$(nproc 2>/dev/null || echo 2)" HOST_CC=gcc CROSS="$CROSS" \
    TARGET_SYS=Windows >"$src/make.log" 2>&1 || {
    tail -30 "$src/make.log" >&2
    exit 1
  }
  mkdir -p "$lj/lua/jit"
  cp "$srcdir/src/luajit.exe" "$srcdir/src/lua51.dll" "$lj/"
  cp "$srcdir/src/jit/"*.lua "$lj/lua/jit/"   # the layout luajit.exe searches
fi
stage_done "luajit.exe"

# 3. wine.
wine=$(command -v wine64 || echo /usr/lib/wine/wine64)
wineserver=$(command -v wineserver || echo /usr/lib/wine/wineserver)
WINEPREFIX=$here/build/wine
WINEDEBUG=-all
WINEDLLOVERRIDES="mscoree,mshtml="   # no Mono/Gecko installer prompts
export WINEPREFIX WINEDEBUG WINEDLLOVERRIDES
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  "$wine" wineboot --init >/dev/null 2>&1 || true
fi
info=$("$wine" "$lj/luajit.exe" -e 'io.write(jit.os, " ", jit.arch, " ", jit.version)')
echo "wine.sh: running the test suite on $info under $("$wine" --version)"
stage_done "wine prefix"

LUAJIT="$wine $lj/luajit.exe"
LUAASIO_LIB=$here/$dll
export LUAJIT LUAASIO_LIB
status=0
./test/luajit ./test/test.lua "$@" || status=$?
"$wineserver" -k 2>/dev/null || true
stage_done tests
echo "wine.sh: total $(( $(date +%s) - start ))s"
exit $status
