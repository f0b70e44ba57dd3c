-- Soak: many requests against an echo server in a child process, with
-- connections reopened as they go; the server's RSS and descriptor count
-- must stay flat after warm-up.
-- Usage: ./test/luajit test/soak.lua [requests=1000000] [clients=50]
local asio = require 'asio'
local T = require 'testlib'
local P = require 'proc'

local total = tonumber(arg[1]) or 1000000
local clients = tonumber(arg[2]) or 50
local per_conn = 1000          -- requests before a client reconnects
local deadline = 600           -- seconds; the run fails rather than hangs

if not T.fd_count() then
  print('soak: skipped, needs /proc (Linux)')
  os.exit(0)
end

local child = P.start('test/helpers/echo_server.lua', 'echo')
local ok, err = pcall(T.go, function()
  local port = child:port()
  local done, failures = 0, 0
  local warm_rss, warm_fds, warm_self
  local samples = {}
  local start = asio.now()

  local function sample()
    samples[#samples + 1] = ('%7d requests: server %6d KiB, %4d fds; client %6d KiB')
      :format(done, child:rss_kb(), child:fds(), T.rss_kb())
  end

  local waits = {}
  for i = 1, clients do
    waits[i] = T.spawn(function()
      local msg = ('%032d'):format(i)
      while done < total do
        local c, cerr = asio.connect('127.0.0.1', port)
        if not c then failures = failures + 1 error('connect: ' .. cerr) end
        c:settimeout(10)
        for _ = 1, per_conn do
          if done >= total then break end
          if not c:write(msg) or c:read(32) ~= msg then
            failures = failures + 1
            error('echo failed')
          end
          done = done + 1
          if done == math.floor(total / 5) then
            collectgarbage()
            warm_rss, warm_fds, warm_self = child:rss_kb(), child:fds(), T.rss_kb()
            sample()
          elseif done % math.floor(total / 10) == 0 then
            sample()
          end
        end
        c:close()
      end
      if asio.now() - start > deadline then error('soak exceeded ' .. deadline .. ' s') end
    end)
  end
  for i = 1, clients do
    local r, e = waits[i]()
    if e then error(e, 0) end
  end
  local elapsed = asio.now() - start
  asio.sleep(0.2)
  collectgarbage()
  sample()
  for _, s in ipairs(samples) do print(s) end
  local rss, fds, self_rss = child:rss_kb(), child:fds(), T.rss_kb()
  print(('soak: %d requests in %.1f s (%.0f/s), %d failures'):format(done, elapsed, done / elapsed, failures))
  assert(failures == 0, 'failures')
  assert(done >= total, 'not all requests done')
  -- Flat after warm-up: a few hundred KiB of allocator noise at most.
  assert(rss <= warm_rss + 1024, ('server RSS grew from %d to %d KiB'):format(warm_rss, rss))
  assert(fds <= warm_fds + 2, ('server descriptors grew from %d to %d'):format(warm_fds, fds))
  assert(self_rss <= warm_self + 4096, ('client RSS grew from %d to %d KiB'):format(warm_self, self_rss))
end, deadline + 30)
child:stop()
if not ok then
  print('soak: FAILED: ' .. tostring(err))
  os.exit(1, true)
end
print('soak: ok')
os.exit(0, true)
