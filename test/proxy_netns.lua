-- End-to-end test of examples/proxy_client.lua + examples/proxy_server.lua.
--
-- Four network namespaces (built by test/netns.sh): a client host, a router
-- that REDIRECTs the client's TCP to proxy_client.lua, a remote host running
-- proxy_server.lua and a destination host running a sink. The client sends
-- 16 MiB and half-closes; the sink replies 16 MiB (what it got, XOR 0xA5)
-- only after EOF, then closes; the client reads until EOF.
--
-- The same file also holds the two helper programs (sink and client) that run
-- inside the namespaces as separate processes:
--   luajit test/proxy_netns.lua --proxy-netns-helper sink IP PORT DIR
--   luajit test/proxy_netns.lua --proxy-netns-helper client IP PORT DIR

local HELPER = '--proxy-netns-helper'
local SIZE = 16 * 1024 * 1024

local function xor_a5(s)
  local ffi, bit = require 'ffi', require 'bit'
  local n = #s
  local buf = ffi.new('uint8_t[?]', n)
  ffi.copy(buf, s, n)
  for i = 0, n - 1 do buf[i] = bit.bxor(buf[i], 0xA5) end
  return ffi.string(buf, n)
end

local function write_file(path, data)
  local f = assert(io.open(path, 'wb'))
  assert(f:write(data))
  f:close()
end

local function read_file(path)
  local f = io.open(path, 'rb')
  if not f then return nil end
  local s = f:read('*a')
  f:close()
  return s
end

if (...) == HELPER then
  local _, role, ip, port, dir = ...
  local asio = require 'asio'
  io.stdout:setvbuf('line')
  local failure

  local function read_to_eof(conn, limit)
    local parts, got = {}, 0
    while true do
      local d, err = conn:read_some()
      if d and #d > 0 then
        parts[#parts + 1] = d
        got = got + #d
        if got > limit then return nil, 'more than ' .. limit .. ' bytes' end
      end
      if err == 'eof' then return table.concat(parts) end
      if err then return nil, err end
    end
  end

  if role == 'sink' then
    -- One connection: report its peer, take everything until EOF, then answer.
    local srv
    srv = assert(asio.server(ip, tonumber(port), function(conn)
      srv:close()
      asio.spawn_light_thread(function()
        local pip, pport = conn:remote_address()
        print('peer ' .. tostring(pip) .. ' ' .. tostring(pport))
        conn:settimeout(30)
        local data, err = read_to_eof(conn, 2 * SIZE)
        if not data then
          failure = 'sink read: ' .. tostring(err)
          conn:close()
          return
        end
        write_file(dir .. '/sink_recv.bin', data)
        print('received ' .. #data)
        local reply = xor_a5(data)
        write_file(dir .. '/sink_sent.bin', reply)
        local ok, werr = conn:write(reply)
        if not ok then failure = 'sink write: ' .. tostring(werr) end
        conn:close()
        print('replied ' .. #reply)
      end)
    end))
    print('listening')
  elseif role == 'client' then
    failure = 'client did not finish'
    asio.spawn_light_thread(function()
      local data = assert(read_file(dir .. '/client_sent.bin'))
      local conn, err = asio.connect(ip, tonumber(port), { timeout = 10 })
      if not conn then
        failure = 'client connect: ' .. tostring(err)
        return
      end
      conn:settimeout(30)
      local reader = asio.spawn_light_thread(read_to_eof, conn, 2 * SIZE)
      local ok, werr = conn:write(data)
      if not ok then
        failure = 'client write: ' .. tostring(werr)
        conn:close()
        return
      end
      conn:shutdown()
      print('sent ' .. #data .. ' and shut down')
      local reply, rerr = asio.join(reader)
      conn:close()
      if not reply then
        failure = 'client read: ' .. tostring(rerr)
        return
      end
      write_file(dir .. '/client_recv.bin', reply)
      print('received ' .. #reply)
      if reply ~= xor_a5(data) then
        failure = 'reply is not the request XOR 0xA5'
      else
        failure = nil
        print('reply matches')
      end
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

local NETNS_SH = T.root .. '/test/netns.sh'
local LUAJIT = T.root .. '/test/luajit'
local SELF = T.root .. '/test/proxy_netns.lua'

-- ip lives in sbin, which a non-login PATH may lack.
local IP = 'PATH="$PATH:/usr/sbin:/sbin" ip'

local function q(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end

-- os.execute returns 0 (Lua 5.1) or true (5.2 compat) on success.
local function sh(cmd)
  local r = os.execute(cmd)
  return r == 0 or r == true
end

-- Output (stdout and stderr) and success of a shell command. LuaJIT's pclose
-- does not report the exit status, so the command echoes it last.
local function capture(cmd)
  local p = assert(io.popen('{ ' .. cmd .. '\n} 2>&1; echo "<rc=$?>"'))
  local out = p:read('*a')
  p:close()
  local body, rc = out:match('^(.*)<rc=(%d+)>%s*$')
  return body or out, rc == '0'
end

local function my_pid()
  local stat = read_file('/proc/self/stat')
  return stat and stat:match('^(%d+)') or tostring(os.time())
end

local function sha256(path)
  local out = capture('sha256sum ' .. q(path))
  return out:match('^(%x+)')
end

local function tail(path, n)
  local s = read_file(path)
  if not s then return '(no ' .. path .. ')' end
  local lines = {}
  for l in s:gmatch('[^\n]*') do if l ~= '' then lines[#lines + 1] = l end end
  return table.concat(lines, '\n', math.max(1, #lines - n + 1))
end

-- Polls every 50 ms; at most `secs` seconds.
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

-- Largest peak resident size (VmHWM, KiB) among the processes in host `ns`.
local function peak_kb(env, ns)
  local peak = 0
  for pid in capture(IP .. ' netns pids ' .. q(env.tag .. '-' .. ns)):gmatch('%d+') do
    local kb = tonumber((read_file('/proc/' .. pid .. '/status') or ''):match('VmHWM:%s*(%d+)'))
    if kb and kb > peak then peak = kb end
  end
  return peak
end

local counter = 0

local function new_env()
  counter = counter + 1
  local dir = capture('mktemp -d /tmp/luaasio-proxy.XXXXXX'):gsub('%s+$', '')
  assert(dir:match('^/tmp/luaasio%-proxy%.'), 'mktemp failed: ' .. dir)
  return { tag = 'lap' .. my_pid() .. string.char(96 + counter), dir = dir, logs = {}, pidfiles = {} }
end

-- Starts `cmd` in host `ns` of the topology, in the background. `timeout`
-- bounds its life even if this runner dies before cleaning up.
local function spawn(env, ns, name, cmd)
  local log, pidfile = env.dir .. '/' .. name .. '.log', env.dir .. '/' .. name .. '.pid'
  env.logs[#env.logs + 1] = log
  env.pidfiles[#env.pidfiles + 1] = pidfile
  assert(sh(string.format('%s netns exec %s timeout 300 %s > %s 2>&1 < /dev/null & echo $! > %s',
    IP, q(env.tag .. '-' .. ns), cmd, q(log), q(pidfile))), 'cannot start ' .. name)
  return log
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
    out[#out + 1] = '--- ' .. log:match('[^/]+$') .. ':\n' .. tail(log, 8)
  end
  return table.concat(out, '\n')
end

local FAMILIES = {
  [4] = { client = '10.201.1.2', router = '10.201.1.1', server = '10.201.2.2', dest = '10.201.3.2',
          fmt = '%s:%d' },
  [6] = { client = 'fd00:201:1::2', router = 'fd00:201:1::1', server = 'fd00:201:2::2', dest = 'fd00:201:3::2',
          fmt = '[%s]:%d' },
}
local DEST_PORT, PROXY_PORT, SERVER_PORT = 7000, 1080, 9000

-- `any`: both proxies listen on '::' (dual-stack) instead of their own
-- address of the family under test.
local function scenario(env, fam, any)
  local a = FAMILIES[fam]
  local out, ok = capture('sh ' .. q(NETNS_SH) .. ' up ' .. q(env.tag))
  assert(ok, 'netns setup failed: ' .. out)
  out, ok = capture(string.format('sh %s redirect %s %d %d %d', q(NETNS_SH), q(env.tag), fam, DEST_PORT, PROXY_PORT))
  if not ok then
    if fam == 6 then return 'ip6tables nat REDIRECT unusable: ' .. out:gsub('%s+$', '') end
    error('iptables REDIRECT setup failed: ' .. out, 0)
  end

  local lua = q(LUAJIT)
  local sink_log = spawn(env, 'dst', 'sink',
    string.format('%s %s %s sink %s %d %s', lua, q(SELF), HELPER, a.dest, DEST_PORT, q(env.dir)))
  local server_log = spawn(env, 'srv', 'proxy_server',
    string.format('%s %s %s %d', lua, q(T.root .. '/examples/proxy_server.lua'),
      any and '::' or a.server, SERVER_PORT))
  local client_log = spawn(env, 'rtr', 'proxy_client',
    string.format('%s %s %s %d %s %d', lua, q(T.root .. '/examples/proxy_client.lua'),
      any and '::' or a.router, PROXY_PORT, a.server, SERVER_PORT))
  for _, log in ipairs({ sink_log, server_log, client_log }) do
    wait_for(10, log:match('[^/]+$') .. ' to listen', function() return contains(log, 'listening') end)
  end

  assert(sh(string.format('head -c %d /dev/urandom > %s', SIZE, q(env.dir .. '/client_sent.bin'))))
  local client_out
  client_out, ok = capture(string.format('%s netns exec %s timeout 60 %s %s %s client %s %d %s',
    IP, q(env.tag .. '-cli'), lua, q(SELF), HELPER, a.dest, DEST_PORT, q(env.dir)))
  assert(ok, 'client failed: ' .. client_out)
  assert(client_out:find('reply matches', 1, true), 'client did not verify the reply: ' .. client_out)

  -- (1) the destination saw the proxy server's host, not the client.
  local peer = (read_file(sink_log) or ''):match('peer (%S+)')
  assert(peer == a.server, 'destination saw peer ' .. tostring(peer) .. ', expected ' .. a.server)

  -- (2) proxy_client recovered the address the client dialled.
  local want = string.format(a.fmt, a.dest, DEST_PORT)
  assert(contains(client_log, 'original dst ' .. want), 'proxy_client did not log original dst ' .. want)

  -- (3) 16 MiB each way, unchanged.
  local d = env.dir .. '/'
  local sent = sha256(d .. 'client_sent.bin')
  assert(sent and sent == sha256(d .. 'sink_recv.bin'), 'client -> destination data differs')
  local reply = sha256(d .. 'sink_sent.bin')
  assert(reply and reply == sha256(d .. 'client_recv.bin'), 'destination -> client data differs')
  assert(reply ~= sent, 'reply should differ from the request')

  -- Both relays saw both directions end cleanly and closed the pair.
  wait_for(5, 'proxy_client to finish the connection', function() return contains(client_log, ': done') end)
  wait_for(5, 'proxy_server to finish the connection', function() return contains(server_log, ': done') end)
  for _, l in ipairs { client_log, server_log } do
    assert(contains(l, '(asio.relay)'), l:match('[^/]+$') .. ' did not relay with asio.relay')
  end

  -- Relaying 32 MiB must not have cost the proxies anything like it: each
  -- direction holds one read_some chunk at a time. (Sanitizers and valgrind
  -- hold freed memory back, so the bound is only checked without them.)
  for _, ns in ipairs(T.instrumented and {} or { 'rtr', 'srv' }) do
    local kb = peak_kb(env, ns)
    assert(kb > 0 and kb < 16384, ns .. ' proxy peaked at ' .. kb .. ' KiB resident')
  end
end

local function run(fam, any)
  if T.windows then return T.skip('Linux only: network namespaces and iptables') end
  if T.qemu then return T.skip('qemu-user does not translate getsockopt(SO_ORIGINAL_DST)') end
  local probe, ok = capture('sh ' .. q(NETNS_SH) .. ' probe')
  if not ok then return T.skip('network namespaces unusable: ' .. probe:gsub('%s+$', '')) end
  if (fam == 6 or any) and not read_file('/proc/sys/net/ipv6/conf/all/forwarding') then
    return T.skip('IPv6 is disabled in this kernel')
  end
  local env = new_env()
  local pok, err = pcall(scenario, env, fam, any)
  if not pok then err = tostring(err) .. '\n' .. diagnostics(env) end
  cleanup(env)
  if not pok then error(err, 0) end
  if err then T.skip(err) end
end

T.test('transparent proxy over IPv4 (netns + iptables REDIRECT)', function() run(4, false) end)
T.test('transparent proxy over IPv6, proxies on :: (netns + ip6tables REDIRECT)', function() run(6, true) end)
T.test('transparent proxy over IPv4, proxies on dual-stack ::', function() run(4, true) end)
