-- examples/tls_tunnel_client.lua and examples/tls_tunnel_server.lua as two
-- processes on 127.0.0.1, with certificates made by `openssl` in a temp dir:
-- data goes client -> tunnel client -> (mutual TLS) -> tunnel server -> an
-- echo server in this process, and back. The client side takes its
-- destination from TUNNEL_DEST instead of an iptables REDIRECT.
--
-- Without the TLS library or the openssl command this suite is skipped,
-- unless LUAASIO_REQUIRE_TLS=1, where that is a failure.
local asio = require 'asio'
local T = require 'testlib'
local P = require 'proc'

local require_tls = os.getenv('LUAASIO_REQUIRE_TLS') == '1'

local function unavailable(reason)
  if require_tls then error('LUAASIO_REQUIRE_TLS=1 but ' .. reason, 0) end
  T.skip(reason)
end

local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read('*a')
  f:close()
  return s
end

-- A private CA, a server certificate for 127.0.0.1, a client certificate
-- from the same CA, and a client certificate from another CA.
local function make_certs(dir)
  local ec = '-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'
  local script = table.concat({
    'set -e',
    'cd ' .. dir,
    'openssl req -x509 ' .. ec .. ' -days 2 -subj /CN=tunnel-test-ca -keyout ca.key -out ca.pem',
    'openssl req ' .. ec .. ' -subj /CN=tunnel-server -keyout server.key -out server.csr',
    "printf 'subjectAltName=IP:127.0.0.1\\n' > server.ext",
    'openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem',
    'openssl req ' .. ec .. ' -subj /CN=router-test -keyout router.key -out router.csr',
    'openssl x509 -req -in router.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out router.pem',
    'openssl req -x509 ' .. ec .. ' -days 2 -subj /CN=stranger -keyout stranger.key -out stranger.pem',
  }, '\n')
  return sh('(' .. script .. ') >' .. dir .. '/openssl.log 2>&1')
end

-- Echo server in this process: what it reads it writes back; at EOF it
-- closes, so a client sees EOF only after a half-close came through.
local function echo_target()
  local seen = { conns = 0, bytes = 0 }
  local srv, port = T.server(function(conn)
    seen.conns = seen.conns + 1
    while true do
      local data, err = conn:read_some()
      if data and #data > 0 then
        seen.bytes = seen.bytes + #data
        if not conn:write(data) then break end
      end
      if err then break end
    end
    conn:close()
  end)
  return srv, port, seen
end

-- 127.0.0.1:port as the 128-byte sockaddr string get_original_dst() gives.
local function sockaddr4(port)
  local family = require('ffi').abi('le') and '\2\0' or '\0\2'
  return family .. string.char(math.floor(port / 256), port % 256, 127, 0, 0, 1) .. string.rep('\0', 120)
end

-- `n` bytes of a pattern that differs per connection `k`.
local function pattern(k, n)
  local parts, len, i = {}, 0, 0
  while len < n do
    i = i + 1
    local s = ('%d:%d|'):format(k, i)
    parts[#parts + 1] = s
    len = len + #s
  end
  return table.concat(parts):sub(1, n)
end

T.test('data goes through the mutual-TLS tunnel both ways, with half-close', function()
  if T.windows or T.qemu then T.skip('needs a POSIX shell and /proc for the example processes') end
  local ok, why = asio.tls_available()
  if not ok then unavailable('TLS library not available: ' .. tostring(why)) end
  if not sh('command -v openssl >/dev/null 2>&1') then unavailable('the openssl command is missing') end

  local p = io.popen('mktemp -d')
  local dir = p:read('*l')
  p:close()
  assert(dir and dir ~= '', 'mktemp -d failed')
  local procs = {}
  local ok2, err = pcall(function()
    if not make_certs(dir) then error('openssl failed: ' .. tostring(read_file(dir .. '/openssl.log'))) end
    T.go(function()
      local srv, echo_port, seen = echo_target()
      local server = P.start('examples/tls_tunnel_server.lua',
        ('127.0.0.1 0 %s/server.pem %s/server.key %s/ca.pem'):format(dir, dir, dir))
      procs[#procs + 1] = server
      local server_port = server:port()
      local client = P.start('examples/tls_tunnel_client.lua',
        ('127.0.0.1 0 127.0.0.1 %d %s/router.pem %s/router.key %s/ca.pem'):format(server_port, dir, dir, dir),
        'export TUNNEL_DEST=127.0.0.1:' .. echo_port .. ';')
      procs[#procs + 1] = client
      local client_port = client:port()

      -- Three connections at once, each sending 1 MB, then shutting down its
      -- sending side, and reading back everything up to EOF.
      local size, nconn = 1000 * 1000, 3
      local joins = {}
      for k = 1, nconn do
        joins[k] = T.spawn(function()
          local c = assert(asio.connect('127.0.0.1', client_port, { timeout = 10 }))
          c:settimeout(20)
          local data = pattern(k, size)
          local writer = T.spawn(function()
            local step = 70000
            for i = 1, #data, step do assert(c:write(data:sub(i, i + step - 1))) end
            assert(c:shutdown())
          end)
          local got, n = {}, 0
          while true do
            local d, rerr = c:read_some()
            if d and #d > 0 then
              got[#got + 1] = d
              n = n + #d
            end
            if rerr then
              T.eq(rerr, 'eof', 'how the echoed stream of connection ' .. k .. ' ends')
              break
            end
            assert(n <= size, 'more bytes back than sent')
          end
          writer()
          c:close()
          return table.concat(got) == data, n
        end)
      end
      for k = 1, nconn do
        local same, n = joins[k]()
        T.eq(n, size, 'bytes echoed through the tunnel on connection ' .. k)
        T.eq(same, true, 'echoed bytes equal to those sent on connection ' .. k)
      end
      T.eq(seen.conns, nconn, 'connections reaching the echo target')
      T.eq(seen.bytes, nconn * size, 'bytes reaching the echo target')

      -- The tunnel server took the router's certificate...
      local slog = server:output()
      assert(slog:find('CN%s*=%s*router%-test'), 'the tunnel server did not log the client certificate: ' .. slog)
      -- ...and refuses a client with a certificate from another CA, and one
      -- with none. With TLS 1.3 the client learns it on its first read.
      for _, who in ipairs({ 'stranger', 'none' }) do
        local tls = { ca = dir .. '/ca.pem' }
        if who == 'stranger' then
          tls.cert, tls.key = dir .. '/stranger.pem', dir .. '/stranger.key'
        end
        local c = asio.connect('127.0.0.1', server_port, { timeout = 10, tls = tls })
        if c then
          c:settimeout(10)
          -- A valid header for the echo target, then data: an accepted client
          -- would get it back.
          c:write(sockaddr4(echo_port) .. 'hello')
          local d, rerr = c:read_some()
          c:close()
          assert(d == nil or d == '', 'a client with ' .. who .. ' certificate got data: ' .. tostring(d))
          assert(rerr ~= 'timeout', 'a client with ' .. who .. ' certificate was not refused')
        end
      end
      local n_connected = select(2, server:output():gsub(': connected', ''))
      T.eq(n_connected, nconn, 'connections the tunnel server relayed')
      srv:close()
    end, 60)
  end)
  for _, pr in ipairs(procs) do pr:stop() end
  os.execute('rm -rf ' .. dir)
  if not ok2 then error(err, 0) end
end)
