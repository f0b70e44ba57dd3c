#!/bin/sh
# Runs the core, feature and decoder tests under valgrind memcheck against the
# regular build; any memcheck error or definite leak fails the run.
# Usage: test/valgrind.sh [test filter]   (default: core, features, sockaddr, threads, udp, compat)
set -eu
cd "$(dirname "$0")/.."
[ -f build/libluaasio.so ] || ./build.sh >/dev/null

run() {
  LUAASIO_INSTRUMENTED=valgrind \
  LUAJIT="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite -q --suppressions=$PWD/test/valgrind.supp luajit" \
    ./test/luajit ./test/test.lua "$1"
}
if [ $# -gt 0 ]; then
  run "$1"
else
  for suite in core features sockaddr threads udp compat sched sync tls relay; do run "$suite:"; done
fi
echo "valgrind.sh: clean"
