-- asio.relay(a, b [, opts]): forwards both directions between two
-- connections until both are over, for proxies. Plain TCP and Unix
-- connections are relayed inside the library (splice(2) on Linux between
-- TCP sockets); TLS connections, whose bytes must pass through the TLS
-- library, by two light threads running read_some/write loops, with the
-- same results.

local ffi = require 'ffi'
local lib = require 'asio.lib'
local S = require 'asio.state'
local sched = require 'asio.sched'
local check = require 'asio.check'
local conn = require 'asio.conn'

local C, strerror = lib.C, lib.strerror
local type, error, tonumber, setmetatable, getmetatable = type, error, tonumber, setmetatable, getmetatable
local argerr, outside = check.argerr, check.outside
local must_park, park, next_token = sched.must_park, sched.park, sched.next_token
local conn_t, release_turn, unread_take = conn.conn_t, conn.release_turn, conn.take_pend
local istype = ffi.istype

local loop = S.loop
local EOF, ECLOSED, ETIMEDOUT = C.LUAASIO_EOF, C.LUAASIO_ECLOSED, C.LUAASIO_ETIMEDOUT
local bytes_buf = ffi.new('int64_t[2]')
local ends_buf = ffi.new('int[2]')

local function end_string(code)
  if code == 1 then return 'closed' end   -- still running when stopped
  return strerror(code)
end

-- What asio.kill finds in th_obj while a thread waits for a native relay.
local Running = {}
Running.__index = Running

local function unmark(r, s)
  for _, c in ipairs({ r.a, r.b }) do
    if c.reader == s then c.reader = 0 end
    if c.writer == s then release_turn(c) end
  end
end

-- asio.kill: stop the relay, and the connections are free again.
local forget = S.forget_waits
S.forget_waits = function(o, s)
  if getmetatable(o) == Running then
    C.luaasio_close(loop, o.h)
    unmark(o, s)
    return
  end
  return forget(o, s)
end

local function native(s, a, b, idle, flags, pre_ab, pre_ba)
  local token = next_token(s)
  local h = C.luaasio_relay_start(loop, a.h, b.h, token, idle or 0, flags)
  if h < 0 then return nil, strerror(h) end
  -- Both connections are busy meanwhile: reads there return 'busy',
  -- writes wait for their turn until the relay is over.
  a.reader, a.writer, b.reader, b.writer = s, s, s, s
  local rec = setmetatable({ h = h, a = a, b = b }, Running)
  S.th_obj[s] = rec
  -- Woken by the relay's event, or early (ECLOSED) when a connection was
  -- closed from another light thread: then the relay is stopped here.
  park(s, token, nil, true)
  S.th_obj[s] = false
  C.luaasio_relay_result(loop, h, bytes_buf, ends_buf)
  C.luaasio_close(loop, h)
  unmark(rec, s)
  local n_ab = pre_ab + tonumber(bytes_buf[0])
  local n_ba = pre_ba + tonumber(bytes_buf[1])
  local e_ab, e_ba = ends_buf[0], ends_buf[1]
  if e_ab == ETIMEDOUT or e_ba == ETIMEDOUT then
    a:close()
    b:close()
  end
  return n_ab, n_ba, end_string(e_ab), end_string(e_ba)
end

-- The same in Lua, for TLS connections (and opts.native == false).
local function in_lua(s, a, b, idle, pre_ab, pre_ba)
  local now = sched.now
  local last = now()
  local cv = require('asio.sync').cond()
  local res = { pre_ab, pre_ba, false, false }
  local threads = {}
  local failure
  local function pump(i, src, dst)
    local rto = src.rto
    if idle then src.rto = idle end
    local ending
    while true do
      local data, err = src:read_some()
      if data and data ~= '' then
        last = now()
        local ok, werr = dst:write(data)
        if not ok then ending = werr; break end
        res[i] = res[i] + #data
        last = now()
      elseif err == 'timeout' and idle and now() - last < idle then
        -- the other direction was busy meanwhile: not idle
      else
        ending = err or 'closed'
        break
      end
    end
    if src.h ~= 0 and idle then src.rto = rto end
    if ending == 'eof' then
      dst:shutdown()
    else
      if failure == nil then failure = ending end
      local other = threads[3 - i]
      if other and not res[5 - i] then
        res[5 - i] = failure
        sched.kill(other)
      end
    end
    if not res[i + 2] then res[i + 2] = ending end
    cv:signal()
  end
  threads[1] = sched.spawn_light_thread(pump, 1, a, b)
  threads[2] = sched.spawn_light_thread(pump, 2, b, a)
  while not (res[3] and res[4]) do cv:wait() end
  if res[3] == 'timeout' or res[4] == 'timeout' then
    a:close()
    b:close()
  end
  return res[1], res[2], res[3], res[4]
end

local function relay(a, b, opts)
  local s = S.current
  if not istype(conn_t, a) then argerr(1, 'relay', 'connection', a) end
  if not istype(conn_t, b) then argerr(2, 'relay', 'connection', b) end
  if rawequal(a, b) or (a.h ~= 0 and a.h == b.h) then
    error("bad argument #2 to 'relay' (the same connection as argument #1)", 2)
  end
  if opts ~= nil and type(opts) ~= 'table' then argerr(3, 'relay', 'table or nil', opts) end
  local idle, flags, lua = nil, 0, false
  if opts then
    if opts.idle_timeout ~= nil then
      idle = opts.idle_timeout
      if type(idle) ~= 'number' or not (idle > 0) or idle ~= idle then
        error("bad argument #3 to 'relay' (idle_timeout must be a positive number)", 2)
      end
    end
    if opts.splice ~= nil then
      if type(opts.splice) ~= 'boolean' then
        error("bad argument #3 to 'relay' (splice must be a boolean)", 2)
      end
      if not opts.splice then flags = C.LUAASIO_RELAY_NO_SPLICE end
    end
    if opts.native ~= nil then
      if type(opts.native) ~= 'boolean' then
        error("bad argument #3 to 'relay' (native must be a boolean)", 2)
      end
      lua = not opts.native
    end
  end
  if not s then outside('relay') end
  must_park(s, 'relay')
  if a.h == 0 or b.h == 0 then return nil, 'closed' end
  if a.reader ~= 0 or a.writer ~= 0 or b.reader ~= 0 or b.writer ~= 0 then return nil, 'busy' end
  -- Bytes already read into Lua (past a header line, say) go first.
  local pre_ab, pre_ba = 0, 0
  for i, pair in ipairs({ { a, b }, { b, a } }) do
    local src, dst = pair[1], pair[2]
    if src.pend ~= 0 then
      local data = unread_take(src)
      local ok, err = dst:write(data)
      if not ok then return nil, err end
      if i == 1 then pre_ab = #data else pre_ba = #data end
    end
  end
  if lua or a.tls ~= 0 or b.tls ~= 0 then return in_lua(s, a, b, idle, pre_ab, pre_ba) end
  return native(s, a, b, idle, flags, pre_ab, pre_ba)
end

return { relay = relay }
