-- The scheduler: light threads, parking and waking, and the run loop that
-- polls completion events from C and resumes the threads they name.

local bit = require 'bit'
local lib = require 'asio.lib'
local S = require 'asio.state'
local timers = require 'asio.timers'
local check = require 'asio.check'

local C, strerror = lib.C, lib.strerror
local band, rshift = bit.band, bit.rshift
local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_running, co_status = coroutine.running, coroutine.status
local type, tostring, select, error, unpack = type, tostring, select, error, unpack
local getmetatable, setmetatable = getmetatable, setmetatable
local argerr, outside = check.argerr, check.outside

local ETIMEDOUT = C.LUAASIO_ETIMEDOUT
local ESTOPPED = C.LUAASIO_ESTOPPED
local loop, events, MAX_EVENTS = S.loop, S.events, S.MAX_EVENTS
local th_co, th_tok, th_io = S.th_co, S.th_tok, S.th_io
local th_hidx, th_cv, th_cvi = S.th_hidx, S.th_cv, S.th_cvi
local slot_of, heap, heap_dl = S.slot_of, S.heap, S.heap_dl
local SLOT_MASK, SLOT_SEQ, SERVER_BIT = S.SLOT_MASK, S.SLOT_SEQ, S.SERVER_BIT
local SEQ_SHIFT = S.SLOT_SEQ_SHIFT
local heap_push, heap_remove = timers.push, timers.remove

local joiners_of = {}          -- coroutine -> slots waiting in join()
local done_of = setmetatable({}, { __mode = 'k' })   -- finished with results
local failed_of = setmetatable({}, { __mode = 'k' }) -- raised: {the error}
local free_slots, nfree = {}, 0
local nslots = 0
local ready_t, ready_r, ready_c, ready_head, ready_tail = {}, {}, {}, 1, 0
local running, stopped = false, false

-- Operations a light thread may complete in a row without waiting before
-- the next one gives the others a turn (asio.yield). 128, as Tokio uses:
-- measured here (bench/fairness.sh), 128 keeps a 10 ms ticker's longest
-- gap far under its budget while a reader takes 1M buffered lines, and the
-- extra turn every 128 operations costs nothing measurable on echo.
local BUDGET = 128
local finish

local M = {}
M.BUDGET = BUDGET

---------------------------------------------------------------------------
-- Error reports
---------------------------------------------------------------------------

-- tostring() that never raises: an error object whose __tostring fails
-- must still be reported, and must not take run() down.
local function describe(v)
  local ok, text = pcall(tostring, v)
  if ok and type(text) == 'string' then return text end
  return ('(a %s error object whose __tostring failed: %s)'):format(type(v),
    ok and 'it returned a ' .. type(text) or select(2, pcall(tostring, text)) or '?')
end
M.describe = describe

-- `what` names where the error was raised; nil: in a light thread.
local function report_default(err, trace, what)
  io.stderr:write('asio: error in ', what or 'light thread', ': ', describe(trace or err), '\n')
end
local reporter = report_default

local function report(err, trace, what)
  local ok, e = pcall(reporter, err, trace, what)
  if not ok then
    report_default(err, describe(trace) .. '\n(error handler failed: ' .. describe(e) .. ')', what)
  end
end
M.report = report

function M.on_error(fn)
  if fn ~= nil and type(fn) ~= 'function' then argerr(1, 'on_error', 'function or nil', fn) end
  reporter = fn or report_default
end

---------------------------------------------------------------------------
-- Light threads
---------------------------------------------------------------------------

local function alloc_slot()
  if nfree > 0 then
    local s = free_slots[nfree]
    free_slots[nfree] = nil
    nfree = nfree - 1
    return s
  end
  nslots = nslots + 1
  return nslots
end

-- A fresh token per wait: the slot index plus a sequence number, so that an
-- event from an abandoned operation can never wake a later wait. A thread
-- that is not waiting keeps its last sequence number in th_tok as -1 - seq
-- (negative, so "th_tok[s] < 0" still means "not waiting"): one array less
-- per light thread.
function M.next_token(s)
  local t = th_tok[s]
  local seq = band((t < 0 and -1 - t or rshift(t, SEQ_SHIFT)) + 1, 0xff)
  if t < 0 then th_tok[s] = -1 - seq end
  return s + seq * SLOT_SEQ
end
local next_token = M.next_token

-- Raises if the running coroutine is not the light thread `s` (a plain
-- coroutine inside a light thread). Every blocking call checks this before it
-- changes any state, so a misused call leaves the connection as it was.
-- Called directly by the API function `fname`, so the error blames its caller.
-- A coroutine resumed through asio.coroutine.resume (or wrap) inside a
-- light thread may block too: parent_of links it to its resumer, and a
-- wait yields up that chain to the scheduler (see asio/coroutine.lua).
local parent_of = setmetatable({}, { __mode = 'k' })
M.parent_of = parent_of

function M.must_park(s, fname)
  local co = co_running()
  local lt = th_co[s]
  if co ~= lt then
    repeat co = parent_of[co] until co == lt or co == nil
    if co == nil then
      error((fname and "'" .. fname .. "' called" or 'blocking call')
        .. ' from a coroutine that is not a light thread (resume it with asio.coroutine'
        .. ' to let it block)', 3)
    end
  end
end
local must_park = M.must_park

-- What a parked light thread yields: resume() can then tell "parked" from
-- "finished" without asking coroutine.status.
local PARKED = {}
M.PARKED = PARKED

-- Records that `s` waits for `token` (and the deadline); the caller has run
-- must_park(s) and yields PARKED next. Separate from park() so that the
-- hottest waits can yield from the API function itself: a parked coroutine
-- whose frames use more than about twenty stack slots has its stack doubled,
-- which would double the memory of an idle connection.
function M.arm(s, token, deadline, io)
  th_tok[s] = token
  if io then th_io[s] = true; S.nio = S.nio + 1 end
  if deadline then heap_push(s, deadline) end
end
local arm = M.arm

function M.park(s, token, deadline, io)
  arm(s, token, deadline, io)
  return co_yield(PARKED)
end
local park = M.park

local function unpark(s)
  local t = th_tok[s]
  if t >= 0 then th_tok[s] = -1 - rshift(t, SEQ_SHIFT) end
  if th_hidx[s] then heap_remove(s) end
  if th_io[s] then th_io[s] = false; S.nio = S.nio - 1 end
end

-- Like wake_later, only if `s` still waits for `token`.
local function wake_if(s, token, r)
  if th_tok[s] == token then M.wake_later(s, r) end
end

-- Resumes `s` with `r` on the next turn of the loop, if it is still parked.
function M.wake_later(s, r)
  if th_tok[s] < 0 then return end
  unpark(s)
  ready_tail = ready_tail + 1
  ready_t[ready_tail] = s
  ready_r[ready_tail] = r
  ready_c[ready_tail] = th_co[s]
end
local wake_later = M.wake_later

function finish(s, ok, ...)
  local co = th_co[s]
  slot_of[co] = nil
  S.th_obj[s] = false
  th_co[s], th_cv[s], th_cvi[s] = false, false, false
  nfree = nfree + 1
  free_slots[nfree] = s
  S.nthreads = S.nthreads - 1
  if ok then
    -- A finished thread without results needs no record: its coroutine is
    -- dead and not in failed_of.
    local n = select('#', ...)
    if n > 0 then done_of[co] = { n = n, ... } end
  else
    failed_of[co] = { (...) }
  end
  local joiners = joiners_of[co]
  if joiners then
    joiners_of[co] = nil
    for i = 1, #joiners, 2 do wake_if(joiners[i], joiners[i + 1], 0) end
  end
end

local function after_resume(s, prev, ok, ...)
  S.current = prev
  if prev then S.budget = BUDGET end
  if ok then
    if ... ~= PARKED then
      if co_status(th_co[s]) == 'dead' then
        finish(s, true, ...)
      else
        -- A raw coroutine.yield() at the light thread's own level: there is
        -- no resumer but the scheduler, so it is taken as asio.sleep(0), a
        -- turn for the others. The yield returns nil.
        ready_tail = ready_tail + 1
        ready_t[ready_tail] = s
        ready_r[ready_tail] = nil
        ready_c[ready_tail] = th_co[s]
      end
    end
  else
    local err = ...
    report(err, debug.traceback(th_co[s], describe(err)))
    finish(s, false, err)
  end
end


local function resume(s, ...)
  local prev = S.current
  S.current = s
  S.budget = BUDGET
  return after_resume(s, prev, co_resume(th_co[s], ...))
end

function M.spawn_light_thread(fn, ...)
  if type(fn) ~= 'function' then
    local mt = getmetatable(fn)
    if not (mt and mt.__call) then argerr(1, 'spawn_light_thread', 'function', fn) end
    local callable = fn
    fn = function(...) return callable(...) end
  end
  local co = co_create(fn)
  local s = alloc_slot()
  th_co[s], th_tok[s], th_io[s], th_hidx[s] = co, -1, false, false
  slot_of[co] = s
  S.nthreads = S.nthreads + 1
  resume(s, ...)
  return co
end

function M.sleep(sec)
  local s = S.current
  if type(sec) ~= 'number' or sec ~= sec then argerr(1, 'sleep', 'number', sec) end
  if not s then outside('sleep') end
  must_park(s, 'sleep')
  if sec < 0 then sec = 0 end
  park(s, next_token(s), C.luaasio_now() + sec, false)
end

function M.join(th)
  local s = S.current
  if type(th) ~= 'thread' then argerr(1, 'join', 'light thread', th) end
  if not s then outside('join') end
  if th == th_co[s] then error("bad argument #1 to 'join' (a light thread cannot join itself)", 2) end
  if slot_of[th] then
    must_park(s, 'join')
    local token = next_token(s)
    local j = joiners_of[th]
    if not j then j = {}; joiners_of[th] = j end
    j[#j + 1] = s
    j[#j + 1] = token
    park(s, token, nil, false)
  end
  local failed = failed_of[th]
  if failed then return nil, failed[1] end
  local r = done_of[th]
  if r then return unpack(r, 1, r.n) end
end

-- Gives the other light threads a turn: `s` (the running thread) is
-- queued to run again after the loop has polled for I/O once.
function M.yield_turn(s)
  arm(s, next_token(s), nil, false)
  wake_later(s, 0)
  return co_yield(PARKED)
end
local yield_turn = M.yield_turn

-- Counts one operation that completed without waiting against the running
-- thread's budget; at zero, gives the others a turn first.
function M.spend(s)
  local b = S.budget - 1
  S.budget = b
  if b <= 0 then yield_turn(s) end
end

function M.yield()
  local s = S.current
  if not s then outside('yield') end
  must_park(s, 'yield')
  yield_turn(s)
end

-- asio.kill(th): ends a parked light thread. Its wait is withdrawn (timer,
-- operation in C, place in a queue), its joiners get nil, 'killed'.
-- Returns true, or nil and 'running' (the thread is running, or is waiting
-- for one it started to return) or 'dead' (it has finished, or is no
-- light thread).
function M.kill(th)
  if type(th) ~= 'thread' then argerr(1, 'kill', 'light thread', th) end
  local s = slot_of[th]
  if not s then return nil, 'dead' end
  local st = co_status(th)
  if st ~= 'suspended' or s == S.current then return nil, 'running' end
  if th_tok[s] >= 0 then unpark(s) end
  local w = th_cv[s]
  if w then w.wt[th_cvi[s]] = nil end
  local o = S.th_obj[s]
  if o then
    S.th_obj[s] = false
    if type(o) == 'number' then
      C.luaasio_close(loop, o)          -- a connect or lookup in flight
    elseif S.forget_waits then
      S.forget_waits(o, s)              -- a connection's read or write
    end
  end
  finish(s, false, 'killed')
  return true
end

-- asio.wait_any(th1, th2, ...): waits until the first of the light threads
-- ends; returns it, then its results (or nil and its error).
function M.wait_any(...)
  local s = S.current
  local ths = { ... }
  local n = select('#', ...)
  if n == 0 then error("bad argument #1 to 'wait_any' (light thread expected, got no value)", 2) end
  for i = 1, n do
    local th = ths[i]
    if type(th) ~= 'thread' then argerr(i, 'wait_any', 'light thread', th) end
    if s and th == th_co[s] then
      error(("bad argument #%d to 'wait_any' (a light thread cannot wait for itself)"):format(i), 2)
    end
  end
  if not s then outside('wait_any') end
  local function ended()
    for i = 1, n do
      if not slot_of[ths[i]] then return ths[i] end
    end
  end
  local th = ended()
  if not th then
    must_park(s, 'wait_any')
    local token = next_token(s)
    for i = 1, n do
      local j = joiners_of[ths[i]]
      if not j then j = {}; joiners_of[ths[i]] = j end
      j[#j + 1] = s
      j[#j + 1] = token
    end
    park(s, token, nil, false)
    th = ended()
    -- Leave no entry in the lists of the threads still running.
    for i = 1, n do
      local j = joiners_of[ths[i]]
      if j then
        for k = #j - 1, 1, -2 do
          if j[k] == s and j[k + 1] == token then table.remove(j, k + 1); table.remove(j, k) end
        end
      end
    end
  end
  local failed = failed_of[th]
  if failed then return th, nil, failed[1] end
  local r = done_of[th]
  if r then return th, unpack(r, 1, r.n) end
  return th
end

---------------------------------------------------------------------------
-- The run loop
---------------------------------------------------------------------------

local function dispatch(n)
  for i = 0, n - 1 do
    local ev = events[i]
    local token, r = ev.slot, ev.result
    if token >= SERVER_BIT then
      local rec = S.servers[token]
      if rec then
        S.on_accept(rec, r)
      elseif r > 0 then
        C.luaasio_close(loop, r)   -- accepted after the server was closed
      end
    else
      local s = band(token, SLOT_MASK)
      if th_tok[s] == token then
        unpark(s)
        resume(s, r)
      end
    end
  end
end

local function run_ready()
  -- Threads made ready while this runs (asio.yield, a used-up budget) wait
  -- for the next turn, after a poll for I/O.
  local last = ready_tail
  while ready_head <= last do
    local i = ready_head
    local s, r, co = ready_t[i], ready_r[i], ready_c[i]
    ready_t[i], ready_r[i], ready_c[i] = nil, nil, nil
    ready_head = i + 1
    -- (a thread killed while it was ready is not resumed)
    if th_co[s] == co then resume(s, r) end
  end
  if ready_head > ready_tail then ready_head, ready_tail = 1, 0 end
end

local function expire_timers()
  if S.nheap == 0 then return end
  local now = C.luaasio_now()
  while S.nheap > 0 and heap_dl[1] <= now do
    local s = heap[1]
    unpark(s)
    resume(s, ETIMEDOUT)
  end
end

function M.run()
  if S.current then error("'run' must not be called from a light thread", 2) end
  if running then error("'run' is already running", 2) end
  running, stopped = true, false
  local ok, err = pcall(function()
    while not stopped do
      run_ready()
      if stopped then break end
      if S.nio + S.nheap + S.nservers == 0 and ready_head > ready_tail then break end
      local timeout = -1
      if ready_head <= ready_tail then
        timeout = 0
      elseif S.nheap > 0 then
        timeout = heap_dl[1] - C.luaasio_now()
        if timeout < 0 then timeout = 0 end
      end
      local n = C.luaasio_poll(loop, events, MAX_EVENTS, timeout)
      if n > 0 then
        dispatch(n)
      elseif n == ESTOPPED then
        stopped = true   -- this loop's owner thread asked it to stop
      elseif n < 0 then
        report(strerror(n), 'asio: poll failed: ' .. strerror(n))
      end
      expire_timers()
    end
  end)
  running = false
  if not ok then error(err, 0) end
end

function M.stop()
  stopped = true
end

function M.stats()
  return {
    objects = C.luaasio_loop_count(loop),
    threads = S.nthreads,
    waiting_io = S.nio,
    timers = S.nheap,
    servers = S.nservers,
  }
end

function M.now() return C.luaasio_now() end

return M
