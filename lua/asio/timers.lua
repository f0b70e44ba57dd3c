-- The timer heap: light thread slots ordered by deadline. A thread waits for
-- one thing at a time, so its slot doubles as its heap entry and a timeout
-- allocates nothing. The nearest deadline is the poll timeout.

local S = require 'asio.state'

local floor = math.floor
local heap, th_dl, th_hidx = S.heap, S.th_dl, S.th_hidx

local function heap_up(i)
  local s = heap[i]
  local d = th_dl[s]
  while i > 1 do
    local p = floor(i / 2)
    local ps = heap[p]
    if th_dl[ps] <= d then break end
    heap[i] = ps; th_hidx[ps] = i
    i = p
  end
  heap[i] = s; th_hidx[s] = i
end

local function heap_down(i)
  local s = heap[i]
  local d = th_dl[s]
  local n = S.nheap
  while true do
    local c = i * 2
    if c > n then break end
    if c < n and th_dl[heap[c + 1]] < th_dl[heap[c]] then c = c + 1 end
    local cs = heap[c]
    if th_dl[cs] >= d then break end
    heap[i] = cs; th_hidx[cs] = i
    i = c
  end
  heap[i] = s; th_hidx[s] = i
end

local M = {}

function M.push(s, deadline)
  th_dl[s] = deadline
  local n = S.nheap + 1
  S.nheap = n
  heap[n] = s
  heap_up(n)
end

function M.remove(s)
  local i = th_hidx[s]
  th_hidx[s] = false
  local n = S.nheap
  local last = heap[n]
  heap[n] = nil
  n = n - 1
  S.nheap = n
  if i <= n then
    heap[i] = last; th_hidx[last] = i
    heap_down(i)
    heap_up(th_hidx[last])
  end
end

return M
