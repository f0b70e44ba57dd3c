#!/bin/sh
# Redis SET/GET through existing client libraries on LuaAsio, against
# redis-benchmark (the native ceiling: same client count, no pipelining) and
# redis-lua on plain LuaSocket. For each, the requests per second and the
# redis-server CPU time per request (from /proc/<pid>/stat), over ROUNDS
# rounds. Usage: bench/redis.sh [CLIENTS] [REQUESTS] [ROUNDS]
set -eu
cd "$(dirname "$0")/.."
clients=${1:-50}
requests=${2:-100000}
rounds=${3:-3}
./test/compat-libs.sh
lib=$PWD/build/compat/root/usr/share/lua/5.1
export LUA_PATH="$lib/?.lua;;"
port=$((20000 + $$ % 20000))
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
i=0
until redis-cli -p "$port" ping >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -lt 100 ] || { echo "redis-server did not start" >&2; exit 1; }
  sleep 0.05
done
tck=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }

# run NAME COMMAND...: the command prints "<requests> <seconds>"
run() {
  name=$1; shift
  for r in $(seq "$rounds"); do
    c0=$(cpu)
    out=$("$@")
    c1=$(cpu)
    echo "$out" | awk -v n="$name" -v c="$((c1 - c0))" -v tck="$tck" -v r="$r" \
      '{ printf "%-28s round %d: %8.0f req/s, server CPU %.2f us/req\n", n, r, $1 / $2, c / tck * 1e6 / $1 }'
  done
}

rb() {
  t0=$(date +%s.%N)
  redis-benchmark -p "$port" -c "$clients" -n "$requests" -t set,get -P 1 -q >/dev/null
  t1=$(date +%s.%N)
  awk -v n="$((requests * 2))" -v a="$t0" -v b="$t1" 'BEGIN { print n, b - a }'
}
run "redis-benchmark" rb
run "lua-resty-redis on LuaAsio" ./test/luajit bench/lua/redis_clients.lua resty "$port" "$clients" "$((requests * 2))"
run "redis-lua on LuaSocket (1)" ./test/luajit bench/lua/redis_clients.lua luasocket "$port" 1 "$((requests / 5))"
