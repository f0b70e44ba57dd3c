-- Transparent proxy over TLS, router side.
--
--   luajit tls_tunnel_client.lua LISTEN_IP LISTEN_PORT SERVER_HOST SERVER_PORT CERT KEY CA
--
-- iptables REDIRECTs outgoing TCP to LISTEN_IP:LISTEN_PORT. For each
-- connection the destination it was meant for is recovered with
-- get_original_dst(); the router opens a TLS connection to
-- tls_tunnel_server.lua at SERVER_HOST:SERVER_PORT, sends that destination
-- (the 128-byte sockaddr string) as the first bytes, and copies bytes both
-- ways. The TLS connection is mutual: the router presents CERT/KEY, and the
-- server's certificate must be signed by CA (no system CA store is used, so
-- only your own CA's certificates pass) and name SERVER_HOST.
--
-- Certificates, made once with openssl (the same CA signs the server's
-- certificate; see tls_tunnel_server.lua for that one):
--
--   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
--     -days 3650 -subj /CN=tunnel-ca -keyout ca.key -out ca.pem
--   openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
--     -subj /CN=router-1 -keyout router.key -out router.csr
--   openssl x509 -req -in router.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
--     -days 825 -out router.pem
--
-- Running it on the router (Linux: get_original_dst uses SO_ORIGINAL_DST),
-- from a checkout after ./build.sh:
--
--   ./test/luajit examples/tls_tunnel_client.lua 0.0.0.0 1080 203.0.113.5 9443 router.pem router.key ca.pem
--   iptables -t nat -A PREROUTING -i br-lan -p tcp -j REDIRECT --to-ports 1080
--
-- Without a REDIRECT rule (for trying it out, or a fixed forward), set
-- TUNNEL_DEST=IPv4:PORT: every connection then goes to that destination and
-- get_original_dst() is not asked:
--
--   TUNNEL_DEST=127.0.0.1:7 ./test/luajit examples/tls_tunnel_client.lua \
--     127.0.0.1 1080 127.0.0.1 9443 router.pem router.key ca.pem
local asio = require 'asio'
local ffi = require 'ffi'

local listen_ip, listen_port, server_host, server_port, cert, key, ca =
  arg[1], tonumber(arg[2]), arg[3], tonumber(arg[4]), arg[5], arg[6], arg[7]
if not (listen_ip and listen_port and server_host and server_port and cert and key and ca) then
  io.stderr:write('usage: tls_tunnel_client.lua LISTEN_IP LISTEN_PORT SERVER_HOST SERVER_PORT CERT KEY CA\n')
  os.exit(2)
end

io.stdout:setvbuf('line')
local function log(...)
  print(os.date('%H:%M:%S') .. ' tls_tunnel_client: ' .. string.format(...))
end

local function hostport(ip, port)
  return string.format(ip:find(':', 1, true) and '[%s]:%s' or '%s:%s', ip, port)
end

-- TUNNEL_DEST as a 128-byte sockaddr string, laid out as get_original_dst()
-- returns an IPv4 address: family 2 in this machine's byte order, the port
-- big-endian, the address, zeros.
local fixed_dst
do
  local d = os.getenv('TUNNEL_DEST')
  if d and d ~= '' then
    local a, b, c, e, port = d:match('^(%d+)%.(%d+)%.(%d+)%.(%d+):(%d+)$')
    port = tonumber(port)
    if not port or port < 1 or port > 65535 then
      io.stderr:write('TUNNEL_DEST must be IPv4:PORT, e.g. 127.0.0.1:7\n')
      os.exit(2)
    end
    local family = ffi.abi('le') and '\2\0' or '\0\2'
    fixed_dst = family .. string.char(math.floor(port / 256), port % 256,
      tonumber(a), tonumber(b), tonumber(c), tonumber(e)) .. string.rep('\0', 120)
  end
end

-- The tunnel's TLS settings: our certificate, and the CA that must have
-- signed the server's (the only one trusted). The server's certificate is
-- checked against SERVER_HOST, the name or address dialled.
-- TLS 1.3 where both ends have it (OpenSSL, mbedTLS 3), else TLS 1.2.
local tls = { cert = cert, key = key, ca = ca }

-- Both directions until both are over (a half-close is passed on, so the
-- other direction keeps flowing), then both connections are closed.
-- asio.relay copies inside the library: TLS connections through the TLS
-- library, plain ones with splice(2) on Linux.
local function relay(client, tunnel, label)
  local up_bytes, down_bytes, up_end, down_end = asio.relay(client, tunnel)
  client:close()
  tunnel:close()
  if up_end == 'eof' and down_end == 'eof' then
    log('%s: done, %d bytes up, %d down', label, up_bytes, down_bytes)
  else
    log('%s: upload %s, download %s (%d bytes up, %d down)', label, tostring(up_end),
      tostring(down_end), up_bytes or 0, down_bytes or 0)
  end
end

local function handle(conn)
  local ip, port = conn:remote_address()
  local label = ip and hostport(ip, port) or '?'
  local sa, err = fixed_dst, nil
  if not sa then
    sa, err = conn:get_original_dst()
    if not sa then
      log('%s: no original destination (%s), dropped', label, tostring(err))
      conn:close()
      return
    end
  end
  label = label .. ' -> ' .. tostring(asio.addr_to_string(sa))
  local tunnel, terr, reason = asio.connect(server_host, server_port, { timeout = 10, tls = tls })
  if not tunnel then
    log('%s: tunnel %s: %s%s', label, hostport(server_host, server_port), tostring(terr),
      reason and ' (' .. reason .. ')' or '')
    conn:close()
    return
  end
  local ok, werr = tunnel:write(sa)
  if not ok then
    log('%s: tunnel write: %s', label, tostring(werr))
    conn:close()
    tunnel:close()
    return
  end
  conn:setoption('nodelay', true)
  tunnel:setoption('nodelay', true)
  log('%s: tunnelled', label)
  relay(conn, tunnel, label)
end

local ok, why = asio.tls_available()
if not ok then
  log('TLS is not available: %s', tostring(why))
  os.exit(1)
end

local srv, err = asio.server(listen_ip, listen_port, function(conn)
  asio.spawn_light_thread(handle, conn)
end)
if not srv then
  log('cannot listen on %s: %s', hostport(listen_ip, listen_port), tostring(err))
  os.exit(1)
end
log('listening on %s port %d, tunnel to %s', listen_ip, srv:port(), hostport(server_host, server_port))
asio.run()
