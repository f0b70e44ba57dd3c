#!/bin/sh
# Checks both install layouts against the system LuaJIT, from a directory
# outside the checkout and without LUAASIO_LIB:
#  1. `luarocks make` of rockspecs/luaasio-scm-1.rockspec (cmake build type)
#     into a private tree, build/rocktree, with Debian's luarocks configured
#     for LuaJIT (LUA_INCDIR from libluajit-5.1-dev, LUA=luajit);
#  2. `cmake --install` of build/ into build/install-check (lib/ and
#     share/lua/5.1/), found through LUA_PATH/LUA_CPATH.
# In each, `require 'asio'` must load the installed library and serve an
# echo round trip. Run as root on Debian, it installs what is missing.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

tools/ensure-packages luarocks.sh luarocks luajit libluajit-5.1-dev cmake g++ make libboost-dev

luajit=$(command -v luajit)
incdir=$(pkg-config --variable=includedir luajit 2>/dev/null || true)
[ -f "$incdir/lua.h" ] || incdir=$(dirname "$(find /usr/include -name lua.h -path '*luajit*' | head -1)")
tree=$here/build/rocktree
work=$(mktemp -d /tmp/luaasio-rocks.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
unset LUAASIO_LIB LUA_PATH LUA_CPATH LUA_INIT

# An echo round trip; prints the library file that was mapped.
cat >"$work/check.lua" <<'EOF'
local asio = require 'asio'
local srv = assert(asio.server('127.0.0.1', 0, function(c)
  asio.spawn_light_thread(function()
    c:write(c:read(5))
    c:close()
  end)
end))
local got
asio.spawn_light_thread(function()
  local c = assert(asio.connect('127.0.0.1', srv:port()))
  c:write('hello')
  got = c:read(5)
  c:close()
  srv:close()
end)
asio.run()
assert(got == 'hello', 'echo failed: ' .. tostring(got))
local lib
for line in io.lines('/proc/self/maps') do
  lib = lib or line:match('(/%S*luaasio%S*)')
end
print('asio.lua from ' .. package.searchpath('asio', package.path) .. ', library ' .. tostring(lib))
EOF

# 1. luarocks make, with a private configuration for LuaJIT.
cat >"$work/config.lua" <<EOF
lua_interpreter = "luajit"
variables = {
  LUA_DIR = "/usr",
  LUA_BINDIR = "$(dirname "$luajit")",
  LUA_INCDIR = "$incdir",
  LUA = "$luajit",
}
EOF
rm -rf "$tree" build.luarocks
LUAROCKS_CONFIG=$work/config.lua luarocks --tree "$tree" --lua-version 5.1 \
  make rockspecs/luaasio-scm-1.rockspec
rm -rf build.luarocks
echo "luarocks.sh: installed files:"
find "$tree" -path '*luaasio*' -o -name 'asio.lua' | sed "s|^$here/||;s|^|  |"
(
  cd "$work"
  eval "$(LUAROCKS_CONFIG=$work/config.lua luarocks --tree "$tree" --lua-version 5.1 path)"
  out=$("$luajit" check.lua)
  echo "luarocks.sh: luarocks tree: $out"
  case $out in *"$tree/lib/lua/5.1/"*) ;; *) echo "luarocks.sh: not the tree's library" >&2; exit 1 ;; esac
)

# 2. cmake --install of the regular build.
[ -f build/CMakeCache.txt ] || ./build.sh >/dev/null
cmake --build build >/dev/null
prefix=$here/build/install-check
rm -rf "$prefix"
cmake --install build --prefix "$prefix" >/dev/null
libdir=$(dirname "$(find "$prefix" -name 'libluaasio.so' | head -1)")
(
  cd "$work"
  LUA_PATH="$prefix/share/lua/5.1/?.lua;;" LUA_CPATH="$libdir/?.so;;" "$luajit" check.lua >"$work/out" 
  echo "luarocks.sh: cmake --install: $(cat "$work/out")"
  grep -q "$libdir/libluaasio.so" "$work/out"
)
echo "luarocks.sh: ok"
