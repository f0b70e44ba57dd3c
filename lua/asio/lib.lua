-- Loads libluaasio, declares its ABI to the FFI and checks that the library
-- and these modules agree on it. Everything else requires this first.

local ffi = require 'ffi'

local ffi_string = ffi.string
local sub, concat = string.sub, table.concat

local ABI_VERSION = 1

-- The folder holding asio.lua: this file sits in its asio/ subfolder.
local function lua_dir()
  local src = debug.getinfo(1, 'S').source
  if sub(src, 1, 1) == '@' then
    local dir = src:sub(2):match('^(.*)[/\\][^/\\]*$') or '.'
    return dir:match('^(.*)[/\\][^/\\]*$') or '.'
  end
  return '.'
end

-- The file names of library `base` ('luaasio', 'luaasio_tls') here.
local function file_names(base)
  if ffi.os == 'Windows' then return { base .. '.dll', 'lib' .. base .. '.dll' } end
  if ffi.os == 'OSX' then return { 'lib' .. base .. '.dylib', 'lib' .. base .. '.so' } end
  return { 'lib' .. base .. '.so' }
end

-- Where library `base` may be: the environment variable `env_var`, then
-- each folder of `dirs`, then package.cpath.
local function candidates(base, env_var, dirs)
  local list = {}
  local env = os.getenv(env_var)
  if env and env ~= '' then list[#list + 1] = env end
  local names = file_names(base)
  for _, d in ipairs(dirs) do
    for _, n in ipairs(names) do list[#list + 1] = d .. '/' .. n end
  end
  for _, b in ipairs({ base, 'lib' .. base }) do
    local p = package.searchpath and package.searchpath(b, package.cpath)
    if p then list[#list + 1] = p end
  end
  return list
end

-- Loads the first of `list` that loads and that `check(lib)` accepts
-- (check returns nothing, or why not): the library and its path, or nil
-- and what was tried, a message per path.
local function load_first(list, check)
  local tried, seen = {}, {}
  for _, path in ipairs(list) do
    if not seen[path] then
      seen[path] = true
      local ok, l = pcall(ffi.load, path)
      local why
      if ok then
        why = check and check(l)
        if not why then return l, path end
      else
        why = tostring(l)
      end
      -- the loader's message usually names the path already (glibc starts
      -- with it, musl says "Error loading shared library PATH: ...")
      if not why:find(path, 1, true) then why = path .. ': ' .. why end
      tried[#tried + 1] = why
    end
  end
  return nil, tried
end

local function load_library()
  local dir = lua_dir()
  local dirs = { dir }
  -- Packaged installs keep C modules in the lib/ twin of the share/ folder
  -- holding asio.lua: /usr/share/lua -> /usr/lib/lua (OpenWrt),
  -- /usr/local/share/lua/5.1 -> /usr/local/lib/lua/5.1.
  local prefix, luadir = dir:match('^(.*)[/\\]share[/\\](lua.*)$')
  if prefix then dirs[2] = prefix .. '/lib/' .. luadir end
  local lib, path = load_first(candidates('luaasio', 'LUAASIO_LIB', dirs))
  if lib then return lib, path end
  local tried = path
  error('asio: cannot load the LuaAsio library; set LUAASIO_LIB or package.cpath. Tried:\n'
    .. (#tried > 0 and '  ' .. concat(tried, '\n  ') or '  (no candidate: package.cpath has none)'), 0)
end

local C, C_path = load_library()

if not pcall(ffi.typeof, 'luaasio_event') then
  ffi.cdef('const char *luaasio_cdef(void);')
  ffi.cdef(ffi_string(C.luaasio_cdef()))
end

if C.luaasio_abi_version() ~= ABI_VERSION then
  error(('asio: library ABI version %d, asio.lua expects %d'):format(
    C.luaasio_abi_version(), ABI_VERSION), 0)
end
if C.luaasio_event_size() ~= ffi.sizeof('luaasio_event') then
  error('asio: luaasio_event size differs between the library and asio.lua', 0)
end

local errstr = {}
for code = C.LUAASIO_ECODE_MIN, 0 do
  errstr[code] = ffi_string(C.luaasio_strerror(code))
end

return {
  C = C,
  path = C_path,        -- where the library was loaded from
  lua_dir = lua_dir(),  -- the folder holding asio.lua
  candidates = candidates,
  load_first = load_first,
  -- Stable error string of a LUAASIO_E* code.
  strerror = function(code) return errstr[code] or 'system error' end,
}
