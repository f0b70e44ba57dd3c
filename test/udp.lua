-- Datagram sockets on loopback: asio.udp.
local asio = require 'asio'
local T = require 'testlib'

local function pair()
  local srv = assert(asio.udp())
  assert(srv:bind('127.0.0.1', 0))
  local _, port = srv:local_address()
  local cli = assert(asio.udp())
  return srv, cli, port
end

-- The kernel's drop count of the local UDP socket on `port` (the last column
-- of /proc/net/udp or udp6), or nil without /proc.
local function drops(port, v6)
  if T.windows then return nil end
  local f = io.open(v6 and '/proc/net/udp6' or '/proc/net/udp')
  if not f then return nil end
  local want = (':%04X '):format(port)
  local n
  for line in f:lines() do
    local loc = line:match('^%s*%d+:%s*(%x+:%x+ )')
    if loc and loc:sub(-6) == want then n = tonumber(line:match('(%d+)%s*$')) end
  end
  f:close()
  return n
end

-- Packets the kernel dropped before any socket saw them (backlog overflow),
-- summed over the CPUs; nil without /proc.
local function softnet_drops()
  local f = not T.windows and io.open('/proc/net/softnet_stat')
  if not f then return nil end
  local n = 0
  for line in f:lines() do n = n + tonumber(line:match('^%x+%s+(%x+)'), 16) end
  f:close()
  return n
end

local function ipv6_loopback()
  local u = assert(asio.udp())
  local ok = u:bind('::1', 0)
  u:close()
  return ok
end

T.test('echo: sendto, recvfrom with the sender, reply to it', function()
  T.go(function()
    local srv, cli, port = pair()
    assert(cli:sendto('ping', '127.0.0.1', port))
    local data, ip, p = srv:recvfrom(5)
    T.eq(data, 'ping', 'datagram')
    T.eq(ip, '127.0.0.1', 'sender ip')
    local _, cport = cli:local_address()
    T.eq(p, cport, 'sender port')
    assert(srv:sendto('pong', ip, p))
    T.eq(cli:recvfrom(5), 'pong', 'reply')
    assert(cli:sendto('', '127.0.0.1', port))
    T.eq(srv:recvfrom(5), '', 'an empty datagram')
    assert(cli:sendto(42, 'localhost', tostring(port)))
    T.eq(srv:recvfrom(5), '42', 'a number, a name and a port string')
    srv:close()
    cli:close()
  end)
end)

T.test('fast path: datagrams already there are taken without yielding', function()
  T.go(function()
    local srv, cli, port = pair()
    for i = 1, 10 do assert(cli:sendto('d' .. i, '127.0.0.1', port)) end
    asio.sleep(0.05)
    local yielded = false
    asio.spawn_light_thread(function() asio.sleep(0); yielded = true end)
    for i = 1, 10 do T.eq(srv:recvfrom(1), 'd' .. i, 'datagram ' .. i) end
    T.eq(yielded, false, 'another thread ran, so recvfrom yielded')
    srv:close()
    cli:close()
  end)
end)

T.test('10,000 datagrams in flight: every one echoed or counted as a kernel drop', function()
  if T.windows or not io.open('/proc/net/udp') then
    T.skip('needs /proc/net/udp (Linux) for the per-socket drop count')
  end
  T.go(function()
    local N = 10000
    local srv, cli, port = pair()
    assert(srv:setoption('rcvbuf', 16 * 1024 * 1024))
    assert(cli:setoption('rcvbuf', 16 * 1024 * 1024))
    assert(cli:bind('127.0.0.1', 0))
    local _, cport = cli:local_address()
    local soft0 = softnet_drops()
    local echoed = 0
    local server = T.spawn(function()
      while true do
        local d, ip, p = srv:recvfrom(0.5)
        if not d then return end
        echoed = echoed + 1
        assert(srv:sendto(d, ip, p))
      end
    end)
    local payload = string.rep('x', 56)
    for i = 1, N do assert(cli:sendto(('%08d'):format(i) .. payload, '127.0.0.1', port)) end
    local seen, got = {}, 0
    while true do
      local d = cli:recvfrom(0.5)
      if not d then break end
      local i = tonumber(d:sub(1, 8))
      assert(i and i >= 1 and i <= N and d:sub(9) == payload, 'garbled datagram')
      assert(not seen[i], 'datagram ' .. i .. ' twice')
      seen[i] = true
      got = got + 1
    end
    server()
    local sd, cd = drops(port), drops(cport)
    local soft = soft0 and softnet_drops() - soft0 or 0
    print(('  sent %d, server got %d (kernel dropped %d), client got %d (dropped %d), backlog drops %d')
      :format(N, echoed, sd, got, cd, soft))
    assert(echoed > 0 and got > 0, 'nothing came through')
    assert(echoed + sd <= N and echoed + sd + soft >= N,
      ('server: %d received + %d dropped ~= %d sent'):format(echoed, sd, N))
    assert(got + cd <= echoed and got + cd + soft >= echoed,
      ('client: %d received + %d dropped ~= %d echoed'):format(got, cd, echoed))
    srv:close()
    cli:close()
  end, 60)
end)

T.test('timeouts: per call, settimeout, and a late datagram is still there', function()
  T.go(function()
    local srv, cli, port = pair()
    local t0 = asio.now()
    local d, err = srv:recvfrom(0.05)
    T.eq(d, nil, 'data')
    T.eq(err, 'timeout', 'error')
    assert(asio.now() - t0 >= 0.04, 'returned too early')
    srv:settimeout(0.05)
    T.eq(select(2, srv:recv()), 'timeout', 'settimeout applies to recv')
    T.eq(select(2, srv:recvfrom()), 'timeout', 'settimeout applies to recvfrom')
    srv:settimeout(nil)
    assert(cli:sendto('late', '127.0.0.1', port))
    T.eq(srv:recvfrom(), 'late', 'after timeouts')
    srv:close()
    cli:close()
  end)
end)

T.test('a deadline passed while other threads ran: the datagram already there wins', function()
  T.go(function()
    local srv, cli, port = pair()
    local other, _, oport = pair()
    local r = T.spawn(function() return srv:recvfrom(0.05) end)
    local b = T.spawn(function()
      assert(other:recvfrom(5))
      -- Runs in the same turn of the loop that then expires r's deadline.
      assert(cli:sendto('in time', '127.0.0.1', port))
      local t0 = asio.now()
      while asio.now() - t0 < 0.1 do end
    end)
    assert(cli:sendto('go', '127.0.0.1', oport))
    T.eq(r(), 'in time', 'datagram')
    b()
    for _, u in ipairs({ srv, cli, other }) do u:close() end
  end)
end)

T.test('the largest datagram arrives whole; one byte more is refused', function()
  T.go(function()
    local srv, cli, port = pair()
    assert(srv:setoption('rcvbuf', 1024 * 1024))
    local big = string.rep('0123456789abcdef', 4096):sub(1, 65507)
    assert(cli:sendto(big, '127.0.0.1', port))
    local d = srv:recvfrom(5)
    assert(d == big, 'got ' .. #(d or '') .. ' bytes')
    T.eq(select(2, cli:sendto(big .. 'x', '127.0.0.1', port)), 'datagram too large', 'IPv4 limit + 1')
    T.eq(select(2, cli:sendto(string.rep('x', 70000), '127.0.0.1', port)), 'datagram too large', '70,000 bytes')
    srv:close()
    cli:close()
  end)
end)

T.test('truncation: a datagram longer than recvsize is reported with its first bytes', function()
  T.go(function()
    local srv = assert(asio.udp({ recvsize = 100 }))
    assert(srv:bind('127.0.0.1', 0))
    local _, port = srv:local_address()
    local cli = assert(asio.udp())
    local long = string.rep('a', 100) .. string.rep('b', 50)
    assert(cli:sendto(long, '127.0.0.1', port))
    assert(cli:sendto(string.rep('c', 100), '127.0.0.1', port))
    local d, err, part, ip, p = srv:recvfrom(5)
    T.eq(d, nil, 'data')
    T.eq(err, 'datagram truncated', 'error')
    T.eq(part, string.rep('a', 100), 'the first recvsize bytes')
    T.eq(ip, '127.0.0.1', 'sender')
    T.eq(p, select(2, cli:local_address()), 'sender port')
    T.eq(srv:recvfrom(5), string.rep('c', 100), 'exactly recvsize bytes is whole')
    assert(cli:connect('127.0.0.1', port))
    assert(srv:sendto(long, '127.0.0.1', p))
    srv:close()
    local c = asio.udp({ recvsize = 10 })
    c:close()
    cli:close()
  end)
end)

T.test('connected socket: send/recv, and an ICMP refusal comes back as connection refused', function()
  if T.wine then T.skip('wine does not pass ICMP errors on to UDP sockets') end
  T.go(function()
    local srv, cli, port = pair()
    assert(cli:connect('127.0.0.1', port))
    assert(cli:send('hi'))
    local d, ip, p = srv:recvfrom(5)
    T.eq(d, 'hi', 'datagram')
    assert(srv:sendto('back', ip, p))
    T.eq(cli:recv(5), 'back', 'reply')
    srv:close()
    -- Nothing listens on the port now: the kernel answers with ICMP.
    assert(cli:send('anyone?'))
    local r, err = cli:recv(5)
    T.eq(r, nil, 'data')
    T.eq(err, 'connection refused', 'error')
    cli:close()
  end)
end)

T.test('dual-stack: a socket on :: serves IPv4 and IPv6 senders', function()
  if not ipv6_loopback() then T.skip('no IPv6 loopback here') end
  T.go(function()
    local srv = assert(asio.udp())
    assert(srv:bind('::', 0))
    local lip, port = srv:local_address()
    T.eq(lip, '::', 'local address')
    local c4, c6 = assert(asio.udp()), assert(asio.udp())
    assert(c4:sendto('four', '127.0.0.1', port))
    local d, ip, p = srv:recvfrom(5)
    T.eq(d, 'four', 'IPv4 datagram')
    T.eq(ip, '::ffff:127.0.0.1', 'IPv4 sender, mapped')
    assert(srv:sendto('to four', ip, p))
    T.eq(c4:recvfrom(5), 'to four', 'reply to the mapped address')
    assert(srv:sendto('plain', '127.0.0.1', p))
    T.eq(c4:recvfrom(5), 'plain', 'reply to the IPv4 text')
    assert(c6:sendto('six', '::1', port))
    d, ip = srv:recvfrom(5)
    T.eq(d, 'six', 'IPv6 datagram')
    T.eq(ip, '::1', 'IPv6 sender')
    T.eq(select(2, c4:sendto('x', '::1', port)), 'not supported', 'IPv6 from an IPv4 socket')
    local only = assert(asio.udp({ ipv6_only = true }))
    assert(only:bind('::', 0))
    local _, oport = only:local_address()
    assert(c4:sendto('lost', '127.0.0.1', oport))
    T.eq(select(2, only:recvfrom(0.1)), 'timeout', 'ipv6_only takes no IPv4')
    for _, u in ipairs({ srv, c4, c6, only }) do u:close() end
  end)
end)

T.test('many receivers on one socket: each datagram to exactly one, first come first served', function()
  T.go(function()
    local srv, cli, port = pair()
    local got = {}
    local waits = {}
    for i = 1, 5 do
      waits[i] = T.spawn(function() got[i] = srv:recvfrom(5) end)
    end
    asio.sleep(0.02)
    for i = 1, 5 do assert(cli:sendto('d' .. i, '127.0.0.1', port)) end
    for i = 1, 5 do waits[i]() end
    for i = 1, 5 do T.eq(got[i], 'd' .. i, 'receiver ' .. i) end
    -- A receiver that times out leaves its place to the next one.
    local a = T.spawn(function() return srv:recvfrom(0.05) end)
    local b = T.spawn(function() return srv:recvfrom(5) end)
    asio.sleep(0.1)
    assert(cli:sendto('for b', '127.0.0.1', port))
    T.eq(select(2, a()), 'timeout', 'first receiver')
    T.eq(b(), 'for b', 'second receiver')
    srv:close()
    cli:close()
  end)
end)

T.test('concurrent senders: every datagram arrives whole', function()
  T.go(function()
    local srv, cli, port = pair()
    assert(srv:setoption('rcvbuf', 4 * 1024 * 1024))
    local senders = {}
    for k = 1, 4 do
      senders[k] = T.spawn(function()
        for i = 1, 50 do
          assert(cli:sendto(string.rep(string.char(64 + k), 1000) .. i, '127.0.0.1', port))
          if i % 10 == 0 then asio.sleep(0) end
        end
      end)
    end
    for k = 1, 4 do senders[k]() end
    local count = {}
    for _ = 1, 200 do
      local d = assert(srv:recvfrom(5))
      local k = d:byte(1) - 64
      assert(d:sub(1, 1000) == string.rep(d:sub(1, 1), 1000), 'mixed datagram')
      count[k] = (count[k] or 0) + 1
    end
    for k = 1, 4 do T.eq(count[k], 50, 'datagrams of sender ' .. k) end
    srv:close()
    cli:close()
  end)
end)

T.test('close while light threads wait: each gets closed', function()
  T.go(function()
    local srv = pair()
    local r1 = T.spawn(function() return srv:recvfrom() end)
    local r2 = T.spawn(function() return srv:recv(10) end)
    asio.sleep(0.02)
    srv:close()
    T.eq(select(2, r1()), 'closed', 'first waiter')
    T.eq(select(2, r2()), 'closed', 'second waiter')
    T.eq(select(2, srv:recvfrom()), 'closed', 'after close')
    T.eq(select(2, srv:sendto('x', '127.0.0.1', 9)), 'closed', 'send after close')
    assert(srv:close(), 'close twice')
  end)
end)

T.test('garbage collection closes a dropped socket and frees its port', function()
  T.go(function()
    local u = assert(asio.udp())
    assert(u:bind('127.0.0.1', 0))
    local _, port = u:local_address()
    u = nil
    collectgarbage()
    collectgarbage()
    T.eq(asio.stats().objects, 0, 'objects left')
    local again = assert(asio.udp())
    assert(again:bind('127.0.0.1', port))
    again:close()
    -- A socket whose waiter was abandoned with it.
    local w = assert(asio.udp())
    assert(w:bind('127.0.0.1', 0))
    local th = T.spawn(function() return w:recvfrom(0.05) end)
    w = nil
    collectgarbage()
    T.eq(select(2, th()), 'timeout', 'the waiter kept its socket')
  end)
end)

T.test('options: all named options, before and after the socket exists', function()
  T.go(function()
    local u = assert(asio.udp({ reuseaddr = true, rcvbuf = 65536, sndbuf = 65536, broadcast = true }))
    for _, o in ipairs({ { 'broadcast', true }, { 'reuseaddr', true }, { 'sndbuf', 32768 },
        { 'rcvbuf', 32768 }, { 'ttl', 7 }, { 'multicast_ttl', 2 }, { 'multicast_loop', false } }) do
      assert(u:setoption(o[1], o[2]))
    end
    if not T.windows then assert(u:setoption('reuseport', true)) end
    assert(u:bind('127.0.0.1', 0))
    for _, o in ipairs({ { 'broadcast', false }, { 'ttl', 64 }, { 'multicast_ttl', 1 },
        { 'multicast_loop', true }, { 'rcvbuf', 8192 } }) do
      assert(u:setoption(o[1], o[2]))
    end
    -- Two sockets on one port with reuseaddr.
    local _, port = u:local_address()
    local a = assert(asio.udp({ reuseaddr = true }))
    assert(a:bind('127.0.0.1', port))
    a:close()
    u:close()
    T.eq(select(2, u:setoption('ttl', 1)), 'closed', 'on a closed socket')
  end)
end)

T.test('transparent sockets report the original destination (Linux, root)', function()
  if T.windows then
    local u, err = asio.udp({ transparent = true })
    T.eq(u, nil, 'socket')
    T.eq(err, 'not supported', 'error')
    return
  end
  if T.qemu then T.skip('qemu-user does not translate IP_TRANSPARENT') end
  T.go(function()
    local u, err = asio.udp({ transparent = true, family = 'inet', reuseaddr = true })
    if not u then
      if err == 'permission denied' then T.skip('IP_TRANSPARENT needs CAP_NET_ADMIN') end
      error(err)
    end
    assert(u:bind('127.0.0.1', 0))
    local _, port = u:local_address()
    local cli = assert(asio.udp())
    assert(cli:sendto('t', '127.0.0.1', port))
    local d, ip, p, orig = u:recvfrom(5)
    T.eq(d, 't', 'datagram')
    T.eq(ip, '127.0.0.1', 'sender')
    T.eq(#orig, 128, 'sockaddr length')
    T.eq(asio.addr_to_string(orig), '127.0.0.1:' .. port, 'original destination')
    -- Sending from an address given as a sockaddr string.
    local from = assert(asio.udp({ transparent = true, reuseaddr = true, bind = orig }))
    assert(from:sendto('from orig', ip, p))
    local r, rip, rport = cli:recvfrom(5)
    T.eq(r, 'from orig', 'reply')
    T.eq(rip .. ':' .. rport, '127.0.0.1:' .. port, 'reply source')
    from:close()
    u:close()
    cli:close()
  end)
end)

T.test('a sockaddr string as the destination', function()
  T.go(function()
    local srv, cli, port = pair()
    local sa = '\2\0' .. string.char(math.floor(port / 256), port % 256) .. '\127\0\0\1' .. string.rep('\0', 8)
    assert(cli:sendto('via sockaddr', sa))
    T.eq(srv:recvfrom(5), 'via sockaddr', 'datagram')
    srv:close()
    cli:close()
  end)
end)

T.test('bad input raises errors that name the argument; network failures return nil, err', function()
  T.go(function()
    local u = assert(asio.udp())
    T.raises("bad argument #1 to 'udp'", asio.udp, 'x')
    T.raises("family must be", asio.udp, { family = 'ipx' })
    T.raises("unknown option 'colour'", asio.udp, { colour = 1 })
    T.raises("recvsize must be", asio.udp, { recvsize = 0 })
    T.raises("recvsize must be", asio.udp, { recvsize = 70000 })
    T.raises("bad argument #1 to 'sendto' (string expected, got table)", u.sendto, u, {}, '127.0.0.1', 9)
    T.raises("bad argument #2 to 'sendto' (string expected, got nil)", u.sendto, u, 'x')
    T.raises("port out of range: 70000", u.sendto, u, 'x', '127.0.0.1', 70000)
    T.raises("port out of range: 0", u.sendto, u, 'x', '127.0.0.1', 0)
    T.raises("port out of range: -1", u.bind, u, '127.0.0.1', -1)
    T.raises("bad argument #2 to 'bind' (port number expected, got nil)", u.bind, u, '127.0.0.1')
    T.raises("bad argument #1 to 'recvfrom' (number or nil expected, got string)", u.recvfrom, u, 'x')
    T.raises("unknown option 'nodelay'", u.setoption, u, 'nodelay', true)
    T.raises("bad argument #2 to 'setoption' (boolean expected", u.setoption, u, 'broadcast', 1)
    T.raises("bad argument #2 to 'setoption' (integer 0..255 expected", u.setoption, u, 'ttl', 256)
    T.raises("bad argument #2 to 'setoption' (positive integer expected", u.setoption, u, 'rcvbuf', -5)
    T.raises("bad argument #1 to 'join_group' (string expected", u.join_group, u, nil)
    T.raises("calling 'recvfrom' on bad self", u.recvfrom, {})
    -- Misuse of the socket's state.
    T.eq(select(2, u:recvfrom(0)), 'not bound', 'receive before bind')
    T.eq(select(2, u:local_address()), 'not bound', 'address before bind')
    assert(u:bind('127.0.0.1', 0))
    T.eq(select(2, u:send('x')), 'not connected', 'send without connect')
    T.eq(select(2, u:sendto('x', '::1', 9)), 'not supported', 'IPv6 destination on an IPv4 socket')
    T.eq(select(2, u:join_group('127.0.0.1')), 'bad address', 'not a multicast group')
    T.eq(select(2, u:sendto(string.rep('x', 65536), '127.0.0.1', 9)), 'datagram too large', 'oversize')
    T.eq(select(2, u:bind('127.0.0.1', 0)), 'invalid argument', 'bind twice')
    u:close()
  end)
  local u = assert(asio.udp())
  T.raises("must be called from a light thread", u.recvfrom, u)
  T.raises("must be called from a light thread", u.sendto, u, 'x', '127.0.0.1', 9)
  T.eq(select(2, u:bind('no-such-name', 0)), 'bad address', 'a name outside a light thread')
  T.eq(select(2, u:bind('300.1.1.1', 0)), 'bad address', 'a bad IPv4 literal')
  u:close()
end)

T.test('the recvfrom/sendto hot path compiles without NYI aborts in asio/udp.lua', function()
  if not jit or not jit.status() then T.skip('the JIT is off') end
  local jutil, vmdef = require 'jit.util', require 'jit.vmdef'
  local stopped, bad = 0, {}
  local function in_udp(func)
    local info = jutil.funcinfo(func)
    return info and info.source and info.source:find('asio[/\\]udp%.lua')
  end
  local function recorder(what, _, func, pc, otr, oex)
    if what == 'stop' and in_udp(func) then
      stopped = stopped + 1
    elseif what == 'abort' and in_udp(func) then
      local msg = tostring(vmdef.traceerr[otr] or otr)
      if msg:find('NYI', 1, true) and not msg:find('coroutine', 1, true) then
        if msg:find('%%s') then msg = msg:format(type(oex) == 'number' and vmdef.ffnames[oex] or tostring(oex)) end
        bad[#bad + 1] = jutil.funcinfo(func, pc).loc .. ': ' .. msg
      end
    end
  end
  local ok, err = T.with_trace_events(recorder, T.go, function()
    local srv, cli, port = pair()
    local echo = T.spawn(function()
      for _ = 1, 3000 do
        local d, ip, p = srv:recvfrom(5)
        assert(srv:sendto(d, ip, p))
      end
    end)
    local msg = ('m'):rep(64)
    for _ = 1, 300 do
      for _ = 1, 10 do assert(cli:sendto(msg, '127.0.0.1', port)) end
      for _ = 1, 10 do T.eq(cli:recvfrom(5), msg, 'echo') end
    end
    echo()
    srv:close()
    cli:close()
  end)
  assert(ok, err)
  assert(stopped > 0, 'no trace of asio/udp.lua was compiled')
  assert(#bad == 0, 'NYI aborts in asio/udp.lua:\n  ' .. table.concat(bad, '\n  '))
end)
