-- Datagram sockets against real peers, in network namespaces that the tests
-- create (test/udp_netns.sh builds and removes them):
--  - examples/dns_forwarder.lua with dnsmasq as its upstream, queried by dig;
--  - examples/udp_tproxy.lua on a router with an iptables TPROXY rule;
--  - multicast on a namespace's own loopback;
--  - a send that must wait for room in the socket buffer (tbf qdisc).
-- The helpers that run inside the namespaces are this file too:
--   luajit test/udp_netns.lua --udp-netns-helper ROLE ARGS...

local HELPER = '--udp-netns-helper'

if (...) == HELPER then
  local _, role, a1, a2, a3 = ...
  local asio = require 'asio'
  io.stdout:setvbuf('line')
  local failure

  if role == 'echo' then
    -- Answers every datagram with 'echo:' .. data, logging each new peer.
    local u = assert(asio.udp())
    assert(u:bind(a1, tonumber(a2)))
    print('listening')
    asio.spawn_light_thread(function()
      local seen = {}
      while true do
        local d, ip, port = u:recvfrom()
        if not d then failure = ip break end
        if not seen[ip .. port] then seen[ip .. port] = true; print('peer ' .. ip .. ' ' .. port) end
        u:sendto('echo:' .. d, ip, port)
      end
    end)
  elseif role == 'client' then
    -- Sends N datagrams to DEST PORT; each answer must come from there.
    local dest, port, n = a1, tonumber(a2), tonumber(a3)
    failure = 'client did not finish'
    asio.spawn_light_thread(function()
      local u = assert(asio.udp())
      for i = 1, n do
        local msg = 'datagram ' .. i
        assert(u:sendto(msg, dest, port))
        local d, ip, p = u:recvfrom(3)
        if not d then failure = 'answer ' .. i .. ': ' .. tostring(ip) return end
        if d ~= 'echo:' .. msg then failure = 'answer ' .. i .. ' is ' .. d return end
        if ip ~= dest or p ~= port then
          failure = ('answer %d came from %s port %s'):format(i, ip, tostring(p))
          return
        end
      end
      print(('%d answers from %s port %d'):format(n, dest, port))
      failure = nil
      u:close()
    end)
  elseif role == 'sink' then
    -- Takes datagrams and never answers (an upstream that times out).
    local u = assert(asio.udp())
    assert(u:bind(a1, tonumber(a2)))
    print('listening')
    asio.spawn_light_thread(function() asio.sleep(120) u:close() end)
  elseif role == 'multicast' then
    failure = 'multicast did not finish'
    asio.spawn_light_thread(function()
      local group = '239.1.2.3'
      local rx = assert(asio.udp({ reuseaddr = true }))
      assert(rx:bind('0.0.0.0', 0))
      local _, port = rx:local_address()
      assert(rx:join_group(group, '127.0.0.1'))
      local tx = assert(asio.udp({ multicast_ttl = 1, multicast_loop = true }))
      assert(tx:sendto('to the group', group, port))
      local d, err = rx:recvfrom(2)
      if d ~= 'to the group' then failure = 'joined: ' .. tostring(d or err) return end
      assert(rx:leave_group(group, '127.0.0.1'))
      assert(tx:sendto('after leaving', group, port))
      d, err = rx:recvfrom(0.3)
      if err ~= 'timeout' then failure = 'after leaving: ' .. tostring(d or err) return end
      print('multicast ok')
      failure = nil
      rx:close()
      tx:close()
    end)
  elseif role == 'sndbuf' then
    -- The loopback here is throttled (tbf): sends fill the socket buffer
    -- and must wait for room, with no datagram lost.
    failure = 'sndbuf did not finish'
    asio.spawn_light_thread(function()
      local N = 300
      local rx = assert(asio.udp({ rcvbuf = 4 * 1024 * 1024 }))
      assert(rx:bind('127.0.0.1', 0))
      local _, port = rx:local_address()
      local tx = assert(asio.udp({ sndbuf = 4096 }))
      local ticks = 0
      local ticker = asio.spawn_light_thread(function()
        while ticks >= 0 do ticks = ticks + 1 asio.sleep(0.001) end
      end)
      local payload = string.rep('p', 1200)
      for i = 1, N do assert(tx:sendto(('%04d'):format(i) .. payload, '127.0.0.1', port)) end
      local during = ticks
      for i = 1, N do
        local d, err = rx:recvfrom(5)
        if d ~= ('%04d'):format(i) .. payload then failure = 'datagram ' .. i .. ': ' .. tostring(d and #d or err) return end
      end
      -- With a short timeout, a send into the full buffer gives up.
      tx:settimeout(0.001)
      local err
      for _ = 1, 100000 do
        local ok
        ok, err = tx:sendto(payload, '127.0.0.1', port)
        if not ok then break end
      end
      ticks = -1
      asio.join(ticker)
      if err ~= 'timeout' then failure = 'burst with a timeout ended with ' .. tostring(err) return end
      if during < 5 then failure = 'sendto never waited (other threads ran ' .. during .. ' times)' return end
      print(('%d datagrams in order; other threads ran %d times while sending; timeout ok'):format(N, during))
      failure = nil
      rx:close()
      tx:close()
    end)
  else
    io.stderr:write('unknown helper role ' .. tostring(role) .. '\n')
    os.exit(2)
  end
  asio.run()
  if failure then
    io.stderr:write(failure .. '\n')
    os.exit(1)
  end
  os.exit(0)
end

local T = require 'testlib'

local NETNS_SH = T.root .. '/test/udp_netns.sh'
local LUAJIT = T.root .. '/test/luajit'
local SELF = T.root .. '/test/udp_netns.lua'
local IP = 'PATH="$PATH:/usr/sbin:/sbin" ip'

local function q(s) return "'" .. tostring(s):gsub("'", [['\'']]) .. "'" end

local function sh(cmd)
  local r = os.execute(cmd)
  return r == 0 or r == true
end

local function read_file(path)
  local f = io.open(path, 'rb')
  if not f then return nil end
  local s = f:read('*a')
  f:close()
  return s
end

-- Output and success of a shell command (LuaJIT's pclose gives no status).
local function capture(cmd)
  local p = assert(io.popen('{ ' .. cmd .. '\n} 2>&1; echo "<rc=$?>"'))
  local out = p:read('*a')
  p:close()
  local body, rc = out:match('^(.*)<rc=(%d+)>%s*$')
  return body or out, rc == '0'
end

local function wait_for(secs, what, pred)
  for _ = 1, math.ceil(secs / 0.05) do
    if pred() then return end
    sh('sleep 0.05')
  end
  error('timed out after ' .. secs .. ' s waiting for ' .. what, 0)
end

local function contains(path, s)
  local text = read_file(path)
  return text ~= nil and text:find(s, 1, true) ~= nil
end

local counter = 0
local function new_env()
  counter = counter + 1
  local dir = capture('mktemp -d /tmp/luaasio-udp.XXXXXX'):gsub('%s+$', '')
  assert(dir:match('^/tmp/luaasio%-udp%.'), 'mktemp failed: ' .. dir)
  local pid = (read_file('/proc/self/stat') or ''):match('^(%d+)') or tostring(os.time())
  return { tag = 'lu' .. pid .. string.char(96 + counter), dir = dir, logs = {}, pidfiles = {} }
end

-- Starts `cmd` in namespace `ns` in the background; its life is bounded.
local function spawn(env, ns, name, cmd)
  local log, pidfile = env.dir .. '/' .. name .. '.log', env.dir .. '/' .. name .. '.pid'
  env.logs[#env.logs + 1] = log
  env.pidfiles[#env.pidfiles + 1] = pidfile
  assert(sh(('%s netns exec %s timeout 300 %s > %s 2>&1 < /dev/null & echo $! > %s')
    :format(IP, q(ns), cmd, q(log), q(pidfile))), 'cannot start ' .. name)
  return log
end

local function helper(role, ...)
  local args = { q(LUAJIT), q(SELF), HELPER, role }
  for _, a in ipairs({ ... }) do args[#args + 1] = q(a) end
  return table.concat(args, ' ')
end

-- Runs a command in namespace `ns` and waits for it (at most `secs`).
local function exec(ns, secs, cmd)
  return capture(('%s netns exec %s timeout %d %s'):format(IP, q(ns), secs, cmd))
end

local function cleanup(env)
  for _, pidfile in ipairs(env.pidfiles) do
    local pid = (read_file(pidfile) or ''):match('%d+')
    if pid then sh('kill ' .. pid .. ' 2>/dev/null') end
  end
  sh('sh ' .. q(NETNS_SH) .. ' down ' .. q(env.tag))
  sh('rm -rf ' .. q(env.dir))
end

local function diagnostics(env)
  local out = {}
  for _, log in ipairs(env.logs) do
    out[#out + 1] = '--- ' .. log:match('[^/]+$') .. ':\n' .. (read_file(log) or ''):sub(-600)
  end
  return table.concat(out, '\n')
end

-- Runs `scenario(env)` with namespaces available, cleaning up after it.
local function with_netns(probe, scenario)
  if T.windows then return T.skip('Linux only: network namespaces') end
  local out, ok = capture('sh ' .. q(NETNS_SH) .. ' ' .. probe)
  if not ok then return T.skip('namespaces unusable here: ' .. out:gsub('%s+$', '')) end
  local env = new_env()
  local pok, err = pcall(scenario, env)
  if not pok then err = tostring(err) .. '\n' .. diagnostics(env) end
  cleanup(env)
  if not pok then error(err, 0) end
  if err then T.skip(err) end
end

local function have(cmd)
  return sh('PATH="$PATH:/usr/sbin:/sbin"; command -v ' .. cmd .. ' >/dev/null 2>&1')
end

---------------------------------------------------------------------------
-- DNS forwarder against dnsmasq, queried by dig
---------------------------------------------------------------------------

local RECORDS = {
  { 'alpha.test.', 'A', '10.9.0.1' },
  { 'beta.test.', 'A', '10.9.0.2' },
  { 'www.alpha.test.', 'A', '10.9.0.1' },
  { 'gamma.test.', 'AAAA', 'fd00:9::7' },
}

local function dns_scenario(env)
  local out, ok = capture('sh ' .. q(NETNS_SH) .. ' lo ' .. q(env.tag))
  assert(ok, 'namespace setup failed: ' .. out)
  local ns = env.tag .. '-lo'
  local bin = capture('PATH="$PATH:/usr/sbin:/sbin"; command -v dnsmasq'):gsub('%s+$', '')
  local dnsmasq = (q(bin) .. ' -k --conf-file=/dev/null --port=5300 '
    .. '--listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts --user=root --group=root '
    .. '--pid-file=%s --address=/alpha.test/10.9.0.1 --address=/beta.test/10.9.0.2 '
    .. '--address=/gamma.test/fd00:9::7'):format(q(env.dir .. '/dnsmasq.pid'))
  spawn(env, ns, 'dnsmasq', dnsmasq)
  local fwd = spawn(env, ns, 'forwarder', ('%s %s 127.0.0.1 5400 127.0.0.1 5300 2')
    :format(q(LUAJIT), q(T.root .. '/examples/dns_forwarder.lua')))
  spawn(env, ns, 'sink', helper('sink', '127.0.0.1', '5301'))
  local fwd2 = spawn(env, ns, 'forwarder_to_sink', ('%s %s 127.0.0.1 5401 127.0.0.1 5301 1')
    :format(q(LUAJIT), q(T.root .. '/examples/dns_forwarder.lua')))
  for _, log in ipairs({ fwd, fwd2, env.logs[3] }) do
    wait_for(10, log:match('[^/]+$') .. ' to listen', function() return contains(log, 'listening') end)
  end
  wait_for(10, 'dnsmasq to answer', function()
    local o = exec(ns, 5, 'dig -p 5300 @127.0.0.1 +tries=1 +time=1 +short alpha.test')
    return o:find('10.9.0.1', 1, true) ~= nil
  end)

  -- 50 clients at once, 20 queries each, through the forwarder. Each dig
  -- sends from an address of its own: dig's sockets share ports
  -- (SO_REUSEPORT), so two clients on one address could draw the same port
  -- and the kernel would hand one's answer to the other.
  local CLIENTS, EACH = 50, 20
  for c = 1, CLIENTS do
    local f = assert(io.open(env.dir .. '/batch' .. c, 'w'))
    for i = 1, EACH do
      local r = RECORDS[(c + i) % #RECORDS + 1]
      f:write(r[1], ' ', r[2], '\n')
    end
    f:close()
  end
  out, ok = exec(ns, 120, ('sh -c %s'):format(q(('for c in $(seq %d); do dig -b 127.0.1.$c -p 5400 @127.0.0.1 '
    .. '+tries=1 +time=10 +noall +answer -f %s/batch$c > %s/answers$c 2>&1 & done; wait')
    :format(CLIENTS, env.dir, env.dir))))
  assert(ok, 'dig clients failed: ' .. out)
  local good, bad = 0, {}
  for c = 1, CLIENTS do
    local want = {}
    for i = 1, EACH do want[i] = RECORDS[(c + i) % #RECORDS + 1] end
    local i = 0
    for line in (read_file(env.dir .. '/answers' .. c) or ''):gmatch('[^\n]+') do
      local name, typ, value = line:match('^(%S+)%s+%d+%s+IN%s+(%S+)%s+(%S+)%s*$')
      if name then
        i = i + 1
        local w = want[i]
        if w and name == w[1] and typ == w[2] and value == w[3] then
          good = good + 1
        elseif #bad < 5 then
          bad[#bad + 1] = ('client %d answer %d: %s'):format(c, i, line)
        end
      elseif #bad < 5 then
        bad[#bad + 1] = ('client %d: %s'):format(c, line)
      end
    end
  end
  print(('  %d of %d queries from %d concurrent dig clients answered correctly'):format(good, CLIENTS * EACH, CLIENTS))
  assert(good == CLIENTS * EACH, ('%d of %d answered correctly:\n%s'):format(good, CLIENTS * EACH, table.concat(bad, '\n')))

  -- An upstream that never answers: SERVFAIL, with the question.
  local t0 = os.time()
  out = exec(ns, 30, 'dig -p 5401 @127.0.0.1 +tries=1 +time=10 beta.test A')
  assert(out:find('status: SERVFAIL', 1, true), 'no SERVFAIL: ' .. out)
  assert(out:find(';beta.test.%s+IN%s+A'), 'SERVFAIL without the question: ' .. out)
  assert(os.time() - t0 < 10, 'SERVFAIL took longer than the timeout')
  assert(contains(fwd2, 'upstream timeout, SERVFAIL'), 'the forwarder did not log the timeout')
  print('  an upstream that does not answer gives SERVFAIL after the 1 s timeout')
end

T.test('dns_forwarder.lua relays dnsmasq answers to 50 concurrent dig clients; SERVFAIL on upstream timeout', function()
  if not have('dnsmasq') then T.skip('dnsmasq not installed (Debian: dnsmasq-base)') end
  if not have('dig') then T.skip('dig not installed (Debian: bind9-dnsutils)') end
  with_netns('probe', dns_scenario)
end)

---------------------------------------------------------------------------
-- Transparent UDP through a TPROXY router
---------------------------------------------------------------------------

local FAMILIES = {
  [4] = { client = '10.201.1.2', router = '10.201.3.1', dest = '10.201.3.2' },
  [6] = { client = 'fd00:201:1::2', router = 'fd00:201:3::1', dest = 'fd00:201:3::2' },
}
local DEST_PORT, PROXY_PORT = 7000, 1090

local function tproxy_scenario(env, fam, any)
  local a = FAMILIES[fam]
  local out, ok = capture('sh ' .. q(NETNS_SH) .. ' up ' .. q(env.tag))
  assert(ok, 'netns setup failed: ' .. out)
  out, ok = capture(('sh %s tproxy %s %d %d %d'):format(q(NETNS_SH), q(env.tag), fam, DEST_PORT, PROXY_PORT))
  if not ok then
    if fam == 6 then return 'ip6tables TPROXY unusable: ' .. out:gsub('%s+$', '') end
    error('TPROXY setup failed: ' .. out, 0)
  end
  local echo = spawn(env, env.tag .. '-dst', 'echo', helper('echo', a.dest, tostring(DEST_PORT)))
  local proxy = spawn(env, env.tag .. '-rtr', 'udp_tproxy', ('%s %s %s %d 30')
    :format(q(LUAJIT), q(T.root .. '/examples/udp_tproxy.lua'), any and '::' or (fam == 4 and '0.0.0.0' or '::'), PROXY_PORT))
  for _, log in ipairs({ echo, proxy }) do
    wait_for(10, log:match('[^/]+$') .. ' to listen', function() return contains(log, 'listening') end)
  end
  out, ok = exec(env.tag .. '-cli', 60, helper('client', a.dest, tostring(DEST_PORT), '50'))
  assert(ok, 'client failed: ' .. out)
  assert(out:find('50 answers from ' .. a.dest, 1, true), 'client output: ' .. out)
  -- The proxy saw the original destination; the destination saw the router.
  local want = fam == 4 and ('%s:%d'):format(a.dest, DEST_PORT) or ('[%s]:%d'):format(a.dest, DEST_PORT)
  assert(contains(proxy, 'original dst ' .. want), 'udp_tproxy did not log original dst ' .. want)
  local peer = (read_file(echo) or ''):match('peer (%S+)')
  assert(peer == a.router, 'destination saw ' .. tostring(peer) .. ', expected the router ' .. a.router)
  print(('  50 datagrams through TPROXY, answers from %s; proxy logged original dst %s'):format(a.dest, want))
end

local function tproxy(fam, any)
  if T.qemu then return T.skip('qemu-user does not pass IP_TRANSPARENT through (setsockopt gives not supported)') end
  if fam == 6 and not read_file('/proc/sys/net/ipv6/conf/all/forwarding') then
    return T.skip('IPv6 is disabled in this kernel')
  end
  with_netns('probe-tproxy', function(env) return tproxy_scenario(env, fam, any) end)
end

T.test('transparent UDP proxy over IPv4 (netns + iptables TPROXY)', function() tproxy(4) end)
T.test('transparent UDP proxy over IPv6 (netns + ip6tables TPROXY)', function() tproxy(6) end)
T.test('transparent UDP proxy over IPv4, listening on dual-stack ::', function() tproxy(4, true) end)

---------------------------------------------------------------------------
-- Multicast and a full send buffer, on a namespace's own loopback
---------------------------------------------------------------------------

T.test('multicast: join, receive, leave on a loopback with multicast on (netns)', function()
  with_netns('probe', function(env)
    local out, ok = capture('sh ' .. q(NETNS_SH) .. ' lo ' .. q(env.tag))
    assert(ok, 'namespace setup failed: ' .. out)
    out, ok = exec(env.tag .. '-lo', 30, helper('multicast'))
    assert(ok and out:find('multicast ok', 1, true), 'multicast: ' .. out)
  end)
end)

T.test('sendto waits for room in a full socket buffer, and its timeout applies (netns, tbf)', function()
  with_netns('probe', function(env)
    local out, ok = capture('sh ' .. q(NETNS_SH) .. ' lo ' .. q(env.tag))
    assert(ok, 'namespace setup failed: ' .. out)
    -- 8 Mbit/s with a queue far larger than the socket buffer: the buffer
    -- fills first, so sends get "would block" instead of qdisc drops.
    out, ok = capture(('PATH="$PATH:/usr/sbin:/sbin" tc -n %s qdisc add dev lo root tbf rate 8mbit burst 16kb limit 4mb')
      :format(q(env.tag .. '-lo')))
    if not ok then return 'tc tbf unusable: ' .. out:gsub('%s+$', '') end
    out, ok = exec(env.tag .. '-lo', 60, helper('sndbuf'))
    assert(ok and out:find('in order', 1, true), 'sndbuf: ' .. out)
    print('  ' .. out:gsub('%s+$', ''))
  end)
end)
