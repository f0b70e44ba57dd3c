-- Echo server without Lua strings: each connection reads into its own
-- buffer with read_some_into and writes it back with write(buf, n), as the
-- native server does with its session buffer.
--   luajit stream_server.lua [PORT]     (0 or none: pick a free port)
local ffi = require 'ffi'
local asio = require 'asio'

ffi.cdef [[
void *malloc(size_t);
void free(void *);
]]
local BUF = 65536

local function echo(conn)
  -- From malloc and never cleared, like the native session's buffer: pages
  -- count in RSS only once data has touched them.
  local buf = ffi.gc(ffi.cast('char *', ffi.C.malloc(BUF)), ffi.C.free)
  while true do
    local n = conn:read_some_into(buf, BUF)
    if not n or not conn:write(buf, n) then break end
  end
  conn:close()
end

local srv = assert(asio.server('127.0.0.1', tonumber(arg[1]) or 0, function(conn)
  asio.spawn_light_thread(echo, conn)
end))
io.stdout:write('PORT ', srv:port(), '\n')
io.stdout:flush()
asio.run()
