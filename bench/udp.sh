#!/usr/bin/env bash
# bench/udp.sh - UDP echo: LuaAsio (bench/lua/udp_echo_server.lua) against a
# native Boost.Asio server (bench/udp_native_server.cpp), alternately, with
# bench/udp_loadgen.cpp as the client. Prints medians: echoed datagrams per
# second, server CPU per datagram, datagrams the load generator had to resend
# and the server socket's kernel drops. Also run by `MODES=udp bench/run.sh`.
#
#   bench/udp.sh                  7 rounds of 5 s per size and layout
#   QUICK=1 bench/udp.sh          3 rounds of 1.5 s
# Tunables: ROUNDS, SECONDS_RUN, WARMUP, UDP_FLOWS, UDP_SIZES, LAYOUTS,
# CPU_SERVER, CPU_CLIENT.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=build/bench
if [[ ${QUICK:-0} == 1 ]]; then : "${ROUNDS:=3}" "${SECONDS_RUN:=1.5}" "${WARMUP:=0.3}"
else : "${ROUNDS:=7}" "${SECONDS_RUN:=5}" "${WARMUP:=1}"; fi
: "${UDP_FLOWS:=50}" "${UDP_SIZES:=64 1200}" "${LAYOUTS:=same split}" "${CPU_SERVER:=0}" "${CPU_CLIENT:=1}"

log() { printf '%s\n' "$*" >&2; }
mkdir -p "$OUT/log"
build() { # OUTPUT SOURCE
  if [[ ! -x $1 || $2 -nt $1 ]]; then log "building $1"; g++ -std=c++17 -O2 -Wall -Wextra -pthread -o "$1" "$2"; fi
}
build "$OUT/udp_loadgen" bench/udp_loadgen.cpp
build "$OUT/udp_native_server" bench/udp_native_server.cpp
[[ -e build/libluaasio.so ]] || ./build.sh >&2

SERVER=
cleanup() { [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null; SERVER=; }
trap cleanup EXIT

# start IMPL CPU: starts the server, sets SERVER (its pid) and PORT.
start() {
  local log=$OUT/log/udp-$1.log i
  rm -f "$log" # the port of the last run must not be read before the new server starts
  if [[ $1 == native ]]; then
    taskset -c "$2" "$OUT/udp_native_server" 0 >"$log" 2>&1 &
  else
    # exec: the pid is LuaJIT's own, whose CPU time is measured.
    taskset -c "$2" sh -c 'exec "$@"' sh ./test/luajit bench/lua/udp_echo_server.lua 0 >"$log" 2>&1 &
  fi
  SERVER=$!
  for ((i = 0; i < 200; i++)); do
    PORT=$(sed -n "s/^PORT \([0-9]*\).*/\1/p" "$log" 2>/dev/null)
    [[ -n $PORT ]] && return 0
    sleep 0.02
  done
  log "server $1 did not start:"; cat "$log" >&2; return 1
}

RESULTS=$OUT/udp-results-$(date +%Y%m%d-%H%M%S).txt
: >"$RESULTS"
for size in $UDP_SIZES; do
  for layout in $LAYOUTS; do
    ccpu=$CPU_CLIENT; [[ $layout == same ]] && ccpu=$CPU_SERVER
    for round in $(seq "$ROUNDS"); do
      for impl in native luaasio; do
        start "$impl" "$CPU_SERVER" || exit 1
        # The server's own process: ./test/luajit may exec through a shell.
        line=$(taskset -c "$ccpu" "$OUT/udp_loadgen" --port "$PORT" --flows "$UDP_FLOWS" --size "$size" \
          --seconds "$SECONDS_RUN" --warmup "$WARMUP" --pid "$SERVER" | grep '^RESULT ')
        cleanup
        log "  udp$size $layout $impl r$round ${line#RESULT }"
        echo "udp$size $layout $impl $round ${line#RESULT mode=udp }" >>"$RESULTS"
      done
    done
  done
done

echo
echo "UDP echo, LuaAsio vs native Boost.Asio: medians of $ROUNDS rounds of ${SECONDS_RUN}s, $UDP_FLOWS flows with one datagram in flight each; $(nproc) CPUs, $(uname -r)"
echo "layouts: same = server and loadgen on CPU $CPU_SERVER; split = loadgen on CPU $CPU_CLIENT"
echo "dps = echoed datagrams/s; cpu_us_per_dgram = server CPU per echoed datagram; lost = resent after 200 ms; server_drops = kernel drops at the server socket"
awk '
  function med(key,   n, i, j, t, a) {
    n = split(vals[key], a, " ")
    for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    SPREAD = n ? 100 * (a[n] - a[1]) / ((n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2) + 1e-9) : 0
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function sum(key,   n, i, a, s) { n = split(vals[key], a, " "); for (i = 1; i <= n; i++) s += a[i]; return s + 0 }
  {
    row = $1 " " $2; if (!(row in seen)) { seen[row] = 1; order[++nrows] = row }
    for (i = 5; i <= NF; i++) { split($i, kv, "="); vals[row, $3, kv[1]] = vals[row, $3, kv[1]] " " kv[2]; n[row, $3]++ }
  }
  END {
    printf "%-8s %-6s %-17s %11s %11s %7s %7s  %-12s %s\n", "mode", "layout", "metric", "native", "luaasio", "ratio", "spread", "target", "verdict"
    split("dps cpu_us_per_dgram lost server_drops", metrics, " ")
    for (r = 1; r <= nrows; r++) for (m = 1; m <= 4; m++) {
      k = metrics[m]
      if (k == "lost" || k == "server_drops") { nat = sum(order[r] SUBSEP "native" SUBSEP k); lua = sum(order[r] SUBSEP "luaasio" SUBSEP k); spread = 0; label = k " (sum)" }
      else { nat = med(order[r] SUBSEP "native" SUBSEP k); s1 = SPREAD; lua = med(order[r] SUBSEP "luaasio" SUBSEP k); spread = SPREAD > s1 ? SPREAD : s1; label = k }
      ratio = nat > 0 ? sprintf("%.3f", lua / nat) : "-"
      t = k == "cpu_us_per_dgram" ? "ratio<=1.10" : ""
      v = t != "" && nat > 0 ? (lua / nat <= 1.10 ? "PASS" : "FAIL") : ""
      split(order[r], rl, " ")
      printf "%-8s %-6s %-17s %11s %11s %7s %6.0f%%  %-12s %s\n", rl[1], rl[2], label, (nat >= 100 ? sprintf("%.0f", nat) : sprintf("%.2f", nat)), (lua >= 100 ? sprintf("%.0f", lua) : sprintf("%.2f", lua)), ratio, spread, t, v
    }
  }' "$RESULTS" | tee "${RESULTS%.txt}.table"
