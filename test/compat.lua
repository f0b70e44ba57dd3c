-- Connection pools, and existing client libraries run unchanged on the
-- OpenResty cosocket layer (asio.ngx) and the LuaSocket layer (asio.socket)
-- against real servers started on loopback ports and stopped by pid.
local T = require 'testlib'
local asio = require 'asio'

local root = T.root
local libdir = root .. '/build/compat/root/usr/share/lua/5.1/'

local function have(cmd)
  return os.execute('command -v ' .. cmd .. ' >/dev/null 2>&1') == 0
end

local fetched
local function need_libs()
  if T.windows then T.skip('starting redis-server and memcached needs a POSIX shell') end
  if fetched == nil then
    fetched = os.execute('sh ' .. root .. '/test/compat-libs.sh >/dev/null 2>&1') == 0
    if fetched then package.path = libdir .. '?.lua;' .. package.path end
  end
  if not fetched then T.skip('the Debian packages lua-nginx-redis, lua-nginx-memcached and lua-redis could not be fetched') end
end

local function free_port()
  local srv = assert(asio.server('127.0.0.1', 0, function(c) c:close() end))
  local p = srv:port()
  srv:close()
  return p
end

-- Starts `cmd` (with %d for the port) in the background; waits until the
-- port accepts connections. Returns pid, port.
local function start(what, cmd)
  if not have(what) then T.skip(what .. ' is not installed (.ci/run installs it)') end
  local port = free_port()
  local p = io.popen(cmd:format(port) .. ' >/dev/null 2>&1 & echo $!')
  local pid = p:read('*l')
  p:close()
  for _ = 1, 200 do
    local c = asio.connect('127.0.0.1', port)
    if c then c:close(); return pid, port end
    asio.sleep(0.025)
  end
  os.execute('kill -9 ' .. pid)
  error(what .. ' did not start')
end

local function stop(pid)
  os.execute('kill -CONT ' .. pid .. ' 2>/dev/null; kill -9 ' .. pid .. ' 2>/dev/null')
end

local function redis_server()
  return start('redis-server', "redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no")
end

-- Runs fn(port) against a fresh redis-server; always stops it.
local function with_redis(fn)
  need_libs()
  T.go(function()
    local pid, port = redis_server()
    local ok, err = xpcall(fn, debug.traceback, port, pid)
    asio.pool_flush()
    stop(pid)
    if not ok then error(err, 0) end
  end, 60)
end

---------------------------------------------------------------------------
-- Pools in the core
---------------------------------------------------------------------------

T.test('pool: reuse counts, dirty and peer-closed connections never handed out', function()
  T.go(function()
    local conns = {}
    local srv, port = T.server(function(c)
      conns[#conns + 1] = c
      while true do
        local l = c:read_line()
        if not l then break end
        if l == 'junk' then c:write('pong\n'); asio.sleep(0.02); c:write('unsolicited\n')
        elseif l == 'bye' then c:close(); break
        else c:write(l .. '\n') end
      end
    end)
    local c = assert(asio.connect('127.0.0.1', port))
    T.eq(c:getreusedtimes(), 0, 'fresh')
    assert(c:write('a\n')); T.eq(c:read_line(), 'a')
    T.eq(c:setkeepalive(10), true)
    T.eq(tostring(c), 'asio connection (closed)', 'holder sees it closed')
    T.eq(select(2, c:read(1)), 'closed')
    c = assert(asio.connect('127.0.0.1', port))
    T.eq(c:getreusedtimes(), 1, 'reused once')
    assert(c:write('b\n')); T.eq(c:read_line(), 'b')
    assert(c:setkeepalive(10))
    c = assert(asio.connect('127.0.0.1', port))
    T.eq(c:getreusedtimes(), 2, 'reused twice')
    -- dirty: the server sends a line nobody reads while the conn is idle
    assert(c:write('junk\n')); T.eq(c:read_line(), 'pong')
    asio.sleep(0.05)
    assert(c:setkeepalive(10))
    c = assert(asio.connect('127.0.0.1', port))
    T.eq(c:getreusedtimes(), 0, 'a dirty connection is not reused')
    -- closed by the peer while idle
    assert(c:write('bye\n'))
    asio.sleep(0.05)
    assert(c:setkeepalive(10))
    c = assert(asio.connect('127.0.0.1', port))
    T.eq(c:getreusedtimes(), 0, 'a peer-closed connection is not reused')
    -- unread bytes at setkeepalive: refused, connection closed
    assert(c:write('x\n')); assert(c:write('y\n')); T.eq(c:read_line(), 'x'); asio.sleep(0.02)
    local ok, err = c:setkeepalive(10)
    T.eq(ok, nil); T.eq(err, 'unread data in buffer')
    c:close()
    asio.pool_flush()
    for _, sc in ipairs(conns) do sc:close() end
    srv:close()
  end)
end)

T.test('pool: idle timeout, pool size, named pools', function()
  T.go(function()
    local srv, port = T.server(function(c) while c:read_some() ~= '' do end c:close() end)
    local key = '127.0.0.1:' .. port
    local cs = {}
    for i = 1, 3 do cs[i] = assert(asio.connect('127.0.0.1', port)) end
    for i = 1, 3 do assert(cs[i]:setkeepalive(0.1, 2)) end
    T.eq(require('asio.pool').stats()[key], 2, 'pool size bounds the idle connections')
    asio.sleep(0.3)
    T.eq(require('asio.pool').stats()[key], nil, 'idle timeout closed them')
    local c = assert(asio.connect('127.0.0.1', port, { pool = 'mine' }))
    assert(c:setkeepalive(10))
    local d = assert(asio.connect('127.0.0.1', port))
    T.eq(d:getreusedtimes(), 0, 'other pool name')
    d:close()
    d = assert(asio.connect('127.0.0.1', port, { pool = 'mine' }))
    T.eq(d:getreusedtimes(), 1, 'same pool name')
    T.raises("bad argument #1 to 'setkeepalive'", function() d:setkeepalive('x') end)
    d:close()
    asio.pool_flush()
    T.raises("pool_size must be a positive integer", function() asio.connect('127.0.0.1', port, { pool_size = 0 }) end)
    T.raises("backlog needs pool_size", function() asio.connect('127.0.0.1', port, { backlog = 1 }) end)
    srv:close()
  end)
end)

T.test('pool: backlog waits in line, with its limit and timeout', function()
  T.go(function()
    local srv, port = T.server(function(c) while c:read_some() ~= '' do end c:close() end)
    local o = { pool = 'b', pool_size = 1, backlog = 1 }
    local a = assert(asio.connect('127.0.0.1', port, o))
    local got
    local wb = T.spawn(function()
      local b = assert(asio.connect('127.0.0.1', port, o))
      got = b:getreusedtimes()
      b:close()
    end)
    asio.sleep(0.02)
    local c, err = asio.connect('127.0.0.1', port, o)
    T.eq(c, nil); T.eq(err, 'too many waiting connect operations')
    assert(a:setkeepalive(10))
    wb()
    T.eq(got, 1, 'the waiter got the released connection')
    a = assert(asio.connect('127.0.0.1', port, o))
    local t0 = asio.now()
    c, err = asio.connect('127.0.0.1', port, { pool = 'b', pool_size = 1, backlog = 1, timeout = 0.1 })
    T.eq(err, 'timeout', 'backlog timeout')
    assert(asio.now() - t0 >= 0.09)
    a:close()
    a = assert(asio.connect('127.0.0.1', port, o))
    a:close()
    asio.pool_flush()
    srv:close()
  end)
end)

---------------------------------------------------------------------------
-- The cosocket layer against a local server
---------------------------------------------------------------------------

T.test('ngx: receive patterns, receiveuntil, nested send, partial data', function()
  local ngx = require 'asio.ngx'
  T.go(function()
    local srv, port = T.server(function(c)
      c:write('line one\r\nabcdefXYZtail--B--rest--B--')
      asio.sleep(0.05)
      c:write('end')
      c:close()
    end)
    local s = ngx.socket.tcp()
    s:settimeout(2000)
    T.eq(s:connect('127.0.0.1', port), 1)
    T.eq(s:receive(), 'line one')
    T.eq(s:receive(3), 'abc')
    T.eq(s:receiveany(3), 'def')
    local it = s:receiveuntil('--B--')
    T.eq(it(), 'XYZtail', 'without size')
    T.eq(it(), 'rest', 'without size')
    local _, err, partial = s:receive(10)
    T.eq(err, 'closed'); T.eq(partial, 'end')
    T.eq(select(2, s:receive(1)), 'closed')
    srv:close()

    srv, port = T.server(function(c)
      c:write('0123456789--B--after')
      local d = c:read(9)
      c:write(d)
      c:close()
    end)
    s = ngx.socket.tcp()
    assert(s:connect('127.0.0.1', port))
    it = s:receiveuntil('--B--', { inclusive = true })
    T.eq(it(4), '0123'); T.eq(it(4), '4567'); T.eq(it(4), '89--B--')
    local x, e = it(4)
    T.eq(x, nil); T.eq(e, nil)
    T.eq(s:receive(5), 'after')
    T.eq(s:send({ 'a', { 1, { 'b', 2.5 } }, 'xyz' }), 9)
    T.eq(s:receive('*a'), 'a1b2.5xyz')
    T.raises("bad data type boolean", function() s:send({ true }) end)
    s:close()
    T.eq(select(2, s:close()), 'closed')
    srv:close()
    local r, cerr = ngx.socket.tcp():connect('127.0.0.1', port)
    T.eq(r, nil); T.eq(cerr, 'connection refused')
    T.eq(select(2, ngx.socket.tcp():sslhandshake()), 'closed', 'sslhandshake before connect')
  end)
end)

T.test('ngx: timers, thread spawn/wait, semaphore, misc', function()
  local ngx = require 'asio.ngx'
  T.eq(rawget(_G, 'ngx'), ngx, 'installed as the global')
  T.go(function()
    local t0 = ngx.now()
    T.eq(math.abs(t0 - os.time()) < 2, true, 'wall clock')
    local th = ngx.thread.spawn(function(a) ngx.sleep(0.02); return a, 'x' end, 7)
    local ok, a, b = ngx.thread.wait(th)
    T.eq(ok, true); T.eq(a, 7); T.eq(b, 'x')
    local bad = ngx.thread.spawn(function() error('boom', 0) end)
    local ok2, err = ngx.thread.wait(bad)
    T.eq(ok2, false); T.eq(err, 'boom')
    local sleeper = ngx.thread.spawn(function() ngx.sleep(10); return 'woke' end)
    local waiter = ngx.thread.spawn(function() return ngx.thread.wait(sleeper) end)
    ngx.sleep(0.01)
    T.eq(ngx.thread.kill(sleeper), true, 'kill a sleeping thread')
    local kok, kerr = ngx.thread.kill(sleeper)
    T.eq(kok, nil, 'kill twice'); T.eq(kerr, 'already terminated', 'kill error')
    local wok, werr = ngx.thread.wait(waiter)
    T.eq(wok, true, 'the waiter ended'); T.eq(werr, nil, 'its wait returned nil')
    local sema = require('ngx.semaphore').new(0)
    local w = ngx.thread.spawn(function() return sema:wait(1) end)
    ngx.sleep(0.01)
    T.eq(sema:count(), -1)
    sema:post(1)
    T.eq(select(2, ngx.thread.wait(w)), true)
    T.eq(select(2, sema:wait(0.01)), 'timeout')
    T.eq(ngx.get_phase(), 'timer')
    T.eq(ngx.worker.exiting(), false)
    T.eq(type(ngx.config.ngx_lua_version), 'number')
    T.eq(ngx.ERR, 4)
  end)
end)

---------------------------------------------------------------------------
-- lua-resty-redis (Debian's lua-nginx-redis) against redis-server
---------------------------------------------------------------------------

local function resty_redis(port)
  require 'asio.ngx'
  local redis = require 'nginx.redis'
  local r = redis:new()
  r:set_timeout(5000)
  assert(r:connect('127.0.0.1', port))
  return r
end

T.test('lua-resty-redis: 100 light threads SET/GET/INCR', function()
  with_redis(function(port)
    local waits = {}
    for i = 1, 100 do
      waits[i] = T.spawn(function()
        local r = resty_redis(port)
        for k = 1, 20 do
          assert(r:set('k' .. i .. ':' .. k, 'v' .. i * k))
          T.eq(r:get('k' .. i .. ':' .. k), 'v' .. i * k)
          assert(r:incr('counter'))
        end
        T.eq(r:get('missing' .. i), ngx.null)
        assert(r:set_keepalive(10000, 100))
        return true
      end)
    end
    for i = 1, 100 do T.eq(waits[i](), true) end
    local r = resty_redis(port)
    T.eq(r:get('counter'), '2000')
    r:close()
  end)
end)

T.test('lua-resty-redis: pipelining and pooled connections', function()
  with_redis(function(port)
    local r = resty_redis(port)
    r:init_pipeline()
    for i = 1, 50 do r:set('p' .. i, i) end
    for i = 1, 50 do r:get('p' .. i) end
    local res = assert(r:commit_pipeline())
    T.eq(#res, 100)
    for i = 1, 50 do T.eq(res[i], 'OK'); T.eq(res[50 + i], tostring(i)) end
    T.eq(r:get_reused_times(), 0)
    assert(r:set_keepalive(10000, 10))
    for _ = 1, 3 do
      r = resty_redis(port)
      assert(r:get_reused_times() > 0)
      T.eq(r:get('p7'), '7')
      assert(r:set_keepalive(10000, 10))
    end
  end)
end)

T.test('lua-resty-redis: timeout while the server is stopped', function()
  with_redis(function(port, pid)
    local r = resty_redis(port)
    assert(r:set('a', 1))
    os.execute('kill -STOP ' .. pid)
    r:set_timeout(200)
    local t0 = asio.now()
    local v, err = r:get('a')
    T.eq(v, nil); T.eq(err, 'timeout')
    assert(asio.now() - t0 >= 0.15)
    os.execute('kill -CONT ' .. pid)
    r:close()
    r = resty_redis(port)
    T.eq(r:get('a'), '1')
    r:close()
  end)
end)

T.test('lua-resty-redis: CLIENT KILL mid-run gives a clean error', function()
  with_redis(function(port)
    local victim = resty_redis(port)
    assert(victim:client('setname', 'victim'))
    local errs = {}
    local w = T.spawn(function()
      for _ = 1, 1000 do
        local ok, err = victim:incr('n')
        if not ok then errs[#errs + 1] = err; break end
        asio.sleep(0.001)
      end
    end)
    asio.sleep(0.03)
    local admin = resty_redis(port)
    local list = admin:client('list')
    local id = list:match('id=(%d+)[^\n]*name=victim')
    assert(id, list)
    T.eq(admin:client('kill', 'id', id), 1)
    w()
    T.eq(#errs, 1, 'the killed client saw one error')
    assert(errs[1] == 'closed' or errs[1] == 'connection reset by peer', errs[1])
    admin:close()
  end)
end)

T.test('lua-resty-redis: pub/sub subscribe and read_reply', function()
  with_redis(function(port)
    local sub = resty_redis(port)
    local res = assert(sub:subscribe('chan'))
    T.eq(res[1], 'subscribe'); T.eq(res[2], 'chan')
    local pub = resty_redis(port)
    T.eq(pub:publish('chan', 'hello'), 1)
    local msg = assert(sub:read_reply())
    T.eq(msg[1], 'message'); T.eq(msg[3], 'hello')
    sub:set_timeout(100)
    T.eq(select(2, sub:read_reply()), 'timeout')
    assert(sub:unsubscribe('chan'))
    sub:close(); pub:close()
  end)
end)

---------------------------------------------------------------------------
-- lua-resty-memcached against memcached
---------------------------------------------------------------------------

T.test('lua-resty-memcached: set, get, incr, multi-get, pooled', function()
  need_libs()
  T.go(function()
    local pid, port = start('memcached', 'memcached -l 127.0.0.1 -p %d -U 0 -u nobody')
    local ok, err = xpcall(function()
      require 'asio.ngx'
      local memcached = require 'nginx.memcached'
      local function new()
        local m = memcached:new()
        m:set_timeout(5000)
        assert(m:connect('127.0.0.1', port))
        return m
      end
      local m = new()
      T.eq(m:set('dog', 32), 1)
      T.eq(m:get('dog'), '32')
      T.eq(m:incr('dog', 10), '42')
      assert(m:set('cat', 'meow'))
      local res = assert(m:get({ 'dog', 'cat', 'none' }))
      T.eq(res.dog[1], '42'); T.eq(res.cat[1], 'meow'); T.eq(res.none, nil)
      local gets = assert(m:gets({ 'dog', 'cat' }))
      T.eq(gets.cat[1], 'meow'); assert(gets.cat[3])
      T.eq(m:get_reused_times(), 0)
      assert(m:set_keepalive(10000, 10))
      m = new()
      assert(m:get_reused_times() > 0)
      T.eq(m:get('cat'), 'meow')
      m:close()
    end, debug.traceback)
    asio.pool_flush()
    stop(pid)
    if not ok then error(err, 0) end
  end, 60)
end)

---------------------------------------------------------------------------
-- The LuaSocket layer: redis-lua and socket.http
---------------------------------------------------------------------------

T.test('redis-lua through asio.socket', function()
  with_redis(function(port)
    local redis = require 'redis'
    local sock = require 'asio.socket'
    local waits = {}
    for i = 1, 20 do
      waits[i] = T.spawn(function()
        local client = redis.connect({ socket = assert(sock.connect('127.0.0.1', port)) })
        for k = 1, 10 do
          assert(client:set('r' .. i .. k, 'x' .. k))
          T.eq(client:get('r' .. i .. k), 'x' .. k)
          client:incr('rc')
        end
        client:quit()
        return true
      end)
    end
    for i = 1, 20 do T.eq(waits[i](), true) end
    local client = redis.connect({ socket = assert(sock.connect('127.0.0.1', port)) })
    T.eq(client:get('rc'), '200')
    client:quit()
  end)
end)

T.test('socket.http GET and POST through create', function()
  if T.qemu then T.skip("LuaSocket's C core (socket.core) is built for the host, not the emulated architecture") end
  if T.windows then T.skip("LuaSocket's C core is not built for Windows here") end
  local okcore = pcall(require, 'socket')
  if okcore then require('asio.socket').pcall_protect() end
  local okhttp, http = pcall(require, 'socket.http')
  if not okhttp then T.skip("LuaSocket's socket.http is not installed (.ci/run installs lua-socket): " .. tostring(http)) end
  if not have('python3') then T.skip('python3 is not installed') end
  local ltn12 = require 'ltn12'
  local sock = require 'asio.socket'
  T.go(function()
    local port = free_port()
    local script = root .. '/test/helpers/http_echo.py'
    local p = io.popen('python3 ' .. script .. ' ' .. port .. ' >/dev/null 2>&1 & echo $!')
    local pid = p:read('*l'); p:close()
    local ok, err = xpcall(function()
      for _ = 1, 200 do
        local c = asio.connect('127.0.0.1', port)
        if c then c:close() break end
        asio.sleep(0.025)
      end
      local body = {}
      local _, code = http.request { url = 'http://127.0.0.1:' .. port .. '/hello',
        create = sock.create, sink = ltn12.sink.table(body) }
      T.eq(code, 200); T.eq(table.concat(body), 'GET /hello')
      local payload = string.rep('0123456789', 5000)
      body = {}
      _, code = http.request { url = 'http://127.0.0.1:' .. port .. '/post', method = 'POST',
        create = sock.create, source = ltn12.source.string(payload),
        headers = { ['content-length'] = #payload }, sink = ltn12.sink.table(body) }
      T.eq(code, 200); T.eq(table.concat(body), 'POST /post ' .. payload)
    end, debug.traceback)
    stop(pid)
    if not ok then error(err, 0) end
  end, 60)
end)

T.test('lua-resty-http', function()
  T.skip('lua-resty-http is not packaged in Debian, the only source of libraries here (asio.ngx provides the nested-coroutine I/O it needs)')
end)

T.test('pool: Unix socket connections pool under their path or name', function()
  if T.windows then T.skip('no Unix sockets under wine') end
  T.go(function()
    local path = os.tmpname(); os.remove(path)
    local srv = assert(asio.server('unix:' .. path, function(c)
      asio.spawn_light_thread(function() while c:read_some() ~= '' do end c:close() end)
    end))
    local c = assert(asio.connect('unix:' .. path, { pool = 'u', pool_size = 2 }))
    assert(c:setkeepalive(10))
    c = assert(asio.connect('unix:' .. path, { pool = 'u', pool_size = 2 }))
    T.eq(c:getreusedtimes(), 1)
    c:close()
    local ngx = require 'asio.ngx'
    local s = ngx.socket.tcp()
    assert(s:connect('unix:' .. path, { pool = 'nu' }))
    assert(s:setkeepalive(10000))
    assert(s:connect('unix:' .. path, { pool = 'nu' }))
    T.eq(s:getreusedtimes(), 1)
    s:close()
    asio.pool_flush()
    srv:close()
  end)
end)

-- JIT health of the layers' hot paths: receive(n) and send must compile;
-- a trace may stop only at the coroutine boundary.
T.test('JIT health: ngx and LuaSocket receive(n) and send compile without NYI aborts', function()
  if not jit or not jit.status() then T.skip('the JIT is off') end
  local jutil = require 'jit.util'
  local vmdef = require 'jit.vmdef'
  local ngx = require 'asio.ngx'
  local sock = require 'asio.socket'
  local stopped, bad = {}, {}
  local function mine(func)
    local info = jutil.funcinfo(func)
    return info and info.source and (info.source:find('asio[/\\]ngx%.lua$') or info.source:find('asio[/\\]socket%.lua$'))
  end
  local function recorder(what, _, func, pc, otr, oex)
    if what == 'stop' then
      stopped[#stopped + 1] = jutil.funcinfo(func).loc
    elseif what == 'abort' and mine(func) then
      local msg = vmdef.traceerr[otr] or tostring(otr)
      if type(oex) == 'number' and msg:find('%%d') then msg = msg:format(oex) end
      if msg:find('NYI', 1, true) and not msg:find('coroutine', 1, true) then
        bad[#bad + 1] = jutil.funcinfo(func, pc).loc .. ': ' .. msg
      end
    end
  end
  local ok, err = T.with_trace_events(recorder, T.go, function()
    local msg = ('m'):rep(64)
    local srv, port = T.server(function(c)
      while true do
        local d = c:read(64)
        if not d or not c:write(d) then break end
      end
      c:close()
    end)
    local s = ngx.socket.tcp()
    assert(s:connect('127.0.0.1', port))
    local l = assert(sock.connect('127.0.0.1', port))
    for _ = 1, 300 do
      for _ = 1, 5 do assert(s:send(msg)); assert(l:send(msg)) end
      for _ = 1, 5 do T.eq(s:receive(64), msg); T.eq(l:receive(64), msg) end
    end
    s:close(); l:close()
    srv:close()
  end)
  assert(ok, err)
  assert(#stopped > 0, 'no trace was compiled')
  assert(#bad == 0, 'NYI aborts:\n  ' .. table.concat(bad, '\n  '))
end)

T.test('ngx: udp setpeername/send/receive/close, timeouts with partial data, bad arguments', function()
  local ngx = require 'asio.ngx'
  T.go(function()
    local srv = assert(asio.udp())
    assert(srv:bind('127.0.0.1', 0))
    local _, uport = srv:local_address()
    local echo = T.spawn(function()
      local data, ip, p = srv:recvfrom(5)
      srv:sendto('echo: ' .. data, ip, p)
    end)
    local u = ngx.socket.udp()
    T.eq(u:setpeername('127.0.0.1', uport), 1)
    u:settimeout(2000)
    T.eq(u:send({ 'he', { 'llo' } }), 1)
    T.eq(u:receive(), 'echo: hello')
    echo()
    u:settimeout(50)
    T.eq(select(2, u:receive()), 'timeout')
    T.eq(u:close(), 1)
    T.eq(select(2, u:close()), 'closed')
    srv:close()

    local srv2, port = T.server(function(c)
      c:write('par')
      c:read(1)
      c:close()
    end)
    local s = ngx.socket.tcp()
    assert(s:connect('127.0.0.1', port))
    s:settimeout(50)
    local d, err, partial = s:receive(10)
    T.eq(d, nil); T.eq(err, 'timeout'); T.eq(partial, 'par')
    d, err, partial = s:receive('*l')
    T.eq(err, 'timeout'); T.eq(partial, '', 'partial data is handed out once')
    T.eq(s:settimeouts(1000, 1000, 30), 1)
    local t0 = asio.now()
    T.eq(select(2, s:receive(1)), 'timeout', 'read timeout of settimeouts')
    assert(asio.now() - t0 < 0.9, 'the read timeout, not the others, applied')
    T.raises("bad argument #1 to 'receive'", function() s:receive('*x') end)
    T.raises("bad argument #1 to 'receiveany'", function() s:receiveany(0) end)
    T.raises("bad argument #1 to 'settimeout'", function() s:settimeout('x') end)
    T.raises("bad argument #1 to 'send'", function() s:send(nil) end)
    T.raises("bad argument #1 to 'connect'", function() s:connect(nil) end)
    T.raises("tcp socket expected", function() s.close(nil) end)
    assert(s:send('x'))
    s:close()
    srv2:close()

    local sock = require 'asio.socket'
    local srv3, port3 = T.server(function(c)
      c:write('abc')
      c:read(1)
      c:write('def\nrest')
      c:close()
    end)
    local l = assert(sock.connect('127.0.0.1', port3))
    l:settimeout(0.05)
    d, err, partial = l:receive(5)
    T.eq(err, 'timeout'); T.eq(partial, 'abc')
    T.eq(l:send('xyz', 2, 2), 2)
    l:settimeout(2)
    T.eq(l:receive('*l', partial), 'abcdef', 'prefix')
    T.eq(select(3, l:receive(10)), 'rest', 'partial at close')
    T.eq(select(2, l:receive(1)), 'closed')
    local ip, p, fam = l:getpeername()
    T.eq(ip, '127.0.0.1'); T.eq(p, port3); T.eq(fam, 'inet')
    l:close()
    T.eq(select(2, l:getpeername()), 'closed')
    T.raises("bad argument #1 to 'receive'", function() l:receive('*x') end)
    T.raises("bad argument #1 to 'settimeout'", function() l:settimeout('x') end)
    srv3:close()
  end)
end)
