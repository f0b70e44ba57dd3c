#!/usr/bin/env bash
# bench/compare.sh - LuaAsio, the native Boost.Asio ceiling and other Lua
# event libraries (luv, cqueues, copas, where installed) side by side, in one
# run, interleaved round by round. Writes one CSV row per run, which
# bench/chart.py turns into a PNG. See bench/README.md.
#
#   bench/compare.sh                      7 rounds, echo and stream, both layouts
#   ROUNDS=3 SECONDS_RUN=2 bench/compare.sh
#   CSV=bench/results/compare.csv bench/compare.sh && python3 bench/chart.py
#
# Tunables (environment): ROUNDS, SECONDS_RUN, WARMUP, ECHO_CONNS, ECHO_SIZE,
# STREAM_CONNS, STREAM_BYTES, MODES, LAYOUTS, IMPLS, CPU_SERVER, CPU_CLIENT,
# CSV (output file; default build/bench/compare-<time>.csv), BASE_TREE (another
# built checkout, e.g. an older revision: IMPLS may then name luaasio_base,
# its echo_server.lua on its own library, for before/after figures).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=build/bench
LUAJIT=./test/luajit

: "${ROUNDS:=7}" "${SECONDS_RUN:=5}" "${WARMUP:=1}" "${STREAM_BYTES:=256M}" "${STREAM_CONNS:=4}"
: "${ECHO_CONNS:=50}" "${ECHO_SIZE:=64}" "${MODES:=echo stream}" "${LAYOUTS:=same split}"
: "${CPU_SERVER:=0}" "${CPU_CLIENT:=1}"
: "${IMPLS:=native luaasio luaasio_into luv cqueues copas}"
: "${CSV:=$OUT/compare-$(date +%Y%m%d-%H%M%S).csv}"

log() { printf '%s\n' "$*" >&2; }

STARTED=()
stop_servers() {
  local p
  for p in "${STARTED[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${STARTED[@]}"; do
    wait "$p" 2>/dev/null || while kill -0 "$p" 2>/dev/null; do sleep 0.02; done
  done
  STARTED=()
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

PORT_SEQ=$((28000 + RANDOM % 2000))
next_port() {
  while :; do
    PORT_SEQ=$((PORT_SEQ + 1))
    if [[ -z $(ss -Hltn "sport = :$PORT_SEQ" 2>/dev/null) ]]; then
      echo "$PORT_SEQ"
      return
    fi
  done
}

# server_cmd IMPL MODE: the command line of that server, without the port.
server_cmd() {
  case $1 in
    native) echo "$OUT/native_server echo --port" ;;
    luaasio) echo "$LUAJIT bench/lua/echo_server.lua" ;;
    luaasio_into) echo "$LUAJIT bench/lua/stream_server.lua" ;;
    luaasio_base) echo "$BASE_TREE/test/luajit $BASE_TREE/bench/lua/echo_server.lua" ;;
    luv | cqueues | copas) echo "luajit bench/lua/others/$1_echo.lua" ;;
  esac
}

# Whether IMPL can run here and takes part in MODE.
available() {
  case $1 in
    native | luaasio) return 0 ;;
    luaasio_into) return 0 ;;
    luaasio_base) [[ -n ${BASE_TREE:-} && -e $BASE_TREE/build/libluaasio.so ]] ;;
    luv | cqueues | copas) luajit -e "require '$1'" 2>/dev/null ;;
    *) return 1 ;;
  esac
}

# run_one MODE LAYOUT IMPL ROUND: one server, one loadgen run, one CSV row.
run_one() {
  local mode=$1 layout=$2 impl=$3 round=$4 scpu=$CPU_SERVER ccpu=$CPU_CLIENT port pid launched i line out args
  [[ $layout == same ]] && ccpu=$CPU_SERVER
  port=$(next_port)
  # shellcheck disable=SC2046
  taskset -c "$scpu" $(server_cmd "$impl") "$port" >"$OUT/log/compare-$impl.log" 2>&1 &
  launched=$!
  STARTED+=("$launched")
  pid=
  for ((i = 0; i < 200; i++)); do
    line=$(ss -Hltnp "sport = :$port" 2>/dev/null || true)
    if [[ $line =~ pid=([0-9]+) ]]; then pid=${BASH_REMATCH[1]}; break; fi
    kill -0 "$launched" 2>/dev/null || break
    sleep 0.05
  done
  if [[ -z $pid ]]; then
    log "  $impl did not start; log:"
    sed 's/^/    /' "$OUT/log/compare-$impl.log" >&2
    stop_servers
    return 1
  fi
  [[ $pid == "$launched" ]] || STARTED+=("$pid")
  case $mode in
    echo) args=(echo --conns "$ECHO_CONNS" --size "$ECHO_SIZE" --seconds "$SECONDS_RUN" --warmup "$WARMUP") ;;
    stream) args=(stream --conns "$STREAM_CONNS" --bytes "$STREAM_BYTES" --timeout 120) ;;
  esac
  if out=$(timeout -k 2 150 taskset -c "$ccpu" "$OUT/loadgen" "${args[@]}" --port "$port" --pid "$pid" 2>"$OUT/log/compare-loadgen.err"); then
    out=$(grep '^RESULT ' <<<"$out")
    # rate, cost per unit, p99 (stream has none)
    awk -v m="$mode" -v l="$layout" -v im="$impl" -v r="$round" '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        if (m == "echo") printf "%s,%s,%s,%s,%s,%s,%s\n", m, l, im, r, v["rps"], v["cpu_us_per_req"], v["p99_us"]
        else printf "%s,%s,%s,%s,%s,%s,\n", m, l, im, r, v["mb_s"], v["cpu_us_per_mb"]
      }' <<<"$out" | tee -a "$CSV" >&2
  else
    log "  loadgen failed against $impl:"
    sed 's/^/    /' "$OUT/log/compare-loadgen.err" >&2
  fi
  stop_servers
}

mkdir -p "$OUT/log" "$(dirname "$CSV")"
build() { # OUTPUT SOURCE
  if [[ ! -x $1 || $2 -nt $1 ]]; then
    log "building $1"
    g++ -std=c++17 -O2 -Wall -Wextra -pthread -o "$1" "$2"
  fi
}
build "$OUT/loadgen" bench/loadgen.cpp
build "$OUT/native_server" bench/native_server.cpp
[[ -e build/libluaasio.so ]] || ./build.sh >&2

for impl in $IMPLS; do
  available "$impl" stream || available "$impl" echo || log "$impl: not installed, left out"
done

echo "mode,layout,impl,round,rate,cpu_us,p99_us" >"$CSV"
{
  echo "# $(nproc) CPUs, $(uname -r), $(uname -m); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# rounds=$ROUNDS seconds=$SECONDS_RUN echo=${ECHO_CONNS}x${ECHO_SIZE}B stream=${STREAM_CONNS}x$STREAM_BYTES"
} >"$CSV.meta"
log "results in $CSV"
for mode in $MODES; do
  for layout in $LAYOUTS; do
    for round in $(seq "$ROUNDS"); do
      log "== $mode $layout round $round"
      for impl in $IMPLS; do
        available "$impl" "$mode" || continue
        run_one "$mode" "$layout" "$impl" "$round" || true
      done
    done
  done
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$CSV.meta"

# Medians, spread and ratio to native, per mode, layout and implementation.
# cpu/nat is the ratio of the medians; "per round" is the median and range
# of each round's ratio to the native server's run in the same round, which
# is what a target on the ratio is judged by.
awk -F, 'NR > 1 {
    k = $1 "," $2 "," $3
    if (!(k in n)) order[++nk] = k
    n[k]++; rate[k, n[k]] = $5; cpu[k, n[k]] = $6; rnd[k, n[k]] = $4
    if ($3 == "native") natr[$1, $2, $4] = $6
  }
  function med(a, k, c,   i, j, t, v) {
    for (i = 1; i <= c; i++) v[i] = a[k, i] + 0
    for (i = 2; i <= c; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    LO = v[1]; HI = v[c]
    return c % 2 ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2
  }
  END {
    printf "%-7s %-6s %-13s %3s %11s %11s %8s %7s  %s\n", "mode", "layout", "impl", "n", "rate", "cpu_us", "cpu/nat", "spread", "per round: median (min-max)"
    for (i = 1; i <= nk; i++) {
      k = order[i]; split(k, p, ",")
      r = med(rate, k, n[k]); c = med(cpu, k, n[k]); sp = c ? 100 * (HI - LO) / c : 0
      if (p[3] == "native") nat[p[1], p[2]] = c
      ratio = nat[p[1], p[2]] ? sprintf("%.3f", c / nat[p[1], p[2]]) : "-"
      per = "-"
      if (p[3] != "native") {
        m = 0
        for (j = 1; j <= n[k]; j++) {
          nv = natr[p[1], p[2], rnd[k, j]] + 0
          if (nv > 0) rr[k, ++m] = cpu[k, j] / nv
        }
        if (m > 0) { rm = med(rr, k, m); per = sprintf("%.3f (%.3f-%.3f)", rm, LO, HI) }
      }
      printf "%-7s %-6s %-13s %3d %11.1f %11.2f %8s %6.0f%%  %s\n", p[1], p[2], p[3], n[k], r, c, ratio, sp, per
    }
  }' "$CSV" | tee "${CSV%.csv}.table"
