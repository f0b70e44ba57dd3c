-- asio.relay(a, b [, opts]): forwards a -> b and b -> a until both
-- directions have ended, and returns the byte counts and how each ended.
--
-- Plain connections are relayed in C (src/relay.cpp): one FFI call starts
-- it, the calling light thread parks until C reports the end, and no byte
-- passes through Lua. A connection for which S.conn_is_plain() says no (one
-- whose bytes Lua must transform, such as TLS) is relayed by a Lua loop in
-- two light threads with the same results and half-close semantics.

local ffi = require 'ffi'
local lib = require 'asio.lib'
local S = require 'asio.state'
local sched = require 'asio.sched'
local check = require 'asio.check'
local sync = require 'asio.sync'
local conn = require 'asio.conn'

local C, strerror = lib.C, lib.strerror
local istype, type, error, pcall = ffi.istype, type, error, pcall
local argerr, outside, check_timeout = check.argerr, check.outside, check.check_timeout
local must_park, park, next_token = sched.must_park, sched.park, sched.next_token
local conn_t = conn.conn_t
local loop, th_obj = S.loop, S.th_obj

local EAGAIN, RUNNING = C.LUAASIO_EAGAIN, 1
local NOSPLICE = C.LUAASIO_RELAY_NOSPLICE
local result = ffi.new('double[5]')
local relaying = S.relaying   -- slot -> true while it runs a native relay

local M = {}

-- How many directions of the last native relay used splice(2) (for tests
-- and the benchmark).
M.last_splice = 0
M.last_path = nil   -- 'native' or 'lua'

local function end_string(code)
  if code == RUNNING then return nil end
  return strerror(code)
end

-- Gives both connections back to Lua after a native relay.
local function release(rec, s)
  relaying[s] = nil
  th_obj[s] = false
  for _, c in ipairs { rec.a, rec.b } do
    if c.reader == s then c.reader = 0 end
    if c.writer == s then c.writer = 0 end
  end
end

-- asio.kill of a light thread in a native relay: stop the relay in C (the
-- connections stay open) and free the connections.
local forget = S.forget_waits
S.forget_waits = function(o, s)
  if type(o) == 'table' and o.relay then
    if o.h then C.luaasio_close(loop, o.h); o.h = nil end
    release(o, s)
    return
  end
  return forget(o, s)
end

-- Writes the bytes Lua has already read from `src` (after a read_line, say)
-- to `dst`: they come first. Returns the count, or nil, the error and the
-- count sent.
local function flush_pending(src, dst)
  if src.pend == 0 then return 0 end
  local data = src:read_some()   -- returns the buffered bytes without waiting
  if not data or data == '' then return 0 end
  local ok, err, sent = dst:write(data)
  if not ok then return nil, err, sent or 0 end
  return #data
end

local function native(s, a, b, idle, flags)
  local pa, ea, sa = flush_pending(a, b)
  local pb, eb, sb = 0, nil, 0
  if pa then pb, eb, sb = flush_pending(b, a) end
  if not (pa and pb) then
    -- The pair broke while the buffered bytes were being written.
    local n_ab, n_ba = pa or sa, pb or sb or 0
    local end_ab = pa and 'closed' or ea
    local end_ba = pa and eb or 'closed'
    if (ea or eb) == 'connection reset' then
      pcall(a.setoption, a, 'linger', 0); pcall(b.setoption, b, 'linger', 0)
    end
    a:close(); b:close()
    return n_ab, n_ba, end_ab, end_ba
  end
  if a.h == 0 or b.h == 0 then return pa, pb, 'closed', 'closed' end
  a.reader, b.reader, a.writer, b.writer = s, s, s, s
  relaying[s] = true
  local rec = { relay = true, a = a, b = b }
  local token = next_token(s)
  local h = C.luaasio_relay_start(loop, token, a.h, b.h, idle, flags)
  if h < 0 then
    release(rec, s)
    local e = strerror(h)
    return pa, pb, e, e
  end
  rec.h = h
  th_obj[s] = rec
  park(s, token, nil, true)
  -- Closing either connection from Lua wakes this thread at once (it is
  -- their reader); the relay's own end follows from C in the same poll.
  while C.luaasio_relay_result(loop, h, result) == EAGAIN do
    token = next_token(s)
    if C.luaasio_relay_wait(loop, h, token) ~= 0 then break end
    park(s, token, nil, true)
  end
  C.luaasio_relay_result(loop, h, result)
  local n_ab, n_ba, e_ab, e_ba = result[0], result[1], result[2], result[3]
  M.last_splice = result[4]
  C.luaasio_close(loop, h)
  rec.h = nil
  release(rec, s)
  return pa + n_ab, pb + n_ba, end_string(e_ab), end_string(e_ba)
end

-- The same in Lua: one light thread per direction. `ends` holds each
-- direction's end; the first failure ends the other direction with
-- 'closed' (or both with 'timeout') and closes both connections.
local function in_lua(a, b, idle)
  local n, ends = { 0, 0 }, {}
  local last = C.luaasio_now()
  local left = 2
  local cv = sync.cond()
  local function stop(reason_this, i, reason_other)
    if ends[i] == nil then ends[i] = reason_this end
    local o = 3 - i
    if ends[o] == nil then ends[o] = reason_other end
    if reason_this == 'connection reset' then
      pcall(a.setoption, a, 'linger', 0); pcall(b.setoption, b, 'linger', 0)
    end
    a:close(); b:close()
  end
  local function pump(src, dst, i)
    while ends[i] == nil do
      local data, err = src:read_some()
      if data and #data > 0 then
        last = C.luaasio_now()
        local ok, werr, sent = dst:write(data)
        if not ok then
          n[i] = n[i] + (sent or 0)
          stop(werr, i, 'closed')
          break
        end
        n[i] = n[i] + #data
        last = C.luaasio_now()
      end
      if err == 'eof' then
        if ends[i] == nil then ends[i] = 'eof' end
        dst:shutdown()
      elseif err then
        stop(err, i, 'closed')
      end
    end
    left = left - 1
    cv:signal()
  end
  sched.spawn_light_thread(pump, a, b, 1)
  sched.spawn_light_thread(pump, b, a, 2)
  while left > 0 do
    if idle > 0 then
      local wait = last + idle - C.luaasio_now()
      if wait <= 0 then
        stop('timeout', 1, 'timeout')
        ends[2] = ends[2] or 'timeout'
        cv:wait()
      else
        cv:wait(wait)
      end
    else
      cv:wait()
    end
  end
  return n[1], n[2], ends[1], ends[2]
end

local function is_conn(c)
  if istype(conn_t, c) then return true end
  -- Another kind of connection (TLS) that Lua must relay itself.
  return (type(c) == 'table' or type(c) == 'cdata' or type(c) == 'userdata')
    and not S.conn_is_plain(c)
end

function M.relay(a, b, opts)
  local s = S.current
  if not is_conn(a) then argerr(1, 'relay', 'connection', a) end
  if not is_conn(b) then argerr(2, 'relay', 'connection', b) end
  if rawequal(a, b) or (istype(conn_t, a) and istype(conn_t, b) and a.h ~= 0 and a.h == b.h) then
    error("bad argument #2 to 'relay' (cannot relay a connection to itself)", 2)
  end
  if opts ~= nil and type(opts) ~= 'table' then argerr(3, 'relay', 'table or nil', opts) end
  local idle, splice, use_lua = nil, true, false
  if opts then
    local t = opts.idle_timeout
    if t ~= nil and (type(t) ~= 'number' or t ~= t or t < 0) then
      error("bad argument #3 to 'relay' (idle_timeout: non-negative number expected)", 2)
    end
    idle = t
    if opts.splice ~= nil then
      if type(opts.splice) ~= 'boolean' then
        error("bad argument #3 to 'relay' (splice: boolean expected)", 2)
      end
      splice = opts.splice
    end
    if opts.lua ~= nil then
      if type(opts.lua) ~= 'boolean' then
        error("bad argument #3 to 'relay' (lua: boolean expected)", 2)
      end
      use_lua = opts.lua
    end
  end
  if idle == math.huge then idle = nil end
  for i, c in ipairs { a, b } do
    if istype(conn_t, c) then
      if c.h == 0 then error(("bad argument #%d to 'relay' (connection is closed)"):format(i), 2) end
      if c.reader ~= 0 or c.writer ~= 0 then
        error(("bad argument #%d to 'relay' (connection is busy: another light thread reads or writes it)"):format(i), 2)
      end
    end
  end
  if not s then outside('relay') end
  must_park(s, 'relay')
  local native_ok = not use_lua and istype(conn_t, a) and istype(conn_t, b)
    and S.conn_is_plain(a) and S.conn_is_plain(b)
  M.last_path = native_ok and 'native' or 'lua'
  if native_ok then
    return native(s, a, b, idle or 0, splice and 0 or NOSPLICE)
  end
  return in_lua(a, b, idle or 0)
end

return M
