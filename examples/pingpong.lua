-- Server and client in one script: the client sends "ping1", the server
-- answers "ping1-pong". Run: ./test/luajit examples/pingpong.lua
local asio = require 'asio'

local s = assert(asio.server('127.0.0.1', 0, function(con)
  asio.spawn_light_thread(function(c)
    local data = c:read(5)
    c:write(data .. '-pong')
    c:close()
  end, con)
end))
local port = s:port()

asio.spawn_light_thread(function(text)
  local con = assert(asio.connect('localhost', port))
  con:write(text)
  print(con:read(10))
  con:close()
  s:close()
end, 'ping1')

asio.run()
