-- Servers: listening sockets whose accepted connections each start a
-- light thread running the handler.
--
-- An open server is held by S.servers until close(): dropping the value
-- asio.server returned neither closes it nor lets run() return. The
-- finalizer on `ref` only closes what is still open when the Lua state
-- itself closes.

local ffi = require 'ffi'
local lib = require 'asio.lib'
local S = require 'asio.state'
local sched = require 'asio.sched'
local check = require 'asio.check'
local conn = require 'asio.conn'
local tls = require 'asio.tls'

local C, strerror = lib.C, lib.strerror
local ffi_gc = ffi.gc
local sub, find = string.sub, string.find
local type, tostring, error = type, tostring, error
local setmetatable, getmetatable = setmetatable, getmetatable
local argerr, selferr, is_count, check_port =
  check.argerr, check.selferr, check.is_count, check.check_port
local report = sched.report
local new_conn = conn.new

local loop = S.loop
local SERVER_BIT = S.SERVER_BIT
local ref_t = ffi.typeof('int32_t[1]')
local server_seq = 0

local Server = {}
Server.__index = Server

local function close_server(token)
  local rec = S.servers[token]
  if not rec then return end
  S.servers[token] = nil
  S.nservers = S.nservers - 1
  if S.loop_alive then C.luaasio_close(loop, rec.h) end
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
  return debug.traceback(sched.describe(err), 2)
end

-- The handler runs on the loop, not in a light thread. If it raises, the
-- error is reported as the server's, and the connection is closed unless
-- the handler handed it on first: a light thread it started still runs.
local function call_handler(rec, c)
  local threads = S.nthreads
  local ok, trace = xpcall(rec.handler, traceback, c)
  if not ok then
    report(handler_error, trace, 'server handler on ' .. rec.label)
    if S.nthreads <= threads then c:close() end
  end
end

-- With opts.tls the handshake runs first, in a light thread of its own;
-- the handler is then called from that thread, with the connection ready.
-- A failed handshake closes the connection without calling the handler.
local function tls_accept(rec, c)
  if tls.accept(c, rec.tls_ctx, rec.tls_timeout) then call_handler(rec, c) end
end

local function on_accept(rec, h)
  local c = new_conn(h)
  if rec.tls_ctx then
    sched.spawn_light_thread(tls_accept, rec, c)
    return
  end
  call_handler(rec, c)
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
  local backlog, flags, tls_opts = 0, 0, nil
  if opts then
    if opts.backlog ~= nil then
      if not (is_count(opts.backlog) and opts.backlog < 2 ^ 31) then
        error("bad argument #" .. (hn + 1) .. " to 'server' (backlog must be a non-negative integer)", 2)
      end
      backlog = opts.backlog
    end
    if opts.max_connections ~= nil and
        not (is_count(opts.max_connections) and opts.max_connections < 2 ^ 31) then
      error("bad argument #" .. (hn + 1) .. " to 'server' (max_connections must be a non-negative integer)", 2)
    end
    if opts.tls ~= nil then
      tls_opts = tls.check_opts('server', hn + 1, opts.tls, true)
    end
    if opts.reuseport then flags = flags + C.LUAASIO_SERVER_REUSEPORT end
    if opts.ipv6_only then flags = flags + C.LUAASIO_SERVER_V6ONLY end
  end
  local tls_ctx
  if tls_opts then
    local why, reason
    tls_ctx, why, reason = tls.server_context(tls_opts)
    if not tls_ctx then
      if why == 'tls not available' then return nil, why, reason end
      error("bad argument #" .. (hn + 1) .. " to 'server' (tls: " .. why .. ")", 2)
    end
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
  if opts and opts.max_connections and opts.max_connections > 0 then
    C.luaasio_server_set_max(loop, h, opts.max_connections)
  end
  local label
  if unix then
    label = ip
  else
    local host = hosts[ip] or ip
    if find(host, ':', 1, true) then host = '[' .. host .. ']' end
    label = host .. ':' .. C.luaasio_server_port(loop, h)
  end
  local rec = { h = h, handler = handler, token = token, label = label, tls_ctx = tls_ctx,
    tls_timeout = tls_opts and (tls_opts.timeout or tls.DEFAULT_HANDSHAKE_TIMEOUT) }
  local ref = ref_t(token)
  ffi_gc(ref, server_gc)
  local srv = setmetatable({ ref = ref, rec = rec }, Server)
  rec.srv = srv   -- held while open
  S.servers[token] = rec
  S.nservers = S.nservers + 1
  return srv
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

S.on_accept = on_accept

return { server = server, Server = Server }
