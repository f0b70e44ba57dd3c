-- Line reading against read(n) of the same bytes, in one process over
-- loopback: ./test/luajit bench/lua/lines.lua LEN TOTAL
-- One writer light thread sends TOTAL bytes of LEN-byte lines (each line
-- different, so no two results are the same interned string); the reader
-- takes them with read_line(), then, on a second connection, with read(LEN).
-- Prints one RESULT line per operation.
local asio = require 'asio'

local len, total = tonumber(arg[1]), tonumber(arg[2])
assert(len and total and len >= 10, 'usage: lines.lua LEN TOTAL')
local n = math.max(1, math.floor(total / len))

local t = {}
local filler = ('abcdefghijklmnopqrstuvwxyz'):rep(math.ceil(len / 26))
for i = 1, n do
  local head = ('%09d'):format(i)
  t[i] = head .. filler:sub(1, len - 10) .. '\n'
end
local payload = table.concat(t)
t = nil   -- luacheck: ignore
collectgarbage()

local function measure(op)
  local srv = assert(asio.server('127.0.0.1', 0, function(c)
    asio.spawn_light_thread(function()
      assert(c:write(payload))
      c:read(1)
      c:close()
    end)
  end))
  local c = assert(asio.connect('127.0.0.1', srv:port()))
  local t0 = asio.now()
  local bad = 0
  if op == 'read_line' then
    for i = 1, n do
      local l = c:read_line()
      if #l ~= len - 1 then bad = bad + 1 end
    end
  else
    for i = 1, n do
      local l = c:read(len)
      if #l ~= len then bad = bad + 1 end
    end
  end
  local secs = asio.now() - t0
  assert(bad == 0, op .. ': wrong results')
  c:write('x')
  c:close()
  srv:close()
  print(('RESULT len=%d op=%s lines=%d bytes=%d secs=%.4f lines_per_s=%.0f MB_per_s=%.1f'):format(
    len, op, n, #payload, secs, n / secs, #payload / secs / 1e6))
  io.stdout:flush()
end

asio.spawn_light_thread(function()
  measure('read_line')
  collectgarbage()
  measure('read')
end)
asio.run()
