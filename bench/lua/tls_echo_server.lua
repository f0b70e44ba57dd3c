-- TLS echo server: asio.server with {tls = ...}; the handshake runs first,
-- then one light thread per connection does a read_some -> write loop.
--   luajit tls_echo_server.lua PORT CERT KEY     (port 0: pick a free one)
local asio = require 'asio'

local port, cert, key = tonumber(arg[1]) or 0, arg[2], arg[3]
assert(cert and key, 'usage: tls_echo_server.lua PORT CERT KEY')

local function echo(conn)
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
