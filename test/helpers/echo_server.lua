-- A child-process server for the fault and load tests.
-- Usage: echo_server.lua MODE   (prints "port N" once listening)
--   echo     echoes every connection until EOF
--   line     answers each line with its length
local asio = require 'asio'

local mode = arg[1] or 'echo'

local function echo(c)
  while true do
    local d, err = c:read_some()
    if d and #d > 0 and not c:write(d) then break end
    if err then break end
  end
  c:close()
end

local function line(c)
  while true do
    local l, err = c:read_line(4096)
    if not l then
      if err == 'line too long' then c:write('too long\n') end
      break
    end
    c:write(#l .. '\n')
  end
  c:close()
end

local handlers = { echo = echo, line = line }
local handler = assert(handlers[mode], 'unknown mode ' .. mode)

local srv = assert(asio.server('127.0.0.1', 0, function(c)
  asio.spawn_light_thread(handler, c)
end, { backlog = 1024 }))
io.stdout:write('port ', srv:port(), '\n')
io.stdout:flush()
asio.run()
