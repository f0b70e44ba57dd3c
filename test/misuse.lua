-- Misuse changes nothing, and its error points at the caller's line.
local asio = require 'asio'
local T = require 'testlib'

local test, go, eq = T.test, T.go, T.eq

-- Calls `fn` in a plain coroutine, expects it to raise, and returns the error.
local function in_plain_coroutine(fn)
  local ok, err = coroutine.resume(coroutine.create(fn))
  eq(ok, false, 'resume of the plain coroutine')
  return tostring(err)
end

-- Asserts that `err` was raised at line `line` of this file and names `fname`.
local function at_line(err, line, fname)
  assert(err:find('misuse.lua:' .. line .. ':', 1, true),
    ('expected the error at misuse.lua:%d, got: %s'):format(line, err))
  assert(err:find("'" .. fname .. "'", 1, true), ("expected '%s' in: %s"):format(fname, err))
end

local here = function() return debug.getinfo(2, 'l').currentline end

test('reads from a plain coroutine take none of the buffered bytes', function()
  go(function()
    local srv, port = T.server(function(c)
      assert(c:write('first\nsecond line\n'))
      asio.sleep(0.05)
      assert(c:write('third'))
      asio.sleep(0.05)
      c:close()
    end)
    local c = assert(asio.connect('127.0.0.1', port))
    c:settimeout(5)
    -- both lines arrive in one receive: 'second line\n' stays buffered
    eq(c:read_line(), 'first', 'first line')
    for _, call in ipairs({
      function() return c:read(3) end,          -- could be served from the buffer
      function() return c:read(100) end,        -- would take the buffer, then wait
      function() return c:read_line() end,
      function() return c:read_until('line') end,
      function() return c:read_until('zzz') end,
      function() return c:read_some() end,
    }) do
      local err = in_plain_coroutine(call)
      assert(err:find('not a light thread', 1, true), err)
    end
    eq(c:read_line(), 'second line', 'the buffered line, whole')
    -- bytes still in the socket: a misused read must not receive them either
    asio.sleep(0.1)
    for _, call in ipairs({
      function() return c:read_line() end,
      function() return c:read(10) end,
      function() return c:read_until('x') end,
      function() return c:read_some() end,
    }) do
      local err = in_plain_coroutine(call)
      assert(err:find('not a light thread', 1, true), err)
    end
    eq(c:read(5), 'third', 'the bytes in the socket')
    local d, err = c:read(1)
    eq(d, nil, 'at the end') eq(err, 'eof', 'error at the end')
    c:close()
    srv:close()
  end)
end)

test('a large write from a plain coroutine sends nothing', function()
  go(function()
    local got = {}
    local srv, port = T.server(function(c)
      c:settimeout(5)
      while true do
        local d = c:read_some()
        if not d or d == '' then break end
        got[#got + 1] = d
      end
      c:close()
    end)
    local c = assert(asio.connect('127.0.0.1', port))
    local big = ('w'):rep(4 * 1024 * 1024)
    local err = in_plain_coroutine(function() return c:write(big) end)
    assert(err:find('not a light thread', 1, true), err)
    assert(c:write('END'))
    c:close()
    for _ = 1, 500 do
      if srv and asio.stats().threads <= 2 then break end
      asio.sleep(0.01)
    end
    asio.sleep(0.05)
    local all = table.concat(got)
    eq(#all, 3, 'bytes the peer received')
    eq(all, 'END', 'what the peer received')
    srv:close()
  end)
end)

test('misuse errors point at the line of the call', function()
  local srv = T.server(function(c) c:close() end)
  local port = srv:port()
  local c
  go(function()
    c = assert(asio.connect('127.0.0.1', port))
    srv:close()
  end)
  -- outside any light thread
  -- (`line` is the line of the call that follows on the same line)
  local line, err
  line = here(); local ok; ok, err = pcall(function() c:read(1) end)
  at_line(err, line, 'read')
  line = here(); ok, err = pcall(function() c:read_some() end)
  at_line(err, line, 'read_some')
  line = here(); ok, err = pcall(function() c:read_until('x') end)
  at_line(err, line, 'read_until')
  line = here(); ok, err = pcall(function() c:read_line() end)
  at_line(err, line, 'read_line')
  line = here(); ok, err = pcall(function() c:write('x') end)
  at_line(err, line, 'write')
  line = here(); ok, err = pcall(function() asio.sleep(0) end)
  at_line(err, line, 'sleep')
  line = here(); ok, err = pcall(function() asio.connect('127.0.0.1', port) end)
  at_line(err, line, 'connect')
  assert(not ok)
  go(function()
    -- bad arguments
    line = here(); ok, err = pcall(function() c:read('x') end)
    at_line(err, line, 'read')
    line = here(); ok, err = pcall(function() c:read_until('') end)
    at_line(err, line, 'read_until')
    line = here(); ok, err = pcall(function() c:read_line(-1) end)
    at_line(err, line, 'read_line')
    line = here(); ok, err = pcall(function() c:write({}) end)
    at_line(err, line, 'write')
    -- from a plain coroutine inside a light thread
    line = here(); err = in_plain_coroutine(function() c:read(1) end)
    at_line(err, line, 'read')
    line = here(); err = in_plain_coroutine(function() c:read_some() end)
    at_line(err, line, 'read_some')
    line = here(); err = in_plain_coroutine(function() c:read_until('x') end)
    at_line(err, line, 'read_until')
    line = here(); err = in_plain_coroutine(function() c:read_line() end)
    at_line(err, line, 'read_line')
    line = here(); err = in_plain_coroutine(function() c:write('x') end)
    at_line(err, line, 'write')
    line = here(); err = in_plain_coroutine(function() asio.sleep(0) end)
    at_line(err, line, 'sleep')
    line = here(); err = in_plain_coroutine(function() asio.connect('127.0.0.1', port) end)
    at_line(err, line, 'connect')
    line = here(); err = in_plain_coroutine(function() asio.resolve('localhost') end)
    at_line(err, line, 'resolve')
    line = here(); err = in_plain_coroutine(function() asio.cond():wait(0) end)
    at_line(err, line, 'wait')
    local th = asio.spawn_light_thread(function() asio.sleep(0.01) end)
    line = here(); err = in_plain_coroutine(function() asio.join(th) end)
    at_line(err, line, 'join')
    asio.join(th)
    c:close()
  end)
end)

test('the message for a library that cannot be loaded names each path once', function()
  if T.windows then T.skip('needs a POSIX shell') end
  local missing = '/nonexistent-' .. (T.pid() or 'x') .. '/libluaasio.so'
  local p = io.popen(('cd %s && LUAASIO_LIB=%s ./test/luajit -e "require \'asio\'" 2>&1'):format(T.root, missing))
  local out = p:read('*a')
  p:close()
  assert(out:find('cannot load the LuaAsio library', 1, true), out)
  local _, n = out:gsub(missing:gsub('%p', '%%%0'), '')
  eq(n, 1, 'times the path appears in:\n' .. out)
end)

test('asio.stop() before run() is ignored: the next run() runs as usual', function()
  local steps = {}
  asio.spawn_light_thread(function()
    asio.sleep(0.01)
    steps[#steps + 1] = 'slept'
  end)
  asio.stop()
  asio.run()
  eq(table.concat(steps, ','), 'slept', 'what run() ran')
end)

---------------------------------------------------------------------------
-- Errors that are hard to report, and yields nobody resumes
---------------------------------------------------------------------------

test('an error object whose __tostring raises is reported; run() goes on', function()
  local reports = {}
  asio.on_error(function(err, trace) reports[#reports + 1] = trace end)
  local bad = setmetatable({}, { __tostring = function() error('no text for you') end })
  local th
  local ok, err = pcall(T.go, function()
    th = asio.spawn_light_thread(function() error(bad) end)
    local r, e = asio.join(th)
    T.eq(r, nil, 'join result')
    T.eq(e, bad, 'the error object itself')
  end)
  asio.on_error(nil)
  assert(ok, err)
  T.eq(#reports, 1, 'reports')
  assert(reports[1]:find('__tostring failed', 1, true), reports[1])
end)

test('a raw coroutine.yield() in a light thread gives the others a turn', function()
  T.go(function()
    local order = {}
    local a = asio.spawn_light_thread(function()
      for i = 1, 3 do
        order[#order + 1] = 'a' .. i
        T.eq(coroutine.yield('ignored'), nil, 'what the yield returns')
      end
      return 'a done'
    end)
    local b = asio.spawn_light_thread(function()
      for i = 1, 3 do
        order[#order + 1] = 'b' .. i
        coroutine.yield()
      end
    end)
    T.eq(asio.join(a), 'a done', 'the yielding thread finished')
    asio.join(b)
    T.eq(table.concat(order, ' '), 'a1 b1 a2 b2 a3 b3', 'turns taken')
  end)
end)
