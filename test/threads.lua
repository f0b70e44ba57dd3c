-- Worker threads, servers on several threads, channels and shared
-- dictionaries.
local asio = require 'asio'
local T = require 'testlib'

local test, go, eq, raises = T.test, T.go, T.eq, T.raises

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read('*a')
  p:close()
  return out
end

-- A line echo handler for servers on several threads. `asio` is an upvalue:
-- each worker gets its own.
local function echo_handler(c)
  asio.spawn_light_thread(function()
    while true do
      local line = c:read_line()
      if not line then break end
      if not c:write(line .. '\n') then break end
    end
    c:close()
  end)
end

-- Runs `clients` light threads that each connect, exchange `rounds` lines
-- and close; returns the number that saw every answer right.
local function load_server(port, clients, rounds)
  local good = 0
  local waits = {}
  for i = 1, clients do
    waits[i] = T.spawn(function()
      local c = assert(asio.connect('127.0.0.1', port))
      for j = 1, rounds do
        local msg = ('client %d line %d'):format(i, j)
        assert(c:write(msg .. '\n'))
        eq(c:read_line(), msg, 'echo')
      end
      c:close()
      good = good + 1
    end)
  end
  for i = 1, clients do waits[i]() end
  return good
end

-- Servers on several threads move sockets between loops, which Windows
-- cannot do (a socket stays on its first completion port). Everything here
-- also runs under qemu-user (armhf, arm64, mipsel), threads included.
local function require_threaded_server()
  if T.windows then T.skip('threads = N is not supported on Windows') end
end

---------------------------------------------------------------------------
-- Servers on several threads
---------------------------------------------------------------------------

test('threads = 2: every connection served, both workers take a share', function()
  require_threaded_server()
  go(function()
    local srv = assert(asio.server('127.0.0.1', 0, echo_handler, { threads = 2 }))
    local port = srv:port()
    -- Connections that stay open while others arrive make the open counts
    -- the workers report differ, which is what the hand-off balances on.
    eq(load_server(port, 200, 10), 200, 'clients served')
    local st = srv:stats()
    eq(#st.workers, 2, 'workers')
    eq(st.handed, 200, 'connections handed over')
    eq(st.workers[1].handed + st.workers[2].handed, 200, 'sum of shares')
    for i = 1, 2 do
      assert(st.workers[i].handed >= 40,
        ('worker %d got %d of 200 connections'):format(i, st.workers[i].handed))
    end
    srv:close()
  end, 60)
end)

test('threads = 2 pingpong: 500 short connections', function()
  require_threaded_server()
  go(function()
    local srv = assert(asio.server('127.0.0.1', 0, function(c)
      asio.spawn_light_thread(function()
        local ping = c:read(4)
        if ping == 'ping' then c:write('pong') end
        c:close()
      end)
    end, { threads = 2 }))
    local port = srv:port()
    local ok = 0
    for _ = 1, 10 do
      local waits = {}
      for i = 1, 50 do
        waits[i] = T.spawn(function()
          local c = assert(asio.connect('127.0.0.1', port))
          assert(c:write('ping'))
          if c:read(4) == 'pong' then ok = ok + 1 end
          c:close()
        end)
      end
      for i = 1, 50 do waits[i]() end
    end
    eq(ok, 500, 'pongs')
    local st = srv:stats()
    assert(st.workers[1].handed > 0 and st.workers[2].handed > 0, 'both workers served')
    srv:close()
  end, 60)
end)

test("threads = 'auto' starts one worker per core", function()
  require_threaded_server()
  go(function()
    local srv = assert(asio.server('127.0.0.1', 0, echo_handler, { threads = 'auto' }))
    local cores = tonumber(sh('getconf _NPROCESSORS_ONLN 2>/dev/null')) or
      require('asio.threads').cpu_count()
    eq(#srv:stats().workers, cores, 'workers')
    eq(load_server(srv:port(), 10, 2), 10, 'clients served')
    srv:close()
  end)
end)

test('threads = N on Windows: nil, not supported, and nothing opened', function()
  if not T.windows then T.skip('Windows only') end
  go(function()
    local srv, err = asio.server('127.0.0.1', 0, echo_handler, { threads = 2 })
    eq(srv, nil, 'server')
    eq(err, 'not supported', 'error')
    eq(asio.stats().servers, 0, 'servers open')
  end)
end)

test('reuseport = true: each worker listens, the kernel balances', function()
  require_threaded_server()
  if T.windows then T.skip('SO_REUSEPORT is Linux-only') end
  go(function()
    local srv = assert(asio.server('127.0.0.1', 0, echo_handler,
      { threads = 2, reuseport = true }))
    -- Give the workers time to bind their sockets before counting on them.
    asio.sleep(0.3)
    eq(load_server(srv:port(), 100, 5), 100, 'clients served')
    srv:close()
  end, 60)
end)

test('the seed server snippet with local functions and threads = 2', function()
  require_threaded_server()
  go(function()
    local function greeting(name) return 'hello, ' .. name end
    local function serve(conn)
      local name = conn:read_line()
      if name then conn:write(greeting(name) .. '\n') end
      conn:close()
    end
    local srv = assert(asio.server('127.0.0.1', 0, function(conn)
      asio.spawn_light_thread(serve, conn)
    end, { threads = 2 }))
    for i = 1, 4 do
      local c = assert(asio.connect('127.0.0.1', srv:port()))
      c:write('user' .. i .. '\n')
      eq(c:read_line(), 'hello, user' .. i, 'answer')
      c:close()
    end
    srv:close()
  end)
end)

test('init runs once per worker before it serves; globals it sets are seen', function()
  require_threaded_server()
  go(function()
    local counts = asio.shared('test-init', 65536)
    counts:flush_all()
    local srv = assert(asio.server('127.0.0.1', 0, function(c)
      asio.spawn_light_thread(function()
        c:write(GREETING .. '\n')
        c:close()
      end)
    end, {
      threads = 2,
      init = function()
        GREETING = 'set by init'
        require('asio').shared('test-init'):incr('runs', 1, 0)
      end,
    }))
    local c = assert(asio.connect('127.0.0.1', srv:port()))
    eq(c:read_line(), 'set by init', 'global from init')
    c:close()
    srv:close()
    for _ = 1, 100 do
      if counts:get('runs') == 2 then break end
      asio.sleep(0.01)
    end
    eq(counts:get('runs'), 2, 'init runs')
  end)
end)

test('init may be a module name', function()
  require_threaded_server()
  go(function()
    local srv = assert(asio.server('127.0.0.1', 0, function(c)
      asio.spawn_light_thread(function()
        c:write(type(package.loaded['asio.transfer']) .. '\n')
        c:close()
      end)
    end, { threads = 1, init = 'asio.transfer' }))
    local c = assert(asio.connect('127.0.0.1', srv:port()))
    eq(c:read_line(), 'table', 'module loaded by init')
    c:close()
    srv:close()
  end)
end)

test('per-connection features work in workers: addresses and timeouts', function()
  require_threaded_server()
  go(function()
    local srv = assert(asio.server('127.0.0.1', 0, function(c)
      asio.spawn_light_thread(function()
        c:settimeout(0.1)
        local ip, port = c:remote_address()
        local _, err = c:read(1)
        c:write(('%s %d %s\n'):format(ip, port, err))
        c:close()
      end)
    end, { threads = 2 }))
    local c = assert(asio.connect('127.0.0.1', srv:port()))
    local _, myport = c:local_address()
    eq(c:read_line(), ('127.0.0.1 %d timeout'):format(myport), 'worker view')
    c:close()
    srv:close()
  end)
end)

---------------------------------------------------------------------------
-- What may cross between states
---------------------------------------------------------------------------

test('transfer: handler upvalues that cannot cross are refused at server()', function()
  go(function()
    local c = assert(asio.connect('127.0.0.1', (function()
      local s, p = T.server(function(x) x:read(1) end)
      T.lsrv = s
      return p
    end)()))
    local err = raises("bad argument #3 to 'server'", asio.server, '127.0.0.1', 0,
      function() return c end, { threads = 2 })
    assert(err:find("upvalue 'c' of the handler: a connection", 1, true), err)
    local co = coroutine.create(print)
    err = raises("bad argument #3 to 'server'", asio.server, '127.0.0.1', 0,
      function() return co end, { threads = 2 })
    assert(err:find("upvalue 'co' of the handler: a coroutine", 1, true), err)
    local obj = setmetatable({}, {})
    err = raises("bad argument #3 to 'server'", asio.server, '127.0.0.1', 0,
      function() return obj end, { threads = 2 })
    assert(err:find('a table with a metatable', 1, true), err)
    local nested = { deep = { f = io.stdout } }
    err = raises("bad argument #3 to 'server'", asio.server, '127.0.0.1', 0,
      function() return nested end, { threads = 2 })
    assert(err:find("upvalue 'nested' of the handler.deep.f: userdata", 1, true), err)
    local cf = require('ffi').new('int[1]')
    err = raises("bad argument #3 to 'server'", asio.server, '127.0.0.1', 0,
      function() return cf end, { threads = 2 })
    assert(err:find('cdata', 1, true), err)
    err = raises("bad argument #4 to 'server'", asio.server, '127.0.0.1', 0,
      function() end, { threads = 2, init = function() return c end })
    assert(err:find("upvalue 'c' of init: a connection", 1, true), err)
    raises("bad argument #4 to 'server' (threads", asio.server, '127.0.0.1', 0,
      function() end, { threads = 0 })
    raises("bad argument #4 to 'server' (threads", asio.server, '127.0.0.1', 0,
      function() end, { threads = 'many' })
    raises("bad argument #4 to 'server' (init must be", asio.server, '127.0.0.1', 0,
      function() end, { threads = 1, init = 42 })
    raises("bad argument #3 to 'server' (threads need an IP server", asio.server,
      'unix:/tmp/x.sock', function() end, { threads = 1 })
    eq(asio.stats().servers, 1, 'no server opened by a refused call (only the helper)')
    c:close()
    T.lsrv:close()
  end)
end)

test('transfer: values that cross keep their shape', function()
  go(function()
    local shared_t = { 1, 2 }
    local cyclic = { name = 'c' }
    cyclic.self = cyclic
    local function add(a, b) return a + b end
    local format = string.format
    local th = asio.thread(function(t, cyc, f)
      return t.a[1] + t.a[2], t.a == t.b, cyc.self == cyc, cyc.name, f(2, 3),
        format('%03d', 7), type(asio.sleep), 0 / 0 ~= 0 / 0, math.huge, -0.5, nil, true
    end, { a = shared_t, b = shared_t }, cyclic, add)
    local r = { th:join() }
    eq(r[1], 3, 'sum')
    eq(r[2], true, 'shared reference kept')
    eq(r[3], true, 'cycle kept')
    eq(r[4], 'c', 'string')
    eq(r[5], 5, 'function with upvalue-free body')
    eq(r[6], '007', 'library function by name')
    eq(r[7], 'function', "the worker's own asio")
    eq(r[8], true, 'nan')
    eq(r[9], math.huge, 'inf')
    eq(r[10], -0.5, 'fraction')
    eq(r[11], nil, 'nil in the middle')
    eq(r[12], true, 'boolean')
  end)
end)

test('asio.thread: results and errors come back as copies', function()
  go(function()
    local t1 = asio.thread(function(n) return n * 2, { list = { 1, 2, 3 } } end, 21)
    local t2 = asio.thread(function() error('raised in the worker') end)
    local t3 = asio.thread(function() return coroutine.create(print) end)
    local a, b = t1:join()
    eq(a, 42, 'result')
    eq(#b.list, 3, 'table result')
    local ok, err = t2:join()
    eq(ok, nil, 'failed thread')
    assert(err:find('raised in the worker', 1, true), err)
    ok, err = t3:join()
    eq(ok, nil, 'untransferable result')
    assert(err:find('cannot transfer the results: a coroutine', 1, true), err)
    -- join again gives the same answer
    eq((t1:join()), 42, 'second join')
  end)
end)

test('asio.thread: bad arguments raise and start nothing', function()
  go(function()
    raises("bad argument #1 to 'thread' (function expected, got number)", asio.thread, 1)
    local co = coroutine.create(print)
    raises("bad argument #1 to 'thread' (cannot transfer argument #1: a coroutine)",
      asio.thread, function() end, co)
    eq(asio.stats().objects, 0, 'no thread started')
  end)
end)

test('asio.thread: a light thread in the worker can do I/O; join with timeout', function()
  go(function()
    local srv, port = T.server(function(c)
      local l = c:read_line()
      c:write('got ' .. l .. '\n')
      c:close()
    end)
    local th = asio.thread(function(p)
      local c = assert(asio.connect('127.0.0.1', p))
      c:write('from worker\n')
      local answer = c:read_line()
      c:close()
      asio.sleep(0.2)
      return answer
    end, port)
    local r, err = th:join(0.01)
    eq(r, nil, 'early join')
    eq(err, 'timeout', 'join timeout')
    eq(th:join(), 'got from worker', 'answer relayed by the worker')
    srv:close()
  end)
end)

---------------------------------------------------------------------------
-- Channels
---------------------------------------------------------------------------

test('channel: FIFO order, capacity and backpressure, timeouts', function()
  go(function()
    local ch = asio.channel(3)
    for i = 1, 3 do assert(ch:send(i)) end
    eq(ch:count(), 3, 'queued')
    local ok, err = ch:send(4, 0.05)
    eq(ok, nil, 'send to a full channel')
    eq(err, 'timeout', 'send timeout')
    local t0 = asio.now()
    local wait = T.spawn(function() return ch:send('late') end)
    asio.sleep(0.05)
    eq(ch:receive(), 1, 'first')
    assert(wait(), 'blocked sender went through once there was room')
    assert(asio.now() - t0 >= 0.04, 'the sender waited')
    eq(ch:receive(), 2, 'second')
    eq(ch:receive(), 3, 'third')
    eq(ch:receive(), 'late', 'fourth')
    ok, err = ch:receive(0.05)
    eq(ok, nil, 'receive from empty')
    eq(err, 'timeout', 'receive timeout')
  end)
end)

test('channel: close wakes both sides; receivers drain first', function()
  go(function()
    local ch = asio.channel(1)
    local recv_wait
    local empty = asio.channel(1)
    recv_wait = T.spawn(function() return empty:receive() end)
    assert(ch:send('a'))
    local send_wait = T.spawn(function() return ch:send('b') end)
    asio.sleep(0.02)
    ch:close()
    empty:close()
    local ok, err = send_wait()
    eq(ok, nil, 'blocked sender')
    eq(err, 'closed', 'sender woken by close')
    ok, err = recv_wait()
    eq(ok, nil, 'blocked receiver')
    eq(err, 'closed', 'receiver woken by close')
    eq(ch:receive(), 'a', 'what was queued drains')
    ok, err = ch:receive()
    eq(err, 'closed', 'then closed')
    ok, err = ch:send('c')
    eq(err, 'closed', 'send after close')
  end)
end)

test('channel: values are copies; tables and large strings cross', function()
  go(function()
    local ch = asio.channel(4)
    local t = { x = 1, list = { 'a', 'b' } }
    assert(ch:send(t))
    t.x = 2
    local got = ch:receive()
    eq(got.x, 1, 'copy taken at send')
    eq(got.list[2], 'b', 'nested')
    local big = ('0123456789'):rep(20000)
    assert(ch:send(big))
    eq(ch:receive(), big, '200 KB string')
    raises("bad argument #1 to 'send' (cannot transfer the value: a coroutine)",
      ch.send, ch, coroutine.create(print))
    eq(ch:count(), 0, 'refused send queued nothing')
  end)
end)

test('channel: bad arguments', function()
  raises("bad argument #1 to 'channel'", asio.channel, 0)
  raises("bad argument #1 to 'channel'", asio.channel, 'x')
  local ch = asio.channel()
  raises("calling 'send' on bad self", ch.send, {}, 1)
  raises("bad argument #2 to 'send'", ch.send, ch, 1, 'soon')
  raises("'receive' must be called from a light thread", ch.receive, ch)
  assert(ch:send('outside a light thread is fine when there is room'))
  eq(ch:receive(), 'outside a light thread is fine when there is room', 'non-waiting receive')
end)

test('channel: many producers and consumers across three states', function()
  go(function()
    local jobs, results = asio.channel(16), asio.channel(16)
    local function producer(ch, from, to)
      for i = from, to do assert(ch:send(i)) end
      return true
    end
    local function consumer(inbox, outbox)
      local sum, n = 0, 0
      while true do
        local v = inbox:receive()
        if v == nil then break end
        sum, n = sum + v, n + 1
      end
      assert(outbox:send({ sum = sum, n = n }))
      return n
    end
    local p1 = asio.thread(producer, jobs, 1, 5000)
    local c1 = asio.thread(consumer, jobs, results)
    local c2 = asio.thread(consumer, jobs, results)
    local mine = T.spawn(consumer, jobs, results)
    producer(jobs, 5001, 10000)
    assert(p1:join())
    jobs:close()
    mine()
    c1:join()
    c2:join()
    local sum, n = 0, 0
    for _ = 1, 3 do
      local r = results:receive(5)
      sum, n = sum + r.sum, n + r.n
    end
    eq(n, 10000, 'messages')
    eq(sum, 10000 * 10001 / 2, 'sum of all messages')
  end, 60)
end)

---------------------------------------------------------------------------
-- Shared dictionaries
---------------------------------------------------------------------------

test('shared: N workers x M increments give exactly N x M', function()
  go(function()
    local d = asio.shared('test-incr', 65536)
    d:flush_all()
    local ths = {}
    for i = 1, 4 do
      ths[i] = asio.thread(function(m)
        local dict = asio.shared('test-incr')
        for _ = 1, m do dict:incr('hits', 1, 0) end
        return true
      end, 5000)
    end
    for _ = 1, 5000 do d:incr('hits', 1, 0) end
    for i = 1, 4 do assert(ths[i]:join()) end
    eq(d:get('hits'), 25000, 'increments')
  end, 60)
end)

test('shared: get, set, add, replace, incr, delete, keys', function()
  local d = asio.shared('test-ops', 65536)
  d:flush_all()
  assert(d:set('s', 'text'))
  assert(d:set('n', 1.5))
  assert(d:set('b', false))
  eq(d:get('s'), 'text', 'string')
  eq(d:get('n'), 1.5, 'number')
  eq(d:get('b'), false, 'boolean')
  eq(d:get('none'), nil, 'absent')
  local ok, err = d:add('s', 'other')
  eq(ok, false, 'add existing')
  eq(err, 'exists', 'add error')
  assert(d:add('new', 1))
  ok, err = d:replace('missing', 1)
  eq(err, 'not found', 'replace absent')
  assert(d:replace('new', 2))
  eq(d:get('new'), 2, 'replaced')
  local v
  v, err = d:incr('s', 1)
  eq(err, 'not a number', 'incr a string')
  v, err = d:incr('absent', 1)
  eq(err, 'not found', 'incr absent without init')
  eq(d:incr('absent', 5, 10), 15, 'incr with init')
  assert(d:delete('s'))
  eq(d:get('s'), nil, 'deleted')
  local keys = d:keys()
  table.sort(keys)
  eq(table.concat(keys, ','), 'absent,b,n,new', 'keys')
  eq(#d:keys(2), 2, 'keys with a limit')
  local big = ('x'):rep(100000)
  ok, err = d:set('big', big)
  eq(ok, false, 'value larger than the dictionary')
  eq(err, 'no memory', 'error for it')
  local d2 = asio.shared('test-ops-big', 1048576)
  assert(d2:set('big', big))
  eq(d2:get('big'), big, 'value larger than the read buffer')
  raises("bad argument #1 to 'shared'", asio.shared, '')
  raises("bad argument #2 to 'shared'", asio.shared, 'x', 10)
  raises("bad argument #2 to 'set'", d.set, d, 'k', {})
  raises("bad argument #1 to 'get'", d.get, d, nil)
  raises("calling 'get' on bad self", d.get, {}, 'k')
  raises("bad argument #2 to 'incr'", d.incr, d, 'k', 'one')
end)

test('shared: entries expire', function()
  go(function()
    local d = asio.shared('test-expiry', 65536)
    d:flush_all()
    assert(d:set('short', 'v', 0.05))
    assert(d:set('long', 'v', 10))
    assert(d:set('forever', 'v'))
    eq(d:get('short'), 'v', 'before expiry')
    asio.sleep(0.1)
    eq(d:get('short'), nil, 'after expiry')
    eq(d:get('long'), 'v', 'not yet expired')
    local keys = d:keys()
    eq(#keys, 2, 'expired keys are not listed')
  end)
end)

test('shared: least recently used entries are evicted at max_bytes', function()
  local d = asio.shared('test-evict', 16384)
  d:flush_all()
  local forcible_seen = false
  for i = 1, 200 do
    local ok, err, forcible = d:set('key' .. i, ('v'):rep(100))
    assert(ok, err)
    if forcible then forcible_seen = true end
    -- keep key1 recently used
    d:get('key1')
  end
  assert(forcible_seen, 'sets reported evictions')
  local st = d:stats()
  assert(st.used <= 16384, 'used ' .. st.used .. ' of 16384 bytes')
  eq(d:get('key1'), ('v'):rep(100), 'recently used entry kept')
  eq(d:get('key2'), nil, 'old entry evicted')
  eq(d:get('key200'), ('v'):rep(100), 'newest entry present')
end)

test('shared: memory stays bounded under churn', function()
  local d = asio.shared('test-churn', 262144)
  d:flush_all()
  for i = 1, 50000 do
    assert(d:set('k' .. (i % 5000), ('x'):rep(i % 200), (i % 3 == 0) and 0.001 or nil))
    if i % 7 == 0 then d:delete('k' .. ((i * 13) % 5000)) end
  end
  local st = d:stats()
  assert(st.used <= 262144, 'bytes used ' .. st.used)
  assert(st.count <= 5000, 'entries ' .. st.count)
end)

---------------------------------------------------------------------------
-- Shutdown and faults
---------------------------------------------------------------------------

test('closing the server while workers hold connections', function()
  require_threaded_server()
  go(function()
    local srv = assert(asio.server('127.0.0.1', 0, echo_handler, { threads = 2 }))
    local port = srv:port()
    local conns = {}
    for i = 1, 10 do
      conns[i] = assert(asio.connect('127.0.0.1', port))
      assert(conns[i]:write('hi\n'))
      eq(conns[i]:read_line(), 'hi', 'served before close')
    end
    srv:close()
    eq(srv:port(), nil, 'port after close')
    -- Open connections are still served to their end.
    for i = 1, 10 do
      assert(conns[i]:write('still\n'))
      eq(conns[i]:read_line(), 'still', 'served after close')
      conns[i]:close()
    end
    local c, err = asio.connect('127.0.0.1', port)
    eq(c, nil, 'new connection after close')
    eq(err, 'connection refused', 'refused')
  end)
end)

test('a worker whose handler raises reports it with its id and keeps serving', function()
  require_threaded_server()
  local reports = {}
  asio.on_error(function(err) reports[#reports + 1] = tostring(err) end)
  local ok, err = pcall(go, function()
    local srv = assert(asio.server('127.0.0.1', 0, function(c)
      c:close()
      error('handler failed on purpose')
    end, { threads = 1 }))
    for _ = 1, 3 do
      local c = assert(asio.connect('127.0.0.1', srv:port()))
      c:read_some()   -- the worker closes it
      c:close()
    end
    srv:close()
  end)
  asio.on_error(nil)
  assert(ok, err)
  eq(#reports, 3, 'one report per failed handler')
  assert(reports[1]:find('asio: worker 1: ', 1, true), reports[1])
  assert(reports[1]:find('handler failed on purpose', 1, true), reports[1])
end)

test('a worker that raises in init is reported; the others serve', function()
  require_threaded_server()
  local reports = {}
  asio.on_error(function(err) reports[#reports + 1] = tostring(err) end)
  asio.shared('test-init-fail', 65536):flush_all()
  local ok, err = pcall(go, function()
    local srv = assert(asio.server('127.0.0.1', 0, echo_handler, {
      threads = 2,
      init = function()
        if asio.shared('test-init-fail', 65536):incr('n', 1, 0) == 1 then
          error('init refused')
        end
      end,
    }))
    -- Let the failing worker end first, so that nothing is handed to it.
    for _ = 1, 500 do
      if srv:stats().workers[1].running == false or srv:stats().workers[2].running == false then
        break
      end
      asio.sleep(0.01)
    end
    eq(load_server(srv:port(), 20, 2), 20, 'clients served by the healthy worker')
    srv:close()
  end)
  asio.on_error(nil)
  assert(ok, err)
  eq(#reports, 1, 'one report')
  assert(reports[1]:find('init failed: ', 1, true) and reports[1]:find('init refused', 1, true),
    reports[1])
end)

test('process exit with workers busy: no hang, no crash', function()
  if T.windows then T.skip('needs a POSIX shell') end
  local script = os.tmpname()
  local f = assert(io.open(script, 'w'))
  f:write([[
local asio = require 'asio'
local srv = assert(asio.server('127.0.0.1', 0, function(c) end, { threads = 2 }))
asio.thread(function() while true do asio.sleep(0.001) end end)
asio.spawn_light_thread(function()
  asio.sleep(0.1)
  if arg[1] == 'close' then os.exit(7, true) elseif arg[1] == 'exit' then os.exit(8) end
  asio.stop()
end)
asio.run()
print('run returned')
]])
  f:close()
  for _, mode in ipairs({ 'close', 'exit', 'stop' }) do
    local out = sh(('cd %s && timeout 20 ./test/luajit %s %s 2>&1; echo "rc=$?"')
      :format(T.root, script, mode))
    local want = ({ close = 'rc=7', exit = 'rc=8', stop = 'run returned\nrc=0' })[mode]
    assert(out:find(want, 1, true), mode .. ': ' .. out)
  end
  os.remove(script)
end)
