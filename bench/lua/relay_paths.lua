-- asio.relay's two paths side by side, in one process: splice(2) through a
-- pipe against the buffered copy. A client writes messages of SIZE bytes
-- through a relay to a reader, and sends the next once the reader has the
-- whole message (so SIZE is the burst the relay sees), for at least TOTAL
-- bytes per case. Writer and reader are separate light threads, so a
-- message larger than the socket buffers on the way does not deadlock. CPU
-- is this process's (client, reader and relay): the client's and reader's
-- share is the same for both paths.
--
--   ./test/luajit bench/lua/relay_paths.lua [ROUNDS] [TOTAL_MB]
local asio = require 'asio'

local ROUNDS = tonumber(arg[1]) or 5
local TOTAL = (tonumber(arg[2]) or 64) * 1024 * 1024
local SIZES = os.getenv("SIZES") and loadstring("return {" .. os.getenv("SIZES") .. "}")()
  or { 512, 4096, 16384, 65536, 262144, 1048576, 16777216 }
io.stdout:setvbuf('line')

local function cpu()
  local f = io.open('/proc/self/stat')
  local t = f:read('*l'); f:close()
  local fields = {}
  for v in t:gsub('^.-%) ', ''):gmatch('%S+') do fields[#fields + 1] = v end
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100   -- utime + stime, ticks of 10 ms
end

local function quad()
  local got, cv = {}, asio.cond()
  local srv = assert(asio.server('127.0.0.1', 0, function(c) got[#got + 1] = c; cv:signal() end))
  local x = assert(asio.connect('127.0.0.1', srv:port()))
  local b = assert(asio.connect('127.0.0.1', srv:port()))
  while #got < 2 do cv:wait() end
  srv:close()
  local _, xport = x:local_address()
  local _, p1 = got[1]:remote_address()
  if p1 == xport then return x, got[1], b, got[2] end
  return x, got[2], b, got[1]
end

local function case(size, splice)
  local x, a, b, y = quad()
  local relay = asio.spawn_light_thread(asio.relay, a, b, { splice = splice })
  local msg = string.rep('r', size)
  local n = math.max(4, math.floor(TOTAL / size))
  local t0, c0 = asio.now(), cpu()
  local received, arrived = 0, asio.cond()
  local writer = asio.spawn_light_thread(function()
    for i = 1, n do
      assert(x:write(msg))
      while received < i do arrived:wait() end
    end
  end)
  for i = 1, n do
    assert(#assert(y:read(size)) == size)
    received = i
    arrived:signal()
  end
  asio.join(writer)
  local t, c = asio.now() - t0, cpu() - c0
  x:shutdown(); y:shutdown()
  asio.join(relay)
  for _, cn in ipairs { x, a, b, y } do cn:close() end
  local mb = n * size / 1e6
  return mb / t, c * 1e6 / mb
end

local function median(t)
  table.sort(t)
  return t[math.floor((#t + 1) / 2)]
end

asio.spawn_light_thread(function()
  print(('%-10s %12s %12s %14s %14s'):format('size', 'splice MB/s', 'buffer MB/s', 'splice us/MB', 'buffer us/MB'))
  for _, size in ipairs(SIZES) do
    local r = { sp = {}, bu = {}, spc = {}, buc = {} }
    for _ = 1, ROUNDS do
      local m, c = case(size, true); r.sp[#r.sp + 1] = m; r.spc[#r.spc + 1] = c
      m, c = case(size, false); r.bu[#r.bu + 1] = m; r.buc[#r.buc + 1] = c
    end
    print(('%-10d %12.0f %12.0f %14.0f %14.0f'):format(size, median(r.sp), median(r.bu), median(r.spc), median(r.buc)))
  end
end)
asio.run()
