-- The scheduler: I/O inside nested coroutines, writers taking turns,
-- kill and wait_any, asio.yield and the cooperative budget.
local asio = require 'asio'
local T = require 'testlib'

local test, go, eq, raises = T.test, T.go, T.eq, T.raises

---------------------------------------------------------------------------
-- Nested coroutines
---------------------------------------------------------------------------

test('a read inside an asio.coroutine.wrap generator parks the light thread', function()
  go(function()
    local srv, port = T.server(function(c)
      for i = 1, 5 do c:write('line ' .. i .. '\n'); asio.sleep(0.005) end
      c:close()
    end)
    local c = assert(asio.connect('127.0.0.1', port))
    local lines = asio.coroutine.wrap(function()
      while true do
        local l = c:read_line()
        if not l then return end
        -- the generator's own yield reaches its own resumer
        local echo = coroutine.yield(l)
        eq(echo, 'ack', 'value passed back into the generator')
      end
    end)
    local got = {}
    local l = lines()
    while l do
      got[#got + 1] = l
      l = lines('ack')
    end
    eq(table.concat(got, ','), 'line 1,line 2,line 3,line 4,line 5', 'lines')
    c:close()
    srv:close()
  end)
end)

test('waits pass through two levels of nested coroutines, and errors come back', function()
  go(function()
    local inner = asio.coroutine.create(function()
      asio.sleep(0.01)
      coroutine.yield('inner 1')
      asio.sleep(0.01)
      error('inner failed')
    end)
    local outer = asio.coroutine.wrap(function()
      local ok, v = asio.coroutine.resume(inner)
      coroutine.yield(v)
      local ok2, err = asio.coroutine.resume(inner)
      coroutine.yield(ok2, err)
    end)
    eq(outer(), 'inner 1', 'first value')
    local ok, err = outer()
    eq(ok, false, 'inner raised')
    assert(tostring(err):find('inner failed', 1, true), err)
  end)
end)

test('plain coroutines still may not block, and say how to make them', function()
  go(function()
    local co = coroutine.create(function() asio.sleep(0) end)
    local ok, err = coroutine.resume(co)
    eq(ok, false, 'plain coroutine')
    assert(err:find('asio.coroutine', 1, true), err)
    -- code that never touches LuaAsio sees Lua's semantics, yield for yield
    local gen = asio.coroutine.wrap(function(a)
      local b = coroutine.yield(a + 1)
      local c = coroutine.yield(b * 2)
      return c, 'end'
    end)
    eq(gen(1), 2, 'first yield')
    eq(gen(5), 10, 'second yield')
    local x, y = gen(7)
    eq(x, 7, 'return value'); eq(y, 'end', 'second return value')
    raises("bad argument #1 to 'resume' (coroutine expected, got number)", asio.coroutine.resume, 1)
  end)
end)

test('install_coroutine replaces coroutine.resume and wrap in place', function()
  local resume, wrap = coroutine.resume, coroutine.wrap
  local ok, err = pcall(go, function()
    asio.install_coroutine()
    eq(coroutine.resume, asio.coroutine.resume, 'resume installed')
    local f = coroutine.wrap(function() asio.sleep(0.01); coroutine.yield('after sleep') end)
    eq(f(), 'after sleep', 'a library-style wrap may block')
  end)
  coroutine.resume, coroutine.wrap = resume, wrap
  assert(ok, err)
end)

---------------------------------------------------------------------------
-- Writers take turns
---------------------------------------------------------------------------

test('concurrent writers: whole blocks, first in first out', function()
  go(function()
    local got
    local srv, port = T.server(function(c)
      got = c:read(4 * 1024 * 1024)
      c:close()
    end)
    local c = assert(asio.connect('127.0.0.1', port))
    c:setoption('sndbuf', 8192)
    local waits = {}
    for i = 1, 4 do
      waits[i] = T.spawn(function() return c:write(string.char(64 + i):rep(1024 * 1024)) end)
    end
    for i = 1, 4 do eq(waits[i](), true, 'writer ' .. i) end
    for _ = 1, 500 do if got then break end asio.sleep(0.01) end
    assert(got and #got == 4 * 1024 * 1024, 'all bytes arrived')
    for i = 1, 4 do
      local block = got:sub((i - 1) * 1048576 + 1, i * 1048576)
      eq(block, string.char(64 + i):rep(1048576), 'block ' .. i .. ' whole and in order')
    end
    c:close()
    srv:close()
  end)
end)

test('a writer that times out in line sends nothing', function()
  go(function()
    local release = asio.cond()
    local srv, port = T.server(function(c) release:wait(5); c:close() end)
    local c = assert(asio.connect('127.0.0.1', port))
    c:setoption('sndbuf', 4096)
    local w1 = T.spawn(function() return c:write(('x'):rep(8 * 1024 * 1024)) end)
    asio.sleep(0.02)
    c:settimeouts(nil, nil, 0.05)
    local ok, err, sent = c:write('never')
    eq(ok, nil, 'queued writer')
    eq(err, 'timeout', 'error')
    eq(sent, 0, 'bytes sent')
    c:close()
    release:signal()
    w1()
    srv:close()
  end)
end)

---------------------------------------------------------------------------
-- kill and wait_any
---------------------------------------------------------------------------

test('kill ends a parked thread; joiners get killed; running and dead refuse', function()
  go(function()
    local after = false
    local timers = asio.stats().timers
    local th = asio.spawn_light_thread(function() asio.sleep(10); after = true end)
    local joined = T.spawn(function() return asio.join(th) end)
    eq(asio.kill(th), true, 'kill')
    local r, err = joined()
    eq(r, nil, 'join result'); eq(err, 'killed', 'join error')
    eq(asio.stats().timers, timers, 'its timer is gone')
    local ok, e = asio.kill(th)
    eq(ok, nil, 'kill a dead thread'); eq(e, 'dead', 'error')
    local me = coroutine.running()
    ok, e = asio.kill(me)
    eq(e, 'running', 'kill the running thread')
    eq(after, false, 'the killed thread ran no further')
    raises("bad argument #1 to 'kill' (light thread expected, got nil)", asio.kill, nil)
  end)
end)

test('kill withdraws a pending read and a place in the writers line', function()
  go(function()
    local release = asio.cond()
    local srv, port = T.server(function(c)
      release:wait(5)
      c:write('after kill\n')
      c:read_some()
      c:close()
    end)
    local c = assert(asio.connect('127.0.0.1', port))
    local reader = asio.spawn_light_thread(function() return c:read_line() end)
    asio.sleep(0.02)
    eq(asio.kill(reader), true, 'kill the reader')
    release:signal()
    eq(c:read_line(), 'after kill', 'another thread can read now')
    c:close()
    srv:close()
  end)
end)

test('wait_any returns the first thread to end, with its results', function()
  go(function()
    local slow = asio.spawn_light_thread(function() asio.sleep(5); return 'slow' end)
    local fast = asio.spawn_light_thread(function() asio.sleep(0.01); return 'fast', 2 end)
    local th, a, b = asio.wait_any(slow, fast)
    eq(th, fast, 'which'); eq(a, 'fast', 'result'); eq(b, 2, 'second result')
    eq(asio.kill(slow), true, 'the loser is killed')
    asio.on_error(function() end)
    local failing = asio.spawn_light_thread(function() error('failed', 0) end)
    asio.on_error(nil)
    local t2, r, err = asio.wait_any(failing)
    eq(t2, failing, 'an ended thread returns at once'); eq(r, nil, 'no result'); eq(err, 'failed', 'its error')
    raises("bad argument #2 to 'wait_any' (light thread expected, got string)", asio.wait_any, fast, 'x')
  end)
end)

---------------------------------------------------------------------------
-- Fairness
---------------------------------------------------------------------------

test('a reader whose data is always there does not starve a ticker', function()
  go(function()
    local lines = 200000
    local srv, port = T.server(function(c)
      local chunk = ('0123456789\n'):rep(10000)
      for _ = 1, lines / 10000 do c:write(chunk) end
      c:close()
    end)
    local c = assert(asio.connect('127.0.0.1', port))
    asio.sleep(0.2)   -- let the data arrive, so that every read completes at once
    local done, worst, last = false, 0, asio.now()
    local ticker = T.spawn(function()
      while not done do
        asio.sleep(0.01)
        local now = asio.now()
        if now - last > worst then worst = now - last end
        last = now
      end
    end)
    local n = 0
    while c:read_line() do n = n + 1 end
    done = true
    if asio.now() - last > worst then worst = asio.now() - last end
    ticker()
    eq(n, lines, 'lines read')
    assert(worst < 0.2, ('the ticker waited %.3f s'):format(worst))
    c:close()
    srv:close()
  end, 60)
end)

test('asio.yield gives the others a turn', function()
  go(function()
    local order = {}
    local a = T.spawn(function() for i = 1, 3 do order[#order + 1] = 'a' .. i; asio.yield() end end)
    local b = T.spawn(function() for i = 1, 3 do order[#order + 1] = 'b' .. i; asio.yield() end end)
    a(); b()
    eq(table.concat(order, ' '), 'a1 b1 a2 b2 a3 b3', 'turns')
  end)
  raises("'yield' must be called from a light thread", asio.yield)
end)

test('kill withdraws a UDP receive; the next receiver gets the datagram', function()
  go(function()
    local u = assert(asio.udp())
    assert(u:bind('127.0.0.1', 0))
    local _, port = u:local_address()
    local first = asio.spawn_light_thread(function() return u:recvfrom() end)
    local second = T.spawn(function() return u:recvfrom(5) end)
    asio.sleep(0.01)
    eq(asio.kill(first), true, 'kill the first receiver')
    local s = assert(asio.udp())
    assert(s:sendto('hello', '127.0.0.1', port))
    eq(second(), 'hello', 'the datagram went to the next receiver')
    s:close()
    u:close()
  end)
end)

test('a connection only a killed thread referenced can be collected', function()
  go(function()
    local srv, port = T.server(function(c) c:read(1) end)
    local weak = setmetatable({}, { __mode = 'v' })
    local th = asio.spawn_light_thread(function()
      local c = assert(asio.connect('127.0.0.1', port))
      weak[1] = c
      c:read(1)
    end)
    asio.sleep(0.02)
    assert(weak[1], 'the connection exists while its thread waits')
    eq(asio.kill(th), true, 'kill')
    th = nil
    for _ = 1, 5 do collectgarbage() end
    eq(weak[1], nil, 'collected after the kill')
    srv:close()
  end)
end)
