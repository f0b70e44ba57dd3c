-- Echo server on cqueues: a coroutine per connection, read(-65536) (what is
-- there, up to 64 KiB) -> write, output unbuffered.
--   luajit cqueues_echo.lua [PORT]
local cqueues = require 'cqueues'
local socket = require 'cqueues.socket'

local cq = cqueues.new()
local srv = assert(socket.listen { host = '127.0.0.1', port = tonumber(arg[1]) or 0, nodelay = true })
assert(srv:listen())
local _, _, port = srv:localname()
io.stdout:write('PORT ', port, '\n')
io.stdout:flush()

cq:wrap(function()
  for c in srv:clients() do
    cq:wrap(function()
      c:setmode('b', 'bn')
      while true do
        local data = c:read(-65536)
        if not data or not c:write(data) then break end
      end
      c:close()
    end)
  end
end)
assert(cq:loop())
