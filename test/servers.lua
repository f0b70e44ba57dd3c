-- Servers: an open server lives until close(), whatever holds its value,
-- and errors raised by accept handlers are the server's.
local asio = require 'asio'
local T = require 'testlib'

local test, go, eq = T.test, T.go, T.eq

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read('*a')
  p:close()
  return out
end

local function slurp(path)
  local f = io.open(path)
  if not f then return '' end
  local s = f:read('*a')
  f:close()
  return s
end

test('a server nothing references keeps accepting through full collections', function()
  go(function()
    -- weak: this table does not keep the server alive, it only lets the
    -- test close it at the end
    local weak = setmetatable({}, { __mode = 'v' })
    weak[1] = assert(asio.server('127.0.0.1', 0, function(c)
      asio.spawn_light_thread(function()
        local line = c:read_line()
        if line then c:write(line .. '!\n') end
        c:close()
      end)
    end))
    local port = weak[1]:port()
    for i = 1, 20 do
      collectgarbage()
      collectgarbage()
      local c, err = asio.connect('127.0.0.1', port)
      assert(c, ('connect %d after a full collection: %s'):format(i, tostring(err)))
      assert(c:write('hi ' .. i .. '\n'))
      eq(c:read_line(), 'hi ' .. i .. '!', 'answer ' .. i)
      c:close()
    end
    assert(weak[1], 'the open server was collected')
    eq(asio.stats().servers, 1, 'open servers')
    weak[1]:close()
    eq(asio.stats().servers, 0, 'open servers after close()')
    -- once closed, nothing holds it any more
    collectgarbage()
    collectgarbage()
    eq(weak[1], nil, 'the closed server after a full collection')
  end)
end)

test('a connection nothing references is still collected and closed', function()
  go(function()
    local weak = setmetatable({}, { __mode = 'k' })
    local srv, port = T.server(function(c)
      weak[c] = true
      local d, err = c:read(1)
      eq(d, nil, 'read on the dropped connection')
      eq(err, 'eof', 'error on the dropped connection')
    end)
    local c = assert(asio.connect('127.0.0.1', port))
    asio.sleep(0.05)
    c = nil   -- luacheck: ignore (dropped on purpose)
    for _ = 1, 10 do
      collectgarbage()
      collectgarbage()
      asio.sleep(0.01)
    end
    srv:close()
  end)
end)

test('run() keeps running while a server nothing references is open', function()
  if T.windows then T.skip('needs a POSIX shell') end
  local script, out = os.tmpname(), os.tmpname()
  local f = assert(io.open(script, 'w'))
  f:write([[
local asio = require 'asio'
-- started from a light thread that ends at once, so that no stale stack
-- slot of the main chunk keeps the server's value alive by accident
asio.spawn_light_thread(function()
  print('PORT ' .. asio.server('127.0.0.1', 0, function(c)
    asio.spawn_light_thread(function()
      local line = c:read_line()
      c:write('bye\n')
      c:close()
      if line == 'stop' then asio.stop() end
    end)
  end):port())
  io.stdout:flush()
end)
asio.spawn_light_thread(function()
  for _ = 1, 5 do collectgarbage() collectgarbage() asio.sleep(0.01) end
end)
asio.run()
print('run returned')
]])
  f:close()
  local pid = sh(('cd %s && (timeout 30 ./test/luajit %s > %s 2>&1 & echo $!)'):format(T.root, script, out)):match('%d+')
  local ok, err = pcall(go, function()
    local port
    for _ = 1, 500 do
      port = slurp(out):match('PORT (%d+)')
      if port then break end
      asio.sleep(0.02)
    end
    assert(port, 'the script did not start: ' .. slurp(out))
    asio.sleep(0.3)   -- the script has collected garbage by now
    assert(not slurp(out):find('run returned', 1, true), 'run() returned with the server open')
    local c = assert(asio.connect('127.0.0.1', port))
    assert(c:write('stop\n'))
    eq(c:read_line(), 'bye', 'answer')
    c:close()
    for _ = 1, 500 do
      if slurp(out):find('run returned', 1, true) then break end
      asio.sleep(0.02)
    end
    eq(slurp(out), 'PORT ' .. port .. '\nrun returned\n', 'script output')
  end)
  os.execute('kill ' .. pid .. ' 2>/dev/null')
  os.remove(script)
  os.remove(out)
  assert(ok, err)
end)

test('an accept handler error names the server and closes the connection', function()
  local reports = {}
  asio.on_error(function(err, trace, where) reports[#reports + 1] = { err = err, trace = trace, where = where } end)
  local ok, err = pcall(go, function()
    local srv = assert(asio.server('127.0.0.1', 0, function() error('handler failed') end))
    local port = srv:port()
    local c = assert(asio.connect('127.0.0.1', port))
    c:settimeout(5)
    local d, e = c:read(1)
    c:close()
    srv:close()
    eq(d, nil, 'data')
    eq(e, 'eof', 'the client sees its connection closed')
    eq(#reports, 1, 'reports')
    eq(reports[1].where, 'server handler on 127.0.0.1:' .. port, 'where')
    assert(tostring(reports[1].err):find('handler failed', 1, true), tostring(reports[1].err))
    assert(reports[1].trace:find('servers.lua', 1, true), reports[1].trace)
  end)
  asio.on_error(nil)
  assert(ok, err)
end)

test('an accept handler that handed the connection on before raising leaves it open', function()
  local reports = 0
  asio.on_error(function() reports = reports + 1 end)
  local ok, err = pcall(go, function()
    local srv = assert(asio.server('127.0.0.1', 0, function(c)
      asio.spawn_light_thread(function()
        local line = c:read_line()
        c:write(line .. '!\n')
        c:close()
      end)
      error('raised after handing on')
    end))
    local c = assert(asio.connect('127.0.0.1', srv:port()))
    c:settimeout(5)
    assert(c:write('x\n'))
    eq(c:read_line(), 'x!', 'the light thread still serves the connection')
    c:close()
    srv:close()
  end)
  asio.on_error(nil)
  assert(ok, err)
  eq(reports, 1, 'reports')
end)

test('the default report of an accept handler error names the server address', function()
  if T.windows then T.skip('needs a POSIX shell') end
  local out = sh('cd ' .. T.root .. [[ && timeout 30 ./test/luajit -e "
    local asio = require 'asio'
    local srv = asio.server('::1', 0, function() error('nope') end)
    if not srv then print('no ipv6') return end
    local port = srv:port()
    asio.spawn_light_thread(function()
      local c = assert(asio.connect('::1', port))
      c:read(1)
      c:close()
      srv:close()
      print('port ' .. port)
    end)
    asio.run()
  " 2>&1]])
  if out:find('no ipv6', 1, true) then T.skip('IPv6 loopback ::1 is not available') end
  local port = assert(out:match('port (%d+)'), out)
  assert(out:find('asio: error in server handler on [::1]:' .. port .. ': ', 1, true), out)
  assert(out:find('nope', 1, true), out)
end)

test('the echo example on :: shows its address as [::]:PORT', function()
  if T.windows then T.skip('needs a POSIX shell') end
  local probe = asio.server('::1', 0, function(c) c:close() end)
  if not probe then T.skip('IPv6 is not available') end
  probe:close()
  local out = os.tmpname()
  local pid = sh(('cd %s && (timeout 30 ./test/luajit examples/echo_server.lua :: 0 > %s 2>&1 & echo $!)')
    :format(T.root, out)):match('%d+')
  local ok, err = pcall(go, function()
    local text
    for _ = 1, 500 do
      text = slurp(out)
      if text:find('\n', 1, true) then break end
      asio.sleep(0.02)
    end
    assert(text:match('^echo server listening on %[::%]:%d+\n$'), 'output: ' .. text)
  end)
  os.execute('kill ' .. pid .. ' 2>/dev/null')
  os.remove(out)
  assert(ok, err)
end)
