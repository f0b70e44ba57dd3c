-- TLS on connections: conn:tls_handshake, asio.connect(..., {tls = ...}),
-- servers with {tls = ...}, conn:tls_info and conn:tls_session.
--
-- The TLS library (libluaasio_tls) is separate from the core and is loaded
-- on first use, so a program that never uses TLS needs no TLS library at
-- all. A TLS session works directly on the connection's socket, without
-- blocking: a read or write that cannot proceed returns "wait until
-- readable" or "wait until writable", and the light thread waits for that
-- exactly as a plain read or write does (asio.conn calls tls_recv and
-- tls_send below instead of the socket calls once conn.tls is set).

local ffi = require 'ffi'
local lib = require 'asio.lib'
local S = require 'asio.state'
local sched = require 'asio.sched'
local check = require 'asio.check'
local conn = require 'asio.conn'

local C, strerror = lib.C, lib.strerror
local ffi_string, ffi_gc = ffi.string, ffi.gc
local type, error, tostring, pairs, ipairs = type, error, tostring, pairs, ipairs
local concat, char = table.concat, string.char
local argerr, outside, check_timeout = check.argerr, check.outside, check.check_timeout
local must_park, park, next_token = sched.must_park, sched.park, sched.next_token
local Conn, conn_t, wait_io, release_turn, deadline_of =
  conn.Conn, conn.conn_t, conn.wait_io, conn.release_turn, conn.deadline_of

local loop, rbuf = S.loop, S.rbuf
local EAGAIN, EOF, ECLOSED = C.LUAASIO_EAGAIN, C.LUAASIO_EOF, C.LUAASIO_ECLOSED
local ETIMEDOUT, ENOTLS = C.LUAASIO_ETIMEDOUT, C.LUAASIO_ENOTLS
local WAIT_READ, WAIT_WRITE = C.LUAASIO_WAIT_READ, C.LUAASIO_WAIT_WRITE

local M = {}

-- Sessions by connection handle (a pooled handle keeps its session), and
-- how each one's stream ended ('close_notify' or 'truncated').
local tls_of, eof_of = {}, {}
S.tls_of = tls_of

-- asio.relay moves a plain connection's bytes natively; a TLS connection's
-- must pass through the TLS library, so it relays those in Lua.
S.conn_is_plain = function(c) return c.tls == 0 end

---------------------------------------------------------------------------
-- Loading the library

local T              -- the library, once loaded
local load_error     -- why it could not be, once tried
local WANT_WRITE     -- LUAASIO_ETLS_WANT_WRITE
local errbuf = ffi.new('char[?]', 512)

-- The library, or nil and why not. It is looked for next to the core
-- library first (a build folder, or /usr/lib/lua), then next to asio.lua.
local function load()
  if T then return T end
  if load_error then return nil, load_error end
  local dirs = {}
  if lib.path then dirs[#dirs + 1] = lib.path:match('^(.*)[/\\][^/\\]*$') end
  dirs[#dirs + 1] = lib.lua_dir
  local l, tried = lib.load_first(lib.candidates('luaasio_tls', 'LUAASIO_TLS_LIB', dirs), function(l)
    if not pcall(ffi.typeof, 'luaasio_tls_ctx') then
      ffi.cdef('const char *luaasio_tls_cdef(void);')
      ffi.cdef(ffi_string(l.luaasio_tls_cdef()))
    end
    local v = l.luaasio_tls_abi_version()
    if v ~= 1 then return 'ABI version ' .. v .. ', expected 1' end
  end)
  if not l then
    load_error = #tried > 0 and concat(tried, '; ') or 'libluaasio_tls not found'
    return nil, load_error
  end
  T = l
  WANT_WRITE = T.LUAASIO_ETLS_WANT_WRITE
  return T
end

-- asio.tls_available(): true and the backend ("OpenSSL 3.0.19",
-- "mbed TLS 2.28.3"), or false and why the TLS library cannot be loaded.
function M.available()
  local t, err = load()
  if not t then return false, err end
  return true, ffi_string(t.luaasio_tls_backend())
end

---------------------------------------------------------------------------
-- Contexts: the settings shared by many sessions

local SET = {}

local function ctx_set(ctx, what, value)
  local r = T.luaasio_tls_ctx_set(ctx, what, value, #value, errbuf, 512)
  if r ~= 0 then return nil, ffi_string(errbuf) end
  return true
end

local function alpn_wire(list)
  local parts = {}
  for i, p in ipairs(list) do parts[i] = char(#p) .. p end
  return concat(parts)
end

-- Builds a context from checked options; nil and the reason on failure.
local function new_context(server, o)
  local ctx = T.luaasio_tls_ctx_new(server and 1 or 0, errbuf, 512)
  if ctx == nil then return nil, ffi_string(errbuf) end
  ctx = ffi_gc(ctx, T.luaasio_tls_ctx_free)
  local steps = {}
  if o.cert then steps[#steps + 1] = { T.LUAASIO_TLS_CERT, o.cert } end
  if o.key then steps[#steps + 1] = { T.LUAASIO_TLS_KEY, o.key } end
  if o.ca then
    steps[#steps + 1] = { T.LUAASIO_TLS_CA, o.ca }
  elseif not server and o.verify then
    steps[#steps + 1] = { T.LUAASIO_TLS_CA_DEFAULT, '' }
  end
  steps[#steps + 1] = { T.LUAASIO_TLS_VERIFY, o.verify_mode }
  if o.alpn then steps[#steps + 1] = { T.LUAASIO_TLS_ALPN, alpn_wire(o.alpn) } end
  if o.min_version then steps[#steps + 1] = { T.LUAASIO_TLS_MIN_VERSION, o.min_version } end
  if o.max_version then steps[#steps + 1] = { T.LUAASIO_TLS_MAX_VERSION, o.max_version } end
  if o.ciphers then steps[#steps + 1] = { T.LUAASIO_TLS_CIPHERS, o.ciphers } end
  for _, st in ipairs(steps) do
    local ok, err = ctx_set(ctx, st[1], st[2])
    if not ok then return nil, err end
  end
  return ctx
end

-- Client contexts are kept by their settings: loading the CA store once,
-- not per connection, is most of what a handshake costs a client.
local client_ctx, nclient_ctx = {}, 0

local function client_context(o)
  local key = concat({ o.cert or '', o.key or '', o.ca or '', o.verify_mode,
    o.alpn and concat(o.alpn, ',') or '', o.min_version or '', o.max_version or '',
    o.ciphers or '' }, '\0')
  local ctx = client_ctx[key]
  if ctx then return ctx end
  local err
  ctx, err = new_context(false, o)
  if not ctx then return nil, err end
  if nclient_ctx >= 32 then client_ctx, nclient_ctx = {}, 0 end
  client_ctx[key] = ctx
  nclient_ctx = nclient_ctx + 1
  return ctx
end

---------------------------------------------------------------------------
-- Options

local versions = { ['1.2'] = true, ['1.3'] = true }

-- Checks the options table `opts` of function `fname` (argument `n`) and
-- returns the settings; raises an error naming the option otherwise.
local function check_opts(fname, n, opts, server)
  if type(opts) ~= 'table' then argerr(n, fname, 'table', opts) end
  local function bad(field, what)
    error(("bad argument #%d to '%s' (tls.%s must be %s)"):format(n, fname, field, what), 4)
  end
  local o = {}
  for _, f in ipairs({ 'cert', 'key', 'ca', 'ciphers' }) do
    local v = opts[f]
    if v ~= nil then
      if type(v) ~= 'string' or v == '' then bad(f, 'a non-empty string') end
      o[f] = v
    end
  end
  if (o.cert == nil) ~= (o.key == nil) then bad(o.cert and 'key' or 'cert', 'given with tls.' .. (o.cert and 'cert' or 'key')) end
  if opts.alpn ~= nil then
    local a = opts.alpn
    if type(a) == 'string' then a = { a } end
    if type(a) ~= 'table' or #a == 0 then bad('alpn', 'a non-empty list of protocol names') end
    for i = 1, #a do
      if type(a[i]) ~= 'string' or #a[i] == 0 or #a[i] > 255 then
        bad('alpn', 'a list of names of 1 to 255 bytes')
      end
    end
    o.alpn = a
  end
  for _, f in ipairs({ 'min_version', 'max_version' }) do
    local v = opts[f]
    if v ~= nil then
      if not versions[v] then bad(f, "'1.2' or '1.3'") end
      o[f] = v
    end
  end
  o.timeout = check_timeout(n, fname, opts.timeout)
  if server then
    if not o.cert then bad('cert', 'given for a server (with tls.key)') end
    local vc = opts.verify_client
    if vc == nil or vc == false then
      o.verify_mode = '0'
    elseif vc == true then
      o.verify_mode = '1'
    elseif vc == 'optional' then
      o.verify_mode = '2'
    else
      bad('verify_client', "true, false or 'optional'")
    end
    if o.verify_mode ~= '0' and not o.ca then bad('ca', 'given with tls.verify_client') end
  else
    local v = opts.verify
    if v ~= nil and type(v) ~= 'boolean' then bad('verify', 'a boolean') end
    o.verify = v ~= false
    o.verify_mode = o.verify and '1' or '0'
    local sn = opts.server_name
    if sn ~= nil and sn ~= false and (type(sn) ~= 'string' or sn == '') then
      bad('server_name', 'a non-empty string or false')
    end
    o.server_name = sn
    if opts.session ~= nil and type(opts.session) ~= 'string' then bad('session', 'a string') end
    o.session = opts.session
  end
  return o
end
M.check_opts = check_opts

---------------------------------------------------------------------------
-- Waiting inside reads and writes

-- A read that must first send (the answer to a key update), or a write
-- that must first receive (a renegotiation), waits for the other direction.
-- That direction's wait may belong to another light thread (at most one
-- wait per direction exists); then this one polls briefly instead, and the
-- other thread's own operation moves the session on meanwhile.
local function wait_other(c, dir, timeout)
  local s = S.current
  local holder = dir == WAIT_READ and c.reader or c.writer
  local deadline = deadline_of(timeout)
  if holder ~= 0 and holder ~= s then
    local r = park(s, next_token(s), C.luaasio_now() + 0.002, false)
    if r == ETIMEDOUT then r = 0 end
    return r
  end
  return wait_io(c, s, dir, deadline)
end

local function note_eof(c, h, t)
  eof_of[h] = T.luaasio_tls_truncated(t) ~= 0 and 'truncated' or 'close_notify'
end

-- asio.conn's read for a TLS connection: > 0 bytes in `buf`, EAGAIN (wait
-- until readable) or an error code.
S.tls_recv = function(c, want, buf)
  local h = c.h
  local t = tls_of[h]
  c.drained = 0
  while true do
    local r = T.luaasio_tls_read(t, buf, want)
    if r > 0 then return r end
    if r == EAGAIN then
      C.luaasio_conn_read_blocked(loop, h)
      return EAGAIN
    end
    if r ~= WANT_WRITE then
      if r == EOF then note_eof(c, h, t) end
      return r
    end
    r = wait_other(c, WAIT_WRITE, c.rto)
    if r ~= 0 then return r end
    if c.h ~= h then return ECLOSED end
  end
end

-- asio.conn's write for a TLS connection: bytes taken, EAGAIN (wait until
-- writable, then pass the same bytes again) or an error code.
S.tls_send = function(c, data, off, len)
  local h = c.h
  local t = tls_of[h]
  while true do
    local r = T.luaasio_tls_write(t, data, off, len)
    if r >= 0 then return r end
    if r == WANT_WRITE then return EAGAIN end
    if r ~= EAGAIN then return r end
    r = wait_other(c, WAIT_READ, c.wto)
    if r ~= 0 then return r end
    if c.h ~= h then return ECLOSED end
  end
end

-- Ends the session of handle `h`: close() first sends close_notify if the
-- socket takes it now; the finalizer only frees.
S.tls_drop = function(h, notify)
  local t = tls_of[h]
  if not t then return end
  tls_of[h] = nil
  eof_of[h] = nil
  if notify then T.luaasio_tls_shutdown(t) end
  ffi_gc(t, nil)
  T.luaasio_tls_free(t)
end

-- conn:shutdown() on a TLS connection sends close_notify first, waiting
-- for room if it runs in a light thread.
S.tls_close_notify = function(c)
  local h = c.h
  local t = tls_of[h]
  local r = T.luaasio_tls_shutdown(t)
  if r == WANT_WRITE then
    local s = S.current
    if not s or c.writer ~= 0 then return nil, strerror(EAGAIN) end
    c.writer = s
    local deadline = deadline_of(c.wto)
    while r == WANT_WRITE do
      r = wait_io(c, s, WAIT_WRITE, deadline)
      if r == 0 then
        if c.h ~= h then r = ECLOSED else r = T.luaasio_tls_shutdown(t) end
      end
    end
    release_turn(c)
  end
  if r < 0 and r ~= EAGAIN then return nil, strerror(r) end
  return true
end

---------------------------------------------------------------------------
-- Handshakes

local function reason_of(t)
  local n = T.luaasio_tls_info(t, T.LUAASIO_TLS_INFO_REASON, rbuf, 256)
  return n > 0 and ffi_string(rbuf, n) or nil
end

-- Runs the handshake of a session just attached to `c`: true, or nil, the
-- error string and the reason.
local function run_handshake(c, s, t, deadline)
  local h = c.h
  -- The handshake reads and writes: it holds both turns.
  c.reader, c.writer = s, s
  local r
  while true do
    r = T.luaasio_tls_handshake(t)
    if r == 0 then break end
    local dir
    if r == EAGAIN then
      C.luaasio_conn_read_blocked(loop, h)
      dir = WAIT_READ
    elseif r == WANT_WRITE then
      dir = WAIT_WRITE
    else
      break
    end
    r = wait_io(c, s, dir, deadline)
    if r == 0 and c.h ~= h then r = ECLOSED end
    if r ~= 0 then break end
  end
  if c.h ~= h then
    -- closed meanwhile: close() woke this thread and dropped the session
    return nil, 'closed'
  end
  c.reader = 0
  release_turn(c)
  if r == 0 then return true end
  local reason = reason_of(t)
  S.tls_drop(h, false)
  c.tls = 0
  return nil, strerror(r), reason
end

-- Attaches a session to `c` and runs the handshake.
local function handshake(c, s, ctx, server_name, session, deadline)
  local h = c.h
  local fd = C.luaasio_conn_native(loop, h)
  if fd < 0 then return nil, strerror(tonumber(fd)) end
  local t = T.luaasio_tls_new(ctx, fd, server_name, session, session and #session or 0, errbuf, 512)
  if t == nil then return nil, strerror(C.LUAASIO_ETLS), ffi_string(errbuf) end
  tls_of[h] = ffi_gc(t, T.luaasio_tls_free)
  c.tls = 1
  -- TLS writes bypass luaasio_conn_write, which turns Nagle's algorithm off
  -- before a connection's second write: do it here, as plain connections
  -- have it (a Unix socket refuses, which is fine).
  C.luaasio_conn_setoption(loop, h, C.LUAASIO_OPT_NODELAY, 1)
  return run_handshake(c, s, t, deadline)
end

-- The client side, for asio.connect: `host` is what was connected to.
function M.client(c, s, host, o, deadline)
  local ctx, err = client_context(o)
  if not ctx then error('tls: ' .. err, 3) end
  local sn = o.server_name
  if sn == nil then sn = host end
  if sn == false then sn = nil end
  if o.timeout then deadline = deadline_of(o.timeout) end
  return handshake(c, s, ctx, sn, o.session, deadline)
end

local function check_tls_conn(self, fname)
  if not ffi.istype(conn_t, self) then
    error(("calling '%s' on bad self (connection expected, got %s)"):format(fname, type(self)), 3)
  end
end

-- conn:tls_handshake(opts): starts TLS as a client on a connected
-- connection. opts.server_name defaults to nothing here (there is no host
-- name to take it from): pass it to have the certificate checked against
-- it, or verify = false.
function Conn:tls_handshake(opts)
  local s = S.current
  check_tls_conn(self, 'tls_handshake')
  local o = check_opts('tls_handshake', 1, opts == nil and {} or opts, false)
  if not s then outside('tls_handshake') end
  must_park(s, 'tls_handshake')
  if self.h == 0 then return nil, 'closed' end
  if self.tls ~= 0 then error("calling 'tls_handshake' on a connection that already uses TLS", 2) end
  if self.reader ~= 0 or self.writer ~= 0 then return nil, 'busy' end
  if self.pend ~= 0 then
    error("calling 'tls_handshake' on a connection with unread plaintext buffered", 2)
  end
  if not load() then return nil, strerror(ENOTLS), load_error end
  local ctx, err = client_context(o)
  if not ctx then error('tls_handshake: ' .. err, 2) end
  local sn = o.server_name or nil
  local deadline = deadline_of(o.timeout or (self.rto >= 0 and self.rto or -1))
  return handshake(self, s, ctx, sn, o.session, deadline)
end

-- conn:tls_info(): { version, cipher, subject, issuer, alpn, resumed,
-- backend, eof } of a TLS connection; nil if it does not use TLS.
function Conn:tls_info()
  check_tls_conn(self, 'tls_info')
  if self.h == 0 then return nil, 'closed' end
  local t = self.tls ~= 0 and tls_of[self.h]
  if not t then return nil end
  local function get(what)
    local n = T.luaasio_tls_info(t, what, rbuf, S.BUFSIZE)
    return n > 0 and ffi_string(rbuf, n) or nil
  end
  return {
    version = get(T.LUAASIO_TLS_INFO_VERSION),
    cipher = get(T.LUAASIO_TLS_INFO_CIPHER),
    subject = get(T.LUAASIO_TLS_INFO_SUBJECT),
    issuer = get(T.LUAASIO_TLS_INFO_ISSUER),
    alpn = get(T.LUAASIO_TLS_INFO_ALPN),
    resumed = T.luaasio_tls_resumed(t) == 1,
    backend = ffi_string(T.luaasio_tls_backend()),
    eof = eof_of[self.h],
  }
end

-- conn:tls_session(): the session as a string, to pass as opts.session of a
-- later connection to the same server; nil while there is none (with TLS
-- 1.3 the server sends it after the handshake: read something first).
function Conn:tls_session()
  check_tls_conn(self, 'tls_session')
  if self.h == 0 then return nil, 'closed' end
  local t = self.tls ~= 0 and tls_of[self.h]
  if not t then return nil end
  local n = T.luaasio_tls_session(t, rbuf, S.BUFSIZE)
  if n <= -1000 then return nil end
  if n < 0 then return nil end
  return ffi_string(rbuf, n)
end

---------------------------------------------------------------------------
-- Servers

-- The context of a server with opts.tls (checked options `o`): the context,
-- or nil and why not.
function M.server_context(o)
  if not load() then return nil, strerror(ENOTLS), load_error end
  local ctx, err = new_context(true, o)
  if not ctx then return nil, err end
  return ctx
end

M.DEFAULT_HANDSHAKE_TIMEOUT = 30

-- Runs in the light thread started for an accepted connection: true once
-- the handshake succeeded; otherwise the connection is closed.
function M.accept(c, ctx, timeout)
  local s = S.current
  local ok, err, reason = handshake(c, s, ctx, nil, nil, deadline_of(timeout))
  if ok then return true end
  -- The backend has sent its alert. Closing a socket that holds unread
  -- bytes (the rest of the client's flight) would reset the connection,
  -- and the reset can overtake the alert: read what is there first.
  local h = c.h
  if h ~= 0 then
    for _ = 1, 16 do
      if C.luaasio_conn_read(loop, h, rbuf, S.BUFSIZE) <= 0 then break end
    end
    C.luaasio_conn_shutdown(loop, h, C.LUAASIO_SHUT_WR)
  end
  c:close()
  return nil, err, reason
end

M.load = load
return M
