-- Echo server: one light thread per connection, a read_some -> write loop.
--   luajit echo_server.lua [PORT]     (0 or none: pick a free port)
local asio = require 'asio'

local function echo(conn)
  while true do
    local data, err = conn:read_some()
    -- read_some may hand over the last bytes together with 'eof'.
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
