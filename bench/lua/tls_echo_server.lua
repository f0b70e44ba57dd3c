-- TLS echo server: asio.server with {tls = ...}; the handshake runs first,
-- then one light thread per connection does a read_some -> write loop.
--   luajit tls_echo_server.lua PORT CERT KEY [nodelay]   (port 0: pick a free one)
-- With `nodelay` the handler sets TCP_NODELAY itself first: TLS writes go
-- to the socket without luaasio_conn_write, which is where the core
-- otherwise sets it (before a connection's second write), so a TLS
-- connection keeps Nagle's algorithm unless told (see bench/README.md, TLS).
local asio = require 'asio'

local port, cert, key, nodelay = tonumber(arg[1]) or 0, arg[2], arg[3], arg[4] == 'nodelay'
assert(cert and key, 'usage: tls_echo_server.lua PORT CERT KEY [nodelay]')

local function echo(conn)
  if nodelay then conn:setoption('nodelay', true) end
  while true do
    local data, err = conn:read_some()
    -- read_some may hand over the last bytes together with 'eof'.
    if data and #data > 0 and not conn:write(data) then break end
    if err then break end
  end
  conn:close() -- sends close_notify
end

-- The handler is called from the light thread that ran the handshake: the
-- loop runs right there.
local srv = assert(asio.server('127.0.0.1', port, echo, { tls = { cert = cert, key = key } }))
io.stdout:write('PORT ', srv:port(), '\n')
io.stdout:flush()
asio.run()
