-- Child processes for tests: start a script in the background, read the port
-- it prints, sample its CPU time and memory, stop it.
local asio = require 'asio'
local T = require 'testlib'

local P = {}
P.__index = P

local function read_file(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read('*a')
  f:close()
  return s
end

-- `prefix` is shell text run before the script (e.g. 'ulimit -n 64;').
function P.start(script, args, prefix)
  local out = os.tmpname()
  local cmd = ('cd %s && (%s exec ./test/luajit %s %s > %s 2>&1) & echo $!')
    :format(T.root, prefix or '', script, args or '', out)
  local p = io.popen(cmd)
  local pid = p:read('*l')
  p:close()
  local self = setmetatable({ pid = assert(tonumber(pid), 'no pid'), out = out }, P)
  return self
end

-- Waits (inside a light thread) until the child printed its port.
function P:port(limit)
  for _ = 1, (limit or 10) * 50 do
    local s = read_file(self.out) or ''
    local port = s:match('port (%d+)')
    if port then return tonumber(port) end
    asio.sleep(0.02)
  end
  error('child did not start: ' .. (read_file(self.out) or ''))
end

-- CPU seconds (user + system) used so far.
function P:cpu()
  local s = read_file('/proc/' .. self.pid .. '/stat')
  if not s then return nil end
  local fields = {}
  for f in s:gsub('^.-%) ', ''):gmatch('%S+') do fields[#fields + 1] = f end
  -- after "pid (comm) ": state is field 1, utime 12, stime 13
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100
end

function P:rss_kb()
  local s = read_file('/proc/' .. self.pid .. '/status')
  return s and tonumber(s:match('VmRSS:%s*(%d+)'))
end

function P:fds()
  local p = io.popen('ls /proc/' .. self.pid .. '/fd 2>/dev/null')
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

function P:output()
  return read_file(self.out) or ''
end

function P:stop()
  os.execute('kill ' .. self.pid .. ' 2>/dev/null')
  os.remove(self.out)
end

return P
