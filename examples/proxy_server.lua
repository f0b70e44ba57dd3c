-- Transparent proxy, remote side.
--
--   luajit proxy_server.lua LISTEN_IP LISTEN_PORT [--xor-stream]
--
-- Accepts connections from proxy_client.lua. Each one starts with the
-- destination as a 128-byte sockaddr string XORed with 0x79; the server
-- connects there and relays bytes both ways with asio.relay. With
-- --xor-stream (on both sides) the tunnel bytes are XORed too, by the
-- Lua-level relay. See docs/PROXY.md.
--
-- Anyone who can reach LISTEN_PORT can make this host connect anywhere:
-- firewall it to the routers that use it.

-- relay.lua sits next to this script.
package.path = (arg[0]:match('^(.*[/\\])') or './') .. '?.lua;' .. package.path
local asio = require 'asio'
local relay = require 'relay'

local listen_ip, listen_port = arg[1], tonumber(arg[2])
local xor_stream = arg[3] == '--xor-stream'
if not (listen_ip and listen_port) or (arg[3] and not xor_stream) then
  io.stderr:write('usage: proxy_server.lua LISTEN_IP LISTEN_PORT [--xor-stream]\n')
  os.exit(2)
end

local log = relay.logger('proxy_server')
local hostport, xor79 = relay.hostport, relay.xor79

local function handle(conn)
  local label = relay.label(conn)
  -- Bounded wait for the header only; a relayed connection may idle for ever.
  conn:settimeout(30)
  local head, err = conn:read(128)
  conn:settimeout(nil)
  if not head then
    log('%s: no header (%s), dropped', label, tostring(err))
    conn:close()
    return
  end
  local sa = xor79(head)
  local okname, dst = pcall(asio.addr_to_string, sa)
  if not okname or not dst then
    log('%s: bad destination in header, dropped', label)
    conn:close()
    return
  end
  label = label .. ' -> ' .. dst
  local up, cerr = asio.connect(sa)
  if not up then
    log('%s: connect: %s', label, tostring(cerr))
    conn:close()
    return
  end
  log('%s: connected', label)
  if xor_stream then
    relay.relay_transform(conn, up, xor79, xor79, label, log)
  else
    relay.relay(conn, up, label, log)
  end
end

local srv = relay.serve(listen_ip, listen_port, handle, log)
log('listening on %s', hostport(listen_ip, srv:port()))
asio.run()
