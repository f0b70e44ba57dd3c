-- A small test harness: one line per test, a leak check after each one, and
-- a closing "N passed, N failed" line.
local asio = require 'asio'

local T = { tests = {}, root = nil }

-- Under test/sanitize.sh the sanitizer runtimes are preloaded into LuaJIT;
-- keep them out of the shell commands the tests run.
-- Child processes (examples, proxies) are often stopped with os.exit or a
-- signal, without closing their Lua state, so only this process checks leaks.
T.sanitized = os.getenv('LUAASIO_PRELOAD') ~= nil
-- Under sanitizers or valgrind, freed memory is held back, so RSS bounds
-- mean nothing there.
T.instrumented = T.sanitized or os.getenv('LUAASIO_INSTRUMENTED') ~= nil
-- Under qemu-user (test/cross.sh) and on Windows (wine, .ci/portability.sh)
-- some facilities are missing; tests that need them say
-- `if T.qemu then T.skip(reason) end` or the same with T.windows.
T.qemu = os.getenv('LUAASIO_QEMU') ~= nil
T.windows = package.config:sub(1, 1) == '\\'
-- Wine's ntdll exports wine_get_version; wine differs from Windows in places.
T.wine = T.windows and pcall(function()
  local ffi = require 'ffi'
  ffi.cdef('const char *wine_get_version(void);')
  return ffi.load('ntdll').wine_get_version
end)
if T.sanitized then
  local ffi = require 'ffi'
  pcall(ffi.cdef, 'int unsetenv(const char *name); int setenv(const char *n, const char *v, int o);')
  ffi.C.unsetenv('LD_PRELOAD')
  ffi.C.setenv('ASAN_OPTIONS', (os.getenv('ASAN_OPTIONS') or '') .. ':detect_leaks=0', 1)
end

local function script_root()
  local src = debug.getinfo(1, 'S').source:sub(2)
  local dir = src:match('^(.*)/test/lib/[^/]*$') or '.'
  if dir:sub(1, 1) ~= '/' then
    local pwd = io.popen('pwd'):read('*l')
    dir = dir == '.' and pwd or pwd .. '/' .. dir
  end
  return dir
end
T.root = script_root()

local SKIP = setmetatable({}, { __tostring = function() return 'skip' end })

-- Registers a test; `suite` is set by the runner while loading a file.
function T.test(name, fn)
  T.tests[#T.tests + 1] = { name = (T.suite and T.suite .. ': ' or '') .. name, fn = fn }
end

function T.skip(reason)
  error({ [SKIP] = true, reason = reason }, 0)
end

-- Runs `fn` in a light thread and drives the loop until it and everything it
-- started are finished. Fails after `limit` seconds instead of hanging.
function T.go(fn, limit)
  limit = limit or 30
  local done, ok, err = false, nil, nil
  local cv = asio.cond()
  -- What was already pending (left by an earlier test that failed) is not
  -- waited for again: it would cost every later test the whole 2 s.
  local s0 = asio.stats()
  asio.spawn_light_thread(function()
    local waited, werr = pcall(cv.wait, cv, limit)
    if not waited then err = 'watchdog failed: ' .. tostring(werr) end
    if not done then asio.stop() return end
    -- Give what the test started a moment to wind down; a server left open
    -- would keep run() going for ever, so stop and let the leak check speak.
    for _ = 1, 200 do
      local s = asio.stats()
      if s.waiting_io <= s0.waiting_io and s.servers <= s0.servers and s.timers <= s0.timers then
        -- run() ends by itself once nothing is pending; otherwise end it here.
        if s.waiting_io + s.servers + s.timers > 0 then asio.stop() end
        return
      end
      asio.sleep(0.01)
    end
    asio.stop()
  end)
  asio.spawn_light_thread(function()
    ok, err = xpcall(fn, debug.traceback)
    done = true
    cv:signal()
  end)
  asio.run()
  if not done then error(err or ('test did not finish within ' .. limit .. ' s'), 0) end
  if not ok then error(err, 0) end
end

-- Spawns a light thread and returns a function that waits for its results.
function T.spawn(fn, ...)
  local th = asio.spawn_light_thread(fn, ...)
  return function() return asio.join(th) end
end

function T.eq(got, want, what)
  if got ~= want then
    error(('%s: expected %s, got %s'):format(what or 'value', tostring(want), tostring(got)), 2)
  end
end

-- Asserts that `fn` raises an error whose message contains `pattern` (plain).
function T.raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then error('expected an error matching "' .. pattern .. '"', 2) end
  if not tostring(err):find(pattern, 1, true) then
    error(('error "%s" does not contain "%s"'):format(tostring(err), pattern), 2)
  end
  return err
end

function T.pid()
  if T.windows then return nil end -- a /proc path would reach wine's host
  local f = io.open('/proc/self/stat')
  if not f then return nil end
  local pid = f:read('*l'):match('^(%d+)')
  f:close()
  return pid
end

-- Number of open descriptors of this process (Linux), or nil.
function T.fd_count()
  local pid = T.pid()
  if not pid then return nil end
  local p = io.popen('ls /proc/' .. pid .. '/fd 2>/dev/null')
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

-- From a light thread: waits up to `seconds` (default 5) for the number of
-- open descriptors to come down to `limit` (closes finish on the loop, and
-- a peer's close may take a turn or two to arrive), polling every 20 ms.
-- Returns the last count.
function T.fds_down_to(limit, seconds)
  local n = T.fd_count()
  local deadline = asio.now() + (seconds or 5)
  while n and n > limit and asio.now() < deadline do
    asio.sleep(0.02)
    collectgarbage()
    n = T.fd_count()
  end
  return n
end

-- Runs fn(...) with `recorder` attached to LuaJIT's trace events and loops
-- compiling after 10 iterations, from an empty trace cache, then restores
-- the defaults; returns pcall's results. Side traces are off meanwhile:
-- LuaJIT 2.1 may crash building the 'abort' event of a side trace that
-- aborts as it starts (it walks stack frames the exit has not restored,
-- in lj_trace.c's trace_abort), and these checks need only root traces.
function T.with_trace_events(recorder, fn, ...)
  jit.flush()
  jit.opt.start('hotloop=10', 'hotexit=2', 'maxside=0')
  jit.attach(recorder, 'trace')
  local r = { pcall(fn, ...) }
  jit.attach(recorder)
  jit.opt.start('hotloop=56', 'hotexit=10', 'maxside=100')
  return unpack(r, 1, table.maxn(r))
end

function T.rss_kb()
  if T.windows then return nil end
  local f = io.open('/proc/self/status')
  if not f then return nil end
  local s = f:read('*a')
  f:close()
  return tonumber(s:match('VmRSS:%s*(%d+)'))
end

-- A server on 127.0.0.1, port 0, running `fn(conn)` in a light thread per
-- connection. Returns the server and its port.
function T.server(fn)
  local srv = assert(asio.server('127.0.0.1', 0, function(conn)
    asio.spawn_light_thread(fn, conn)
  end))
  return srv, srv:port()
end

local function now() return asio.now() end

function T.run(filter)
  local passed, failed, skipped = 0, 0, 0
  for _, t in ipairs(T.tests) do
    if not filter or t.name:find(filter, 1, true) then
      local start = now()
      -- What an earlier failed test left behind is its failure, not this one's.
      local s0 = asio.stats()
      local ok, err = pcall(t.fn)
      collectgarbage()
      collectgarbage()
      local s = asio.stats()
      -- A test that skips half-way must not leave anything behind either.
      local skip = not ok and type(err) == 'table' and err[SKIP]
      if (ok or skip) and (s.objects > s0.objects or s.threads > s0.threads or s.servers > s0.servers) then
        ok, err = false, ('left behind %d objects, %d light threads, %d servers'):format(
          s.objects - s0.objects, s.threads - s0.threads, s.servers - s0.servers)
      end
      local took = ('%.2fs'):format(now() - start)
      if ok then
        passed = passed + 1
        print(('ok    %s (%s)'):format(t.name, took))
      elseif type(err) == 'table' and err[SKIP] then
        skipped = skipped + 1
        print(('skip  %s: %s'):format(t.name, tostring(err.reason)))
      else
        failed = failed + 1
        print(('FAIL  %s (%s): %s'):format(t.name, took, tostring(err)))
      end
      io.stdout:flush()
    end
  end
  print(('%d passed, %d failed, %d skipped'):format(passed, failed, skipped))
  return failed == 0
end

return T
