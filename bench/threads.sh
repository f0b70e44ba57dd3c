#!/usr/bin/env bash
# bench/threads.sh - servers on several threads ({threads = N}).
#
#   bench/threads.sh                                  THREADS="0 1 2", 5 rounds
#   THREADS="1 2 4 8" ROUNDS=7 bench/threads.sh       on a bigger machine
#   MODES="echo http" DISTS="handoff reuseport" SECONDS_RUN=3 bench/threads.sh
#
# For every mode, round and thread count (interleaved, so that drift of a
# shared machine spreads over all of them) it starts
# bench/lua/threads_server.lua and loads it with bench's loadgen (echo,
# pingpong) or wrk (http keep-alive "hello world"), and reports medians of
# requests/s and server CPU per request, the ratio of CPU per request against
# threads = 1, and how connections spread over the workers.
#
# THREADS=0 is a plain server without workers, for reference. Servers run
# on the cores 0..N-1 and the load generator on the cores after them; with
# fewer cores than that (this 2-core machine), every server thread shares
# core 0 and the load generator has core 1, so the figure that matters is
# CPU per request at threads = 2 against threads = 1: what contention and
# the hand-off cost.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=build/bench-threads
mkdir -p "$OUT/log"
: "${THREADS:=0 1 2}" "${ROUNDS:=5}" "${SECONDS_RUN:=3}" "${WARMUP:=0.5}"
: "${MODES:=echo pingpong http}" "${DISTS:=handoff reuseport}" "${CONNS:=50}"
NCPU=$(nproc)

log() { printf '%s\n' "$*" >&2; }

for tool in taskset wrk g++; do
  command -v "$tool" >/dev/null || { log "threads.sh: needs $tool (apt-get install util-linux wrk g++)"; exit 2; }
done
[[ -f build/libluaasio.so ]] || ./build.sh >/dev/null
if [[ ! -x $OUT/loadgen || bench/loadgen.cpp -nt $OUT/loadgen ]]; then
  g++ -std=c++17 -O2 -pthread -o "$OUT/loadgen" bench/loadgen.cpp
fi

# cpus N -> "server_cpus client_cpus"
cpus() {
  local n=$1 need=$(( $1 > 0 ? $1 : 1 ))
  if (( need + 1 <= NCPU )); then
    echo "0-$((need - 1)) $need-$((NCPU - 1))"
  else
    echo "0 $((NCPU - 1))"
  fi
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

SERVER_PID=
cleanup() { [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true; }
trap cleanup EXIT

RESULTS=$OUT/results.txt
: >"$RESULTS"
lifetime=$(awk -v w="$WARMUP" -v s="$SECONDS_RUN" 'BEGIN { print w + s + 2 }')

run_one() { # MODE THREADS DIST ROUND
  local mode=$1 n=$2 dist=$3 round=$4 scpu ccpu port extra=
  read -r scpu ccpu <<<"$(cpus "$n")"
  [[ $dist == reuseport ]] && extra=reuseport
  local slog=$OUT/log/server-$mode-$n-$dist-$round.log
  : >"$slog"
  taskset -c "$scpu" ./test/luajit \
    bench/lua/threads_server.lua "$mode" "$n" "$lifetime" $extra >"$slog" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 200); do
    port=$(sed -n 's/^PORT //p' "$slog")
    [[ -n $port ]] && break
    sleep 0.02
  done
  [[ -n $port ]] || { log "server did not start:"; cat "$slog" >&2; return 1; }
  sleep 0.3   # workers bind and start
  local rps cpu_us
  if [[ $mode == http ]]; then
    local t0 t1 out reqs secs
    t0=$(cpu_ticks "$SERVER_PID")
    out=$(taskset -c "$ccpu" wrk -t1 -c"$CONNS" -d"${SECONDS_RUN}s" "http://127.0.0.1:$port/" 2>&1)
    t1=$(cpu_ticks "$SERVER_PID")
    reqs=$(sed -n 's/^ *\([0-9]*\) requests in \([0-9.]*\)s.*/\1/p' <<<"$out")
    secs=$(sed -n 's/^ *[0-9]* requests in \([0-9.]*\)s.*/\1/p' <<<"$out")
    rps=$(awk -v r="$reqs" -v s="$secs" 'BEGIN { printf "%.0f", r / s }')
    cpu_us=$(awk -v a="$t0" -v b="$t1" -v r="$reqs" -v hz="$(getconf CLK_TCK)" \
      'BEGIN { printf "%.3f", (b - a) / hz * 1e6 / r }')
  else
    local res
    res=$(taskset -c "$ccpu" "$OUT/loadgen" "$mode" --port "$port" --conns "$CONNS" \
      --seconds "$SECONDS_RUN" --warmup "$WARMUP" --pid "$SERVER_PID" | grep '^RESULT')
    rps=$(sed -n 's/.* \(rps\|cps\)=\([0-9.]*\).*/\2/p' <<<"$res")
    cpu_us=$(sed -n 's/.* cpu_us_per_[a-z]*=\([0-9.]*\).*/\1/p' <<<"$res")
  fi
  wait "$SERVER_PID" || true
  SERVER_PID=
  local spread
  spread=$(sed -n 's/^SPREAD //p' "$slog")
  printf '%s %s %s %s %s %s %s\n' "$mode" "$n" "$dist" "$round" "$rps" "$cpu_us" "${spread:--}" >>"$RESULTS"
  log "$(printf '%-8s threads=%-3s %-9s r%s  rps=%-8s cpu_us/req=%-7s spread=%s' \
    "$mode" "$n" "$dist" "$round" "$rps" "$cpu_us" "${spread:--}")"
}

log "threads.sh: $NCPU cores; THREADS=\"$THREADS\" MODES=\"$MODES\" DISTS=\"$DISTS\" ROUNDS=$ROUNDS, ${SECONDS_RUN}s each"
for round in $(seq "$ROUNDS"); do
  for mode in $MODES; do
    for n in $THREADS; do
      for dist in $DISTS; do
        # reuseport means nothing without workers
        [[ $n == 0 && $dist == reuseport ]] && continue
        run_one "$mode" "$n" "$dist" "$round"
      done
    done
  done
done

python3 - "$RESULTS" <<'EOF'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
groups = {}
for mode, n, dist, rnd, rps, cpu, spread in rows:
    groups.setdefault((mode, int(n), dist), []).append((float(rps), float(cpu), spread))
def spread_pct(vals):
    m = statistics.median(vals)
    return 100 * (max(vals) - min(vals)) / m if m else 0
print(f"{'mode':9}{'threads':>8} {'dist':10}{'rps':>10}{'cpu_us/req':>12}{'spread':>8}{'vs t=1':>8}  {'conns per worker (median round)':s}")
for (mode, n, dist), v in sorted(groups.items()):
    rps = statistics.median(x[0] for x in v)
    cpu = [x[1] for x in v]
    base = groups.get((mode, 1, 'handoff'))
    ratio = statistics.median(cpu) / statistics.median(x[1] for x in base) if base else float('nan')
    mid = sorted(v, key=lambda x: x[1])[len(v) // 2][2]
    print(f"{mode:9}{n:>8} {dist:10}{rps:>10.0f}{statistics.median(cpu):>12.2f}{spread_pct(cpu):>7.0f}%{ratio:>8.3f}  {mid}")
EOF
