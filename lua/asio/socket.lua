-- LuaSocket-compatible TCP objects that block only the calling light thread
-- (as copas does): `require 'asio.socket'`. Timeouts are in seconds, return
-- conventions are LuaSocket's, including partial results on errors. `create`
-- is usable as socket.http.request{ create = ... } and the objects as
-- redis-lua's `socket` parameter.

local asio = require 'asio'
local conn = require 'asio.conn'

local type, tostring, error, setmetatable, getmetatable = type, tostring, error, setmetatable, getmetatable
local sub, floor, concat = string.sub, math.floor, table.concat
local Conn = conn.Conn
local read, write, read_line, read_some = Conn.read, Conn.write, Conn.read_line, Conn.read_some

local M = { _VERSION = 'LuaSocket 3.0 (LuaAsio)', BLOCKSIZE = 2048 }

-- LuaSocket's wording where LuaAsio's differs.
local errmap = { eof = 'closed', ['connection reset'] = 'closed' }
local function lerr(e) return errmap[e] or e end

local Tcp = {}
Tcp.__index = Tcp
Tcp.__tostring = function(s)
  return (s.c and 'tcp{client}: ' or 'tcp{master}: ') .. tostring(s):match('0x%x+$')
end

local function check_self(self, fname)
  if getmetatable(self) ~= Tcp then
    error(("bad argument #1 to '%s' (tcp object expected, got %s)"):format(fname, type(self)), 3)
  end
end

function M.tcp()
  return setmetatable({ c = false, timeout = nil, opts = false }, Tcp)
end
M.create = M.tcp

function M.connect(host, port)
  local s = M.tcp()
  local ok, err = s:connect(host, port)
  if not ok then return nil, err end
  return s
end

function Tcp:settimeout(t, mode)
  check_self(self, 'settimeout')
  if t ~= nil and type(t) ~= 'number' then
    error(("bad argument #1 to 'settimeout' (number expected, got %s)"):format(type(t)), 2)
  end
  if mode ~= nil and mode ~= 'b' and mode ~= 't' and mode ~= 'r' then
    error("bad argument #2 to 'settimeout' (invalid timeout mode)", 2)
  end
  if t and t < 0 then t = nil end
  self.timeout = t
  if self.c then self.c:settimeout(t) end
  return 1
end

function Tcp:connect(host, port)
  check_self(self, 'connect')
  if type(host) ~= 'string' then
    error(("bad argument #1 to 'connect' (string expected, got %s)"):format(type(host)), 2)
  end
  if self.c then return nil, 'already connected' end
  local c, err
  if port == nil and sub(host, 1, 5) ~= 'unix:' and sub(host, 1, 1) == '/' then
    c, err = asio.connect('unix:' .. host, { timeout = self.timeout })
  else
    port = tonumber(port)
    if not port then error("bad argument #2 to 'connect' (number expected)", 2) end
    c, err = asio.connect(host, port, { timeout = self.timeout })
  end
  if not c then return nil, lerr(err) end
  self.c = c
  c:settimeout(self.timeout)
  if self.opts then
    for k, v in pairs(self.opts) do self:setoption(k, v) end
  end
  return 1
end

-- send(data [, i [, j]]): the index of the last byte sent, or nil, err and
-- the index of the last byte sent before the error.
function Tcp:send(data, i, j)
  local c = self.c
  if type(data) ~= 'string' then
    check_self(self, 'send')
    if type(data) ~= 'number' then
      error(("bad argument #1 to 'send' (string expected, got %s)"):format(type(data)), 2)
    end
    data = tostring(data)
  end
  local len = #data
  i = i or 1
  j = j or len
  if i < 0 then i = len + i + 1 end
  if j < 0 then j = len + j + 1 end
  if i < 1 then i = 1 end
  if j > len then j = len end
  if i ~= 1 or j ~= len then data = sub(data, i, j) end
  if not c then return nil, 'closed', i - 1 end
  local ok, err, sent = write(c, data)
  if ok then return i - 1 + #data end
  return nil, lerr(err), i - 1 + (sent or 0)
end

local function all(c, prefix)
  local parts = { prefix }
  while true do
    local d, err = read_some(c)
    if d and d ~= '' then parts[#parts + 1] = d
    else
      err = lerr(err)
      if err == 'closed' then return concat(parts) end
      return nil, err, concat(parts)
    end
  end
end

local patterns = { ['*l'] = true, l = true, ['*a'] = true, a = true }

-- receive([pattern [, prefix]]): '*l' (the default), '*a' or a byte count.
function Tcp:receive(pat, prefix)
  local c = self.c
  if prefix ~= nil and type(prefix) ~= 'string' then
    check_self(self, 'receive')
    error("bad argument #2 to 'receive' (string expected)", 2)
  end
  prefix = prefix or ''
  if pat ~= nil and type(pat) ~= 'number' and not patterns[pat] then
    check_self(self, 'receive')
    error("bad argument #1 to 'receive' (invalid receive pattern)", 2)
  end
  if not c then return nil, 'closed', prefix end
  local d, err, partial
  if type(pat) == 'number' then
    if pat < 0 or pat ~= floor(pat) then error("bad argument #1 to 'receive' (invalid receive pattern)", 2) end
    d, err, partial = read(c, pat)
  elseif pat == nil or pat == '*l' or pat == 'l' then
    d, err, partial = read_line(c)
  elseif pat == '*a' or pat == 'a' then
    return all(c, prefix)
  else
    check_self(self, 'receive')
    error("bad argument #1 to 'receive' (invalid receive pattern)", 2)
  end
  if d then return prefix == '' and d or prefix .. d end
  -- A timeout keeps the bytes for the next read in the core; LuaSocket hands
  -- them out as the partial result instead, so take them back.
  if err == 'timeout' and partial and partial ~= '' then read(c, #partial) end
  return nil, lerr(err), prefix .. (partial or '')
end

function Tcp:close()
  check_self(self, 'close')
  if self.c then self.c:close(); self.c = false end
  return 1
end

function Tcp:shutdown(how)
  check_self(self, 'shutdown')
  if not self.c then return nil, 'closed' end
  if how == nil or how == 'both' or how == 'send' then self.c:shutdown() end
  return 1
end

local function addr(self, fn)
  if not self.c then return nil, 'closed' end
  local ip, port = fn(self.c)
  if not ip then return nil, port end
  return ip, port, ip:find(':', 1, true) and 'inet6' or 'inet'
end

function Tcp:getpeername()
  check_self(self, 'getpeername')
  return addr(self, Conn.remote_address)
end

function Tcp:getsockname()
  check_self(self, 'getsockname')
  return addr(self, Conn.local_address)
end

local optnames = { ['tcp-nodelay'] = 'nodelay', keepalive = 'keepalive', linger = 'linger' }

function Tcp:setoption(name, value)
  check_self(self, 'setoption')
  local o = optnames[name]
  if not o then return nil, 'unsupported option' end
  if not self.c then
    self.opts = self.opts or {}
    self.opts[name] = value
    return 1
  end
  if o == 'linger' then
    value = type(value) == 'table' and value.on and (value.timeout or 0) or false
  else
    value = value and true or false
  end
  local ok, err = self.c:setoption(o, value)
  if not ok then return nil, err end
  return 1
end

function Tcp:dirty() return self.c and self.c.pend ~= 0 or false end
function Tcp:getfd() return -1 end
function Tcp:setfd() end

-- LuaSocket 3's socket.protect runs the function in a coroutine of its own,
-- and a light thread cannot park from inside one. This swaps in a
-- pcall-based protect with the same contract (errors raised by socket.try
-- come back as nil, message). Call it before requiring socket.http, which
-- wraps its functions when it is loaded.
function M.pcall_protect()
  local core = require 'socket'
  core.protect = function(f)
    return function(...)
      local r = { pcall(f, ...) }
      if r[1] then return unpack(r, 2, table.maxn(r)) end
      local e = r[2]
      if type(e) == 'table' then return nil, e[1] end
      error(e, 0)
    end
  end
end

M.sleep = asio.sleep
M.gettime = function() return asio.now() end

return M
