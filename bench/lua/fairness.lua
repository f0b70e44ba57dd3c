-- One light thread reads LINES short lines while a 10 ms ticker runs, doing
-- WORK additions per line as a parser would; the connection's receive
-- buffer is filled first, so that most reads complete without waiting.
-- Prints the ticker's longest gap and the read rate.
--   luajit fairness.lua [LINES [WORK]]
local asio = require 'asio'
local lines = tonumber(arg[1]) or 1000000
local work = tonumber(arg[2]) or 100

local srv = assert(asio.server('127.0.0.1', 0, function(c)
  asio.spawn_light_thread(function()
    local chunk = ('0123456789\n'):rep(10000)
    for _ = 1, lines / 10000 do c:write(chunk) end
    c:close()
  end)
end))

asio.spawn_light_thread(function()
  local c = assert(asio.connect('127.0.0.1', srv:port()))
  c:setoption('rcvbuf', 16 * 1024 * 1024)
  srv:close()
  asio.sleep(0.3)   -- let the sender fill the buffers
  local done, worst, last = false, 0, asio.now()
  asio.spawn_light_thread(function()
    while not done do
      asio.sleep(0.01)
      local now = asio.now()
      if now - last > worst then worst = now - last end
      last = now
    end
  end)
  local t0, n = asio.now(), 0
  local x = 0
  while c:read_line() do
    n = n + 1
    for k = 1, work do x = x + k end
  end
  local took = asio.now() - t0
  done = true
  -- a ticker that never got a turn has been waiting since its last tick
  if asio.now() - last > worst then worst = asio.now() - last end
  c:close()
  print(('RESULT lines=%d seconds=%.3f lines_per_s=%.0f longest_ticker_gap_ms=%.1f'):format(
    n, took, n / took, worst * 1000))
end)
asio.run()
