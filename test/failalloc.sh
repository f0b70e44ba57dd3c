#!/bin/sh
# Allocation-failure test: builds test/failalloc/failalloc.cpp with the
# library's sources, an operator new that fails the n-th allocation, and
# ASan+UBSan, then fails each allocation of its scenario in turn. Any lost
# completion, leak, leftover object or sanitizer report fails the run.
set -eu
cd "$(dirname "$0")/.."
CXX=${CXX:-g++}
[ -f build/generated/luaasio_cdef.inc ] || ./build.sh >/dev/null
out=build-failalloc
mkdir -p "$out"
# shellcheck disable=SC2046 # one word per source file
$CXX -std=c++17 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
  -fno-omit-frame-pointer -rdynamic -DBOOST_ASIO_NO_DEPRECATED \
  -Iinclude -Isrc -Ibuild/generated \
  $(ls src/*.cpp) test/failalloc/failalloc.cpp -o "$out/failalloc" -pthread -ldl
ASAN_OPTIONS="detect_leaks=1:halt_on_error=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
  "$out/failalloc" "$@"
echo "failalloc.sh: clean"
