-- Copying values between Lua states: encode() turns a value into a byte
-- string and decode() rebuilds it in another state. What can cross:
--
--   nil, booleans, numbers, strings;
--   tables of transferable values (shared and cyclic references are kept;
--     a table with a metatable is refused, its behaviour would be lost);
--   Lua functions, as bytecode plus copies of their upvalues;
--   modules loaded with require, and the functions in them, by name: the
--     receiving state requires the module itself (so `asio` becomes the
--     receiving state's own asio);
--   channels and shared dictionaries, which are process-wide.
--
-- Anything else (connections, servers, coroutines, userdata, other cdata,
-- C functions that belong to no loaded module) is refused with an error
-- that names where it was found.

local ffi = require 'ffi'

local type, tostring, tonumber, pairs, next = type, tostring, tonumber, pairs, next
local getmetatable, error, select = getmetatable, error, select
local sub, find, format, concat = string.sub, string.find, string.format, table.concat
local dump, getupvalue, setupvalue = string.dump, debug.getupvalue, debug.setupvalue
local huge = math.huge

local M = {}

-- Types of cdata that stand for process-wide objects: ctype -> {tag, id of}.
-- asio.threads registers channels here; the dictionary object is a table.
local special_cdata = {}
local special_tables = {}   -- metatable -> {tag, id of, make}
M.special_cdata, M.special_tables = special_cdata, special_tables

-- Names of what is reachable through package.loaded, built per encode.
local function index_modules()
  local mods, funcs = {}, {}
  for name, mod in pairs(package.loaded) do
    if type(mod) == 'table' and type(name) == 'string' and not mods[mod] then
      mods[mod] = name
    end
  end
  for mod, name in pairs(mods) do
    -- _G's own functions (print, pairs, ...) are named by the global name.
    local prefix = name == '_G' and '' or name .. '\0'
    for k, v in next, mod do
      if type(k) == 'string' and type(v) == 'function' and not funcs[v] then
        funcs[v] = prefix .. k
      end
    end
  end
  return mods, funcs
end

local function what(v)
  local t = type(v)
  if t == 'thread' then return 'a coroutine' end
  if t == 'userdata' then return 'userdata' end
  if t == 'function' then return 'a C function that belongs to no loaded module' end
  if t == 'cdata' then
    local s = tostring(v)
    if find(s, '^asio connection') then return 'a connection' end
    return 'cdata (' .. s .. ')'
  end
  if t == 'table' then
    if getmetatable(v) and find(tostring(v), '^asio server') then return 'a server' end
    return 'a table with a metatable'
  end
  return t
end

local function num(v)
  if v ~= v then return 'nan' end
  if v == huge then return 'inf' end
  if v == -huge then return '-inf' end
  return format('%.17g', v)
end

-- ctx: { out = {}, seen = {value -> ref number}, nref, mods, funcs }
local function enc(ctx, v, where)
  local out = ctx.out
  local t = type(v)
  if t == 'string' then
    out[#out + 1] = 's' .. #v .. ':'
    out[#out + 1] = v
  elseif t == 'number' then
    out[#out + 1] = 'd' .. num(v) .. ';'
  elseif t == 'boolean' then
    out[#out + 1] = v and 't' or 'f'
  elseif t == 'nil' then
    out[#out + 1] = 'n'
  else
    local ref = ctx.seen[v]
    if ref then
      out[#out + 1] = 'r' .. ref .. ';'
      return
    end
    if not ctx.mods then ctx.mods, ctx.funcs = index_modules() end
    if t == 'table' then
      local name = ctx.mods[v]
      if name then
        out[#out + 1] = 'M' .. #name .. ':' .. name
        return
      end
      local mt = getmetatable(v)
      local sp = mt and special_tables[mt]
      if sp then
        local id = sp.id(v)
        out[#out + 1] = sp.tag .. #id .. ':' .. id
        return
      end
      if mt ~= nil then
        error(format('cannot transfer %s: %s', where, what(v)), 0)
      end
      ctx.nref = ctx.nref + 1
      ctx.seen[v] = ctx.nref
      out[#out + 1] = 'T'
      for k, val in next, v do
        enc(ctx, k, where .. ' (a key)')
        enc(ctx, val, where .. '.' .. tostring(k))
      end
      out[#out + 1] = 'e'
    elseif t == 'function' then
      local name = ctx.funcs[v]
      if name then
        out[#out + 1] = 'C' .. #name .. ':' .. name
        return
      end
      local ok, bc = pcall(dump, v)
      if not ok then error(format('cannot transfer %s: %s', where, what(v)), 0) end
      ctx.nref = ctx.nref + 1
      ctx.seen[v] = ctx.nref
      local nup = 0
      while getupvalue(v, nup + 1) ~= nil do nup = nup + 1 end
      out[#out + 1] = 'F' .. #bc .. ':'
      out[#out + 1] = bc
      out[#out + 1] = nup .. ';'
      for i = 1, nup do
        local uname, uv = getupvalue(v, i)
        enc(ctx, uv, format("upvalue '%s' of %s", uname, where))
      end
    elseif t == 'cdata' then
      local sp
      for ct, s in pairs(special_cdata) do
        if ffi.istype(ct, v) then sp = s; break end
      end
      if not sp then error(format('cannot transfer %s: %s', where, what(v)), 0) end
      local id = sp.id(v)
      out[#out + 1] = sp.tag .. #id .. ':' .. id
    else
      error(format('cannot transfer %s: %s', where, what(v)), 0)
    end
  end
end

-- Encodes the values as one string; raises "cannot transfer ..." naming
-- where the refused value was found. `where` names the values: a string
-- (numbered when there are several) or a list with a name per value.
function M.encode(where, ...)
  local n = select('#', ...)
  local ctx = { out = { n .. ';' }, seen = {}, nref = 0 }
  for i = 1, n do
    local name = where
    if type(where) == 'table' then name = where[i] or format('argument #%d', i - #where)
    elseif n > 1 then name = format('%s #%d', where, i) end
    enc(ctx, (select(i, ...)), name)
  end
  return concat(ctx.out)
end

-- Encodes one plain value quickly (strings, numbers, booleans, nil), or
-- returns nil when it needs the general path.
function M.encode_simple(v)
  local t = type(v)
  if t == 'string' then return '1;s' .. #v .. ':' .. v end
  if t == 'number' then return '1;d' .. num(v) .. ';' end
  if t == 'boolean' then return v and '1;t' or '1;f' end
  if t == 'nil' then return '1;n' end
  return nil
end

local decoders = {}   -- tag -> function(text) returning the object
M.decoders = decoders

local function resolve_function(name)
  local z = find(name, '\0', 1, true)
  if not z then
    local f = _G[name]
    if type(f) ~= 'function' then error('no global function ' .. name, 0) end
    return f
  end
  local mod = require(sub(name, 1, z - 1))
  local f = type(mod) == 'table' and mod[sub(name, z + 1)]
  if type(f) ~= 'function' then
    error(format('module %s has no function %s', sub(name, 1, z - 1), sub(name, z + 1)), 0)
  end
  return f
end

local function dec(s, i, refs)
  local tag = sub(s, i, i)
  if tag == 's' or tag == 'M' or tag == 'C' or decoders[tag] then
    local colon = find(s, ':', i + 1, true)
    local len = tonumber(sub(s, i + 1, colon - 1))
    local text = sub(s, colon + 1, colon + len)
    local j = colon + len + 1
    if tag == 's' then return text, j end
    if tag == 'M' then return require(text), j end
    if tag == 'C' then return resolve_function(text), j end
    return decoders[tag](text), j
  elseif tag == 'd' then
    local semi = find(s, ';', i + 1, true)
    local t = sub(s, i + 1, semi - 1)
    local v
    if t == 'nan' then v = 0 / 0
    elseif t == 'inf' then v = huge
    elseif t == '-inf' then v = -huge
    else v = tonumber(t) end
    return v, semi + 1
  elseif tag == 't' then return true, i + 1
  elseif tag == 'f' then return false, i + 1
  elseif tag == 'n' then return nil, i + 1
  elseif tag == 'r' then
    local semi = find(s, ';', i + 1, true)
    return refs[tonumber(sub(s, i + 1, semi - 1))], semi + 1
  elseif tag == 'T' then
    local t = {}
    refs[#refs + 1] = t
    i = i + 1
    while sub(s, i, i) ~= 'e' do
      local k, v
      k, i = dec(s, i, refs)
      v, i = dec(s, i, refs)
      if k ~= nil then t[k] = v end
    end
    return t, i + 1
  elseif tag == 'F' then
    local colon = find(s, ':', i + 1, true)
    local len = tonumber(sub(s, i + 1, colon - 1))
    local f = assert(loadstring(sub(s, colon + 1, colon + len)))
    refs[#refs + 1] = f
    local j = colon + len + 1
    local semi = find(s, ';', j, true)
    local nup = tonumber(sub(s, j, semi - 1))
    j = semi + 1
    for k = 1, nup do
      local v
      v, j = dec(s, j, refs)
      setupvalue(f, k, v)
    end
    return f, j
  end
  error('asio: corrupt transfer data (tag ' .. tostring(tag) .. ')', 0)
end

-- Decodes what encode() made; returns the number of values, then them.
function M.decode(s)
  local semi = find(s, ';', 1, true)
  local n = tonumber(sub(s, 1, semi - 1))
  local vals, refs, i = { n = n }, {}, semi + 1
  for k = 1, n do
    vals[k], i = dec(s, i, refs)
  end
  return vals
end

return M
