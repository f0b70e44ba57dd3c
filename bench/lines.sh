#!/usr/bin/env bash
# bench/lines.sh - line reading (read_line) next to read(n) of the same
# bytes, for 10-, 100- and 1,000-byte lines and one 16 MiB line, with the
# Lua modules of this checkout ("new") and of an older revision ("old",
# default: the revision before line reading became linear), interleaved in
# one run. Prints medians over ROUNDS and the ratios the targets name:
#   - the 16 MiB line within 2x the time of read(16 MiB), new;
#   - 10-byte lines at >= 3x the old rate.
#
#   bench/lines.sh                  ROUNDS=5, 8 MB of short lines per case
#   ROUNDS=3 TOTAL=4000000 bench/lines.sh
#   OLD=<git revision> bench/lines.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
: "${ROUNDS:=5}" "${TOTAL:=8000000}"
OUT=build/bench/lines
mkdir -p "$OUT"
[[ -f build/libluaasio.so ]] || ./build.sh

if [[ -z ${OLD:-} ]]; then
  OLD=$(git log --format=%H -1 --grep='^Read lines and buffered bytes in linear time')^
fi
rm -rf "$OUT/old"
mkdir -p "$OUT/old/asio"
for f in $(git ls-tree --name-only "$OLD" lua/asio/); do git show "$OLD:$f" > "$OUT/old/asio/${f##*/}"; done
git show "$OLD:lua/asio.lua" > "$OUT/old/asio.lua"
# The library is this checkout's: follow the one ABI function renamed since.
sed -i 's/luaasio_read_first/luaasio_read_wait_cheap_after_eagain/g' "$OUT"/old/asio/*.lua
echo "old: $(git rev-parse --short "$OLD"), new: this checkout" >&2

RAW="$OUT/results-$(date +%Y%m%d-%H%M%S).txt"
for ((r = 1; r <= ROUNDS; r++)); do
  for len in 10 100 1000 16777216; do
    total=$TOTAL
    ((len > total)) && total=$len
    for variant in old new; do
      if [[ $variant == old ]]; then path="$ROOT/$OUT/old/?.lua;;"; else path="$ROOT/lua/?.lua;;"; fi
      LUA_PATH="$path" LUAASIO_LIB="$ROOT/build/libluaasio.so" timeout 300 luajit bench/lua/lines.lua "$len" "$total" |
        sed "s/^RESULT /RESULT variant=$variant round=$r /" | tee -a "$RAW" >&2
    done
  done
done

# medians and ratios
awk '
function median(key,   n, i, j, a, t) {
  n = split(vals[key], a, " ")
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function range(key,   n, i, a, lo, hi) {
  n = split(vals[key], a, " "); lo = a[1]; hi = a[1]
  for (i = 2; i <= n; i++) { if (a[i] < lo) lo = a[i]; if (a[i] > hi) hi = a[i] }
  return sprintf("%.4f-%.4f", lo, hi)
}
/^RESULT/ {
  for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
  key = f["variant"] " " f["len"] " " f["op"]
  vals[key] = vals[key] " " f["secs"]; lines[f["len"]] = f["lines"]; bytes[f["len"]] = f["bytes"]
}
END {
  printf "%-9s %-9s %-6s %10s %15s %12s  %s\n", "line", "op", "code", "median s", "range s", "lines/s", "MB/s"
  split("10 100 1000 16777216", lens, " ")
  for (l = 1; l <= 4; l++) {
    len = lens[l]
    for (v = 1; v <= 2; v++) {
      variant = v == 1 ? "old" : "new"
      split("read_line read", ops, " ")
      for (o = 1; o <= 2; o++) {
        key = variant " " len " " ops[o]; m = median(key)
        printf "%-9s %-9s %-6s %10.4f %15s %12.0f  %.1f\n", len, ops[o], variant, m, range(key), lines[len] / m, bytes[len] / m / 1e6
      }
    }
  }
  big = 16777216
  printf "\n16 MiB line, new: read_line / read(16 MiB) time = %.2f (target <= 2)\n", median("new " big " read_line") / median("new " big " read")
  printf "10-byte lines: new / old read_line rate = %.2f (target >= 3)\n", median("old 10 read_line") / median("new 10 read_line")
  printf "100-byte lines: new / old read_line rate = %.2f\n", median("old 100 read_line") / median("new 100 read_line")
  printf "1000-byte lines: new / old read_line rate = %.2f\n", median("old 1000 read_line") / median("new 1000 read_line")
  printf "16 MiB line: new / old read_line speed = %.2f\n", median("old " big " read_line") / median("new " big " read_line")
}' "$RAW" | tee "${RAW%.txt}.table"
