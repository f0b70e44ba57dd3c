-- The sockaddr-string decoder behind asio.connect(sa) and asio.addr_to_string,
-- fed hand-made byte strings in the layouts of every supported platform.
local asio = require 'asio'
local T = require 'testlib'

local test, go, eq = T.test, T.go, T.eq
local char = string.char

local function pad(s, len) return s .. ('\0'):rep((len or 128) - #s) end
local function u16be(n) return char(math.floor(n / 256) % 256, n % 256) end
local function u16le(n) return char(n % 256, math.floor(n / 256) % 256) end
local function u32le(n)
  return char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256, math.floor(n / 16777216) % 256)
end
local function u32be(n)
  return char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
end

local v4addr = char(192, 0, 2, 17)
local v6addr = char(0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42)

local function v4(family_bytes, port, len)
  return pad(family_bytes .. u16be(port) .. v4addr, len)
end
local function v6(family_bytes, port, len, addr, scope_bytes)
  return pad(family_bytes .. u16be(port) .. ('\0'):rep(4) .. (addr or v6addr) .. (scope_bytes or ''), len)
end

local cases = {
  { 'Linux little-endian IPv4', v4(u16le(2), 80), '192.0.2.17:80' },
  { 'Linux big-endian (MIPS) IPv4', v4(u16be(2), 8080), '192.0.2.17:8080' },
  { 'Linux little-endian IPv6', v6(u16le(10), 443), '[2001:db8::42]:443' },
  { 'Linux big-endian IPv6', v6(u16be(10), 443), '[2001:db8::42]:443' },
  { 'Windows IPv4', v4(u16le(2), 3389), '192.0.2.17:3389' },
  { 'Windows IPv6 (AF_INET6 = 23)', v6(u16le(23), 53), '[2001:db8::42]:53' },
  { 'FreeBSD IPv4 (sa_len, family)', v4(char(16, 2), 25), '192.0.2.17:25' },
  { 'FreeBSD IPv6 (AF_INET6 = 28)', v6(char(28, 28), 25), '[2001:db8::42]:25' },
  { 'macOS IPv6 (AF_INET6 = 30)', v6(char(28, 30), 993), '[2001:db8::42]:993' },
  { 'bare sockaddr_in (16 bytes)', v4(u16le(2), 1, 16), '192.0.2.17:1' },
  { 'bare sockaddr_in6 (28 bytes)', v6(u16le(10), 65535, 28), '[2001:db8::42]:65535' },
  { 'IPv4-mapped IPv6 becomes IPv4',
    v6(u16le(10), 80, 128, ('\0'):rep(10) .. '\255\255' .. v4addr), '192.0.2.17:80' },
  { 'link-local IPv6 keeps its scope (little-endian)',
    v6(u16le(10), 80, 128, char(0xfe, 0x80) .. ('\0'):rep(13) .. '\1', u32le(1)), '[fe80::1%1]:80',
    '%[fe80::1%%.+%]:80' },
  { 'link-local IPv6 keeps its scope (big-endian)',
    v6(u16be(10), 80, 128, char(0xfe, 0x80) .. ('\0'):rep(13) .. '\1', u32be(1)), '[fe80::1%1]:80',
    '%[fe80::1%%.+%]:80' },
}

for _, c in ipairs(cases) do
  test('decodes ' .. c[1], function()
    local s = asio.addr_to_string(c[2])
    if c[4] then
      -- the scope prints as an interface name where index 1 has one
      assert(s and s:match('^' .. c[4] .. '$'), 'got ' .. tostring(s))
    else
      eq(s, c[3], 'address')
    end
  end)
end

local bad = {
  { 'empty string', '' },
  { 'wrong length (127)', v4(u16le(2), 80, 127) },
  { 'wrong length (129)', v4(u16le(2), 80, 129) },
  { 'unknown family 0', v4(u16le(0), 80) },
  { 'unknown family 1 (AF_UNIX)', v4(u16le(1), 80) },
  { 'unknown family 99', v4(u16le(99), 80) },
  { 'port 0 (IPv4)', v4(u16le(2), 0) },
  { 'port 0 (IPv6)', v6(u16le(10), 0) },
  { 'IPv6 family in a 16-byte string', v6(u16le(10), 80, 28):sub(1, 16) },
  { 'all bytes 0xff', ('\255'):rep(128) },
}

for _, c in ipairs(bad) do
  test('rejects ' .. c[1], function()
    local s, err = asio.addr_to_string(c[2])
    eq(s, nil, 'result')
    eq(err, 'bad address', 'error')
    go(function()
      local conn, cerr = asio.connect(c[2])
      eq(conn, nil, 'connect result')
      eq(cerr, 'bad address', 'connect error')
    end)
  end)
end

test('decoder survives random byte strings', function()
  math.randomseed(12345)
  local lens = { 0, 1, 2, 3, 4, 15, 16, 17, 27, 28, 29, 64, 127, 128, 129, 256 }
  for i = 1, 5000 do
    local len = lens[i % #lens + 1]
    local b = {}
    for j = 1, len do b[j] = char(math.random(0, 255)) end
    local s, err = asio.addr_to_string(table.concat(b))
    assert(s or err == 'bad address', 'unexpected result ' .. tostring(s) .. ' ' .. tostring(err))
  end
end)

test('connect(sockaddr) reaches a local server', function()
  go(function()
    local srv, port = T.server(function(c) c:write('here') c:close() end)
    local sa = pad(u16le(2) .. u16be(port) .. char(127, 0, 0, 1))
    if require('ffi').abi('be') then sa = pad(u16be(2) .. u16be(port) .. char(127, 0, 0, 1)) end
    eq(asio.addr_to_string(sa), '127.0.0.1:' .. port, 'text')
    local c = assert(asio.connect(sa))
    eq(c:read(4), 'here', 'data')
    c:close()
    -- the other byte order is understood as well
    local other = require('ffi').abi('be') and u16le(2) or u16be(2)
    c = assert(asio.connect(pad(other .. u16be(port) .. char(127, 0, 0, 1))))
    eq(c:read(4), 'here', 'data')
    c:close()
    -- options may follow the address string
    c = assert(asio.connect(sa, { timeout = 5 }))
    eq(c:read(4), 'here', 'data with options')
    c:close()
    srv:close()
  end)
end)
