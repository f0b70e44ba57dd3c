-- Transparent proxy, router side.
--
--   luajit proxy_client.lua LISTEN_IP LISTEN_PORT REMOTE_HOST REMOTE_PORT [--xor-stream]
--
-- iptables REDIRECTs outgoing TCP to LISTEN_IP:LISTEN_PORT. For each connection
-- the destination it was meant for is recovered with get_original_dst() and
-- sent, XORed with 0x79, as the first 128 bytes to proxy_server.lua at
-- REMOTE_HOST:REMOTE_PORT; then bytes are relayed both ways by asio.relay,
-- inside the library. With --xor-stream (on both sides) every tunnel byte is
-- XORed too, which needs the Lua-level relay. See docs/PROXY.md.

-- relay.lua sits next to this script.
package.path = (arg[0]:match('^(.*[/\\])') or './') .. '?.lua;' .. package.path
local asio = require 'asio'
local relay = require 'relay'

local listen_ip, listen_port, remote_host, remote_port = arg[1], tonumber(arg[2]), arg[3], tonumber(arg[4])
local xor_stream = arg[5] == '--xor-stream'
if not (listen_ip and listen_port and remote_host and remote_port) or (arg[5] and not xor_stream) then
  io.stderr:write('usage: proxy_client.lua LISTEN_IP LISTEN_PORT REMOTE_HOST REMOTE_PORT [--xor-stream]\n')
  os.exit(2)
end

local log = relay.logger('proxy_client')
local hostport, xor79 = relay.hostport, relay.xor79

local function handle(conn)
  local label = relay.label(conn)
  local sa, err = conn:get_original_dst()
  if not sa then
    log('%s: no original destination (%s), dropped', label, tostring(err))
    conn:close()
    return
  end
  log('%s: original dst %s', label, asio.addr_to_string(sa))
  local up, cerr = asio.connect(remote_host, remote_port, { timeout = 10 })
  if not up then
    log('%s: remote %s: %s', label, hostport(remote_host, remote_port), tostring(cerr))
    conn:close()
    return
  end
  local ok, werr = up:write(xor79(sa))
  if not ok then
    log('%s: remote write: %s', label, tostring(werr))
    conn:close()
    up:close()
    return
  end
  if xor_stream then
    relay.relay_transform(conn, up, xor79, xor79, label, log)
  else
    relay.relay(conn, up, label, log)
  end
end

local srv = relay.serve(listen_ip, listen_port, handle, log)
log('listening on %s, remote %s', hostport(listen_ip, srv:port()), hostport(remote_host, remote_port))
asio.run()
