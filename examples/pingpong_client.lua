-- The ping-pong client. Run: ./test/luajit examples/pingpong_client.lua [port] [count]
local asio = require 'asio'

local port = tonumber(arg[1] or 1234)
local count = tonumber(arg[2] or 1)

for i = 1, count do
  asio.spawn_light_thread(function(text)
    local con, err = asio.connect('localhost', port)
    if not con then
      print('connect failed: ' .. err)
      return
    end
    con:write(text)
    print(con:read(10))
    con:close()
  end, 'ping' .. (i % 10))
end

asio.run()
