-- Reading into and writing from caller-owned buffers: read_some_into and
-- write(buf, n) carry the same bytes as read_some and write(string).
local ffi = require 'ffi'
local asio = require 'asio'
local T = require 'testlib'

local test, go, eq, raises = T.test, T.go, T.eq, T.raises

-- n bytes of a pattern whose period is no power of two, so misplaced
-- chunks show.
local function pattern(n)
  local t = {}
  for i = 1, n do t[i] = string.char((i * 7 + math.floor(i / 251)) % 256) end
  return table.concat(t)
end

test('read_some_into and write(buf, n) echo every byte in order', function()
  go(function()
    local srv, port = T.server(function(c)
      local buf = ffi.new('uint8_t[?]', 4000)   -- any pointer or array type
      while true do
        local n = c:read_some_into(buf, 4000)
        if not n then break end
        assert(n > 0 and n <= 4000, 'count out of range')
        assert(c:write(buf, n))
      end
      c:close()
    end)
    local data = pattern(1500000)
    local c = assert(asio.connect('127.0.0.1', port))
    local wait_writer = T.spawn(function() assert(c:write(data)); c:shutdown() end)
    local got = assert(c:read(#data))
    wait_writer()
    eq(#got, #data, 'length')
    assert(got == data, 'echoed bytes differ')
    local d, err = c:read_some()
    eq(d, '', 'data at eof')
    eq(err, 'eof', 'err at eof')
    c:close()
    srv:close()
  end)
end)

test('write(buf, n) waits for a full kernel buffer and sends the rest', function()
  go(function()
    local size = 8 * 1024 * 1024
    local data = pattern(size)
    local src = ffi.new('char[?]', size)
    ffi.copy(src, data, size)
    local srv, port = T.server(function(c)
      -- the reader starts late, so the writer must park
      asio.sleep(0.1)
      local got = assert(c:read(size))
      assert(got == data, 'bytes differ')
      c:write('ok')
      c:close()
    end)
    local c = assert(asio.connect('127.0.0.1', port))
    eq(c:write(src, size), true, 'write')
    eq(c:read(2), 'ok', 'reply')
    c:close()
    srv:close()
  end)
end)

test('read_some_into returns buffered bytes first, then eof and closed', function()
  go(function()
    local srv, port = T.server(function(c) c:write('line\nabcde') c:close() end)
    local c = assert(asio.connect('127.0.0.1', port))
    eq(c:read_line(), 'line', 'line')
    local buf = ffi.new('char[8]')
    local have = ''
    while #have < 5 do
      local n = c:read_some_into(buf, 2)
      assert(n and n >= 1 and n <= 2, 'count ' .. tostring(n))
      have = have .. ffi.string(buf, n)
    end
    eq(have, 'abcde', 'bytes after the line')
    local n, err = c:read_some_into(buf, 8)
    eq(n, nil, 'count at eof')
    eq(err, 'eof', 'err at eof')
    c:close()
    n, err = c:read_some_into(buf, 8)
    eq(n, nil, 'count when closed')
    eq(err, 'closed', 'err when closed')
    srv:close()
  end)
end)

test('read_some_into times out, and the next read gets the data', function()
  go(function()
    local later = asio.cond()
    local srv, port = T.server(function(c) later:wait(5) c:write('xyz') c:read_some() c:close() end)
    local c = assert(asio.connect('127.0.0.1', port))
    c:settimeout(0.05)
    local buf = ffi.new('char[4]')
    local n, err = c:read_some_into(buf, 4)
    eq(n, nil, 'count on timeout')
    eq(err, 'timeout', 'err')
    later:signal()
    c:settimeout(5)
    n = c:read_some_into(buf, 4)
    eq(n, 3, 'count')
    eq(ffi.string(buf, n), 'xyz', 'bytes')
    c:close()
    srv:close()
  end)
end)

test('read_some_into and write(buf, n) check their arguments', function()
  go(function()
    local srv, port = T.server(function(c) c:read_some() c:close() end)
    local c = assert(asio.connect('127.0.0.1', port))
    local buf = ffi.new('char[4]')
    raises("bad argument #1 to 'read_some_into' (pointer or array cdata expected, got string)", c.read_some_into, c, 'abc', 4)
    raises("bad argument #1 to 'read_some_into'", c.read_some_into, c, ffi.new('struct { int a; }'), 4)
    raises("bad argument #1 to 'read_some_into'", c.read_some_into, c, ffi.new('int64_t', 4096), 4)
    raises("bad argument #2 to 'read_some_into'", c.read_some_into, c, buf, 0)
    raises("bad argument #2 to 'read_some_into'", c.read_some_into, c, buf, 1.5)
    raises("bad argument #2 to 'read_some_into'", c.read_some_into, c, buf)
    raises("bad argument #2 to 'write'", c.write, c, buf)
    raises("bad argument #2 to 'write'", c.write, c, buf, -1)
    raises("bad argument #1 to 'write'", c.write, c, ffi.new('struct { int a; }'), 1)
    raises("calling 'read_some_into' on bad self", c.read_some_into, {}, buf, 4)
    eq(c:write(buf, 0), true, 'empty write')
    c:close()
    srv:close()
  end)
end)

test('a read_some_into -> write(buf, n) relay compiles without NYI aborts', function()
  if not jit or not jit.status() then T.skip('the JIT is off') end
  local jutil = require 'jit.util'
  local vmdef = require 'jit.vmdef'
  local compiled, bad = 0, {}
  local function in_conn(func)
    local info = jutil.funcinfo(func)
    return info and info.source and info.source:find('asio[/\\]conn%.lua$')
  end
  local function recorder(what, tr, func, pc, otr)
    -- A trace may start in conn.lua or in this file's loops (with
    -- read_some_into and write inlined): either way the loop compiled.
    local info = what == 'stop' and jutil.funcinfo(func)
    if info and info.source and (in_conn(func) or info.source:find('buffers%.lua$')) then
      compiled = compiled + 1
    elseif what == 'abort' and in_conn(func) then
      local msg = vmdef.traceerr[otr] or tostring(otr)
      if msg:find('NYI', 1, true) and not msg:find('coroutine', 1, true) then
        bad[#bad + 1] = jutil.funcinfo(func, pc).loc .. ': ' .. msg
      end
    end
  end
  local ok, err = T.with_trace_events(recorder, go, function()
    local srv, port = T.server(function(c)
      local buf = ffi.new('char[?]', 512)
      while true do
        local n = c:read_some_into(buf, 512)
        if not n or not c:write(buf, n) then break end
      end
      c:close()
    end)
    local c = assert(asio.connect('127.0.0.1', port))
    -- Much more than one read at a time: the server's loop then finds data
    -- and room without waiting for thousands of rounds, which is what lets a
    -- trace of it finish (a wait is a coroutine switch, which ends a trace).
    local msg = ('r'):rep(2 * 1024 * 1024)
    local reader = T.spawn(function() return c:read(#msg) end)
    assert(c:write(msg))
    eq(reader() == msg, true, 'echo')
    c:close()
    srv:close()
  end)
  assert(ok, err)
  assert(compiled > 0, 'the read_some_into -> write loop was not compiled')
  assert(#bad == 0, 'NYI aborts in conn.lua:\n  ' .. table.concat(bad, '\n  '))
end)
