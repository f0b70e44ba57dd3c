-- Shared by proxy_client.lua and proxy_server.lua: full-duplex relaying with
-- half-close (asio.relay, and a Lua loop for tunnels that transform the
-- bytes), the XOR 0x79 header encoding, and log formatting.
local asio = require 'asio'
local bit = require 'bit'
local ffi = require 'ffi'

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

-- The obfuscation of the destination header (its own inverse); with
-- --xor-stream, of every byte of the tunnel.
function M.xor79(s)
  local n = #s
  local buf = ffi.new('uint8_t[?]', n)
  ffi.copy(buf, s, n)
  for i = 0, n - 1 do buf[i] = bit.bxor(buf[i], 0x79) end
  return ffi.string(buf, n)
end

-- Relays between `client` and `remote` until both directions are done, then
-- closes both. asio.relay forwards inside the library (splice(2) on Linux):
-- no byte passes through Lua. EOF on one side shuts the other side's
-- sending half, so the opposite direction keeps flowing (half-close); an
-- error or a reset on either side ends both.
-- LUAASIO_RELAY_SPLICE=0 in the environment makes it copy through a buffer
-- instead of splicing (bench/run.sh compares the two).
local relay_opts = { splice = os.getenv('LUAASIO_RELAY_SPLICE') ~= '0' }

function M.relay(client, remote, label, log)
  local up, down, up_end, down_end = asio.relay(client, remote, relay_opts)
  client:close()
  remote:close()
  if up_end == 'eof' and down_end == 'eof' then
    log('%s: done, %d bytes up, %d down (asio.relay)', label, up, down)
  else
    log('%s: upload %s, download %s after %d bytes up, %d down', label,
      tostring(up_end), tostring(down_end), up, down)
  end
end

-- asio.relay forwards bytes as they are. A tunnel that changes them on the
-- way (encrypts, compresses, obfuscates) must pass them through Lua; this is
-- that loop, with the same half-close rules: one light thread per
-- direction, `up(data)` applied to client -> remote bytes, `down(data)` to
-- the others.
local function pump(a, b, transform)
  while true do
    local data, err = a:read_some()
    if data and #data > 0 then
      local ok, werr = b:write(transform(data))
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

function M.relay_transform(client, remote, up, down, label, log)
  client:setoption('nodelay', true)
  remote:setoption('nodelay', true)
  local left, failed = 2, false
  local function run(a, b, transform, dir)
    local ok, err = pump(a, b, transform)
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
      log('%s: done (transformed in Lua)', label)
    end
  end
  asio.spawn_light_thread(run, remote, client, down, 'download')
  run(client, remote, up, 'upload')
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
