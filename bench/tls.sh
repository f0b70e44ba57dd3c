#!/usr/bin/env bash
# bench/tls.sh - TLS: the LuaAsio TLS echo server (bench/lua/tls_echo_server.lua)
# against a native Boost.Asio ssl::stream echo server
# (bench/tls_native_server.cpp), alternately, loaded by bench/tls_loadgen.cpp
# (Boost.Asio over OpenSSL). Prints medians and LuaAsio / native ratios. See
# bench/README.md, "TLS".
#
#   bench/tls.sh                  5 rounds per mode and layout
#   QUICK=1 bench/tls.sh          3 short rounds (a smoke test)
#   MODES="stream" LAYOUTS=same ROUNDS=7 bench/tls.sh
#
# Modes: echo (1 KiB request/response on ECHO_CONNS connections), stream
# (STREAM_CONNS connections each sending STREAM_BYTES and reading them back,
# full duplex) and handshake (HS_CONNS clients looping connect + full
# handshake + a 32-byte echo + close). Every connection is TLS 1.3 with
# TLS_AES_128_GCM_SHA256 and an ECDSA P-256 certificate made here with
# `openssl` (in a temp dir, removed at exit); both servers load the same one.
# NODELAY=1 (the default) has both servers set TCP_NODELAY on each accepted
# connection; NODELAY=0 leaves both as they are (LuaAsio's TLS connections
# then keep Nagle's algorithm: see bench/README.md).
# Tunables: ROUNDS, SECONDS_RUN, WARMUP, ECHO_CONNS, ECHO_SIZE, STREAM_CONNS,
# STREAM_BYTES, HS_CONNS, NODELAY, MODES, LAYOUTS, CPU_SERVER, CPU_CLIENT.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=build/bench
LUAJIT=./test/luajit

if [[ ${QUICK:-0} == 1 ]]; then
  : "${ROUNDS:=3}" "${SECONDS_RUN:=1.5}" "${WARMUP:=0.3}" "${STREAM_BYTES:=64M}"
else
  : "${ROUNDS:=5}" "${SECONDS_RUN:=5}" "${WARMUP:=1}" "${STREAM_BYTES:=256M}"
fi
: "${ECHO_CONNS:=50}" "${ECHO_SIZE:=1024}" "${STREAM_CONNS:=4}" "${HS_CONNS:=20}" "${NODELAY:=1}"
: "${MODES:=echo stream handshake}" "${LAYOUTS:=same split}" "${CPU_SERVER:=0}" "${CPU_CLIENT:=1}"

log() { printf '%s\n' "$*" >&2; }
mkdir -p "$OUT/log"

# ------------------------------------------------------------------ build

build() { # OUTPUT SOURCE
  if [[ ! -x $1 || $2 -nt $1 ]]; then
    log "building $1"
    g++ -std=c++17 -O2 -Wall -Wextra -pthread -o "$1" "$2" -lssl -lcrypto
  fi
}
build "$OUT/tls_loadgen" bench/tls_loadgen.cpp &
b1=$!
build "$OUT/tls_native_server" bench/tls_native_server.cpp &
b2=$!
wait "$b1" && wait "$b2"
if [[ ! -e build/libluaasio.so || ! -e build/libluaasio_tls.so ]]; then
  log "building LuaAsio with TLS (./build.sh)"
  ./build.sh >&2
fi
if ! "$LUAJIT" -e 'local ok, why = require("asio").tls_available(); if not ok then io.stderr:write(why, "\n"); os.exit(1) end'; then
  log "LuaAsio TLS is not available (is libssl-dev installed?)"
  exit 1
fi

# ------------------------------------------------------------------ certificate

CERTS=$(mktemp -d)
STARTED=()
cleanup() {
  local p
  for p in "${STARTED[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$CERTS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$CERTS/key.pem" -out "$CERTS/cert.pem" >"$OUT/log/tls-openssl.log" 2>&1 || {
  cat "$OUT/log/tls-openssl.log" >&2
  exit 1
}

# ------------------------------------------------------------------ servers

# Ports below the ephemeral range (32768 and up on Linux), each new run on a
# fresh one that no socket uses in any state. Sets PORT (no subshell, so the
# sequence advances).
PORT_SEQ=$((20000 + RANDOM % 8000))
next_port() {
  while :; do
    PORT_SEQ=$((PORT_SEQ + 1))
    if [[ -z $(ss -Htan "sport = :$PORT_SEQ" 2>/dev/null) ]]; then
      PORT=$PORT_SEQ
      return
    fi
  done
}

# start IMPL CPU PORT: starts the server pinned to CPU and sets SERVER_PID to
# the process that listens (./test/luajit may sit between us and luajit).
start() {
  local impl=$1 cpu=$2 port=$3 log=$OUT/log/tls-$1.log launched i line
  if [[ $impl == native ]]; then
    taskset -c "$cpu" "$OUT/tls_native_server" --port "$port" --cert "$CERTS/cert.pem" --key "$CERTS/key.pem" \
      --nodelay "$NODELAY" >"$log" 2>&1 &
  else
    local nd=
    [[ $NODELAY == 1 ]] && nd=nodelay
    taskset -c "$cpu" "$LUAJIT" bench/lua/tls_echo_server.lua "$port" "$CERTS/cert.pem" "$CERTS/key.pem" $nd >"$log" 2>&1 &
  fi
  launched=$!
  STARTED+=("$launched")
  for ((i = 0; i < 200; i++)); do
    line=$(ss -Hltnp "sport = :$port" 2>/dev/null || true)
    if [[ -n $line ]]; then
      if [[ $line =~ pid=([0-9]+) ]]; then SERVER_PID=${BASH_REMATCH[1]}; else SERVER_PID=$launched; fi
      [[ $SERVER_PID == "$launched" ]] || STARTED+=("$SERVER_PID")
      return 0
    fi
    kill -0 "$launched" 2>/dev/null || break
    sleep 0.05
  done
  log "server $impl did not start listening on $port:"
  sed 's/^/    /' "$log" >&2
  return 1
}

stop() {
  local p
  for p in "${STARTED[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${STARTED[@]}"; do
    wait "$p" 2>/dev/null || while kill -0 "$p" 2>/dev/null; do sleep 0.02; done
  done
  STARTED=()
}

RESULTS=$OUT/tls-results-$(date +%Y%m%d-%H%M%S).txt
: >"$RESULTS"

# run MODE LAYOUT IMPL ROUND
run() {
  local mode=$1 layout=$2 impl=$3 round=$4 scpu=$CPU_SERVER ccpu=$CPU_CLIENT port out args
  [[ $layout == same ]] && ccpu=$CPU_SERVER
  next_port
  port=$PORT
  start "$impl" "$scpu" "$port" || return 1
  case $mode in
    echo) args=(echo --conns "$ECHO_CONNS" --size "$ECHO_SIZE" --seconds "$SECONDS_RUN" --warmup "$WARMUP") ;;
    stream) args=(stream --conns "$STREAM_CONNS" --bytes "$STREAM_BYTES" --timeout 150) ;;
    handshake) args=(handshake --conns "$HS_CONNS" --seconds "$SECONDS_RUN" --warmup "$WARMUP") ;;
  esac
  if out=$(timeout -k 2 170 taskset -c "$ccpu" "$OUT/tls_loadgen" "${args[@]}" --port "$port" \
    --ca "$CERTS/cert.pem" --pid "$SERVER_PID" 2>"$OUT/log/tls-loadgen.err"); then
    out=$(grep '^RESULT ' <<<"$out")
    printf '%s %s %s %s %s\n' "$mode" "$layout" "$impl" "$round" "${out#RESULT }" >>"$RESULTS"
    log "  $(printf '%-9s %-5s %-7s r%s' "$mode" "$layout" "$impl" "$round")  ${out#RESULT }"
  else
    log "  tls_loadgen ${args[*]} against $impl failed:"
    sed 's/^/    /' "$OUT/log/tls-loadgen.err" >&2
  fi
  stop
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "rounds=$ROUNDS seconds=$SECONDS_RUN stream=${STREAM_CONNS}x$STREAM_BYTES nodelay=$NODELAY; raw results in $RESULTS"
start_time=$SECONDS
for mode in $MODES; do
  log "== $mode"
  for layout in $LAYOUTS; do
    for round in $(seq "$ROUNDS"); do
      for impl in native luaasio; do run "$mode" "$layout" "$impl" "$round" || stop; done
    done
  done
done
log "finished in $((SECONDS - start_time)) s"

# ------------------------------------------------------------------ report

report() {
  awk '
    function stats(key,   n, i, j, t, a) {
      n = split(vals[key], a, " ")
      for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      MED = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      SPREAD = MED != 0 ? 100 * (a[n] - a[1]) / MED : 0
      N = n
    }
    function fmt(v) { return v >= 100 ? sprintf("%.0f", v) : v >= 10 ? sprintf("%.1f", v) : sprintf("%.2f", v) }
    BEGIN {
      split("echo:rps echo:p99_us echo:cpu_us_per_req stream:mb_s stream:cpu_s_per_gb " \
            "handshake:hps handshake:p99_us handshake:cpu_us_per_conn", show, " ")
      target["echo:cpu_us_per_req"] = "ratio<=1.15"
      target["stream:mb_s"] = "ratio>=0.90"
    }
    {
      row = $1 SUBSEP $2
      if (!(row in seen)) { seen[row] = 1; order[++nrows] = row }
      for (i = 5; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[2] ~ /^[0-9.]+$/) vals[row, $3, kv[1]] = vals[row, $3, kv[1]] " " kv[2]
        else if (kv[1] == "tls" || kv[1] == "cipher") proto[$3] = proto[$3] " " kv[2]
      }
    }
    END {
      printf "%-9s %-6s %-16s %10s %10s %7s %7s  %-12s %s\n", "mode", "layout", "metric", "native", "luaasio", "ratio", "spread", "target", "verdict"
      for (r = 1; r <= nrows; r++) {
        split(order[r], rl, SUBSEP)
        for (s = 1; s in show; s++) {
          split(show[s], mm, ":")
          if (mm[1] != rl[1]) continue
          m = mm[2]; nat = lua = ""; spread = 0; n = 0
          if ((order[r], "native", m) in vals) { stats(order[r] SUBSEP "native" SUBSEP m); nat = MED; spread = SPREAD; n = N }
          if ((order[r], "luaasio", m) in vals) { stats(order[r] SUBSEP "luaasio" SUBSEP m); lua = MED; if (SPREAD > spread) spread = SPREAD; if (N > n) n = N }
          if (nat == "" && lua == "") continue
          ratio = (nat != "" && lua != "" && nat + 0 != 0) ? lua / nat : ""
          t = target[show[s]]; verdict = ""
          if (t == "ratio<=1.15" && ratio != "") verdict = ratio <= 1.15 ? "PASS" : "FAIL"
          if (t == "ratio>=0.90" && ratio != "") verdict = ratio >= 0.90 ? "PASS" : "FAIL"
          printf "%-9s %-6s %-16s %10s %10s %7s %6.0f%%  %-12s %s\n", rl[1], rl[2], m, \
            nat == "" ? "-" : fmt(nat), lua == "" ? "-" : fmt(lua), ratio == "" ? "-" : sprintf("%.3f", ratio), \
            spread, t, verdict (verdict != "" ? " (n=" n ")" : "")
        }
      }
    }' "$RESULTS"
}

{
  echo
  echo "LuaAsio TLS vs native Boost.Asio ssl::stream, medians of $ROUNDS rounds; $(nproc) CPUs, $(uname -r)"
  echo "protocol: $(awk '{ for (i = 5; i <= NF; i++) if ($i ~ /^(tls|cipher)=/) printf "%s ", $i; print "" }' "$RESULTS" | sort | uniq -c | sed 's/^ *//' | paste -sd';' -)"
  echo "TCP_NODELAY set by both servers: $NODELAY; echo ${ECHO_CONNS}x$ECHO_SIZE B, stream ${STREAM_CONNS}x$STREAM_BYTES, handshake $HS_CONNS clients"
  echo "layouts: same = server and loadgen on CPU $CPU_SERVER; split = server on CPU $CPU_SERVER, loadgen on CPU $CPU_CLIENT"
  echo "ratio = luaasio / native; cpu_* = server CPU (utime+stime) per request, GB or connection"
  echo "spread = (max - min) / median over the rounds, the larger of the two sides"
  echo "load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  report
} | tee "${RESULTS%.txt}.table"
