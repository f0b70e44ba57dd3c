-- Transparent proxy over TLS, remote side: the end of the tunnel that
-- tls_tunnel_client.lua (on the router) connects to.
--
--   luajit tls_tunnel_server.lua LISTEN_IP LISTEN_PORT CERT KEY CA
--
-- Every connection must present a client certificate signed by CA (mutual
-- TLS, verify_client = true); anything else fails the handshake and never
-- reaches this code. The first 128 bytes inside the tunnel are the
-- destination, the sockaddr string the router got from get_original_dst();
-- the server connects there and copies bytes both ways.
--
-- Certificates, made once with openssl (a private CA, one certificate for
-- this server, one per router; the server's must name the address or host
-- name the routers dial, here 203.0.113.5 and tunnel.example.net):
--
--   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
--     -days 3650 -subj /CN=tunnel-ca -keyout ca.key -out ca.pem
--   openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
--     -subj /CN=tunnel-server -keyout server.key -out server.csr
--   printf 'subjectAltName=IP:203.0.113.5,DNS:tunnel.example.net\n' > server.ext
--   openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
--     -days 825 -extfile server.ext -out server.pem
--   openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
--     -subj /CN=router-1 -keyout router.key -out router.csr
--   openssl x509 -req -in router.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
--     -days 825 -out router.pem
--
-- Keep ca.key offline; copy ca.pem, server.pem and server.key to this host,
-- and ca.pem, router.pem and router.key to the router. Then, from a checkout
-- after ./build.sh (which builds build/libluaasio_tls.so when OpenSSL's
-- development files are installed):
--
--   ./test/luajit examples/tls_tunnel_server.lua 0.0.0.0 9443 server.pem server.key ca.pem
--
-- and on the router (see tls_tunnel_client.lua for its iptables rule):
--
--   ./test/luajit examples/tls_tunnel_client.lua 0.0.0.0 1080 203.0.113.5 9443 router.pem router.key ca.pem
--
-- Only routers holding a certificate from this CA can use the tunnel, but
-- each of them can make this host connect anywhere: hand such certificates
-- only to routers you run.
local asio = require 'asio'

local listen_ip, listen_port, cert, key, ca = arg[1], tonumber(arg[2]), arg[3], arg[4], arg[5]
if not (listen_ip and listen_port and cert and key and ca) then
  io.stderr:write('usage: tls_tunnel_server.lua LISTEN_IP LISTEN_PORT CERT KEY CA\n')
  os.exit(2)
end

io.stdout:setvbuf('line')
local function log(...)
  print(os.date('%H:%M:%S') .. ' tls_tunnel_server: ' .. string.format(...))
end

local function hostport(ip, port)
  return string.format(ip:find(':', 1, true) and '[%s]:%s' or '%s:%s', ip, port)
end

-- Both directions until both are over (a half-close is passed on, so the
-- other direction keeps flowing), then both connections are closed.
-- asio.relay copies inside the library: TLS connections through the TLS
-- library, plain ones with splice(2) on Linux.
local function relay(tunnel, up, label)
  local up_bytes, down_bytes, up_end, down_end = asio.relay(tunnel, up)
  tunnel:close()
  up:close()
  if up_end == 'eof' and down_end == 'eof' then
    log('%s: done, %d bytes up, %d down', label, up_bytes, down_bytes)
  else
    log('%s: upload %s, download %s (%d bytes up, %d down)', label, tostring(up_end),
      tostring(down_end), up_bytes or 0, down_bytes or 0)
  end
end

local function handle(conn)
  local ip, port = conn:remote_address()
  local info = conn:tls_info()
  local label = (ip and hostport(ip, port) or '?') .. ' (' .. tostring(info and info.subject) .. ')'
  -- A bounded wait for the header only; a tunnelled connection may idle.
  conn:settimeout(30)
  local sa, err = conn:read(128)
  conn:settimeout(nil)
  if not sa then
    log('%s: no header (%s), dropped', label, tostring(err))
    conn:close()
    return
  end
  local dst = asio.addr_to_string(sa)
  if not dst then
    log('%s: bad destination in header, dropped', label)
    conn:close()
    return
  end
  label = label .. ' -> ' .. dst
  local up, cerr = asio.connect(sa, { timeout = 10 })
  if not up then
    log('%s: connect: %s', label, tostring(cerr))
    conn:close()
    return
  end
  conn:setoption('nodelay', true)
  up:setoption('nodelay', true)
  log('%s: connected', label)
  relay(conn, up, label)
end

local ok, why = asio.tls_available()
if not ok then
  log('TLS is not available: %s', tostring(why))
  os.exit(1)
end

local srv, err = asio.server(listen_ip, listen_port, function(conn)
  -- Called once the handshake succeeded and the client's certificate was
  -- verified against CA.
  asio.spawn_light_thread(handle, conn)
end, { tls = { cert = cert, key = key, ca = ca, verify_client = true } })
if not srv then
  log('cannot listen on %s: %s', hostport(listen_ip, listen_port), tostring(err))
  os.exit(1)
end
log('listening on %s port %d', listen_ip, srv:port())
asio.run()
