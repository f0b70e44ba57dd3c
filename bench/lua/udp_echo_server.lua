-- UDP echo server: one light thread, a recvfrom -> sendto loop.
--   luajit udp_echo_server.lua [PORT]     (0 or none: pick a free port)
local asio = require 'asio'

local u = assert(asio.udp())
assert(u:bind('127.0.0.1', tonumber(arg[1]) or 0))
io.stdout:write('PORT ', select(2, u:local_address()), '\n')
io.stdout:flush()
asio.spawn_light_thread(function()
  while true do
    local data, ip, port = u:recvfrom()
    if data then u:sendto(data, ip, port) end
  end
end)
asio.run()
