-- Shared by proxy_client.lua and proxy_server.lua: full-duplex relaying with
-- half-close, the XOR 0x79 header encoding, and log formatting.
local asio = require 'asio'
local bit = require 'bit'

local M = {}

function M.logger(name)
  io.stdout:setvbuf('line')
  return function(...)
    print(os.date('%H:%M:%S') .. ' ' .. name .. ': ' .. string.format(...))
  end
end

function M.hostport(ip, port)
  return string.format(ip:find(':', 1, true) and '[%s]:%s' or '%s:%s', ip, port)
end

-- The obfuscation of the destination header (its own inverse).
function M.xor79(s)
  local b = { s:byte(1, -1) }
  for i = 1, #b do b[i] = bit.bxor(b[i], 0x79) end
  return string.char(unpack(b))
end

-- Copies a -> b until a ends. On EOF only b's sending side is shut, so the
-- opposite direction keeps flowing (half-close). Returns true for a clean
-- EOF, or false and the error.
local function pump(a, b)
  while true do
    local data, err = a:read_some()
    if data and #data > 0 then
      local ok, werr = b:write(data)
      if not ok then return false, 'write: ' .. tostring(werr) end
    end
    if err == 'eof' then
      b:shutdown()
      return true
    elseif err then
      return false, 'read: ' .. tostring(err)
    end
  end
end

-- Relays between `client` and `remote` with one light thread per direction
-- (the calling one does upload). Both sockets are closed when both
-- directions are done, or at once when either fails (closing wakes the other
-- thread, whose 'closed' error is then not worth a log line).
function M.relay(client, remote, label, log)
  -- Whatever arrives is forwarded at once; Nagle would only add latency to
  -- the small writes of interactive protocols.
  client:setoption('nodelay', true)
  remote:setoption('nodelay', true)
  local left, failed = 2, false
  local function run(a, b, dir)
    local ok, err = pump(a, b)
    left = left - 1
    if not ok then
      if not failed then
        failed = true
        log('%s: %s %s', label, dir, err)
      end
      client:close()
      remote:close()
    elseif left == 0 then
      client:close()
      remote:close()
      log('%s: done', label)
    end
  end
  asio.spawn_light_thread(run, remote, client, 'download')
  run(client, remote, 'upload')
end

-- Listens on ip:port and runs handle(conn) in a light thread for each
-- connection; exits with a message if it cannot listen.
function M.serve(ip, port, handle, log)
  local srv, err = asio.server(ip, port, function(conn)
    asio.spawn_light_thread(handle, conn)
  end)
  if not srv then
    log('cannot listen on %s: %s', M.hostport(ip, port), tostring(err))
    os.exit(1)
  end
  return srv
end

-- The peer of `conn` as text, for log lines.
function M.label(conn)
  local ip, port = conn:remote_address()
  return ip and M.hostport(ip, port) or '?'
end

return M
