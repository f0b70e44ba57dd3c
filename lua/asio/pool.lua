-- Connection pools: conn:setkeepalive(), conn:getreusedtimes() and
-- asio.connect(host, port, {pool = ..., pool_size = ..., backlog = ...}).
--
-- A pool is keyed by the name the connection was opened with ("host:port",
-- "unix:/path", or opts.pool). Idle connections hold no light thread and no
-- armed wait: fitness is checked when one is taken out, with one
-- non-blocking read of one byte. "Would block" means fit; data (a reply
-- nobody read) or end-of-stream/an error means unfit, and the connection is
-- closed, never handed out. Idle timeouts are enforced by one sweeper light
-- thread, which exists only while some pool holds idle connections and
-- sleeps until the nearest idle deadline.

local lib = require 'asio.lib'
local S = require 'asio.state'
local sched = require 'asio.sched'
local sync = require 'asio.sync'
local check = require 'asio.check'
local conn = require 'asio.conn'
local connect_mod = require 'asio.connect'

local C = lib.C
local Conn, new_conn, check_conn = conn.Conn, conn.new, conn.check
local argerr, outside, is_count = check.argerr, check.outside, check.is_count
local sub = string.sub
local type, error, tostring, setmetatable, next = type, error, tostring, setmetatable, next
local now = C.luaasio_now
local EAGAIN = C.LUAASIO_EAGAIN
local loop, rbuf = S.loop, S.rbuf
local raw_connect = connect_mod.connect

local DEFAULT_IDLE = 60        -- seconds, when setkeepalive gets none
local DEFAULT_SIZE = 30        -- connections, when neither side names one

-- Per connection object: { key =, reused =, counted = pool or nil }.
local meta = setmetatable({}, { __mode = 'k' })
-- pools[key] = { idle = {h...}, dl = {deadline...}, n = idle count,
--   size =, total = counted connections (backlog mode), waiters = cond,
--   nwait =, reused = {reuse counts} }
local pools = {}
local nidle = 0
local sweeper_cv = nil          -- set while the sweeper runs

local function get_pool(key, size)
  local p = pools[key]
  if not p then
    p = { idle = {}, dl = {}, reused = {}, n = 0, size = size or DEFAULT_SIZE,
          total = 0, nwait = 0, waiters = sync.cond() }
    pools[key] = p
  elseif size and p.n == 0 and p.total == 0 then
    p.size = size
  end
  return p
end

local function drop_pool_if_empty(key, p)
  if p.n == 0 and p.total == 0 and p.nwait == 0 then pools[key] = nil end
end

-- Removes idle entry i of pool p, returning its handle and reuse count.
local function take(p, i)
  local h, r = p.idle[i], p.reused[i]
  local n = p.n
  p.idle[i], p.dl[i], p.reused[i] = p.idle[n], p.dl[n], p.reused[n]
  p.idle[n], p.dl[n], p.reused[n] = nil, nil, nil
  p.n = n - 1
  nidle = nidle - 1
  return h, r
end

-- A connection leaves a backlog-counted pool: let the next caller in line go.
local function uncount(p, key)
  p.total = p.total - 1
  if p.nwait > 0 then p.waiters:signal() end
  drop_pool_if_empty(key, p)
end

local function sweep()
  while nidle > 0 do
    local t, nearest = now(), nil
    for key, p in next, pools do
      local i = 1
      while i <= p.n do
        if p.dl[i] <= t then
          local h = take(p, i)
          S.tls_drop(h, false)
          C.luaasio_close(loop, h)
          if p.counted then uncount(p, key) end
        else
          if not nearest or p.dl[i] < nearest then nearest = p.dl[i] end
          i = i + 1
        end
      end
      drop_pool_if_empty(key, p)
    end
    if nearest then sweeper_cv:wait(nearest - t) end
  end
  sweeper_cv = nil
end

local function wake_sweeper()
  if sweeper_cv then sweeper_cv:signal()
  else
    sweeper_cv = sync.cond()
    sched.spawn_light_thread(sweep)
  end
end

-- Takes a fit idle connection out of pool p, closing unfit ones on the way.
-- Closes a pooled handle (and its TLS session, if it has one).
local function close_handle(h)
  S.tls_drop(h, false)
  C.luaasio_close(loop, h)
end

local function checkout(p, key)
  while p.n > 0 do
    local h, reused = take(p, p.n)
    local r = C.luaasio_conn_read(loop, h, rbuf, 1)
    if r == EAGAIN then
      local c = new_conn(h)
      meta[c] = { key = key, reused = reused + 1, counted = p.counted and p or nil }
      return c
    end
    -- Unread data, end of stream or an error: never hand it out.
    close_handle(h)
    if p.counted then uncount(p, key) end
  end
  return nil
end

-- TLS connections pool apart from plain ones to the same place.
local function pool_key(host, port, opts)
  if type(opts) == 'table' and opts.pool ~= nil then return opts.pool end
  local tls = type(opts) == 'table' and opts.tls and '|tls' or ''
  if port == nil or type(port) == 'table' then return host .. tls end
  return host .. ':' .. tostring(port) .. tls
end

-- asio.connect with pools. Without pool options it still takes an idle
-- connection from the pool named "host:port" when there is one.
local function connect(host, port, opts)
  local t = S.current
  if type(port) == 'table' and opts == nil and type(host) == 'string' and sub(host, 1, 5) == 'unix:' then
    if port.pool == nil and port.pool_size == nil then return raw_connect(host, port) end
    port, opts = nil, port
  end
  if type(opts) ~= 'table' or (opts.pool == nil and opts.pool_size == nil and opts.backlog == nil) then
    -- No pool options: an idle connection to "host:port" if there is one,
    -- else a plain connect (tail calls keep argument errors at the caller).
    if nidle == 0 or not t or type(host) ~= 'string' or type(port) ~= 'number' then
      return raw_connect(host, port, opts)
    end
    local key = pool_key(host, port, opts)
    local p = pools[key]
    local c = p and checkout(p, key)
    if c then return c end
    return raw_connect(host, port, opts)
  end
  if type(host) ~= 'string' then argerr(1, 'connect', 'string', host) end
  if opts.pool ~= nil and type(opts.pool) ~= 'string' then
    error("bad argument #3 to 'connect' (pool must be a string)", 2)
  end
  local size, backlog = opts.pool_size, opts.backlog
  if size ~= nil and not (is_count(size) and size > 0) then
    error("bad argument #3 to 'connect' (pool_size must be a positive integer)", 2)
  end
  if backlog ~= nil and not is_count(backlog) then
    error("bad argument #3 to 'connect' (backlog must be a non-negative integer)", 2)
  end
  if backlog ~= nil and size == nil then
    error("bad argument #3 to 'connect' (backlog needs pool_size)", 2)
  end
  if port ~= nil then check.check_port(2, 'connect', port, false) end
  local timeout = check.check_timeout(3, 'connect', opts.timeout)
  if not t then outside('connect') end
  local key = pool_key(host, port, opts)
  local p = pools[key] or get_pool(key, size)
  local c = checkout(p, key)
  if c then return c end
  if backlog then
    p.counted = true
    if p.total >= p.size then
      if p.nwait >= backlog then return nil, 'too many waiting connect operations' end
      local deadline = timeout and now() + timeout
      while p.total >= p.size do
        p.nwait = p.nwait + 1
        local ok = p.waiters:wait(deadline and deadline - now())
        p.nwait = p.nwait - 1
        if not ok then
          drop_pool_if_empty(key, p)
          return nil, 'timeout'
        end
        c = checkout(p, key)
        if c then return c end
      end
      if timeout then
        local left = deadline - now()
        opts = { ipv6 = opts.ipv6, timeout = left > 0 and left or 0 }
      end
    end
    p.total = p.total + 1
  end
  local err
  if port == nil then c, err = raw_connect(host, opts) else c, err = raw_connect(host, port, opts) end
  if not c then
    if backlog then uncount(p, key) else drop_pool_if_empty(key, p) end
    return nil, err
  end
  meta[c] = { key = key, reused = 0, counted = backlog and p or nil }
  return c
end

local raw_close = Conn.close
function Conn:close()
  check_conn(self, 'close')
  local m = meta[self]
  if m and m.counted and self.h ~= 0 then
    local p = m.counted
    m.counted = nil
    raw_close(self)
    uncount(p, m.key)
    return true
  end
  return raw_close(self)
end

function Conn:getreusedtimes()
  check_conn(self, 'getreusedtimes')
  if self.h == 0 then return nil, 'closed' end
  local m = meta[self]
  return m and m.reused or 0
end

-- conn:setkeepalive([max_idle_seconds] [, pool_size]): hands the connection
-- to its pool; the object is closed to its holder either way. A connection
-- with unread bytes, or one another light thread is using, is closed
-- instead and the call returns nil and the reason.
function Conn:setkeepalive(idle, size)
  check_conn(self, 'setkeepalive')
  if idle ~= nil and not (type(idle) == 'number' and idle >= 0) then
    argerr(1, 'setkeepalive', 'non-negative number or nil', idle)
  end
  if size ~= nil and not (is_count(size) and size > 0) then
    argerr(2, 'setkeepalive', 'positive integer or nil', size)
  end
  local h = self.h
  if h == 0 then return nil, 'closed' end
  if self.reader ~= 0 or self.writer ~= 0 then return nil, 'busy' end
  local m = meta[self]
  if self.pend ~= 0 then
    self:close()
    return nil, 'unread data in buffer'
  end
  local key = m and m.key
  if not key then
    local ip, port = self:remote_address()
    key = ip and (port and port ~= 0 and ip .. ':' .. port or ip) or ('#' .. h)
    if self.tls ~= 0 then key = key .. '|tls' end
  end
  local p = m and m.counted or get_pool(key, size)
  if m and m.counted then m.counted = nil end
  if size and p.n == 0 then p.size = size end
  if p.n >= p.size then
    -- Full: the oldest idle connection makes room (as OpenResty does).
    local oh = take(p, 1)
    close_handle(oh)
    if p.counted then p.total = p.total - 1 end
  end
  -- Detach the handle from this object without closing it.
  self.h = 0
  local n = p.n + 1
  p.n = n
  p.idle[n] = h
  p.reused[n] = m and m.reused or 0
  if idle == 0 then idle = 1e9 end -- 0: no idle timeout, as in OpenResty
  p.dl[n] = now() + (idle or DEFAULT_IDLE)
  nidle = nidle + 1
  if p.counted and p.nwait > 0 then p.waiters:signal() end
  wake_sweeper()
  return true
end

-- Closes every idle pooled connection (all pools, or the one named).
local function flush(key)
  if key ~= nil and type(key) ~= 'string' then argerr(1, 'pool_flush', 'string or nil', key) end
  for k, p in next, pools do
    if key == nil or k == key then
      while p.n > 0 do
        local h = take(p, p.n)
        close_handle(h)
        if p.counted then p.total = p.total - 1 end
      end
      drop_pool_if_empty(k, p)
    end
  end
  if sweeper_cv then sweeper_cv:signal() end
  return true
end

-- Idle connection counts by pool name.
local function stats()
  local t = {}
  for k, p in next, pools do t[k] = p.n end
  return t
end

return { connect = connect, flush = flush, stats = stats, key = pool_key }
