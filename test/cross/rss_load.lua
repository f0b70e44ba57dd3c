-- Load side of test/rss.sh, run natively: a backend that accepts and holds
-- every connection, and N clients that connect to examples/proxy_server.lua
-- at 127.0.0.1:PORT, send its destination header (the backend) and stay
-- open. Prints "ready N" once the backend holds all N relayed connections
-- (or "short K" after 60 s), then keeps everything open for HOLD seconds.
--
--   luajit rss_load.lua PORT N HOLD
local asio = require 'asio'
local port, n, hold = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3])

local held, accepted = {}, 0
local backend = assert(asio.server('127.0.0.1', 0, function(c)
  accepted = accepted + 1
  held[accepted] = c
end))
local bport = backend:port()
-- struct sockaddr_in of 127.0.0.1:bport in this host's byte order, padded
-- to 128 bytes and XORed with 0x79 (examples/proxy_server.lua's header).
local sa = string.char(2, 0, math.floor(bport / 256), bport % 256, 127, 0, 0, 1) .. ('\0'):rep(120)
local b = { sa:byte(1, -1) }
for i = 1, #b do b[i] = bit.bxor(b[i], 0x79) end
local header = string.char(unpack(b))

asio.spawn_light_thread(function()
  local conns = {}
  for i = 1, n do
    local c, err = asio.connect('127.0.0.1', port)
    if not c then
      io.write('connect ', i, ': ', tostring(err), '\n')
      os.exit(1)
    end
    assert(c:write(header))
    conns[i] = c
  end
  for _ = 1, 1200 do
    if accepted >= n then break end
    asio.sleep(0.05)
  end
  io.write(accepted >= n and 'ready ' or 'short ', accepted, '\n')
  io.flush()
  asio.sleep(hold)
  os.exit(0)
end)
asio.run()
