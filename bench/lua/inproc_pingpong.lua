-- In-process ping-pong: server and client light threads in one LuaJIT
-- process. CONNS connections each do 50-byte request/reply round trips for
-- SECONDS; prints the total round trips per second.
--   luajit inproc_pingpong.lua [SECONDS=5] [CONNS=10]
local asio = require 'asio'

local seconds, conns, size = tonumber(arg[1]) or 5, tonumber(arg[2]) or 10, 50
local msg = string.rep('x', size)

-- A failed assert in a light thread would otherwise leave run() waiting forever.
asio.on_error(function(err, tb)
  io.stderr:write('inproc_pingpong: ', tostring(err), '\n', tostring(tb), '\n')
  os.exit(1)
end)

local function serve(conn)
  while true do
    local data = conn:read(size)
    if not data or not conn:write(data) then break end
  end
  conn:close()
end

local srv = assert(asio.server('127.0.0.1', 0, function(conn)
  asio.spawn_light_thread(serve, conn)
end))

local trips, running = 0, conns
local deadline = asio.now() + seconds

local function client()
  local conn = assert(asio.connect('127.0.0.1', srv:port()))
  while asio.now() < deadline do
    assert(conn:write(msg))
    local reply, err = conn:read(size)
    assert(reply == msg, 'bad reply: ' .. tostring(err or reply))
    trips = trips + 1
  end
  conn:close()
  running = running - 1
  if running == 0 then srv:close() end
end

local t0 = asio.now()
for _ = 1, conns do asio.spawn_light_thread(client) end
asio.run()
local elapsed = asio.now() - t0
print(string.format('RESULT mode=inproc conns=%d size=%d seconds=%.3f round_trips=%d rtt_s=%.1f',
  conns, size, elapsed, trips, trips / elapsed))
