// Serves the ABI declarations to lua/asio.lua, generated from the header at
// build time, so the library and its declarations cannot drift apart.
#include "loop.hpp"

LUAASIO_EXPORT const char *luaasio_cdef(void) {
  return
#include "luaasio_cdef.inc"
      ;
}
