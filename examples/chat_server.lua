-- A chat server: every line a client sends goes to every other client.
--
--   luajit chat_server.lua [PORT]      (0 or none: pick a free port)
--
-- Each client has a queue of lines to send and a light thread that writes
-- them, so one slow client never holds up the others: when its queue is
-- full it is disconnected instead.
local asio = require 'asio'

local clients = {}          -- connection -> its outgoing queue
local QUEUE_LIMIT = 256

local function broadcast(from, line)
  for conn, q in pairs(clients) do
    if conn ~= from then
      -- push with a zero timeout never waits: a full queue means a client
      -- that does not keep up
      if not q:push(line, 0) then
        q:close()
        clients[conn] = nil
        conn:close()
      end
    end
  end
end

local srv = assert(asio.server('127.0.0.1', tonumber(arg[1]) or 0, function(conn)
  local q = asio.queue(QUEUE_LIMIT)
  clients[conn] = q
  asio.spawn_light_thread(function()          -- the writer
    while true do
      local line = q:pop()
      if not line or not conn:write(line) then break end
    end
  end)
  asio.spawn_light_thread(function()          -- the reader
    conn:settimeout(300)
    while true do
      local line = conn:read_line(4096)
      if not line then break end
      broadcast(conn, line .. '\n')
    end
    if clients[conn] then
      clients[conn] = nil
      q:close()
      conn:close()
    end
  end)
end))

io.stdout:write('chat server listening on port ', srv:port(), '\n')
io.stdout:flush()
asio.run()
