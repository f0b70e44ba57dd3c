-- An echo server: every byte a client sends comes back to it.
-- Run: ./test/luajit examples/echo_server.lua [ip] [port]   (default 127.0.0.1 7000)
local asio = require 'asio'

local ip, port = arg[1] or '127.0.0.1', tonumber(arg[2] or 7000)

local s = assert(asio.server(ip, port, function(con)
  asio.spawn_light_thread(function(c)
    while true do
      local data, err = c:read_some()
      if data and #data > 0 and not c:write(data) then break end
      if err then break end
    end
    c:close()
  end, con)
end))
-- an IPv6 address goes in brackets, as in a URL: [::]:7000
local shown = ip:find(':', 1, true) and '[' .. ip .. ']' or ip
print(('echo server listening on %s:%d'):format(shown, s:port()))
io.stdout:flush()

asio.run()
