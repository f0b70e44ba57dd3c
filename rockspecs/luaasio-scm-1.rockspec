-- LuaRocks package of LuaAsio, built from a checkout with CMake:
--
--   luarocks make rockspecs/luaasio-scm-1.rockspec          (from the checkout)
--   luarocks make rockspecs/luaasio-scm-1.rockspec BOOST_INCDIR=C:\boost_1_74_0
--
-- LuaAsio needs LuaJIT (it binds its library through the FFI), CMake, a
-- C++17 compiler and the Boost headers (1.74 or later; header-only).
-- The library lands in the tree's lib/lua/5.1/ (libluaasio.so, or
-- luaasio.dll on Windows) and asio.lua in share/lua/5.1/; asio.lua finds the
-- library through package.cpath, so require 'asio' works from any directory.
-- When OpenSSL's development files are found (libssl-dev), the optional TLS
-- library libluaasio_tls.so is built and installed next to libluaasio.so;
-- without them the rock has no TLS and asio.tls_available() says why.
rockspec_format = "3.0"
package = "luaasio"
version = "scm-1"

source = {
  -- `luarocks make` builds the checkout it runs in and never fetches this;
  -- set the address of the published repository before `luarocks upload`.
  url = "git+https://example.invalid/luaasio.git",
}

description = {
  summary = "Non-blocking TCP for LuaJIT that reads like blocking code",
  detailed = [[
Light threads (coroutines) call conn:read(n), conn:write(s),
asio.connect(host, port) or asio.sleep(sec) as if they blocked; the loop runs
the others meanwhile. Boost.Asio underneath, bound through the LuaJIT FFI.
Linux (including OpenWrt routers) and Windows.]],
  license = "MIT",
  labels = { "networking", "luajit", "ffi", "async" },
}

dependencies = {
  "lua >= 5.1, < 5.2", -- LuaJIT reports itself as Lua 5.1
}

external_dependencies = {
  BOOST = { header = "boost/asio.hpp" },
}

build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    -- LuaRocks deploys what lands in $(LIBDIR) to lib/lua/5.1 and what lands
    -- in $(LUADIR) to share/lua/5.1 of the tree. A DLL is a RUNTIME file.
    CMAKE_INSTALL_LIBDIR = "$(LIBDIR)",
    CMAKE_INSTALL_BINDIR = "$(LIBDIR)",
    LUAASIO_INSTALL_LUADIR = "$(LUADIR)",
    BOOST_INCLUDE = "$(BOOST_INCDIR)",
    LUAASIO_TLS = "auto",
  },
}
