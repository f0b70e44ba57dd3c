-- The ping-pong server: reads 5 bytes, answers them with "-pong" appended.
-- Run: ./test/luajit examples/pingpong_server.lua [port]   (default 1234; 0 picks one)
local asio = require 'asio'

local port = tonumber(arg[1] or 1234)
local s = assert(asio.server('127.0.0.1', port, function(con)
  asio.spawn_light_thread(function(c)
    local data = c:read(5)
    if data then c:write(data .. '-pong') end
    c:close()
  end, con)
end))
print('listening on ' .. s:port())
io.stdout:flush()

asio.run()
