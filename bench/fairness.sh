#!/usr/bin/env bash
# bench/fairness.sh - a 10 ms ticker next to a light thread reading 1M
# buffered short lines, with this checkout's Lua modules ("new") and those of
# an older revision ("old", default: before the cooperative budget),
# interleaved over ROUNDS. The ticker's longest gap should stay under 50 ms.
#   ROUNDS=5 LINES=1000000 OLD=<revision> bench/fairness.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${ROUNDS:=3}" "${LINES:=1000000}"
OUT=build/bench/fairness
[[ -f build/libluaasio.so ]] || ./build.sh >/dev/null
if [[ -z ${OLD:-} ]]; then
  OLD=$(git log --format=%H -1 --grep='^Give each light thread a cooperative budget')^
fi
rm -rf "$OUT/old"; mkdir -p "$OUT/old/asio"
for f in $(git ls-tree --name-only "$OLD" lua/asio/); do git show "$OLD:$f" >"$OUT/old/asio/${f##*/}"; done
git show "$OLD:lua/asio.lua" >"$OUT/old/asio.lua"
for ((r = 1; r <= ROUNDS; r++)); do
  for variant in old new; do
    if [[ $variant == old ]]; then path="$ROOT/$OUT/old/?.lua;;"; else path="$ROOT/lua/?.lua;;"; fi
    printf '%s round %d: ' "$variant" "$r"
    LUA_PATH="$path" LUAASIO_LIB="$ROOT/build/libluaasio.so" timeout 120 luajit bench/lua/fairness.lua "$LINES"
  done
done
