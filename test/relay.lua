-- asio.relay: forwarding both directions between two connections, natively
-- (splice on Linux, a buffer elsewhere) and in Lua (TLS connections).
local asio = require 'asio'
local ffi = require 'ffi'
local T = require 'testlib'

-- The three ways a relay runs; each test runs in all of them.
local MODES = {
  { name = 'splice', opts = {} },
  { name = 'buffered', opts = { splice = false } },
  { name = 'lua', opts = { native = false } },
}

local function copy(t, extra)
  local r = {}
  for k, v in pairs(t) do r[k] = v end
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

-- A proxy on 127.0.0.1 that relays each client to a fresh connection to
-- `target_port`. `done` receives each relay's results in order.
local function proxy(target_port, opts, done)
  return assert(asio.server('127.0.0.1', 0, function(c)
    asio.spawn_light_thread(function()
      local up = assert(asio.connect('127.0.0.1', target_port))
      local r = { asio.relay(c, up, opts) }
      r.c, r.up = c, up
      done[#done + 1] = r
      c:close()
      up:close()
    end)
  end))
end

-- Deterministic bytes: `n` of them, different for each seed.
local function data(n, seed)
  local parts, x = {}, seed
  local chunk = {}
  for i = 1, 4096 do
    x = (x * 1103515245 + 12345) % 2147483648
    chunk[i] = string.char(x % 256)
  end
  local block = table.concat(chunk)
  for i = 1, math.ceil(n / #block) do parts[i] = block end
  return table.concat(parts):sub(1, n)
end

T.test('16 MiB each way at once, intact, in every mode', function()
  local mib = (T.instrumented or T.qemu) and 2 or 16
  local up_data, down_data = data(mib * 1048576, 7), data(mib * 1048576, 11)
  for _, mode in ipairs(MODES) do
    T.go(function()
      local got_at_target
      local tgt = assert(asio.server('127.0.0.1', 0, function(c)
        asio.spawn_light_thread(function()
          local w = asio.spawn_light_thread(function() assert(c:write(down_data)); c:shutdown() end)
          got_at_target = assert(c:read(#up_data))
          T.eq(select(2, c:read_some()), 'eof', 'target eof')
          asio.join(w)
          c:close()
        end)
      end))
      local done = {}
      local px = proxy(tgt:port(), mode.opts, done)
      local c = assert(asio.connect('127.0.0.1', px:port()))
      local w = asio.spawn_light_thread(function() assert(c:write(up_data)); c:shutdown() end)
      local got = assert(c:read(#down_data))
      T.eq(select(2, c:read_some()), 'eof', 'client eof')
      asio.join(w)
      c:close()
      for _ = 1, 200 do if done[1] then break end asio.sleep(0.01) end
      T.eq(got == down_data, true, mode.name .. ': downstream intact')
      T.eq(got_at_target == up_data, true, mode.name .. ': upstream intact')
      local r = assert(done[1], 'relay did not return')
      T.eq(r[1], #up_data, mode.name .. ': bytes a->b')
      T.eq(r[2], #down_data, mode.name .. ': bytes b->a')
      T.eq(r[3], 'eof', mode.name .. ': end a->b')
      T.eq(r[4], 'eof', mode.name .. ': end b->a')
      px:close()
      tgt:close()
    end, 120)
  end
end)

T.test('half-closes in every order; data keeps flowing the other way', function()
  for _, mode in ipairs(MODES) do
    for _, order in ipairs({ 'client first', 'target first' }) do
      T.go(function()
        local tgt = assert(asio.server('127.0.0.1', 0, function(c)
          asio.spawn_light_thread(function()
            if order == 'target first' then
              c:write('early\n')
              c:shutdown()
              -- the client still sends after our FIN
              T.eq(c:read_line(), 'late', 'target read after its shutdown')
              T.eq(select(2, c:read_some()), 'eof', 'target eof')
            else
              T.eq(c:read_line(), 'request', 'target read')
              T.eq(select(2, c:read_some()), 'eof', 'target sees the client half-close')
              c:write('answer after eof\n')
              c:shutdown()
            end
            c:close()
          end)
        end))
        local done = {}
        local px = proxy(tgt:port(), mode.opts, done)
        local c = assert(asio.connect('127.0.0.1', px:port()))
        if order == 'target first' then
          T.eq(c:read_line(), 'early', 'client read')
          T.eq(select(2, c:read_some()), 'eof', 'client sees the target half-close')
          assert(c:write('late\n'))
          c:shutdown()
        else
          assert(c:write('request\n'))
          c:shutdown()
          T.eq(c:read_line(), 'answer after eof', 'answer after the half-close')
          T.eq(select(2, c:read_some()), 'eof', 'client eof')
        end
        for _ = 1, 200 do if done[1] then break end asio.sleep(0.01) end
        local r = assert(done[1], 'relay did not return')
        T.eq(r[3], 'eof', mode.name .. ', ' .. order .. ': end a->b')
        T.eq(r[4], 'eof', mode.name .. ', ' .. order .. ': end b->a')
        c:close()
        px:close()
        tgt:close()
      end)
    end
  end
end)

T.test('a reset on either side ends both directions with connection reset', function()
  for _, mode in ipairs(MODES) do
    for _, who in ipairs({ 'client', 'target' }) do
      T.go(function()
        local tconn
        local tgt = assert(asio.server('127.0.0.1', 0, function(c)
          tconn = c
          asio.spawn_light_thread(function()
            c:read_line()
            if who == 'target' then
              c:setoption('linger', 0)
              c:close()
            else
              c:read_some()
              c:close()
            end
          end)
        end))
        local done = {}
        local px = proxy(tgt:port(), mode.opts, done)
        local c = assert(asio.connect('127.0.0.1', px:port()))
        c:write('hello\n')
        asio.sleep(0.05)
        if who == 'client' then
          c:setoption('linger', 0)
          c:close()
        end
        for _ = 1, 300 do if done[1] then break end asio.sleep(0.01) end
        local r = assert(done[1], mode.name .. ': relay did not return after a ' .. who .. ' reset')
        local reset = who == 'client' and r[3] or r[4]
        T.eq(reset, 'connection reset', mode.name .. ': the direction from the ' .. who)
        local other = who == 'client' and r[4] or r[3]
        assert(other == 'connection reset' or other == 'broken pipe' or other == 'eof',
          mode.name .. ': other direction ' .. tostring(other))
        if who == 'target' then c:close() end
        px:close()
        tgt:close()
      end)
    end
  end
end)

T.test('idle_timeout ends the relay with timeout and closes both sides', function()
  for _, mode in ipairs(MODES) do
    T.go(function()
      local tgt = assert(asio.server('127.0.0.1', 0, function(c)
        asio.spawn_light_thread(function()
          c:write('hi\n')
          repeat local d = c:read_some() until not d or d == ''   -- until the relay closes it
          c:close()
        end)
      end))
      local done = {}
      local px = proxy(tgt:port(), copy(mode.opts, { idle_timeout = 0.3 }), done)
      local c = assert(asio.connect('127.0.0.1', px:port()))
      T.eq(c:read_line(), 'hi', 'traffic first')
      -- keep it busy for a while: the timeout counts from the last byte
      for _ = 1, 4 do asio.sleep(0.15); c:write('x') end
      local t0 = asio.now()
      for _ = 1, 200 do if done[1] then break end asio.sleep(0.01) end
      local r = assert(done[1], 'relay did not return')
      local quiet = asio.now() - t0
      assert(quiet > 0.15 and quiet < 1.5, mode.name .. ': ended after ' .. quiet .. ' s of quiet: ' .. tostring(r[3]) .. ' ' .. tostring(r[4]))
      T.eq(r[3], 'timeout', mode.name .. ': end a->b')
      T.eq(r[4], 'timeout', mode.name .. ': end b->a')
      T.eq(r.c.h, 0, 'the relay closed the client side')
      T.eq(select(2, c:read_some()), 'eof', 'the client sees the close')
      c:close()
      px:close()
      tgt:close()
    end)
  end
end)

T.test('closing a relayed connection from another light thread ends the relay at once', function()
  for _, mode in ipairs(MODES) do
    T.go(function()
      local tgt, port = T.server(function(c) c:read_some(); c:close() end)
      local a = assert(asio.connect('127.0.0.1', port))
      local pair
      local srv = assert(asio.server('127.0.0.1', 0, function(c) pair = c end))
      local b = assert(asio.connect('127.0.0.1', srv:port()))
      for _ = 1, 100 do if pair then break end asio.sleep(0.01) end
      local th = asio.spawn_light_thread(function() return asio.relay(a, pair, mode.opts) end)
      asio.sleep(0.05)
      T.eq(select(2, a:read_some()), 'busy', 'reading a relayed connection')
      local t0 = asio.now()
      a:close()
      local n1, n2, e1, e2 = asio.join(th)
      assert(asio.now() - t0 < 0.5, 'took ' .. (asio.now() - t0))
      T.eq(n1, 0, 'bytes')
      assert(e1 == 'closed' or e2 == 'closed', mode.name .. ': ' .. tostring(e1) .. ' ' .. tostring(e2))
      -- the other connection is usable again
      assert(pair:write('after\n'))
      T.eq(b:read_line(), 'after', 'the other side works after the relay')
      pair:close()
      b:close()
      srv:close()
      tgt:close()
    end)
  end
end)

T.test('bytes buffered in Lua go first; killing the relaying thread frees the connections', function()
  T.go(function()
    local tgt, port = T.server(function(c)
      T.eq(c:read(13), 'GET / rest..\n', 'the target gets the buffered bytes first')
      c:write('ok\n')
      c:read_some()
      c:close()
    end)
    local done = {}
    local px = assert(asio.server('127.0.0.1', 0, function(c)
      asio.spawn_light_thread(function()
        T.eq(c:read_line(), 'HEADER', 'header line')
        local up = assert(asio.connect('127.0.0.1', port))
        done[1] = { asio.relay(c, up) }
        c:close(); up:close()
      end)
    end))
    local c = assert(asio.connect('127.0.0.1', px:port()))
    c:write('HEADER\nGET / rest..\n')
    T.eq(c:read_line(), 'ok', 'answer')
    c:close()
    for _ = 1, 200 do if done[1] then break end asio.sleep(0.01) end
    T.eq(done[1][1], 13, 'bytes a->b count the buffered ones')
    px:close()
    tgt:close()
    -- kill
    local srv, sport = T.server(function(x) x:read_some(); x:close() end)
    local a = assert(asio.connect('127.0.0.1', sport))
    local b = assert(asio.connect('127.0.0.1', sport))
    local th = asio.spawn_light_thread(function() return asio.relay(a, b) end)
    asio.sleep(0.02)
    T.eq(select(2, b:read_some()), 'busy', 'busy while relayed')
    assert(asio.kill(th))
    assert(a:write('x'), 'writable after kill')
    b:settimeout(0.05)
    T.eq(select(2, b:read_some()), 'timeout', 'readable after kill')
    a:close(); b:close()
    srv:close()
  end)
end)

-- Raises the soft descriptor limit as far as the hard one allows.
local function raise_fd_limit()
  if ffi.os ~= 'Linux' then return nil end
  pcall(ffi.cdef, 'struct luaasio_rlimit { unsigned long cur, max; };'
    .. 'int getrlimit(int, struct luaasio_rlimit *); int setrlimit(int, const struct luaasio_rlimit *);')
  local RLIMIT_NOFILE = (jit.arch == 'mips' or jit.arch == 'mipsel') and 5 or 7
  local rl = ffi.new('struct luaasio_rlimit')
  if ffi.C.getrlimit(RLIMIT_NOFILE, rl) ~= 0 then return nil end
  if rl.cur < rl.max then
    rl.cur = rl.max < 65536 and rl.max or 65536
    ffi.C.setrlimit(RLIMIT_NOFILE, rl)
    ffi.C.getrlimit(RLIMIT_NOFILE, rl)
  end
  return tonumber(rl.cur)
end

T.test('1,000 concurrent relays; descriptors and memory flat after they end', function()
  local limit = raise_fd_limit() or 1024
  -- each relay: client, proxy in, proxy out, target (4 sockets), 2 pipes (4)
  local n = math.min(1000, math.floor((limit - 256) / 8))
  if T.instrumented or T.qemu then n = math.min(n, 200) end
  assert(n >= 100, 'descriptor limit too low: ' .. limit)
  T.go(function()
    local function round()
      local tgt = assert(asio.server('127.0.0.1', 0, function(c)
        asio.spawn_light_thread(function()
          local l = c:read_line()
          c:write('echo ' .. tostring(l) .. '\n')
          c:read_some()
          c:close()
        end)
      end, { backlog = 1024 }))
      local done = {}
      local px = proxy(tgt:port(), {}, done)
      local clients = {}
      for i = 1, n do
        clients[i] = assert(asio.connect('127.0.0.1', px:port()))
        clients[i]:write('n' .. i .. '\n')
      end
      for i = 1, n do T.eq(clients[i]:read_line(), 'echo n' .. i, 'echo') end
      -- all relays are running now
      for i = 1, n do clients[i]:close() end
      for _ = 1, 500 do if #done == n then break end asio.sleep(0.01) end
      T.eq(#done, n, 'relays ended')
      px:close()
      tgt:close()
    end
    round()
    collectgarbage(); collectgarbage()
    asio.sleep(0.1)
    local fd0, rss0 = T.fd_count(), T.rss_kb()
    round()
    collectgarbage(); collectgarbage()
    asio.sleep(0.1)
    local fd1, rss1 = T.fd_count(), T.rss_kb()
    -- A leak per relay would show as n more; a few may belong to other
    -- tests' connections still closing.
    if fd0 then assert(fd1 <= fd0 + 4, ('descriptors: %d before, %d after %d relays'):format(fd0, fd1, n)) end
    if rss0 and not T.instrumented and not T.qemu then
      assert(rss1 - rss0 < 8192, ('RSS grew by %d KB after %d relays'):format(rss1 - rss0, n))
    end
  end, 120)
end)

T.test('misuse raises errors naming relay and the argument, and changes nothing', function()
  T.raises("bad argument #1 to 'relay' (connection expected, got nil)", asio.relay, nil, nil)
  T.raises("bad argument #2 to 'relay' (connection expected, got string)", asio.relay,
    require('asio.conn').new(0), 'x')
  T.raises("must be called from a light thread", asio.relay, require('asio.conn').new(0), require('asio.conn').new(0))
  T.go(function()
    local srv, port = T.server(function(c) c:read_some(); c:close() end)
    local a = assert(asio.connect('127.0.0.1', port))
    local b = assert(asio.connect('127.0.0.1', port))
    T.raises("the same connection as argument #1", asio.relay, a, a)
    T.raises("idle_timeout must be a positive number", asio.relay, a, b, { idle_timeout = 0 })
    T.raises("splice must be a boolean", asio.relay, a, b, { splice = 1 })
    T.raises("bad argument #3 to 'relay' (table or nil expected, got number)", asio.relay, a, b, 5)
    -- nothing changed: both still work
    assert(a:write('x'))
    b:close()
    T.eq(select(2, asio.relay(a, b)), 'closed', 'relay with a closed connection')
    a:close()
    srv:close()
  end)
end)

T.test('a TLS connection is relayed through the TLS library, in Lua', function()
  local ok = asio.tls_available()
  if not ok then
    if os.getenv('LUAASIO_REQUIRE_TLS') == '1' then error('the TLS library is required (LUAASIO_REQUIRE_TLS=1)') end
    T.skip('libluaasio_tls is not built')
  end
  if T.windows or os.execute('command -v openssl >/dev/null 2>&1') ~= 0 then T.skip('needs the openssl command') end
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute(('mkdir -p %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout %s/k.pem -out %s/c.pem -days 2 -subj /CN=localhost >/dev/null 2>&1')
    :format(d, d, d)) == 0)
  local payload = data(3 * 1048576 + 17, 3)
  T.go(function()
    local tgt, port = T.server(function(c)
      local got = c:read(#payload)
      c:write(got == payload and 'intact\n' or 'damaged\n')
      c:shutdown()
      c:read_some()
      c:close()
    end)
    local done = {}
    local srv = assert(asio.server('127.0.0.1', 0, function(c)
      -- the handler runs in a light thread once the handshake is done
      local up = assert(asio.connect('127.0.0.1', port))
      done[1] = { asio.relay(c, up) }
      c:close()
      up:close()
    end, { tls = { cert = d .. '/c.pem', key = d .. '/k.pem' } }))
    local c = assert(asio.connect('127.0.0.1', srv:port(), { tls = { verify = false } }))
    assert(c:write(payload))
    c:shutdown()
    T.eq(c:read_line(), 'intact', 'the target got every byte')
    T.eq(select(2, c:read_some()), 'eof', 'end')
    c:close()
    for _ = 1, 200 do if done[1] then break end asio.sleep(0.01) end
    local r = assert(done[1], 'relay did not return')
    T.eq(r[1], #payload, 'bytes client -> target')
    T.eq(r[2], #'intact\n', 'bytes target -> client')
    T.eq(r[3], 'eof', 'end a->b')
    T.eq(r[4], 'eof', 'end b->a')
    srv:close()
    tgt:close()
  end)
  os.execute('rm -rf ' .. d)
end)
