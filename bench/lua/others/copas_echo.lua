-- Echo server on copas (LuaSocket and select()): a coroutine per
-- connection, receivePartial(65536) -> send.
--   luajit copas_echo.lua [PORT]
local copas = require 'copas'
local socket = require 'socket'

local srv = assert(socket.bind('127.0.0.1', tonumber(arg[1]) or 0))
local _, port = srv:getsockname()
copas.addserver(srv, function(c)
  c:setoption('tcp-nodelay', true)
  while true do
    local data, err, part = copas.receivePartial(c, 65536)
    data = data or part
    if data and #data > 0 and not copas.send(c, data) then break end
    if err and err ~= 'timeout' then break end
  end
  c:close()
end)
io.stdout:write('PORT ', port, '\n')
io.stdout:flush()
copas.loop()
