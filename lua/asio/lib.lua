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

local function load_library()
  local names
  if ffi.os == 'Windows' then
    names = { 'luaasio.dll', 'libluaasio.dll' }
  elseif ffi.os == 'OSX' then
    names = { 'libluaasio.dylib', 'libluaasio.so' }
  else
    names = { 'libluaasio.so' }
  end
  local tried, candidates = {}, {}
  local env = os.getenv('LUAASIO_LIB')
  if env and env ~= '' then candidates[#candidates + 1] = env end
  local dir = lua_dir()
  for _, n in ipairs(names) do candidates[#candidates + 1] = dir .. '/' .. n end
  -- Packaged installs keep C modules in the lib/ twin of the share/ folder
  -- holding asio.lua: /usr/share/lua -> /usr/lib/lua (OpenWrt),
  -- /usr/local/share/lua/5.1 -> /usr/local/lib/lua/5.1.
  local prefix, luadir = dir:match('^(.*)[/\\]share[/\\](lua.*)$')
  if prefix then
    for _, n in ipairs(names) do candidates[#candidates + 1] = prefix .. '/lib/' .. luadir .. '/' .. n end
  end
  for _, base in ipairs({ 'luaasio', 'libluaasio' }) do
    local p = package.searchpath and package.searchpath(base, package.cpath)
    if p then candidates[#candidates + 1] = p end
  end
  local seen = {}
  for _, path in ipairs(candidates) do
    if not seen[path] then
      seen[path] = true
      local ok, lib = pcall(ffi.load, path)
      if ok then return lib, path end
      -- the loader's message usually names the path already (glibc starts
      -- with it, musl says "Error loading shared library PATH: ...")
      local msg = tostring(lib)
      if not msg:find(path, 1, true) then msg = path .. ': ' .. msg end
      tried[#tried + 1] = '  ' .. msg
    end
  end
  error('asio: cannot load the LuaAsio library; set LUAASIO_LIB or package.cpath. Tried:\n'
    .. (#tried > 0 and concat(tried, '\n') or '  (no candidate: package.cpath has none)'), 0)
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
  -- Stable error string of a LUAASIO_E* code.
  strerror = function(code) return errstr[code] or 'system error' end,
}
