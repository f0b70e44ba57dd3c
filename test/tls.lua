-- TLS against peers written elsewhere: openssl s_server and s_client, curl,
-- Python's ssl module; and LuaAsio against itself. Certificates and keys are
-- made at run time with the openssl command, in a temporary folder.
--
-- The TLS library is optional: without it these tests skip, unless
-- LUAASIO_REQUIRE_TLS=1 (as CI sets it), where its absence fails them.
local asio = require 'asio'
local T = require 'testlib'

local available, backend = asio.tls_available()
local mbed = available and backend:find('mbed TLS', 1, true) ~= nil
local mbed2 = mbed and backend:find('mbed TLS 2.', 1, true) ~= nil

local function sh(cmd)
  return os.execute(cmd) == 0
end

local function have(cmd)
  return sh('command -v ' .. cmd .. ' >/dev/null 2>&1')
end

local function need_tls()
  if available then return end
  if os.getenv('LUAASIO_REQUIRE_TLS') == '1' then
    error('the TLS library is required (LUAASIO_REQUIRE_TLS=1) but cannot be loaded: ' .. tostring(backend))
  end
  T.skip('libluaasio_tls is not built (' .. tostring(backend) .. ')')
end

local function need(cmd)
  if T.windows then T.skip(cmd .. ' needs a POSIX shell') end
  if not have(cmd) then T.skip(cmd .. ' is not installed (.ci/run installs it)') end
end

-- Certificates, made once per run.
local dir
local function certs()
  need_tls()
  need('openssl')
  if dir then return dir end
  local d = os.tmpname()
  os.remove(d)
  assert(sh('mkdir -p ' .. d))
  local script = [[
set -e
cd "$1"
q() { "$@" >/dev/null 2>&1; }
q openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 -subj "/CN=LuaAsio Test CA"
q openssl req -x509 -newkey rsa:2048 -nodes -keyout ca2.key -out ca2.pem -days 30 -subj "/CN=Other CA"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext
printf 'basicConstraints=CA:FALSE\n' > client.ext
leaf() { # name subject ca extfile
  q openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
  q openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -out "$1.pem" -days 30 -extfile "$4"
}
leaf srv "/CN=localhost" ca san.ext
leaf other "/CN=localhost" ca2 san.ext
leaf client "/CN=router1" ca client.ext
q openssl req -x509 -newkey rsa:2048 -nodes -keyout self.key -out self.pem -days 30 -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"
# An expired certificate: issued by a small CA database with past dates.
mkdir -p db && : > db/index && echo 01 > db/serial
cat > ca.cnf <<EOF
[ca]
default_ca = c
[c]
database = db/index
serial = db/serial
new_certs_dir = db
default_md = sha256
policy = p
copy_extensions = copy
[p]
commonName = supplied
EOF
q openssl req -newkey rsa:2048 -nodes -keyout expired.key -out expired.csr -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"
q openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr -out expired.pem -startdate 20200101000000Z -enddate 20200201000000Z
]]
  local f = assert(io.open(d .. '/make.sh', 'w'))
  f:write(script)
  f:close()
  assert(sh('sh ' .. d .. '/make.sh ' .. d), 'making test certificates failed')
  dir = d
  return d
end

-- A background command, its output in a file; stopped by pid.
local function bg(cmd)
  local out = os.tmpname()
  local p = io.popen(('(%s) >%s 2>&1 & echo $!'):format(cmd, out))
  local pid = tonumber(p:read('*l'))
  p:close()
  return { pid = pid, out = out }
end

local function output(b)
  local f = io.open(b.out)
  local s = f and f:read('*a') or ''
  if f then f:close() end
  return s
end

local function alive(b)
  return sh('kill -0 ' .. b.pid .. ' 2>/dev/null')
end

local function stop(b)
  sh('kill ' .. b.pid .. ' 2>/dev/null')
  for _ = 1, 100 do
    if not alive(b) then break end
    asio.sleep(0.02)
  end
  os.remove(b.out)
end

-- Waits (in a light thread) for a background command to end.
local function wait_exit(b, limit)
  for _ = 1, (limit or 20) * 50 do
    if not alive(b) then return true end
    asio.sleep(0.02)
  end
  return false
end

local function free_port()
  local srv = assert(asio.server('127.0.0.1', 0, function(c) c:close() end))
  local p = srv:port()
  srv:close()
  return p
end

-- Waits until something accepts on `port`.
local function wait_port(port, b)
  for _ = 1, 250 do
    local c = asio.connect('127.0.0.1', port)
    if c then c:close(); return end
    asio.sleep(0.02)
  end
  error('server did not start: ' .. output(b))
end

-- openssl s_server -www on a free port; extra options appended.
local function s_server(d, extra)
  local port = free_port()
  local b = bg(('exec openssl s_server -www -accept %d -cert %s/srv.pem -key %s/srv.key %s')
    :format(port, d, d, extra or ''))
  wait_port(port, b)
  return b, port
end

local function https_get(c)
  assert(c:write('GET / HTTP/1.0\r\n\r\n'))
  return c:read_line()
end

T.test('client: openssl s_server -www over TLS 1.2 and 1.3, verified against the CA', function()
  local d = certs()
  T.go(function()
    for _, v in ipairs({ '1.2', '1.3' }) do
      if v == '1.3' and mbed2 then break end
      local b, port = s_server(d, '-tls' .. v:gsub('%.', '_'))
      local c, err, why = asio.connect('127.0.0.1', port, { tls = { ca = d .. '/ca.pem' } })
      assert(c, tostring(err) .. ' ' .. tostring(why))
      T.eq(c:tls_info().version, 'TLSv' .. v, 'version')
      T.eq(https_get(c), 'HTTP/1.0 200 ok', 'status line')
      local rest = c:read(1e6)
      assert(rest == nil)
      c:close()
      -- by name: SNI and the DNS name are checked
      c, err, why = asio.connect('localhost', port, { tls = { ca = d .. '/ca.pem', max_version = v } })
      assert(c, tostring(err) .. ' ' .. tostring(why))
      assert(c:tls_info().subject:find('CN=localhost', 1, true))
      c:close()
      stop(b)
    end
  end)
  if mbed2 then T.skip('TLS 1.2 passed; ' .. backend .. ' has no TLS 1.3') end
end)

T.test('client: wrong hostname, expired certificate, unknown CA and self-signed give their reasons', function()
  local d = certs()
  T.go(function()
    local cases = {
      { 'srv', { server_name = 'example.com' }, 'hostname mismatch' },
      { 'srv', { server_name = '127.0.0.2' }, 'hostname mismatch' },
      { 'expired', {}, 'expired' },
      { 'other', {}, 'unknown ca' },
      { 'self', {}, 'self-signed' },
    }
    for _, case in ipairs(cases) do
      local port = free_port()
      local b = bg(('exec openssl s_server -www -accept %d -cert %s/%s.pem -key %s/%s.key')
        :format(port, d, case[1], d, case[1]))
      wait_port(port, b)
      local opts = case[2]
      opts.ca = d .. '/ca.pem'
      local c, err, why = asio.connect('127.0.0.1', port, { tls = opts })
      T.eq(c, nil, case[1] .. ' connection')
      T.eq(err, 'certificate verify failed', case[1] .. ' error')
      T.eq(why, case[3], case[1] .. ' reason')
      -- verify = false accepts it
      opts.verify = false
      c = assert(asio.connect('127.0.0.1', port, { tls = opts }))
      T.eq(https_get(c), 'HTTP/1.0 200 ok', 'unverified status line')
      c:close()
      stop(b)
    end
  end)
end)

T.test('client: a client certificate required and provided, and required and missing', function()
  local d = certs()
  T.go(function()
    local b, port = s_server(d, '-Verify 1 -CAfile ' .. d .. '/ca.pem')
    local c, err, why = asio.connect('127.0.0.1', port, { tls = { ca = d .. '/ca.pem',
      cert = d .. '/client.pem', key = d .. '/client.key' } })
    assert(c, tostring(err) .. ' ' .. tostring(why))
    T.eq(https_get(c), 'HTTP/1.0 200 ok', 'with a certificate')
    c:close()
    -- TLS 1.2: the server refuses within the handshake.
    c, err = asio.connect('127.0.0.1', port, { tls = { ca = d .. '/ca.pem', max_version = '1.2' } })
    T.eq(c, nil, 'TLS 1.2 without a certificate')
    T.eq(err, 'tls handshake failed', 'TLS 1.2 error')
    if not mbed2 then
      -- TLS 1.3: the client finishes first and hears the refusal on its first read.
      c = assert(asio.connect('127.0.0.1', port, { tls = { ca = d .. '/ca.pem', min_version = '1.3' } }))
      c:write('GET / HTTP/1.0\r\n\r\n')
      local line, rerr = c:read_line()
      T.eq(line, nil, 'TLS 1.3 read')
      T.eq(rerr, 'tls handshake failed', 'TLS 1.3 read error')
      c:close()
    end
    stop(b)
  end)
end)

T.test('client: a Python ssl server, line by line, with ALPN', function()
  local d = certs()
  need('python3')
  T.go(function()
    local b = bg(('exec python3 %s/test/helpers/tls_server.py %s/srv.pem %s/srv.key --alpn h2,http/1.1')
      :format(T.root, d, d))
    local port
    for _ = 1, 250 do
      port = tonumber(output(b):match('port (%d+)'))
      if port then break end
      asio.sleep(0.02)
    end
    assert(port, 'python server did not start: ' .. output(b))
    local c, err, why = asio.connect('localhost', port, { tls = { ca = d .. '/ca.pem', alpn = { 'http/1.1' } } })
    assert(c, tostring(err) .. ' ' .. tostring(why))
    T.eq(c:tls_info().alpn, 'http/1.1', 'ALPN')
    for i = 1, 20 do
      assert(c:write('line ' .. i .. '\n'))
      T.eq(c:read_line(), 'echo:line ' .. i, 'echo')
    end
    -- read(n) across records, read_until
    assert(c:write('abc\ndef\n'))
    T.eq(c:read(9), 'echo:abc\n', 'read(n)')
    T.eq(c:read_until('f'), 'echo:de', 'read_until')
    T.eq(c:read(1), '\n', 'rest')
    c:close()
    stop(b)
  end)
end)

-- A LuaAsio TLS server answering HTTP/1.1 keep-alive requests.
local function http_server(d, extra)
  local served = 0
  local tls = { cert = d .. '/srv.pem', key = d .. '/srv.key' }
  for k, v in pairs(extra or {}) do tls[k] = v end
  local srv = assert(asio.server('127.0.0.1', 0, function(c)
    served = served + 1
    while true do
      local line = c:read_line()
      if not line then break end
      local path = line:match('^GET (%S+)')
      repeat line = c:read_line() until not line or line == ''
      if not line then break end
      local body = 'path ' .. tostring(path) .. '\n'
      c:write('HTTP/1.1 200 OK\r\nContent-Length: ' .. #body .. '\r\n\r\n' .. body)
    end
    c:close()
  end, { tls = tls }))
  return srv, function() return served end
end

T.test('server: curl makes several requests on one connection; garbage instead of a ClientHello', function()
  local d = certs()
  need('curl')
  T.go(function()
    local srv, served = http_server(d)
    local port = srv:port()
    -- garbage first: the server closes it and keeps serving
    local g = assert(asio.connect('127.0.0.1', port))
    g:write(('GET / HTTP/1.1\r\nHost: x\r\n\r\n'):rep(20))
    local data, err = g:read(1e6)
    T.eq(data, nil, 'garbage read')
    assert(err == 'eof' or err == 'connection reset', err)
    g:close()
    T.eq(served(), 0, 'handler calls for garbage')
    local b = bg(('exec curl -sS --cacert %s/ca.pem -w "connects=%%{num_connects}\\n" https://127.0.0.1:%d/a https://127.0.0.1:%d/b https://localhost:%d/c')
      :format(d, port, port, port))
    assert(wait_exit(b), 'curl did not finish')
    local out = output(b)
    assert(out:find('path /a\nconnects=1\npath /b\nconnects=0\n', 1, true), out)
    assert(out:find('path /c\n', 1, true), out)
    os.remove(b.out)
    srv:close()
  end)
end)

T.test('server: openssl s_client, and mutual TLS with the client subject', function()
  local d = certs()
  T.go(function()
    local subjects = {}
    local srv = assert(asio.server('127.0.0.1', 0, function(c)
      subjects[#subjects + 1] = c:tls_info().subject or 'none'
      local line = c:read_line()
      if line then c:write('echo:' .. line .. '\n') end
      c:shutdown()
      c:close()
    end, { tls = { cert = d .. '/srv.pem', key = d .. '/srv.key', ca = d .. '/ca.pem', verify_client = true } }))
    local port = srv:port()
    local b = bg(('(printf "hello\\n"; sleep 3) | exec openssl s_client -connect 127.0.0.1:%d -CAfile %s/ca.pem -cert %s/client.pem -key %s/client.key -verify_return_error -quiet')
      :format(port, d, d, d))
    for _ = 1, 250 do
      if output(b):find('echo:hello', 1, true) then break end
      asio.sleep(0.02)
    end
    assert(output(b):find('echo:hello', 1, true), output(b))
    stop(b)
    assert(subjects[1] and subjects[1]:find('CN=router1', 1, true), tostring(subjects[1]))
    -- without a client certificate the handler never runs
    local c, err = asio.connect('127.0.0.1', port, { tls = { ca = d .. '/ca.pem', max_version = '1.2' } })
    T.eq(c, nil, 'no client certificate')
    T.eq(err, 'tls handshake failed', 'error')
    -- with one, from LuaAsio
    c = assert(asio.connect('127.0.0.1', port, { tls = { ca = d .. '/ca.pem',
      cert = d .. '/client.pem', key = d .. '/client.key' } }))
    c:write('x\n')
    T.eq(c:read_line(), 'echo:x', 'mutual TLS echo')
    T.eq(c:read_line(), nil, 'then eof')
    T.eq(c:tls_info().eof, 'close_notify', 'shutdown sent close_notify')
    c:close()
    T.eq(#subjects, 2, 'handler calls')
    srv:close()
  end)
end)

T.test('session resumption, conn:tls_handshake on a plain connection, tls_info', function()
  local d = certs()
  T.go(function()
    local srv = assert(asio.server('127.0.0.1', 0, function(c)
      c:write('hi\n')
      local l = c:read_line()
      c:close()
    end, { tls = { cert = d .. '/srv.pem', key = d .. '/srv.key', alpn = { 'x/1', 'y/2' } } }))
    local port = srv:port()
    local c = assert(asio.connect('127.0.0.1', port))
    assert(c:tls_handshake({ ca = d .. '/ca.pem', server_name = 'localhost', alpn = { 'y/2' } }))
    T.eq(c:read_line(), 'hi', 'first line')
    local info = c:tls_info()
    T.eq(info.resumed, false, 'first resumed')
    T.eq(info.alpn, 'y/2', 'server-chosen ALPN')
    assert(info.cipher and info.cipher ~= '', 'cipher')
    T.eq(info.backend, backend, 'backend')
    local sess = c:tls_session()
    assert(type(sess) == 'string' and #sess > 0, 'session')
    c:write('bye\n')
    c:close()
    T.eq(c:tls_info(), nil, 'closed') -- nil, 'closed'
    local c2 = assert(asio.connect('127.0.0.1', port, { tls = { ca = d .. '/ca.pem', session = sess } }))
    T.eq(c2:read_line(), 'hi', 'second line')
    if not mbed or mbed2 then T.eq(c2:tls_info().resumed, true, 'resumed') end
    c2:close()
    -- a plain connection reports no TLS
    local p = assert(asio.connect('127.0.0.1', port))
    T.eq(p:tls_info(), nil, 'plain tls_info')
    T.eq(p:tls_session(), nil, 'plain tls_session')
    p:close()
    srv:close()
  end)
end)

T.test('64 MiB each way through a TLS echo, intact by sha256, with a slow reader', function()
  local d = certs()
  need('sha256sum')
  local mib = (T.instrumented or T.qemu) and 8 or 64
  local src, dst = d .. '/big.in', d .. '/big.out'
  assert(sh(('head -c %d /dev/urandom > %s'):format(mib * 1048576, src)))
  T.go(function()
    local srv = assert(asio.server('127.0.0.1', 0, function(c)
      while true do
        local data = c:read_some()
        if not data or data == '' then break end
        if not c:write(data) then break end
      end
      c:shutdown()
      c:close()
    end, { tls = { cert = d .. '/srv.pem', key = d .. '/srv.key' } }))
    local c = assert(asio.connect('127.0.0.1', srv:port(), { tls = { ca = d .. '/ca.pem' } }))
    local sent = 0
    local writer = T.spawn(function()
      local f = assert(io.open(src, 'rb'))
      while true do
        local chunk = f:read(100000)
        if not chunk then break end
        assert(c:write(chunk))
        sent = sent + #chunk
      end
      f:close()
      assert(c:shutdown())
    end)
    local out = assert(io.open(dst, 'wb'))
    local got, reads = 0, 0
    while true do
      local data, err = c:read_some()
      if not data or data == '' then T.eq(err, 'eof', 'end'); break end
      out:write(data)
      got = got + #data
      reads = reads + 1
      -- slow: the echo server and the writer must wait on TCP backpressure
      if reads % 64 == 0 then asio.sleep(0.001) end
    end
    out:close()
    writer()
    T.eq(sent, mib * 1048576, 'sent')
    T.eq(got, mib * 1048576, 'received')
    T.eq(c:tls_info().eof, 'close_notify', 'clean end')
    c:close()
    srv:close()
  end, 300)
  local p = io.popen(('sha256sum %s %s'):format(src, dst))
  local a = p:read('*l'):match('^(%x+)')
  local b = p:read('*l'):match('^(%x+)')
  p:close()
  os.remove(src)
  os.remove(dst)
  T.eq(b, a, 'sha256')
end)

T.test('timeouts: a handshake with a silent peer ends with timeout, on both sides', function()
  local d = certs()
  T.go(function()
    local silent = assert(asio.server('127.0.0.1', 0, function(c)
      asio.spawn_light_thread(function() asio.sleep(2); c:close() end)
    end))
    local t0 = asio.now()
    local c, err = asio.connect('127.0.0.1', silent:port(), { tls = { ca = d .. '/ca.pem', timeout = 0.3 } })
    T.eq(c, nil, 'connection')
    T.eq(err, 'timeout', 'error')
    assert(asio.now() - t0 < 1.5, 'took too long')
    -- conn:tls_handshake honours the read timeout
    local p = assert(asio.connect('127.0.0.1', silent:port()))
    p:settimeout(0.2)
    local ok, herr = p:tls_handshake({ verify = false })
    T.eq(ok, nil, 'tls_handshake')
    T.eq(herr, 'timeout', 'tls_handshake error')
    p:close()
    silent:close()
    -- a server's handshake timeout closes a client that says nothing
    local called = false
    local srv = assert(asio.server('127.0.0.1', 0, function() called = true end,
      { tls = { cert = d .. '/srv.pem', key = d .. '/srv.key', timeout = 0.2 } }))
    local q = assert(asio.connect('127.0.0.1', srv:port()))
    q:settimeout(3)
    local data, rerr = q:read(1)
    T.eq(data, nil, 'silent client read')
    T.eq(rerr, 'eof', 'closed by the server')
    T.eq(called, false, 'handler called')
    q:close()
    -- reads on a TLS connection time out like plain ones
    local quiet = assert(asio.server('127.0.0.1', 0, function(x) asio.sleep(1); x:close() end,
      { tls = { cert = d .. '/srv.pem', key = d .. '/srv.key' } }))
    local r = assert(asio.connect('127.0.0.1', quiet:port(), { tls = { ca = d .. '/ca.pem' } }))
    r:settimeout(0.1)
    local x, terr = r:read_line()
    T.eq(x, nil, 'read_line')
    T.eq(terr, 'timeout', 'read timeout')
    r:close()
    srv:close()
    quiet:close()
  end)
end)

-- A plain TCP relay in front of `port` that forwards the server's bytes
-- only up to `cut` of them, then resets (or closes cleanly) the client side.
local function cutting_proxy(port, cut, reset)
  return assert(asio.server('127.0.0.1', 0, function(cl)
    asio.spawn_light_thread(function()
      local up = assert(asio.connect('127.0.0.1', port))
      asio.spawn_light_thread(function()
        while true do
          local data = cl:read_some()
          if not data or data == '' then break end
          if not up:write(data) then break end
        end
      end)
      local passed = 0
      while passed < cut do
        local data = up:read_some()
        if not data or data == '' then break end
        if passed + #data > cut then data = data:sub(1, cut - passed) end
        cl:write(data)
        passed = passed + #data
      end
      if reset then cl:setoption('linger', 0) end
      cl:close()
      up:close()
    end)
  end))
end

T.test('faults: the peer resets mid-handshake and mid-record; a close without close_notify', function()
  local d = certs()
  T.go(function()
    -- mid-handshake: read the ClientHello, then reset
    local rst = assert(asio.server('127.0.0.1', 0, function(c)
      asio.spawn_light_thread(function()
        c:read_some()
        c:setoption('linger', 0)
        c:close()
      end)
    end))
    local c, err = asio.connect('127.0.0.1', rst:port(), { tls = { ca = d .. '/ca.pem' } })
    T.eq(c, nil, 'mid-handshake')
    T.eq(err, 'connection reset', 'mid-handshake error')
    rst:close()
    -- the server sends 200 KB; the relay passes 30000 bytes of it, then resets
    local big = ('0123456789abcdef'):rep(12800)
    local srv = assert(asio.server('127.0.0.1', 0, function(x)
      x:write(big)
      x:read_some()
      x:close()
    end, { tls = { cert = d .. '/srv.pem', key = d .. '/srv.key' } }))
    for _, reset in ipairs({ true, false }) do
      local px = cutting_proxy(srv:port(), 30000, reset)
      local cc = assert(asio.connect('127.0.0.1', px:port(), { tls = { ca = d .. '/ca.pem', server_name = 'localhost' } }))
      local data, rerr, partial = cc:read(#big)
      T.eq(data, nil, 'read')
      T.eq(rerr, reset and 'connection reset' or 'eof', 'mid-record error')
      assert(#partial > 0 and #partial < 30000, 'partial ' .. #partial)
      T.eq(partial, big:sub(1, #partial), 'partial data')
      if not reset then T.eq(cc:tls_info().eof, 'truncated', 'truncation noted') end
      cc:close()
      px:close()
    end
    srv:close()
  end)
end)

-- Drives `openssl s_server -msg VERSION_FLAG` through its stdin (a FIFO):
-- each line it gets is sent to the client, and a line of one command
-- letter is that command instead. Sends "one", the command, "two"; checks
-- that the client reads both lines and that the server reads "three" from
-- it afterwards. Returns the server's output (its -msg trace).
local function s_server_command(d, version_flag, command, what)
  local fifo = d .. '/ctl' .. command
  os.remove(fifo)
  assert(sh('mkfifo ' .. fifo))
  local port = free_port()
  local b = bg(('exec openssl s_server -msg %s -accept %d -cert %s/srv.pem -key %s/srv.key < %s')
    :format(version_flag, port, d, d, fifo))
  local ctl = assert(io.open(fifo, 'w'))
  ctl:setvbuf('no')
  wait_port(port, b)
  asio.sleep(0.3) -- the probe connection is over
  local c = assert(asio.connect('127.0.0.1', port, { tls = { ca = d .. '/ca.pem' } }))
  ctl:write('one\n')
  T.eq(c:read_line(), 'one', 'before the ' .. what)
  ctl:write(command .. '\n')
  asio.sleep(0.1)
  ctl:write('two\n')
  T.eq(c:read_line(), 'two', 'after the ' .. what)
  assert(c:write('three\n'))
  for _ = 1, 100 do
    if output(b):find('three', 1, true) then break end
    asio.sleep(0.02)
  end
  local out = output(b)
  assert(out:find('three', 1, true), 'the server read nothing after the ' .. what .. ': ' .. out)
  c:close()
  ctl:close()
  stop(b)
  os.remove(fifo)
  return out
end

T.test('a key update from openssl s_server mid-stream', function()
  local d = certs()
  if mbed2 then T.skip(backend .. ' has no TLS 1.3, hence no key updates') end
  need('mkfifo')
  T.go(function()
    -- "K": a key update that asks the client to update its keys too
    local out = s_server_command(d, '-tls1_3', 'K', 'key update')
    -- the client answered the requested update with one of its own
    assert(out:find('<<< TLS 1.3, Handshake %[length %x+%], KeyUpdate'),
      'the client sent no key update: ' .. out)
  end)
end)

T.test('a renegotiation started by openssl s_server (TLS 1.2) mid-stream', function()
  local d = certs()
  if mbed then T.skip(backend .. ' clients refuse renegotiation (mbedTLS builds have it off by default)') end
  need('mkfifo')
  T.go(function()
    -- "R": renegotiate; the client's next read takes part in a new
    -- handshake, writing as well as reading
    local out = s_server_command(d, '-tls1_2', 'R', 'renegotiation')
    -- the client sent a second ClientHello, inside the first session
    local _, hellos = out:gsub('<<< TLS 1%.%d, Handshake %[length %x+%], ClientHello', '')
    assert(hellos == 2, 'ClientHellos the server received: ' .. hellos .. '\n' .. out)
  end)
end)

T.test('resources: 1,000 handshakes closed while pending, and TLS connections collected', function()
  local d = certs()
  local n = (T.instrumented or T.qemu) and 100 or 1000
  T.go(function()
    local silent = assert(asio.server('127.0.0.1', 0, function(c)
      asio.spawn_light_thread(function() c:read_some(); c:close() end)
    end))
    local srv = assert(asio.server('127.0.0.1', 0, function(c) c:read_some(); c:close() end,
      { tls = { cert = d .. '/srv.pem', key = d .. '/srv.key' } }))
    -- Resumed sessions keep the thousand handshakes cheap (mbedTLS's
    -- public-key operations are slow); what is checked is the clean-up.
    local first = assert(asio.connect('127.0.0.1', srv:port(), { tls = { ca = d .. '/ca.pem' } }))
    first:write('x')
    T.eq(first:read_some(), '', 'first connection')  -- eof; the TLS 1.3 ticket came before it
    local session = assert(first:tls_session())
    first:close()
    local function cycle()
      -- a handshake pending, closed from another light thread
      local c = assert(asio.connect('127.0.0.1', silent:port()))
      local th = asio.spawn_light_thread(function()
        return c:tls_handshake({ verify = false })
      end)
      asio.sleep(0)
      c:close()
      local r1, r2 = asio.join(th)
      assert(r1 == nil and r2 == 'closed', tostring(r2))
      -- a finished one, dropped without close()
      local t, err, why = asio.connect('127.0.0.1', srv:port(), { tls = { ca = d .. '/ca.pem', session = session } })
      assert(t, tostring(err) .. ' ' .. tostring(why))
      t = nil
    end
    -- Warm up with the same collection cadence, so that the heap has its
    -- working size (up to 100 sessions wait for the collector) before measuring.
    for i = 1, 200 do
      cycle()
      if i % 100 == 0 then collectgarbage() end
    end
    collectgarbage()
    collectgarbage()
    asio.sleep(0.1)
    local fd0, rss0 = T.fd_count(), T.rss_kb()
    for i = 1, n do
      cycle()
      if i % 100 == 0 then collectgarbage() end
    end
    collectgarbage()
    collectgarbage()
    asio.sleep(0.2)
    local fd1 = fd0 and T.fds_down_to(fd0)
    local rss1 = T.rss_kb()
    -- (a connection of an earlier test may still be closing at the start)
    if fd0 then assert(fd1 <= fd0, ('open descriptors: %d before, %d after'):format(fd0, fd1)) end
    -- (under qemu the emulator's own translation cache grows meanwhile)
    if rss0 and not T.instrumented and not T.qemu then
      -- a leak of 2 KB a cycle would show; one session is some 40 KB
      assert(rss1 - rss0 < 2048, ('RSS grew by %d KB over %d cycles'):format(rss1 - rss0, n))
    end
    silent:close()
    srv:close()
  end, 300)
end)

T.test('misuse: bad options raise errors naming the function and option; misuse changes nothing', function()
  local d = certs()
  T.raises("bad argument #3 to 'connect' (tls.ca must be a non-empty string)", function()
    asio.connect('127.0.0.1', 1, { tls = { ca = 5 } })
  end)
  T.raises("tls.key must be given with tls.cert", function()
    asio.connect('127.0.0.1', 1, { tls = { cert = 'x.pem' } })
  end)
  T.raises("tls.alpn must be a list of names of 1 to 255 bytes", function()
    asio.connect('127.0.0.1', 1, { tls = { alpn = { '' } } })
  end)
  T.raises("tls.min_version must be '1.2' or '1.3'", function()
    asio.connect('127.0.0.1', 1, { tls = { min_version = '1.1' } })
  end)
  T.raises("tls.verify must be a boolean", function()
    asio.connect('127.0.0.1', 1, { tls = { verify = 'yes' } })
  end)
  T.raises("bad argument #4 to 'server' (tls.cert must be given for a server", function()
    asio.server('127.0.0.1', 0, function() end, { tls = {} })
  end)
  T.raises("tls.ca must be given with tls.verify_client", function()
    asio.server('127.0.0.1', 0, function() end, { tls = { cert = 'a', key = 'b', verify_client = true } })
  end)
  T.raises("cannot load certificate " .. d .. "/missing.pem", function()
    asio.server('127.0.0.1', 0, function() end, { tls = { cert = d .. '/missing.pem', key = d .. '/srv.key' } })
  end)
  T.raises("does not match", function()
    asio.server('127.0.0.1', 0, function() end, { tls = { cert = d .. '/srv.pem', key = d .. '/client.key' } })
  end)
  T.raises("'tls_handshake' must be called from a light thread", function()
    local c = require('asio.conn').new(0)
    c:tls_handshake({})
  end)
  T.raises("calling 'tls_info' on bad self", function() local x = {}; require('asio.conn').Conn.tls_info(x) end)
  T.go(function()
    local srv, port = T.server(function(c) c:write('one\ntwo\n'); c:read_some(); c:close() end)
    local c = assert(asio.connect('127.0.0.1', port))
    T.eq(c:read_line(), 'one', 'first line')
    -- unread plaintext would be lost: refused, and the bytes stay
    T.raises('unread plaintext', c.tls_handshake, c, { verify = false })
    T.eq(c:read_line(), 'two', 'the bytes are still there')
    c:close()
    T.eq(select(2, c:tls_handshake({})), 'closed', 'closed')
    srv:close()
  end)
end)

T.test("'tls not available' without the TLS library", function()
  need_tls()
  if T.windows or T.qemu then T.skip('needs a POSIX shell and the host LuaJIT') end
  local tmp = os.tmpname()
  os.remove(tmp)
  local core = require('asio.lib').path
  assert(sh(('mkdir -p %s && cp %s %s/'):format(tmp, core, tmp)))
  local script = tmp .. '/t.lua'
  local f = assert(io.open(script, 'w'))
  f:write([[
package.cpath = ''
local asio = require 'asio'
local ok, why = asio.tls_available()
print('available', ok, why ~= nil)
asio.spawn_light_thread(function()
  local srv = assert(asio.server('127.0.0.1', 0, function(c) c:close() end))
  print('connect', asio.connect('127.0.0.1', srv:port(), { tls = {} }))
  print('server', asio.server('127.0.0.1', 0, function() end, { tls = { cert = 'a', key = 'b' } }))
  srv:close()
end)
asio.run()
]])
  f:close()
  local name = core:match('[^/\\]+$')
  local p = io.popen(('cd %s && LUAASIO_LIB=%s/%s LUA_PATH="%s/lua/?.lua;;" ./test/luajit %s 2>&1')
    :format(T.root, tmp, name, T.root, script))
  local out = p:read('*a')
  p:close()
  sh('rm -rf ' .. tmp)
  assert(out:find('available\tfalse\ttrue', 1, true), out)
  assert(out:find('connect\tnil\ttls not available\t', 1, true), out)
  assert(out:find('server\tnil\ttls not available\t', 1, true), out)
end)

T.test('a TLS server on several threads: each worker runs its handshakes', function()
  local d = certs()
  if require('asio.lib').C.luaasio_lua_api() == 0 then T.skip('this LuaJIT exports no Lua C API for worker threads') end
  T.go(function()
    local srv, err = asio.server('127.0.0.1', 0, function(c)
      local line = c:read_line()
      c:write('worker:' .. tostring(line) .. ':' .. tostring(c:tls_info().version) .. '\n')
      c:close()
    end, { threads = 2, tls = { cert = d .. '/srv.pem', key = d .. '/srv.key' } })
    if err == 'not supported' then T.skip('threaded servers are not supported here') end
    assert(srv, err)
    for i = 1, 6 do
      local c = assert(asio.connect('127.0.0.1', srv:port(), { tls = { ca = d .. '/ca.pem' } }))
      c:write('n' .. i .. '\n')
      local line = c:read_line()
      assert(line and line:match('^worker:n' .. i .. ':TLSv1%.[23]$'), tostring(line))
      c:close()
    end
    T.raises("tls.cert must be given for a server", asio.server, '127.0.0.1', 0, function() end,
      { threads = 2, tls = {} })
    srv:close()
  end)
end)

T.test('TLS connections have Nagle off, as plain ones do', function()
  local d = certs()
  if T.windows then T.skip('reads TCP_NODELAY with getsockopt through the FFI (POSIX)') end
  pcall(require('ffi').cdef, 'int getsockopt(int, int, int, void *, unsigned *);')
  local ffi = require 'ffi'
  local C = require('asio.lib').C
  local function nodelay(c)
    local v, len = ffi.new('int[1]'), ffi.new('unsigned[1]', 4)
    local fd = tonumber(C.luaasio_conn_native(require('asio.state').loop, c.h))
    assert(ffi.C.getsockopt(fd, 6 --[[IPPROTO_TCP]], 1 --[[TCP_NODELAY]], v, len) == 0)
    return v[0] ~= 0
  end
  T.go(function()
    local server_side
    local srv = assert(asio.server('127.0.0.1', 0, function(c)
      server_side = nodelay(c)
      c:write('x')
      c:read_some()
      c:close()
    end, { tls = { cert = d .. '/srv.pem', key = d .. '/srv.key' } }))
    local c = assert(asio.connect('127.0.0.1', srv:port(), { tls = { ca = d .. '/ca.pem' } }))
    T.eq(c:read(1), 'x', 'data')
    T.eq(nodelay(c), true, 'client TCP_NODELAY')
    T.eq(server_side, true, 'server TCP_NODELAY')
    c:close()
    srv:close()
  end)
end)

T.test("where the TLS library is not built (Windows here): every TLS call says 'tls not available'", function()
  if available then T.skip('the TLS library is loaded here; the test above checks its absence in a child process') end
  if os.getenv('LUAASIO_REQUIRE_TLS') == '1' then error('the TLS library is required (LUAASIO_REQUIRE_TLS=1)') end
  local ok, why = asio.tls_available()
  T.eq(ok, false, 'tls_available')
  assert(type(why) == 'string' and why ~= '', 'a reason')
  T.go(function()
    local srv, port = T.server(function(c) c:read_some(); c:close() end)
    local c, err, reason = asio.connect('127.0.0.1', port, { tls = {} })
    T.eq(c, nil, 'connect')
    T.eq(err, 'tls not available', 'connect error')
    T.eq(reason, why, 'reason')
    local s2, serr = asio.server('127.0.0.1', 0, function() end, { tls = { cert = 'a.pem', key = 'a.key' } })
    T.eq(s2, nil, 'server')
    T.eq(serr, 'tls not available', 'server error')
    local p = assert(asio.connect('127.0.0.1', port))
    local hok, herr = p:tls_handshake({ verify = false })
    T.eq(hok, nil, 'tls_handshake')
    T.eq(herr, 'tls not available', 'tls_handshake error')
    p:close()
    srv:close()
  end)
end)

T.test('read_some_into and write(buf, n) on a TLS connection go through TLS', function()
  local d = certs()
  local ffi = require 'ffi'
  T.go(function()
    local srv = assert(asio.server('127.0.0.1', 0, function(c)
      local buf = ffi.new('char[?]', 4096)
      while true do
        local n = c:read_some_into(buf, 4096)
        if not n then break end
        assert(c:write(buf, n))
      end
      c:shutdown()
      c:close()
    end, { tls = { cert = d .. '/srv.pem', key = d .. '/srv.key' } }))
    local c = assert(asio.connect('127.0.0.1', srv:port(), { tls = { ca = d .. '/ca.pem' } }))
    local msg = ('tls bytes '):rep(3000)
    assert(c:write(msg))
    c:shutdown()
    T.eq(c:read(#msg), msg, 'echoed through read_some_into / write(buf, n)')
    T.eq(select(2, c:read_some()), 'eof', 'end')
    c:close()
    srv:close()
  end)
end)

T.test('ngx cosockets: sslhandshake as OpenResty has it, and keepalive of a TLS connection', function()
  local d = certs()
  local ngx = require 'asio.ngx'
  T.go(function()
    local srv = assert(asio.server('127.0.0.1', 0, function(c)
      while true do
        local line = c:read_line()
        if not line then break end
        c:write('echo:' .. line .. '\n')
      end
      c:close()
    end, { tls = { cert = d .. '/srv.pem', key = d .. '/srv.key' } }))
    local port = srv:port()
    -- ssl_verify = true checks against the system store, which lacks the test CA
    local s = ngx.socket.tcp()
    assert(s:connect('127.0.0.1', port))
    local ok, err = s:sslhandshake(nil, 'localhost', true)
    T.eq(ok, nil, 'verified handshake')
    T.eq(err, 'certificate verify failed: unknown ca', 'error')
    T.eq(select(2, s:send('x')), 'closed', 'closed after the failure')
    -- unverified, as OpenResty does without ssl_verify
    s = ngx.socket.tcp()
    assert(s:connect('127.0.0.1', port))
    local sess = assert(s:sslhandshake(nil, 'localhost', false))
    assert(s:send('one\n'))
    T.eq(s:receive('*l'), 'echo:one', 'receive')
    T.eq(s:getreusedtimes(), 0, 'fresh')
    assert(s:setkeepalive())
    -- the pooled connection comes back with its session: no new handshake
    local s2 = ngx.socket.tcp()
    assert(s2:connect('127.0.0.1', port))
    T.eq(s2:getreusedtimes(), 1, 'reused')
    T.eq(s2:sslhandshake(false), true, 'sslhandshake on a reused TLS connection')
    assert(s2:send('two\n'))
    T.eq(s2:receive('*l'), 'echo:two', 'receive on the reused connection')
    s2:close()
    -- TLS 1.2 has the session at the end of the handshake; TLS 1.3 sends it
    -- later (conn:tls_session() after a read has it)
    T.eq(type(sess), mbed2 and 'string' or 'boolean', 'what sslhandshake returned')
    T.raises("bad argument #2 to 'sslhandshake'", function() ngx.socket.tcp():sslhandshake(nil, 5) end)
    asio.pool_flush()   -- ends the pool's sweeper
    srv:close()
  end)
end)
