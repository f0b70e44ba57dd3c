#!/bin/sh
# Builds libluaasio with AddressSanitizer and UndefinedBehaviorSanitizer into
# build-asan/ and runs the whole test suite with the sanitizer runtimes
# preloaded into LuaJIT. Any sanitizer report fails the run, and so does a
# leak of the library's own allocations (checked when the runner exits).
# Usage: test/sanitize.sh [test filter]
set -eu
cd "$(dirname "$0")/.."

CXX=${CXX:-g++}
BUILD_DIR=build-asan ./build.sh -DLUAASIO_SANITIZE=address,undefined \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$CXX" >/dev/null

asan=$($CXX -print-file-name=libasan.so)
ubsan=$($CXX -print-file-name=libubsan.so)
log=build-asan/test.log
status=0
LUAASIO_PRELOAD="$asan $ubsan" \
LUAASIO_LIB="$PWD/build-asan/libluaasio.so" \
ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  ./test/luajit ./test/test.lua "$@" >"$log" 2>&1 || status=$?
cat "$log"
if grep -q -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$log"; then
  echo "sanitize.sh: sanitizer reports found (see above)" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "sanitize.sh: the test suite failed under sanitizers" >&2
  exit "$status"
fi
echo "sanitize.sh: clean"
