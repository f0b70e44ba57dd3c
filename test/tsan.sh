#!/bin/sh
# ThreadSanitizer check of the code shared between threads (src/threads.cpp,
# src/shared.cpp and the loop's cross-thread wake-up): builds
# test/tsan/threads_race.cpp with the library's sources, all instrumented,
# and runs it. No LuaJIT takes part (see the program's header), so every
# report is about this library's own code. Any report fails the run.
set -eu
cd "$(dirname "$0")/.."
CXX=${CXX:-g++}
[ -f build/generated/luaasio_cdef.inc ] || ./build.sh >/dev/null
out=build-tsan
mkdir -p "$out"
# ThreadSanitizer does not model standalone fences; Boost.Asio's handler
# fences are redundant with the io_context's own mutex, so they are left out.
# shellcheck disable=SC2046 # one word per source file
$CXX -std=c++17 -O1 -g -fsanitize=thread -fno-omit-frame-pointer -rdynamic -Wno-tsan \
  -DBOOST_ASIO_NO_DEPRECATED -DBOOST_ASIO_DISABLE_FENCED_BLOCK \
  -Iinclude -Isrc -Ibuild/generated \
  $(ls src/*.cpp) test/tsan/threads_race.cpp -o "$out/threads_race" -pthread -ldl
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" "$out/threads_race"
echo "tsan.sh: clean"
