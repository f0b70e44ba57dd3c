-- LuaAsio: non-blocking TCP for LuaJIT that reads like blocking code.
--
-- Light threads are coroutines. A blocking call first tries the operation
-- without waiting (one FFI call); only if the kernel has nothing for it does
-- the thread arm a readiness wait in C and yield. The scheduler in asio.run()
-- polls completion events from C in batches and resumes the threads they
-- name. C never calls into Lua.

local ffi = require 'ffi'
local bit = require 'bit'

local band = bit.band
local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_running, co_status = coroutine.running, coroutine.status
local ffi_string, ffi_gc = ffi.string, ffi.gc
local sub, find, byte, concat = string.sub, string.find, string.byte, table.concat
local type, tostring, tonumber, select, error = type, tostring, tonumber, select, error
local setmetatable, getmetatable = setmetatable, getmetatable
local floor, huge = math.floor, math.huge

local ABI_VERSION = 1

---------------------------------------------------------------------------
-- Loading the library
---------------------------------------------------------------------------

local function this_dir()
  local src = debug.getinfo(1, 'S').source
  if sub(src, 1, 1) == '@' then
    return src:sub(2):match('^(.*)[/\\][^/\\]*$') or '.'
  end
  return '.'
end

local function load_library()
  local names
  if ffi.os == 'Windows' then
    names = { 'luaasio.dll', 'libluaasio.dll' }
  elseif ffi.os == 'OSX' then
    names = { 'libluaasio.dylib', 'libluaasio.so' }
  else
    names = { 'libluaasio.so' }
  end
  local tried, candidates = {}, {}
  local env = os.getenv('LUAASIO_LIB')
  if env and env ~= '' then candidates[#candidates + 1] = env end
  local dir = this_dir()
  for _, n in ipairs(names) do candidates[#candidates + 1] = dir .. '/' .. n end
  for _, base in ipairs({ 'luaasio', 'libluaasio' }) do
    local p = package.searchpath and package.searchpath(base, package.cpath)
    if p then candidates[#candidates + 1] = p end
  end
  for _, path in ipairs(candidates) do
    local ok, lib = pcall(ffi.load, path)
    if ok then return lib end
    tried[#tried + 1] = '  ' .. path .. ': ' .. tostring(lib)
  end
  error('asio: cannot load the LuaAsio library; set LUAASIO_LIB or package.cpath. Tried:\n'
    .. (#tried > 0 and concat(tried, '\n') or '  (no candidate: package.cpath has none)'), 3)
end

local C = load_library()

if not pcall(ffi.typeof, 'luaasio_event') then
  ffi.cdef('const char *luaasio_cdef(void);')
  ffi.cdef(ffi_string(C.luaasio_cdef()))
end

if C.luaasio_abi_version() ~= ABI_VERSION then
  error(('asio: library ABI version %d, asio.lua expects %d'):format(
    C.luaasio_abi_version(), ABI_VERSION), 2)
end
if C.luaasio_event_size() ~= ffi.sizeof('luaasio_event') then
  error('asio: luaasio_event size differs between the library and asio.lua', 2)
end

local EAGAIN, ECLOSED = C.LUAASIO_EAGAIN, C.LUAASIO_ECLOSED
local ETIMEDOUT = C.LUAASIO_ETIMEDOUT
local WAIT_READ, WAIT_WRITE = C.LUAASIO_WAIT_READ, C.LUAASIO_WAIT_WRITE

local errstr = {}
for code = C.LUAASIO_ECODE_MIN, 0 do
  errstr[code] = ffi_string(C.luaasio_strerror(code))
end
local function strerror(code) return errstr[code] or 'system error' end

---------------------------------------------------------------------------
-- Loop state
---------------------------------------------------------------------------

local loop_alive = true
local loop = C.luaasio_loop_new()
if loop == nil then error('asio: cannot create the event loop', 2) end
ffi_gc(loop, function(l)
  -- Finalizers run in no particular order when the state closes; the
  -- connection finalizers check this flag before touching the loop.
  loop_alive = false
  C.luaasio_loop_free(l)
end)

local MAX_EVENTS = 256
local events = ffi.new('luaasio_event[?]', MAX_EVENTS)
local BUFSIZE = 65536
local rbuf = ffi.new('char[?]', BUFSIZE)
local ADDRSIZE = 256
local abuf = ffi.new('char[?]', ADDRSIZE)
local iport = ffi.new('int[1]')
local sabuf = ffi.new('char[?]', 128)
local ref_t = ffi.typeof('int32_t[1]')

-- Light threads live in arrays indexed by a slot number rather than in one
-- table each: a parked connection then costs its coroutine and a few array
-- entries, which matters with thousands of idle connections on a router.
local current = nil            -- slot of the running light thread
local th_co = {}               -- slot -> coroutine
local th_seq = {}              -- slot -> 8-bit wait counter
local th_tok = {}              -- slot -> token waited for, -1 when running
local th_io = {}               -- slot -> parked on an operation in C
local th_dl = {}               -- slot -> deadline (timer heap key)
local th_hidx = {}             -- slot -> position in the timer heap
local th_cv, th_cvi = {}, {}   -- slot -> condition waited on, queue position
local slot_of = {}             -- coroutine -> slot, while the thread lives
local joiners_of = {}          -- coroutine -> slots waiting in join()
local done_of = setmetatable({}, { __mode = 'k' })   -- finished with results
local failed_of = setmetatable({}, { __mode = 'k' }) -- raised: {the error}
local free_slots, nfree = {}, 0
local nslots = 0
local SLOT_BITS = 0x3fffff     -- 22 bits of index, 8 bits of sequence
local SLOT_SEQ = 0x400000
local SERVER_BIT = 0x40000000
local servers = {}             -- token -> server record
local server_seq = 0
local nservers = 0
local nio = 0                  -- threads parked on an operation in C
local nthreads = 0
local ready_t, ready_r, ready_head, ready_tail = {}, {}, 1, 0
local heap, nheap = {}, 0      -- timer min-heap of slots
local running, stopped = false, false

local function report_default(err, trace)
  io.stderr:write('asio: error in light thread: ', tostring(trace or err), '\n')
end
local reporter = report_default

local function report(err, trace)
  local ok, e = pcall(reporter, err, trace)
  if not ok then report_default(err, trace .. '\n(error handler failed: ' .. tostring(e) .. ')') end
end

---------------------------------------------------------------------------
-- Argument checks
---------------------------------------------------------------------------

-- `level` counts from the caller of argerr, as error() does: the default 3
-- blames the caller of the API function that called argerr directly.
local function argerr(n, fname, expected, got, level)
  error(("bad argument #%d to '%s' (%s expected, got %s)"):format(n, fname, expected, type(got)),
    level or 3)
end

local function selferr(fname, expected, got)
  error(("calling '%s' on bad self (%s expected, got %s)"):format(fname, expected, type(got)), 3)
end

local function outside(fname)
  error(("'%s' must be called from a light thread (see asio.spawn_light_thread)"):format(fname), 3)
end

local function is_count(n)
  return type(n) == 'number' and n >= 0 and n < huge and n % 1 == 0
end

local function check_port(n, fname, v, allow_zero)
  local p = v
  if type(v) == 'string' then p = tonumber(v) end
  if type(p) ~= 'number' or p % 1 ~= 0 or p > 65535 or p < (allow_zero and 0 or 1) then
    if type(v) == 'number' or (type(v) == 'string' and p) then
      error(("bad argument #%d to '%s' (port out of range: %s)"):format(n, fname, tostring(v)), 3)
    end
    argerr(n, fname, 'port number', v, 4)
  end
  return p
end

local function check_timeout(n, fname, v)
  if v == nil then return nil end
  if type(v) ~= 'number' or v ~= v then argerr(n, fname, 'number or nil', v, 4) end
  if v < 0 then return nil end
  return v
end

---------------------------------------------------------------------------
-- Timer heap (slots ordered by deadline)
---------------------------------------------------------------------------

local function heap_up(i)
  local s = heap[i]
  local d = th_dl[s]
  while i > 1 do
    local p = floor(i / 2)
    local ps = heap[p]
    if th_dl[ps] <= d then break end
    heap[i] = ps; th_hidx[ps] = i
    i = p
  end
  heap[i] = s; th_hidx[s] = i
end

local function heap_down(i)
  local s = heap[i]
  local d = th_dl[s]
  while true do
    local c = i * 2
    if c > nheap then break end
    if c < nheap and th_dl[heap[c + 1]] < th_dl[heap[c]] then c = c + 1 end
    local cs = heap[c]
    if th_dl[cs] >= d then break end
    heap[i] = cs; th_hidx[cs] = i
    i = c
  end
  heap[i] = s; th_hidx[s] = i
end

local function heap_push(s, deadline)
  th_dl[s] = deadline
  nheap = nheap + 1
  heap[nheap] = s
  heap_up(nheap)
end

local function heap_remove(s)
  local i = th_hidx[s]
  th_hidx[s] = false
  local last = heap[nheap]
  heap[nheap] = nil
  nheap = nheap - 1
  if i <= nheap then
    heap[i] = last; th_hidx[last] = i
    heap_down(i)
    heap_up(th_hidx[last])
  end
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
-- event from an abandoned operation can never wake a later wait.
local function next_token(s)
  local seq = band(th_seq[s] + 1, 0xff)
  th_seq[s] = seq
  return s + seq * SLOT_SEQ
end

-- Raises if the running coroutine is not the light thread `s` (a plain
-- coroutine inside a light thread). Every blocking call checks this before it
-- changes any state, so a misused call leaves the connection as it was.
local function must_park(s)
  if co_running() ~= th_co[s] then
    error('asio: blocking call from a coroutine that is not a light thread', 3)
  end
end

-- What a parked light thread yields: resume() can then tell "parked" from
-- "finished" without asking coroutine.status.
local PARKED = {}

-- Records that `s` waits for `token` (and the deadline); the caller has run
-- must_park(s) and yields next. Separate from park() so that the hottest
-- waits can yield from the API function itself: a parked coroutine whose
-- frames use more than about twenty stack slots has its stack doubled,
-- which would double the memory of an idle connection.
local function arm(s, token, deadline, io)
  th_tok[s] = token
  if io then th_io[s] = true; nio = nio + 1 end
  if deadline then heap_push(s, deadline) end
end

local function park(s, token, deadline, io)
  arm(s, token, deadline, io)
  return co_yield(PARKED)
end

local function unpark(s)
  th_tok[s] = -1
  if th_hidx[s] then heap_remove(s) end
  if th_io[s] then th_io[s] = false; nio = nio - 1 end
end

local resume

local function wake_later(s, r)
  if th_tok[s] < 0 then return end
  unpark(s)
  ready_tail = ready_tail + 1
  ready_t[ready_tail] = s
  ready_r[ready_tail] = r
end

local function finish(s, ok, ...)
  local co = th_co[s]
  slot_of[co] = nil
  th_co[s], th_cv[s], th_cvi[s] = false, false, false
  nfree = nfree + 1
  free_slots[nfree] = s
  nthreads = nthreads - 1
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
    for i = 1, #joiners do wake_later(joiners[i], 0) end
  end
end

local function after_resume(s, prev, ok, ...)
  current = prev
  if ok then
    if ... ~= PARKED and co_status(th_co[s]) == 'dead' then finish(s, true, ...) end
  else
    local err = ...
    report(err, debug.traceback(th_co[s], tostring(err)))
    finish(s, false, err)
  end
end

resume = function(s, ...)
  local prev = current
  current = s
  return after_resume(s, prev, co_resume(th_co[s], ...))
end

local function spawn_light_thread(fn, ...)
  if type(fn) ~= 'function' then
    local mt = getmetatable(fn)
    if not (mt and mt.__call) then argerr(1, 'spawn_light_thread', 'function', fn) end
    local callable = fn
    fn = function(...) return callable(...) end
  end
  local co = co_create(fn)
  local s = alloc_slot()
  th_co[s], th_seq[s], th_tok[s], th_io[s], th_hidx[s] = co, 0, -1, false, false
  slot_of[co] = s
  nthreads = nthreads + 1
  resume(s, ...)
  return co
end

local function sleep(sec)
  local s = current
  if type(sec) ~= 'number' or sec ~= sec then argerr(1, 'sleep', 'number', sec) end
  if not s then outside('sleep') end
  must_park(s)
  if sec < 0 then sec = 0 end
  park(s, next_token(s), C.luaasio_now() + sec, false)
end

local function join(th)
  local s = current
  if type(th) ~= 'thread' then argerr(1, 'join', 'light thread', th) end
  if not s then outside('join') end
  if th == th_co[s] then error("bad argument #1 to 'join' (a light thread cannot join itself)", 2) end
  if slot_of[th] then
    must_park(s)
    local j = joiners_of[th]
    if not j then j = {}; joiners_of[th] = j end
    j[#j + 1] = s
    park(s, next_token(s), nil, false)
  end
  local failed = failed_of[th]
  if failed then return nil, failed[1] end
  local r = done_of[th]
  if r then return unpack(r, 1, r.n) end
end

---------------------------------------------------------------------------
-- Condition objects
---------------------------------------------------------------------------

local Cond = {}
Cond.__index = Cond

local function cond()
  return setmetatable({ wt = {}, head = 1, tail = 0 }, Cond)
end

function Cond:wait(timeout)
  local s = current
  if getmetatable(self) ~= Cond then selferr('wait', 'condition', self) end
  timeout = check_timeout(1, 'wait', timeout)
  if not s then outside('wait') end
  must_park(s)
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
-- Connections
---------------------------------------------------------------------------

-- A connection is a small cdata struct, not a table, for its memory cost.
-- Bytes received but not yet returned (after a timeout, or past a line's
-- delimiter) are the only Lua-valued state; they live in pend_of, keyed by
-- the handle, and `pend` says whether there are any.
if not pcall(ffi.typeof, 'struct luaasio_lua_conn') then
  ffi.cdef [[
struct luaasio_lua_conn {
  int32_t h;        /* handle; 0 once closed */
  int32_t reader;   /* slot of the light thread reading, 0 if none */
  int32_t writer;   /* slot of the light thread writing, 0 if none */
  uint8_t pend;     /* bytes are buffered in pend_of[h] */
  uint8_t drained;  /* the last read came back short */
  double rto, wto, cto; /* timeouts in seconds, < 0 for none */
};
]]
end

local Conn = {}
local pend_of = {}
local istype = ffi.istype

local function conn_gc(c)
  local h = c.h
  if h ~= 0 and loop_alive then
    c.h = 0
    pend_of[h] = nil
    C.luaasio_close(loop, h)
  end
end

local conn_t = ffi.metatype('struct luaasio_lua_conn', {
  __index = Conn,
  __gc = conn_gc,
  __tostring = function(c)
    return c.h ~= 0 and ('asio connection #' .. c.h) or 'asio connection (closed)'
  end,
})

local function new_conn(h)
  return conn_t(h, 0, 0, 0, 0, -1, -1, -1)
end

local function check_conn(self, fname)
  if not istype(conn_t, self) then
    error(("calling '%s' on bad self (connection expected, got %s)"):format(fname, type(self)), 3)
  end
end

local function take_pend(c)
  local p = pend_of[c.h]
  pend_of[c.h] = nil
  c.pend = 0
  return p
end

local function keep_pend(c, data)
  pend_of[c.h] = data
  c.pend = 1
end

-- Parks `s` until the connection is ready in direction `dir`, the deadline
-- passes (ETIMEDOUT) or the connection is closed (ECLOSED).
local function wait_io(c, s, dir, deadline)
  local token = next_token(s)
  local rc = C.luaasio_conn_wait(loop, c.h, dir, token)
  if rc < 0 then return rc end
  local r = park(s, token, deadline, true)
  if r == ETIMEDOUT and c.h ~= 0 then C.luaasio_conn_unwait(loop, c.h, dir) end
  return r
end

local function deadline_of(timeout)
  return timeout >= 0 and C.luaasio_now() + timeout or nil
end

local function read_fail(c, code, parts)
  local partial = parts and concat(parts) or ''
  -- After a timeout the bytes stay buffered for the next read as well.
  if code == ETIMEDOUT and partial ~= '' then keep_pend(c, partial) end
  return nil, strerror(code), partial
end

-- One non-blocking read of up to `want` bytes into the shared buffer. Where
-- arming a wait costs a system call anyway, a short read means the socket
-- is most likely empty now, so the next read goes straight to waiting
-- instead of spending another one on "would block". On epoll a wait armed
-- right after "would block" is free, so there every wait follows a read.
local SKIP_AFTER_SHORT_READ = C.luaasio_read_first() == 0

local function recv(c, want)
  local r = C.luaasio_conn_read(loop, c.h, rbuf, want)
  c.drained = (SKIP_AFTER_SHORT_READ and r > 0 and r < want) and 1 or 0
  return r
end

local function read_slow(c, s, n, parts, have)
  local deadline = false
  must_park(s)
  c.reader = s
  while have < n do
    local want = n - have
    if want > BUFSIZE then want = BUFSIZE end
    local r = EAGAIN
    if c.drained == 0 then r = recv(c, want) end
    if r > 0 then
      parts[#parts + 1] = ffi_string(rbuf, r)
      have = have + r
    elseif r == EAGAIN then
      c.drained = 0
      if deadline == false then deadline = deadline_of(c.rto) end
      r = wait_io(c, s, WAIT_READ, deadline)
      if r ~= 0 then c.reader = 0; return read_fail(c, r, parts) end
    else
      c.reader = 0
      return read_fail(c, r, parts)
    end
    if c.h == 0 then c.reader = 0; return read_fail(c, ECLOSED, parts) end
  end
  c.reader = 0
  return concat(parts)
end

function Conn:read(n)
  local s = current
  if not istype(conn_t, self) then check_conn(self, 'read') end
  if not is_count(n) then argerr(1, 'read', 'non-negative integer', n) end
  if not s then outside('read') end
  local h = self.h
  if h == 0 then return nil, 'closed', '' end
  if self.reader ~= 0 then return nil, 'busy', '' end
  if n == 0 then return '' end
  if self.pend ~= 0 then
    local pend = take_pend(self)
    local pl = #pend
    if pl >= n then
      if pl > n then keep_pend(self, sub(pend, n + 1)) end
      return pl == n and pend or sub(pend, 1, n)
    end
    return read_slow(self, s, n, { pend }, pl)
  end
  if self.drained ~= 0 then return read_slow(self, s, n, {}, 0) end
  local want = n < BUFSIZE and n or BUFSIZE
  local r = recv(self, want)
  if r == n then return ffi_string(rbuf, r) end
  if r > 0 then return read_slow(self, s, n, { ffi_string(rbuf, r) }, r) end
  if r == EAGAIN then return read_slow(self, s, n, {}, 0) end
  return nil, strerror(r), ''
end

function Conn:read_some()
  local s = current
  if not istype(conn_t, self) then check_conn(self, 'read_some') end
  if not s then outside('read_some') end
  local h = self.h
  if h == 0 then return nil, 'closed' end
  if self.reader ~= 0 then return nil, 'busy' end
  if self.pend ~= 0 then return take_pend(self) end
  local r
  if self.drained == 0 then
    r = recv(self, BUFSIZE)
    if r > 0 then return ffi_string(rbuf, r) end
    if r ~= EAGAIN then return '', strerror(r) end
  end
  must_park(s)
  local deadline = deadline_of(self.rto)
  self.reader = s
  repeat
    -- wait_io() written out, so that an idle reader parks two frames deep
    local token = next_token(s)
    r = C.luaasio_conn_wait(loop, self.h, WAIT_READ, token)
    if r == 0 then
      arm(s, token, deadline, true)
      r = co_yield(PARKED)
      if r == ETIMEDOUT and self.h ~= 0 then C.luaasio_conn_unwait(loop, self.h, WAIT_READ) end
    end
    if r == 0 then
      if self.h == 0 then r = ECLOSED; break end
      r = recv(self, BUFSIZE)
    end
  until r ~= EAGAIN
  self.reader = 0
  if r > 0 then return ffi_string(rbuf, r) end
  return '', strerror(r)
end

-- `cr`: a '\r' just before the delimiter is not counted against `max`
-- (read_line strips it).
local function read_until(self, s, delim, max, inclusive, cr)
  if self.h == 0 then return nil, 'closed', '' end
  if self.reader ~= 0 then return nil, 'busy', '' end
  local buf = self.pend ~= 0 and take_pend(self) or ''
  local dl = #delim
  local init = 1
  local deadline = false
  while true do
    local i, j = find(buf, delim, init, true)
    local len = i and i - 1
    if cr and len and len > 0 and byte(buf, len) == 13 then len = len - 1 end
    if i and (not max or len <= max) then
      if j < #buf then keep_pend(self, sub(buf, j + 1)) end
      self.reader = 0
      return inclusive and sub(buf, 1, j) or sub(buf, 1, i - 1)
    end
    if max and (i or #buf >= max + dl + (cr and 1 or 0)) then
      -- The line would exceed `max`: keep everything for later reads.
      if buf ~= '' then keep_pend(self, buf) end
      self.reader = 0
      return nil, 'line too long', ''
    end
    init = #buf - dl + 2
    if init < 1 then init = 1 end
    local r = EAGAIN
    if self.drained == 0 then r = recv(self, BUFSIZE) end
    if r > 0 then
      buf = buf .. ffi_string(rbuf, r)
    elseif r == EAGAIN then
      self.drained = 0
      if deadline == false then deadline = deadline_of(self.rto) end
      must_park(s)
      self.reader = s
      r = wait_io(self, s, WAIT_READ, deadline)
      if r ~= 0 or self.h == 0 then
        self.reader = 0
        return read_fail(self, r ~= 0 and r or ECLOSED, { buf })
      end
    else
      self.reader = 0
      return read_fail(self, r, { buf })
    end
  end
end

function Conn:read_until(delim, max, opts)
  local s = current
  if not istype(conn_t, self) then check_conn(self, 'read_until') end
  if type(delim) ~= 'string' or delim == '' then argerr(1, 'read_until', 'non-empty string', delim) end
  if type(max) == 'table' and opts == nil then max, opts = nil, max end
  if max ~= nil and not (is_count(max) and max > 0) then argerr(2, 'read_until', 'positive integer or nil', max) end
  if opts ~= nil and type(opts) ~= 'table' then argerr(3, 'read_until', 'table or nil', opts) end
  if not s then outside('read_until') end
  return read_until(self, s, delim, max, opts and opts.inclusive, false)
end

function Conn:read_line(max)
  local s = current
  if not istype(conn_t, self) then check_conn(self, 'read_line') end
  if max ~= nil and not (is_count(max) and max > 0) then argerr(1, 'read_line', 'positive integer or nil', max) end
  if not s then outside('read_line') end
  local line, err, partial = read_until(self, s, '\n', max, false, true)
  if not line then return nil, err, partial end
  if sub(line, -1) == '\r' then line = sub(line, 1, -2) end
  return line
end

local function write_slow(c, s, data, off, len)
  must_park(s)
  local deadline = deadline_of(c.wto)
  c.writer = s
  while off < len do
    local r = wait_io(c, s, WAIT_WRITE, deadline)
    if r == 0 then
      if c.h == 0 then r = ECLOSED else r = C.luaasio_conn_write(loop, c.h, data, off, len - off) end
    end
    if r > 0 then
      off = off + r
    elseif r ~= EAGAIN then
      c.writer = 0
      return nil, strerror(r), off
    end
  end
  c.writer = 0
  return true
end

function Conn:write(data)
  local s = current
  if not istype(conn_t, self) then check_conn(self, 'write') end
  if type(data) ~= 'string' then
    if type(data) ~= 'number' then argerr(1, 'write', 'string', data) end
    data = tostring(data)
  end
  if not s then outside('write') end
  local h = self.h
  if h == 0 then return nil, 'closed', 0 end
  if self.writer ~= 0 then return nil, 'busy', 0 end
  local len = #data
  if len == 0 then return true end
  local r = C.luaasio_conn_write(loop, h, data, 0, len)
  if r == len then return true end
  if r == EAGAIN then r = 0 elseif r < 0 then return nil, strerror(r), 0 end
  return write_slow(self, s, data, r, len)
end

function Conn:close()
  check_conn(self, 'close')
  local h = self.h
  if h == 0 then return true end
  self.h = 0
  pend_of[h] = nil
  self.pend = 0
  C.luaasio_close(loop, h)
  if self.reader ~= 0 then wake_later(self.reader, ECLOSED) end
  if self.writer ~= 0 then wake_later(self.writer, ECLOSED) end
  return true
end

function Conn:shutdown()
  check_conn(self, 'shutdown')
  if self.h == 0 then return nil, 'closed' end
  local r = C.luaasio_conn_shutdown(loop, self.h, C.LUAASIO_SHUT_WR)
  if r < 0 then return nil, strerror(r) end
  return true
end

function Conn:settimeout(sec)
  check_conn(self, 'settimeout')
  sec = check_timeout(1, 'settimeout', sec) or -1
  self.cto, self.rto, self.wto = sec, sec, sec
  return true
end

function Conn:settimeouts(connect, read, write)
  check_conn(self, 'settimeouts')
  self.cto = check_timeout(1, 'settimeouts', connect) or -1
  self.rto = check_timeout(2, 'settimeouts', read) or -1
  self.wto = check_timeout(3, 'settimeouts', write) or -1
  return true
end

local function address(c, which)
  if c.h == 0 then return nil, 'closed' end
  local r = C.luaasio_conn_address(loop, c.h, which, abuf, ADDRSIZE, iport)
  if r < 0 then return nil, strerror(r) end
  return ffi_string(abuf, r), iport[0]
end

function Conn:local_address()
  check_conn(self, 'local_address')
  return address(self, 0)
end

function Conn:remote_address()
  check_conn(self, 'remote_address')
  return address(self, 1)
end

local options = {
  nodelay = { C.LUAASIO_OPT_NODELAY, 'boolean' },
  keepalive = { C.LUAASIO_OPT_KEEPALIVE, 'boolean' },
  sndbuf = { C.LUAASIO_OPT_SNDBUF, 'size' },
  rcvbuf = { C.LUAASIO_OPT_RCVBUF, 'size' },
  linger = { C.LUAASIO_OPT_LINGER, 'linger' },
}

function Conn:setoption(name, value)
  check_conn(self, 'setoption')
  if type(name) ~= 'string' then argerr(1, 'setoption', 'string', name) end
  local o = options[name]
  if not o then error(("bad argument #1 to 'setoption' (unknown option '%s')"):format(name), 2) end
  local v
  if o[2] == 'boolean' then
    if type(value) ~= 'boolean' then argerr(2, 'setoption', 'boolean', value) end
    v = value and 1 or 0
  elseif o[2] == 'size' then
    if not (is_count(value) and value > 0 and value < 2 ^ 31) then argerr(2, 'setoption', 'positive integer', value) end
    v = value
  else
    if value == false or value == nil then v = -1
    elseif is_count(value) and value < 2 ^ 31 then v = value
    else argerr(2, 'setoption', 'non-negative integer or false', value) end
  end
  if self.h == 0 then return nil, 'closed' end
  local r = C.luaasio_conn_setoption(loop, self.h, o[1], v)
  if r < 0 then return nil, strerror(r) end
  return true
end

function Conn:get_original_dst()
  check_conn(self, 'get_original_dst')
  if self.h == 0 then return nil, 'closed' end
  local r = C.luaasio_conn_original_dst(loop, self.h, sabuf)
  if r < 0 then return nil, strerror(r) end
  return ffi_string(sabuf, r)
end

---------------------------------------------------------------------------
-- Name resolution and connecting
---------------------------------------------------------------------------

local function split_list(s)
  local list, i = {}, 1
  while i <= #s do
    local j = find(s, '\0', i, true) or #s + 1
    list[#list + 1] = sub(s, i, j - 1)
    i = j + 1
  end
  return list
end

-- Parks `s` until the operation that created handle `h` (started with
-- `token`; a negative `h` is the error of starting it) reports. On failure
-- the handle is closed. Returns `h`, or nil and the error code.
local function await(s, token, h, deadline)
  if h < 0 then return nil, h end
  local r = park(s, token, deadline, true)
  if r < 0 then
    C.luaasio_close(loop, h)
    return nil, r
  end
  return h
end

local function resolve_in(s, host, family, deadline)
  must_park(s)
  local token = next_token(s)
  local h, err = await(s, token, C.luaasio_resolve(loop, token, host, family), deadline)
  if not h then return nil, strerror(err) end
  local n = C.luaasio_resolve_results(loop, h, rbuf, BUFSIZE)
  C.luaasio_close(loop, h)
  if n < 0 then return nil, strerror(n) end
  return split_list(ffi_string(rbuf, n))
end

local families = { inet = C.LUAASIO_FAMILY_INET, inet6 = C.LUAASIO_FAMILY_INET6 }

local function resolve(host, opts)
  local t = current
  if type(host) ~= 'string' then argerr(1, 'resolve', 'string', host) end
  if opts ~= nil and type(opts) ~= 'table' then argerr(2, 'resolve', 'table or nil', opts) end
  local family = C.LUAASIO_FAMILY_ANY
  if opts and opts.family ~= nil then
    family = families[opts.family]
    if not family then
      error("bad argument #2 to 'resolve' (family must be 'inet' or 'inet6')", 2)
    end
  end
  local timeout = check_timeout(2, 'resolve', opts and opts.timeout) or -1
  if not t then outside('resolve') end
  return resolve_in(t, host, family, deadline_of(timeout))
end

-- connect_ip and connect_unix return a connection, or nil and an error code.
local function connect_ip(s, ip, port, deadline)
  must_park(s)
  local token = next_token(s)
  local h, err = await(s, token, C.luaasio_connect(loop, token, ip, port), deadline)
  if not h then return nil, err end
  return new_conn(h)
end

local function connect_list(t, list, port, deadline)
  local last = C.LUAASIO_ENOTRESOLVED
  for i = 1, #list do
    local c, err = connect_ip(t, list[i], port, deadline)
    if c then return c end
    last = err
    if err == ETIMEDOUT then break end
  end
  return nil, strerror(last)
end

local function connect_unix(s, path, deadline)
  must_park(s)
  local token = next_token(s)
  local h, err = await(s, token, C.luaasio_connect_unix(loop, token, path), deadline)
  if not h then return nil, err end
  return new_conn(h)
end

local function connect(host, port, opts)
  local t = current
  if type(host) ~= 'string' then argerr(1, 'connect', 'string', host) end
  local prefer6, timeout = false, -1
  -- The address forms that take no port may take the options second.
  local shifted = false
  if type(port) == 'table' and opts == nil and
      (sub(host, 1, 5) == 'unix:' or #host == 16 or #host == 28 or #host == 128) then
    port, opts, shifted = nil, port, true
  end
  if port == nil then
    if opts ~= nil and not shifted then argerr(2, 'connect', 'port', port) end
  else
    port = check_port(2, 'connect', port, false)
  end
  if opts ~= nil then
    if type(opts) == 'boolean' then
      prefer6 = opts
    elseif type(opts) == 'table' then
      prefer6 = opts.ipv6 and true or false
      timeout = check_timeout(3, 'connect', opts.timeout) or -1
    else
      argerr(3, 'connect', 'table, boolean or nil', opts)
    end
  end
  if not t then outside('connect') end
  local deadline = deadline_of(timeout)
  local c, err
  if port == nil then
    if sub(host, 1, 5) == 'unix:' then
      c, err = connect_unix(t, sub(host, 6), deadline)
    else
      local fam = C.luaasio_sockaddr_parse(host, #host, abuf, ADDRSIZE, iport)
      if fam < 0 then return nil, strerror(fam) end
      c, err = connect_ip(t, ffi_string(abuf), iport[0], deadline)
    end
  else
    c, err = connect_ip(t, host, port, deadline)
    if not c and err == C.LUAASIO_EBADADDR then
      -- Not an IP literal: resolve it without blocking the loop.
      local list, rerr = resolve_in(t, host, C.LUAASIO_FAMILY_ANY, deadline)
      if not list then return nil, rerr end
      local ordered = {}
      for pass = 1, 2 do
        for i = 1, #list do
          local v6 = find(list[i], ':', 1, true) ~= nil
          if (v6 == prefer6) == (pass == 1) then ordered[#ordered + 1] = list[i] end
        end
      end
      return connect_list(t, ordered, port, deadline)
    end
  end
  if not c then return nil, strerror(err) end
  return c
end

local function addr_to_string(sa)
  if type(sa) ~= 'string' then argerr(1, 'addr_to_string', 'string', sa) end
  local fam = C.luaasio_sockaddr_parse(sa, #sa, abuf, ADDRSIZE, iport)
  if fam < 0 then return nil, strerror(fam) end
  local ip = ffi_string(abuf)
  if fam == 6 then return '[' .. ip .. ']:' .. iport[0] end
  return ip .. ':' .. iport[0]
end

---------------------------------------------------------------------------
-- Servers
---------------------------------------------------------------------------

local Server = {}
Server.__index = Server

local function close_server(token)
  local rec = servers[token]
  if not rec then return end
  servers[token] = nil
  nservers = nservers - 1
  if loop_alive then C.luaasio_close(loop, rec.h) end
end

local function server_gc(ref)
  local token = ref[0]
  if token ~= 0 then
    ref[0] = 0
    close_server(token)
  end
end

local handler_error
local function traceback(err)
  handler_error = err
  return debug.traceback(tostring(err), 2)
end

local function on_accept(rec, h)
  local c = new_conn(h)
  local ok, trace = xpcall(rec.handler, traceback, c)
  if not ok then report(handler_error, trace) end
end

local hosts = { localhost = '127.0.0.1', ['*'] = '0.0.0.0' }

local function server(ip, port, handler, opts)
  local unix = type(ip) == 'string' and sub(ip, 1, 5) == 'unix:'
  if unix then
    port, handler, opts = nil, port, handler
  else
    if type(ip) ~= 'string' then argerr(1, 'server', 'string', ip) end
    port = check_port(2, 'server', port, true)
  end
  local hn = unix and 2 or 3
  if type(handler) ~= 'function' then
    local mt = getmetatable(handler)
    if not (mt and mt.__call) then argerr(hn, 'server', 'function', handler) end
  end
  if opts ~= nil and type(opts) ~= 'table' then argerr(hn + 1, 'server', 'table or nil', opts) end
  local backlog, flags = 0, 0
  if opts then
    if opts.backlog ~= nil then
      if not (is_count(opts.backlog) and opts.backlog < 2 ^ 31) then
        error("bad argument #" .. (hn + 1) .. " to 'server' (backlog must be a non-negative integer)", 2)
      end
      backlog = opts.backlog
    end
    if opts.reuseport then flags = flags + C.LUAASIO_SERVER_REUSEPORT end
    if opts.ipv6_only then flags = flags + C.LUAASIO_SERVER_V6ONLY end
  end
  server_seq = server_seq % 0x20000000 + 1
  local token = SERVER_BIT + server_seq
  local h
  if unix then
    h = C.luaasio_server_open_unix(loop, token, sub(ip, 6), backlog)
  else
    h = C.luaasio_server_open(loop, token, hosts[ip] or ip, port, backlog, flags)
  end
  if h < 0 then return nil, strerror(h) end
  local rec = { h = h, handler = handler, token = token }
  servers[token] = rec
  nservers = nservers + 1
  local ref = ref_t(token)
  ffi_gc(ref, server_gc)
  return setmetatable({ ref = ref, rec = rec }, Server)
end

function Server:close()
  if getmetatable(self) ~= Server then selferr('close', 'server', self) end
  local token = self.ref[0]
  if token ~= 0 then
    self.ref[0] = 0
    close_server(token)
  end
  return true
end

function Server:port()
  if getmetatable(self) ~= Server then selferr('port', 'server', self) end
  if self.ref[0] == 0 then return nil, 'closed' end
  local p = C.luaasio_server_port(loop, self.rec.h)
  if p < 0 then return nil, strerror(p) end
  return p
end

Server.__tostring = function(s)
  return s.ref[0] ~= 0 and ('asio server on port ' .. tostring(s:port())) or 'asio server (closed)'
end

---------------------------------------------------------------------------
-- The scheduler
---------------------------------------------------------------------------

local function dispatch(n)
  for i = 0, n - 1 do
    local ev = events[i]
    local token, r = ev.slot, ev.result
    if token >= SERVER_BIT then
      local rec = servers[token]
      if rec then
        on_accept(rec, r)
      elseif r > 0 then
        C.luaasio_close(loop, r)   -- accepted after the server was closed
      end
    else
      local s = band(token, SLOT_BITS)
      if th_tok[s] == token then
        unpark(s)
        resume(s, r)
      end
    end
  end
end

local function run_ready()
  while ready_head <= ready_tail do
    local i = ready_head
    local s, r = ready_t[i], ready_r[i]
    ready_t[i], ready_r[i] = nil, nil
    ready_head = i + 1
    resume(s, r)
  end
  ready_head, ready_tail = 1, 0
end

local function expire_timers()
  if nheap == 0 then return end
  local now = C.luaasio_now()
  while nheap > 0 and th_dl[heap[1]] <= now do
    local s = heap[1]
    unpark(s)
    resume(s, ETIMEDOUT)
  end
end

local function run()
  if current then error("'run' must not be called from a light thread", 2) end
  if running then error("'run' is already running", 2) end
  running, stopped = true, false
  local ok, err = pcall(function()
    while not stopped do
      run_ready()
      if stopped then break end
      if nio + nheap + nservers == 0 and ready_head > ready_tail then break end
      local timeout = -1
      if ready_head <= ready_tail then
        timeout = 0
      elseif nheap > 0 then
        timeout = th_dl[heap[1]] - C.luaasio_now()
        if timeout < 0 then timeout = 0 end
      end
      local n = C.luaasio_poll(loop, events, MAX_EVENTS, timeout)
      if n > 0 then
        dispatch(n)
      elseif n < 0 then
        report(strerror(n), 'asio: poll failed: ' .. strerror(n))
      end
      expire_timers()
    end
  end)
  running = false
  if not ok then error(err, 0) end
end

local function stop()
  stopped = true
end

local function on_error(fn)
  if fn ~= nil and type(fn) ~= 'function' then argerr(1, 'on_error', 'function or nil', fn) end
  reporter = fn or report_default
end

local function stats()
  return {
    objects = C.luaasio_loop_count(loop),
    threads = nthreads,
    waiting_io = nio,
    timers = nheap,
    servers = nservers,
  }
end

return {
  spawn_light_thread = spawn_light_thread,
  run = run,
  stop = stop,
  sleep = sleep,
  now = function() return C.luaasio_now() end,
  join = join,
  cond = cond,
  on_error = on_error,
  server = server,
  connect = connect,
  resolve = resolve,
  addr_to_string = addr_to_string,
  stats = stats,
  _VERSION = 'LuaAsio 0.1.0',
}
