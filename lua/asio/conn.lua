-- Connections: reads, writes, options and addresses of a TCP or Unix
-- stream socket. Every blocking call first tries the operation without
-- waiting (one FFI call); only if the kernel has nothing for it does the
-- light thread arm a readiness wait in C and park.

local ffi = require 'ffi'
local lib = require 'asio.lib'
local S = require 'asio.state'
local sched = require 'asio.sched'
local check = require 'asio.check'

local C, strerror = lib.C, lib.strerror
local co_yield, co_running = coroutine.yield, coroutine.running
local ffi_string = ffi.string
local sub, find, byte, concat = string.sub, string.find, string.byte, table.concat
local type, tostring, error = type, tostring, error
local argerr, outside, is_count, check_timeout =
  check.argerr, check.outside, check.is_count, check.check_timeout
local must_park, arm, park, next_token, wake_later =
  sched.must_park, sched.arm, sched.park, sched.next_token, sched.wake_later
local yield_turn = sched.yield_turn
local th_obj, th_cv, th_cvi, th_tok, th_co = S.th_obj, S.th_cv, S.th_cvi, S.th_tok, S.th_co
local PARKED = sched.PARKED

local EAGAIN, ECLOSED = C.LUAASIO_EAGAIN, C.LUAASIO_ECLOSED
local ETIMEDOUT = C.LUAASIO_ETIMEDOUT
local WAIT_READ, WAIT_WRITE = C.LUAASIO_WAIT_READ, C.LUAASIO_WAIT_WRITE
local loop, rbuf, BUFSIZE = S.loop, S.rbuf, S.BUFSIZE
local abuf, ADDRSIZE, iport, sabuf = S.abuf, S.ADDRSIZE, S.iport, S.sabuf

-- A connection is a small cdata struct, not a table, for its memory cost.
-- Bytes received but not yet returned (after a timeout, or past a line's
-- delimiter) are the only Lua-valued state. They live in pend_of, keyed by
-- the handle, as one string of which only the part from offset `pend` on
-- is unread: returning a line or a read(n) from it moves the offset instead
-- of copying the rest. An idle connection has none of this.
if not pcall(ffi.typeof, 'struct luaasio_lua_conn') then
  ffi.cdef [[
struct luaasio_lua_conn {
  int32_t h;        /* handle; 0 once closed */
  int32_t reader;   /* slot of the light thread reading, 0 if none */
  int32_t writer;   /* slot of the light thread writing, 0 if none */
  int32_t pend;     /* 0, or where the unread bytes start in pend_of[h] */
  uint8_t drained;  /* the last read came back short */
  uint8_t tls;      /* 1: reads and writes go through TLS (asio.tls) */
  double rto, wto;  /* timeouts in seconds, < 0 for none */
};
]]
end

local Conn = {}
local pend_of = {}
local istype = ffi.istype

local function conn_gc(c)
  local h = c.h
  if h ~= 0 and S.loop_alive then
    c.h = 0
    pend_of[h] = nil
    if c.tls ~= 0 then S.tls_drop(h, false) end
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

-- A handle that carries a TLS session (one taken from a pool) keeps it.
local function new_conn(h)
  local tls_of = S.tls_of
  return conn_t(h, 0, 0, 0, 0, tls_of and tls_of[h] and 1 or 0, -1, -1)
end

local function check_conn(self, fname)
  if not istype(conn_t, self) then
    error(("calling '%s' on bad self (connection expected, got %s)"):format(fname, type(self)), 3)
  end
end

-- Removes and returns the unread buffered bytes.
local function take_pend(c)
  local p, o = pend_of[c.h], c.pend
  pend_of[c.h] = nil
  c.pend = 0
  if o > 1 then p = sub(p, o) end
  return p
end

-- Buffers `data` as unread.
local function keep_pend(c, data)
  pend_of[c.h] = data
  c.pend = 1
end

-- Buffers `p` from offset `off` on as unread (nothing if `off` is past its
-- end). Once less than half of `p` would be unread, the unread part is
-- copied out: the memory held stays below twice the unread bytes, and the
-- copies add up to at most one per byte received.
local function keep_from(c, p, off)
  local pl = #p
  if off > pl then
    pend_of[c.h] = nil
    c.pend = 0
    return
  end
  if (pl - off + 1) * 2 < pl then p, off = sub(p, off), 1 end
  pend_of[c.h] = p
  c.pend = off
end

-- Parks `s` until the connection is ready in direction `dir`, the deadline
-- passes (ETIMEDOUT) or the connection is closed (ECLOSED).
local function wait_io(c, s, dir, deadline)
  local token = next_token(s)
  local rc = C.luaasio_conn_wait(loop, c.h, dir, token)
  if rc < 0 then return rc end
  th_obj[s] = c
  local r = park(s, token, deadline, true)
  th_obj[s] = false
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

-- One non-blocking read of up to `size` bytes into `p` (through TLS on a
-- TLS connection); recv reads into the shared buffer. After a short read
-- the socket is most likely empty, and the next read may go straight to
-- waiting instead of spending a system call on "would block": where
-- arming a wait costs a system call anyway, always; on epoll, when the
-- read found the socket empty and queued the wait itself (a TCP read that
-- the kernel said left nothing). Otherwise the next read reads first, and
-- a wait armed right after its "would block" costs nothing.
local SKIP_AFTER_SHORT_READ = C.luaasio_read_wait_cheap_after_eagain() == 0

local function recv_into(c, p, size)
  if c.tls ~= 0 then return S.tls_recv(c, size, p) end
  local h = c.h
  local r = C.luaasio_conn_read(loop, h, p, size)
  c.drained = (r > 0 and r < size and (SKIP_AFTER_SHORT_READ
    or C.luaasio_conn_read_wait_queued(loop, h) == 1)) and 1 or 0
  return r
end

local function recv(c, want)
  return recv_into(c, rbuf, want)
end

local function read_slow(c, s, n, parts, have)
  local deadline = false
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

-- Every blocking method checks, in this order: self, arguments, that it
-- runs in a light thread at all (outside), and that it runs in the light
-- thread's own coroutine (must_park). Only then does it look at the
-- buffered bytes or the socket, so a misused call changes nothing.

function Conn:read(n)
  local s = S.current
  if not istype(conn_t, self) then check_conn(self, 'read') end
  if not is_count(n) then argerr(1, 'read', 'non-negative integer', n) end
  if not s then outside('read') end
  if co_running() ~= th_co[s] then must_park(s, 'read') end
  local b = S.budget - 1   -- the cooperative budget (asio.sched)
  S.budget = b
  if b <= 0 then yield_turn(s) end
  local h = self.h
  if h == 0 then return nil, 'closed', '' end
  if self.reader ~= 0 then return nil, 'busy', '' end
  if n == 0 then return '' end
  local o = self.pend
  if o ~= 0 then
    local p = pend_of[h]
    local avail = #p - o + 1
    if avail > n then
      keep_from(self, p, o + n)
      return sub(p, o, o + n - 1)
    end
    pend_of[h] = nil
    self.pend = 0
    if o > 1 then p = sub(p, o) end
    if avail == n then return p end
    return read_slow(self, s, n, { p }, avail)
  end
  if self.drained ~= 0 then return read_slow(self, s, n, {}, 0) end
  local want = n < BUFSIZE and n or BUFSIZE
  local r = recv(self, want)
  if r == n then return ffi_string(rbuf, r) end
  if r > 0 then return read_slow(self, s, n, { ffi_string(rbuf, r) }, r) end
  if r == EAGAIN then return read_slow(self, s, n, {}, 0) end
  return nil, strerror(r), ''
end

-- Each blocking method compares the running coroutine itself and calls
-- must_park only to raise. coroutine.running is a C function, which needs
-- 20 free stack slots above the frame that calls it; called from
-- must_park, a third frame above write()'s, it doubled every connection's
-- coroutine stack (47 to 102 slots, 59 once the collector shrank it):
-- about 300 bytes per idle connection.
function Conn:read_some()
  local s = S.current
  if not istype(conn_t, self) then check_conn(self, 'read_some') end
  if not s then outside('read_some') end
  if co_running() ~= th_co[s] then must_park(s, 'read_some') end
  local b = S.budget - 1   -- the cooperative budget (asio.sched)
  S.budget = b
  if b <= 0 then yield_turn(s) end
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
  local deadline = deadline_of(self.rto)
  self.reader = s
  repeat
    -- wait_io() written out, so that an idle reader parks two frames deep
    local token = next_token(s)
    r = C.luaasio_conn_wait(loop, self.h, WAIT_READ, token)
    if r == 0 then
      arm(s, token, deadline, true)
      th_obj[s] = self
      r = co_yield(PARKED)
      th_obj[s] = false
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

-- read_some into a buffer the caller owns: no Lua string is made, so a
-- relay of read_some_into() and write(buf, n) copies nothing in user space.
-- Bytes buffered by earlier reads (a timeout, a line's tail) come first.
local charp = ffi.typeof('char *')
local ffi_cast, ffi_copy, ffi_typeof = ffi.cast, ffi.copy, ffi.typeof
local buf_ok = {}   -- ctype id -> whether it is a pointer or array type

-- `buf` as a char *, or nil if it is no pointer or array cdata.
local function as_charp(buf)
  if istype(charp, buf) then return buf end
  if type(buf) ~= 'cdata' then return nil end
  local ct = ffi_typeof(buf)
  local id = tonumber(ct)
  local ok = buf_ok[id]
  if ok == nil then
    ok = find(tostring(ct), '[%*%]]>$') ~= nil
    buf_ok[id] = ok
  end
  if ok then return ffi_cast(charp, buf) end
end

function Conn:read_some_into(buf, size)
  local s = S.current
  if not istype(conn_t, self) then check_conn(self, 'read_some_into') end
  local p = as_charp(buf)
  if not p then argerr(1, 'read_some_into', 'pointer or array cdata', buf) end
  if not (is_count(size) and size > 0 and size < 2 ^ 31) then argerr(2, 'read_some_into', 'positive integer', size) end
  if not s then outside('read_some_into') end
  if co_running() ~= th_co[s] then must_park(s, 'read_some_into') end
  local b = S.budget - 1   -- the cooperative budget (asio.sched)
  S.budget = b
  if b <= 0 then yield_turn(s) end
  local h = self.h
  if h == 0 then return nil, 'closed' end
  if self.reader ~= 0 then return nil, 'busy' end
  local o = self.pend
  if o ~= 0 then
    local data = pend_of[h]
    local n = #data - o + 1
    if n > size then n = size end
    ffi_copy(p, sub(data, o, o + n - 1), n)
    keep_from(self, data, o + n)
    return n
  end
  local r = EAGAIN
  if self.drained == 0 then
    r = recv_into(self, p, size)
    if r > 0 then return r end
    if r ~= EAGAIN then return nil, strerror(r) end
  end
  self.drained = 0
  local deadline = deadline_of(self.rto)
  self.reader = s
  while r == EAGAIN do
    r = wait_io(self, s, WAIT_READ, deadline)
    if r == 0 then
      if self.h == 0 then r = ECLOSED; break end
      r = recv_into(self, p, size)
    end
  end
  self.reader = 0
  if r > 0 then return r end
  return nil, strerror(r)
end

-- Reads up to `delim`. The bytes being searched are `chunk` from offset
-- `co` on: first the buffered bytes, then each receive. A chunk without the
-- delimiter goes to the list `parts` (`have` bytes), so a long line costs
-- one copy per byte, and each chunk is searched once: by itself, and
-- together with the last #delim - 1 bytes before it (`tail`) for a
-- delimiter split between two receives. What follows the delimiter stays
-- buffered with an offset, so each short line costs one copy of itself.
-- `max` limits the line's length; with `cr` (read_line) a '\r' before the
-- delimiter is neither counted nor returned.
local function read_until(self, s, delim, max, inclusive, cr)
  local h = self.h
  if h == 0 then return nil, 'closed', '' end
  if self.reader ~= 0 then return nil, 'busy', '' end
  local dl = #delim
  local chunk, co = nil, 1
  if self.pend ~= 0 then
    chunk, co = pend_of[h], self.pend
    pend_of[h] = nil
    self.pend = 0
  end
  local parts, have, tail, last = nil, 0, '', -1
  local deadline = false
  while true do
    if chunk then
      local cl = #chunk
      local i, j, len   -- delimiter in chunk (i < co: it starts in tail), line length
      if tail ~= '' then
        local a = find(tail .. sub(chunk, co, co + dl - 2), delim, 1, true)
        if a then
          i = co + a - 1 - #tail
          j = i + dl - 1
        end
      end
      if not i then i, j = find(chunk, delim, co, true) end
      local strip = false
      if i then
        len = have + i - co
        if cr and len > 0 and (i > co and byte(chunk, i - 1) or last) == 13 then
          strip = true
          len = len - 1
        end
      end
      if i and (not max or len <= max) then
        keep_from(self, chunk, j + 1)
        local e = inclusive and j or i - 1
        if strip then e = e - 1 end
        if not parts then return sub(chunk, co, e) end
        if e >= co then
          parts[#parts + 1] = sub(chunk, co, e)
          return concat(parts)
        end
        -- the line ends in the bytes before this chunk
        return sub(concat(parts), 1, have + e - co + 1)
      end
      if max and (i or have + cl - co + 1 >= max + dl + (cr and 1 or 0)) then
        -- The line would exceed `max`: keep everything for later reads.
        if parts then
          parts[#parts + 1] = sub(chunk, co)
          keep_pend(self, concat(parts))
        else
          keep_from(self, chunk, co)
        end
        return nil, 'line too long', ''
      end
      local piece = co == 1 and chunk or sub(chunk, co)
      if not parts then parts = {} end
      parts[#parts + 1] = piece
      have = have + #piece
      if dl > 1 then
        tail = #piece >= dl - 1 and sub(piece, 1 - dl) or sub(tail .. piece, 1 - dl)
      end
      last = byte(piece, -1)
      chunk = nil
    end
    local r = EAGAIN
    if self.drained == 0 then r = recv(self, BUFSIZE) end
    if r > 0 then
      chunk, co = ffi_string(rbuf, r), 1
    elseif r == EAGAIN then
      self.drained = 0
      if deadline == false then deadline = deadline_of(self.rto) end
      self.reader = s
      r = wait_io(self, s, WAIT_READ, deadline)
      self.reader = 0
      if r ~= 0 or self.h == 0 then return read_fail(self, r ~= 0 and r or ECLOSED, parts) end
    else
      return read_fail(self, r, parts)
    end
  end
end

function Conn:read_until(delim, max, opts)
  local s = S.current
  if not istype(conn_t, self) then check_conn(self, 'read_until') end
  if type(delim) ~= 'string' or delim == '' then argerr(1, 'read_until', 'non-empty string', delim) end
  if type(max) == 'table' and opts == nil then max, opts = nil, max end
  if max ~= nil and not (is_count(max) and max > 0) then argerr(2, 'read_until', 'positive integer or nil', max) end
  if opts ~= nil and type(opts) ~= 'table' then argerr(3, 'read_until', 'table or nil', opts) end
  if not s then outside('read_until') end
  if co_running() ~= th_co[s] then must_park(s, 'read_until') end
  local b = S.budget - 1   -- the cooperative budget (asio.sched)
  S.budget = b
  if b <= 0 then yield_turn(s) end
  return read_until(self, s, delim, max, opts and opts.inclusive, false)
end

function Conn:read_line(max)
  local s = S.current
  if not istype(conn_t, self) then check_conn(self, 'read_line') end
  if max ~= nil and not (is_count(max) and max > 0) then argerr(1, 'read_line', 'positive integer or nil', max) end
  if not s then outside('read_line') end
  if co_running() ~= th_co[s] then must_park(s, 'read_line') end
  local b = S.budget - 1   -- the cooperative budget (asio.sched)
  S.budget = b
  if b <= 0 then yield_turn(s) end
  return read_until(self, s, '\n', max, false, true)
end

-- One non-blocking write of data[off .. off+len): bytes taken, EAGAIN
-- (wait until writable, then pass the same bytes again) or an error.
local function send(c, data, off, len)
  if c.tls ~= 0 then return S.tls_send(c, data, off, len) end
  return C.luaasio_conn_write(loop, c.h, data, off, len)
end

-- Writers take turns. The light thread writing is c.writer; others wait in
-- line (first in, first out) in wq_of[c], a waiter list as asio.sync keeps
-- them (th_cv/th_cvi name the entry, so that asio.kill can withdraw it).
local wq_of = {}

-- Hands the turn to the next writer in line, if any.
local function release_turn(c)
  local q = wq_of[c]
  if q then
    local wt = q.wt
    while q.head <= q.tail do
      local i = q.head
      local s = wt[i]
      wt[i] = nil
      q.head = i + 1
      if s and th_tok[s] >= 0 and th_cv[s] == q and th_cvi[s] == i then
        c.writer = s
        wake_later(s, 0)
        return
      end
    end
    wq_of[c] = nil
  end
  c.writer = 0
end

-- Waits for this writer's turn; true once c.writer == s, or nil and the
-- error ('timeout' before the turn came: nothing was sent).
local function wait_turn(c, s, deadline)
  local q = wq_of[c]
  if not q then q = { wt = {}, head = 1, tail = 0 }; wq_of[c] = q end
  local i = q.tail + 1
  q.tail = i
  q.wt[i] = s
  th_cv[s], th_cvi[s] = q, i
  local r = park(s, next_token(s), deadline, false)
  th_cv[s], th_cvi[s] = false, false
  if r == 0 then return true end
  if q.wt[i] == s then q.wt[i] = nil end
  return nil, strerror(r)
end

local function write_slow(c, s, data, off, len, deadline)
  c.writer = s
  while off < len do
    local r = wait_io(c, s, WAIT_WRITE, deadline)
    if r == 0 then
      if c.h == 0 then r = ECLOSED else r = send(c, data, off, len - off) end
    end
    if r > 0 then
      off = off + r
    elseif r ~= EAGAIN then
      release_turn(c)
      return nil, strerror(r), off
    end
  end
  release_turn(c)
  return true
end

function Conn:write(data, n)
  local s = S.current
  if not istype(conn_t, self) then check_conn(self, 'write') end
  local len
  if type(data) == 'string' then
    len = #data
  elseif type(data) == 'cdata' then
    -- write(buf, n): n bytes from a buffer, which must not change until
    -- the call returns
    if not (is_count(n) and n < 2 ^ 31) then argerr(2, 'write', 'byte count with a cdata buffer', n) end
    local p = as_charp(data)
    if not p then argerr(1, 'write', 'string, or pointer or array cdata', data) end
    data, len = p, n
  else
    if type(data) ~= 'number' then argerr(1, 'write', 'string', data) end
    data = tostring(data)
    len = #data
  end
  if not s then outside('write') end
  if co_running() ~= th_co[s] then must_park(s, 'write') end
  local b = S.budget - 1   -- the cooperative budget (asio.sched)
  S.budget = b
  if b <= 0 then yield_turn(s) end
  local h = self.h
  if h == 0 then return nil, 'closed', 0 end
  if len == 0 then return true end
  local deadline = self.wto >= 0 and C.luaasio_now() + self.wto or nil
  if self.writer ~= 0 then
    if S.relaying[self.writer] then return nil, 'busy', 0 end -- asio.relay forwards to it
    -- Another light thread is writing: wait in line, then write whole.
    local ok, err = wait_turn(self, s, deadline)
    if not ok then return nil, err, 0 end
    if self.h == 0 then release_turn(self); return nil, 'closed', 0 end
    local r = send(self, data, 0, len)
    if r == len then release_turn(self); return true end
    if r == EAGAIN then r = 0 elseif r < 0 then release_turn(self); return nil, strerror(r), 0 end
    return write_slow(self, s, data, r, len, deadline)
  end
  local r = send(self, data, 0, len)
  if r == len then return true end
  if r == EAGAIN then r = 0 elseif r < 0 then return nil, strerror(r), 0 end
  return write_slow(self, s, data, r, len, deadline)
end

-- asio.kill withdraws a killed light thread's wait on a connection.
S.forget_waits = function(c, s)
  if not istype(conn_t, c) then
    if S.forget_udp then S.forget_udp(c, s) end
    return
  end
  if c.reader == s then
    c.reader = 0
    if c.h ~= 0 then C.luaasio_conn_unwait(loop, c.h, WAIT_READ) end
  end
  if c.writer == s then
    if c.h ~= 0 then C.luaasio_conn_unwait(loop, c.h, WAIT_WRITE) end
    release_turn(c)
  end
end

function Conn:close()
  check_conn(self, 'close')
  local h = self.h
  if h == 0 then return true end
  self.h = 0
  pend_of[h] = nil
  self.pend = 0
  if self.tls ~= 0 then S.tls_drop(h, true) end
  C.luaasio_close(loop, h)
  if self.reader ~= 0 then wake_later(self.reader, ECLOSED) end
  if self.writer ~= 0 then wake_later(self.writer, ECLOSED) end
  -- Writers waiting in line wake with nil, 'closed', 0.
  local q = wq_of[self]
  if q then
    wq_of[self] = nil
    for i = q.head, q.tail do
      local w = q.wt[i]
      if w and th_cv[w] == q and th_cvi[w] == i then wake_later(w, ECLOSED) end
    end
  end
  return true
end

function Conn:shutdown()
  check_conn(self, 'shutdown')
  if self.h == 0 then return nil, 'closed' end
  if self.tls ~= 0 then
    local ok, err = S.tls_close_notify(self)
    if not ok then return nil, err end
  end
  local r = C.luaasio_conn_shutdown(loop, self.h, C.LUAASIO_SHUT_WR)
  if r < 0 then return nil, strerror(r) end
  return true
end

function Conn:settimeout(sec)
  check_conn(self, 'settimeout')
  sec = check_timeout(1, 'settimeout', sec) or -1
  self.rto, self.wto = sec, sec
  return true
end

function Conn:settimeouts(connect, read, write)
  check_conn(self, 'settimeouts')
  -- A connection is already connected: the connect value is checked but
  -- has nothing left to bound (asio.connect takes {timeout = sec}).
  check_timeout(1, 'settimeouts', connect)
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

-- Puts bytes back in front of what the next read returns.
local function unread(c, data)
  if data == '' or c.h == 0 then return end
  if c.pend ~= 0 then data = data .. take_pend(c) end
  keep_pend(c, data)
end

local M = { unread = unread, Conn = Conn, new = new_conn, check = check_conn, conn_t = conn_t,
  deadline_of = deadline_of, wait_io = wait_io, release_turn = release_turn }
return M
