#!/bin/sh
# Fetches the source of LuaJIT 2.1.0-beta3 (November 2017), the LuaJIT that
# OpenWrt's `luajit` package ships, and unpacks it as DIR/beta3-2.1.0:
#
#   test/beta3-src.sh DIR
#
# Upstream's tag is not reachable from the machines the tests run on (only
# Debian's archive and the npm registry are), and no Debian release still in
# the archive has beta3 itself. The npm package node-luajit 3.0.0 vendors a
# LuaJIT tree (3rdlibs/LuaJIT) that is beta3: luajit.h says
# "LuaJIT 2.1.0-beta3", every file's notice reads "2005-2017" (upstream
# moved them all to 2018 in January 2018), and nothing added later
# (lj_prng.c, lib_buffer.c, string.buffer) is there. The tarball is pinned
# by its sha256; only its LuaJIT folder is used, nothing is installed.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:?usage: test/beta3-src.sh DIR}

pkg=node-luajit@3.0.0
tgz=node-luajit-3.0.0.tgz
sum=d32a6f93b38df5e07cc3440c970495ff5d6d92d4985253fe7fcf7121f9555f4e

cache=$here/build-tools/npm-pack
mkdir -p "$cache"
if [ ! -f "$cache/$tgz" ]; then
  command -v npm >/dev/null 2>&1 || { echo "beta3-src.sh: npm is needed (apt-get install npm)" >&2; exit 1; }
  echo "beta3-src.sh: npm pack $pkg"
  (cd "$cache" && npm pack --silent "$pkg" >/dev/null)
fi
got=$(sha256sum "$cache/$tgz" | cut -d' ' -f1)
if [ "$got" != "$sum" ]; then
  echo "beta3-src.sh: $tgz has sha256 $got, expected $sum" >&2
  rm -f "$cache/$tgz"
  exit 1
fi

out=$dest/beta3-2.1.0
rm -rf "$out" "$dest/.beta3-unpack"
mkdir -p "$dest/.beta3-unpack"
tar -xzf "$cache/$tgz" -C "$dest/.beta3-unpack" package/3rdlibs/LuaJIT
mv "$dest/.beta3-unpack/package/3rdlibs/LuaJIT" "$out"
rm -rf "$dest/.beta3-unpack"
grep -q '#define LUAJIT_VERSION[[:space:]]*"LuaJIT 2.1.0-beta3"' "$out/src/luajit.h" || {
  echo "beta3-src.sh: $out/src/luajit.h is not 2.1.0-beta3" >&2
  exit 1
}
if [ -e "$out/src/lj_prng.c" ] || [ -e "$out/src/lib_buffer.c" ]; then
  echo "beta3-src.sh: $out has files from after beta3" >&2
  exit 1
fi
echo "beta3-src.sh: LuaJIT 2.1.0-beta3 in $out"
