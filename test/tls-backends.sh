#!/bin/sh
# The TLS suite with each backend, and the rule that keeps TLS optional:
# the core library links no TLS library.
#   test/tls-backends.sh            OpenSSL (build/) and mbedTLS (build-mbedtls/)
# Installs libssl-dev and libmbedtls-dev when run as root and missing.
set -eu
cd "$(dirname "$0")/.."
tools/ensure-packages tls-backends.sh libssl-dev libmbedtls-dev openssl curl python3

status=0
for backend in openssl mbedtls; do
  dir=build-tls-$backend
  BUILD_DIR=$dir ./build.sh -DLUAASIO_TLS=$backend >/dev/null
  if ldd "$dir/libluaasio.so" | grep -E 'libssl|libcrypto|mbed'; then
    echo "tls-backends.sh: the core library links a TLS library ($backend build)" >&2
    status=1
  fi
  echo "== TLS suite, $backend backend: $(LUAASIO_LIB="$PWD/$dir/libluaasio.so" ./test/luajit -e \
    "local ok, b = require('asio').tls_available() print(b)")"
  LUAASIO_REQUIRE_TLS=1 LUAASIO_LIB="$PWD/$dir/libluaasio.so" \
    ./test/luajit ./test/test.lua tls >"$dir/tls.log" 2>&1 || status=1
  grep -E '^(ok|FAIL|skip)' "$dir/tls.log" | cut -c1-200
  tail -n 1 "$dir/tls.log"
  printf 'libluaasio_tls.so (%s): %s bytes, stripped %s bytes\n' "$backend" \
    "$(wc -c <"$dir/libluaasio_tls.so" | tr -d ' ')" \
    "$(strip -o "$dir/tls-stripped.so" "$dir/libluaasio_tls.so" && wc -c <"$dir/tls-stripped.so" | tr -d ' ')"
done
[ "$status" -eq 0 ] && echo "tls-backends.sh: both backends pass"
exit "$status"
