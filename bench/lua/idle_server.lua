-- Idle-connection server: the echo server, measured while every light thread
-- sits blocked in read_some() on a connection that sends nothing.
--   luajit idle_server.lua [PORT]
local asio = require 'asio'

local function echo(conn)
  while true do
    local data, err = conn:read_some()
    if data and #data > 0 and not conn:write(data) then break end
    if err then break end
  end
  conn:close()
end

local srv = assert(asio.server('127.0.0.1', tonumber(arg[1]) or 0, function(conn)
  asio.spawn_light_thread(echo, conn)
end))
io.stdout:write('PORT ', srv:port(), '\n')
io.stdout:flush()
asio.run()
