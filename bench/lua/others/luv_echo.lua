-- Echo server on luv (libuv): read_start -> write, with backpressure: reading
-- pauses while more than 1 MiB waits to be written.
--   luajit luv_echo.lua [PORT]
local uv = require 'luv'

local HIGH = 1024 * 1024
local srv = uv.new_tcp()
assert(srv:bind('127.0.0.1', tonumber(arg[1]) or 0))
assert(srv:listen(1024, function(err)
  assert(not err, err)
  local c = uv.new_tcp()
  srv:accept(c)
  c:nodelay(true)
  local reading
  local function on_read(rerr, data)
    if rerr or not data then
      -- at EOF, close once the queued writes are out
      c:read_stop()
      if c:is_closing() then return end
      c:shutdown(function() c:close() end)
      return
    end
    c:write(data, function()
      if not reading and not c:is_closing() and c:write_queue_size() < HIGH then
        reading = true
        c:read_start(on_read)
      end
    end)
    if c:write_queue_size() >= HIGH then
      reading = false
      c:read_stop()
    end
  end
  reading = true
  c:read_start(on_read)
end))
io.stdout:write('PORT ', srv:getsockname().port, '\n')
io.stdout:flush()
uv.run()
