-- Argument checks shared by the API functions. Each raises an error that
-- names the function and the argument, blaming the user's line.

local type, tostring, tonumber, error = type, tostring, tonumber, error
local huge = math.huge

local M = {}

-- `level` counts from the caller of argerr, as error() does: the default 3
-- blames the caller of the API function that called argerr directly.
function M.argerr(n, fname, expected, got, level)
  error(("bad argument #%d to '%s' (%s expected, got %s)"):format(n, fname, expected, type(got)),
    level or 3)
end
local argerr = M.argerr

function M.selferr(fname, expected, got)
  error(("calling '%s' on bad self (%s expected, got %s)"):format(fname, expected, type(got)), 3)
end

function M.outside(fname)
  error(("'%s' must be called from a light thread (see asio.spawn_light_thread)"):format(fname), 3)
end

function M.is_count(n)
  return type(n) == 'number' and n >= 0 and n < huge and n % 1 == 0
end

function M.check_port(n, fname, v, allow_zero)
  local p = v
  if type(v) == 'string' then p = tonumber(v) end
  if type(p) ~= 'number' or p % 1 ~= 0 or p > 65535 or p < (allow_zero and 0 or 1) then
    if type(v) == 'number' or (type(v) == 'string' and p) then
      error(("bad argument #%d to '%s' (port out of range: %s)"):format(n, fname, tostring(v)), 3)
    end
    argerr(n, fname, 'port number', v, 4)
  end
  return p
end

function M.check_timeout(n, fname, v)
  if v == nil then return nil end
  if type(v) ~= 'number' or v ~= v then argerr(n, fname, 'number or nil', v, 4) end
  if v < 0 then return nil end
  return v
end

return M
