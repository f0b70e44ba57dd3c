-- Every example in the README's Guide runs and exits cleanly.
local T = require 'testlib'

local f = assert(io.open(T.root .. '/README.md'))
local readme = f:read('*a')
f:close()

local guide = readme:match('\n## Guide\n(.-)\n## ') or ''
local n = 0
for heading, body in (guide .. '\n### '):gmatch('### ([^\n]+)\n(.-)\n%f[#]') do
  for code in body:gmatch('```lua\n(.-)```') do
    n = n + 1
    T.test('example: ' .. heading, function()
      if not T.fd_count() then T.skip('needs a POSIX shell and /proc') end
      local path = os.tmpname()
      local out = io.open(path, 'w')
      out:write(code)
      out:close()
      local p = io.popen(('cd %s && timeout 30 ./test/luajit %s 2>&1; echo "exit=$?"'):format(T.root, path))
      local output = p:read('*a')
      p:close()
      os.remove(path)
      local status = output:match('exit=(%d+)%s*$')
      assert(status == '0', 'example failed (' .. tostring(status) .. '):\n' .. output)
      assert(not output:find('error in light thread', 1, true), 'a light thread failed:\n' .. output)
    end)
  end
end
T.test('the README has Guide examples', function()
  assert(n >= 8, 'found only ' .. n .. ' examples')
end)

T.test('the ping-pong at the top prints its line with stdout in a file', function()
  if not T.fd_count() then T.skip('needs a POSIX shell and /proc') end
  local code = assert(readme:match('```lua\n(.-)```'), 'no first example')
  assert(code:find("'1234'", 1, true), 'the example no longer uses port 1234')
  -- a free port instead of 1234; the script runs until killed, as it says
  local asio = require 'asio'
  local probe = assert(asio.server('127.0.0.1', 0, function() end))
  local port = probe:port()
  probe:close()
  code = code:gsub('1234', tostring(port))
  local path, out = os.tmpname(), os.tmpname()
  local f = io.open(path, 'w')
  f:write(code)
  f:close()
  os.execute(('cd %s && timeout 2 ./test/luajit %s > %s 2>&1'):format(T.root, path, out))
  f = io.open(out)
  local output = f:read('*a')
  f:close()
  os.remove(path)
  os.remove(out)
  T.eq(output, 'ping1-pong\n', 'output')
end)
