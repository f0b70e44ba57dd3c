-- The C side under pressure: handle reuse, accept bursts, connection
-- limits, slow name resolution and connect timeouts over several addresses.
local asio = require 'asio'
local T = require 'testlib'
local ffi = require 'ffi'

local test, go, eq, raises = T.test, T.go, T.eq, T.raises
local C = require('asio.lib').C
local S = require 'asio.state'

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read('*a')
  p:close()
  return out
end

-- Writes `body` to a temporary script and runs it with ./test/luajit,
-- optionally inside a network namespace; returns its output.
local function run_script(body, netns)
  local path = os.tmpname()
  local f = assert(io.open(path, 'w'))
  f:write(body)
  f:close()
  local prefix = netns and ('ip netns exec ' .. netns .. ' ') or ''
  local out = sh(('cd %s && %stimeout 60 ./test/luajit %s 2>&1'):format(T.root, prefix, path))
  os.remove(path)
  return out
end

---------------------------------------------------------------------------
-- Handles
---------------------------------------------------------------------------

test('a stale handle stays stale over 3,000 open/close cycles', function()
  go(function()
    local srv, port = T.server(function(c) c:close() end)
    local stale = C.luaasio_connect(S.loop, 1, '127.0.0.1', port)
    assert(stale > 0, 'connect handle')
    C.luaasio_close(S.loop, stale)
    local buf = ffi.new('char[1]')
    for i = 1, 3000 do
      local h = C.luaasio_connect(S.loop, 1, '127.0.0.1', port)
      assert(h > 0, 'connect handle')
      if h == stale then error('handle reused after ' .. i .. ' cycles') end
      C.luaasio_close(S.loop, h)
    end
    eq(C.luaasio_conn_read(S.loop, stale, buf, 1), C.LUAASIO_EBADF, 'stale handle rejected')
    eq(C.luaasio_close(S.loop, stale), C.LUAASIO_EBADF, 'stale close rejected')
    srv:close()
  end)
end)

---------------------------------------------------------------------------
-- Accepting
---------------------------------------------------------------------------

test('an accept burst is bounded: 400 queued connections are not all taken at once', function()
  if T.windows then T.skip('needs a POSIX shell') end
  go(function()
    local seen_first, accepted = nil, 0
    local srv = assert(asio.server('127.0.0.1', 0, function(c)
      accepted = accepted + 1
      if not seen_first then seen_first = asio.stats().objects end
      c:close()
    end, { backlog = 1024 }))
    -- Another process fills the listen queue while this loop is not running.
    local out = run_script(([[
      local asio = require 'asio'
      local n = 0
      for i = 1, 400 do
        asio.spawn_light_thread(function()
          if asio.connect('127.0.0.1', %d) then n = n + 1 end
        end)
      end
      asio.run()
      print('connected ' .. n)
      os.exit(0)
    ]]):format(srv:port()))
    assert(out:find('connected 400', 1, true), out)
    for _ = 1, 200 do
      if accepted == 400 then break end
      asio.sleep(0.01)
    end
    eq(accepted, 400, 'all accepted in the end')
    assert(seen_first <= 64 + 2, ('%d objects existed when the first handler ran'):format(seen_first))
    srv:close()
  end)
end)

test('max_connections: at the limit the server stops accepting until one closes', function()
  go(function()
    local accepted = {}
    local srv = assert(asio.server('127.0.0.1', 0, function(c)
      accepted[#accepted + 1] = c
    end, { max_connections = 3 }))
    local clients = {}
    for i = 1, 5 do clients[i] = assert(asio.connect('127.0.0.1', srv:port())) end
    asio.sleep(0.1)
    eq(#accepted, 3, 'accepted at the limit')
    accepted[1]:close()
    asio.sleep(0.1)
    eq(#accepted, 4, 'one more once one closed')
    accepted[2]:close()
    accepted[3] = nil   -- dropped without close: collected, which closes it too
    collectgarbage()
    collectgarbage()
    asio.sleep(0.1)
    eq(#accepted, 5, 'the last one')
    for _, c in pairs(accepted) do c:close() end
    for _, c in ipairs(clients) do c:close() end
    srv:close()
    raises("bad argument #4 to 'server' (max_connections", asio.server, '127.0.0.1', 0,
      function() end, { max_connections = -1 })
  end)
end)

---------------------------------------------------------------------------
-- Name resolution and connecting, against a name server that never answers
---------------------------------------------------------------------------

-- A namespace with loopback and a veth pair: packets to 10.77.0.2 and .3 go
-- out of v0 to a made-up hardware address, and v1 drops them, so a name
-- server or peer there never answers (and no error comes back either).
-- ip netns exec mounts /etc/netns/NAME/* over /etc/*.
local function with_silent_netns(files, body)
  if T.windows or T.qemu then T.skip('needs Linux network namespaces (not under qemu or wine)') end
  if sh('id -u'):match('%d+') ~= '0' then T.skip('needs root for network namespaces') end
  local name = 'lah' .. T.pid()
  local etc = '/etc/netns/' .. name
  local function cleanup()
    os.execute(('ip netns del %s 2>/dev/null; rm -rf %s'):format(name, etc))
  end
  cleanup()
  local ok = os.execute(table.concat({
    'ip netns add ' .. name,
    'ip -n ' .. name .. ' link set lo up',
    'ip -n ' .. name .. ' link add v0 type veth peer name v1',
    'ip -n ' .. name .. ' addr add 10.77.0.1/24 dev v0',
    'ip -n ' .. name .. ' link set v0 up',
    'ip -n ' .. name .. ' link set v1 up',
    'ip -n ' .. name .. ' neigh add 10.77.0.2 lladdr 02:00:00:00:77:02 dev v0',
    'ip -n ' .. name .. ' neigh add 10.77.0.3 lladdr 02:00:00:00:77:03 dev v0',
    'mkdir -p ' .. etc,
  }, ' && ') .. ' 2>/dev/null')
  if ok ~= 0 and ok ~= true then cleanup(); T.skip('cannot create a network namespace here') end
  for file, text in pairs(files) do
    local f = assert(io.open(etc .. '/' .. file, 'w'))
    f:write(text)
    f:close()
  end
  local res = { pcall(body, name) }
  cleanup()
  assert(res[1], res[2])
end

test('a lookup that hangs delays no other lookup, and does not hold up exit', function()
  with_silent_netns({ ['resolv.conf'] = 'nameserver 10.77.0.2\noptions timeout:5 attempts:1\n' },
    function(ns)
      local started = asio.now()
      local out = run_script([[
        local asio = require 'asio'
        local t0 = asio.now()
        asio.spawn_light_thread(function()
          local r, err = asio.resolve('never-answered.test', { timeout = 0.5 })
          print(('stalled %s %s %.2f'):format(tostring(r), tostring(err), asio.now() - t0))
        end)
        asio.spawn_light_thread(function()
          asio.sleep(0.05)
          local r = asio.resolve('localhost', { family = 'inet' })
          print(('fast %s %.2f'):format(r and r[1] or 'none', asio.now() - t0))
        end)
        asio.run()
        io.stdout:write(('exit %.2f\n'):format(asio.now() - t0))
        os.exit(0, true)
      ]], ns)
      local stalled = tonumber(out:match('stalled nil timeout ([%d.]+)'))
      local fast = tonumber(out:match('fast 127%.0%.0%.1 ([%d.]+)'))
      assert(stalled and fast, out)
      assert(fast < 0.4, 'the fast lookup waited for the stalled one: ' .. out)
      assert(stalled >= 0.45 and stalled < 2, 'timeout of the stalled lookup: ' .. out)
      -- The script ended at once, with getaddrinfo() still waiting on the
      -- silent name server (5 s).
      assert(out:find('exit ', 1, true), out)
      assert(asio.now() - started < 3, 'exit waited for the hanging lookup: ' .. out)
    end)
end)

-- Names are looked up in /etc/hosts alone here (nsswitch.conf), and the
-- name server the namespace lists is the silent 10.77.0.2: these answers
-- come from files the test wrote, and no query leaves the machine.
local HOSTS_ONLY = {
  hosts = '127.0.0.1 localhost\n::1 localhost\n',
  ['nsswitch.conf'] = 'hosts: files\n',
  ['resolv.conf'] = 'nameserver 10.77.0.2\noptions timeout:1 attempts:1\n',
}

test("resolve: a name that is nowhere → nil, 'name not resolved' from resolve and connect", function()
  with_silent_netns(HOSTS_ONLY, function(ns)
    local out = run_script([[
      local asio = require 'asio'
      asio.spawn_light_thread(function()
        local t0 = asio.now()
        local r, err = asio.resolve('no-such-host.invalid', { timeout = 5 })
        print(('resolve %s %s'):format(tostring(r), tostring(err)))
        local c, cerr = asio.connect('no-such-host.invalid', 80, { timeout = 5 })
        print(('connect %s %s'):format(tostring(c), tostring(cerr)))
        r, err = asio.resolve('')
        print(('empty %s %s'):format(tostring(r), tostring(err)))
        print(('took %.2f'):format(asio.now() - t0))
      end)
      asio.run()
    ]], ns)
    assert(out:find('resolve nil name not resolved', 1, true), out)
    assert(out:find('connect nil name not resolved', 1, true), out)
    assert(out:find('empty nil name not resolved', 1, true), out)
    -- Every answer came from the hosts file, none from a timeout.
    local took = tonumber(out:match('took ([%d.]+)'))
    assert(took and took < 1, out)
  end)
end)

test('resolve: {family=} gives exactly the IPv4 or the IPv6 addresses of a name', function()
  with_silent_netns(HOSTS_ONLY, function(ns)
    local out = run_script([[
      local asio = require 'asio'
      asio.spawn_light_thread(function()
        local function show(what, list, err)
          if list then table.sort(list) end
          print(('%s %s'):format(what, list and table.concat(list, ',') or 'nil ' .. tostring(err)))
        end
        show('any', asio.resolve('localhost'))
        show('inet', asio.resolve('localhost', { family = 'inet' }))
        show('inet6', asio.resolve('localhost', { family = 'inet6' }))
        show('v6-as-inet', asio.resolve('::1', { family = 'inet' }))
        show('v4-as-inet6', asio.resolve('127.0.0.1', { family = 'inet6' }))
      end)
      asio.run()
    ]], ns)
    assert(out:find('any 127.0.0.1,::1\n', 1, true), out)
    assert(out:find('inet 127.0.0.1\n', 1, true), out)
    assert(out:find('inet6 ::1\n', 1, true), out)
    assert(out:find('v6-as-inet nil name not resolved\n', 1, true), out)
    assert(out:find('v4-as-inet6 nil name not resolved\n', 1, true), out)
  end)
end)

test('connect tries every address after a kernel connect timeout', function()
  with_silent_netns({ hosts = '127.0.0.1 localhost\n10.77.0.2 two.test\n10.77.0.3 two.test\n' },
    function(ns)
      -- One SYN retry: the kernel gives up on an address after about 3 s.
      os.execute('ip netns exec ' .. ns .. ' sh -c "echo 1 > /proc/sys/net/ipv4/tcp_syn_retries"')
      local out = run_script([[
        local asio = require 'asio'
        asio.spawn_light_thread(function()
          local list = asio.resolve('two.test')
          print('addresses ' .. #list)
          local t0 = asio.now()
          local c, err = asio.connect('two.test', 80)
          print(('connect %s %s %.1f'):format(tostring(c), tostring(err), asio.now() - t0))
        end)
        asio.run()
      ]], ns)
      assert(out:find('addresses 2', 1, true), out)
      local took = tonumber(out:match('connect nil timeout ([%d.]+)'))
      assert(took, out)
      -- Both addresses were tried: two kernel timeouts, not one.
      assert(took > 4.5, 'only one address was tried: ' .. out)
    end)
end)
