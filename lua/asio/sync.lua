-- Synchronisation between light threads: condition objects.

local lib = require 'asio.lib'
local S = require 'asio.state'
local sched = require 'asio.sched'
local check = require 'asio.check'

local C = lib.C
local setmetatable, getmetatable = setmetatable, getmetatable
local selferr, outside, check_timeout = check.selferr, check.outside, check.check_timeout
local must_park, park, next_token, wake_later =
  sched.must_park, sched.park, sched.next_token, sched.wake_later
local th_tok, th_cv, th_cvi = S.th_tok, S.th_cv, S.th_cvi

local ETIMEDOUT = C.LUAASIO_ETIMEDOUT

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

return M
