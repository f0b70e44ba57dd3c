-- Line and byte reading: results match a reference reading of the same
-- stream however it is split into receives, and the cost of a line is
-- linear in its length (bytes allocated, counted with the collector
-- stopped, so no clock is involved).
local asio = require 'asio'
local T = require 'testlib'

local test, go, eq = T.test, T.go, T.eq

-- Reference: what read_until/read_line/read(n) return on the whole stream.
local function model(stream)
  local pos = 1
  local m = {}
  function m.read(n)
    if #stream - pos + 1 < n then return nil end
    local r = stream:sub(pos, pos + n - 1)
    pos = pos + n
    return r
  end
  function m.read_until(delim, max, inclusive, cr)
    local i, j = stream:find(delim, pos, true)
    if not i then
      -- so many bytes without a delimiter are too long whatever follows
      if max and #stream - pos + 1 >= max + #delim + (cr and 1 or 0) then return nil, 'line too long' end
      return nil
    end
    local line = stream:sub(pos, i - 1)
    local len = #line
    if cr and line:sub(-1) == '\r' then line = line:sub(1, -2); len = len - 1 end
    if max and len > max then return nil, 'line too long' end
    if inclusive then line = stream:sub(pos, j) end
    pos = j + 1
    return line
  end
  function m.rest() return stream:sub(pos) end
  return m
end

-- A stream of lines over a small alphabet, so that partial delimiters and
-- '\r' before '\n' are frequent.
local function make_stream(rand, n)
  local t = {}
  local alphabet = { 'a', 'b', 'c', '\r', '\n', 'x', 'ab', 'abc', '\r\n' }
  for i = 1, n do t[i] = alphabet[rand(#alphabet)] end
  return table.concat(t)
end

local function lcg(seed)
  local x = seed
  return function(n)
    x = (x * 1103515245 + 12345) % 2147483648
    return 1 + math.floor(x / 65536) % n
  end
end

test('read_until, read_line and read(n) agree with a reference reading, any split', function()
  go(function()
    for seed = 1, 12 do
      local rand = lcg(seed)
      local stream = make_stream(rand, 3000)
      local srv, port = T.server(function(c)
        -- pieces of 1..40 bytes, with turns in between so that they arrive
        -- as separate receives
        local pos = 1
        while pos <= #stream do
          local k = rand(40)
          assert(c:write(stream:sub(pos, pos + k - 1)))
          pos = pos + k
          if rand(3) == 1 then asio.sleep(0) end
        end
        c:close()
      end)
      local c = assert(asio.connect('127.0.0.1', port))
      local m = model(stream)
      local ops = 0
      while true do
        local op = rand(6)
        local got, err, want, werr
        if op == 1 then
          got, err = c:read_line()
          want = m.read_until('\n', nil, false, true)
        elseif op == 2 then
          got, err = c:read_until('abc')
          want = m.read_until('abc')
        elseif op == 3 then
          got, err = c:read_until('\r\n', { inclusive = true })
          want = m.read_until('\r\n', nil, true)
        elseif op == 4 then
          local n = rand(20)
          got, err = c:read(n)
          want = m.read(n)
        elseif op == 5 then
          local max = rand(8)
          got, err = c:read_line(max)
          want, werr = m.read_until('\n', max, false, true)
          if werr then eq(err, werr, 'seed ' .. seed .. ' op ' .. ops .. ' read_line(max) error') end
        else
          got, err = c:read_until('ab', 5)
          want, werr = m.read_until('ab', 5)
          if werr then eq(err, werr, 'seed ' .. seed .. ' op ' .. ops .. ' read_until(max) error') end
        end
        if want == nil and not werr then
          -- the reference has no more: the connection reports eof and
          -- returns what was left
          eq(got, nil, 'seed ' .. seed .. ' at the end')
          eq(err, 'eof', 'seed ' .. seed .. ' error at the end')
          break
        end
        if not werr then eq(got, want, ('seed %d op %d (%d)'):format(seed, ops, op)) end
        ops = ops + 1
        assert(ops < 10000, 'too many operations')
      end
      c:close()
      srv:close()
    end
  end, 60)
end)

-- Bytes the Lua heap grows by while `fn` runs, with the collector stopped:
-- every allocation counts, none is taken back.
local function allocated(fn)
  collectgarbage()
  collectgarbage()
  collectgarbage('stop')
  local before = collectgarbage('count')
  local ok, err = pcall(fn)
  local after = collectgarbage('count')
  collectgarbage('restart')
  assert(ok, err)
  return (after - before) * 1024
end

test('a 4 MiB line costs allocations linear in its length', function()
  go(function()
    local N = 4 * 1024 * 1024
    -- distinct content: equal strings are interned once, which would hide
    -- allocations
    local t = {}
    for i = 1, N / 8 do t[i] = ('%08x'):format(i) end
    local line = table.concat(t)
    local payload = line .. '\r\nnext\n'
    local srv, port = T.server(function(c)
      assert(c:write(payload))
      c:close()
    end)
    local c = assert(asio.connect('127.0.0.1', port))
    c:settimeout(10)
    local got, rest
    -- the line goes through the socket in many receives; re-joining the
    -- growing line on each receive would allocate about N^2 / 128 KiB bytes
    local bytes = allocated(function()
      got = c:read_line()
      rest = c:read_line()
    end)
    eq(got, line, 'the line')
    eq(rest, 'next', 'the line after it')
    assert(bytes < 4 * N, ('%d bytes allocated to read a %d-byte line'):format(bytes, N))
    c:close()
    srv:close()
  end, 60)
end)

test('short lines and read(n) from buffered bytes cost allocations linear in their length', function()
  go(function()
    local lines = 6000
    -- distinct lines, and different ones in each round: equal strings are
    -- interned once, which would hide allocations
    local function payload(fmt)
      local t = {}
      for i = 1, lines do t[i] = fmt:format(i) end
      return table.concat(t)
    end
    local srv, port = T.server(function(c)
      assert(c:write('start\n' .. payload('l%08d\n')))
      c:read(1)   -- the go-ahead for the second round
      assert(c:write('start\n' .. payload('r%08d\n')))
      c:read(1)
      c:close()
    end)
    local c = assert(asio.connect('127.0.0.1', port))
    c:settimeout(10)
    -- Each line returned allocates itself and the expected text it is
    -- compared with (a string header of at most 32 bytes plus the text,
    -- each), plus a share of the received chunks; copying the rest of the
    -- buffer for each line would allocate tens of KiB.
    local limit = lines * 2 * 48 + 4 * lines * 10
    -- read_line() of 'start' receives a whole chunk: what follows is buffered
    eq(c:read_line(), 'start', 'first round')
    local bad = 0
    local bytes = allocated(function()
      for i = 1, lines do
        if c:read_line() ~= ('l%08d'):format(i) then bad = bad + 1 end
      end
    end)
    eq(bad, 0, 'lines read wrong')
    assert(bytes < limit, ('%d bytes allocated for %d lines, limit %d'):format(bytes, lines, limit))
    assert(c:write('+'))
    eq(c:read_line(), 'start', 'second round')
    bytes = allocated(function()
      for i = 1, lines do
        if c:read(10) ~= ('r%08d\n'):format(i) then bad = bad + 1 end
      end
    end)
    eq(bad, 0, 'read(10) results wrong')
    assert(bytes < limit, ('%d bytes allocated for %d read(10), limit %d'):format(bytes, lines, limit))
    assert(c:write('+'))
    c:close()
    srv:close()
  end, 60)
end)
