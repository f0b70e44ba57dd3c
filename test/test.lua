-- The test suite: ./test/luajit ./test/test.lua [filter]
-- Every test binds to 127.0.0.1 on port 0, or to addresses inside network
-- namespaces that it creates itself.
local T = require 'testlib'

local suites = { 'core', 'features', 'sockaddr', 'jit', 'faults', 'readme', 'proxy_netns', 'lines',
  'servers', 'misuse', 'threads', 'hardening', 'udp', 'udp_netns', 'sched', 'sync', 'compat', 'tls', 'tls_tunnel', 'relay',
  'buffers' }

for _, name in ipairs(suites) do
  local path = T.root .. '/test/' .. name .. '.lua'
  local f = io.open(path)
  if f then
    f:close()
    T.suite = name
    dofile(path)
  end
end
T.suite = nil

-- Closing the state runs the finalizers, so leak checkers see a clean exit.
os.exit(T.run(arg[1]) and 0 or 1, true)
