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
