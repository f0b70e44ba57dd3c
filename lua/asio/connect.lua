-- Name resolution and connecting: asio.resolve, asio.connect and
-- asio.addr_to_string. Lookups run off the loop thread in C; the light
-- thread parks until they report.

local ffi = require 'ffi'
local lib = require 'asio.lib'
local S = require 'asio.state'
local sched = require 'asio.sched'
local check = require 'asio.check'
local conn = require 'asio.conn'
local tls = require 'asio.tls'

local C, strerror = lib.C, lib.strerror
local ffi_string = ffi.string
local sub, find = string.sub, string.find
local type, error = type, error
local argerr, outside, check_port, check_timeout =
  check.argerr, check.outside, check.check_port, check.check_timeout
local must_park, park, next_token = sched.must_park, sched.park, sched.next_token
local new_conn, deadline_of = conn.new, conn.deadline_of

local ETIMEDOUT = C.LUAASIO_ETIMEDOUT
local loop, rbuf, BUFSIZE = S.loop, S.rbuf, S.BUFSIZE
local abuf, ADDRSIZE, iport = S.abuf, S.ADDRSIZE, S.iport

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
  S.th_obj[s] = h   -- closed by asio.kill if this thread is killed meanwhile
  local r = park(s, token, deadline, true)
  S.th_obj[s] = false
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
  local t = S.current
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
  must_park(t, 'resolve')
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
    -- A timeout ends the attempt only once the caller's deadline has
    -- passed; the kernel's own connect timeout moves on to the next address.
    if err == ETIMEDOUT and deadline and C.luaasio_now() >= deadline then break end
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
  local t = S.current
  if type(host) ~= 'string' then argerr(1, 'connect', 'string', host) end
  local prefer6, timeout, topts = false, -1, nil
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
      if opts.tls ~= nil and opts.tls ~= false then
        topts = tls.check_opts('connect', 3, opts.tls == true and {} or opts.tls, false)
      end
    else
      argerr(3, 'connect', 'table, boolean or nil', opts)
    end
  end
  if not t then outside('connect') end
  must_park(t, 'connect')
  if topts then
    local ok, why = tls.load()
    if not ok then return nil, strerror(C.LUAASIO_ENOTLS), why end
  end
  local deadline = deadline_of(timeout)
  local c, err
  if topts then
    -- Connect, then the handshake within what is left of the same timeout.
    local name = sub(host, 1, 5) ~= 'unix:' and port ~= nil and host or nil
    c, err = connect(host, port, { ipv6 = prefer6, timeout = timeout >= 0 and timeout or nil })
    if not c then return nil, err end
    local ok, herr, reason = tls.client(c, t, name, topts, deadline)
    if not ok then
      c:close()
      return nil, herr, reason
    end
    return c
  end
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

return { resolve = resolve, connect = connect, addr_to_string = addr_to_string }
