-- Coroutines whose code may block on LuaAsio: asio.coroutine.resume and
-- asio.coroutine.wrap behave as Lua's own, except that an LuaAsio wait
-- inside the coroutine (a read, a sleep, ...) passes through them up to
-- the scheduler, parking the whole light thread, and comes back down into
-- the coroutine when the operation completes. The coroutine's own yields
-- still reach its own resumer.
--
-- require 'asio' does not change the global coroutine table. A program
-- (or a library written for OpenResty, such as lua-resty-http) that needs
-- it calls asio.install_coroutine(), which replaces coroutine.resume and
-- coroutine.wrap in place. The cost: one more Lua call per resume, and an
-- entry in a weak table linking the coroutine to its resumer.

local sched = require 'asio.sched'

local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_status, co_running = coroutine.status, coroutine.running
local error, type = error, type
local parent_of, PARKED = sched.parent_of, sched.PARKED

local M = {}

-- What a resume returned: an LuaAsio wait inside `co` is waited for here,
-- by yielding it on; its result resumes `co` again.
local function pass(co, ok, ...)
  if ok and ... == PARKED and co_status(co) == 'suspended' then
    return pass(co, co_resume(co, co_yield(PARKED)))
  end
  return ok, ...
end

function M.resume(co, ...)
  if type(co) ~= 'thread' then
    error(("bad argument #1 to 'resume' (coroutine expected, got %s)"):format(type(co)), 2)
  end
  parent_of[co] = co_running()
  return pass(co, co_resume(co, ...))
end
local resume = M.resume

local function unwrap(ok, ...)
  if not ok then error((...), 0) end
  return ...
end

function M.wrap(f)
  if type(f) ~= 'function' then
    error(("bad argument #1 to 'wrap' (function expected, got %s)"):format(type(f)), 2)
  end
  local co = co_create(f)
  return function(...) return unwrap(resume(co, ...)) end
end

M.create, M.yield, M.status, M.running = co_create, co_yield, co_status, co_running
M.isyieldable = coroutine.isyieldable

local installed = false
-- Replaces coroutine.resume and coroutine.wrap in the global coroutine
-- table (in place, so that modules holding the table see them too).
function M.install()
  if not installed then
    installed = true
    coroutine.resume, coroutine.wrap = M.resume, M.wrap
  end
  return true
end

return M
