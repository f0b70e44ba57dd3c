#!/bin/sh
# Builds the libFuzzer targets of fuzz/ into build-fuzz/ (clang, ASan+UBSan,
# the library's sources linked in) and runs each for a bounded time. Any
# crash, sanitizer report, leak, timeout or broken invariant fails the run.
#
# Usage: test/fuzz.sh [target...]    (default: all targets)
# Environment:
#   FUZZ_SECONDS   time per target, default 60
#   FUZZ_JOBS      targets run at once, default 5 (all; fuzz_abi and
#                  fuzz_address spend much of their time in system calls)
#   FUZZ_RSS_MB    memory limit per target, default 2048
#   CXX            the clang++ to use, default clang++
# The committed seeds (fuzz/corpus/<target>) are only read; inputs found to
# add coverage go to build-fuzz/corpus/<target>, crashes to
# build-fuzz/artifacts/<target>/, logs to build-fuzz/logs/<target>.log.
# On Debian/Ubuntu as root, clang and its libFuzzer runtime are installed
# when missing.
set -eu
cd "$(dirname "$0")/.."

SECONDS_EACH=${FUZZ_SECONDS:-60}
RSS_MB=${FUZZ_RSS_MB:-2048}
CXX=${CXX:-clang++}
# fuzz_tls_server is built only where OpenSSL's development files are.
ALL_TARGETS="fuzz_sockaddr fuzz_address fuzz_abi fuzz_udp fuzz_tls_server"
TARGETS=${*:-$ALL_TARGETS}
JOBS=${FUZZ_JOBS:-5}
if [ "$JOBS" -lt 1 ]; then JOBS=1; fi
OUT=build-fuzz

say() { echo "fuzz.sh: $*"; }

# --- toolchain --------------------------------------------------------------

apt_install() {
  tools/ensure-packages fuzz.sh "$@"
}

missing=""
command -v "$CXX" >/dev/null 2>&1 || missing="$missing clang"
command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
command -v make >/dev/null 2>&1 || missing="$missing make"
[ -f /usr/include/boost/asio.hpp ] || [ -n "${BOOST_INCLUDE:-}" ] || missing="$missing libboost-dev"
# shellcheck disable=SC2086 # one word per package
[ -z "$missing" ] || apt_install $missing

# libFuzzer and the sanitizer runtimes come in libclang-rt-<version>-dev on
# Debian 12 / Ubuntu 22.04 and later; probe by linking an empty target.
probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT
can_link_fuzzer() {
  printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char *, unsigned long) { return 0; }\n' \
    >"$probe_dir/probe.cpp"
  "$CXX" -fsanitize=fuzzer,address,undefined "$probe_dir/probe.cpp" -o "$probe_dir/probe" \
    >/dev/null 2>&1
}
if ! can_link_fuzzer; then
  major=$("$CXX" --version | sed -n 's/.*clang version \([0-9][0-9]*\).*/\1/p' | head -n 1)
  apt_install "libclang-rt-${major:-14}-dev"
  can_link_fuzzer || { say "$CXX cannot link -fsanitize=fuzzer" >&2; exit 1; }
fi

# --- build --------------------------------------------------------------------

say "building into $OUT/"
cmake -S fuzz -B "$OUT" -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$OUT" -j "$(nproc 2>/dev/null || echo 2)" >"$OUT/build.log" 2>&1 || {
  cat "$OUT/build.log"
  say "build failed" >&2
  exit 1
}

if [ -z "$*" ] && [ ! -x "$OUT/fuzz_tls_server" ]; then
  say "fuzz_tls_server not built (no OpenSSL development files: libssl-dev), skipped"
  TARGETS=$(echo "$TARGETS" | sed 's/ *fuzz_tls_server//')
fi

# --- run ------------------------------------------------------------------------

mkdir -p "$OUT/logs"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

run_target() {
  t=$1
  rm -rf "$OUT/artifacts/$t"
  mkdir -p "$OUT/corpus/$t" "$OUT/artifacts/$t"
  dict=""
  if [ -f "fuzz/$t.dict" ]; then dict="-dict=fuzz/$t.dict"; fi
  # The scratch corpus comes first: libFuzzer writes new inputs only there.
  # shellcheck disable=SC2086
  "$OUT/$t" -max_total_time="$SECONDS_EACH" -rss_limit_mb="$RSS_MB" -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t/" $dict \
    "$OUT/corpus/$t" "fuzz/corpus/$t" >"$OUT/logs/$t.log" 2>&1
}

say "running $TARGETS for ${SECONDS_EACH}s each, $JOBS at a time"
start=$(date +%s)
pids=""
running=0
for t in $TARGETS; do
  [ -x "$OUT/$t" ] || { say "no such target: $t" >&2; exit 1; }
  rm -f "$OUT/logs/$t.status"
  ( status=0; run_target "$t" || status=$?; echo "$status" >"$OUT/logs/$t.status" ) &
  pids="${pids:+$pids }$!"
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    # Wait for the oldest one still running before starting the next.
    oldest=${pids%% *}
    wait "$oldest" || true
    case $pids in *" "*) pids=${pids#* } ;; *) pids="" ;; esac
    running=$((running - 1))
  fi
done
wait

failed=""
for t in $TARGETS; do
  log="$OUT/logs/$t.log"
  status=$(cat "$OUT/logs/$t.status" 2>/dev/null || echo 1)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  new=$(find "$OUT/corpus/$t" -type f | wc -l)
  if [ "$status" -ne 0 ] ||
    grep -q -E 'ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer)|runtime error:|fuzz invariant failed' "$log"; then
    failed="$failed $t"
    echo "---- $t: FAILED (exit $status), end of $log:"
    grep -n -E 'fuzz invariant failed|ERROR:|runtime error:|SUMMARY|ALARM|Test unit written' "$log" | head -n 20
    grep -A 2 'fuzz invariant failed' "$log" | head -n 6
    for a in "$OUT/artifacts/$t"/*; do
      if [ -f "$a" ]; then echo "  reproduce: $OUT/$t $a"; fi
    done
  else
    echo "---- $t: ok, ${runs:-?} runs (${rate:-?}/s), $new inputs in $OUT/corpus/$t"
  fi
done
say "fuzzing took $(( $(date +%s) - start ))s"
if [ -n "$failed" ]; then
  say "FAILED:$failed" >&2
  exit 1
fi
say "clean"
