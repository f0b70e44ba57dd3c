-- Redis SET/GET load for bench/redis.sh. Usage:
--   redis_clients.lua resty PORT CLIENTS REQUESTS   (lua-resty-redis on asio.ngx)
--   redis_clients.lua luasocket PORT 1 REQUESTS     (redis-lua on plain LuaSocket)
-- Sends REQUESTS commands in total, alternately SET and GET, no pipelining,
-- and prints "<requests> <seconds>".
local mode, port, clients, total = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
local per = math.floor(total / clients / 2)

local function clock()
  local f = io.open('/proc/uptime'); local t = f:read('*n'); f:close(); return t
end

if mode == 'resty' then
  local asio = require 'asio'
  require 'asio.ngx'
  local redis = require 'nginx.redis'
  local t0
  local done = 0
  for i = 1, clients do
    asio.spawn_light_thread(function()
      local r = redis:new()
      r:set_timeout(10000)
      assert(r:connect('127.0.0.1', port))
      local key = 'k' .. i
      for k = 1, per do
        assert(r:set(key, k))
        assert(r:get(key) == tostring(k))
      end
      r:close()
      done = done + 1
    end)
  end
  t0 = asio.now()
  asio.run()
  print(clients * per * 2, asio.now() - t0)
else
  local redis = require 'redis'
  local client = redis.connect('127.0.0.1', port)
  local socket = require 'socket'
  local t0 = socket.gettime()
  for k = 1, per * clients do
    client:set('k', k)
    assert(client:get('k') == tostring(k))
  end
  print(per * clients * 2, socket.gettime() - t0)
end
