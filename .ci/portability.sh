#!/bin/sh
# CI: portability checks on a fresh Debian 12 machine, as root.
#  - cross builds (build_arm.sh) for armhf, arm64, mipsel and s390x, each
#    checked under qemu-user (test/cross.sh): the C-level ABI/sockaddr check
#    everywhere, the whole test suite on Debian's LuaJIT where it runs under
#    qemu (armhf, arm64, mipsel; s390x, the big-endian one, gets the C check);
#    the stripped armhf library must stay within 300 KB;
#  - luaasio.dll cross-compiled with MinGW-w64 and the suite run under wine on
#    a LuaJIT built from Debian's source package (test/wine.sh);
#  - `luarocks make` into a private tree and `cmake --install`
#    (test/luarocks.sh);
#  - musl (OpenWrt's C library) builds with zig from npm (build_musl.sh),
#    each with a LuaJIT built for musl and the whole suite under qemu
#    (test/musl.sh): armhf on Debian's LuaJIT, arm64 on OpenResty's
#    luajit2, soft-float mipsel and big-endian soft-float mips (OpenWrt's
#    mipsel_24kc and mips_24kc) on Debian's LuaJIT, and soft-float mipsel on
#    2.1.0-beta3, the LuaJIT of OpenWrt's luajit package, with its JIT off
#    (docs/OPENWRT.md says why), and armhf on beta3 with the JIT;
#  - the OpenWrt package Makefile: lint, install recipes into a fake root,
#    the suite from that root (test/openwrt.sh);
#  - LuaJIT 2.1.0-beta3 and OpenResty's luajit2 on the host (test/beta3.sh);
#  - size budgets of the stripped libraries (glibc and musl) and the RSS of
#    the proxy with 1,000 connections on armhf (test/rss.sh).
# Every stage runs even if an earlier one failed; the time of each is
# printed and the script fails if any stage did.
set -u
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

start=$(date +%s)
failed=""
summary=""
run_stage() {
  name=$1
  shift
  echo "== portability: $name"
  t0=$(date +%s)
  if "$@"; then result=ok; else result=FAILED; failed="$failed $name"; fi
  t=$(( $(date +%s) - t0 ))
  echo "== portability: $name: $result in ${t}s"
  summary="$summary$(printf '%-28s %-7s %4ss' "$name" "$result" "$t")
"
}

# One apt transaction for everything the stages need (each script would
# otherwise install its own part).
# npm (zig for the musl builds) only where no Node.js is installed: a
# Node.js from elsewhere (NodeSource's) conflicts with Debian's npm.
install_packages() {
  npm=""
  command -v npm >/dev/null 2>&1 || npm=npm
  apt-get update -qq &&
    apt-get install -y -qq --no-install-recommends \
      cmake make g++ gcc libboost-dev luajit libluajit-5.1-dev luarocks dpkg-dev \
      qemu-user g++-arm-linux-gnueabihf g++-aarch64-linux-gnu g++-mipsel-linux-gnu \
      g++-s390x-linux-gnu g++-mingw-w64-x86-64-posix wine64 \
      gcc-12-multilib libc6-dev-i386 $npm >/dev/null
}
if [ "$(id -u)" = 0 ]; then
  run_stage "install packages" install_packages
fi

run_stage "armhf (qemu-arm)" env MAX_SIZE=307200 test/cross.sh armhf
run_stage "mipsel (qemu-mipsel)" env MAX_SIZE=358400 test/cross.sh mipsel
run_stage "arm64 (qemu-aarch64)" test/cross.sh arm64
run_stage "s390x (qemu-s390x)" test/cross.sh s390x
run_stage "windows (mingw + wine)" test/wine.sh
run_stage "luarocks + cmake install" test/luarocks.sh
run_stage "musl armhf (luajit)" test/musl.sh armhf
run_stage "musl arm64 (luajit2)" env LUAJIT_PACKAGE=luajit2 test/musl.sh arm64
run_stage "musl mipsel sf (luajit)" test/musl.sh mipsel
run_stage "musl mips BE sf (luajit)" test/musl.sh mips
run_stage "musl mipsel sf (beta3 -joff)" env LUAJIT_PACKAGE=beta3 LUAJIT_ARGS=-joff test/musl.sh mipsel
run_stage "musl armhf (beta3)" env LUAJIT_PACKAGE=beta3 test/musl.sh armhf
run_stage "openwrt package" test/openwrt.sh
run_stage "beta3 + luajit2 (host)" test/beta3.sh
run_stage "proxy RSS, armhf musl" test/rss.sh 1000

# Size budgets (stripped): 300 KB (armhf) and 350 KB (mipsel) on the GCC +
# libstdc++ builds, which an OpenWrt SDK build resembles, and zig's musl
# builds.
budget_failed=""
budget() {
  f=$1 max_kb=$2
  if [ ! -f "$f" ]; then
    printf 'budget %-34s missing\n' "$f"
    budget_failed="$budget_failed $f"
    return
  fi
  size=$(wc -c <"$f" | tr -d ' ')
  if [ "$size" -le $((max_kb * 1024)) ]; then r=ok; else r=OVER; budget_failed="$budget_failed $f"; fi
  printf 'budget %-34s %7s bytes (%3s KB) <= %s KB  %s\n' "$f" "$size" $(( (size + 1023) / 1024 )) "$max_kb" "$r"
}
budgets() {
  budget_failed=""
  budget build-armhf/libluaasio.so 300
  budget build-mipsel/libluaasio.so 350
  budget build-musl-armhf/libluaasio.so 300
  # zig's builds carry LLVM's libc++, libc++abi, libunwind and compiler-rt
  # (about 150 KB on MIPS, docs/OPENWRT.md); a ceiling, not the target.
  budget build-musl-mipsel/libluaasio.so 470
  budget build-musl-mips/libluaasio.so 470
  [ -z "$budget_failed" ]
}
run_stage "size budgets" budgets

echo "== portability: summary"
printf '%s' "$summary"
for a in armhf arm64 mipsel s390x musl-armhf musl-mipsel musl-mips; do
  [ -f "build-$a/libluaasio.so" ] &&
    printf 'libluaasio.so %-8s %7s bytes stripped\n' "$a" "$(wc -c <"build-$a/libluaasio.so" | tr -d ' ')"
done
[ -f build-win64/luaasio.dll ] &&
  printf 'luaasio.dll   win64    %7s bytes stripped\n' "$(wc -c <build-win64/luaasio.dll | tr -d ' ')"
echo "total $(( $(date +%s) - start ))s"
if [ -n "$failed" ]; then
  echo "portability: failed:$failed" >&2
  exit 1
fi
