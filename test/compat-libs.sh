#!/bin/sh
# Fetches the Lua client libraries the compatibility tests run unchanged:
# lua-resty-redis and lua-resty-memcached (Debian's lua-nginx-* packages,
# which would pull in nginx and OpenResty's LuaJIT if installed, so they are
# only unpacked) and redis-lua. Unpacked into build/compat/root.
set -eu
cd "$(dirname "$0")/.."
dir=build/compat
[ -f "$dir/root/usr/share/lua/5.1/nginx/redis.lua" ] &&
  [ -f "$dir/root/usr/share/lua/5.1/nginx/memcached.lua" ] &&
  [ -f "$dir/root/usr/share/lua/5.1/redis.lua" ] && exit 0
mkdir -p "$dir"
cd "$dir"
apt-get download lua-nginx-redis lua-nginx-memcached lua-redis >/dev/null 2>&1 || {
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get download lua-nginx-redis lua-nginx-memcached lua-redis >/dev/null
}
for f in lua-nginx-redis_*.deb lua-nginx-memcached_*.deb lua-redis_*.deb; do dpkg -x "$f" root; done
