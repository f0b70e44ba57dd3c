#!/bin/sh
# Checks openwrt/Makefile without an OpenWrt SDK:
#
#   test/openwrt.sh [filter]
#
#  1. lint: the variables and definitions the packages feed's review and
#     CI expect (PKG_NAME, PKG_VERSION, PKG_RELEASE, PKG_LICENSE as SPDX,
#     PKG_LICENSE_FILES present in the tree, PKG_MAINTAINER "Name <mail>",
#     no PKG_SOURCE_URL without PKG_SOURCE and PKG_HASH, no PKG_MD5SUM,
#     TITLE/SECTION/CATEGORY for every package built, luajit dependency
#     guarded by @HAS_LUAJIT_ARCH). A broken copy must fail the lint, so the
#     lint is itself checked.
#  2. install: GNU make reads openwrt/Makefile with stub rules.mk,
#     package.mk and cmake.mk (test/openwrt/stub) defining the few OpenWrt
#     macros it uses; the Package/*/install recipes run against a fake $(1)
#     under build/openwrt/root, from PKG_BUILD_DIR = this checkout and
#     PKG_INSTALL_DIR holding build/libluaasio.so as usr/lib/.
#  3. lookup: a LuaJIT with only the staging root on package.path and
#     package.cpath, as OpenWrt's LuaJIT sets them (/usr/share/lua/?.lua,
#     /usr/lib/lua/?.so), and no LUAASIO_LIB, loads asio and must map the
#     staged usr/lib/lua/libluaasio.so; again with package.cpath lacking
#     /usr/lib/lua (asio/lib.lua derives it from asio.lua's folder).
#  4. the whole suite with the modules and library from the staging root.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

start=$(date +%s)
stage_start=$start
say() { echo "openwrt.sh: $*"; }
stage_done() {
  now=$(date +%s)
  say "stage '$1' took $((now - stage_start))s"
  stage_start=$now
}

work=$here/build/openwrt
rm -rf "$work"
mkdir -p "$work"
stub=$here/test/openwrt/stub
mk() { mf=$1; shift; make --no-print-directory -s -f "$mf" TOPDIR="$stub" INCLUDE_DIR="$stub" "$@"; }
value() { make --no-print-directory -s -f "$1" TOPDIR="$stub" INCLUDE_DIR="$stub" "print-$2"; }

# 1. Lint.
spdx="MIT Apache-2.0 BSD-2-Clause BSD-3-Clause GPL-2.0-only GPL-2.0-or-later GPL-3.0-only GPL-3.0-or-later LGPL-2.1-only LGPL-2.1-or-later ISC Zlib"
lint() {
  mf=$1 problems=0
  bad() { echo "openwrt lint: $mf: $*"; problems=$((problems + 1)); }
  for v in PKG_NAME PKG_VERSION PKG_RELEASE PKG_LICENSE PKG_LICENSE_FILES PKG_MAINTAINER PKG_BUILD_DEPENDS; do
    [ -n "$(value "$mf" $v)" ] || bad "$v is not set"
  done
  case $(value "$mf" PKG_RELEASE) in ''|*[!0-9]*) bad "PKG_RELEASE must be a number" ;; esac
  for l in $(value "$mf" PKG_LICENSE); do
    case " $spdx " in *" $l "*) ;; *) bad "PKG_LICENSE '$l' is not an SPDX identifier we know" ;; esac
  done
  for f in $(value "$mf" PKG_LICENSE_FILES); do
    [ -f "$here/$f" ] || bad "PKG_LICENSE_FILES names $f, which the source lacks"
  done
  echo "$(value "$mf" PKG_MAINTAINER)" | grep -Eq '^[^<>]+ <[^<>@ ]+@[^<>@ ]+>$' ||
    bad "PKG_MAINTAINER must read 'Name <mail>'"
  [ -z "$(value "$mf" PKG_MD5SUM)" ] || bad "PKG_MD5SUM is obsolete: PKG_HASH"
  if [ -n "$(value "$mf" PKG_SOURCE_URL)" ]; then
    [ -n "$(value "$mf" PKG_SOURCE)$(value "$mf" PKG_SOURCE_PROTO)" ] || bad "PKG_SOURCE_URL without PKG_SOURCE"
    [ -n "$(value "$mf" PKG_HASH)$(value "$mf" PKG_MIRROR_HASH)" ] || bad "PKG_SOURCE_URL without PKG_HASH"
  fi
  case $(value "$mf" PKG_BUILD_DEPENDS) in *boost*) ;; *) bad "PKG_BUILD_DEPENDS lacks boost" ;; esac
  grep -q '^include $(INCLUDE_DIR)/package.mk' "$mf" || bad "does not include package.mk"
  grep -q '^include $(INCLUDE_DIR)/cmake.mk' "$mf" || bad "does not include cmake.mk"
  pkgs=$(value "$mf" BUILT_PACKAGES)
  [ -n "$pkgs" ] || bad "no BuildPackage"
  for p in $pkgs; do
    for v in TITLE SECTION CATEGORY; do
      [ -n "$(value "$mf" "pkg-$p-$v")" ] || bad "Package/$p has no $v"
    done
    [ -n "$(value "$mf" "has-install-$p")" ] || bad "Package/$p has no install"
  done
  case " $(value "$mf" pkg-luaasio-DEPENDS) " in
  *" @HAS_LUAJIT_ARCH "*) ;;
  *) bad "luaasio must depend on @HAS_LUAJIT_ARCH" ;;
  esac
  case " $(value "$mf" pkg-luaasio-DEPENDS) " in
  *" +luajit "*|*" +luajit2 "*) ;;
  *) bad "luaasio must depend on +luajit or +luajit2" ;;
  esac
  [ "$(value "$mf" pkg-luaasio-SUBMENU)" = Lua ] || bad "SUBMENU is not Lua"
  [ "$problems" = 0 ]
}
lint openwrt/Makefile
# The lint must be able to fail: a copy without PKG_LICENSE and with a
# made-up license file.
sed -e '/^PKG_LICENSE:=/d' -e 's/^PKG_LICENSE_FILES:=.*/PKG_LICENSE_FILES:=COPYING.missing/' \
  openwrt/Makefile >"$work/Makefile.broken"
if lint "$work/Makefile.broken" >"$work/lint-broken.log"; then
  say "the lint accepted a Makefile without PKG_LICENSE"
  exit 1
fi
grep -q 'PKG_LICENSE is not set' "$work/lint-broken.log" &&
  grep -q 'COPYING.missing' "$work/lint-broken.log" || {
  cat "$work/lint-broken.log"
  say "the lint missed a problem of the broken copy"
  exit 1
}
say "lint ok: $(value openwrt/Makefile BUILT_PACKAGES)"
stage_done lint

# 2. The install recipes, into a fake root.
[ -f build/libluaasio.so ] || ./build.sh
pkgdest=$work/install
mkdir -p "$pkgdest/usr/lib"
cp build/libluaasio.so "$pkgdest/usr/lib/"
root=$work/root
mkdir -p "$root"
mk openwrt/Makefile PKG_BUILD_DIR="$here" PKG_INSTALL_DIR="$pkgdest" DEST="$root" install-luaasio
(cd "$root" && find . -type f | sort) >"$work/files"
sed 's/^/openwrt.sh:   /' "$work/files"
for f in ./usr/lib/lua/libluaasio.so ./usr/share/lua/asio.lua ./usr/share/lua/asio/lib.lua \
  ./usr/share/lua/asio/sched.lua; do
  grep -qx "$f" "$work/files" || { say "the install lacks $f"; exit 1; }
done
for f in lua/asio/*.lua lua/ngx/*.lua; do
  [ -f "$f" ] || continue
  cmp -s "$f" "$root/usr/share/lua/${f#lua/}" || { say "$f is not installed as /usr/share/lua/${f#lua/}"; exit 1; }
done
[ -x "$root/usr/lib/lua/libluaasio.so" ] || { say "libluaasio.so is not executable"; exit 1; }
if [ -f build/libluaasio_tls.so ]; then
  # A TLS package installs the TLS library alone (asio/tls.lua is in the base
  # package); then it is installed over the base, as opkg would.
  cp build/libluaasio_tls.so "$pkgdest/usr/lib/"
  for v in mbedtls openssl; do
    troot=$work/root-tls-$v
    mk openwrt/Makefile PKG_BUILD_DIR="$here" PKG_INSTALL_DIR="$pkgdest" DEST="$troot" install-luaasio-tls-$v
    [ "$(cd "$troot" && find . -type f | sort | tr '\n' ' ')" = "./usr/lib/lua/libluaasio_tls.so " ] ||
      { say "luaasio-tls-$v installs other files than usr/lib/lua/libluaasio_tls.so"; exit 1; }
  done
  cp -a "$work/root-tls-mbedtls/." "$root/"
  say "luaasio-tls-mbedtls and -openssl install usr/lib/lua/libluaasio_tls.so"
else
  say "build/libluaasio_tls.so was not built (no TLS library found): TLS packages not checked"
  exit 1
fi
stage_done install

# 3. Finding the library the way a router does.
lj=${LUAJIT:-luajit}
# Prints the path of PROBE_LIB.so as mapped into a LuaJIT that required
# asio (and, for the TLS library, called asio.tls_available(), which loads
# it).
probe='
local name = os.getenv("PROBE_LIB")
local ok, asio = pcall(require, "asio")
if not ok then io.write("require failed: ", tostring(asio)) os.exit(1) end
if name == "libluaasio_tls" then
  local ok, why = asio.tls_available()
  if not ok then io.write("tls not available: ", tostring(why)) os.exit(1) end
end
for line in io.lines("/proc/self/maps") do
  local p = line:match("(/%S*" .. name .. "%.so)$")
  if p then io.write(p) os.exit(0) end
end
io.write(name, ".so is not mapped") os.exit(1)'
lookup() {
  name=$1 cpath=$2
  got=$(cd "$work" && env -u LUAASIO_LIB PROBE_LIB="$name" \
    LUA_PATH="./?.lua;$root/usr/share/lua/?.lua;$root/usr/share/lua/?/init.lua" \
    LUA_CPATH="$cpath" $lj -e "$probe") || { say "$name with cpath $cpath: $got"; exit 1; }
  [ "$got" = "$root/usr/lib/lua/$name.so" ] || { say "$name with cpath $cpath loaded $got"; exit 1; }
  say "$name, cpath $cpath -> $got"
}
lookup libluaasio "./?.so;$root/usr/lib/lua/?.so"
lookup libluaasio "./?.so"
# The TLS library of a luaasio-tls-* package, installed over the base.
lookup libluaasio_tls "./?.so;$root/usr/lib/lua/?.so"
stage_done lookup

# 4. The suite from the staging root: a LuaJIT command that puts the staged
# modules first and drops the LUAASIO_LIB test/luajit sets by default.
cat >"$work/luajit" <<EOW
#!/bin/sh
# A test that sets LUAASIO_LIB itself (e.g. to a missing file, to see the
# error) runs with the checkout's paths as test/luajit set them: in the
# staging root the library would be found anyway.
if [ "\${LUAASIO_LIB:-}" != "$here/build/libluaasio.so" ]; then unset LUA_CPATH; exec $lj "\$@"; fi
unset LUAASIO_LIB
LUA_PATH="$root/usr/share/lua/?.lua;$root/usr/share/lua/?/init.lua;$here/test/lib/?.lua;;"
LUA_CPATH="./?.so;$root/usr/lib/lua/?.so;;"
export LUA_PATH LUA_CPATH
exec $lj "\$@"
EOW
chmod +x "$work/luajit"
status=0
LUAJIT=$work/luajit ./test/luajit ./test/test.lua "$@" || status=$?
stage_done tests
say "total $(( $(date +%s) - start ))s"
exit $status
