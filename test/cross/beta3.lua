-- Loaded with `luajit -lbeta3` (test/beta3.sh) before anything else: hides
-- what LuaJIT gained after 2.1.0-beta3 (2017), the version OpenWrt's
-- luajit package ships, and the OpenResty fork's extensions, so that the
-- suite shows LuaAsio does not depend on them. Using one raises an error
-- naming it.
local function gone(name)
  return function() error(name .. ' is newer than LuaJIT 2.1.0-beta3', 2) end
end
-- Modules: string.buffer (2.1 of 2021); table.new and table.clear exist
-- in beta3 but only as modules, which stay; OpenResty's table.* modules and
-- thread.exdata do not exist upstream.
for _, m in ipairs({ 'string.buffer', 'table.nkeys', 'table.clone', 'table.isarray',
  'table.isempty', 'thread.exdata', 'thread.exdata2' }) do
  package.loaded[m] = nil
  package.preload[m] = gone("require '" .. m .. "'")
end
-- Functions added to built-in libraries after beta3.
if jit then
  for _, f in ipairs({ 'prngstate' }) do
    if jit[f] then jit[f] = gone('jit.' .. f) end
  end
end
for _, f in ipairs({ 'isempty', 'isarray', 'nkeys', 'clone' }) do
  if table[f] then table[f] = gone('table.' .. f) end
end
if string.buffer then string.buffer = nil end
