#!/bin/sh
# Memory of examples/proxy_server.lua idling with 1,000 relayed connections
# on armhf under qemu-arm (each connection: the client's socket, the
# upstream socket and a light thread in asio.relay; an idle relay holds no
# splice pipe):
#
#   test/rss.sh [N]        N connections, default 1000
#
# The proxy runs on the musl LuaJIT and library test/musl.sh armhf built
# (run that first); the load (test/cross/rss_load.lua) runs natively with
# build/libluaasio.so. Printed: VmRSS of the qemu-arm process (the emulated
# program plus qemu's own, a few MB of which are qemu's) listening, and with
# N connections, and the difference per connection. The other half of the
# pair, proxy_client.lua, needs an iptables REDIRECT (get_original_dst) and
# relays the same way, so its figure is about the same.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
n=${1:-1000}
lj=$here/build/musl-luajit-armhf/luajit
root=$here/build/musl-root-armhf/root
lib=$here/build-musl-armhf/libluaasio.so
for f in "$lj" "$lib" "$root/lib"; do
  [ -e "$f" ] || { echo "rss.sh: $f missing: run test/musl.sh armhf first" >&2; exit 1; }
done
[ -f build/libluaasio.so ] || ./build.sh
need=$((2 * n + 100))
[ "$(ulimit -n)" -ge "$need" ] || ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge "$need" ] || { echo "rss.sh: needs $need file descriptors, have $(ulimit -n)" >&2; exit 1; }

work=$here/build/rss
mkdir -p "$work"
# A free port: bind to 0 natively, read it, close.
port=$(LUA_PATH="$here/lua/?.lua;;" LUAASIO_LIB=$here/build/libluaasio.so luajit -e "
  local asio = require 'asio'
  local s = assert(asio.server('127.0.0.1', 0, function() end))
  io.write(s:port()) s:close()")
LUAASIO_LIB=$lib LUA_PATH="$here/lua/?.lua;;" \
  qemu-arm -L "$root" "$lj" examples/proxy_server.lua 127.0.0.1 "$port" >"$work/proxy.log" 2>&1 &
proxy=$!
load=""
cleanup() {
  [ -z "$load" ] || kill "$load" 2>/dev/null || true
  kill "$proxy" 2>/dev/null || true
}
trap cleanup EXIT
rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$proxy/status"; }
for _ in $(seq 1 200); do
  grep -q 'listening' "$work/proxy.log" 2>/dev/null && break
  sleep 0.1
done
grep -q 'listening' "$work/proxy.log" || { cat "$work/proxy.log" >&2; echo "rss.sh: the proxy did not start" >&2; exit 1; }
sleep 1
idle=$(rss)

LUA_PATH="$here/lua/?.lua;;" LUAASIO_LIB=$here/build/libluaasio.so \
  luajit test/cross/rss_load.lua "$port" "$n" 30 >"$work/load.out" 2>&1 &
load=$!
for _ in $(seq 1 1200); do
  [ -s "$work/load.out" ] && break
  sleep 0.1
done
state=$(cat "$work/load.out")
case $state in
"ready $n") ;;
*) echo "rss.sh: load: $state" >&2; exit 1 ;;
esac
sleep 2
busy=$(rss)
fds=$(ls "/proc/$proxy/fd" | wc -l)
echo "rss.sh: proxy_server.lua on armhf (musl, qemu-arm): VmRSS ${idle} KB listening, ${busy} KB with $n relayed connections idle; $(( (busy - idle) * 1024 / n )) bytes per connection; $fds descriptors open"
