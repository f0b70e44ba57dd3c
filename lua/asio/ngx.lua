-- The part of OpenResty's `ngx` API that pure-Lua cosocket libraries use
-- (lua-resty-redis, lua-resty-memcached, ...), on LuaAsio light threads.
-- `require 'asio.ngx'` returns the table and installs it as the global
-- `ngx` when there is none. Timeouts are in milliseconds and error strings
-- are OpenResty's, as those libraries expect. See README "Using existing
-- libraries" for what is and is not provided.

local ffi = require 'ffi'
local asio = require 'asio'
local sched = require 'asio.sched'
-- As inside nginx, coroutines the libraries make may do cosocket I/O:
-- coroutine.resume and coroutine.wrap become asio.coroutine's.
require('asio.coroutine').install()
local sync = require 'asio.sync'
local conn = require 'asio.conn'
local S = require 'asio.state'

local type, tostring, error, select, setmetatable, pcall =
  type, tostring, error, select, setmetatable, pcall
local concat, floor, sub, find = table.concat, math.floor, string.sub, string.find
local unread, Conn = conn.unread, conn.Conn
local read, write, read_line, read_until, read_some =
  Conn.read, Conn.write, Conn.read_line, Conn.read_until, Conn.read_some

local ngx = {}

-- OpenResty's wording where LuaAsio's differs.
local errmap = { eof = 'closed', ['connection reset'] = 'connection reset by peer' }
local function oerr(e) return errmap[e] or e end

---------------------------------------------------------------------------
-- ngx.socket.tcp
---------------------------------------------------------------------------

local DEFAULT_MS = 60000
local Tcp = {}
Tcp.__index = Tcp

local function tcp()
  return setmetatable({ c = false, cto = DEFAULT_MS, rto = DEFAULT_MS, wto = DEFAULT_MS }, Tcp)
end

local function check_self(self, fname)
  if type(self) ~= 'table' or getmetatable(self) ~= Tcp then
    error(("bad argument #1 to '%s' (tcp socket expected, got %s)"):format(fname, type(self)), 3)
  end
end

local function sec(ms) return (ms and ms > 0) and ms / 1000 or nil end

local function apply_timeouts(self)
  local c = self.c
  if c then c:settimeouts(sec(self.cto), sec(self.rto), sec(self.wto)) end
end

function Tcp:connect(host, port, opts)
  check_self(self, 'connect')
  if type(host) ~= 'string' then
    error(("bad argument #1 to 'connect' (string expected, got %s)"):format(type(host)), 2)
  end
  if type(port) == 'table' then port, opts = nil, port end
  if opts ~= nil and type(opts) ~= 'table' then
    error(("bad argument #3 to 'connect' (table expected, got %s)"):format(type(opts)), 2)
  end
  if port == nil and sub(host, 1, 5) ~= 'unix:' then
    error("bad argument #2 to 'connect' (port expected)", 2)
  end
  if self.c then self.c:close(); self.c = false end
  local o = { timeout = sec(self.cto) }
  if opts then o.pool, o.pool_size, o.backlog = opts.pool, opts.pool_size, opts.backlog end
  -- OpenResty's default pool is "host:port" (or the socket path), TLS or
  -- not: a pooled TLS connection comes back with its session, and libraries
  -- skip sslhandshake when getreusedtimes() > 0.
  if o.pool == nil then o.pool = port == nil and host or host .. ':' .. tostring(port) end
  local c, err
  if port == nil then c, err = asio.connect(host, o) else c, err = asio.connect(host, port, o) end
  if not c then return nil, oerr(err) end
  self.c = c
  apply_timeouts(self)
  return 1
end

function Tcp:settimeout(ms)
  check_self(self, 'settimeout')
  if ms ~= nil and (type(ms) ~= 'number' or ms < 0) then
    error(("bad argument #1 to 'settimeout' (non-negative number expected, got %s)"):format(type(ms)), 2)
  end
  self.cto, self.rto, self.wto = ms, ms, ms
  apply_timeouts(self)
  return 1
end

function Tcp:settimeouts(cms, sms, rms)
  check_self(self, 'settimeouts')
  for i = 1, 3 do
    local v = select(i, cms, sms, rms)
    if v ~= nil and (type(v) ~= 'number' or v < 0) then
      error(("bad argument #%d to 'settimeouts' (non-negative number expected, got %s)"):format(i, type(v)), 2)
    end
  end
  self.cto, self.wto, self.rto = cms or DEFAULT_MS, sms or DEFAULT_MS, rms or DEFAULT_MS
  apply_timeouts(self)
  return 1
end

-- After an error other than a timeout the connection is of no further use;
-- OpenResty closes it, and so do we.
local function fail(self, err, partial)
  err = oerr(err)
  if err ~= 'timeout' and self.c then self.c:close(); self.c = false end
  -- The core keeps bytes read before a timeout for the next read; OpenResty
  -- hands them out as the partial result only, so take them back.
  if err == 'timeout' and partial and partial ~= '' and self.c then read(self.c, #partial) end
  return nil, err, partial
end

local function flatten(t, out, n, depth)
  if depth > 100 then error("bad argument #1 to 'send' (table nested too deep)", 4) end
  for i = 1, #t do
    local v = t[i]
    local tv = type(v)
    if tv == 'string' then n = n + 1; out[n] = v
    elseif tv == 'number' then n = n + 1; out[n] = tostring(v)
    elseif tv == 'table' then n = flatten(v, out, n, depth + 1)
    else error(("bad argument #1 to 'send' (bad data type %s found)"):format(tv), 4) end
  end
  return n
end

function Tcp:send(data)
  local c = self.c
  local td = type(data)
  if td ~= 'string' then
    check_self(self, 'send')
    if td == 'number' then data = tostring(data)
    elseif td == 'table' then
      local out = {}
      flatten(data, out, 0, 0)
      data = concat(out)
    else
      error(("bad argument #1 to 'send' (string, number or table expected, got %s)"):format(td), 2)
    end
  end
  if not c then return nil, 'closed' end
  local ok, err = write(c, data)
  if not ok then return fail(self, err) end
  return #data
end

function Tcp:receive(pat)
  local c = self.c
  if type(pat) == 'number' then
    if not c then return nil, 'closed' end
    if pat < 0 or pat ~= floor(pat) then
      error("bad argument #1 to 'receive' (bad pattern argument)", 2)
    end
    local data, err, partial = read(c, pat)
    if data then return data end
    return fail(self, err, partial)
  end
  check_self(self, 'receive')
  local n = type(pat) == 'string' and tonumber(pat)
  if n then return self:receive(n) end
  if pat == nil or pat == '*l' or pat == '*L' then
    if not c then return nil, 'closed' end
    local line, err, partial = read_line(c)
    if line then return line end
    return fail(self, err, partial)
  elseif pat == '*a' then
    if not c then return nil, 'closed' end
    local parts = {}
    while true do
      local d, err = read_some(c)
      if d and d ~= '' then parts[#parts + 1] = d
      else
        err = oerr(err)
        if err == 'closed' then return concat(parts) end
        return fail(self, err, concat(parts))
      end
    end
  end
  error("bad argument #1 to 'receive' (bad pattern argument)", 2)
end

function Tcp:receiveany(max)
  check_self(self, 'receiveany')
  if type(max) ~= 'number' or max < 1 or max ~= floor(max) then
    error("bad argument #1 to 'receiveany' (bad max argument)", 2)
  end
  local c = self.c
  if not c then return nil, 'closed' end
  local d, err = read_some(c)
  if not d or d == '' then return fail(self, err) end
  if #d > max then unread(c, sub(d, max + 1)); d = sub(d, 1, max) end
  return d
end

-- receiveuntil(pattern [, {inclusive = true}]) returns an iterator. Called
-- without a size it reads up to the pattern. Called with a size it returns
-- the data before the pattern in pieces of at most `size` bytes, then one
-- `nil` (no error) where the pattern was, and starts over after that.
function Tcp:receiveuntil(pattern, opts)
  check_self(self, 'receiveuntil')
  if type(pattern) ~= 'string' or pattern == '' then
    error("bad argument #1 to 'receiveuntil' (non-empty string expected)", 2)
  end
  if opts ~= nil and type(opts) ~= 'table' then
    error("bad argument #2 to 'receiveuntil' (table expected)", 2)
  end
  local inclusive = opts and opts.inclusive and true or false
  local ropts = { inclusive = inclusive }
  local at_end = false
  local plen = #pattern
  return function(size)
    local c = self.c
    if not c then return nil, 'closed' end
    if size == nil then
      at_end = false
      local d, err, partial = read_until(c, pattern, ropts)
      if d then return d end
      return fail(self, err, partial)
    end
    if type(size) ~= 'number' or size < 1 then
      error("bad argument #1 to iterator (positive size expected)", 2)
    end
    if at_end then at_end = false; return nil end
    local buf = ''
    while true do
      local i, j = find(buf, pattern, 1, true)
      if i then
        if i - 1 > size then
          unread(c, sub(buf, size + 1))
          return sub(buf, 1, size)
        end
        unread(c, sub(buf, j + 1))
        at_end = true
        return inclusive and sub(buf, 1, j) or sub(buf, 1, i - 1)
      end
      -- Bytes that cannot begin the pattern may go out now.
      local safe = #buf - plen + 1
      if safe >= size then
        unread(c, sub(buf, size + 1))
        return sub(buf, 1, size)
      end
      local d, err = read_some(c)
      if not d or d == '' then
        return fail(self, err, buf)
      end
      buf = buf .. d
    end
  end
end

function Tcp:close()
  check_self(self, 'close')
  local c = self.c
  if not c then return nil, 'closed' end
  self.c = false
  c:close()
  return 1
end

function Tcp:setkeepalive(ms, size)
  check_self(self, 'setkeepalive')
  local c = self.c
  if not c then return nil, 'closed' end
  if ms ~= nil and (type(ms) ~= 'number' or ms < 0) then
    error("bad argument #1 to 'setkeepalive' (non-negative number expected)", 2)
  end
  if size ~= nil and (type(size) ~= 'number' or size < 1) then
    error("bad argument #2 to 'setkeepalive' (positive number expected)", 2)
  end
  self.c = false
  local ok, err = c:setkeepalive(ms and ms / 1000, size and floor(size))
  if not ok then return nil, err end
  return 1
end

function Tcp:getreusedtimes()
  check_self(self, 'getreusedtimes')
  if not self.c then return nil, 'closed' end
  return self.c:getreusedtimes()
end

function Tcp:setoption(name, value)
  check_self(self, 'setoption')
  if not self.c then return nil, 'closed' end
  if name == 'tcp-nodelay' then name = 'nodelay' end
  if name == 'keepalive' or name == 'nodelay' then value = value and true or false end
  local ok, err = self.c:setoption(name, value)
  if not ok then return nil, err end
  return 1
end

-- sock:sslhandshake(reused_session, server_name, ssl_verify): TLS on the
-- connected socket through asio.tls. As in OpenResty the certificate is
-- checked only with ssl_verify = true (here against the system store), and
-- the result is the session to pass as reused_session next time (a string
-- here; true while there is none), or true when reused_session is false.
-- A failed handshake closes the socket.
function Tcp:sslhandshake(reused, server_name, verify)
  check_self(self, 'sslhandshake')
  if reused ~= nil and reused ~= false and type(reused) ~= 'string' and reused ~= true then
    error(("bad argument #1 to 'sslhandshake' (session string, false or nil expected, got %s)"):format(type(reused)), 2)
  end
  if server_name ~= nil and type(server_name) ~= 'string' then
    error(("bad argument #2 to 'sslhandshake' (string expected, got %s)"):format(type(server_name)), 2)
  end
  local c = self.c
  if not c then return nil, 'closed' end
  if c.tls ~= 0 then
    -- already TLS (a connection taken from the pool keeps its session)
    if reused == false then return true end
    return c:tls_session() or true
  end
  local ok, err, reason = c:tls_handshake({
    server_name = server_name ~= '' and server_name or nil,
    verify = verify == true,
    session = type(reused) == 'string' and reused or nil,
  })
  if not ok then
    c:close()
    self.c = false
    return nil, reason and (err .. ': ' .. reason) or err
  end
  if reused == false then return true end
  return c:tls_session() or true
end

ngx.socket = {
  tcp = tcp,
  stream = tcp,
  connect = function(host, port, opts)
    local s = tcp()
    local ok, err = s:connect(host, port, opts)
    if not ok then return nil, err end
    return s
  end,
}

---------------------------------------------------------------------------
-- ngx.socket.udp
---------------------------------------------------------------------------

local Udp = {}
Udp.__index = Udp

function Udp:setpeername(host, port)
  if self.u then self.u:close() end
  local u, err = asio.udp()
  if not u then return nil, err end
  local ok
  ok, err = u:connect(host, port)
  if not ok then u:close(); return nil, err end
  self.u = u
  return 1
end

function Udp:settimeout(ms)
  self.rto = sec(ms)
  return 1
end

function Udp:send(data)
  if not self.u then return nil, 'closed' end
  if type(data) == 'table' then
    local out = {}
    flatten(data, out, 0, 0)
    data = concat(out)
  end
  local ok, err = self.u:send(data)
  if not ok then return nil, err end
  return 1
end

function Udp:receive()
  if not self.u then return nil, 'closed' end
  return self.u:recv(self.rto)
end

function Udp:close()
  if not self.u then return nil, 'closed' end
  self.u:close()
  self.u = false
  return 1
end

ngx.socket.udp = function() return setmetatable({ u = false, rto = DEFAULT_MS / 1000 }, Udp) end

---------------------------------------------------------------------------
-- Time, logging, constants
---------------------------------------------------------------------------

-- The wall clock comes from the library: declaring struct timeval here
-- would be wrong where time_t is 64-bit on a 32-bit system (musl 1.2).
local wall_time = require('asio.lib').C.luaasio_wall_time

-- Milliseconds, as nginx's cached time has.
local function wallclock()
  return floor(wall_time() * 1000) / 1000
end

ngx.now = wallclock
ngx.time = function() return floor(wallclock()) end
ngx.update_time = function() end
ngx.sleep = function(s)
  if type(s) ~= 'number' or s < 0 then error("bad argument #1 to 'sleep' (non-negative number expected)", 2) end
  return asio.sleep(s)
end

ngx.null = setmetatable({}, { __tostring = function() return 'null' end })
ngx.OK, ngx.ERROR, ngx.AGAIN, ngx.DONE, ngx.DECLINED = 0, -1, -2, -4, -5

local levels = { 'STDERR', 'EMERG', 'ALERT', 'CRIT', 'ERR', 'WARN', 'NOTICE', 'INFO', 'DEBUG' }
for i, name in ipairs(levels) do ngx[name] = i - 1 end
-- Messages at this level or more severe are written to stderr.
ngx.log_level = ngx.WARN

function ngx.log(level, ...)
  if type(level) ~= 'number' then error("bad argument #1 to 'log' (log level expected)", 2) end
  if level > ngx.log_level then return end
  local n = select('#', ...)
  local parts = { '[', (levels[level + 1] or tostring(level)):lower(), '] ' }
  for i = 1, n do parts[#parts + 1] = tostring((select(i, ...))) end
  parts[#parts + 1] = '\n'
  io.stderr:write(concat(parts))
end

ngx.get_phase = function() return 'timer' end
ngx.worker = {
  exiting = function() return false end,
  pid = function() return 0 end,
  id = function() return 0 end,
  count = function() return 1 end,
}
ngx.config = { ngx_lua_version = 10021, subsystem = 'http', debug = false, prefix = function() return '' end }

local function escape_uri(s)
  return (tostring(s):gsub('[^%w%-%._~]', function(ch) return ('%%%02X'):format(ch:byte()) end))
end
ngx.escape_uri = escape_uri
ngx.unescape_uri = function(s)
  return (tostring(s):gsub('+', ' '):gsub('%%(%x%x)', function(h) return string.char(tonumber(h, 16)) end))
end

---------------------------------------------------------------------------
-- ngx.thread
---------------------------------------------------------------------------

-- A spawned thread records its outcome and signals `done_cv`, so that
-- wait() can wait for whichever of several ends first.
local done_cv = sync.cond()
local Th = {}
Th.__index = Th
local outcome = setmetatable({}, { __mode = 'k' })

ngx.thread = {}

function ngx.thread.spawn(fn, ...)
  if type(fn) ~= 'function' then error("bad argument #1 to 'spawn' (function expected)", 2) end
  local th = setmetatable({}, Th)
  th.co = sched.spawn_light_thread(function(...)
    local r = { pcall(fn, ...) }
    r.n = #r
    outcome[th] = r
    done_cv:broadcast()
  end, ...)
  return th
end

function ngx.thread.wait(...)
  local n = select('#', ...)
  if n == 0 then error("bad argument #1 to 'wait' (thread expected)", 2) end
  for i = 1, n do
    if getmetatable((select(i, ...))) ~= Th then error(("bad argument #%d to 'wait' (thread expected)"):format(i), 2) end
  end
  while true do
    for i = 1, n do
      local th = select(i, ...)
      local r = outcome[th]
      if r then
        outcome[th] = nil
        th.waited = true
        if not r[1] then return false, r[2] end
        return unpack(r, 1, r.n)
      end
      if th.waited or th.killed then return nil, 'already waited or killed' end
    end
    done_cv:wait()
  end
end

function ngx.thread.kill(th)
  if getmetatable(th) ~= Th then error("bad argument #1 to 'kill' (thread expected)", 2) end
  if outcome[th] or th.waited or th.killed then return nil, 'already terminated' end
  local ok, err = sched.kill(th.co)
  if not ok then
    return nil, err == 'dead' and 'already terminated' or 'thread is running'
  end
  th.killed = true
  done_cv:broadcast()   -- whoever waits for it stops waiting
  return true
end

---------------------------------------------------------------------------
-- ngx.semaphore (also `require 'ngx.semaphore'`), on asio.cond
---------------------------------------------------------------------------

local Sema = {}
Sema.__index = Sema
local semaphore = {}

function semaphore.new(n)
  n = n or 0
  if type(n) ~= 'number' or n < 0 or n ~= floor(n) then
    return nil, 'no memory'
  end
  return setmetatable({ n = n, cv = sync.cond(), waiting = 0 }, Sema)
end

function Sema:wait(seconds)
  if getmetatable(self) ~= Sema then error("bad argument #1 to 'wait' (semaphore expected)", 2) end
  if seconds ~= nil and (type(seconds) ~= 'number' or seconds < 0) then
    error("bad argument #2 to 'wait' (non-negative number expected)", 2)
  end
  if self.n > 0 and self.waiting == 0 then self.n = self.n - 1; return true end
  if seconds == 0 then return nil, 'timeout' end
  local deadline = seconds and asio.now() + seconds
  self.waiting = self.waiting + 1
  while self.n <= 0 do
    local left = deadline and deadline - asio.now()
    if left and left <= 0 then self.waiting = self.waiting - 1; return nil, 'timeout' end
    local ok = self.cv:wait(left)
    if not ok and self.n <= 0 then self.waiting = self.waiting - 1; return nil, 'timeout' end
  end
  self.waiting = self.waiting - 1
  self.n = self.n - 1
  return true
end

function Sema:post(n)
  if getmetatable(self) ~= Sema then error("bad argument #1 to 'post' (semaphore expected)", 2) end
  n = n or 1
  if type(n) ~= 'number' or n < 1 then error("bad argument #2 to 'post' (positive number expected)", 2) end
  self.n = self.n + n
  for _ = 1, n do if not self.cv:signal() then break end end
  return true
end

function Sema:count()
  return self.waiting > 0 and -self.waiting or self.n
end

ngx.semaphore = semaphore
package.loaded['ngx.semaphore'] = package.loaded['ngx.semaphore'] or semaphore

if rawget(_G, 'ngx') == nil then rawset(_G, 'ngx', ngx) end
return ngx
