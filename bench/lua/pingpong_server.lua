-- Ping-pong server: read 5 bytes, answer them followed by "-pong", close.
--   luajit pingpong_server.lua [PORT]
local asio = require 'asio'

local function pong(conn)
  local data = conn:read(5)
  if data then conn:write(data .. '-pong') end
  conn:close()
end

local srv = assert(asio.server('127.0.0.1', tonumber(arg[1]) or 0, function(conn)
  asio.spawn_light_thread(pong, conn)
end))
io.stdout:write('PORT ', srv:port(), '\n')
io.stdout:flush()
asio.run()
