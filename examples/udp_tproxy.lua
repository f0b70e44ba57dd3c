-- A transparent UDP proxy for a router (Linux): relays datagrams that an
-- iptables TPROXY rule steers to it, to the destination each client meant,
-- and sends the answers back to the client from that destination's address.
--
--   luajit examples/udp_tproxy.lua LISTEN_IP LISTEN_PORT [IDLE_SECONDS]
--
-- The rules on the router (see README, "Transparent UDP"):
--   iptables -t mangle -A PREROUTING -i br-lan -p udp --dport 53 \
--     -j TPROXY --on-port LISTEN_PORT --tproxy-mark 0x1/0x1
--   ip rule add fwmark 0x1/0x1 lookup 100
--   ip route add local 0.0.0.0/0 dev lo table 100
--
-- A flow is a client address and port plus an original destination. Each
-- has a socket connected to the destination (from the router's own address)
-- and a transparent socket bound to the destination's address, which the
-- answers are sent from. A flow idle for IDLE_SECONDS (default 60) ends.
-- Needs CAP_NET_ADMIN (root) for the transparent sockets.
local asio = require 'asio'

local ip, port, idle = ...
port, idle = tonumber(port), tonumber(idle) or 60
if not (ip and port) then
  io.stderr:write('usage: udp_tproxy.lua LISTEN_IP LISTEN_PORT [IDLE_SECONDS]\n')
  os.exit(2)
end

local listener, err = asio.udp({ transparent = true, reuseaddr = true })
local ok = listener and listener:bind(ip, port)
if not ok then
  io.stderr:write('udp_tproxy: cannot listen on ', ip, ' port ', port, ': ', tostring(err), '\n')
  os.exit(1)
end
print(('listening port %d'):format(select(2, listener:local_address())))
io.stdout:flush()

local flows = {}

local function log(...)
  print(table.concat({ ... }, ' '))
  io.stdout:flush()
end

-- Relays the destination's answers to the client until the flow is idle.
local function answers(key, up, reply, cip, cport)
  while true do
    local data, why = up:recv(idle)
    if not data then
      if why ~= 'timeout' then log(key, 'ends:', why) end
      break
    end
    reply:sendto(data, cip, cport)
  end
  flows[key] = nil
  up:close()
  reply:close()
end

local function open_flow(key, cip, cport, orig)
  local up = assert(asio.udp())
  local ok, why = up:connect(orig)
  if not ok then
    up:close()
    return nil, why
  end
  local reply
  reply, why = asio.udp({ transparent = true, reuseaddr = true, bind = orig })
  if not reply then
    up:close()
    return nil, why
  end
  local flow = { up = up }
  flows[key] = flow
  log(('[%s]:%d: original dst %s'):format(cip, cport, asio.addr_to_string(orig)))
  asio.spawn_light_thread(answers, key, up, reply, cip, cport)
  return flow
end

asio.spawn_light_thread(function()
  while true do
    local data, cip, cport, orig = listener:recvfrom()
    if not data then
      if cip ~= 'datagram truncated' then log('udp_tproxy:', cip) break end
    elseif orig then
      local key = cip .. ' ' .. cport .. ' ' .. orig
      local flow, why = flows[key]
      if not flow then flow, why = open_flow(key, cip, cport, orig) end
      if flow then flow.up:send(data) else log(('[%s]:%d: %s'):format(cip, cport, why)) end
    end
  end
end)

asio.run()
