-- JIT health: the per-operation code in asio.lua and lua/asio/ must compile. A trace may
-- stop only at the coroutine boundary (resume/yield), which LuaJIT cannot
-- compile; any other "NYI" abort inside asio.lua is a regression.
local asio = require 'asio'
local T = require 'testlib'

local test, go, eq = T.test, T.go, T.eq

test('echo hot path compiles without NYI aborts in asio.lua', function()
  if not jit or not jit.status() then T.skip('the JIT is off') end
  local jutil = require 'jit.util'
  local vmdef = require 'jit.vmdef'

  local stopped, aborts = {}, {}
  local function in_asio(func)
    local info = jutil.funcinfo(func)
    return info and info.source and (info.source:find('asio.lua', 1, true) or info.source:find('asio[/\\][%w_]+%.lua$'))
  end
  local function recorder(what, tr, func, pc, otr, oex)
    if what == 'stop' and in_asio(func) then
      stopped[#stopped + 1] = jutil.funcinfo(func).loc
    elseif what == 'abort' and in_asio(func) then
      local msg = vmdef.traceerr[otr] or tostring(otr)
      if type(oex) == 'number' and msg:find('%%d') then msg = msg:format(oex)
      elseif msg:find('%%s') then
        local ok, s = pcall(function()
          return type(oex) == 'number' and vmdef.ffnames[oex] or tostring(oex)
        end)
        msg = msg:format(ok and s or '?')
      end
      aborts[#aborts + 1] = { msg = msg, loc = jutil.funcinfo(func, pc).loc }
    end
  end

  local ok, err = T.with_trace_events(recorder, go, function()
    local msg = ('m'):rep(64)
    local srv, port = T.server(function(c)
      -- echo in bursts: mostly served by the fast path, sometimes parked
      while true do
        local d = c:read(64)
        if not d then break end
        if not c:write(d) then break end
      end
      c:close()
    end)
    local c = assert(asio.connect('127.0.0.1', port))
    for round = 1, 300 do
      for _ = 1, 10 do assert(c:write(msg)) end
      for _ = 1, 10 do eq(c:read(64), msg, 'echo') end
    end
    -- a pipeline the reader never has to wait for
    local burst = msg:rep(2000)
    local w = T.spawn(function() return c:write(burst) end)
    for _ = 1, 2000 do eq(c:read(64), msg, 'burst') end
    assert(w())
    c:close()
    srv:close()
  end)
  assert(ok, err)

  assert(#stopped > 0, 'no trace of asio.lua was compiled')
  local bad = {}
  for _, a in ipairs(aborts) do
    if a.msg:find('NYI', 1, true) and not a.msg:find('coroutine', 1, true) then
      bad[#bad + 1] = a.loc .. ': ' .. a.msg
    end
  end
  assert(#bad == 0, 'NYI aborts in asio.lua:\n  ' .. table.concat(bad, '\n  '))
end)

test('a hot read loop inside an asio.coroutine generator compiles', function()
  if not jit or not jit.status() then T.skip('the JIT is off') end
  local jutil = require 'jit.util'
  local vmdef = require 'jit.vmdef'

  local stopped, aborts = {}, {}
  local function in_asio(func)
    local info = jutil.funcinfo(func)
    return info and info.source and (info.source:find('asio.lua', 1, true) or info.source:find('asio[/\\][%w_]+%.lua$'))
  end
  local function recorder(what, tr, func, pc, otr, oex)
    if what == 'stop' and in_asio(func) then
      stopped[#stopped + 1] = jutil.funcinfo(func).loc
    elseif what == 'abort' and in_asio(func) then
      local msg = vmdef.traceerr[otr] or tostring(otr)
      if type(oex) == 'number' and msg:find('%%d') then msg = msg:format(oex)
      elseif msg:find('%%s') then
        local ok, s = pcall(function()
          return type(oex) == 'number' and vmdef.ffnames[oex] or tostring(oex)
        end)
        msg = msg:format(ok and s or '?')
      end
      aborts[#aborts + 1] = { msg = msg, loc = jutil.funcinfo(func, pc).loc }
    end
  end

  local ok, err = T.with_trace_events(recorder, go, function()
    local msg = ('m'):rep(64)
    local msg = ('n'):rep(63) .. '\n'
    local srv, port = T.server(function(c)
      for _ = 1, 300 do if not c:write(msg:rep(20)) then break end end
      c:close()
    end)
    local c = assert(asio.connect('127.0.0.1', port))
    -- the reads run inside the generator, and park the light thread through it
    local batches = asio.coroutine.wrap(function()
      while true do
        local k = 0
        for _ = 1, 100 do          -- the hot loop: reads inside the generator
          local l = c:read_line()
          if not l then break end
          if #l ~= 63 then error('bad line') end
          k = k + 1
        end
        if k == 0 then return end
        coroutine.yield(k)
      end
    end)
    local n = 0
    for k in batches do n = n + k end
    eq(n, 6000, 'lines read through the generator')
    c:close()
    srv:close()
  end)
  assert(ok, err)

  assert(#stopped > 0, 'no trace of asio.lua was compiled')
  local bad = {}
  for _, a in ipairs(aborts) do
    -- asio/coroutine.lua's resume wrapper sits on the coroutine boundary,
    -- which LuaJIT never compiles (coroutine.resume itself is NYI)
    if a.msg:find('NYI', 1, true) and not a.msg:find('coroutine', 1, true)
        and not a.loc:find('^coroutine%.lua') then
      bad[#bad + 1] = a.loc .. ': ' .. a.msg
    end
  end
  assert(#bad == 0, 'NYI aborts in asio.lua:\n  ' .. table.concat(bad, '\n  '))
end)
