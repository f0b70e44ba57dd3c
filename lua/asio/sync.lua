-- Synchronisation between light threads: conditions, queues and
-- semaphores. Every waiter waits in a first-in first-out list { wt, head,
-- tail }; S.th_cv[s] and S.th_cvi[s] name its entry while it waits, so
-- that a timed-out or killed waiter leaves no entry behind.

local lib = require 'asio.lib'
local S = require 'asio.state'
local sched = require 'asio.sched'
local check = require 'asio.check'

local C = lib.C
local setmetatable, getmetatable = setmetatable, getmetatable
local selferr, outside, check_timeout = check.selferr, check.outside, check.check_timeout
local argerr, is_count = check.argerr, check.is_count
local must_park, park, next_token, wake_later =
  sched.must_park, sched.park, sched.next_token, sched.wake_later
local th_tok, th_cv, th_cvi = S.th_tok, S.th_cv, S.th_cvi

local ETIMEDOUT, ECLOSED = C.LUAASIO_ETIMEDOUT, C.LUAASIO_ECLOSED

local M = {}

local Cond = {}
Cond.__index = Cond

function M.cond()
  return setmetatable({ wt = {}, head = 1, tail = 0 }, Cond)
end

function Cond:wait(timeout)
  local s = S.current
  if getmetatable(self) ~= Cond then selferr('wait', 'condition', self) end
  timeout = check_timeout(1, 'wait', timeout)
  if not s then outside('wait') end
  must_park(s, 'wait')
  local i = self.tail + 1
  self.tail = i
  self.wt[i] = s
  th_cv[s], th_cvi[s] = self, i
  local r = park(s, next_token(s), timeout and C.luaasio_now() + timeout, false)
  th_cv[s], th_cvi[s] = false, false
  if r == ETIMEDOUT then
    -- Leave no entry behind: signal() must not find it, and timed-out waits
    -- must not pile up in a condition nobody signals.
    if self.wt[i] == s then self.wt[i] = nil end
    while self.head <= self.tail and self.wt[self.head] == nil do self.head = self.head + 1 end
    if self.head > self.tail then self.head, self.tail = 1, 0 end
    return nil, 'timeout'
  end
  return true
end

-- Wakes the oldest waiter that is still waiting; returns whether there was one.
local function signal_one(cv)
  local wt = cv.wt
  while cv.head <= cv.tail do
    local i = cv.head
    local s = wt[i]
    wt[i] = nil
    cv.head = i + 1
    if s and th_tok[s] >= 0 and th_cv[s] == cv and th_cvi[s] == i then
      wake_later(s, 0)
      return true
    end
  end
  cv.head, cv.tail = 1, 0
  return false
end

function Cond:signal()
  if getmetatable(self) ~= Cond then selferr('signal', 'condition', self) end
  return signal_one(self)
end

function Cond:broadcast()
  if getmetatable(self) ~= Cond then selferr('broadcast', 'condition', self) end
  local n = 0
  while signal_one(self) do n = n + 1 end
  return n
end

---------------------------------------------------------------------------
-- Waiter lists shared by queues and semaphores
---------------------------------------------------------------------------

local function waiters() return { wt = {}, head = 1, tail = 0 } end

-- Parks the running light thread `s` in list `w` until woken (returns the
-- value it was woken with) or the deadline passes (ETIMEDOUT, entry gone).
local function wait_in(w, s, deadline)
  local i = w.tail + 1
  w.tail = i
  w.wt[i] = s
  th_cv[s], th_cvi[s] = w, i
  local r = park(s, next_token(s), deadline, false)
  th_cv[s], th_cvi[s] = false, false
  if r == ETIMEDOUT then
    if w.wt[i] == s then w.wt[i] = nil end
    while w.head <= w.tail and w.wt[w.head] == nil do w.head = w.head + 1 end
    if w.head > w.tail then w.head, w.tail = 1, 0 end
  end
  return r
end

-- Wakes the oldest waiter still waiting in `w` with `r`; true if there was one.
local function wake_one(w, r)
  local wt = w.wt
  while w.head <= w.tail do
    local i = w.head
    local s = wt[i]
    wt[i] = nil
    w.head = i + 1
    if s and th_tok[s] >= 0 and th_cv[s] == w and th_cvi[s] == i then
      wake_later(s, r)
      return true
    end
  end
  w.head, w.tail = 1, 0
  return false
end

local function live_waiters(w)
  local n = 0
  for i = w.head, w.tail do
    local s = w.wt[i]
    if s and th_cv[s] == w and th_cvi[s] == i then n = n + 1 end
  end
  return n
end

local function deadline_of(timeout)
  return timeout and C.luaasio_now() + timeout or nil
end

---------------------------------------------------------------------------
-- Queues
---------------------------------------------------------------------------

local Queue = {}
Queue.__index = Queue

-- asio.queue([capacity]): values passed between light threads, first in
-- first out; push waits while `capacity` values are queued (none: never).
function M.queue(capacity)
  if capacity ~= nil and not (is_count(capacity) and capacity > 0) then
    argerr(1, 'queue', 'positive integer or nil', capacity)
  end
  return setmetatable({ items = {}, first = 1, last = 0, cap = capacity or math.huge,
    closed = false, pushers = waiters(), poppers = waiters() }, Queue)
end

function Queue:push(v, timeout)
  local s = S.current
  if getmetatable(self) ~= Queue then selferr('push', 'queue', self) end
  if v == nil then argerr(1, 'push', 'value', v) end
  timeout = check_timeout(2, 'push', timeout)
  local deadline = false
  while true do
    if self.closed then return nil, 'closed' end
    if self.last - self.first + 1 < self.cap then
      local i = self.last + 1
      self.last = i
      self.items[i] = v
      wake_one(self.poppers, 0)
      return true
    end
    if not s then outside('push') end
    must_park(s, 'push')
    if deadline == false then deadline = deadline_of(timeout) end
    local r = wait_in(self.pushers, s, deadline)
    if r == ETIMEDOUT then return nil, 'timeout' end
  end
end

function Queue:pop(timeout)
  local s = S.current
  if getmetatable(self) ~= Queue then selferr('pop', 'queue', self) end
  timeout = check_timeout(1, 'pop', timeout)
  local deadline = false
  while true do
    local i = self.first
    if i <= self.last then
      local v = self.items[i]
      self.items[i] = nil
      self.first = i + 1
      if self.first > self.last then self.first, self.last = 1, 0 end
      wake_one(self.pushers, 0)
      return v
    end
    if self.closed then return nil, 'closed' end
    if not s then outside('pop') end
    must_park(s, 'pop')
    if deadline == false then deadline = deadline_of(timeout) end
    local r = wait_in(self.poppers, s, deadline)
    if r == ETIMEDOUT then return nil, 'timeout' end
  end
end

-- Wakes every waiter: pushes then fail with 'closed'; pops take what is
-- left, then get 'closed'.
function Queue:close()
  if getmetatable(self) ~= Queue then selferr('close', 'queue', self) end
  self.closed = true
  while wake_one(self.pushers, ECLOSED) do end
  while wake_one(self.poppers, ECLOSED) do end
  return true
end

function Queue:count()
  if getmetatable(self) ~= Queue then selferr('count', 'queue', self) end
  return self.last - self.first + 1
end

---------------------------------------------------------------------------
-- Semaphores
---------------------------------------------------------------------------

local Semaphore = {}
Semaphore.__index = Semaphore

-- asio.semaphore([n]): n resources (default 0), as OpenResty's ngx.semaphore.
function M.semaphore(n)
  if n ~= nil and not is_count(n) then argerr(1, 'semaphore', 'non-negative integer or nil', n) end
  return setmetatable({ n = n or 0, w = waiters() }, Semaphore)
end

-- Takes one resource, waiting first in first out; true or nil, 'timeout'.
function Semaphore:acquire(timeout)
  local s = S.current
  if getmetatable(self) ~= Semaphore then selferr('acquire', 'semaphore', self) end
  timeout = check_timeout(1, 'acquire', timeout)
  if self.n > 0 and live_waiters(self.w) == 0 then
    self.n = self.n - 1
    return true
  end
  if timeout == 0 then return nil, 'timeout' end
  if not s then outside('acquire') end
  must_park(s, 'acquire')
  local r = wait_in(self.w, s, deadline_of(timeout))
  if r == ETIMEDOUT then return nil, 'timeout' end
  return true   -- the releaser handed its resource over
end

-- Adds k resources (default 1), handing them to waiters first.
function Semaphore:release(k)
  if getmetatable(self) ~= Semaphore then selferr('release', 'semaphore', self) end
  if k ~= nil and not (is_count(k) and k > 0) then argerr(1, 'release', 'positive integer or nil', k) end
  for _ = 1, k or 1 do
    if not wake_one(self.w, 0) then self.n = self.n + 1 end
  end
  return true
end

-- Resources available; negative: that many light threads wait.
function Semaphore:count()
  if getmetatable(self) ~= Semaphore then selferr('count', 'semaphore', self) end
  return self.n - live_waiters(self.w)
end

return M
