-- A server on several threads, for bench/threads.sh.
--   luajit threads_server.lua MODE THREADS LIFETIME [reuseport]
-- MODE: echo (read_some -> write), pingpong (5 bytes -> "-pong", close) or
-- http (keep-alive "hello world"). THREADS: a number; 0 means a plain
-- server without workers. After LIFETIME seconds it prints how many
-- connections each worker took, closes, and exits.
local asio = require 'asio'

local mode, nthreads, lifetime = arg[1], tonumber(arg[2]), tonumber(arg[3])
local reuseport = arg[4] == 'reuseport'

local handlers = {}

function handlers.echo(conn)
  asio.spawn_light_thread(function()
    while true do
      local data, err = conn:read_some()
      if data and #data > 0 and not conn:write(data) then break end
      if err then break end
    end
    conn:close()
  end)
end

function handlers.pingpong(conn)
  asio.spawn_light_thread(function()
    local data = conn:read(5)
    if data then conn:write(data .. '-pong') end
    conn:close()
  end)
end

local RESPONSE = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nhello world\n'

function handlers.http(conn)
  asio.spawn_light_thread(function()
    while true do
      local head = conn:read_until('\r\n\r\n', 65536)
      if not head then break end
      if not conn:write(RESPONSE) then break end
    end
    conn:close()
  end)
end

local serve = assert(handlers[mode], 'mode: echo, pingpong or http')
-- Each worker counts the connections it got, whichever way they came.
local spread = asio.shared('bench-spread', 65536)
local function handler(conn)
  asio.shared('bench-spread'):incr('w' .. (WORKER_ID or 0), 1, 0)
  serve(conn)
end
local opts = nthreads > 0 and {
  threads = nthreads,
  reuseport = reuseport,
  init = function() WORKER_ID = asio.shared('bench-spread'):incr('ids', 1, 0) end,
} or nil
local srv = assert(asio.server('127.0.0.1', 0, handler, opts))
io.stdout:write('PORT ', srv:port(), '\n')
io.stdout:flush()

asio.spawn_light_thread(function()
  asio.sleep(lifetime)
  local parts = {}
  for i = 1, math.max(nthreads, 1) do
    parts[i] = tostring(spread:get('w' .. (nthreads > 0 and i or 0)) or 0)
  end
  io.stdout:write('SPREAD ', table.concat(parts, ','), '\n')
  io.stdout:flush()
  os.exit(0, true)
end)
asio.run()
