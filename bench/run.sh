#!/usr/bin/env bash
# bench/run.sh - build the benchmark tools, run LuaAsio against the native
# Boost.Asio ceiling and print a table of medians. See bench/README.md.
#
#   bench/run.sh                 full run (< 15 min)
#   QUICK=1 bench/run.sh         short run (< 2 min)
#   MODES="echo idle" bench/run.sh
#   MODES=udp bench/run.sh       UDP echo (bench/udp.sh)
#
# Tunables (environment): ROUNDS, SECONDS_RUN, WARMUP, ECHO_CONNS, ECHO_SIZE,
# PP_CONNS, STREAM_BYTES, STREAM_CONNS, IDLE_CONNS, IDLE_ROUNDS, IDLE_SETTLE,
# INPROC_SECONDS, INPROC_ROUNDS, MODES, LAYOUTS, CPU_SERVER, CPU_CLIENT,
# NATIVE_FORWARD (splice or copy: the native proxy baseline), NATIVE_PIPE
# (bytes: the splicing forwarders' pipe size, default the system's 64 KiB),
# RELAY_SPLICE (0: the LuaAsio proxies relay through a buffer instead of splice).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=build/bench
LUAJIT=./test/luajit

if [[ ${QUICK:-0} == 1 ]]; then
  : "${ROUNDS:=3}" "${SECONDS_RUN:=1.5}" "${WARMUP:=0.3}" "${STREAM_BYTES:=128M}" "${INPROC_SECONDS:=2}"
  : "${IDLE_ROUNDS:=1}" "${IDLE_SETTLE:=1}"
else
  : "${ROUNDS:=7}" "${SECONDS_RUN:=5}" "${WARMUP:=1}" "${STREAM_BYTES:=256M}" "${INPROC_SECONDS:=5}"
  : "${IDLE_ROUNDS:=3}" "${IDLE_SETTLE:=2}"
fi
: "${INPROC_ROUNDS:=$IDLE_ROUNDS}"
: "${STREAM_CONNS:=4}" "${IDLE_CONNS:=10000}" "${ECHO_CONNS:=50}" "${ECHO_SIZE:=64}" "${PP_CONNS:=50}"
: "${MODES:=echo pingpong stream proxy idle inproc}" "${LAYOUTS:=same split}"
: "${CPU_SERVER:=0}" "${CPU_CLIENT:=1}"
: "${NATIVE_FORWARD:=splice}" "${RELAY_SPLICE:=1}"
export LUAASIO_RELAY_SPLICE=$RELAY_SPLICE

# ------------------------------------------------------------------ helpers

log() { printf '%s\n' "$*" >&2; }

# Processes started by this script; killed individually on exit.
STARTED=()
cleanup() {
  local p
  for p in "${STARTED[@]}"; do kill "$p" 2>/dev/null || true; done
  STARTED=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

next_port() { # a port nobody listens on, below the ephemeral range
  while :; do
    PORT_SEQ=$((PORT_SEQ + 1))
    if [[ -z $(ss -Hltn "sport = :$PORT_SEQ" 2>/dev/null) ]]; then
      echo "$PORT_SEQ"
      return
    fi
  done
}
PORT_SEQ=$((20000 + RANDOM % 8000))

# Waits until something listens on 127.0.0.1:PORT and prints the pid that owns
# the listening socket: the launcher ./test/luajit may sit between us and luajit.
listener_pid() { # PORT FALLBACK_PID
  local i line
  for ((i = 0; i < 200; i++)); do
    line=$(ss -Hltnp "sport = :$1" 2>/dev/null || true)
    if [[ -n $line ]]; then
      if [[ $line =~ pid=([0-9]+) ]]; then echo "${BASH_REMATCH[1]}"; else echo "$2"; fi
      return 0
    fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# start_server CPU NAME PORT CMD... : runs CMD pinned to CPU, waits for PORT,
# sets SERVER_PID to the process that listens.
start_server() {
  local cpu=$1 name=$2 port=$3
  shift 3
  taskset -c "$cpu" "$@" >"$OUT/log/$name.log" 2>&1 &
  local launched=$!
  STARTED+=("$launched")
  if ! SERVER_PID=$(listener_pid "$port" "$launched"); then
    log "  $name did not start listening on $port; log:"
    sed 's/^/    /' "$OUT/log/$name.log" >&2
    return 1
  fi
  [[ $SERVER_PID == "$launched" ]] || STARTED+=("$SERVER_PID")
}

stop_servers() {
  local p
  for p in "${STARTED[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${STARTED[@]}"; do
    # wait only works for our own children; the launcher's child just needs to be gone.
    wait "$p" 2>/dev/null || while kill -0 "$p" 2>/dev/null; do sleep 0.02; done
  done
  STARTED=()
}

# record MODE LAYOUT IMPL ROUND RESULT-LINE
record() {
  local kv=${5#RESULT }
  printf '%s %s %s %s %s\n' "$1" "$2" "$3" "$4" "$kv" >>"$RESULTS"
  log "  $(printf '%-8s %-5s %-7s r%s' "$1" "$2" "$3" "$4")  $kv"
}

# run_loadgen CPU TIMEOUT ARGS... : prints the RESULT line, or fails.
run_loadgen() {
  local cpu=$1 limit=$2 out
  shift 2
  if ! out=$(timeout -k 2 "$limit" taskset -c "$cpu" "$OUT/loadgen" "$@" 2>"$OUT/log/loadgen.err"); then
    log "  loadgen $* failed:"
    sed 's/^/    /' "$OUT/log/loadgen.err" >&2
    return 1
  fi
  grep '^RESULT ' <<<"$out"
}

layout_cpus() { # LAYOUT -> "server_cpu client_cpu"
  case $1 in
    same) echo "$CPU_SERVER $CPU_SERVER" ;;
    split) echo "$CPU_SERVER $CPU_CLIENT" ;;
    *) log "unknown layout $1"; exit 2 ;;
  esac
}

# ------------------------------------------------------------------ one run per mode

# run_direct MODE LAYOUT IMPL ROUND: a server of MODE's protocol and the loadgen.
run_direct() {
  local mode=$1 layout=$2 impl=$3 round=$4 scpu ccpu port result args
  read -r scpu ccpu <<<"$(layout_cpus "$layout")"
  port=$(next_port)
  local proto=$mode
  [[ $mode == stream ]] && proto=echo
  if [[ $impl == native ]]; then
    start_server "$scpu" "$mode-$impl" "$port" "$OUT/native_server" "$proto" --port "$port" || return 1
  else
    start_server "$scpu" "$mode-$impl" "$port" "$LUAJIT" "bench/lua/${proto}_server.lua" "$port" || return 1
  fi
  case $mode in
    echo) args=(echo --conns "$ECHO_CONNS" --size "$ECHO_SIZE" --seconds "$SECONDS_RUN" --warmup "$WARMUP") ;;
    pingpong) args=(pingpong --conns "$PP_CONNS" --seconds "$SECONDS_RUN" --warmup "$WARMUP") ;;
    stream) args=(stream --conns "$STREAM_CONNS" --bytes "$STREAM_BYTES" --timeout 120) ;;
  esac
  if result=$(run_loadgen "$ccpu" 150 "${args[@]}" --port "$port" --pid "$SERVER_PID"); then
    record "$mode" "$layout" "$impl" "$round" "$result"
  fi
  stop_servers
}

# The proxy pair is transparent: proxy_client.lua relays each connection to
# the destination the client dialled, which it learns from an iptables
# REDIRECT (SO_ORIGINAL_DST). This runs inside a private network namespace
# (see run_proxy_mode), where connections from 127.0.0.3 are redirected to
# the front proxy; the native baseline is two chained forwarders in the same
# place. The echo server behind is native in both cases.
run_proxy() {
  local layout=$1 impl=$2 round=$3 scpu ccpu front mid echo_port result pids
  read -r scpu ccpu <<<"$(layout_cpus "$layout")"
  # next_port runs in a subshell here: PORT_SEQ is moved on by hand, or all
  # three would get the same port, the proxies would fail to listen, and
  # the REDIRECT would lead straight to the echo server.
  front=$(next_port) && PORT_SEQ=$front
  mid=$(next_port) && PORT_SEQ=$mid
  echo_port=$(next_port) && PORT_SEQ=$echo_port
  iptables -t nat -F OUTPUT
  iptables -t nat -A OUTPUT -s 127.0.0.3 -p tcp -j REDIRECT --to-ports "$front"
  start_server "$ccpu" "proxy-echo" "$echo_port" "$OUT/native_server" echo --port "$echo_port" || return 1
  if [[ $impl == native ]]; then
    local splice=0
    [[ $NATIVE_FORWARD == splice ]] && splice=1
    start_server "$scpu" proxy-mid-$impl "$mid" "$OUT/native_server" forward --port "$mid" --target "127.0.0.1:$echo_port" --splice $splice --pipe "${NATIVE_PIPE:-0}" || return 1
    pids=$SERVER_PID
    start_server "$scpu" proxy-front-$impl "$front" "$OUT/native_server" forward --port "$front" --target "127.0.0.1:$mid" --splice $splice --pipe "${NATIVE_PIPE:-0}" || return 1
  else
    start_server "$scpu" proxy-mid-$impl "$mid" "$LUAJIT" examples/proxy_server.lua 127.0.0.1 "$mid" || return 1
    pids=$SERVER_PID
    start_server "$scpu" proxy-front-$impl "$front" "$LUAJIT" examples/proxy_client.lua 127.0.0.1 "$front" 127.0.0.1 "$mid" || return 1
  fi
  pids+=",$SERVER_PID"
  if [[ ${pids%,*} == "${pids#*,}" ]]; then
    log "  proxy $impl: both proxies report pid ${pids%,*}; run skipped"
    stop_servers
    return 1
  fi
  if result=$(run_loadgen "$ccpu" 150 stream --conns "$STREAM_CONNS" --bytes "$STREAM_BYTES" --timeout 120 \
    --bind 127.0.0.3 --port "$echo_port" --pid "$pids"); then
    record proxy "$layout" "$impl" "$round" "$result"
  fi
  stop_servers
}

run_idle() {
  local impl=$1 round=$2 port result
  port=$(next_port)
  if [[ $impl == native ]]; then
    start_server "$CPU_SERVER" "idle-$impl" "$port" "$OUT/native_server" echo --port "$port" || return 1
  else
    start_server "$CPU_SERVER" "idle-$impl" "$port" "$LUAJIT" bench/lua/echo_server.lua "$port" || return 1
  fi
  if result=$(run_loadgen "$CPU_CLIENT" 120 idle --conns "$IDLE_CONNS" --settle "$IDLE_SETTLE" \
    --port "$port" --pid "$SERVER_PID"); then
    record idle - "$impl" "$round" "$result"
  fi
  stop_servers
}

run_inproc() {
  local round=$1 out
  if out=$(timeout -k 2 $((${INPROC_SECONDS%.*} + 30)) taskset -c "$CPU_SERVER" \
    "$LUAJIT" bench/lua/inproc_pingpong.lua "$INPROC_SECONDS" 10 2>"$OUT/log/inproc.err"); then
    record inproc same luaasio "$round" "$(grep '^RESULT ' <<<"$out")"
  else
    log "  inproc_pingpong.lua failed:"
    sed 's/^/    /' "$OUT/log/inproc.err" >&2
  fi
}

# The proxy mode needs root, unshare and iptables' nat table; it reruns this
# script inside a fresh network namespace so that the REDIRECT rule can touch
# nothing outside it.
proxy_possible() {
  [[ $(id -u) == 0 ]] && command -v unshare >/dev/null && command -v iptables >/dev/null &&
    unshare -n sh -c 'iptables -t nat -L OUTPUT -n >/dev/null 2>&1'
}

run_proxy_mode() {
  if [[ ! -f examples/proxy_client.lua || ! -f examples/proxy_server.lua ]]; then
    log "proxy: examples/proxy_{client,server}.lua missing, skipped"
  elif ! proxy_possible; then
    log "proxy: needs root, unshare and iptables nat (for the REDIRECT rule), skipped"
  else
    unshare -n -- "$BASH" "${BASH_SOURCE[0]}" __proxy_inner
  fi
}

if [[ ${1:-} == __proxy_inner ]]; then
  ip link set lo up
  for layout in $LAYOUTS; do
    for round in $(seq "$ROUNDS"); do
      for impl in native luaasio; do run_proxy "$layout" "$impl" "$round" || stop_servers; done
    done
  done
  exit 0
fi

# ------------------------------------------------------------------ report

# Medians per (mode, layout, impl, metric) and the LuaAsio/native ratio.
report() {
  awk '
    # Sets MED and SPREAD ((max - min) / median, in %) of the values under key.
    function stats(key,   n, i, j, t, a) {
      n = split(vals[key], a, " ")
      for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      MED = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      SPREAD = MED != 0 ? 100 * (a[n] - a[1]) / MED : 0
    }
    function fmt(v) { return v >= 100 ? sprintf("%.0f", v) : v >= 10 ? sprintf("%.1f", v) : sprintf("%.2f", v) }
    BEGIN {
      # mode metric: the figures shown, with the target on the one that has one.
      split("echo:rps echo:p99_us echo:cpu_us_per_req pingpong:cps pingpong:p99_us pingpong:cpu_us_per_conn " \
            "stream:mb_s stream:cpu_us_per_mb proxy:mb_s proxy:cpu_us_per_mb idle:bytes_per_conn inproc:rtt_s", show, " ")
      target["echo:cpu_us_per_req"] = "ratio<=1.10"
      target["pingpong:cps"] = "ratio>=0.95"
      target["stream:mb_s"] = "ratio>=0.95"
      target["idle:bytes_per_conn"] = "lua<=1536"
    }
    {
      row = $1 SUBSEP $2
      if (!(row in seen)) { seen[row] = 1; order[++nrows] = row }
      for (i = 5; i <= NF; i++) {
        split($i, kv, "=")
        vals[row, $3, kv[1]] = vals[row, $3, kv[1]] " " kv[2]
        runs[row, $3, kv[1]]++
      }
    }
    END {
      printf "%-9s %-6s %-18s %11s %11s %7s %7s  %-12s %s\n", "mode", "layout", "metric", "native", "luaasio", "ratio", "spread", "target", "verdict"
      for (r = 1; r <= nrows; r++) {
        split(order[r], rl, SUBSEP)
        for (s = 1; s in show; s++) {
          split(show[s], mm, ":")
          if (mm[1] != rl[1]) continue
          m = mm[2]; nat = lua = ""; spread = 0
          if ((order[r], "native", m) in vals) { stats(order[r] SUBSEP "native" SUBSEP m); nat = MED; spread = SPREAD }
          if ((order[r], "luaasio", m) in vals) { stats(order[r] SUBSEP "luaasio" SUBSEP m); lua = MED; if (SPREAD > spread) spread = SPREAD }
          if (nat == "" && lua == "") continue
          ratio = (nat != "" && lua != "" && nat + 0 != 0) ? lua / nat : ""
          t = target[show[s]]; verdict = ""
          if (t == "ratio<=1.10" && ratio != "") verdict = ratio <= 1.10 ? "PASS" : "FAIL"
          if (t == "ratio>=0.95" && ratio != "") verdict = ratio >= 0.95 ? "PASS" : "FAIL"
          if (t == "lua<=1536" && lua != "") verdict = lua <= 1536 ? "PASS" : "FAIL"
          n = runs[order[r], "luaasio", m] + 0 > runs[order[r], "native", m] + 0 ? runs[order[r], "luaasio", m] : runs[order[r], "native", m]
          printf "%-9s %-6s %-18s %11s %11s %7s %6.0f%%  %-12s %s\n", rl[1], rl[2], m, \
            nat == "" ? "-" : fmt(nat), lua == "" ? "-" : fmt(lua), ratio == "" ? "-" : sprintf("%.3f", ratio), \
            spread, t == "" ? "" : t, verdict (verdict != "" ? " (n=" n ")" : "")
        }
      }
    }' "$RESULTS"
}

# ------------------------------------------------------------------ main

mkdir -p "$OUT/log"

build() { # OUTPUT SOURCE
  if [[ ! -x $1 || $2 -nt $1 ]]; then
    log "building $1"
    g++ -std=c++17 -O2 -Wall -Wextra -pthread -o "$1" "$2"
  fi
}
build "$OUT/loadgen" bench/loadgen.cpp &
b1=$!
build "$OUT/native_server" bench/native_server.cpp &
b2=$!
wait "$b1" && wait "$b2"

if [[ ! -e build/libluaasio.so && -x build.sh ]]; then
  log "building the core library (./build.sh)"
  ./build.sh >&2
fi
if [[ ! -x $LUAJIT || ! -f lua/asio.lua ]]; then
  log "LuaAsio not built yet ($LUAJIT, lua/asio.lua); only native figures will be measured"
  HAVE_LUA=0
else
  HAVE_LUA=1
fi

ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < IDLE_CONNS + 200)); then
  IDLE_CONNS=$(($(ulimit -n) - 200))
  log "open files limited to $(ulimit -n): idle uses $IDLE_CONNS connections"
fi

export ROUNDS SECONDS_RUN WARMUP STREAM_BYTES STREAM_CONNS INPROC_SECONDS IDLE_CONNS IDLE_SETTLE LAYOUTS CPU_SERVER CPU_CLIENT
RESULTS=$OUT/results-$(date +%Y%m%d-%H%M%S).txt
export RESULTS
: >"$RESULTS"
IMPLS=(native)
((HAVE_LUA)) && IMPLS+=(luaasio)
start=$SECONDS
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_BEFORE%% *}" 'BEGIN { exit !(l > 0.5) }'; then
  log "warning: load average is $LOAD_BEFORE before starting; other processes will add noise"
fi
log "rounds=$ROUNDS seconds=$SECONDS_RUN stream=${STREAM_CONNS}x$STREAM_BYTES idle=$IDLE_CONNS; raw results in $RESULTS"

for mode in $MODES; do
  log "== $mode"
  case $mode in
    echo | pingpong | stream)
      for layout in $LAYOUTS; do
        for round in $(seq "$ROUNDS"); do
          for impl in "${IMPLS[@]}"; do run_direct "$mode" "$layout" "$impl" "$round" || stop_servers; done
        done
      done
      ;;
    proxy)
      if ((HAVE_LUA)); then run_proxy_mode; else log "proxy: needs LuaAsio, skipped"; fi
      ;;
    idle)
      for round in $(seq "$IDLE_ROUNDS"); do
        for impl in "${IMPLS[@]}"; do run_idle "$impl" "$round" || stop_servers; done
      done
      ;;
    inproc)
      if ((HAVE_LUA)); then
        for round in $(seq "$INPROC_ROUNDS"); do run_inproc "$round"; done
      else
        log "inproc: needs LuaAsio, skipped"
      fi
      ;;
    udp) "$ROOT/bench/udp.sh" ;; # its own table (UDP echo, 64 and 1,200 bytes)
    *) log "unknown mode $mode" ;;
  esac
done

log "finished in $((SECONDS - start)) s"
{
  echo
  echo "LuaAsio vs native Boost.Asio, medians of $ROUNDS rounds ($IDLE_ROUNDS for idle); $(nproc) CPUs, $(uname -r)"
  echo "layouts: same = server and loadgen on CPU $CPU_SERVER; split = server on CPU $CPU_SERVER, loadgen on CPU $CPU_CLIENT"
  echo "ratio = luaasio / native; cpu_us_* = server CPU (utime+stime) per request, connection or MB"
  echo "spread = (max - min) / median over the rounds, the larger of the two sides"
  echo "load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  report
} | tee "${RESULTS%.txt}.table"
