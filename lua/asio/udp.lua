-- Datagram (UDP) sockets: asio.udp. Receiving and sending first try the
-- kernel without waiting (one FFI call); only if it has nothing (or no room)
-- does the light thread join the socket's queue for that direction, arm a
-- readiness wait in C and park. The queue makes many receivers (or senders)
-- on one socket take turns, first come first served: only its head waits in
-- C, and whoever leaves the head hands the turn on.

local ffi = require 'ffi'
local lib = require 'asio.lib'
local S = require 'asio.state'
local sched = require 'asio.sched'
local check = require 'asio.check'
local connect = require 'asio.connect'

local C, strerror = lib.C, lib.strerror
local ffi_string, istype = ffi.string, ffi.istype
local type, tostring, error, pairs = type, tostring, error, pairs
local argerr, outside, is_count, check_port, check_timeout =
  check.argerr, check.outside, check.is_count, check.check_port, check.check_timeout
local must_park, park, next_token, wake_later =
  sched.must_park, sched.park, sched.next_token, sched.wake_later

local EAGAIN, ECLOSED, ETIMEDOUT = C.LUAASIO_EAGAIN, C.LUAASIO_ECLOSED, C.LUAASIO_ETIMEDOUT
local EBADADDR, ENOTSUP = C.LUAASIO_EBADADDR, C.LUAASIO_ENOTSUP
local WAIT_READ, WAIT_WRITE = C.LUAASIO_WAIT_READ, C.LUAASIO_WAIT_WRITE
local FLAG_TRUNCATED = C.LUAASIO_UDP_FLAG_TRUNCATED
local loop, rbuf, BUFSIZE = S.loop, S.rbuf, S.BUFSIZE
local abuf, ADDRSIZE, iport = S.abuf, S.ADDRSIZE, S.iport
-- The largest datagram IPv4 or IPv6 can carry (without jumbograms).
local MAX_DATAGRAM = 65535

if not pcall(ffi.typeof, 'struct luaasio_lua_udp') then
  ffi.cdef [[
struct luaasio_lua_udp {
  int32_t h;        /* handle; 0 once closed */
  int32_t limit;    /* longest datagram returned whole */
  int32_t nread;    /* light threads queued to receive */
  int32_t nwrite;   /* light threads queued to send */
  double rto, wto;  /* timeouts in seconds, < 0 for none */
};
]]
end

-- What the last receive said about its datagram: filled by C during the
-- call and read before anything can yield.
local from = ffi.new('luaasio_udp_from')

local Udp = {}
local queue_of = { [WAIT_READ] = {}, [WAIT_WRITE] = {} } -- dir -> handle -> queue

local function forget(h)
  queue_of[WAIT_READ][h] = nil
  queue_of[WAIT_WRITE][h] = nil
end

local udp_t = ffi.metatype('struct luaasio_lua_udp', {
  __index = Udp,
  __gc = function(u)
    local h = u.h
    if h ~= 0 and S.loop_alive then
      u.h = 0
      forget(h)
      C.luaasio_close(loop, h)
    end
  end,
  __tostring = function(u)
    return u.h ~= 0 and ('asio udp socket #' .. u.h) or 'asio udp socket (closed)'
  end,
})

local function check_udp(self, fname)
  if not istype(udp_t, self) then
    error(("calling '%s' on bad self (udp socket expected, got %s)"):format(fname, type(self)), 3)
  end
end

---------------------------------------------------------------------------
-- Taking turns
---------------------------------------------------------------------------

-- A queue is { head = i, tail = j, [i..j] = slot or false (left early) }.
local function first(q)
  local i, tail = q.head, q.tail
  while i <= tail and not q[i] do q[i] = nil; i = i + 1 end
  if i > tail then q.head, q.tail = 1, 0; return nil end
  q.head = i
  return q[i], i
end

local function leave(u, q, i, dir)
  q[i] = false
  if dir == WAIT_READ then u.nread = u.nread - 1 else u.nwrite = u.nwrite - 1 end
  if i == q.head then
    local nxt = first(q)
    if nxt then wake_later(nxt, 0) end
  end
end

-- The operation of each direction, into the shared buffer and `from`.
local function attempt(u, dir, data, ip, port)
  if dir == WAIT_READ then return C.luaasio_udp_recv(loop, u.h, rbuf, u.limit, from) end
  return C.luaasio_udp_send(loop, u.h, data, #data, ip, port)
end

-- Queues light thread `s` for direction `dir` and runs the operation once it
-- is at the head, waiting for readiness while the kernel says "would block".
-- Returns what the operation returned, or ETIMEDOUT / ECLOSED.
local function take_turn(u, s, dir, timeout, data, ip, port)
  must_park(s)
  local h = u.h
  local qs = queue_of[dir]
  local q = qs[h]
  if not q then q = { head = 1, tail = 0 }; qs[h] = q end
  local i = q.tail + 1
  q.tail, q[i] = i, s
  if dir == WAIT_READ then u.nread = u.nread + 1 else u.nwrite = u.nwrite + 1 end
  local deadline = timeout >= 0 and C.luaasio_now() + timeout or nil
  local r = 0
  S.th_obj[s] = u   -- for asio.kill (forget_udp below)
  if first(q) ~= s then
    r = park(s, next_token(s), deadline, true)
  end
  while r == 0 do
    if u.h == 0 then r = ECLOSED; break end
    r = attempt(u, dir, data, ip, port)
    if r ~= EAGAIN then break end
    local token = next_token(s)
    r = C.luaasio_udp_wait(loop, h, dir, token)
    if r == 0 then
      r = park(s, token, deadline, true)
      if r == ETIMEDOUT and u.h ~= 0 then
        C.luaasio_udp_unwait(loop, h, dir)
        -- The deadline may have passed while other threads ran, with the
        -- datagram (or the room) already there: a timeout means "nothing".
        local again = attempt(u, dir, data, ip, port)
        if again ~= EAGAIN then r = again; break end
      end
    end
  end
  S.th_obj[s] = false
  leave(u, q, i, dir)
  return r
end

-- asio.kill of a light thread parked in take_turn: withdraws its wait in C
-- (if it was the head) and its place in the line, handing the turn on.
S.forget_udp = function(u, s)
  for dir, qs in pairs(queue_of) do
    local q = u.h ~= 0 and qs[u.h]
    if q then
      for i = q.head, q.tail do
        if q[i] == s then
          if i == q.head then C.luaasio_udp_unwait(loop, u.h, dir) end
          leave(u, q, i, dir)
        end
      end
    end
  end
end

---------------------------------------------------------------------------
-- Receiving
---------------------------------------------------------------------------

local function timeout_arg(n, fname, v, default)
  if v == nil then return default end
  return check_timeout(n, fname, v) or -1
end

local function received(u, r, with_address)
  if r < 0 then return nil, strerror(r) end
  local flags = from.flags
  local data = ffi_string(rbuf, r)
  if not with_address then
    if flags % 2 == FLAG_TRUNCATED then return nil, 'datagram truncated', data end
    return data
  end
  local ip, port = ffi_string(from.ip, from.iplen), from.port
  if flags == 0 then return data, ip, port end
  if flags % 2 == FLAG_TRUNCATED then return nil, 'datagram truncated', data, ip, port end
  return data, ip, port, ffi_string(from.origdst, 128)
end

function Udp:recvfrom(timeout)
  local s = S.current
  if not istype(udp_t, self) then check_udp(self, 'recvfrom') end
  timeout = timeout_arg(1, 'recvfrom', timeout, self.rto)
  if not s then outside('recvfrom') end
  local h = self.h
  if h == 0 then return nil, 'closed' end
  local r = EAGAIN
  if self.nread == 0 then r = C.luaasio_udp_recv(loop, h, rbuf, self.limit, from) end
  if r == EAGAIN then r = take_turn(self, s, WAIT_READ, timeout) end
  return received(self, r, true)
end

function Udp:recv(timeout)
  local s = S.current
  if not istype(udp_t, self) then check_udp(self, 'recv') end
  timeout = timeout_arg(1, 'recv', timeout, self.rto)
  if not s then outside('recv') end
  local h = self.h
  if h == 0 then return nil, 'closed' end
  local r = EAGAIN
  if self.nread == 0 then r = C.luaasio_udp_recv(loop, h, rbuf, self.limit, from) end
  if r == EAGAIN then r = take_turn(self, s, WAIT_READ, timeout) end
  return received(self, r, false)
end

---------------------------------------------------------------------------
-- Sending
---------------------------------------------------------------------------

local function check_data(fname, data)
  if type(data) ~= 'string' then
    if type(data) ~= 'number' then argerr(1, fname, 'string', data, 4) end
    data = tostring(data)
  end
  return data
end

-- Sends to an IP literal (ip == nil: the connected peer); an error code or
-- the length sent.
local function send(u, s, data, ip, port)
  if #data > MAX_DATAGRAM then return C.LUAASIO_EMSGSIZE end
  local r = EAGAIN
  if u.nwrite == 0 then r = C.luaasio_udp_send(loop, u.h, data, #data, ip, port) end
  if r == EAGAIN then r = take_turn(u, s, WAIT_WRITE, u.wto, data, ip, port) end
  return r
end

-- Address arguments: (ip, port) or a sockaddr string alone. Returns ip and
-- port, raising for bad types and ports.
local function address_args(n, fname, ip, port, allow_zero)
  if type(ip) ~= 'string' then argerr(n, fname, 'string', ip, 4) end
  if port == nil and (#ip == 16 or #ip == 28 or #ip == 128) then
    local fam = C.luaasio_sockaddr_parse(ip, #ip, abuf, ADDRSIZE, iport)
    if fam > 0 then return ffi_string(abuf), iport[0] end
  end
  return ip, check_port(n + 1, fname, port, allow_zero)
end

local hosts = { localhost = '127.0.0.1', ['*'] = '0.0.0.0' }

-- Runs `op(ip, ...)` for an IP literal; for a name, resolves it (in a
-- light thread) and tries its addresses until one suits the socket's family.
-- Returns op's result, or the resolver's error string.
local function with_address(ip, op, a, b, c, d)
  ip = hosts[ip] or ip
  local r = op(ip, a, b, c, d)
  if r ~= EBADADDR or not S.current then return r end
  local list, err = connect.resolve(ip)
  if not list then return err end
  for i = 1, #list do
    r = op(list[i], a, b, c, d)
    if r ~= ENOTSUP then return r end
  end
  return r
end

local function send_op(ip, u, s, data, port) return send(u, s, data, ip, port) end
local function bind_op(ip, u, port) return C.luaasio_udp_bind(loop, u.h, ip, port) end
local function connect_op(ip, u, port) return C.luaasio_udp_connect(loop, u.h, ip, port) end

local function result(r)
  if type(r) == 'string' then return nil, r end
  if r < 0 then return nil, strerror(r) end
  return true
end

function Udp:sendto(data, ip, port)
  local s = S.current
  if not istype(udp_t, self) then check_udp(self, 'sendto') end
  data = check_data('sendto', data)
  ip, port = address_args(2, 'sendto', ip, port, false)
  if not s then outside('sendto') end
  if self.h == 0 then return nil, 'closed' end
  if self.nwrite == 0 and #data <= MAX_DATAGRAM then
    local r = C.luaasio_udp_send(loop, self.h, data, #data, ip, port)
    if r >= 0 then return true end
    if r ~= EAGAIN and r ~= EBADADDR then return nil, strerror(r) end
  end
  return result(with_address(ip, send_op, self, s, data, port))
end

function Udp:send(data)
  local s = S.current
  if not istype(udp_t, self) then check_udp(self, 'send') end
  data = check_data('send', data)
  if not s then outside('send') end
  if self.h == 0 then return nil, 'closed' end
  local r = send(self, s, data, nil, 0)
  if r < 0 then return nil, strerror(r) end
  return true
end

---------------------------------------------------------------------------
-- Addresses, options, groups, closing
---------------------------------------------------------------------------

function Udp:bind(ip, port)
  check_udp(self, 'bind')
  ip, port = address_args(1, 'bind', ip, port, true)
  if self.h == 0 then return nil, 'closed' end
  return result(with_address(ip, bind_op, self, port))
end

function Udp:connect(ip, port)
  check_udp(self, 'connect')
  ip, port = address_args(1, 'connect', ip, port, false)
  if self.h == 0 then return nil, 'closed' end
  return result(with_address(ip, connect_op, self, port))
end

function Udp:local_address()
  check_udp(self, 'local_address')
  if self.h == 0 then return nil, 'closed' end
  local r = C.luaasio_udp_address(loop, self.h, abuf, ADDRSIZE, iport)
  if r < 0 then return nil, strerror(r) end
  return ffi_string(abuf, r), iport[0]
end

function Udp:settimeout(sec)
  check_udp(self, 'settimeout')
  sec = check_timeout(1, 'settimeout', sec) or -1
  self.rto, self.wto = sec, sec
  return true
end

local options = {
  broadcast = { C.LUAASIO_UDP_BROADCAST, 'boolean' },
  reuseaddr = { C.LUAASIO_UDP_REUSEADDR, 'boolean' },
  reuseport = { C.LUAASIO_UDP_REUSEPORT, 'boolean' },
  sndbuf = { C.LUAASIO_UDP_SNDBUF, 'size' },
  rcvbuf = { C.LUAASIO_UDP_RCVBUF, 'size' },
  ttl = { C.LUAASIO_UDP_TTL, 'hops' },
  multicast_ttl = { C.LUAASIO_UDP_MULTICAST_TTL, 'hops' },
  multicast_loop = { C.LUAASIO_UDP_MULTICAST_LOOP, 'boolean' },
  ipv6_only = { C.LUAASIO_UDP_IPV6_ONLY, 'boolean' },
  transparent = { C.LUAASIO_UDP_TRANSPARENT, 'boolean' },
}

-- The option's C value, raising (blaming `level`) for a bad one.
local function option_value(fname, n, name, value)
  local o = options[name]
  if not o then error(("bad argument #%d to '%s' (unknown option '%s')"):format(n, fname, tostring(name)), 4) end
  local kind = o[2]
  if kind == 'boolean' then
    if type(value) ~= 'boolean' then argerr(n + 1, fname, 'boolean', value, 5) end
    return o[1], value and 1 or 0
  elseif kind == 'size' then
    if not (is_count(value) and value > 0 and value < 2 ^ 31) then argerr(n + 1, fname, 'positive integer', value, 5) end
  elseif not (is_count(value) and value <= 255) then
    argerr(n + 1, fname, 'integer 0..255', value, 5)
  end
  return o[1], value
end

function Udp:setoption(name, value)
  check_udp(self, 'setoption')
  if type(name) ~= 'string' then argerr(1, 'setoption', 'string', name) end
  local code, v = option_value('setoption', 1, name, value)
  if self.h == 0 then return nil, 'closed' end
  return result(C.luaasio_udp_setoption(loop, self.h, code, v))
end

local function group(self, fname, join, grp, iface)
  if type(grp) ~= 'string' then argerr(1, fname, 'string', grp, 4) end
  if iface ~= nil and type(iface) ~= 'string' then
    if type(iface) ~= 'number' then argerr(2, fname, 'string or nil', iface, 4) end
    iface = tostring(iface)
  end
  if self.h == 0 then return nil, 'closed' end
  return result(C.luaasio_udp_group(loop, self.h, join, grp, iface))
end

function Udp:join_group(grp, iface)
  check_udp(self, 'join_group')
  return group(self, 'join_group', 1, grp, iface)
end

function Udp:leave_group(grp, iface)
  check_udp(self, 'leave_group')
  return group(self, 'leave_group', 0, grp, iface)
end

function Udp:close()
  check_udp(self, 'close')
  local h = self.h
  if h == 0 then return true end
  self.h = 0
  C.luaasio_close(loop, h)
  for dir = WAIT_READ, WAIT_WRITE do
    local q = queue_of[dir][h]
    if q then
      for i = q.head, q.tail do
        if q[i] then wake_later(q[i], ECLOSED) end
      end
    end
  end
  forget(h)
  return true
end

---------------------------------------------------------------------------
-- asio.udp
---------------------------------------------------------------------------

local families = { inet = C.LUAASIO_FAMILY_INET, inet6 = C.LUAASIO_FAMILY_INET6 }
local known = { family = true, recvsize = true, bind = true }

local function udp(opts)
  local family, limit = C.LUAASIO_FAMILY_ANY, MAX_DATAGRAM
  local settings = {}
  if opts ~= nil then
    if type(opts) ~= 'table' then argerr(1, 'udp', 'table or nil', opts) end
    for k, v in pairs(opts) do
      if not known[k] then
        if type(k) ~= 'string' or not options[k] then
          error(("bad argument #1 to 'udp' (unknown option '%s')"):format(tostring(k)), 2)
        end
        local code, value = option_value('udp', 1, k, v)
        settings[#settings + 1] = code
        settings[#settings + 1] = value
      end
    end
    if opts.family ~= nil then
      family = families[opts.family]
      if not family then error("bad argument #1 to 'udp' (family must be 'inet' or 'inet6')", 2) end
    end
    if opts.recvsize ~= nil then
      limit = opts.recvsize
      if not (is_count(limit) and limit >= 1 and limit <= MAX_DATAGRAM) then
        error("bad argument #1 to 'udp' (recvsize must be an integer from 1 to 65535)", 2)
      end
    end
    if opts.bind ~= nil and type(opts.bind) ~= 'string' then
      error("bad argument #1 to 'udp' (bind must be a sockaddr string)", 2)
    end
  end
  local h = C.luaasio_udp_open(loop, family)
  if h < 0 then return nil, strerror(h) end
  local u = udp_t(h, limit, 0, 0, -1, -1)
  for i = 1, #settings, 2 do
    local r = C.luaasio_udp_setoption(loop, h, settings[i], settings[i + 1])
    if r < 0 then u:close(); return nil, strerror(r) end
  end
  if opts and opts.bind then
    local fam = C.luaasio_sockaddr_parse(opts.bind, #opts.bind, abuf, ADDRSIZE, iport)
    local r = fam < 0 and fam or C.luaasio_udp_bind(loop, h, abuf, iport[0])
    if r < 0 then u:close(); return nil, strerror(r) end
  end
  return u
end

assert(BUFSIZE >= MAX_DATAGRAM, 'the shared buffer must hold the largest datagram')

return { udp = udp, Udp = Udp, udp_t = udp_t }
