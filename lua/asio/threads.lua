-- Using all cores: worker threads with Lua states of their own
-- (asio.thread), servers served by several of them ({threads = N}),
-- channels between states and process-wide shared dictionaries.
--
-- States share nothing. A worker gets copies of the function and values it
-- is handed (asio.transfer says what can cross), runs its own loop and its
-- own light threads, and is touched only by its own OS thread.

local ffi = require 'ffi'
local lib = require 'asio.lib'
local S = require 'asio.state'
local sched = require 'asio.sched'
local check = require 'asio.check'
local conn = require 'asio.conn'
local server_mod = require 'asio.server'
local transfer = require 'asio.transfer'

local C, strerror = lib.C, lib.strerror
local ffi_string = ffi.string
local type, tostring, error, select, unpack = type, tostring, error, select, unpack
local setmetatable, getmetatable = setmetatable, getmetatable
local format, find, sub = string.format, string.find, string.sub
local argerr, selferr, outside, is_count, check_timeout =
  check.argerr, check.selferr, check.outside, check.is_count, check.check_timeout
local must_park, park, next_token = sched.must_park, sched.park, sched.next_token
local encode, encode_simple, decode = transfer.encode, transfer.encode_simple, transfer.decode

local EAGAIN, ECLOSED, ETIMEDOUT = C.LUAASIO_EAGAIN, C.LUAASIO_ECLOSED, C.LUAASIO_ETIMEDOUT
local ETOOBIG = C.LUAASIO_ETOOBIG
local loop, rbuf, BUFSIZE = S.loop, S.rbuf, S.BUFSIZE
local needed = ffi.new('int[1]')
local dout = ffi.new('double[3]')

local M = {}

-- Tokens of thread completions: above the servers' range (asio.server uses
-- SERVER_BIT + 1 .. SERVER_BIT + 2^29).
local THREAD_BASE = S.SERVER_BIT + 0x20000000
local thread_seq = 0

-- Completion events of workers arrive like accept events; a record with
-- on_event takes its own.
do
  local accept = S.on_accept
  S.on_accept = function(rec, r)
    local f = rec.on_event
    if f then return f(rec, r) end
    return accept(rec, r)
  end
end

local function deadline_of(timeout)
  return timeout and C.luaasio_now() + timeout or nil
end

-- Reads a result of unknown size through `fetch(buf, cap, needed)`.
local function fetch_bytes(fetch)
  local n = fetch(rbuf, BUFSIZE, needed)
  if n == ETOOBIG then
    local size = needed[0]
    local big = ffi.new('char[?]', size)
    n = fetch(big, size, needed)
    if n >= 0 then return ffi_string(big, n) end
  end
  if n < 0 then return nil, n end
  return ffi_string(rbuf, n)
end

---------------------------------------------------------------------------
-- Channels
---------------------------------------------------------------------------

if not pcall(ffi.typeof, 'struct luaasio_lua_channel') then
  ffi.cdef 'struct luaasio_lua_channel { int32_t id; };'
end

local Channel = {}
local channel_t = ffi.metatype('struct luaasio_lua_channel', {
  __index = Channel,
  __gc = function(ch) C.luaasio_channel_release(ch.id) end,
  __tostring = function(ch) return 'asio channel #' .. ch.id end,
})

-- An encoded channel holds a reference of its own, which the decoded
-- object takes over: the channel outlives its sender's copy.
transfer.special_cdata[channel_t] = {
  tag = 'H',
  id = function(ch)
    C.luaasio_channel_retain(ch.id)
    return tostring(ch.id)
  end,
}
transfer.decoders.H = function(text) return channel_t(tonumber(text)) end

local function check_channel(self, fname)
  if not ffi.istype(channel_t, self) then selferr(fname, 'channel', self) end
end

function M.channel(capacity)
  if capacity ~= nil and not (is_count(capacity) and capacity > 0 and capacity < 2 ^ 31) then
    argerr(1, 'channel', 'positive integer or nil', capacity)
  end
  local id = C.luaasio_channel_new(capacity or 1024)
  if id < 0 then return nil, strerror(id) end
  return channel_t(id)
end

-- Parks the running light thread until the channel may have changed, the
-- deadline passes, or returns at once outside a light thread.
local function wait_channel(s, id, token, deadline, fname)
  local r = park(s, token, deadline, true)
  if r == ETIMEDOUT then
    C.luaasio_channel_unwait(loop, id, s)
  end
  return r
end

function Channel:send(v, timeout)
  check_channel(self, 'send')
  timeout = check_timeout(2, 'send', timeout)
  local data = encode_simple(v)
  if not data then
    local ok, d = pcall(encode, 'the value', v)
    if not ok then error("bad argument #1 to 'send' (" .. d .. ")", 2) end
    data = d
  end
  local s = S.current
  local deadline = false
  while true do
    local token = s and next_token(s) or -1
    local r = C.luaasio_channel_send(loop, self.id, data, #data, token)
    if r == 0 then return true end
    if r ~= EAGAIN then return nil, strerror(r) end
    if not s then outside('send') end
    must_park(s)
    if deadline == false then deadline = deadline_of(timeout) end
    r = wait_channel(s, self.id, token, deadline)
    if r == ETIMEDOUT then return nil, 'timeout' end
  end
end

function Channel:receive(timeout)
  check_channel(self, 'receive')
  timeout = check_timeout(1, 'receive', timeout)
  local s = S.current
  local id = self.id
  local deadline = false
  while true do
    local token = s and next_token(s) or -1
    local data, r = fetch_bytes(function(buf, cap, nd)
      return C.luaasio_channel_recv(loop, id, token, buf, cap, nd)
    end)
    if data then
      local vals = decode(data)
      return vals[1]
    end
    if r == ECLOSED then return nil, 'closed' end
    if r ~= EAGAIN then return nil, strerror(r) end
    if not s then outside('receive') end
    must_park(s)
    if deadline == false then deadline = deadline_of(timeout) end
    r = wait_channel(s, id, token, deadline)
    if r == ETIMEDOUT then return nil, 'timeout' end
  end
end

function Channel:close()
  check_channel(self, 'close')
  C.luaasio_channel_close(self.id)
  return true
end

function Channel:count()
  check_channel(self, 'count')
  local n = C.luaasio_channel_count(self.id)
  if n < 0 then return nil, strerror(n) end
  return n
end

---------------------------------------------------------------------------
-- Shared dictionaries
---------------------------------------------------------------------------

local Shared = {}
Shared.__index = Shared
local shared_by_id = setmetatable({}, { __mode = 'v' })

transfer.special_tables[Shared] = { tag = 'D', id = function(d) return tostring(d.id) end }
transfer.decoders.D = function(text)
  local id = tonumber(text)
  local d = shared_by_id[id]
  if not d then
    d = setmetatable({ id = id }, Shared)
    shared_by_id[id] = d
  end
  return d
end

function M.shared(name, max_bytes)
  if type(name) ~= 'string' or name == '' then argerr(1, 'shared', 'non-empty string', name) end
  if max_bytes ~= nil and not (is_count(max_bytes) and max_bytes >= 1024) then
    argerr(2, 'shared', 'integer >= 1024 or nil', max_bytes)
  end
  local id = C.luaasio_shdict_open(name, max_bytes or 1048576)
  if id < 0 then return nil, strerror(id) end
  return transfer.decoders.D(tostring(id))
end

local function check_dict(self, fname)
  if getmetatable(self) ~= Shared then selferr(fname, 'shared dictionary', self) end
end

local function check_key(fname, key)
  if type(key) ~= 'string' then
    if type(key) ~= 'number' then argerr(1, fname, 'string key', key, 4) end
    key = tostring(key)
  end
  if key == '' then error(("bad argument #1 to '%s' (empty key)"):format(fname), 4) end
  return key
end

local function ttl_of(fname, n, exptime)
  if exptime == nil then return 0 end
  if type(exptime) ~= 'number' or exptime < 0 or exptime ~= exptime then
    argerr(n, fname, 'non-negative number or nil', exptime, 4)
  end
  return exptime
end

local SH_BOOL, SH_NUM, SH_STR = C.LUAASIO_SHDICT_BOOLEAN, C.LUAASIO_SHDICT_NUMBER,
  C.LUAASIO_SHDICT_STRING

local function store(self, fname, key, value, exptime, mode)
  check_dict(self, fname)
  key = check_key(fname, key)
  local ttl = ttl_of(fname, 3, exptime)
  local t, str, len, num = C.LUAASIO_SHDICT_NIL, nil, 0, 0
  local vt = type(value)
  if vt == 'string' then t, str, len = SH_STR, value, #value
  elseif vt == 'number' then t, num = SH_NUM, value
  elseif vt == 'boolean' then t, num = SH_BOOL, value and 1 or 0
  elseif vt ~= 'nil' then argerr(2, fname, 'string, number, boolean or nil', value, 3) end
  local r = C.luaasio_shdict_set(self.id, key, #key, t + mode, str, len, num, ttl)
  if r < 0 then return false, strerror(r), false end
  return true, nil, r > 0
end

-- dict:set(key, value [, exptime]) -> true, nil, forcible (entries evicted)
function Shared:set(key, value, exptime) return store(self, 'set', key, value, exptime, 0) end
-- dict:add: only when the key is absent (else false, 'exists')
function Shared:add(key, value, exptime)
  return store(self, 'add', key, value, exptime, C.LUAASIO_SHDICT_ADD)
end
-- dict:replace: only when the key is present (else false, 'not found')
function Shared:replace(key, value, exptime)
  local ok, err, forcible = store(self, 'replace', key, value, exptime, C.LUAASIO_SHDICT_REPLACE)
  if err == 'no such file' then err = 'not found' end
  return ok, err, forcible
end

function Shared:delete(key)
  check_dict(self, 'delete')
  key = check_key('delete', key)
  C.luaasio_shdict_set(self.id, key, #key, C.LUAASIO_SHDICT_NIL, nil, 0, 0, 0)
  return true
end

-- dict:get(key) -> value or nil (also nil once it expired)
function Shared:get(key)
  check_dict(self, 'get')
  key = check_key('get', key)
  local id = self.id
  local n = C.luaasio_shdict_get(id, key, #key, rbuf, BUFSIZE, dout)
  local big
  if n == ETOOBIG then
    local size = dout[1]
    big = ffi.new('char[?]', size)
    n = C.luaasio_shdict_get(id, key, #key, big, size, dout)
  end
  if n < 0 then return nil, strerror(n) end
  local t = dout[0]
  if t == SH_STR then return ffi_string(big or rbuf, n) end
  if t == SH_NUM then return dout[1] end
  if t == SH_BOOL then return dout[1] ~= 0 end
  return nil
end

-- dict:incr(key, delta [, init [, init_ttl]]) -> new value, or nil, err
function Shared:incr(key, delta, init, init_ttl)
  check_dict(self, 'incr')
  key = check_key('incr', key)
  if type(delta) ~= 'number' or delta ~= delta then argerr(2, 'incr', 'number', delta) end
  if init ~= nil and type(init) ~= 'number' then argerr(3, 'incr', 'number or nil', init) end
  local ttl = ttl_of('incr', 4, init_ttl)
  local r = C.luaasio_shdict_incr(self.id, key, #key, delta, init or 0, init and 1 or 0, ttl, dout)
  if r < 0 then
    local err = strerror(r)
    if r == C.LUAASIO_ENOENT then err = 'not found' end
    return nil, err
  end
  return dout[0], nil, r > 0
end

function Shared:keys(max)
  check_dict(self, 'keys')
  if max ~= nil and not is_count(max) then argerr(1, 'keys', 'non-negative integer or nil', max) end
  local id = self.id
  local data, r = fetch_bytes(function(buf, cap, nd)
    return C.luaasio_shdict_keys(id, buf, cap, max or 0, nd)
  end)
  if not data then return nil, strerror(r) end
  local keys, i = {}, 1
  while i <= #data do
    local z = find(data, '\0', i, true)
    keys[#keys + 1] = sub(data, i, z - 1)
    i = z + 1
  end
  return keys
end

function Shared:flush_all()
  check_dict(self, 'flush_all')
  C.luaasio_shdict_flush(self.id)
  return true
end

-- dict:stats() -> { used = bytes, capacity = bytes, count = entries }
function Shared:stats()
  check_dict(self, 'stats')
  C.luaasio_shdict_stats(self.id, dout)
  return { used = dout[0], capacity = dout[1], count = dout[2] }
end

function Shared:free_space()
  local st = self:stats()
  return st.capacity - st.used
end

Shared.__tostring = function(d) return 'asio shared dictionary #' .. d.id end

---------------------------------------------------------------------------
-- Worker threads
---------------------------------------------------------------------------

-- The chunk every worker state runs first: the module paths of this state,
-- then the worker's own entry point in this module.
local BOOT = [[
local arg = ...
local a = arg:find('\0', 1, true)
local b = arg:find('\0', a + 1, true)
package.path, package.cpath = arg:sub(1, a - 1), arg:sub(a + 1, b - 1)
return require('asio.threads').worker_main(arg:sub(b + 1))
]]

local function start_worker(token, payload)
  local arg = package.path .. '\0' .. package.cpath .. '\0' .. payload
  return C.luaasio_thread_start(loop, token, BOOT, #BOOT, arg, #arg)
end

local function new_token()
  thread_seq = thread_seq % 0x1ffffffe + 1
  return THREAD_BASE + thread_seq
end

-- Registers a running worker so that run() waits for it; `done(rec)` runs
-- when its completion event arrives.
local function track(rec, done)
  rec.on_event = function(r)
    if S.servers[r.token] ~= r then return end
    S.servers[r.token] = nil
    S.nservers = S.nservers - 1
    local data, err = fetch_bytes(function(buf, cap, nd)
      return C.luaasio_thread_result(loop, r.h, buf, cap, nd)
    end)
    C.luaasio_close(loop, r.h)
    r.h = nil
    if data then
      r.ok = sub(data, 1, 1) == 'O'
      r.result = sub(data, 2)
    else
      r.ok, r.result = false, 'asio: cannot fetch the worker result: ' .. strerror(err)
    end
    done(r)
  end
  S.servers[rec.token] = rec
  S.nservers = S.nservers + 1
end

local Thread = {}
Thread.__index = Thread
Thread.__tostring = function(t) return 'asio worker thread' end

local function thread_done(rec)
  local cv = rec.cv
  if cv then cv:broadcast() end
end

-- asio.thread(fn, ...) -> thread object. fn runs in a new OS thread with a
-- Lua state of its own, as the body of a light thread there; `th:join()`
-- returns copies of its results, or nil and the error.
function M.thread(fn, ...)
  if type(fn) ~= 'function' then argerr(1, 'thread', 'function', fn) end
  local ok, payload = pcall(encode, { 'the kind', 'the thread function' }, 'call', fn, ...)
  if not ok then error("bad argument #1 to 'thread' (" .. payload .. ')', 2) end
  if C.luaasio_lua_api() == 0 then
    return nil, 'not supported'
  end
  local token = new_token()
  local h = start_worker(token, payload)
  if h < 0 then return nil, strerror(h) end
  local rec = { h = h, token = token }
  track(rec, thread_done)
  return setmetatable({ rec = rec }, Thread)
end

-- Waits (in a light thread) for the worker to finish; returns its results,
-- or nil and the error it raised. May be called again, and by several.
function Thread:join(timeout)
  if getmetatable(self) ~= Thread then selferr('join', 'worker thread', self) end
  timeout = check_timeout(1, 'join', timeout)
  local rec = self.rec
  if rec.ok == nil then
    if not S.current then outside('join') end
    if not rec.cv then rec.cv = require('asio.sync').cond() end
    local ok, err = rec.cv:wait(timeout)
    if not ok then return nil, err end
  end
  if not rec.ok then return nil, rec.result end
  local vals = decode(rec.result)
  return unpack(vals, 1, vals.n)
end

-- Asks the worker's loop to stop, as asio.stop() would from inside it.
function Thread:stop()
  if getmetatable(self) ~= Thread then selferr('stop', 'worker thread', self) end
  if self.rec.h then C.luaasio_thread_stop(loop, self.rec.h) end
  return true
end

---------------------------------------------------------------------------
-- Servers on several threads
---------------------------------------------------------------------------

local function cpu_count()
  if ffi.os == 'Windows' then
    return tonumber(os.getenv('NUMBER_OF_PROCESSORS')) or 1
  end
  local f = io.open('/proc/cpuinfo')
  if f then
    local n = 0
    for line in f:lines() do
      if find(line, '^processor%s*:') then n = n + 1 end
    end
    f:close()
    if n > 0 then return n end
  end
  local p = io.popen('getconf _NPROCESSORS_ONLN 2>/dev/null')
  local n = p and tonumber(p:read('*l'))
  if p then p:close() end
  return n or 1
end
M.cpu_count = cpu_count

local ThreadedServer = {}
ThreadedServer.__index = ThreadedServer
ThreadedServer.__tostring = function(s)
  return s.closed and 'asio server (closed)' or ('asio server on ' .. #s.workers .. ' threads')
end

-- Reports errors that workers send back as this state reports its own.
local function relay_errors(errors)
  sched.spawn_light_thread(function()
    while true do
      local msg = errors:receive()
      if msg == nil then return end
      sched.report(msg, msg)
    end
  end)
end

local function server_done(rec)
  local srv = rec.server
  srv.running = srv.running - 1
  if not rec.ok then
    sched.report(rec.result, format('asio: worker %d of the server: %s', rec.index, rec.result))
  end
  if srv.running == 0 then srv.errors:close() end
end

-- Picks the worker with the fewest open connections, counting those handed
-- over but not yet adopted.
local function pick(workers)
  local best, load = nil, math.huge
  for i = 1, #workers do
    local w = workers[i]
    if w.h and not w.gone then
      local n = C.luaasio_thread_load(loop, w.h) + C.luaasio_channel_count(w.ch.id)
      if n < load then best, load = w, n end
    end
  end
  return best
end

-- asio.server(ip, port, handler, {threads = N, init = ..., reuseport = ...})
function M.server(ip, port, handler, opts)
  local o = opts
  if type(ip) == 'string' and sub(ip, 1, 5) == 'unix:' then o = handler end
  if type(o) ~= 'table' or o.threads == nil then
    return server_mod.server(ip, port, handler, opts)
  end
  if o ~= opts then
    error("bad argument #3 to 'server' (threads need an IP server, not a Unix socket)", 2)
  end
  local n = opts.threads
  if n == 'auto' then n = cpu_count() end
  if not (is_count(n) and n >= 1 and n <= 1024) then
    error("bad argument #4 to 'server' (threads must be a positive integer or 'auto')", 2)
  end
  if type(ip) ~= 'string' then argerr(1, 'server', 'string', ip) end
  local init = opts.init
  if init ~= nil and type(init) ~= 'function' and type(init) ~= 'string' then
    error("bad argument #4 to 'server' (init must be a function or a module name)", 2)
  end
  if type(handler) ~= 'function' then argerr(3, 'server', 'function', handler) end
  local ok, err = pcall(encode, 'the handler', handler)
  if not ok then error("bad argument #3 to 'server' (" .. err .. ')', 2) end
  if init ~= nil then
    ok, err = pcall(encode, 'init', init)
    if not ok then error("bad argument #4 to 'server' (" .. err .. ')', 2) end
  end
  if C.luaasio_lua_api() == 0 then return nil, 'not supported' end
  -- A Windows socket cannot move to another thread's completion port.
  if ffi.os == 'Windows' then return nil, 'not supported' end

  -- With TLS, each worker runs the handshakes of the connections it is
  -- handed; the settings are checked here first, so that errors show now.
  local tls_opts = opts.tls
  if tls_opts ~= nil then
    local tls = require 'asio.tls'
    local o = tls.check_opts('server', 4, tls_opts, true)
    local ctx, why, reason = tls.server_context(o)
    if not ctx then
      if why == 'tls not available' then return nil, why, reason end
      error("bad argument #4 to 'server' (tls: " .. why .. ")", 2)
    end
  end

  local local_opts = {}
  for k, v in pairs(opts) do local_opts[k] = v end
  local_opts.threads, local_opts.init, local_opts.tls = nil, nil, nil

  local srv = setmetatable({ workers = {}, running = 0, handed = 0 }, ThreadedServer)
  local workers = srv.workers
  local listener, lerr = server_mod.server(ip, port, function(c)
    local w = pick(workers)
    local fd = w and C.luaasio_conn_detach(loop, c.h)
    if not w or fd < 0 then c:close(); return end
    c.h = 0   -- the socket now belongs to the worker
    local msg = encode_simple(tonumber(fd))
    if C.luaasio_channel_send(loop, w.ch.id, msg, #msg, -1) ~= 0 then
      C.luaasio_socket_close(fd)
      return
    end
    srv.handed = srv.handed + 1
    w.handed = w.handed + 1
  end, local_opts)
  if not listener then return nil, lerr end
  srv.listener = listener
  local lport = listener:port()
  srv.errors = M.channel(4096)
  relay_errors(srv.errors)

  for i = 1, n do
    local ch = M.channel(65536)
    local payload = encode({ 'the kind', 'the handler', 'init' }, 'server', handler, init, i, ch,
      srv.errors, opts.reuseport and ip or false, lport, ip, tls_opts)
    local token = new_token()
    local h = start_worker(token, payload)
    if h < 0 then
      srv:close()
      return nil, strerror(h)
    end
    local rec = { h = h, token = token, server = srv, index = i }
    workers[i] = { h = h, ch = ch, handed = 0, rec = rec }
    track(rec, function(r)
      local w = workers[i]
      w.gone = true
      -- Sockets handed over that the worker never took are closed here.
      w.ch:close()
      while true do
        local fd = w.ch:receive()
        if fd == nil then break end
        C.luaasio_socket_close(fd)
      end
      server_done(r)
    end)
    srv.running = srv.running + 1
  end
  return srv
end

function ThreadedServer:port()
  if getmetatable(self) ~= ThreadedServer then selferr('port', 'server', self) end
  if self.closed then return nil, 'closed' end
  return self.listener:port()
end

-- Stops accepting on every worker. Workers finish the connections they
-- hold, then end; run() waits for them.
function ThreadedServer:close()
  if getmetatable(self) ~= ThreadedServer then selferr('close', 'server', self) end
  if self.closed then return true end
  self.closed = true
  self.listener:close()
  for _, w in ipairs(self.workers) do w.ch:close() end
  if self.running == 0 then self.errors:close() end
  return true
end

-- Per-worker figures: connections handed to it, open objects now.
function ThreadedServer:stats()
  if getmetatable(self) ~= ThreadedServer then selferr('stats', 'server', self) end
  local t = { handed = self.handed, workers = {} }
  for i, w in ipairs(self.workers) do
    t.workers[i] = {
      handed = w.handed,
      open = (w.h and not w.gone) and C.luaasio_thread_load(loop, w.h) or 0,
      running = not w.gone,
    }
  end
  return t
end

---------------------------------------------------------------------------
-- Inside a worker
---------------------------------------------------------------------------

local function serve_worker(handler, init, index, ch, errors, reuse_ip, port, ip, tls_opts)
  local asio = require 'asio'
  -- Never waits: a report that finds the channel full is dropped.
  local function send_error(msg)
    local data = encode_simple(format('asio: worker %d: %s', index, msg))
    C.luaasio_channel_send(loop, errors.id, data, #data, -1)
  end
  asio.on_error(function(err, trace) send_error(tostring(trace or err)) end)
  if init ~= nil then
    local ok, err
    if type(init) == 'string' then ok, err = pcall(require, init)
    else ok, err = pcall(init) end
    if not ok then error('init failed: ' .. require('asio.sched').describe(err), 0) end
  end
  -- Connections handed over are reported to this loop as accept events of
  -- a server record of its own, so the handler runs exactly as it would for
  -- a server of this state: outside any light thread, errors reported as
  -- server handler errors.
  local token = THREAD_BASE + 0x1fffffff   -- one per worker state
  local host = find(ip, ':', 1, true) and '[' .. ip .. ']' or ip
  local rec = { h = 0, handler = handler, token = token, label = host .. ':' .. port }
  if tls_opts then
    local tls = require 'asio.tls'
    local o = tls.check_opts('server', 4, tls_opts, true)
    local ctx, why = tls.server_context(o)
    if not ctx then error('tls: ' .. tostring(why), 0) end
    rec.tls_ctx, rec.tls_timeout = ctx, o.timeout or tls.DEFAULT_HANDSHAKE_TIMEOUT
  end
  S.servers[token] = rec
  S.nservers = S.nservers + 1
  local rsrv
  if reuse_ip then
    local e
    rsrv, e = asio.server(reuse_ip, port, handler, { reuseport = true, tls = tls_opts })
    if not rsrv then error('cannot listen with reuseport: ' .. tostring(e), 0) end
  end
  asio.spawn_light_thread(function()
    while true do
      local fd = ch:receive()
      if fd == nil then break end
      if C.luaasio_conn_adopt(loop, fd, token) < 0 then C.luaasio_socket_close(fd) end
    end
    if rsrv then rsrv:close() end
    S.servers[token] = nil
    S.nservers = S.nservers - 1
  end)
  asio.run()
end

local function pack(...) return { n = select('#', ...), ... } end

local function call_worker(fn, ...)
  local asio = require 'asio'
  local res
  asio.spawn_light_thread(function(...)
    res = pack(pcall(fn, ...))
  end, ...)
  asio.run()
  if not res then return false, 'stopped' end
  return unpack(res, 1, res.n)
end

-- The entry point of a worker state (see BOOT). Returns the encoded
-- results; an error raised here reaches the owner as the thread's error.
function M.worker_main(payload)
  local vals = decode(payload)
  local kind = vals[1]
  if kind == 'call' then
    local r = pack(call_worker(vals[2], unpack(vals, 3, vals.n)))
    if not r[1] then error(tostring(r[2]), 0) end
    local ok, data = pcall(encode, 'the results', unpack(r, 2, r.n))
    if not ok then error(data, 0) end
    return data
  elseif kind == 'server' then
    serve_worker(unpack(vals, 2, vals.n))
    return encode('nothing')
  end
  error('asio: unknown worker kind ' .. tostring(kind), 0)
end

return M
