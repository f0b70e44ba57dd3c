-- A DNS forwarder: answers UDP queries by asking an upstream server.
--
--   luajit examples/dns_forwarder.lua LISTEN_IP LISTEN_PORT UPSTREAM_IP UPSTREAM_PORT [TIMEOUT]
--
-- Every query gets a light thread and a socket of its own, connected to the
-- upstream: the kernel then drops any answer that does not come from the
-- upstream, and a random source port per query makes forged answers hard to
-- place. An answer is relayed only if its ID and question match the query.
-- When the upstream does not answer within TIMEOUT seconds (default 2), or
-- refuses, the client gets SERVFAIL instead of silence.
local asio = require 'asio'

local listen_ip, listen_port, up_ip, up_port, timeout = ...
listen_port, up_port = tonumber(listen_port), tonumber(up_port)
timeout = tonumber(timeout) or 2
if not (listen_ip and listen_port and up_ip and up_port) then
  io.stderr:write('usage: dns_forwarder.lua LISTEN_IP LISTEN_PORT UPSTREAM_IP UPSTREAM_PORT [TIMEOUT]\n')
  os.exit(2)
end

local bit = require 'bit'
local byte, char, sub = string.byte, string.char, string.sub

-- The end of the question section (index of its last byte), or nil if the
-- message holds no well-formed single question.
local function question_end(msg)
  if #msg < 12 or byte(msg, 5) ~= 0 or byte(msg, 6) ~= 1 then return nil end
  local i = 13
  while true do
    local len = byte(msg, i)
    if not len or len >= 64 then return nil end -- no compression in a query
    i = i + 1 + len
    if len == 0 then break end
  end
  if i + 3 > #msg then return nil end
  return i + 3
end

-- SERVFAIL for `query`: its ID, opcode and RD bit, its question, no records.
local function servfail(query, qend)
  local flags1 = bit.bor(0x80, bit.band(byte(query, 3), 0x79)) -- QR, opcode, RD
  return sub(query, 1, 2) .. char(flags1, 0x82) .. '\0\1\0\0\0\0\0\0' .. sub(query, 13, qend)
end

local function answer(query, qend)
  local up, err = asio.udp()
  if not up then return nil, err end
  local ok
  ok, err = up:connect(up_ip, up_port)
  if ok then ok, err = up:send(query) end
  local deadline = asio.now() + timeout
  while ok do
    local left = deadline - asio.now()
    local reply
    reply, err = up:recv(left > 0 and left or 0)
    if not reply then break end
    -- The same ID and question, and the QR bit set: the answer to this query.
    if #reply >= qend and sub(reply, 1, 2) == sub(query, 1, 2) and byte(reply, 3) >= 0x80 and
        sub(reply, 13, qend) == sub(query, 13, qend) then
      up:close()
      return reply
    end
  end
  up:close()
  return nil, err
end

local server = assert(asio.udp())
local ok, err = server:bind(listen_ip, listen_port)
if not ok then
  io.stderr:write('dns_forwarder: cannot listen on ', listen_ip, ' port ', listen_port, ': ', err, '\n')
  os.exit(1)
end
print(('listening port %d, forwarding to %s port %d'):format(select(2, server:local_address()), up_ip, up_port))
io.stdout:flush()

local function handle(query, ip, port)
  local qend = question_end(query)
  if not qend then return end -- not a query we can answer for: drop it
  local reply, why = answer(query, qend)
  if not reply then
    print(('%s:%d: upstream %s, SERVFAIL'):format(ip, port, why))
    io.stdout:flush()
    reply = servfail(query, qend)
  end
  server:sendto(reply, ip, port)
end

asio.spawn_light_thread(function()
  while true do
    local query, ip, port = server:recvfrom()
    if query then
      asio.spawn_light_thread(handle, query, ip, port)
    elseif ip ~= 'datagram truncated' then
      io.stderr:write('dns_forwarder: ', ip, '\n')
      break
    end
  end
end)

asio.run()
